//! Names and addresses of a lab, chosen so that labs never collide and leftovers are findable.
//!
//! Namespaces are called `stl-<pid>-<labno>-sw` (the switch) and `stl-<pid>-<labno>-h<i>`
//! (host `i`). The embedded pid is the test process that owns the lab: if it is no longer
//! alive, the namespace is a leftover of a killed run and may be removed by the next lab.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every namespace the lab creates; nothing else is ever deleted.
pub(crate) const PREFIX: &str = "stl-";

/// Numbers labs within one process, so parallel test threads get distinct names and subnets.
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// The identity of one lab: owning process and sequence number within it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LabId {
    pub(crate) pid: u32,
    pub(crate) labno: u32,
}

impl LabId {
    pub(crate) fn next() -> LabId {
        LabId {
            pid: std::process::id(),
            labno: NEXT_LAB.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub(crate) fn switch_ns(self) -> String {
        format!("{PREFIX}{}-{}-sw", self.pid, self.labno)
    }

    pub(crate) fn host_ns(self, host: usize) -> String {
        format!("{PREFIX}{}-{}-h{host}", self.pid, self.labno)
    }

    /// The third octet N of the lab's subnet 10.213.N.0/24 (1..=254).
    ///
    /// The subnet exists only inside the lab's own namespaces, so even equal subnets in two
    /// labs could not meet; distinct ones still keep logs and captures unambiguous.
    pub(crate) fn subnet_octet(self) -> u8 {
        let mixed = self.pid.wrapping_mul(7).wrapping_add(self.labno);
        (mixed % 254 + 1) as u8
    }

    /// Address of host `host` (0-based): 10.213.N.(host+1).
    pub(crate) fn host_addr(self, host: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet_octet(), host as u8 + 1)
    }
}

/// The owner pid embedded in a lab namespace name, or `None` if `name` is not ours.
pub(crate) fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    let _labno: u32 = parts.next()?.parse().ok()?;
    parts.next()?;
    Some(pid)
}

/// Whether process `pid` exists (in our pid namespace).
pub(crate) fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Namespace names from `ip netns list` output, whose lines look like `name (id: 3)`.
pub(crate) fn parse_netns_list(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_to_owner_pid() {
        let id = LabId {
            pid: 4242,
            labno: 7,
        };
        assert_eq!(id.switch_ns(), "stl-4242-7-sw");
        assert_eq!(id.host_ns(3), "stl-4242-7-h3");
        assert_eq!(owner_pid(&id.switch_ns()), Some(4242));
        assert_eq!(owner_pid(&id.host_ns(0)), Some(4242));
    }

    #[test]
    fn foreign_names_are_not_ours() {
        for name in [
            "cni-1234",
            "stl-abc-1-h0",
            "stl-12",
            "stl-12-x-h0",
            "stl-12-3",
        ] {
            assert_eq!(owner_pid(name), None, "{name}");
        }
    }

    #[test]
    fn addresses_stay_in_the_lab_subnet() {
        for labno in 0..600 {
            let id = LabId { pid: 99_999, labno };
            let n = id.subnet_octet();
            assert!((1..=254).contains(&n));
            assert_eq!(id.host_addr(0), Ipv4Addr::new(10, 213, n, 1));
        }
    }

    #[test]
    fn parses_netns_list() {
        let out = "stl-1-0-h0 (id: 2)\nstl-1-0-sw (id: 1)\nother\n";
        assert_eq!(parse_netns_list(out), ["stl-1-0-h0", "stl-1-0-sw", "other"]);
    }
}
