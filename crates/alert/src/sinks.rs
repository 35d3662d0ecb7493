//! The receivers: Alertmanager's v2 API and a generic JSON webhook, what
//! each is sent, and which failures are worth a retry.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::model::{AlertState, Notice, Severity};

/// Header carrying the webhook body's HMAC-SHA256, as `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Starling-Signature";
/// Header carrying the notice id; the same for every retry and sender.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Alertmanager,
    Webhook,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Alertmanager => "alertmanager",
            SinkKind::Webhook => "webhook",
        }
    }
}

/// One configured receiver.
#[derive(Clone, Debug)]
pub struct Sink {
    /// Names its outbox rows, marks and metric series; unique.
    pub name: String,
    pub kind: SinkKind,
    /// Alertmanager: its base URL (`/api/v2/alerts` is appended). Webhook:
    /// the URL posted to.
    pub url: String,
    /// Only alerts of these severities go here.
    pub severities: Vec<Severity>,
    /// Sent as `Authorization: Bearer …` (webhook only).
    pub bearer_token: Option<String>,
    /// Signs the webhook body into `X-Starling-Signature`.
    pub hmac_key: Option<Vec<u8>>,
    pub client: reqwest::Client,
}

impl Sink {
    pub fn wants(&self, severity: Severity) -> bool {
        self.severities.contains(&severity)
    }

    /// Where requests go.
    pub fn endpoint(&self) -> String {
        match self.kind {
            SinkKind::Alertmanager => format!("{}/api/v2/alerts", self.url.trim_end_matches('/')),
            SinkKind::Webhook => self.url.clone(),
        }
    }
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{0}")]
    Unreachable(String),
    #[error("answered {status}: {body}")]
    Failed { status: u16, body: String },
}

impl DeliveryError {
    /// A 4xx other than 408 and 429 means the request itself is wrong:
    /// sending it again cannot help, and would hold up the key's later
    /// transitions for good.
    pub fn retryable(&self) -> bool {
        match self {
            DeliveryError::Unreachable(_) => true,
            DeliveryError::Failed { status, .. } => {
                !(400..500).contains(status) || matches!(status, 408 | 429)
            }
        }
    }
}

