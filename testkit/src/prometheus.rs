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
