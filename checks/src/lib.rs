//! starling's checks: the [`Checker`] trait, the [`Runner`] that schedules
//! them, the result vocabulary, and the built-in checks.

mod certs;
mod checker;
mod errors;
mod etcd;
mod healthz;
mod kubernetes;
mod node;
mod result;
mod runner;
mod sealed_post;
mod threshold;
mod tls;

pub use certs::{
    CertFinding, CertValidity, DEFAULT_CERT_WARNING, judge_file, judge_validity, validity,
    with_findings,
};
pub use checker::{BoxFuture, Checker, Schedule, Scope};
pub use errors::innermost_cause;
pub use etcd::{DiskLimits, EtcdCheck, EtcdConfig};
pub use healthz::{HealthzCheck, NotLoopback};
pub use kubernetes::{ApiServerCheck, LeaseCheck, SchedulerCheck, SchedulerConfig};
pub use node::{
    Answer, CONTAINERD_SOCKET, DiskCheck, DnsCheck, DnsSpec, KUBELET_HEALTHZ_URL,
    KUBERNETES_SERVICE_NAME, PluginCheck, PluginSpec, RuntimeCheck, Watermarks, encode_dns_query,
    resolv_conf_server, resolve,
};
pub use result::{CheckResult, MAX_MESSAGE_CHARS, Outcome, Status};
pub use runner::{Everywhere, PLACEMENT_POLL, Placement, Runner};
pub use sealed_post::{PostError, post_sealed};
pub use tls::{
    ClientTls, TlsError, agent_client, http_client, is_loopback_url, loopback_unverified_client,
    tls_client,
};

/// Names of the built-in checks that run once for the whole cluster. Their
/// results speak for the cluster, not for whichever node ran them.
pub const SCHEDULER: &str = "scheduler";
pub const SCHEDULER_LEASE: &str = "scheduler-lease";
pub const CONTROLLER_MANAGER_LEASE: &str = "controller-manager-lease";

/// Whether results of the check `name` describe the cluster rather than
/// the node that produced them.
pub fn is_cluster_check(name: &str) -> bool {
    [SCHEDULER, SCHEDULER_LEASE, CONTROLLER_MANAGER_LEASE].contains(&name)
}
