//! The etcd fixture's error type.

use std::io;
use std::time::Duration;

/// Why an [`super::Etcd`] could not be started or restarted.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No `etcd` binary on `PATH`. [`crate::etcd_or_skip`] turns this into a skip, unless
    /// `STARLING_REQUIRE_ETCD=1`.
    #[error("etcd is not installed: apt-get install etcd-server (scripts/test installs it)")]
    Missing,
    /// `etcd` exists but could not be executed (e.g. not executable, out of processes).
    #[error("cannot run `{cmd}`: {source}")]
    Spawn {
        /// The command line that failed to start.
        cmd: String,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// etcd was started but its metrics URL did not answer `/health` with
    /// `{"health":"true"}` in time, or it exited. The log tail usually says why (a port
    /// taken, a certificate it cannot read, a corrupt data dir); the process, if still
    /// running, is killed when the `Etcd` is dropped.
    #[error(
        "etcd did not report healthy on its metrics URL's /health within {waited:?}; \
         end of its log:\n{log_tail}"
    )]
    NotReady {
        /// How long we waited before giving up (less than the timeout if etcd exited).
        waited: Duration,
        /// The last lines of etcd's stdout and stderr, with our own `# starling-testkit`
        /// notes such as its exit status.
        log_tail: String,
    },
    /// Preparing the fixture's files failed (temporary directory, log file).
    #[error("{action}: {source}")]
    Io {
        /// What the fixture was doing, e.g. `creating a temporary directory for etcd`.
        action: String,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
}

impl EtcdError {
    /// Wraps an i/o error with what the fixture was doing when it happened.
    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(io::Error) -> EtcdError {
        let action = action.into();
        move |source| EtcdError::Io { action, source }
    }
}
