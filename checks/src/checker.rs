//! What a check is: a name, where it runs, how often, and the async test
//! itself.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::result::Outcome;

/// A boxed future, so `Checker` stays object-safe: the runner holds
/// checks of different types side by side.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a check runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// On every node: what each node sees (etcd from here, the API server
    /// from here).
    EveryNode,
    /// Only on control-plane nodes (local ports such as :10259).
    ControlPlane,
    /// On one node for the whole cluster, chosen by rendezvous hash of the
    /// check's name over the alive members: work that must not be done N
    /// times (creating a probe pod).
    Cluster,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::EveryNode => "node",
            Scope::ControlPlane => "control-plane",
            Scope::Cluster => "cluster",
        }
    }
}

/// One kind of check. Implementations must be async all the way down: the
/// runner bounds every run with a timeout, but a check that blocks its
/// thread holds a runtime worker until it returns.
pub trait Checker: Send + Sync + 'static {
    /// Stable and unique: it names the check in results, metrics, history
    /// and ownership hashing.
    fn name(&self) -> &str;

    fn scope(&self) -> Scope {
        Scope::EveryNode
    }

    /// One run. Return `Outcome::unknown` with the reason when the check
    /// cannot run (missing certificates, no configuration), never nothing.
    fn check(&self) -> BoxFuture<'_, Outcome>;
}

/// How the runner schedules one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Between the starts of two runs (±10% jitter).
    pub interval: Duration,
    /// A run that takes longer is abandoned and counts as a failure.
    pub timeout: Duration,
    /// Failed runs in a row before the check turns critical; fewer are
    /// reported as a warning. One passing run recovers it.
    pub failures_before_critical: u32,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            failures_before_critical: 3,
        }
    }
}
