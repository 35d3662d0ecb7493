//! Partitions: nft rules in each host namespace's own table.
//!
//! Rules live in table `inet stl_lab` inside the host namespaces only; the root namespace's
//! tables are never read or written. Traffic is dropped at the *receiver's* input hook: the
//! sender's `sendto` still succeeds and the packet vanishes on the wire, which is what a real
//! partition looks like to an agent (dropping at the sender's output hook would instead make
//! `sendto` fail with EPERM, a signal no real network gives). ARP is not IP traffic and keeps
//! flowing, so the unblocked direction of a one-way partition still works.
//!
//! Partitions have their own chain (`partition`); random loss (see `loss.rs`) has another
//! (`loss`) in the same table, so healing partitions and clearing loss never undo each other.

use std::net::Ipv4Addr;

use super::commands::{exec_in, run};
use super::{LabError, NetLab};

/// The lab's nft table in every host namespace.
pub(crate) const TABLE: &str = "inet stl_lab";

/// The chain holding partition rules.
const CHAIN: &str = "partition";

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

    /// Removes every partition (deletes the partition chain in every host namespace).
    /// Packet loss set with [`NetLab::loss`] stays.
    pub fn heal(&self) -> Result<(), LabError> {
        let script = delete_chain_script(CHAIN, 0);
        for host in 0..self.hosts() {
            run(exec_in(
                self.netns(host),
                "nft",
                std::slice::from_ref(&script),
            ))?;
        }
        Ok(())
    }

    pub(crate) fn check_sides(&self, a: &[usize], b: &[usize]) {
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

/// nft commands that create the table and the input-hook base chain `chain` (at `priority`)
/// if they do not exist yet. Creating an existing chain with the same definition is a no-op.
pub(crate) fn ensure_chain_script(chain: &str, priority: i32) -> String {
    format!(
        "add table {TABLE}; \
         add chain {TABLE} {chain} {{ type filter hook input priority {priority}; policy accept; }}"
    )
}

/// nft commands that delete `chain` with its rules, succeeding whether or not it existed
/// (it is created first, so the `delete` always has something to delete).
pub(crate) fn delete_chain_script(chain: &str, priority: i32) -> String {
    format!(
        "{}; delete chain {TABLE} {chain}",
        ensure_chain_script(chain, priority)
    )
}

/// nft commands (one argument, `;`-separated) that create the table and partition chain if
/// needed and add a rule dropping packets from `sources`.
fn drop_from_script(sources: &[Ipv4Addr]) -> String {
    let set = sources
        .iter()
        .map(Ipv4Addr::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{}; add rule {TABLE} {CHAIN} ip saddr {{ {set} }} drop",
        ensure_chain_script(CHAIN, 0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_drops_listed_sources_on_input() {
        let s = drop_from_script(&[Ipv4Addr::new(10, 213, 5, 1), Ipv4Addr::new(10, 213, 5, 3)]);
        assert!(s.contains("add chain inet stl_lab partition { type filter hook input"));
        assert!(
            s.ends_with("add rule inet stl_lab partition ip saddr { 10.213.5.1, 10.213.5.3 } drop"),
            "{s}"
        );
    }

    #[test]
    fn heal_deletes_only_the_partition_chain() {
        let s = delete_chain_script(CHAIN, 0);
        assert!(s.ends_with("delete chain inet stl_lab partition"), "{s}");
        assert!(!s.contains("delete table"), "{s}");
    }
}
