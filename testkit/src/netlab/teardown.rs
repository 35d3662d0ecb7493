//! Removing lab namespaces: the lab's own on drop, and leftovers of killed test runs.
//!
//! Order matters: first every process inside the namespace is killed (a namespace with a
//! live process outlives `ip netns del` invisibly, with its veth and addresses), then the
//! namespace is deleted. Only names with the lab prefix are ever considered.

use std::time::Duration;

use super::LabError;
use super::commands::{netns, output, run};
use super::naming::{PREFIX, owner_pid, parse_netns_list, pid_alive};
use super::process::signal;
use crate::wait_until;

/// How long to wait for killed processes to leave a namespace before deleting it anyway.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Lists all named network namespaces.
pub(crate) fn list_namespaces() -> Result<Vec<String>, LabError> {
    let out = run(netns(&["list"]))?;
    Ok(parse_netns_list(&String::from_utf8_lossy(&out.stdout)))
}

/// Pids of processes whose network namespace is `ns` (never our own process).
fn pids_in(ns: &str) -> Vec<u32> {
    let me = std::process::id();
    match output(netns(&["pids", ns])) {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|&p| p != me)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// SIGKILLs every process inside `ns`, then deletes `ns`.
pub(crate) fn destroy_namespace(ns: &str) -> Result<(), LabError> {
    assert!(
        ns.starts_with(PREFIX),
        "refusing to delete foreign namespace {ns}"
    );
    let pids = pids_in(ns);
    if !pids.is_empty() {
        let _ = signal(&pids, "KILL");
        // Killed children of ours become zombies, which no longer hold the namespace, so this
        // does not depend on the owning `LabProcess` having been reaped yet.
        wait_until(KILL_GRACE, Duration::from_millis(20), || {
            pids_in(ns).is_empty()
        });
    }
    run(netns(&["del", ns]))?;
    Ok(())
}

/// Deletes `stl-*` namespaces whose owning test process is gone (a run killed before its
/// `Drop` could run). Labs of live processes, including parallel test binaries, are left
/// alone. Failures are ignored: another process may be cleaning up the same leftover.
///
/// Safe to run from many test processes at once:
/// - a namespace is removed only if the pid in its name does not exist (`/proc/<pid>`), and
///   every lab is named after the process that owns it, which exists for as long as the lab
///   can be in use; a zombie or a reused pid counts as alive, which errs towards keeping;
/// - this assumes all test processes share one pid namespace, i.e. one machine or container
///   (`/run/netns` is per mount namespace, so containers normally cannot see each other's
///   labs anyway);
/// - two processes removing the same leftover race harmlessly: both kill its processes,
///   one `ip netns del` wins and the other's failure is ignored.
///
/// Its cost is one `ip netns list`, plus the removal of leftovers when there are any.
pub(crate) fn remove_stale() -> Result<(), LabError> {
    for ns in list_namespaces()? {
        if let Some(pid) = owner_pid(&ns)
            && !pid_alive(pid)
        {
            let _ = destroy_namespace(&ns);
        }
    }
    Ok(())
}
