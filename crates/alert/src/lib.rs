//! Alerts on gossip events and status changes, sent to Alertmanager and
//! webhooks by exactly one node each, through a persisted outbox.
//!
//! - `sources`: what is wrong, judged from the gossip view and roll-up.
//! - `ledger`: what the cluster told the receivers, from marks in the
//!   replicated history.
//! - `decide`: whether this node sends now (owner, fallback, takeover,
//!   flap damping).
//! - `outbox` and `deliver`: the SQLite outbox and one worker per sink.
//! - `sinks`: the Alertmanager and webhook payloads.

mod decide;
mod deliver;
mod evaluate;
mod flapping;
mod ledger;
mod metrics;
mod model;
mod outbox;
mod sinks;
mod sources;
mod spec;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use starling_checks::ClientTls;
use starling_gossip::GossipHandle;
use starling_replicate::Publisher;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use decide::DecideTiming;
pub use deliver::Backoff;
pub use metrics::AlertMetrics;
pub use model::{AlertKind, AlertState, Notice, Severity};
pub use sinks::{
    IDEMPOTENCY_HEADER, SIGNATURE_HEADER, SinkKind, alertmanager_body, signature, webhook_body,
};
pub use sources::SourceConfig;
pub use spec::{Secret, SinkAuth, SinkSpec};

/// Everything alerting needs, checked (see `settings::alert`).
#[derive(Clone, Debug, PartialEq)]
pub struct AlertConfig {
    /// No sinks: alerting is off.
    pub sinks: Vec<SinkSpec>,
    /// Labels on every alert (`cluster="prod-eu"`), so that one
    /// Alertmanager serving several clusters keeps their alerts apart.
    pub labels: BTreeMap<String, String>,
    /// The `runbook_url` annotation, `{alertname}` replaced by the alert's.
    pub runbook_url: Option<String>,
    pub sources: SourceConfig,
    pub timing: DecideTiming,
    pub evaluate_every: Duration,
    pub resend_every: Duration,
    pub outbox_max: u64,
    pub request_timeout: Duration,
    pub backoff: Backoff,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            sinks: Vec::new(),
            labels: BTreeMap::new(),
            runbook_url: None,
            sources: SourceConfig::default(),
            timing: DecideTiming::default(),
            evaluate_every: Duration::from_secs(1),
            resend_every: Duration::from_secs(60),
            outbox_max: 10_000,
            request_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("alert sink {name}: {source}")]
pub struct SinkError {
    name: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// The running evaluation loop and sink workers.
#[derive(Debug)]
pub struct Alerting {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Alerting {
    /// Start evaluating and delivering; nothing runs without sinks.
    /// `caught_up` (replication's first pull) says the history holds what
    /// the cluster recorded while this node was away.
    pub fn start(
        settings: &AlertConfig,
        gossip: GossipHandle,
        publisher: Publisher,
        caught_up: watch::Receiver<bool>,
        metrics: AlertMetrics,
    ) -> Result<Self, SinkError> {
        let stop = CancellationToken::new();
        let mut alerting = Alerting {
            stop: stop.clone(),
            tasks: Vec::new(),
        };
        if settings.sinks.is_empty() {
            return Ok(alerting);
        }
        let outbox = outbox::Outbox::new(publisher.store().clone(), settings.outbox_max);
        let (release, released) = watch::channel(false);
        let mut sinks = Vec::new();
        for spec in &settings.sinks {
            let sink = Arc::new(build_sink(settings, spec)?);
            metrics.sink(&spec.name);
            let wake = Arc::new(Notify::new());
            let deliverer = deliver::Deliverer {
                outbox: outbox.clone(),
                publisher: publisher.clone(),
                metrics: metrics.clone(),
                backoff: settings.backoff,
            };
            alerting.tasks.push(tokio::spawn(deliver::run(
                deliverer,
                Arc::clone(&sink),
                Arc::clone(&wake),
                released.clone(),
                stop.clone().cancelled_owned(),
            )));
            sinks.push((sink, wake));
        }
        let generator_url = gossip
            .view
            .borrow()
            .me
            .meta
            .service(starling_model::Service::Api)
            .map(|addr| format!("http://{addr}/#timeline?kind=alert"));
        let evaluator = evaluate::Evaluator {
            sources: settings.sources,
            timing: settings.timing,
            resend_every: settings.resend_every,
            sinks,
            gossip,
            publisher,
            outbox,
            metrics,
            generator_url,
            caught_up,
            release,
            started_at_unix_ms: starling_model::unix_ms_now(),
        };
        alerting.tasks.push(tokio::spawn(
            evaluator.run(settings.evaluate_every, stop.cancelled_owned()),
        ));
        Ok(alerting)
    }

    /// Stop; what is still in the outbox is sent by the next run.
    pub async fn stop(self) -> Result<(), tokio::task::JoinError> {
        self.stop.cancel();
        for task in self.tasks {
            task.await?;
        }
        Ok(())
    }
}

fn build_sink(settings: &AlertConfig, spec: &SinkSpec) -> Result<sinks::Sink, SinkError> {
    let error = |source: Box<dyn std::error::Error + Send + Sync>| SinkError {
        name: spec.name.clone(),
        source,
    };
    let (cert, key) = spec.auth.client_cert.clone().unzip();
    let tls = ClientTls {
        ca: spec.ca_file.clone(),
        cert,
        key,
    };
    let client = starling_checks::tls_client(&tls)
        .map_err(|e| error(Box::new(e)))?
        .timeout(settings.request_timeout)
        .build()
        .map_err(|e| error(Box::new(e)))?;
    let text = |secret: &Secret| String::from_utf8(secret.0.clone());
    let bearer_token = spec
        .auth
        .bearer_token
        .as_ref()
        .map(text)
        .transpose()
        .map_err(|e| error(Box::new(e)))?;
    let basic_auth = spec
        .auth
        .basic_auth
        .as_ref()
        .map(|(user, password)| text(password).map(|password| (user.clone(), password)))
        .transpose()
        .map_err(|e| error(Box::new(e)))?;
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &spec.auth.headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| error(Box::new(e)))?;
        let value =
            reqwest::header::HeaderValue::from_str(value).map_err(|e| error(Box::new(e)))?;
        headers.insert(name, value);
    }
    Ok(sinks::Sink {
        name: spec.name.clone(),
        kind: spec.kind,
        url: spec.url.clone(),
        severities: spec.severities.clone(),
        bearer_token,
        basic_auth,
        headers,
        hmac_key: spec.hmac_key.as_ref().map(|secret| secret.0.clone()),
        presentation: sinks::Presentation {
            labels: settings.labels.clone(),
            runbook_url: settings.runbook_url.clone(),
        },
        client,
    })
}
