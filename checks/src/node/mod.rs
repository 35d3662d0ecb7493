//! Checks of the node itself: its disks, its kubelet, its container
//! runtime, cluster DNS as the node resolves it, and the operator's own
//! exec plugins.

mod disk;
mod dns;
mod plugin;
mod runtime;
mod sandbox;

pub use disk::{DiskCheck, Watermarks};
pub use dns::{
    Answer, DnsCheck, DnsSpec, KUBERNETES_SERVICE_NAME, encode_dns_query, resolv_conf_server,
    resolve,
};
pub use plugin::{PluginCheck, PluginSpec};
pub use runtime::{CONTAINERD_SOCKET, RuntimeCheck};

/// The kubelet's plain-HTTP health endpoint (`--healthz-port`, default
/// 10248, bound to loopback by default).
pub const KUBELET_HEALTHZ_URL: &str = "http://127.0.0.1:10248/healthz";
