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
            let reason = body["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
                .unwrap_or("no reason given");
            endpoint.problem = Some(format!("reports unhealthy ({reason})"));
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
    match get_json(post("/v3/maintenance/alarm", json!({"action": "GET"}))).await {
        Ok(Some(body)) => {
            endpoint.alarms = body["alarms"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    let kind = a["alarm"].as_str().unwrap_or("UNKNOWN");
                    let member = id(&a["memberID"]).unwrap_or_else(|| "?".to_owned());
                    format!("{kind} on member {member}")
                })
                .collect();
        }
        Ok(None) => {}
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
    let mut cause: &dyn std::error::Error = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}
