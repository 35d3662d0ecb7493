//! Partitions: nft rules in each host namespace's own table.
//!
//! Rules live in table `inet stl_lab` inside the host namespaces only; the root namespace's
//! tables are never read or written. Traffic is dropped at the *receiver's* input hook: the
//! sender's `sendto` still succeeds and the packet vanishes on the wire, which is what a real
//! partition looks like to an agent (dropping at the sender's output hook would instead make
//! `sendto` fail with EPERM, a signal no real network gives). ARP is not IP traffic and keeps
//! flowing, so the unblocked direction of a one-way partition still works.

use std::net::Ipv4Addr;

use super::commands::{exec_in, run};
use super::{LabError, NetLab};

const TABLE: &str = "inet stl_lab";

impl NetLab {
    /// Drops all IP traffic between `side_a` and `side_b`, in both directions. Partitions
    /// accumulate until [`NetLab::heal`].
    ///
    /// Panics if a host index is out of range or appears on both sides.
    pub fn partition(&self, side_a: &[usize], side_b: &[usize]) -> Result<(), LabError> {
        self.partition_one_way(side_a, side_b)?;
        self.partition_one_way(side_b, side_a)
    }

    /// Drops IP packets sent by hosts in `from` to hosts in `to`; `to` → `from` still flows
    /// (so request/response protocols see the replies lost, or the requests, depending on
    /// direction). Accumulates until [`NetLab::heal`].
    ///
    /// Panics if a host index is out of range or appears on both sides.
    pub fn partition_one_way(&self, from: &[usize], to: &[usize]) -> Result<(), LabError> {
        self.check_sides(from, to);
        if from.is_empty() {
            return Ok(());
        }
        let sources: Vec<Ipv4Addr> = from.iter().map(|&h| self.addr(h)).collect();
        for &host in to {
            run(exec_in(
                self.netns(host),
                "nft",
                &[drop_from_script(&sources)],
            ))?;
        }
        Ok(())
    }

    /// Removes every partition (deletes the lab table in every host namespace).
    pub fn heal(&self) -> Result<(), LabError> {
        for host in 0..self.hosts() {
            // `add` first makes the `delete` succeed whether or not a partition was ever set.
            let script = format!("add table {TABLE}; delete table {TABLE}");
            run(exec_in(self.netns(host), "nft", &[script]))?;
        }
        Ok(())
    }

    fn check_sides(&self, a: &[usize], b: &[usize]) {
        for &h in a.iter().chain(b) {
            assert!(
                h < self.hosts(),
                "host {h} out of range (lab has {})",
                self.hosts()
            );
        }
        // A host cut off from itself would lose its own loopback-routed traffic to its address.
        assert!(
            !a.iter().any(|h| b.contains(h)),
            "host on both sides of a partition: {a:?} / {b:?}"
        );
    }
}

/// nft commands (one argument, `;`-separated) that create the table and input chain if
/// needed and add a rule dropping packets from `sources`.
fn drop_from_script(sources: &[Ipv4Addr]) -> String {
    let set = sources
        .iter()
        .map(Ipv4Addr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "add table {TABLE}; \
         add chain {TABLE} input {{ type filter hook input priority 0; policy accept; }}; \
         add rule {TABLE} input ip saddr {{ {set} }} drop"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_drops_listed_sources_on_input() {
        let s = drop_from_script(&[Ipv4Addr::new(10, 213, 5, 1), Ipv4Addr::new(10, 213, 5, 3)]);
        assert!(s.contains("hook input"));
        assert!(
            s.ends_with("ip saddr { 10.213.5.1, 10.213.5.3 } drop"),
            "{s}"
        );
    }
}
