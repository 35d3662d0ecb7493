//! Command-line interface. Every agent flag also reads an environment
//! variable, so the DaemonSet can pass the downward API (`NODE_NAME`,
//! `HOST_IP`) without a wrapper script.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use starling_gossip::Role;
use starling_model::{EventKind, HistoryCursor};
use starling_seal::{Keyring, KeyringError};

mod alert;
mod overlay;
pub use alert::AlertArgs;
pub use overlay::{OverlayArgs, ProbeArgs};

/// starling: a peer-to-peer health monitor for Kubernetes clusters.
#[derive(Debug, Parser)]
#[command(name = "starling", version, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node agent: join the gossip cluster and serve the API.
    Agent(Box<AgentArgs>),
    /// Show the cluster's status (healthy or not, and why) as one agent
    /// sees it.
    Status(QueryArgs),
    /// Show every node's verdict and checks, or one node's checks in full.
    Nodes(NodesArgs),
    /// Show the gossip membership as one agent sees it.
    Members(QueryArgs),
    /// Show the pod network's reachability matrix and its verdicts (from
    /// the overlay probes) as one agent knows them.
    Overlay(QueryArgs),
    /// Show the cluster's event log as one agent holds it (any agent
    /// answers for the whole cluster).
    History(HistoryArgs),
    /// Record an operator's note (maintenance, a deploy) in the cluster's
    /// event log, through any agent.
    Annotate(AnnotateArgs),
    /// Run the overlay network probe (a DaemonSet on the pod network):
    /// answer echo on the pod IP, ping peers' probes, report loss, round
    /// trips and clock offsets to the local agent.
    Probe(Box<ProbeArgs>),
    /// Run a local cluster of real agents on loopback addresses.
    ///
    /// Each agent gets an overlay probe and a disk check; a real etcd is
    /// started for them when installed; alerts print in the lab's
    /// terminal. Type faults at its prompt: kill, stop, start, restart,
    /// pause NAME SECS, stop/start etcd, and as root cut A B, degrade A B
    /// PCT, partition A [B..], heal. `help` there lists them.
    Lab(LabArgs),
    /// Print a new random gossip key (one line of base64) for
    /// --gossip-key-file.
    Keygen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Clone, Debug, Args)]
pub struct AgentArgs {
    /// This node's name, as Kubernetes knows it.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,

    /// Address for gossip: UDP for SWIM, TCP (same port) for push-pull.
    #[arg(long, env = "STARLING_GOSSIP_BIND", default_value = "0.0.0.0:7946")]
    pub gossip_bind: SocketAddr,

    /// The IP other nodes reach this one at. Required when
    /// --gossip-bind is a wildcard address.
    #[arg(long, env = "HOST_IP")]
    pub host_ip: Option<IpAddr>,

    /// Address for the HTTP API and /metrics.
    #[arg(long, env = "STARLING_API_BIND", default_value = "0.0.0.0:7947")]
    pub api_bind: SocketAddr,

    /// The part this node plays.
    #[arg(long, env = "STARLING_ROLE", default_value = "worker", value_parser = parse_role)]
    pub role: Role,

    /// A seed to join, host:port or host (port 7946). Repeatable; the
    /// environment variable takes a comma-separated list.
    #[arg(long = "join", env = "STARLING_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,

    /// A DNS name whose every address is a seed (the DaemonSet's headless
    /// Service), name or name:port. Resolved and retried until one answers.
    #[arg(long, env = "STARLING_JOIN_DNS")]
    pub join_dns: Option<String>,

    #[command(flatten)]
    pub key: KeyArgs,

    /// Where the agent keeps its state: the incarnation counter and the
    /// SQLite history (history.db). Keep it across restarts (a hostPath):
    /// a node then keeps its history and its log's sequence numbers.
    #[arg(long, env = "STARLING_DATA_DIR", default_value = "/var/lib/starling")]
    pub data_dir: PathBuf,

    /// How long the cluster's events are kept (e.g. 7d, 36h).
    #[arg(long, env = "STARLING_HISTORY_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub history_retention: Duration,

    /// How long this node's raw check results are kept.
    #[arg(long, env = "STARLING_RESULTS_RETENTION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub results_retention: Duration,

    /// Size cap of the history database in MiB; past it the oldest
    /// events are deleted first.
    #[arg(long, env = "STARLING_HISTORY_MAX_MIB", default_value_t = 256)]
    pub history_max_mib: u64,

