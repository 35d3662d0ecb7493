//! The receivers: Alertmanager's v2 API and a generic JSON webhook, what
//! each is sent, and which failures are worth a retry.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::model::{AlertKind, AlertState, Notice, Severity};

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
    /// Sent as `Authorization: Bearer …`.
    pub bearer_token: Option<String>,
    /// Sent as `Authorization: Basic …`: user name and password.
    pub basic_auth: Option<(String, String)>,
    /// Sent with every request (a tenant header).
    pub headers: reqwest::header::HeaderMap,
    /// Signs the webhook body into `X-Starling-Signature`.
    pub hmac_key: Option<Vec<u8>>,
    pub presentation: Presentation,
    pub client: reqwest::Client,
}

/// What every alert carries besides its own facts, the same on every node
/// of a cluster.
#[derive(Clone, Debug, Default)]
pub struct Presentation {
    /// Static labels (`cluster`), on every alert.
    pub labels: BTreeMap<String, String>,
    /// The `runbook_url` annotation, `{alertname}` replaced.
    pub runbook_url: Option<String>,
}

impl Presentation {
    fn runbook(&self, notice: &Notice) -> Option<String> {
        let url = self.runbook_url.as_ref()?;
        Some(url.replace("{alertname}", notice.kind.alertname()))
    }
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
        SinkKind::Alertmanager => alertmanager_body(notice, &sink.presentation),
        SinkKind::Webhook => webhook_body(notice, &sink.presentation),
    };
    let body = serde_json::to_vec(&body).expect("a JSON value always serializes");
    let mut request = sink
        .client
        .post(sink.endpoint())
        .headers(sink.headers.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if let Some(token) = &sink.bearer_token {
        request = request.bearer_auth(token);
    }
    if let Some((user, password)) = &sink.basic_auth {
        request = request.basic_auth(user, Some(password));
    }
    if sink.kind == SinkKind::Webhook {
        request = request.header(IDEMPOTENCY_HEADER, notice.id());
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
pub fn alertmanager_body(notice: &Notice, presentation: &Presentation) -> Value {
    let mut labels = Map::new();
    // Static labels first: a reserved one cannot be overridden (the
    // settings refuse them anyway).
    for (name, value) in &presentation.labels {
        labels.insert(name.clone(), value.clone().into());
    }
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
    if let Some(seen_by) = seen_by(notice) {
        annotations.insert("seen_by".into(), seen_by.into());
    }
    if notice.flapping {
        annotations.insert("flapping".into(), "true".into());
    }
    if let Some(runbook) = presentation.runbook(notice) {
        annotations.insert("runbook_url".into(), runbook.into());
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
pub fn webhook_body(notice: &Notice, presentation: &Presentation) -> Value {
    json!({
        "id": notice.id(),
        "key": notice.key,
        "alert": notice.kind.as_str(),
        "alertname": notice.kind.alertname(),
        "status": notice.state.as_str(),
        "flapping": notice.flapping,
        "severity": notice.severity.as_str(),
        "labels": presentation.labels,
        "subject": notice.subject,
        "check": notice.check,
        "summary": summary(notice),
        "message": notice.message,
        "observer": notice.observer,
        "agreeing": notice.agreeing,
        "generation": notice.generation,
        "starts_at": rfc3339(notice.starts_at_unix_ms),
        "ends_at": notice.ends_at_unix_ms.map(rfc3339),
        "runbook_url": presentation.runbook(notice),
    })
}

/// One sentence for the page or chat line that shows only this.
fn summary(notice: &Notice) -> String {
    let node = notice.subject.as_deref().unwrap_or("?");
    let check = notice.check.as_deref().unwrap_or("?");
    let firing = notice.state == AlertState::Firing;
    let said = match (notice.kind, firing) {
        (AlertKind::NodeDown, true) => format!("Node {node} is down"),
        (AlertKind::NodeDown, false) => format!("Node {node} is no longer down"),
        (AlertKind::NodeSuspect, true) => format!("Node {node} does not answer probes"),
        (AlertKind::NodeSuspect, false) => format!("Node {node} is no longer suspect"),
        (AlertKind::NodeFlapping, true) => format!("Node {node} keeps going down and coming back"),
        (AlertKind::NodeFlapping, false) => format!("Node {node} has stopped flapping"),
        (AlertKind::Partition, true) => "The cluster is partitioned".to_owned(),
        (AlertKind::Partition, false) => "The partition has healed".to_owned(),
        (AlertKind::NodeDegraded, true) => format!("Node {node} is degraded"),
        (AlertKind::NodeDegraded, false) => format!("Node {node} is healthy again"),
        (AlertKind::CheckCritical, true) => format!("Cluster check {check} is critical"),
        (AlertKind::CheckCritical, false) => format!("Cluster check {check} has recovered"),
    };
    if firing && notice.flapping {
        format!("{said} (flapping)")
    } else {
        said
    }
}

/// Who else saw it, where known: "node-b and 2 other members" reads right
/// where a bare `agreeing="0"` read as "nobody agrees".
fn seen_by(notice: &Notice) -> Option<String> {
    let others = notice.agreeing?;
    Some(match others {
        0 => format!("{} alone", notice.observer),
        1 => format!("{} and 1 other member", notice.observer),
        n => format!("{} and {n} other members", notice.observer),
    })
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
            generator_url: Some("http://10.0.0.1:7947/#timeline?kind=alert".to_owned()),
        }
    }

    fn prod() -> Presentation {
        Presentation {
            labels: [("cluster".to_owned(), "prod-eu".to_owned())].into(),
            runbook_url: Some("https://runbooks.example/starling#{alertname}".to_owned()),
        }
    }

    #[test]
    fn alertmanager_gets_stable_labels_and_ends_at_only_on_resolution() {
        let firing = alertmanager_body(&notice(AlertState::Firing), &prod());
        let alert = &firing[0];
        assert_eq!(alert["labels"]["alertname"], "StarlingNodeDown");
        assert_eq!(alert["labels"]["node"], "host-1");
        assert_eq!(alert["labels"]["severity"], "critical");
        assert_eq!(alert["labels"]["cluster"], "prod-eu");
        assert_eq!(alert["annotations"]["summary"], "Node host-1 is down");
        assert_eq!(
            alert["annotations"]["seen_by"],
            "host-0 and 3 other members"
        );
        assert_eq!(
            alert["annotations"]["runbook_url"],
            "https://runbooks.example/starling#StarlingNodeDown"
        );
        assert_eq!(alert["startsAt"], "2023-11-14T22:13:20.000Z");
        assert!(alert.get("endsAt").is_none());
        let resolved = alertmanager_body(&notice(AlertState::Resolved), &prod());
        assert_eq!(resolved[0]["labels"], alert["labels"]);
        assert_eq!(resolved[0]["endsAt"], "2023-11-14T22:14:20.000Z");
        assert_eq!(
            resolved[0]["annotations"]["summary"],
            "Node host-1 is no longer down"
        );
    }

    #[test]
    fn summaries_are_sentences_and_nobody_agreeing_reads_as_alone() {
        let mut alone = notice(AlertState::Firing);
        alone.agreeing = Some(0);
        alone.flapping = true;
        let body = alertmanager_body(&alone, &Presentation::default());
        assert_eq!(body[0]["annotations"]["seen_by"], "host-0 alone");
        assert_eq!(
            body[0]["annotations"]["summary"],
            "Node host-1 is down (flapping)"
        );
        assert!(body[0]["annotations"].get("runbook_url").is_none());
        let mut check = Notice::for_tests("check-critical/scheduler", 1, AlertState::Firing);
        check.agreeing = None;
        let body = alertmanager_body(&check, &Presentation::default());
        assert_eq!(
            body[0]["annotations"]["summary"],
            "Cluster check scheduler is critical"
        );
        assert!(body[0]["annotations"].get("seen_by").is_none());
        let hook = webhook_body(&check, &prod());
        assert_eq!(hook["labels"]["cluster"], "prod-eu");
        assert_eq!(
            hook["runbook_url"],
            "https://runbooks.example/starling#StarlingCheckCritical"
        );
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
