//! Debian's `promtool` (package `prometheus`), for tests that hold what
//! starling exports and ships to the real tool's judgement: the metrics
//! linter, and the checker and unit-test runner of the shipped rules.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Set to 1 (as `scripts/test` does as root, after installing the
/// package) to fail rather than skip when `promtool` is missing.
const REQUIRE_VAR: &str = "STARLING_REQUIRE_PROMETHEUS";
const PROGRAM: &str = "promtool";

/// The `promtool` on `PATH`.
#[derive(Debug)]
pub struct Promtool(());

/// `promtool`, or `None` after printing why when it is not installed;
/// panics instead when `STARLING_REQUIRE_PROMETHEUS=1`.
pub fn promtool_or_skip() -> Option<Promtool> {
    let installed = Command::new(PROGRAM)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if installed {
        return Some(Promtool(()));
    }
    let reason = "promtool is not installed (Debian: prometheus)";
    if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
        panic!("{REQUIRE_VAR}=1 but {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

impl Promtool {
    /// `promtool check metrics` on an exposition: `Ok` with what the
    /// linter printed (empty when it found nothing), `Err` when it could
    /// not parse it.
    pub fn check_metrics(&self, exposition: &str) -> Result<String, String> {
        let mut child = Command::new(PROGRAM)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {PROGRAM}: {e}"))?;
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(exposition.as_bytes())
            .map_err(|e| format!("writing to {PROGRAM}: {e}"))?;
        let output = child
            .wait_with_output()
            .map_err(|e| format!("waiting for {PROGRAM}: {e}"))?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // It exits 3 for lint findings and 1 for a text it cannot parse.
        match output.status.code() {
            Some(0 | 3) => Ok(said.trim().to_owned()),
            _ => Err(said),
        }
    }

    /// `promtool check rules FILE`: its report, `Err` when the rules are
    /// invalid.
    pub fn check_rules(&self, rules: &Path) -> Result<String, String> {
        self.run(&["check", "rules", &rules.display().to_string()])
    }

    /// `promtool test rules FILE`: its report, `Err` when a unit test fails
    /// (the report says which alert, at which time, expected what).
    pub fn test_rules(&self, tests: &Path) -> Result<String, String> {
        self.run(&["test", "rules", &tests.display().to_string()])
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new(PROGRAM)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {PROGRAM}: {e}"))?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if output.status.success() {
            Ok(said)
        } else {
            Err(said)
        }
    }
}

/// How long [`Prometheus::start`] waits for `/-/ready`: it loads its rules
/// and opens an empty database in well under a second.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// A real Prometheus server (Debian's `prometheus`) on 127.0.0.1 that
/// scrapes the given agents every second as Prometheus does in a cluster
/// (asking for OpenMetrics) and evaluates rule files every second. Killed
/// on drop; its database and configuration go with its directory.
#[derive(Debug)]
pub struct Prometheus {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// A Prometheus, or `None` after printing why when it is not installed;
/// panics instead when `STARLING_REQUIRE_PROMETHEUS=1`.
pub fn prometheus_or_skip(
    targets: &[std::net::SocketAddr],
    rule_files: &[&Path],
) -> Option<Prometheus> {
    match Prometheus::start(targets, rule_files) {
        Ok(prometheus) => Some(prometheus),
        Err(PrometheusError::Missing) => {
            let reason = "prometheus is not installed (Debian: prometheus)";
            if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
                panic!("{REQUIRE_VAR}=1 but {reason}");
            }
            eprintln!("SKIPPED: {reason}");
            None
        }
        Err(error) => panic!("{error}"),
    }
}

/// Why a [`Prometheus`] did not start.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("prometheus is not installed")]
    Missing,
    #[error("{0}")]
    Setup(String),
    #[error("prometheus was not ready within {READY_TIMEOUT:?}; its log ends:\n{0}")]
    NotReady(String),
}

impl Prometheus {
    pub fn start(
        targets: &[std::net::SocketAddr],
        rule_files: &[&Path],
    ) -> Result<Prometheus, PrometheusError> {
        let setup = |what: &str| {
            let what = what.to_owned();
            move |e: std::io::Error| PrometheusError::Setup(format!("{what}: {e}"))
        };
        let dir = tempfile::Builder::new()
            .prefix("starling-prometheus-")
            .tempdir()
            .map_err(setup("a temporary directory"))?;
        let quoted = |items: Vec<String>| {
            items
                .iter()
                .map(|item| format!("'{item}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [{}]\n\
             scrape_configs:\n  - job_name: starling\n    static_configs:\n      - targets: [{}]\n\
             {RELABEL_POD}",
            quoted(rule_files.iter().map(|p| p.display().to_string()).collect()),
            quoted(targets.iter().map(ToString::to_string).collect()),
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).map_err(setup("writing prometheus.yml"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(setup("picking a port"))?
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log"))
            .map_err(setup("the log file"))?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(setup("the log file"))?)
            .stderr(log)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => PrometheusError::Missing,
                _ => PrometheusError::Setup(format!("starting prometheus: {e}")),
            })?;
        let prometheus = Prometheus { child, port, dir };
        let ready = crate::wait_until(READY_TIMEOUT, std::time::Duration::from_millis(100), || {
            ready(port)
        });
        if !ready {
            return Err(PrometheusError::NotReady(prometheus.log_tail()));
        }
        Ok(prometheus)
    }

    /// `http://127.0.0.1:PORT`, for its HTTP API (`/api/v1/query`, …).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last lines of what it logged.
    pub fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// Scraped series carry `pod`, as the PodMonitor's do (the rules join on
/// it): here the target's address stands for the pod.
const RELABEL_POD: &str = "    relabel_configs:\n      - source_labels: [__address__]\n        \
     target_label: pod\n";

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("prometheus fixture: end of its log:\n{}", self.log_tail());
        }
    }
}

/// Whether `GET /-/ready` answers 200, over a bare socket (HTTP/1.0: the
/// server closes the connection after the answer).
fn ready(port: u16) -> bool {
    use std::io::Read;
    let answer = (|| -> std::io::Result<String> {
        let timeout = std::time::Duration::from_secs(1);
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(b"GET /-/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut answer = String::new();
        stream.take(4096).read_to_string(&mut answer)?;
        Ok(answer)
    })();
    answer.is_ok_and(|a| {
        a.lines()
            .next()
            .is_some_and(|status| status.contains(" 200 "))
    })
}