    /// Between two anti-entropy pulls of history from a random peer, while
    /// pulls find something to fetch.
    #[arg(long, env = "STARLING_SYNC_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub sync_interval: Duration,

    /// The longest pause between pulls while each finds the peer already
    /// in sync (the pause doubles from --sync-interval up to this; a lost
    /// row, a join or a healed partition brings it back at once).
    #[arg(long, env = "STARLING_SYNC_IDLE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub sync_idle_interval: Duration,

    /// Aggregate the cluster once it has this many members and an
    /// aggregator (`--role aggregator`) is one of them: the aggregators
    /// then hold the whole log, other nodes their own and the cluster's
    /// health. 0 aggregates whenever an aggregator is a member; below 90%
    /// of the figure the cluster returns to full replication. Give every
    /// agent the same value.
    #[arg(long, env = "STARLING_AGGREGATE_ABOVE", default_value_t = 0)]
    pub aggregate_above: usize,

    /// Aggregators that own each node's events in an aggregated cluster
    /// (its stream goes to each; they then copy it to the rest).
    #[arg(long, env = "STARLING_AGGREGATION_REPLICAS", default_value_t = starling_aggregator::DEFAULT_REPLICAS)]
    pub aggregation_replicas: usize,

    #[command(flatten)]
    pub etcd: EtcdArgs,

    #[command(flatten)]
    pub kube: KubeArgs,

    #[command(flatten)]
    pub node: NodeCheckArgs,

    #[command(flatten)]
    pub overlay: OverlayArgs,

    #[command(flatten)]
    pub alert: AlertArgs,

    /// Checks running at once, at most.
    #[arg(long, env = "STARLING_MAX_CONCURRENT_CHECKS", default_value_t = 4)]
    pub max_concurrent_checks: usize,

    #[command(flatten)]
    pub logging: LoggingArgs,
}

/// The checks through the Kubernetes API: the API server, the scheduler
/// (probe pod), and the scheduler's and controller manager's leader leases.
/// On when a kubeconfig is given or the agent runs in a pod.
#[derive(Clone, Debug, Args)]
pub struct KubeArgs {
    /// A kubeconfig for the API checks; without it the pod's in-cluster
    /// service account is used (and outside a pod these checks are off).
    #[arg(long, env = "STARLING_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// The API server by its cluster DNS name, checked besides the service
    /// address. In a pod the default is https://kubernetes.default.svc.
    #[arg(long, env = "STARLING_APISERVER_DNS_URL")]
    pub apiserver_dns_url: Option<String>,

    /// Set by Kubernetes in every pod; its presence means in-cluster
    /// credentials exist.
    #[arg(long, env = "KUBERNETES_SERVICE_HOST", hide = true)]
    pub kubernetes_service_host: Option<String>,

    /// Turn off the Kubernetes API checks even where they could run.
    #[arg(long, env = "STARLING_NO_KUBE_CHECKS")]
    pub no_kube_checks: bool,

    /// Write each node's verdict to its Node object, as a StarlingHealthy
    /// condition and an Event per change (one agent writes each node),
    /// for tools that act on node conditions. Needs the RBAC of
    /// deploy/components/node-conditions.
    #[arg(long, env = "STARLING_KUBE_NODE_CONDITIONS")]
    pub kube_node_conditions: bool,

    /// The scheduler probe pods' namespace (created when missing).
    #[arg(
        long,
        env = "STARLING_PROBE_NAMESPACE",
        default_value = "starling-probe"
    )]
    pub probe_namespace: String,

    /// The scheduler probe pod's image: tiny, and pullable by every node.
    #[arg(
        long,
        env = "STARLING_PROBE_IMAGE",
        default_value = "registry.k8s.io/pause:3.10"
    )]
    pub probe_image: String,

    /// A probe pod not scheduled within this is critical. Shorter than
    /// --kube-interval.
    #[arg(long, env = "STARLING_PROBE_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub probe_timeout: Duration,

    /// Also wait until the probe pod runs (tests image pulls and the
    /// kubelet, too).
    #[arg(long, env = "STARLING_PROBE_WAIT_RUNNING")]
    pub probe_wait_running: bool,

    /// kube-scheduler's health endpoint, checked on control-plane nodes
    /// (--role control-plane); its certificate is self-signed, so only a
    /// loopback URL is accepted. Empty turns the check off.
    #[arg(
        long,
        env = "STARLING_SCHEDULER_HEALTHZ_URL",
        default_value = "https://127.0.0.1:10259/healthz"
    )]
    pub scheduler_healthz_url: String,

    /// kube-controller-manager's health endpoint, like the scheduler's.
    #[arg(
        long,
        env = "STARLING_CONTROLLER_MANAGER_HEALTHZ_URL",
        default_value = "https://127.0.0.1:10257/healthz"
    )]
    pub controller_manager_healthz_url: String,

    /// Between two runs of each API check (the probe pod: twice this).
    #[arg(long, env = "STARLING_KUBE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub kube_interval: Duration,

    /// Failed runs in a row before an API check turns critical.
    #[arg(long, env = "STARLING_KUBE_FAILURES", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub kube_failures: u32,
}

