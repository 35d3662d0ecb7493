//! Random packet loss without netem: an nft rule in the receiving host's own table.
//!
//! The kernels this project is tested on have no `sch_netem`, but every one with nf_tables
//! has `numgen random`: `iifname "eth0" numgen random mod 100 < N drop` in an input-hook
//! chain drops each arriving IP packet independently with probability N %. The rule sits in
//! its own chain (`loss`) of table `inet stl_lab`, next to the partition chain, so
//! [`NetLab::heal`] leaves loss in place and [`NetLab::clear_loss`] leaves partitions.
//!
//! Only packets arriving on `eth0` are dropped: a host's traffic to itself (loopback, or to
//! its own address) and ARP are never lossy, just as with loss on a real cable.

use super::commands::{exec_in, run};
use super::firewall::{TABLE, delete_chain_script, ensure_chain_script};
use super::{LabError, NetLab};

/// The chain holding the loss rule.
const CHAIN: &str = "loss";
/// After the partition chain (priority 0); the order does not change what is dropped.
const PRIORITY: i32 = 10;

impl NetLab {
    /// Drops `percent` % of the IP packets *arriving at* `host` from the lab switch, each
    /// independently at random (ingress, in `host`'s own nft table). Replaces any loss set
    /// before on `host`; `0` removes it. Unaffected by [`NetLab::heal`].
    ///
    /// Loss is per receiving host, so it describes every path *into* `host`; what `host`
    /// sends is not affected. Setting the same loss on every host gives symmetric loss on
    /// every path: each datagram crosses exactly one lossy hop (its receiver's ingress), so
    /// it is lost with probability `percent` %, and a request/response exchange (two hops)
    /// fails with probability `1 - (1 - p)²`.
    ///
    /// Panics if `host` is out of range or `percent > 100`.
    pub fn loss(&self, host: usize, percent: u8) -> Result<(), LabError> {
        assert!(percent <= 100, "loss of {percent}% is not a percentage");
        if percent == 0 {
            return self.clear_loss(host);
        }
        run(exec_in(self.netns(host), "nft", &[loss_script(percent)]))?;
        Ok(())
    }

    /// Removes the packet loss set with [`NetLab::loss`] on `host` (a no-op if none is set);
    /// partitions stay.
    ///
    /// Panics if `host` is out of range.
    pub fn clear_loss(&self, host: usize) -> Result<(), LabError> {
        let script = delete_chain_script(CHAIN, PRIORITY);
        run(exec_in(self.netns(host), "nft", &[script]))?;
        Ok(())
    }
}

/// nft commands (one atomic transaction) that create the loss chain if needed and replace
/// its contents with one rule dropping `percent` % (1..=100) of the packets arriving on
/// `eth0`. The `counter` lets a failing test show how many packets the rule dropped
/// (`nft list ruleset`).
fn loss_script(percent: u8) -> String {
    // `numgen random mod 100` is 0..=99, and nft rejects the always-true `< 100`.
    let dice = if percent >= 100 {
        String::new()
    } else {
        format!("numgen random mod 100 < {percent} ")
    };
    format!(
        "{}; flush chain {TABLE} {CHAIN}; \
         add rule {TABLE} {CHAIN} iifname \"eth0\" {dice}counter drop",
        ensure_chain_script(CHAIN, PRIORITY)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_replaces_the_loss_rule_only() {
        let s = loss_script(30);
        assert!(
            s.contains("add chain inet stl_lab loss { type filter hook input priority 10;"),
            "{s}"
        );
        assert!(s.contains("flush chain inet stl_lab loss;"), "{s}");
        assert!(
            s.ends_with(
                "add rule inet stl_lab loss iifname \"eth0\" numgen random mod 100 < 30 counter drop"
            ),
            "{s}"
        );
        assert!(!s.contains("partition"), "{s}");
    }

    #[test]
    fn full_loss_drops_everything_arriving() {
        let s = loss_script(100);
        assert!(
            s.ends_with("add rule inet stl_lab loss iifname \"eth0\" counter drop"),
            "{s}"
        );
        assert!(loss_script(99).contains("numgen random mod 100 < 99 counter drop"));
    }
}
