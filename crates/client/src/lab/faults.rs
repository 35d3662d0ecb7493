//! Network faults between the lab's own loopback addresses: cut or
//! degrade the overlay path between two agents' probes, partition the
//! gossip of a set of agents. They are nftables rules in a table named
//! after the lab's pid, matching only addresses the lab owns, and the
//! table goes when the lab stops (or, after a lab was killed, when the
//! next one starts). Changing the host's firewall needs root.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The prefix of every lab's table; the lab's pid follows it.
const TABLE_PREFIX: &str = "starling_lab_";

/// One lab's nftables table: created on the first fault, flushed by
/// `heal`, deleted on drop.
#[derive(Debug)]
pub(crate) struct NetFaults {
    /// `Err` says why no fault can be set here (not root, no nft).
    nft: Result<PathBuf, String>,
    table: String,
    created: bool,
}

/// A fault, in addresses: every packet from one side to the other (both
/// directions) is dropped, or `percent` of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PacketDrop {
    pub(crate) one_side: Vec<Ipv4Addr>,
    pub(crate) other_side: Vec<Ipv4Addr>,
    /// 1..=100.
    pub(crate) percent: u8,
}

impl NetFaults {
    pub(crate) fn new() -> NetFaults {
        let nft = if !nix::unistd::geteuid().is_root() {
            Err("network faults change the host's firewall: run the lab as root".to_owned())
        } else {
            super::find("nft").ok_or_else(|| {
                "network faults need nft (Debian: apt-get install nftables)".to_owned()
            })
        };
        let faults = NetFaults {
            nft,
            table: format!("{TABLE_PREFIX}{}", std::process::id()),
            created: false,
        };
        faults.remove_stale_tables();
        faults
    }

    /// Why faults cannot be set here, if they cannot.
    pub(crate) fn unavailable(&self) -> Option<&str> {
        self.nft.as_ref().err().map(String::as_str)
    }

    pub(crate) fn add(&mut self, fault: &PacketDrop) -> Result<(), String> {
        let mut script = String::new();
        if !self.created {
            script.push_str(&format!(
                "add table inet {table}\n\
                 add chain inet {table} faults {{ type filter hook output priority 0; policy accept; }}\n",
                table = self.table
            ));
        }
        script.push_str(&rules(&self.table, fault));
        self.nft(&script)?;
        self.created = true;
        Ok(())
    }

    /// Removes every fault this lab set.
    pub(crate) fn heal(&mut self) -> Result<(), String> {
        if !self.created {
            return Ok(());
        }
        self.nft(&format!("flush chain inet {} faults\n", self.table))
    }

    fn nft(&self, script: &str) -> Result<(), String> {
        let nft = self.nft.as_ref().map_err(Clone::clone)?;
        run_nft(nft, script)
    }

    /// Tables of labs that no longer run (killed with SIGKILL, so they
    /// could not remove theirs): their drops would confuse this lab.
    fn remove_stale_tables(&self) {
        let Ok(nft) = &self.nft else {
            return;
        };
        let Ok(listing) = Command::new(nft).args(["list", "tables"]).output() else {
            return;
        };
        for table in stale_tables(&String::from_utf8_lossy(&listing.stdout)) {
            if run_nft(nft, &format!("delete table inet {table}\n")).is_ok() {
                println!("starling lab: removed {table}, the network faults of a lab that is gone");
            }
        }
    }
}

impl Drop for NetFaults {
    fn drop(&mut self) {
        if self.created
            && let Err(error) = self.nft(&format!("delete table inet {}\n", self.table))
        {
            eprintln!(
                "starling lab: could not remove its network faults ({error}); \
                 `nft delete table inet {}` does",
                self.table
            );
        }
    }
}

/// The drop rules for one fault, both directions.
fn rules(table: &str, fault: &PacketDrop) -> String {
    // `numgen random mod 100` is 0..=99; nft refuses the always-true `< 100`.
    let dice = if fault.percent >= 100 {
        String::new()
    } else {
        format!("numgen random mod 100 < {} ", fault.percent)
    };
    let set = |ips: &[Ipv4Addr]| {
        let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
        format!("{{ {} }}", ips.join(", "))
    };
    let (one, other) = (set(&fault.one_side), set(&fault.other_side));
    format!(
        "add rule inet {table} faults ip saddr {one} ip daddr {other} {dice}counter drop\n\
         add rule inet {table} faults ip saddr {other} ip daddr {one} {dice}counter drop\n"
    )
}

/// `starling_lab_PID` tables in `nft list tables` whose PID is not running.
fn stale_tables(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| line.strip_prefix("table inet "))
        .filter(|table| {
            table
                .strip_prefix(TABLE_PREFIX)
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        })
        .map(str::to_owned)
        .collect()
}

fn run_nft(nft: &PathBuf, script: &str) -> Result<(), String> {
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run {}: {error}", nft.display()))?;
    child
        .stdin
        .take()
        .expect("stdin was piped")
        .write_all(script.as_bytes())
        .map_err(|error| format!("cannot write to nft: {error}"))?;
    let output = child
        .wait_with_output()
        .map_err(|error| format!("nft: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "nft refused the rules: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_drops_both_directions_and_only_between_its_sides() {
        let fault = PacketDrop {
            one_side: vec![Ipv4Addr::new(127, 0, 1, 1)],
            other_side: vec![Ipv4Addr::new(127, 0, 1, 2), Ipv4Addr::new(127, 0, 1, 3)],
            percent: 30,
        };
        let script = rules("t", &fault);
        assert!(script.contains(
            "ip saddr { 127.0.1.1 } ip daddr { 127.0.1.2, 127.0.1.3 } numgen random mod 100 < 30 counter drop"
        ), "{script}");
        assert!(
            script.contains("ip saddr { 127.0.1.2, 127.0.1.3 } ip daddr { 127.0.1.1 } numgen"),
            "{script}"
        );
        let all = rules(
            "t",
            &PacketDrop {
                percent: 100,
                ..fault
            },
        );
        assert!(!all.contains("numgen"), "{all}");
    }

    #[test]
    fn only_tables_of_labs_that_are_gone_are_stale() {
        let mine = std::process::id();
        let listing = format!(
            "table inet filter\ntable inet starling_lab_{mine}\ntable inet starling_lab_4294967295\n\
             table ip starling_lab_1\ntable inet starling_lab_x\n"
        );
        assert_eq!(stale_tables(&listing), vec!["starling_lab_4294967295"]);
    }
}