/// Checks of the node itself: disks, the kubelet, exec plugins. The disk
/// and kubelet checks are on by default in a pod (where a kubelet and a
/// data dir to watch exist) and on elsewhere when their flags are given.
#[derive(Clone, Debug, Args)]
pub struct NodeCheckArgs {
    /// Another path whose filesystem's free space and inodes are checked,
    /// besides --data-dir's (e.g. /var/lib/kubelet, /var/lib/containerd).
    /// Repeatable; the environment variable takes a comma-separated list.
    #[arg(long = "disk-path", env = "STARLING_DISK_PATHS", value_delimiter = ',')]
    pub disk_paths: Vec<PathBuf>,

    /// Less free space or inodes than this (percent) is a warning.
    #[arg(long, env = "STARLING_DISK_WARNING_FREE", default_value_t = 15.0)]
    pub disk_warning_free: f64,

    /// Less free space or inodes than this (percent) is critical.
    #[arg(long, env = "STARLING_DISK_CRITICAL_FREE", default_value_t = 5.0)]
    pub disk_critical_free: f64,

    /// The kubelet's health endpoint (plain HTTP, loopback only). Default
    /// in a pod: http://127.0.0.1:10248/healthz; empty turns it off.
    #[arg(long, env = "STARLING_KUBELET_HEALTHZ_URL")]
    pub kubelet_healthz_url: Option<String>,

    /// The container runtime's CRI socket, asked for its RuntimeReady and
    /// NetworkReady conditions (containerd: /run/containerd/containerd.sock,
    /// CRI-O: /var/run/crio/crio.sock, as mounted in the pod). Off unless set.
    #[arg(long, env = "STARLING_CRI_SOCKET")]
    pub cri_socket: Option<PathBuf>,

    /// Each run of the container runtime check also starts, stops and
    /// removes a pod sandbox on the host network (the runtime's pause
    /// image), proving the runtime can start a pod. Needs --cri-socket.
    #[arg(long, env = "STARLING_CRI_START_SANDBOX")]
    pub cri_start_sandbox: bool,

    /// An exec plugin with node-problem-detector's contract, NAME=PATH: exit
    /// 0 ok, 1 critical, 2 unknown; the first line of its output is the
    /// message. Repeatable. (Arguments: wrap it in a script.)
    #[arg(long = "plugin", env = "STARLING_PLUGINS", value_delimiter = ',')]
    pub plugins: Vec<String>,

    /// Like --plugin, but its exit status 1 is a warning, not critical.
    #[arg(
        long = "plugin-warning",
        env = "STARLING_WARNING_PLUGINS",
        value_delimiter = ','
    )]
    pub warning_plugins: Vec<String>,

    /// A plugin run still going after this is killed (with the processes
    /// it started) and reported critical.
    #[arg(long, env = "STARLING_PLUGIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub plugin_timeout: Duration,

    /// A name that must resolve (to an A record) through cluster DNS.
    /// Repeatable; the environment variable takes a comma-separated list.
    /// In a pod the default is kubernetes.default.svc.cluster.local.
    #[arg(long = "dns-name", env = "STARLING_DNS_NAMES", value_delimiter = ',')]
    pub dns_names: Vec<String>,

    /// The DNS server to ask, IP or IP:port; by default the first
    /// nameserver of /etc/resolv.conf (the node's resolver).
    #[arg(long, env = "STARLING_DNS_SERVER")]
    pub dns_server: Option<String>,

    /// Each DNS query not answered within this is critical ("no answer").
    #[arg(long, env = "STARLING_DNS_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub dns_timeout: Duration,

    /// Turn the DNS check off, also in a pod.
    #[arg(long, env = "STARLING_NO_DNS_CHECK")]
    pub no_dns_check: bool,

    /// Between two runs of each node check.
    #[arg(long, env = "STARLING_NODE_CHECK_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub node_check_interval: Duration,

    /// Failed runs in a row before a node check turns critical.
    #[arg(long, env = "STARLING_NODE_CHECK_FAILURES", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub node_check_failures: u32,
}

