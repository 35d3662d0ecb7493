//! `/v1/history` query strings as a decoder: the agent's real router
//! (extractor, parser, handler) in front of a view that answers every
//! parsed query with an empty page.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, Uri};
use rand::RngExt;
use rand::rngs::StdRng;
use starling_model::{HistoryQuery, HistoryResponse};
use starling_web::{AgentView, Reply};
use tower::ServiceExt as _;

use super::seeds::{self, Seeds};
use super::{FuzzError, Target, mutate};

/// `GET /v1/history?...` through the agent's real router (extractor,
/// parser and handler) in front of a view that answers every parsed query
/// with an empty page.
pub struct HistoryQueryString {
    seeds: Vec<Vec<u8>>,
    router: axum::Router,
    runtime: tokio::runtime::Runtime,
}

impl HistoryQueryString {
    pub fn new(seeds: &Seeds) -> Result<Self, FuzzError> {
        Ok(HistoryQueryString {
            seeds: seeds.queries.clone(),
            router: starling_web::router(Arc::new(EmptyHistory)),
            runtime: seeds::runtime()?,
        })
    }
}

impl Target for HistoryQueryString {
    fn name(&self) -> &'static str {
        "history-query"
    }

    fn input(&mut self, rng: &mut StdRng, out: &mut Vec<u8>) {
        out.clone_from(&self.seeds[rng.random_range(0..self.seeds.len())]);
        if !rng.random_ratio(1, 16) {
            mutate::query(rng, out, &self.seeds);
        }
    }

    fn feed(&mut self, input: &[u8]) -> bool {
        let mut target = b"/v1/history?".to_vec();
        target.extend_from_slice(input);
        // A request line that is no URI never reaches the router: hyper
        // answers 400 itself.
        let Ok(uri) = Uri::try_from(target) else {
            return false;
        };
        let request = Request::get(uri)
            .body(Body::empty())
            .expect("a GET with a parsed URI builds");
        let response = self
            .runtime
            .block_on(self.router.clone().oneshot(request))
            .expect("the router is infallible");
        response.status() == StatusCode::OK
    }
}

/// Answers every history query with an empty page; nothing else is asked.
struct EmptyHistory;

impl AgentView for EmptyHistory {
    crate::stand_in::quiet_agent!(seeds::ME);

    fn history(&self, _query: HistoryQuery) -> Reply<HistoryResponse> {
        Box::pin(async {
            Ok(HistoryResponse {
                answered_by: seeds::ME.to_owned(),
                answered_at_unix_ms: 0,
                served_by: None,
                incomplete: None,
                events: Vec::new(),
                next_cursor: None,
            })
        })
    }
}
