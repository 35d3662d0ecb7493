//! starling's checks: the [`Checker`] trait, the [`Runner`] that schedules
//! them, the result vocabulary, and the built-in checks.

mod checker;
mod etcd;
mod kubernetes;
mod result;
mod runner;
mod threshold;
mod tls;

pub use checker::{BoxFuture, Checker, Schedule, Scope};
pub use etcd::{EtcdCheck, EtcdConfig};
pub use kubernetes::{ApiServerCheck, LeaseCheck, SchedulerCheck, SchedulerConfig};
pub use result::{CheckResult, MAX_MESSAGE_CHARS, Outcome, Status};
pub use runner::{Everywhere, PLACEMENT_POLL, Placement, Runner};
pub use tls::{ClientTls, TlsError, http_client, tls_client};