/// The etcd check. Without an endpoint it is off.
#[derive(Clone, Debug, Args)]
pub struct EtcdArgs {
    /// An etcd client URL to check, e.g. https://10.0.0.1:2379. On kubeadm
    /// control-plane nodes http://127.0.0.1:2381 needs no certificates
    /// (health only). Repeatable; the environment variable takes a
    /// comma-separated list.
    #[arg(
        long = "etcd-endpoint",
        env = "STARLING_ETCD_ENDPOINTS",
        value_delimiter = ','
    )]
    pub endpoints: Vec<String>,

    /// CA of etcd's serving certificates (kubeadm:
    /// /etc/kubernetes/pki/etcd/ca.crt).
    #[arg(long, env = "STARLING_ETCD_CA")]
    pub etcd_ca: Option<PathBuf>,

    /// Client certificate (kubeadm:
    /// /etc/kubernetes/pki/etcd/healthcheck-client.crt).
    #[arg(long, env = "STARLING_ETCD_CERT", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,

    /// Client key (kubeadm: /etc/kubernetes/pki/etcd/healthcheck-client.key).
    #[arg(long, env = "STARLING_ETCD_KEY", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,

    /// Between two etcd checks.
    #[arg(long, env = "STARLING_ETCD_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub etcd_interval: Duration,

    /// One etcd check may take this long before it counts as a failure.
    #[arg(long, env = "STARLING_ETCD_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub etcd_timeout: Duration,

    /// Failed etcd checks in a row before it turns critical.
    #[arg(long, env = "STARLING_ETCD_FAILURES", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub etcd_failures: u32,

    /// A certificate that ends sooner than this is a warning naming its file
    /// or endpoint and date: etcd's CA, our client certificate, etcd's
    /// server certificate, the scheduler's and controller manager's serving
    /// certificates, the API server's CA and our client certificate for it.
    /// Expired or not yet valid is critical.
    #[arg(long, env = "STARLING_CERT_WARNING", default_value = "30d", value_parser = humantime::parse_duration)]
    pub cert_warning: Duration,

    /// etcd's WAL fsync p99 above this, over the interval between two
    /// checks, is a slow disk (etcd's guidance: 10 ms); ten times it is critical.
    #[arg(long, env = "STARLING_ETCD_WAL_FSYNC_P99", default_value = "10ms", value_parser = humantime::parse_duration)]
    pub etcd_wal_fsync_p99: Duration,

    /// etcd's backend commit p99 above this is a slow disk (etcd's
    /// guidance: 25 ms); ten times it is critical.
    #[arg(long, env = "STARLING_ETCD_BACKEND_COMMIT_P99", default_value = "25ms", value_parser = humantime::parse_duration)]
    pub etcd_backend_commit_p99: Duration,
}

/// The cluster key, shared by the agent and the commands that write to it.
#[derive(Clone, Debug, Args)]
pub struct KeyArgs {
    /// The cluster keyring: one base64 key of 32 bytes per line, the
    /// first used to send, all accepted (see `starling keygen`). It seals
    /// gossip, history sync and annotations.
    #[arg(long, env = "STARLING_GOSSIP_KEY_FILE")]
    pub gossip_key_file: Option<PathBuf>,

    /// Run unencrypted and unauthenticated (gossip, history sync,
    /// annotations). Only for experiments.
    #[arg(
        long,
        env = "STARLING_INSECURE_GOSSIP",
        conflicts_with = "gossip_key_file"
    )]
    pub insecure_gossip: bool,
}

impl KeyArgs {
    /// The keyring, the insecure one, or `None` when neither was asked for.
    pub fn load(&self) -> Result<Option<Keyring>, KeyringError> {
        match (&self.gossip_key_file, self.insecure_gossip) {
            (Some(path), _) => Keyring::load(path).map(Some),
            (None, true) => Ok(Some(Keyring::insecure())),
            (None, false) => Ok(None),
        }
    }
}

#[derive(Clone, Debug, Args)]
pub struct LoggingArgs {
    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(
        long = "log",
        env = "STARLING_LOG",
        default_value = "info",
        global = true
    )]
    pub filter: String,

    /// Log format.
    #[arg(
        long,
        env = "STARLING_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

