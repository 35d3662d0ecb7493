//! Flags of the overlay: the agent's judgement of its probe's figures, and
//! `starling probe` itself.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Args;

use super::{KeyArgs, LoggingArgs};

/// The overlay network and clock judgement (the figures come from
/// `starling probe` on the pod network).
#[derive(Clone, Debug, Args)]
pub struct OverlayArgs {
    /// Between two echo pings from the probe to each peer.
    #[arg(long, env = "STARLING_OVERLAY_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub overlay_interval: Duration,

    /// The sliding window: loss is measured over it, and a path is
    /// critical only once its loss stayed above --overlay-loss-critical
    /// for a whole window.
    #[arg(long, env = "STARLING_OVERLAY_WINDOW", default_value = "2m", value_parser = humantime::parse_duration)]
    pub overlay_window: Duration,

    /// Between two reports from the probe to this agent.
    #[arg(long, env = "STARLING_OVERLAY_REPORT_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub overlay_report_interval: Duration,

    /// Loss (percent of pings over the window) above which a path is
    /// failing.
    #[arg(long, env = "STARLING_OVERLAY_LOSS_CRITICAL", default_value_t = 20.0)]
    pub overlay_loss_critical: f64,

    /// A path's p95 round trip above this is a warning.
    #[arg(long, env = "STARLING_OVERLAY_RTT_WARNING", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub overlay_rtt_warning: Duration,

    /// Up to this many nodes with a probe, every probe pings every other;
    /// above it each node is pinged by --overlay-peers probes chosen by
    /// rendezvous hashing.
    #[arg(long, env = "STARLING_OVERLAY_ALL_PAIRS_UP_TO", default_value_t = 100)]
    pub overlay_all_pairs_up_to: usize,

    /// How many probes ping each node in a cluster larger than
    /// --overlay-all-pairs-up-to.
    #[arg(long, env = "STARLING_OVERLAY_PEERS", default_value_t = 10)]
    pub overlay_peers: usize,

    /// This node's clock further than this from the cluster's median is a
    /// warning.
    #[arg(long, env = "STARLING_CLOCK_DRIFT_WARNING", default_value = "300ms", value_parser = humantime::parse_duration)]
    pub clock_drift_warning: Duration,

    /// ... and further than this is critical.
    #[arg(long, env = "STARLING_CLOCK_DRIFT_CRITICAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub clock_drift_critical: Duration,
}

#[derive(Clone, Debug, Args)]
pub struct ProbeArgs {
    /// The node this probe runs on (the downward API's spec.nodeName):
    /// the local agent refuses reports for another node.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,

    /// Where to answer echo pings on the pod network.
    #[arg(long, env = "STARLING_PROBE_LISTEN", default_value = "0.0.0.0:7949")]
    pub listen: SocketAddr,

    /// This pod's IP (the downward API's status.podIP), which peers ping.
    /// Required when --listen is a wildcard address.
    #[arg(long, env = "POD_IP")]
    pub pod_ip: Option<IpAddr>,

    /// The local agent's API, e.g. http://$(HOST_IP):7947: where reports
    /// go and peers' probe addresses come from.
    #[arg(long, env = "STARLING_AGENT_URL")]
    pub agent: String,

    #[command(flatten)]
    pub key: KeyArgs,

    #[command(flatten)]
    pub logging: LoggingArgs,
}
