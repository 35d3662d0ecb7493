//! etcd, through its HTTP(S) endpoints (no gRPC, no protoc): `/health` on
//! every configured endpoint, a leader, no alarms (NOSPACE), and the
//! latency of a linearizable read — which needs a quorum, so it is the
//! read every API server request depends on.
//!
//! kubeadm lays the client certificates out as
//! `/etc/kubernetes/pki/etcd/{ca.crt,healthcheck-client.crt,healthcheck-client.key}`;
//! on its control-plane nodes `http://127.0.0.1:2381` serves `/health`
//! without certificates, and there only `/health` is checked.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::checker::{BoxFuture, Checker};
use crate::errors::innermost_cause;
use crate::result::Outcome;
use crate::tls::{ClientTls, tls_client};

/// One HTTP exchange with etcd; the runner's timeout bounds the whole run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The key read to measure latency. It need not exist: a range over a
/// missing key still goes through the leader and a quorum.
const PROBE_KEY: &[u8] = b"/starling/probe";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs, e.g. `https://10.0.0.1:2379` or `http://127.0.0.1:2381`.
    pub endpoints: Vec<String>,
    pub tls: ClientTls,
    /// A read slower than this is a warning.
    pub slow_read: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: Vec::new(),
            tls: ClientTls::default(),
            slow_read: Duration::from_millis(500),
        }
    }
}

#[derive(Debug)]
pub struct EtcdCheck {
    config: EtcdConfig,
}

impl EtcdCheck {
    pub fn new(config: EtcdConfig) -> Self {
        EtcdCheck { config }
    }
}

impl Checker for EtcdCheck {
    fn name(&self) -> &str {
        "etcd"
    }

    fn check(&self) -> BoxFuture<'_, Outcome> {
        Box::pin(self.run())
    }
}

/// What one endpoint told us.
#[derive(Debug, Default)]
struct Endpoint {
    url: String,
    /// Why the endpoint failed, if it did.
    problem: Option<String>,
    /// Only `/health` answers (the plain metrics port).
    health_only: bool,
    leader: Option<String>,
    alarms: Vec<String>,
    read: Option<Duration>,
}

impl EtcdCheck {
    async fn run(&self) -> Outcome {
        if self.config.endpoints.is_empty() {
            return Outcome::unknown("no etcd endpoint configured (--etcd-endpoint)");
        }
        let client = match tls_client(&self.config.tls).map(|b| b.timeout(REQUEST_TIMEOUT).build())
        {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => {
                return Outcome::unknown(format!("cannot build an HTTP client: {error}"));
            }
            Err(error) => return Outcome::unknown(format!("etcd client certificates: {error}")),
        };
        let mut endpoints = Vec::new();
        for url in &self.config.endpoints {
            endpoints.push(probe(&client, url.trim_end_matches('/')).await);
        }
        judge(&endpoints, self.config.slow_read)
    }
}

async fn probe(client: &reqwest::Client, url: &str) -> Endpoint {
    let mut endpoint = Endpoint {
        url: url.to_owned(),
        ..Endpoint::default()
    };
    match get_json(client.get(format!("{url}/health"))).await {
        Ok(Some(body)) if healthy(&body) => {}
        Ok(Some(body)) => {
            // etcd 3.4 gives no reason; an active alarm (NOSPACE) is the
            // usual one, so name it when the gateway can tell.
            let alarms = alarms(client, url).await.unwrap_or_default();
            let reason = body["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .or_else(|| (!alarms.is_empty()).then(|| format!("alarm {}", alarms.join(", "))))
                .unwrap_or_else(|| "no reason given".to_owned());
            endpoint.problem = Some(format!("reports unhealthy ({reason})"));
            endpoint.alarms = alarms;
            return endpoint;
        }
        Ok(None) => {
            endpoint.problem = Some("has no /health endpoint (is this etcd?)".to_owned());
            return endpoint;
        }
        Err(error) => {
            endpoint.problem = Some(error);
            return endpoint;
        }
    }
    let post = |path: &str, body: Value| client.post(format!("{url}{path}")).json(&body);
    match get_json(post("/v3/maintenance/status", json!({}))).await {
        Ok(Some(status)) => endpoint.leader = id(&status["leader"]).filter(|l| l != "0"),
        Ok(None) => {
            endpoint.health_only = true;
            return endpoint;
        }
        Err(error) => {
            endpoint.problem = Some(format!("status: {error}"));
            return endpoint;
        }
    }
    match alarms(client, url).await {
        Ok(alarms) => endpoint.alarms = alarms,
        Err(error) => endpoint.problem = Some(format!("alarms: {error}")),
    }
    let key = base64::engine::general_purpose::STANDARD.encode(PROBE_KEY);
    let started = Instant::now();
    match get_json(post("/v3/kv/range", json!({"key": key}))).await {
        Ok(Some(_)) => endpoint.read = Some(started.elapsed()),
        Ok(None) => {}
        Err(error) => endpoint.problem = Some(format!("read: {error}")),
    }
    endpoint
}

/// Active alarms ("NOSPACE on member 8e9e…"); none when the endpoint has
/// no gateway. etcd answers `{}` when there is no alarm.
async fn alarms(client: &reqwest::Client, url: &str) -> Result<Vec<String>, String> {
    let request = client
        .post(format!("{url}/v3/maintenance/alarm"))
        .json(&json!({"action": "GET"}));
    let Some(body) = get_json(request).await? else {
        return Ok(Vec::new());
    };
    Ok(body["alarms"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let kind = a["alarm"].as_str().unwrap_or("UNKNOWN");
            let member = id(&a["memberID"]).unwrap_or_else(|| "?".to_owned());
            format!("{kind} on member {member}")
        })
        .collect())
}