/// Which agents to ask.
#[derive(Clone, Debug, Args)]
pub struct AgentAddrs {
    /// Agents' API addresses, comma-separated or repeated: HOST,
    /// HOST:PORT (the port defaults to 7947) or http(s)://HOST:PORT.
    /// Tried in turn until one answers, since any agent answers for the
    /// whole cluster.
    #[arg(
        long = "addr",
        value_name = "HOST:PORT",
        env = "STARLING_ADDR",
        default_value = "127.0.0.1:7947",
        value_delimiter = ',',
        value_parser = parse_agent_addr
    )]
    pub list: Vec<String>,
}

/// Which agents to ask, and how to print the answer.
#[derive(Clone, Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub addr: AgentAddrs,

    /// `table` for people, `json` for scripts (the API's own shape).
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Clone, Debug, Args)]
pub struct NodesArgs {
    /// One node's name: its checks in full (details and durations are kept
    /// by the node that ran them).
    pub name: Option<String>,

    /// Only nodes with this verdict: healthy, degraded, unreachable,
    /// unknown, or unhealthy (all but healthy).
    #[arg(long, conflicts_with = "name")]
    pub status: Option<String>,

    /// Only nodes whose name contains this.
    #[arg(long, conflicts_with = "name")]
    pub node: Option<String>,

    #[command(flatten)]
    pub query: QueryArgs,
}

#[derive(Clone, Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub query: QueryArgs,

    /// Only events about this node.
    #[arg(long)]
    pub node: Option<String>,

    /// Only events of this kind: membership, check, alert or annotation.
    #[arg(long)]
    pub kind: Option<EventKind>,

    /// Only events about this check.
    #[arg(long)]
    pub check: Option<String>,

    /// Only events at or after this time: a duration ago (30m, 2h, 7d),
    /// an RFC 3339 time (2026-11-23T10:00:00Z), or Unix milliseconds.
    #[arg(long, value_parser = parse_when)]
    pub since: Option<u64>,

    /// Only events before this time (same forms as --since).
    #[arg(long, value_parser = parse_when)]
    pub until: Option<u64>,

    /// The most events to show, newest first.
    #[arg(long, default_value_t = starling_model::DEFAULT_HISTORY_LIMIT as u16,
          value_parser = clap::value_parser!(u16).range(1..=starling_model::MAX_HISTORY_LIMIT as i64))]
    pub limit: u16,

    /// Continue where a previous page ended (the cursor it printed).
    #[arg(long)]
    pub cursor: Option<HistoryCursor>,
}

#[derive(Clone, Debug, Args)]
pub struct AnnotateArgs {
    #[command(flatten)]
    pub addr: AgentAddrs,

    /// The agents' keyring: writing to the history requires the cluster key.
    #[command(flatten)]
    pub key: KeyArgs,

    /// The node the note is about (default: the answering agent's node).
    #[arg(long)]
    pub node: Option<String>,

    /// The note, at most 512 bytes.
    pub message: String,
}

#[derive(Clone, Debug, Args)]
pub struct LabArgs {
    /// How many agents to start.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(1..=200))]
    pub nodes: u8,

    /// Loopback address of the first agent; the others count up from it.
    #[arg(long, default_value = "127.0.1.1")]
    pub first_ip: std::net::Ipv4Addr,

    /// Keep the lab's directory (keys, data, logs) after it stops.
    #[arg(long)]
    pub keep: bool,

    /// Do not start an etcd for the agents to check, even when one is
    /// installed.
    #[arg(long)]
    pub no_etcd: bool,

