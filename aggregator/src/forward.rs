//! History queries an ordinary node of an aggregated cluster cannot
//! answer from its own log: asked of an aggregator, owners of the node in
//! question first, and the answer says who served it.

use std::sync::Arc;
use std::time::Duration;

use starling_gossip::GossipHandle;
use starling_model::{ApiError, ErrorBody, HistoryQuery, HistoryResponse};

use crate::metrics::AggregationMetrics;
use crate::owners::{alive_aggregators, ranked};
use crate::window::RecentWindow;

/// A history page is a few hundred kilobytes at most; an aggregator that
/// takes longer is skipped for the next.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(4);
/// Aggregators tried per query before answering locally.
const MAX_TRIES: usize = 3;

/// Why no aggregator answered.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The query itself was refused (a typo in a node name, a bad cursor):
    /// the caller's error, the same from any aggregator.
    #[error(transparent)]
    Refused(ApiError),
    /// None alive, or none answered: the reasons, one per aggregator tried.
    #[error("no aggregator answered: {0}")]
    NoAggregator(String),
}

/// Asks aggregators on this node's behalf.
#[derive(Clone, Debug)]
pub struct Forwarder {
    client: reqwest::Client,
    gossip: GossipHandle,
    metrics: AggregationMetrics,
    /// What this node answers from when no aggregator does.
    window: RecentWindow,
}

impl Forwarder {
    pub(crate) fn new(
        gossip: GossipHandle,
        metrics: AggregationMetrics,
        window: RecentWindow,
    ) -> Self {
        let client = starling_checks::agent_client()
            .timeout(FORWARD_TIMEOUT)
            .connect_timeout(Duration::from_secs(1))
            .build()
            .expect("a plain-HTTP client with a preconfigured TLS backend always builds");
        Forwarder {
            client,
            gossip,
            metrics,
            window,
        }
    }

    /// The newest events of the cluster log this node took from the
    /// aggregators: for answering while none does.
    pub fn window(&self) -> &RecentWindow {
        &self.window
    }

    /// The query, answered by the first aggregator that can.
    pub async fn history(&self, query: &HistoryQuery) -> Result<HistoryResponse, ForwardError> {
        let candidates = {
            let view = Arc::clone(&self.gossip.view.borrow());
            let about = query.node.as_deref().unwrap_or(&view.me.name);
            ranked(about, &alive_aggregators(&view))
        };
        if candidates.is_empty() {
            return Err(ForwardError::NoAggregator(
                "no aggregator is alive in gossip".to_owned(),
            ));
        }
        let params = query.to_params();
        let mut reasons = Vec::new();
        for aggregator in candidates.iter().take(MAX_TRIES) {
            let url = format!("http://{}/v1/history", aggregator.api);
            let answer = self.client.get(&url).query(&params).send().await;
            let response = match answer {
                Ok(response) => response,
                Err(error) => {
                    reasons.push(format!(
                        "{}: {}",
                        aggregator.name,
                        starling_checks::innermost_cause(&error)
                    ));
                    continue;
                }
            };
            let status = response.status();
            if status.is_success() {
                match response.json::<HistoryResponse>().await {
                    Ok(mut page) => {
                        self.metrics.forwarded(true);
                        page.served_by
                            .get_or_insert_with(|| page.answered_by.clone());
                        return Ok(page);
                    }
                    Err(error) => reasons.push(format!("{}: {error}", aggregator.name)),
                }
                continue;
            }
            let message = response
                .json::<ErrorBody>()
                .await
                .map_or_else(|_| status.to_string(), |body| body.error);
            match status.as_u16() {
                400 => return Err(ForwardError::Refused(ApiError::BadRequest(message))),
                404 => return Err(ForwardError::Refused(ApiError::NotFound(message))),
                _ => reasons.push(format!("{}: {status}: {message}", aggregator.name)),
            }
        }
        self.metrics.forwarded(false);
        Err(ForwardError::NoAggregator(reasons.join("; ")))
    }
}
