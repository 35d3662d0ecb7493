//! What the agent needs to start, already checked by the binary's
//! settings: one plain value per layer, no flag parser inside.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use starling_aggregator::AggregationConfig;
use starling_alert::AlertConfig;
use starling_checks::{DnsSpec, EtcdConfig, PluginSpec, Schedule, SchedulerConfig, Watermarks};
use starling_gossip::{GossipConfig, JoinTargets, Role};
use starling_health::overlay::OverlayConfig;
use starling_history::StoreConfig;
use starling_replicate::ReplicationConfig;
use starling_seal::Keyring;

/// Everything `daemon::start` needs, already checked.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    pub gossip_bind: SocketAddr,
    /// The IP advertised to other members; the port is the bound one.
    pub advertise_ip: IpAddr,
    pub api_bind: SocketAddr,
    pub role: Role,
    pub join: JoinTargets,
    pub keyring: Keyring,
    pub data_dir: PathBuf,
    pub gossip: GossipConfig,
    pub history: StoreConfig,
    pub replication: ReplicationConfig,
    /// When the cluster is aggregated, and how fast this node streams to
    /// and pulls from its aggregators.
    pub aggregation: AggregationConfig,
    /// The etcd check and its schedule; `None` when no endpoint is set.
    pub etcd: Option<(EtcdConfig, Schedule)>,
    /// The Kubernetes API checks; `None` when there are no credentials.
    pub kube: Option<KubeChecksConfig>,
    /// Control-plane components' own health endpoints (run only with
    /// --role control-plane), with their schedule.
    pub healthz: Vec<(HealthzCheckSpec, Schedule)>,
    /// Disks, the kubelet, exec plugins.
    pub node: NodeChecksConfig,
    /// How the overlay probe's figures and clock offsets are judged.
    pub overlay: OverlayConfig,
    /// Where alerts go and when a condition is one.
    pub alert: AlertConfig,
    pub max_concurrent_checks: usize,
}

/// Where the API checks get their credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeSource {
    Kubeconfig(PathBuf),
    /// The pod's service account.
    InCluster,
}

/// A round of node conditions every 10 s: a change shows within one round
/// of the roll-up seeing it.
pub const NODE_CONDITIONS_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct KubeChecksConfig {
    pub source: KubeSource,
    pub dns_url: Option<http::Uri>,
    pub scheduler: SchedulerConfig,
    pub interval: Duration,
    pub failures: u32,
    /// The CA or client certificate ending sooner than this is a warning.
    pub cert_warning: Duration,
    /// Write the StarlingHealthy condition and Events to the Node objects,
    /// a round every this long (opt in: it needs RBAC to patch
    /// nodes/status and create events). `--kube-node-conditions` gives
    /// [`NODE_CONDITIONS_EVERY`].
    pub node_conditions: Option<Duration>,
}

/// A checked loopback health URL, and the check's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthzCheckSpec {
    pub name: &'static str,
    pub url: String,
    /// Its serving certificate ending sooner than this is a warning.
    pub cert_warning: Duration,
}

#[derive(Debug, Clone)]
pub struct NodeChecksConfig {
    /// Filesystems to watch (the data dir first); empty turns the check off.
    pub disk_paths: Vec<PathBuf>,
    pub disk_marks: Watermarks,
    /// The kubelet's health endpoint; `None` turns the check off.
    pub kubelet_url: Option<String>,
    /// The container runtime's CRI socket; `None` turns the check off.
    pub cri_socket: Option<PathBuf>,
    /// Whether the runtime check also starts and removes a pod sandbox
    /// (it writes to the runtime, so only when asked).
    pub cri_start_sandbox: bool,
    pub plugins: Vec<PluginSpec>,
    /// Cluster DNS; `None` turns the check off.
    pub dns: Option<DnsSpec>,
    pub schedule: Schedule,
}

/// No node checks (the defaults outside a pod without flags).
impl Default for NodeChecksConfig {
    fn default() -> Self {
        NodeChecksConfig {
            disk_paths: Vec::new(),
            disk_marks: Watermarks::default(),
            kubelet_url: None,
            cri_socket: None,
            cri_start_sandbox: false,
            plugins: Vec::new(),
            dns: None,
            schedule: Schedule {
                interval: std::time::Duration::from_secs(30),
                timeout: std::time::Duration::from_secs(30),
                failures_before_critical: 2,
            },
        }
    }
}

impl NodeChecksConfig {
    /// Whether any node check runs: then this node's status is unknown
    /// until they report.
    pub fn any(&self) -> bool {
        !self.disk_paths.is_empty()
            || self.kubelet_url.is_some()
            || self.cri_socket.is_some()
            || !self.plugins.is_empty()
            || self.dns.is_some()
    }
}