/// The verdict over every endpoint, worst first.
fn judge(endpoints: &[Endpoint], slow_read: Duration) -> Outcome {
    let details = json!({
        "endpoints": endpoints.iter().map(|e| json!({
            "url": e.url,
            "healthy": e.problem.is_none(),
            "problem": e.problem,
            "health_only": e.health_only,
            "leader": e.leader,
            "alarms": e.alarms,
            "read_ms": e.read.map(|d| d.as_secs_f64() * 1000.0),
        })).collect::<Vec<_>>(),
    });
    let failing: Vec<String> = endpoints
        .iter()
        .filter_map(|e| e.problem.as_ref().map(|p| format!("{}: {p}", e.url)))
        .collect();
    if !failing.is_empty() {
        return Outcome::critical(format!("etcd {}", failing.join("; "))).with_details(details);
    }
    let alarms: Vec<&str> = endpoints
        .iter()
        .flat_map(|e| e.alarms.iter().map(String::as_str))
        .collect();
    if !alarms.is_empty() {
        return Outcome::critical(format!("etcd alarm: {}", alarms.join(", ")))
            .with_details(details);
    }
    let full: Vec<&Endpoint> = endpoints.iter().filter(|e| !e.health_only).collect();
    if let Some(leaderless) = full.iter().find(|e| e.leader.is_none()) {
        return Outcome::critical(format!("etcd {}: no leader", leaderless.url))
            .with_details(details);
    }
    let slowest = full.iter().filter_map(|e| e.read).max();
    let healthy = format!("{} etcd endpoint(s) healthy", endpoints.len());
    match (slowest, full.first().and_then(|e| e.leader.as_deref())) {
        (Some(read), _) if read > slow_read => Outcome::warning(format!(
            "{healthy}, but a read took {:.0} ms (over {} ms)",
            read.as_secs_f64() * 1000.0,
            slow_read.as_millis()
        ))
        .with_details(details),
        (Some(read), Some(leader)) => Outcome::ok(format!(
            "{healthy}, leader {leader}, read {:.1} ms",
            read.as_secs_f64() * 1000.0
        ))
        .with_details(details),
        _ => Outcome::ok(format!("{healthy} (/health only)")).with_details(details),
    }
}

fn healthy(body: &Value) -> bool {
    // etcd answers "true" as a string; accept a boolean too.
    matches!(&body["health"], Value::String(s) if s == "true")
        || body["health"] == Value::Bool(true)
}

/// etcd's JSON gateway renders 64-bit ids as strings; accept numbers too.
fn id(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `Ok(None)` for a 404 (the endpoint does not serve this path), the body
/// for a success, and a one-line reason otherwise.
async fn get_json(request: reqwest::RequestBuilder) -> Result<Option<Value>, String> {
    let response = request.send().await.map_err(|e| cause(&e))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let text = response.text().await.map_err(|e| cause(&e))?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", text.trim()));
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("not JSON ({e}): {}", text.trim()))
}

/// The innermost cause ("connection refused", "invalid peer certificate:
/// UnknownIssuer"), not reqwest's restatement of the URL.
fn cause(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("no answer within {REQUEST_TIMEOUT:?}");
    }
    innermost_cause(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Endpoint {
        Endpoint {
            url: url.to_owned(),
            leader: Some("8e9e05c52164694d".to_owned()),
            read: Some(Duration::from_millis(2)),
            ..Endpoint::default()
        }
    }

    #[test]
    fn alarms_and_a_missing_leader_are_critical_and_slow_reads_a_warning() {
        let slow = Duration::from_millis(500);
        let mut nospace = endpoint("https://a:2379");
        nospace.alarms = vec!["NOSPACE on member 1".to_owned()];
        let verdict = judge(&[endpoint("https://b:2379"), nospace], slow);
        assert_eq!(verdict.status, crate::Status::Critical);
        assert_eq!(verdict.message, "etcd alarm: NOSPACE on member 1");

        let mut leaderless = endpoint("https://a:2379");
        leaderless.leader = None;
        assert_eq!(
            judge(&[leaderless], slow).message,
            "etcd https://a:2379: no leader"
        );

        let mut sluggish = endpoint("https://a:2379");
        sluggish.read = Some(Duration::from_millis(900));
        let verdict = judge(&[sluggish], slow);
        assert_eq!(verdict.status, crate::Status::Warning);
        assert!(verdict.message.contains("900 ms"), "{}", verdict.message);

        let fine = judge(&[endpoint("https://a:2379")], slow);
        assert_eq!(fine.status, crate::Status::Ok);
        assert_eq!(
            fine.message,
            "1 etcd endpoint(s) healthy, leader 8e9e05c52164694d, read 2.0 ms"
        );
    }
}
