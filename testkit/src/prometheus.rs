//! Debian's `promtool` (package `prometheus`), for tests that hold what
//! starling exports and ships to the real tool's judgement: the metrics
//! linter, and the checker and unit-test runner of the shipped rules.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::served::{Served, ServedError, or_skip};

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
    crate::served::skip_or_fail_missing("promtool (Debian: prometheus)");
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
        crate::tool::report(PROGRAM, args)
    }
}

/// A real Prometheus server (Debian's `prometheus`) on 127.0.0.1 that
/// scrapes the given agents every second as Prometheus does in a cluster
/// (asking for OpenMetrics) and evaluates rule files every second. Killed
/// on drop; its database and configuration go with its directory.
#[derive(Debug)]
pub struct Prometheus(Served);

/// A Prometheus, or `None` after printing why when it is not installed;
/// panics instead when `STARLING_REQUIRE_PROMETHEUS=1`.
pub fn prometheus_or_skip(
    targets: &[std::net::SocketAddr],
    rule_files: &[&Path],
) -> Option<Prometheus> {
    or_skip(Prometheus::start(targets, rule_files), "prometheus")
}

impl Prometheus {
    pub fn start(
        targets: &[std::net::SocketAddr],
        rule_files: &[&Path],
    ) -> Result<Prometheus, ServedError> {
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
        Served::start(
            "prometheus",
            "prometheus.yml",
            &config,
            |dir, config, listen| {
                vec![
                    format!("--config.file={}", config.display()),
                    format!("--storage.tsdb.path={}", dir.join("data").display()),
                    format!("--web.listen-address={listen}"),
                ]
            },
        )
        .map(Prometheus)
    }

    /// `http://127.0.0.1:PORT`, for its HTTP API (`/api/v1/query`, …).
    pub fn url(&self) -> String {
        self.0.url()
    }
}

/// Scraped series carry `pod`, as the PodMonitor's do (the rules join on
/// it): here the target's address stands for the pod.
const RELABEL_POD: &str = "    relabel_configs:\n      - source_labels: [__address__]\n        \
     target_label: pod\n";
