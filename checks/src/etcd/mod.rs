//! etcd, through its HTTP(S) endpoints (no gRPC, no protoc): `/health` on
//! every configured endpoint, a leader, no alarms (NOSPACE), and the
//! latency of a linearizable read — which needs a quorum, so it is the
//! read every API server request depends on.
//!
//! kubeadm lays the client certificates out as
//! `/etc/kubernetes/pki/etcd/{ca.crt,healthcheck-client.crt,healthcheck-client.key}`;
//! on its control-plane nodes `http://127.0.0.1:2381` serves `/health`
//! without certificates, and there only `/health` is checked.

mod metrics;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::Status;
use crate::certs::{self, CertFinding, CertValidity};
use crate::checker::{BoxFuture, Checker};
use crate::errors::innermost_cause;
use crate::result::Outcome;
use crate::tls::{ClientTls, tls_client};

pub use metrics::DiskLimits;
use metrics::{DiskFigures, Scrape};

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
    /// A certificate (CA, client, etcd's server) ending sooner than this
    /// is a warning.
    pub cert_warning: Duration,
    /// etcd's disk latency guidance (WAL fsync, backend commit p99).
    pub disk: DiskLimits,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: Vec::new(),
            tls: ClientTls::default(),
            slow_read: Duration::from_millis(500),
            cert_warning: certs::DEFAULT_CERT_WARNING,
            disk: DiskLimits::default(),
        }
    }
}

#[derive(Debug)]
pub struct EtcdCheck {
    config: EtcdConfig,
    /// Each endpoint's previous metrics scrape: quantiles and counters are
    /// judged over the interval since, not since etcd started.
    previous: Mutex<HashMap<String, Scrape>>,
}

impl EtcdCheck {
    pub fn new(config: EtcdConfig) -> Self {
        EtcdCheck {
            config,
            previous: Mutex::new(HashMap::new()),
        }
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
    /// The leaf certificate it served, over https.
    server_cert: Option<CertValidity>,
    /// From `/v3/maintenance/status`: which member answered, its raft
    /// index and its database's size.
    member: Option<String>,
    raft_index: Option<u64>,
    db_size: Option<u64>,
    /// From `/metrics`, when it serves them.
    scrape: Option<Scrape>,
    disk: Option<DiskFigures>,
    /// Whether `disk` covers the interval since the previous run.
    interval_known: bool,
}

impl EtcdCheck {
    async fn run(&self) -> Outcome {
        if self.config.endpoints.is_empty() {
            return Outcome::unknown("no etcd endpoint configured (--etcd-endpoint)");
        }
        let client = match tls_client(&self.config.tls)
            .map(|b| b.timeout(REQUEST_TIMEOUT).tls_info(true).build())
        {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => {
                return Outcome::unknown(format!("cannot build an HTTP client: {error}"));
            }
            Err(error) => return Outcome::unknown(format!("etcd client certificates: {error}")),
        };
        let mut endpoints = Vec::new();
        for url in &self.config.endpoints {
            let mut endpoint = probe(&client, url.trim_end_matches('/')).await;
            self.figure_disk(&mut endpoint);
            endpoints.push(endpoint);
        }
        let findings = self.certificate_findings(&endpoints);
        certs::with_findings(judge(&endpoints, &self.config), &findings)
    }

    /// The disk figures since this endpoint's previous scrape.
    fn figure_disk(&self, endpoint: &mut Endpoint) {
        let Some(scrape) = &endpoint.scrape else {
            return;
        };
        let mut previous = self
            .previous
            .lock()
            .expect("no panic while the previous scrapes are held");
        let before = previous.get(&endpoint.url);
        endpoint.interval_known = before.is_some();
        endpoint.disk = Some(metrics::figures(scrape, before));
        previous.insert(endpoint.url.clone(), scrape.clone());
    }

