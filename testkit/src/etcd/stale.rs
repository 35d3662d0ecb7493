//! Names of fixture etcds, and removal of those left behind by killed test runs.
//!
//! `Drop` stops an [`super::Etcd`] even when its test panics, but a test process killed
//! outright (a CI timeout's SIGKILL) leaves etcd running forever, holding ports and its
//! temporary directory with ~128 MB of preallocated WAL files. As with the network lab's
//! namespaces, every etcd is named after the test process that owns it
//! (`--name=stl-etcd-<pid>-<seq>`), and the next fixture removes those whose owner is gone.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Prefix of every member name we give etcd; no other process is ever signalled.
const NAME_PREFIX: &str = "stl-etcd-";
/// Prefix of every fixture's temporary directory; no other directory is ever removed.
pub(crate) const DIR_PREFIX: &str = "starling-etcd-";

/// Numbers fixtures within one process, so parallel test threads get distinct names.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh `(member name, temporary directory prefix)` owned by this process.
pub(crate) fn next_names() -> (String, String) {
    let pid = std::process::id();
    let seq = NEXT.fetch_add(1, Ordering::Relaxed);
    (
        format!("{NAME_PREFIX}{pid}-{seq}"),
        format!("{DIR_PREFIX}{pid}-{seq}-"),
    )
}

/// The owner pid in a member name of ours, or `None` if `name` is not ours.
fn owner_pid(name: &str) -> Option<u32> {
    let (pid, seq) = name.strip_prefix(NAME_PREFIX)?.split_once('-')?;
    let _seq: u32 = seq.parse().ok()?;
    pid.parse().ok()
}

/// SIGKILLs fixture etcds whose owning test process is gone and removes their temporary
/// directories. Best effort: errors are ignored, since another test process may be removing
/// the same leftover.
///
/// A zombie owner counts as gone; a reused owner pid counts as alive, which errs towards
/// keeping a leftover rather than killing an etcd in use. Assumes test processes share one
/// pid namespace.
pub(crate) fn reap() {
    let Ok(entries) = fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        // Unreadable or empty (kernel threads, zombies, processes already gone): not ours.
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let Some(data_dir) = leftover_data_dir(&cmdline) else {
            continue;
        };
        // `kill` on a pid we just read could hit a new process if this one exited in
        // between; that process would need our member name in its arguments too, which
        // only an etcd of ours has.
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        if let Some(tmp) = Path::new(&data_dir).parent()
            && tmp
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(DIR_PREFIX))
        {
            let _ = fs::remove_dir_all(tmp);
        }
    }
}

/// Whether process `pid` exists and can still run code. A zombie cannot (it only waits for
/// its parent to reap it, which a killed test's parent may never do), and its pid cannot be
/// reused while it lingers, so its etcds are leftovers.
fn owner_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) state ...`; comm may contain spaces and parentheses, the state follows the
    // last `)`.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X'))
}

/// For the NUL-separated command line of an `etcd` of ours whose owner has exited, its
/// `--data-dir`; `None` for any other process.
fn leftover_data_dir(cmdline: &[u8]) -> Option<String> {
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let program = args.first()?;
    if Path::new(program).file_name()? != "etcd" {
        return None;
    }
    let owner = args
        .iter()
        .find_map(|a| a.strip_prefix("--name="))
        .and_then(owner_pid)?;
    if owner_alive(owner) {
        return None;
    }
    args.iter()
        .find_map(|a| a.strip_prefix("--data-dir="))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_owner_pid() {
        let (name, dir) = next_names();
        assert_eq!(owner_pid(&name), Some(std::process::id()));
        assert!(dir.starts_with(DIR_PREFIX));
        for foreign in ["default", "stl-etcd-x-1", "stl-etcd-12", "stl-1-0-h0"] {
            assert_eq!(owner_pid(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn only_our_etcds_with_a_dead_owner_are_leftovers() {
        // Pid 0 never names a process in /proc; our own pid always does.
        let cmd = |prog: &str, owner: u32| {
            format!("{prog}\0--name=stl-etcd-{owner}-3\0--data-dir=/tmp/starling-etcd-x/data\0")
        };
        assert_eq!(
            leftover_data_dir(cmd("/usr/bin/etcd", 0).as_bytes()).as_deref(),
            Some("/tmp/starling-etcd-x/data")
        );
        let me = std::process::id();
        assert_eq!(leftover_data_dir(cmd("etcd", me).as_bytes()), None);
        assert_eq!(leftover_data_dir(cmd("etcdctl", 0).as_bytes()), None);
        assert_eq!(leftover_data_dir(b"etcd\0--name=default\0"), None);
    }

    #[test]
    fn running_processes_are_alive_and_missing_ones_are_not() {
        assert!(owner_alive(std::process::id()));
        assert!(!owner_alive(0));
    }
}
