//! A pod-network stand-in: a VXLAN device (`vx0`) in every host namespace, tunnelled over the
//! lab switch, with its own subnet. Gossip stays on `eth0` (the underlay, like a host-network
//! agent); probes bind the overlay address (like pods on a CNI's VXLAN).
//!
//! Overlay faults are nft rules on the *decapsulated* packets (`iifname "vx0"`), in chains of
//! their own in each receiver's `inet stl_lab` table, so they never touch the underlay, and
//! [`NetLab::heal`] / [`NetLab::clear_loss`] leave them alone (and the reverse).

use std::net::Ipv4Addr;

use super::commands::{exec_in, ip_in, run};
use super::firewall::{TABLE, delete_chain_script, ensure_chain_script};
use super::{LabError, NetLab};

const DEVICE: &str = "vx0";
const VNI: &str = "4242";
/// Cuts between overlay addresses.
const CUT_CHAIN: &str = "overlay_cut";
/// Random loss on the overlay.
const LOSS_CHAIN: &str = "overlay_loss";
const CUT_PRIORITY: i32 = 20;
const LOSS_PRIORITY: i32 = 30;

impl NetLab {
    /// Address of `host` on the overlay: 10.214.N.(host+1), N as on the underlay.
    pub fn overlay_addr(&self, host: usize) -> Ipv4Addr {
        let underlay = self.addr(host).octets();
        Ipv4Addr::new(10, 214, underlay[2], underlay[3])
    }

    /// Creates the overlay: `vx0` in every host, with a static forwarding entry to every
    /// other host (no multicast needed), and the host's overlay address on it.
    pub fn add_overlay(&self) -> Result<(), LabError> {
        for host in 0..self.hosts() {
            let ns = self.netns(host);
            let local = self.addr(host).to_string();
            run(ip_in(
                ns,
                &[
                    "link", "add", DEVICE, "type", "vxlan", "id", VNI, "dstport", "4789", "local",
                    &local, "dev", "eth0",
                ],
            ))
            .map_err(LabError::environment_limit)?;
            for other in (0..self.hosts()).filter(|&o| o != host) {
                let remote = self.addr(other).to_string();
                run(exec_in(
                    ns,
                    "bridge",
                    &[
                        "fdb",
                        "append",
                        "00:00:00:00:00:00",
                        "dev",
                        DEVICE,
                        "dst",
                        &remote,
                    ],
                ))?;
            }
            let cidr = format!("{}/24", self.overlay_addr(host));
            run(ip_in(ns, &["addr", "add", &cidr, "dev", DEVICE]))?;
            run(ip_in(ns, &["link", "set", DEVICE, "up"]))?;
        }
        Ok(())
    }

    /// Drops overlay packets from `from` to `to` (one way), at `to`'s `vx0`. The underlay
    /// between the same hosts keeps working. Accumulates until [`NetLab::heal_overlay`].
    pub fn cut_overlay_one_way(&self, from: &[usize], to: &[usize]) -> Result<(), LabError> {
        self.check_sides(from, to);
        if from.is_empty() {
            return Ok(());
        }
        let sources = from
            .iter()
            .map(|&h| self.overlay_addr(h).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        for &host in to {
            let script = format!(
                "{}; add rule {TABLE} {CUT_CHAIN} iifname \"{DEVICE}\" ip saddr {{ {sources} }} counter drop",
                ensure_chain_script(CUT_CHAIN, CUT_PRIORITY)
            );
            run(exec_in(self.netns(host), "nft", &[script]))?;
        }
        Ok(())
    }

    /// [`NetLab::cut_overlay_one_way`] both ways.
    pub fn cut_overlay(&self, side_a: &[usize], side_b: &[usize]) -> Result<(), LabError> {
        self.cut_overlay_one_way(side_a, side_b)?;
        self.cut_overlay_one_way(side_b, side_a)
    }

    /// Removes every overlay cut.
    pub fn heal_overlay(&self) -> Result<(), LabError> {
        for host in 0..self.hosts() {
            let script = delete_chain_script(CUT_CHAIN, CUT_PRIORITY);
            run(exec_in(self.netns(host), "nft", &[script]))?;
        }
        Ok(())
    }

    /// Drops `percent` % of the overlay packets arriving at `host`, each independently;
    /// `0` removes it. Like [`NetLab::loss`], but on `vx0` only.
    pub fn overlay_loss(&self, host: usize, percent: u8) -> Result<(), LabError> {
        assert!(percent <= 100, "loss of {percent}% is not a percentage");
        let script = if percent == 0 {
            delete_chain_script(LOSS_CHAIN, LOSS_PRIORITY)
        } else {
            format!(
                "{}; flush chain {TABLE} {LOSS_CHAIN}; \
                 add rule {TABLE} {LOSS_CHAIN} iifname \"{DEVICE}\" numgen random mod 100 < {percent} counter drop",
                ensure_chain_script(LOSS_CHAIN, LOSS_PRIORITY)
            )
        };
        run(exec_in(self.netns(host), "nft", &[script]))?;
        Ok(())
    }
}