    /// Our CA and client certificate from their files, and each server's
    /// leaf as it was served.
    fn certificate_findings(&self, endpoints: &[Endpoint]) -> Vec<CertFinding> {
        let warn = self.config.cert_warning;
        let tls = &self.config.tls;
        let mut findings = Vec::new();
        if let Some(ca) = &tls.ca {
            findings.extend(certs::judge_file("etcd CA", ca, warn));
        }
        if let Some(cert) = &tls.cert {
            findings.extend(certs::judge_file("etcd client certificate", cert, warn));
        }
        let now = certs::unix_now();
        for endpoint in endpoints {
            if let Some(cert) = &endpoint.server_cert {
                let what = format!("etcd's server certificate at {}", endpoint.url);
                findings.extend(certs::judge_validity(&what, cert, now, warn));
            }
        }
        findings
    }
}

async fn probe(client: &reqwest::Client, url: &str) -> Endpoint {
    let mut endpoint = Endpoint {
        url: url.to_owned(),
        ..Endpoint::default()
    };
    match health(client, url, &mut endpoint.server_cert).await {
        Ok(Some(true)) => {}
        Ok(Some(false)) => {
            // etcd gives no reason. 3.4 answers 503 while an alarm (NOSPACE,
            // CORRUPT) is raised, and a member too far behind the leader
            // fails /health's linearizable read while its status still
            // answers: look up both, so the verdict can name either.
            let alarms = alarms(client, url).await.unwrap_or_default();
            let _ = read_status(client, url, &mut endpoint).await;
            let reason = if alarms.is_empty() {
                "no alarm is raised".to_owned()
            } else {
                alarm_advice(&alarms)
            };
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
    match read_status(client, url, &mut endpoint).await {
        Ok(true) => {}
        Ok(false) => {
            endpoint.health_only = true;
            endpoint.scrape = scrape(client, url).await;
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
    let range = client
        .post(format!("{url}/v3/kv/range"))
        .json(&json!({"key": key}));
    let started = Instant::now();
    match get_json(range).await {
        Ok(Some(_)) => endpoint.read = Some(started.elapsed()),
        Ok(None) => {}
        Err(error) => endpoint.problem = Some(format!("read: {error}")),
    }
    endpoint.scrape = scrape(client, url).await;
    endpoint
}

/// Which member answered, its leader, raft index and database size, from
/// `/v3/maintenance/status`. `Ok(false)` when the endpoint has no gRPC
/// gateway (kubeadm's plain metrics port serves `/health` only).
async fn read_status(
    client: &reqwest::Client,
    url: &str,
    endpoint: &mut Endpoint,
) -> Result<bool, String> {
    let request = client
        .post(format!("{url}/v3/maintenance/status"))
        .json(&json!({}));
    let Some(status) = get_json(request).await? else {
        return Ok(false);
    };
    endpoint.leader = member_id(&status["leader"]);
    endpoint.member = member_id(&status["header"]["member_id"]);
    endpoint.raft_index = number(&status["raftIndex"]);
    endpoint.db_size = number(&status["dbSize"]);
    Ok(true)
}

/// `/metrics`, when the endpoint serves it (client URLs and kubeadm's
/// metrics port do); `None` otherwise: the other findings stand alone.
async fn scrape(client: &reqwest::Client, url: &str) -> Option<Scrape> {
    let response = client.get(format!("{url}/metrics")).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    Some(metrics::parse(&response.text().await.ok()?))
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
            let member = member_id(&a["memberID"]).unwrap_or_else(|| "?".to_owned());
            format!("{kind} on member {member}")
        })
        .collect())
}

/// `/health`'s verdict, whatever the HTTP status: etcd 3.4 answers 503
/// with `{"health":"false"}` when an alarm is raised, and that body is the
/// answer, not a transport failure. `Ok(None)` when there is no `/health`.
/// The server's leaf certificate goes into `served`, over https.
async fn health(
    client: &reqwest::Client,
    url: &str,
    served: &mut Option<CertValidity>,
) -> Result<Option<bool>, String> {
    let response = client
        .get(format!("{url}/health"))
        .send()
        .await
        .map_err(|e| cause(&e))?;
    *served = certs::served_certificate(&response);
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let text = response.text().await.map_err(|e| cause(&e))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(body) if body.get("health").is_some() => Ok(Some(healthy(&body))),
        _ if !status.is_success() => Err(format!("HTTP {status}: {}", text.trim())),
        _ => Err(format!("/health is not etcd's JSON: {}", text.trim())),
    }
}

/// The alarms, and what an operator does about them: etcd refuses every
/// write while one is raised, so the API server fails until it is cleared.
fn alarm_advice(alarms: &[String]) -> String {
    let mut advice = format!("alarm {}", alarms.join(", "));
    if alarms.iter().any(|a| a.starts_with("NOSPACE")) {
        advice.push_str(
            ": the database reached its quota and etcd refuses writes; compact, defragment, \
             then `etcdctl alarm disarm`",
        );
    }
    if alarms.iter().any(|a| a.starts_with("CORRUPT")) {
        advice.push_str(": a member's data differs from the others'; restore it from a snapshot");
    }
    advice
}

/// A member this many raft entries behind the most advanced one is named:
/// it is far enough behind to be sent a snapshot soon.
const RAFT_LAG_LIMIT: u64 = 1_000;
/// A database this full (of its quota) is a warning: NOSPACE comes next.
const DB_QUOTA_WARNING: f64 = 0.8;

/// The verdict over every endpoint, worst first.
fn judge(endpoints: &[Endpoint], config: &EtcdConfig) -> Outcome {
    let details = json!({
        "endpoints": endpoints.iter().map(|e| json!({
            "url": e.url,
            "healthy": e.problem.is_none(),
            "problem": e.problem,
            "health_only": e.health_only,
            "leader": e.leader,
            "member": e.member,
            "raft_index": e.raft_index,
            "db_size_bytes": e.db_size,
            "quota_bytes": e.scrape.as_ref().and_then(|s| s.quota_bytes),
            "alarms": e.alarms,
            "read_ms": e.read.map(|d| d.as_secs_f64() * 1000.0),
            "wal_fsync_p99_ms": e.disk.as_ref().and_then(|d| d.wal_fsync_p99).map(|d| d.as_secs_f64() * 1000.0),
            "backend_commit_p99_ms": e.disk.as_ref().and_then(|d| d.backend_commit_p99).map(|d| d.as_secs_f64() * 1000.0),
            "wal_fsyncs": e.disk.as_ref().map(|d| d.fsyncs),
        })).collect::<Vec<_>>(),
    });
    let behind = raft_lag(endpoints);
    // A member too far behind fails /health's read: its lag is the reason.
    let failing: Vec<String> = endpoints
        .iter()
        .filter_map(|e| {
            let problem = e.problem.as_ref()?;
            Some(match behind(e) {
                Some(lag) => format!("{}: {problem}; {}", e.url, lag_line(e, lag)),
                None => format!("{}: {problem}", e.url),
            })
        })
        .collect();
    if !failing.is_empty() {
        return Outcome::critical(format!("etcd {}", failing.join("; "))).with_details(details);
    }
    let alarms: Vec<String> = endpoints
        .iter()
        .flat_map(|e| e.alarms.iter().cloned())
        .collect();
    if !alarms.is_empty() {
        return Outcome::critical(format!("etcd {}", alarm_advice(&alarms))).with_details(details);
    }
    let full: Vec<&Endpoint> = endpoints.iter().filter(|e| !e.health_only).collect();
    if let Some(leaderless) = full.iter().find(|e| e.leader.is_none()) {
        return Outcome::critical(format!("etcd {}: no leader", leaderless.url))
            .with_details(details);
    }
    let concerns = concerns(endpoints, config);
    if !concerns.is_empty() {
        let said: Vec<&str> = concerns.iter().map(|(_, line)| line.as_str()).collect();
        let status = if concerns.iter().any(|(critical, _)| *critical) {
            Status::Critical
        } else {
            Status::Warning
        };
        return Outcome::new(status, said.join("; ")).with_details(details);
    }
    let slowest = full.iter().filter_map(|e| e.read).max();
    let healthy = format!("{} etcd endpoint(s) healthy", endpoints.len());
    let disk = endpoints
        .iter()
        .filter_map(|e| e.disk.as_ref()?.wal_fsync_p99)
        .max()
        .map_or_else(String::new, |p99| {
            format!(", WAL fsync p99 {}", metrics::millis(p99))
        });
    let slow_read = config.slow_read;
    match (slowest, full.first().and_then(|e| e.leader.as_deref())) {
        (Some(read), _) if read > slow_read => Outcome::warning(format!(
            "{healthy}, but a read took {:.0} ms (over {} ms)",
            read.as_secs_f64() * 1000.0,
            slow_read.as_millis()
        ))
        .with_details(details),
        (Some(read), Some(leader)) => Outcome::ok(format!(
            "{healthy}, leader {leader}, read {:.1} ms{disk}",
            read.as_secs_f64() * 1000.0
        ))
        .with_details(details),
        _ => Outcome::ok(format!("{healthy} (/health only){disk}")).with_details(details),
    }
}

/// What is wrong short of an outage: a slow disk, leader changes, failed
/// proposals, a member behind, a database near its quota. `(critical, line)`.
fn concerns(endpoints: &[Endpoint], config: &EtcdConfig) -> Vec<(bool, String)> {
    let several = endpoints.len() > 1;
    let mut found = Vec::new();
    for endpoint in endpoints {
        let Some(disk) = &endpoint.disk else {
            continue;
        };
        for (critical, line) in metrics::judge_disk(disk, &config.disk, endpoint.interval_known) {
            let line = if several {
                format!("{line} ({})", endpoint.url)
            } else {
                line
            };
            found.push((critical, line));
        }
    }
    let behind = raft_lag(endpoints);
    for endpoint in endpoints {
        if let Some(lag) = behind(endpoint) {
            found.push((false, lag_line(endpoint, lag)));
        }
        let quota = endpoint.scrape.as_ref().and_then(|s| s.quota_bytes);
        if let (Some(size), Some(quota)) = (endpoint.db_size, quota)
            && quota > 0.0
            && size as f64 / quota >= DB_QUOTA_WARNING
        {
            found.push((
                false,
                format!(
                    "etcd's database is {:.0}% of its quota ({} of {} MiB): compact and \
                     defragment before it raises NOSPACE",
                    100.0 * size as f64 / quota,
                    size >> 20,
                    (quota as u64) >> 20
                ),
            ));
        }
    }
    found
}

/// How many raft entries an endpoint's member is behind the most advanced
/// one, when that is more than [`RAFT_LAG_LIMIT`].
fn raft_lag(endpoints: &[Endpoint]) -> impl Fn(&Endpoint) -> Option<u64> {
    let ahead = endpoints.iter().filter_map(|e| e.raft_index).max();
    move |endpoint| {
        let lag = ahead? - endpoint.raft_index?;
        (lag > RAFT_LAG_LIMIT).then_some(lag)
    }
}

fn lag_line(endpoint: &Endpoint, lag: u64) -> String {
    format!(
        "etcd member {} ({}) is {lag} raft entries behind: its disk or its network to the \
         leader cannot keep up",
        endpoint.member.as_deref().unwrap_or("?"),
        endpoint.url,
    )
}

fn healthy(body: &Value) -> bool {
    // etcd answers "true" as a string; accept a boolean too.
    matches!(&body["health"], Value::String(s) if s == "true")
        || body["health"] == Value::Bool(true)
}

/// etcd's JSON gateway renders 64-bit numbers as strings; accept numbers too.
fn number(value: &Value) -> Option<u64> {
    match value {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// A member id in hex, as `etcdctl member list` and etcd's own log show
/// it (the gateway renders it in decimal); `None` for 0, "no member".
fn member_id(value: &Value) -> Option<String> {
    number(value)
        .filter(|&id| id != 0)
        .map(|id| format!("{id:x}"))
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
        let config = EtcdConfig::default();
        let mut nospace = endpoint("https://a:2379");
        nospace.alarms = vec!["NOSPACE on member 1".to_owned()];
        let verdict = judge(&[endpoint("https://b:2379"), nospace], &config);
        assert_eq!(verdict.status, crate::Status::Critical);
        assert!(
            verdict
                .message
                .starts_with("etcd alarm NOSPACE on member 1: the database reached its quota"),
            "{}",
            verdict.message
        );

        let mut leaderless = endpoint("https://a:2379");
        leaderless.leader = None;
        assert_eq!(
            judge(&[leaderless], &config).message,
            "etcd https://a:2379: no leader"
        );

        let mut sluggish = endpoint("https://a:2379");
        sluggish.read = Some(Duration::from_millis(900));
        let verdict = judge(&[sluggish], &config);
        assert_eq!(verdict.status, crate::Status::Warning);
        assert!(verdict.message.contains("900 ms"), "{}", verdict.message);

        let fine = judge(&[endpoint("https://a:2379")], &config);
        assert_eq!(fine.status, crate::Status::Ok);
        assert_eq!(
            fine.message,
            "1 etcd endpoint(s) healthy, leader 8e9e05c52164694d, read 2.0 ms"
        );
    }

    #[test]
    fn a_member_behind_and_a_database_near_its_quota_are_named() {
        let config = EtcdConfig::default();
        let mut leader = endpoint("https://a:2379");
        leader.raft_index = Some(50_000);
        let mut follower = endpoint("https://b:2379");
        follower.member = Some("8e9e".to_owned());
        follower.raft_index = Some(45_000);
        follower.db_size = Some(1_800 << 20);
        follower.scrape = Some(metrics::parse(
            "etcd_server_quota_backend_bytes 2.147483648e+09\n",
        ));
        let verdict = judge(&[leader, follower], &config);
        assert_eq!(verdict.status, Status::Warning);
        assert_eq!(
            verdict.message,
            "etcd member 8e9e (https://b:2379) is 5000 raft entries behind: its disk or its \
             network to the leader cannot keep up; etcd's database is 88% of its quota (1800 of \
             2048 MiB): compact and defragment before it raises NOSPACE"
        );
    }

    #[test]
    fn member_ids_are_shown_in_hex_as_etcdctl_shows_them() {
        assert_eq!(
            member_id(&json!("9511565175137368553")).as_deref(),
            Some("83ffde21e209f9e9")
        );
        assert_eq!(member_id(&json!(255)).as_deref(), Some("ff"));
        assert_eq!(member_id(&json!("0")), None, "0 is no leader");
        assert_eq!(member_id(&json!(null)), None);
    }

    #[test]
    fn an_unhealthy_member_behind_the_leader_is_named_by_its_lag() {
        let mut leader = endpoint("https://a:2379");
        leader.raft_index = Some(9_000);
        let mut lagging = endpoint("https://b:2379");
        lagging.member = Some("8e9e".to_owned());
        lagging.raft_index = Some(800);
        lagging.problem = Some("reports unhealthy (no alarm is raised)".to_owned());
        let verdict = judge(&[leader, lagging], &EtcdConfig::default());
        assert_eq!(verdict.status, Status::Critical);
        assert_eq!(
            verdict.message,
            "etcd https://b:2379: reports unhealthy (no alarm is raised); etcd member 8e9e \
             (https://b:2379) is 8200 raft entries behind: its disk or its network to the leader \
             cannot keep up"
        );
    }
}
