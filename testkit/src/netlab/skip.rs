//! Skipping lab tests where a lab cannot run, without ever skipping silently in CI.
//!
//! Two kinds of "cannot run" are kept apart:
//! - *no lab at all* (not root, `ip`/`nft` missing, no veth or bridge): CI is set up to
//!   provide namespaces, so with `STARLING_REQUIRE_NETNS=1` this is a failure
//!   ([`lab_or_skip`], [`skip_or_fail`]);
//! - *an optional kernel feature is missing* (`sch_netem`): CI runs on a kernel it cannot
//!   change or load modules into, so this is always a skip ([`skip_unsupported`]).

use super::NetLab;

/// Environment variable that turns a missing lab into a failure (CI runs as root and sets
/// it to 1).
const REQUIRE_VAR: &str = "STARLING_REQUIRE_NETNS";

/// For tests: `Some(lab)`, or `None` after printing `SKIPPED: <reason>` to stderr when this
/// machine cannot host a lab (not root, tools or the veth/bridge kernel features missing).
///
/// Panics instead of skipping if `STARLING_REQUIRE_NETNS=1`, so CI can never silently skip;
/// panics on any other error, which points at a real problem rather than the environment.
///
/// Cheap enough to call from every test of many test binaries running in parallel: besides
/// building the lab it runs one `ip netns list`, and only removes `stl-*` namespaces whose
/// owning test process has exited (never those of a live process, see [`NetLab::new`]).
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
/// that cannot get namespaces by some other route than [`lab_or_skip`]; return from the test
/// after it.
///
/// Not for [`super::LabError::Unsupported`] from [`NetLab::netem`]: a kernel without
/// `sch_netem` is no reason to fail CI; use [`skip_unsupported`] for that.
pub fn skip_or_fail(reason: &str) {
    if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
        panic!("{REQUIRE_VAR}=1 but the test cannot run here: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
}

/// Prints `SKIPPED: <reason>` to stderr, whatever `STARLING_REQUIRE_NETNS` says. For a test
/// that has its lab but needs an optional kernel feature this machine lacks, i.e.
/// [`NetLab::netem`] returned [`super::LabError::Unsupported`]; return from the test after
/// it. The reason should say what goes untested, e.g.
/// `"kernel has no sch_netem; delay injection untested here"`.
pub fn skip_unsupported(reason: &str) {
    eprintln!("SKIPPED: {reason}");
}
