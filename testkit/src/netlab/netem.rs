//! Degraded links: `tc netem` on a host's `eth0`, inside that host's namespace only.

use super::commands::{output, run, tc_in};
use super::{LabError, NetLab};

impl NetLab {
    /// Applies a netem spec to packets *leaving* `host`, e.g. `"loss 10%"` or
    /// `"delay 20ms 5ms loss 5%"` (see `man tc-netem`). Replaces any previous spec. To degrade
    /// both directions of a link, apply it on both hosts.
    ///
    /// Returns [`LabError::Unsupported`] if the kernel has no `sch_netem` (some minimal VM
    /// kernels), and [`LabError::Command`] for a spec `tc` rejects.
    ///
    /// Panics if `host` is out of range.
    pub fn netem(&self, host: usize, spec: &str) -> Result<(), LabError> {
        let mut args = vec!["qdisc", "replace", "dev", "eth0", "root", "netem"];
        args.extend(spec.split_whitespace());
        run(tc_in(self.netns(host), &args)).map_err(LabError::environment_limit)?;
        Ok(())
    }

    /// Removes the netem qdisc from `host` (a no-op if none is set).
    ///
    /// Panics if `host` is out of range.
    pub fn clear_netem(&self, host: usize) -> Result<(), LabError> {
        let ns = self.netns(host);
        let shown = output(tc_in(ns, &["qdisc", "show", "dev", "eth0", "root"]))?;
        // Deleting the default qdisc fails, so only delete when ours is there.
        if String::from_utf8_lossy(&shown.stdout).contains("netem") {
            run(tc_in(ns, &["qdisc", "del", "dev", "eth0", "root"]))?;
        }
        Ok(())
    }
}
