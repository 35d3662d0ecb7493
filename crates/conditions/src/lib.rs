//! starling's verdict where Kubernetes tools look for it, opt in (as
//! node-problem-detector does): a `StarlingHealthy` condition on each Node
//! object, with the roll-up's reason and message, and an Event on the Node
//! for each change of it. `kubectl describe node`, Cluster API's
//! MachineHealthCheck and draino-style remediation then see starling's
//! verdict.
//!
//! Constraints it keeps:
//! - one writer per Node: the first alive member in rendezvous order for
//!   it, the node itself excluded (a dead node cannot report itself);
//! - idempotent: a condition is patched only when it changed, or as a
//!   heartbeat; an Event's name is derived from its transition, so a retry
//!   or a second writer gets `AlreadyExists`, never a duplicate;
//! - rate-limited: at most `writes_per_round` patches per round;
//! - never in the way: it runs in its own task, every request has a
//!   timeout, and while the API server is down the backlog is at most one
//!   pending write (the latest) and one pending Event per Node.

mod plan;
mod writer;

pub use plan::{CONDITION_TYPE, ConditionStatus, Desired, Write, Written, desired, owns, plan};
pub use writer::{ConditionMetrics, ConditionsConfig, run};
