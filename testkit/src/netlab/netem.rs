//! Delay (and other netem effects): `tc netem` on a host's `eth0`, inside that host's
//! namespace only.
//!
//! `sch_netem` is optional: kernels built without it (such as the one CI runs on) make
//! [`NetLab::netem`] return [`LabError::Unsupported`], and tests skip delay injection there
//! with [`crate::skip_unsupported`]. Packet loss needs no netem: see [`NetLab::loss`].

use super::commands::{output, run, tc_in};
use super::{LabError, NetLab};

impl NetLab {
    /// Applies a netem spec to packets *leaving* `host`, e.g. `"delay 20ms 5ms"` (see
    /// `man tc-netem`). Replaces any previous spec. To degrade both directions of a link,
    /// apply it on both hosts. For plain random loss prefer [`NetLab::loss`], which works
    /// without netem.
    ///
    /// Returns [`LabError::Unsupported`] if the kernel has no `sch_netem`, and
    /// [`LabError::Command`] for a spec `tc` rejects (`tc` parses the spec before asking the
    /// kernel, so a bad spec is reported as such on every kernel).
    ///
    /// Panics if `host` is out of range.
    pub fn netem(&self, host: usize, spec: &str) -> Result<(), LabError> {
        let mut args = vec!["qdisc", "replace", "dev", "eth0", "root", "netem"];
        args.extend(spec.split_whitespace());
        run(tc_in(self.netns(host), &args))
            .map_err(LabError::environment_limit)
            .map_err(|e| match e {
                LabError::Unsupported(detail) => {
                    LabError::Unsupported(format!("kernel has no sch_netem ({detail})"))
                }
                other => other,
            })?;
        Ok(())
    }

    /// Removes the netem qdisc from `host` (a no-op if none is set, also on a kernel without
    /// netem).
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