    /// A real cluster's kubeconfig (kind, minikube): every agent runs the
    /// API server and scheduler checks against it.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

fn parse_role(value: &str) -> Result<Role, String> {
    value.parse()
}

/// A point in time as Unix milliseconds: a duration ago, RFC 3339, or
/// Unix milliseconds.
/// The agents' API port, when `--addr` names none.
pub const DEFAULT_API_PORT: u16 = 7947;

/// `--addr`: `host`, `host:port`, `[v6]:port`, or either behind `http://`
/// or `https://`. Plain HTTP comes back as `host:port`, HTTPS keeps its
/// scheme (the client adds `http://` to the rest).
pub fn parse_agent_addr(value: &str) -> Result<String, String> {
    let trimmed = value.trim();
    let (https, rest) = if let Some(rest) = trimmed.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = trimmed.strip_prefix("http://") {
        (false, rest)
    } else if trimmed.contains("://") {
        return Err(format!(
            "{value:?}: only http:// and https:// agents (expected HOST, HOST:PORT or \
             http(s)://HOST:PORT)"
        ));
    } else {
        (false, trimmed)
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let expected = || format!("{value:?}: expected HOST, HOST:PORT or http(s)://HOST:PORT");
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) || rest.contains(char::is_whitespace)
    {
        return Err(expected());
    }
    let host_port = if let Ok(addr) = rest.parse::<SocketAddr>() {
        addr.to_string()
    } else if let Ok(ip) = rest
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        SocketAddr::new(ip, DEFAULT_API_PORT).to_string()
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && !host.contains(':') => {
                match port.parse::<u16>() {
                    Ok(port) if port > 0 => format!("{host}:{port}"),
                    _ => return Err(format!("{value:?}: port {port:?} is not from 1 to 65535")),
                }
            }
            Some(_) => return Err(expected()),
            None => format!("{rest}:{DEFAULT_API_PORT}"),
        }
    };
    Ok(if https {
        format!("https://{host_port}")
    } else {
        host_port
    })
}

pub fn parse_when(value: &str) -> Result<u64, String> {
    let now = std::time::SystemTime::now();
    let at = if let Ok(ago) = humantime::parse_duration(value) {
        now.checked_sub(ago)
            .ok_or_else(|| format!("{value:?} reaches before 1970"))?
    } else if let Ok(at) = humantime::parse_rfc3339_weak(value) {
        at
    } else if let Ok(unix_ms) = value.parse::<u64>() {
        return Ok(unix_ms);
    } else {
        return Err(format!(
            "{value:?}: expected a duration ago (30m, 2h, 7d), an RFC 3339 time \
             (2026-11-23T10:00:00Z) or Unix milliseconds"
        ));
    };
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .map_err(|_| format!("{value:?} is before 1970"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn agent_addresses_take_the_forms_people_type() {
        let ok = |value: &str| parse_agent_addr(value).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok("10.0.0.5"), "10.0.0.5:7947");
        assert_eq!(ok("10.0.0.5:8080"), "10.0.0.5:8080");
        assert_eq!(ok("node-1"), "node-1:7947");
        assert_eq!(ok("node-1.example:9"), "node-1.example:9");
        assert_eq!(ok("http://node-1:7947/"), "node-1:7947");
        assert_eq!(ok("http://10.0.0.5"), "10.0.0.5:7947");
        assert_eq!(ok("https://node-1"), "https://node-1:7947");
        assert_eq!(ok("::1"), "[::1]:7947");
        assert_eq!(ok("[::1]"), "[::1]:7947");
        assert_eq!(ok("[::1]:9"), "[::1]:9");
        assert_eq!(ok(" 10.0.0.5 "), "10.0.0.5:7947");
        for bad in [
            "",
            "ftp://x",
            "http://",
            "x:y",
            "x:0",
            "x:70000",
            "a b",
            "http://x/v1",
        ] {
            let error = parse_agent_addr(bad).expect_err(bad);
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn agent_flags_parse_with_defaults() {
        let cli = Cli::try_parse_from([
            "starling",
            "agent",
            "--node-name",
            "n1",
            "--join",
            "a:7946",
            "--join",
            "b",
            "--insecure-gossip",
        ])
        .expect("valid arguments");
        let Command::Agent(args) = cli.command else {
            panic!("parsed the agent subcommand")
        };
        assert_eq!(args.join, vec!["a:7946", "b"]);
        assert_eq!(args.gossip_bind, "0.0.0.0:7946".parse().expect("literal"));
        assert_eq!(args.api_bind.port(), 7947);
        assert_eq!(args.role, Role::Worker);
    }

    #[test]
    fn times_parse_in_three_forms() {
        assert_eq!(parse_when("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_when("2026-11-23T10:00:00Z"), Ok(1_795_428_000_000));
        let two_hours_ago = parse_when("2h").expect("a duration");
        let now = starling_model::unix_ms_now();
        assert!((now - two_hours_ago).abs_diff(7_200_000) < 5_000);
        assert!(parse_when("yesterday").is_err());
    }

    #[test]
    fn a_key_file_and_insecure_mode_exclude_each_other() {
        let parsed = Cli::try_parse_from([
            "starling",
            "agent",
            "--node-name",
            "n1",
            "--insecure-gossip",
            "--gossip-key-file",
            "/k",
        ]);
        assert!(parsed.is_err());
    }
}