/// Send one notice; `Ok` once the receiver answered 2xx.
pub async fn deliver(sink: &Sink, notice: &Notice) -> Result<(), DeliveryError> {
    let body = match sink.kind {
        SinkKind::Alertmanager => alertmanager_body(notice),
        SinkKind::Webhook => webhook_body(notice),
    };
    let body = serde_json::to_vec(&body).expect("a JSON value always serializes");
    let mut request = sink
        .client
        .post(sink.endpoint())
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if sink.kind == SinkKind::Webhook {
        request = request.header(IDEMPOTENCY_HEADER, notice.id());
        if let Some(token) = &sink.bearer_token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = &sink.hmac_key {
            request = request.header(SIGNATURE_HEADER, signature(key, &body));
        }
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|error| DeliveryError::Unreachable(error_chain(&error)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(DeliveryError::Failed {
        status: status.as_u16(),
        body: body.chars().take(200).collect(),
    })
}

/// `sha256=<hex of HMAC-SHA256(key, body)>`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), body);
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for byte in tag.as_ref() {
        write!(hex, "{byte:02x}").expect("writing to a String cannot fail");
    }
    hex
}

/// Alertmanager's `postableAlerts`: a list of one. The labels are the
/// same for every notice of a key, so Alertmanager's dedup holds across
/// senders; who sent it and the message are annotations.
pub fn alertmanager_body(notice: &Notice) -> Value {
    let mut labels = Map::new();
    labels.insert("alertname".into(), notice.kind.alertname().into());
    labels.insert("severity".into(), notice.severity.as_str().into());
    labels.insert("alert_key".into(), notice.key.clone().into());
    labels.insert("source".into(), "starling".into());
    if let Some(node) = &notice.subject {
        labels.insert("node".into(), node.clone().into());
    }
    if let Some(check) = &notice.check {
        labels.insert("check".into(), check.clone().into());
    }
    let mut annotations = Map::new();
    annotations.insert("summary".into(), summary(notice).into());
    annotations.insert("description".into(), notice.message.clone().into());
    annotations.insert("observer".into(), notice.observer.clone().into());
    if let Some(agreeing) = notice.agreeing {
        annotations.insert("agreeing".into(), agreeing.to_string().into());
    }
    if notice.flapping {
        annotations.insert("flapping".into(), "true".into());
    }
    let mut alert = Map::new();
    alert.insert("labels".into(), labels.into());
    alert.insert("annotations".into(), annotations.into());
    alert.insert("startsAt".into(), rfc3339(notice.starts_at_unix_ms).into());
    if let Some(ends) = notice.ends_at_unix_ms {
        alert.insert("endsAt".into(), rfc3339(ends).into());
    }
    if let Some(url) = &notice.generator_url {
        alert.insert("generatorURL".into(), url.clone().into());
    }
    Value::Array(vec![alert.into()])
}

/// The webhook's body: the notice, flat, with RFC 3339 times.
pub fn webhook_body(notice: &Notice) -> Value {
    json!({
        "id": notice.id(),
        "key": notice.key,
        "alert": notice.kind.as_str(),
        "alertname": notice.kind.alertname(),
        "status": notice.state.as_str(),
        "flapping": notice.flapping,
        "severity": notice.severity.as_str(),
        "subject": notice.subject,
        "check": notice.check,
        "summary": summary(notice),
        "message": notice.message,
        "observer": notice.observer,
        "agreeing": notice.agreeing,
        "generation": notice.generation,
        "starts_at": rfc3339(notice.starts_at_unix_ms),
        "ends_at": notice.ends_at_unix_ms.map(rfc3339),
    })
}

fn summary(notice: &Notice) -> String {
    let what = notice
        .subject
        .as_deref()
        .or(notice.check.as_deref())
        .unwrap_or("cluster");
    let state = match notice.state {
        AlertState::Firing if notice.flapping => "flapping",
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
    };
    format!("{} {what}: {state}", notice.kind.as_str())
}

fn rfc3339(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

/// The error and its causes on one line: reqwest's own message rarely
/// says whether it was DNS, a refusal or a timeout.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AlertKind;

    fn notice(state: AlertState) -> Notice {
        Notice {
            key: "node-down/host-1".to_owned(),
            kind: AlertKind::NodeDown,
            severity: Severity::Critical,
            subject: Some("host-1".to_owned()),
            check: None,
            state,
            flapping: false,
            message: "host-1 is down".to_owned(),
            observer: "host-0".to_owned(),
            agreeing: Some(3),
            generation: 2,
            starts_at_unix_ms: 1_700_000_000_000,
            ends_at_unix_ms: (state == AlertState::Resolved).then_some(1_700_000_060_000),
            generator_url: Some("http://10.0.0.1:7947/v1/history?kind=alert".to_owned()),
        }
    }

    #[test]
    fn alertmanager_gets_stable_labels_and_ends_at_only_on_resolution() {
        let firing = alertmanager_body(&notice(AlertState::Firing));
        let alert = &firing[0];
        assert_eq!(alert["labels"]["alertname"], "StarlingNodeDown");
        assert_eq!(alert["labels"]["node"], "host-1");
        assert_eq!(alert["labels"]["severity"], "critical");
        assert_eq!(alert["annotations"]["agreeing"], "3");
        assert_eq!(alert["startsAt"], "2023-11-14T22:13:20.000Z");
        assert!(alert.get("endsAt").is_none());
        let resolved = alertmanager_body(&notice(AlertState::Resolved));
        assert_eq!(resolved[0]["labels"], alert["labels"]);
        assert_eq!(resolved[0]["endsAt"], "2023-11-14T22:14:20.000Z");
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn client_errors_are_final_except_timeouts_and_throttling() {
        let failed = |status| DeliveryError::Failed {
            status,
            body: String::new(),
        };
        assert!(!failed(400).retryable());
        assert!(!failed(404).retryable());
        assert!(failed(408).retryable());
        assert!(failed(429).retryable());
        assert!(failed(503).retryable());
        assert!(DeliveryError::Unreachable("refused".into()).retryable());
    }
}
