//! Building the lab: a switch namespace with a bridge, and one namespace per host cabled to it.
//!
//! Every `ip` command names its namespace with `-n`. Veth pairs are created *from the switch
//! namespace* with the peer placed straight into the host namespace (`... peer name eth0
//! netns <host>`), so no interface ever exists, even briefly, in the root namespace.

use super::commands::{ip_in, netns, run};
use super::{LabError, NetLab};

/// The bridge inside the switch namespace.
const BRIDGE: &str = "br0";

impl NetLab {
    /// Creates the switch and `self.hosts()` host namespaces, recording each in
    /// `self.created` as soon as it exists, so that a failure half-way is still torn down.
    pub(crate) fn build(&mut self) -> Result<(), LabError> {
        let sw = self.switch_ns.clone();
        // `ip netns add` is the first privileged step: its failure means "no lab here".
        run(netns(&["add", &sw])).map_err(LabError::environment_limit)?;
        self.created.push(sw.clone());
        run(ip_in(&sw, &["link", "add", BRIDGE, "type", "bridge"]))
            .map_err(LabError::environment_limit)?;
        run(ip_in(&sw, &["link", "set", BRIDGE, "up"]))?;

        for host in 0..self.hosts() {
            let ns = self.host_ns[host].clone();
            run(netns(&["add", &ns])).map_err(LabError::environment_limit)?;
            self.created.push(ns.clone());

            // The switch-side end is called h<i>, the host-side end eth0.
            let port = format!("h{host}");
            run(ip_in(
                &sw,
                &[
                    "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            ))
            .map_err(LabError::environment_limit)?;
            run(ip_in(&sw, &["link", "set", &port, "master", BRIDGE]))?;
            run(ip_in(&sw, &["link", "set", &port, "up"]))?;

            let cidr = format!("{}/24", self.addr(host));
            run(ip_in(&ns, &["link", "set", "lo", "up"]))?;
            run(ip_in(&ns, &["addr", "add", &cidr, "dev", "eth0"]))?;
            run(ip_in(&ns, &["link", "set", "eth0", "up"]))?;
        }
        Ok(())
    }
}
