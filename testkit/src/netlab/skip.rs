//! Skipping lab tests where a lab cannot run, without ever skipping silently in CI.

use super::NetLab;

/// Environment variable that turns a skip into a failure (CI runs as root and sets it to 1).
const REQUIRE_VAR: &str = "STARLING_REQUIRE_NETNS";

/// For tests: `Some(lab)`, or `None` after printing `SKIPPED: <reason>` to stderr when this
/// machine cannot host a lab (not root, tools or kernel features missing).
///
/// Panics instead of skipping if `STARLING_REQUIRE_NETNS=1`, so CI can never silently skip;
/// panics on any other error, which points at a real problem rather than the environment.
pub fn lab_or_skip(hosts: usize) -> Option<NetLab> {
    match NetLab::new(hosts) {
        Ok(lab) => Some(lab),
        Err(e) if e.is_environment_limit() => {
            skip_or_fail(&e.to_string());
            None
        }
        Err(e) => panic!("network lab setup failed: {e}"),
    }
}

/// Prints `SKIPPED: <reason>` to stderr, or panics if `STARLING_REQUIRE_NETNS=1`. For a test
/// that got its lab but then hits an environment limit, e.g. [`NetLab::netem`] returning
/// [`super::LabError::Unsupported`] on a kernel without netem; return from the test after it.
pub fn skip_or_fail(reason: &str) {
    if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
        panic!("{REQUIRE_VAR}=1 but the test cannot run here: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
}
