//! The network-namespace lab: K "hosts" on one private switch, for tests that run real
//! `starling` processes and inject partitions and packet loss (both with `nft`), and delay
//! with `tc netem` where the kernel has it.
//!
//! Constraints this module keeps (a sandbox watches the machine's traffic):
//! - every interface, address, nft table and qdisc lives in a namespace the lab created; the
//!   root namespace's interfaces, loopback, routes and nft tables are never touched;
//! - lab addresses are 10.213.N.0/24, which exists only inside those namespaces;
//! - `Drop` tears everything down (processes first, then namespaces), also when a test
//!   panics, and `NetLab::new` removes leftovers of test processes that no longer exist.

mod commands;
mod error;
mod firewall;
mod loss;
mod naming;
mod netem;
mod overlay;
mod process;
mod skip;
mod teardown;
mod topology;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::AtomicU32;

pub use error::LabError;
pub use process::LabProcess;
pub use skip::{lab_or_skip, skip_or_fail, skip_unsupported};

use naming::LabId;

/// A running lab. Dropping it kills every process in its namespaces and deletes them.
#[derive(Debug)]
pub struct NetLab {
    id: LabId,
    switch_ns: String,
    host_ns: Vec<String>,
    /// Namespaces that exist right now, in creation order; exactly what `Drop` deletes.
    created: Vec<String>,
    /// Logs of spawned processes; removed on drop unless the thread is panicking.
    dir: tempfile::TempDir,
    /// Numbers log files so that restarting a program on a host never overwrites a log.
    spawn_seq: AtomicU32,
}

impl NetLab {
    /// Builds a lab of `hosts` hosts (1..=250), host `i` at 10.213.N.(i+1)/24 on `eth0`.
    ///
    /// Returns [`LabError::NotPermitted`] (not root, `ip` missing) or
    /// [`LabError::Unsupported`] (no veth/bridge in the kernel) when this machine cannot host
    /// a lab; [`lab_or_skip`] turns both into a skip.
    pub fn new(hosts: usize) -> Result<NetLab, LabError> {
        assert!(
            (1..=250).contains(&hosts),
            "a lab has 1..=250 hosts, not {hosts}"
        );
        teardown::remove_stale()?;
        let id = LabId::next();
        let dir = tempfile::Builder::new()
            .prefix(&format!("starling-lab-{}-{}-", id.pid, id.labno))
            .tempdir()?;
        let mut lab = NetLab {
            id,
            switch_ns: id.switch_ns(),
            host_ns: (0..hosts).map(|h| id.host_ns(h)).collect(),
            created: Vec::new(),
            dir,
            spawn_seq: AtomicU32::new(0),
        };
        // On error `lab` is dropped here, which deletes whatever `build` had created.
        lab.build()?;
        Ok(lab)
    }

    /// Number of hosts.
    pub fn hosts(&self) -> usize {
        self.host_ns.len()
    }

    /// Address of `host` on the lab switch. Panics if `host` is out of range.
    pub fn addr(&self, host: usize) -> Ipv4Addr {
        assert!(
            host < self.hosts(),
            "host {host} out of range (lab has {})",
            self.hosts()
        );
        self.id.host_addr(host)
    }

    /// The lab subnet as (network address, prefix length), e.g. (10.213.7.0, 24).
    pub fn subnet(&self) -> (Ipv4Addr, u8) {
        (Ipv4Addr::new(10, 213, self.id.subnet_octet(), 0), 24)
    }

    /// Name of `host`'s network namespace (for `ip netns exec`). Panics if out of range.
    pub fn netns(&self, host: usize) -> &str {
        assert!(
            host < self.hosts(),
            "host {host} out of range (lab has {})",
            self.hosts()
        );
        &self.host_ns[host]
    }

    /// Name of the switch namespace, which holds only the bridge and the hosts' cables.
    pub fn switch_netns(&self) -> &str {
        &self.switch_ns
    }

    /// Directory of the lab's process logs; tests may also keep data files here. Removed
    /// with the lab, except when the lab is dropped during a panic (its path is then printed
    /// so the logs of a failed test can be read).
    pub fn log_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a short command inside `host`'s namespace and returns its output whatever its
    /// exit status (bounded by the same timeout as the lab's own commands), e.g.
    /// `lab.run_in(1, "tc", &["qdisc", "show", "dev", "eth0"])`. Panics if out of range.
    pub fn run_in(&self, host: usize, program: &str, args: &[&str]) -> Result<Output, LabError> {
        commands::output(commands::exec_in(self.netns(host), program, args))
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        // Hosts before the switch (reverse creation order): each deletion kills that
        // namespace's processes first, and the veth cables vanish with their namespaces.
        for ns in self.created.drain(..).rev() {
            if let Err(e) = teardown::destroy_namespace(&ns) {
                eprintln!("starling lab: could not remove namespace {ns}: {e}");
            }
        }
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "starling lab: keeping logs of failed test in {}",
                self.dir.path().display()
            );
        }
    }
}
