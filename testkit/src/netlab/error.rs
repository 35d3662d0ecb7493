//! The lab's error type.

use std::process::ExitStatus;
use std::time::Duration;

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The environment cannot host a lab: not root (no `CAP_SYS_ADMIN`/`CAP_NET_ADMIN`) or a
    /// tool is missing (the message names the Debian package). [`crate::lab_or_skip`] turns
    /// this into a skip.
    #[error("network lab unavailable: {0}")]
    NotPermitted(String),
    /// The kernel lacks a feature the operation needs. From [`crate::NetLab::new`] (no veth
    /// or bridge) it means no lab, which [`crate::lab_or_skip`] treats like `NotPermitted`.
    /// From [`crate::NetLab::netem`] (no `sch_netem`, as on minimal VM kernels, CI's
    /// included) only delay injection is impossible: skip with [`crate::skip_unsupported`].
    #[error("not supported by this kernel: {0}")]
    Unsupported(String),
    /// A command ran and failed for another reason: most likely a bug or a bad argument
    /// (e.g. an invalid netem spec).
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: ExitStatus,
        stderr: String,
    },
    /// A command hung; it has been killed.
    #[error("`{cmd}` did not finish within {after:?}")]
    Timeout { cmd: String, after: Duration },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl LabError {
    /// Reclassifies a failed command whose stderr says the environment, not our code, is at
    /// fault, so that tests skip instead of failing on a laptop without root or on a kernel
    /// built without netem.
    pub(crate) fn environment_limit(self) -> LabError {
        const PRIVILEGE: [&str; 3] = [
            "Operation not permitted",
            "Permission denied",
            "Read-only file system",
        ];
        const KERNEL: [&str; 3] = [
            "Unknown device type",
            "not supported",
            "qdisc kind is unknown",
        ];
        match self {
            LabError::Command { cmd, stderr, .. }
                if PRIVILEGE.iter().any(|l| stderr.contains(l)) =>
            {
                LabError::NotPermitted(format!("`{cmd}`: {stderr}"))
            }
            LabError::Command { cmd, stderr, .. } if KERNEL.iter().any(|l| stderr.contains(l)) => {
                LabError::Unsupported(format!("`{cmd}`: {stderr}"))
            }
            other => other,
        }
    }

    /// Whether this error means "the environment can't do this" rather than "a bug".
    pub fn is_environment_limit(&self) -> bool {
        matches!(self, LabError::NotPermitted(_) | LabError::Unsupported(_))
    }
}
