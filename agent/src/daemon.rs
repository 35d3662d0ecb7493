//! The agent process: every layer started bottom-up from one checked
//! config, and stopped top-down in stages (record our leave, leave the
//! cluster, then stop answering and close the history).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use starling_aggregator::{Aggregation, AggregationMetrics, AggregationParts};
use starling_alert::{AlertMetrics, Alerting, SinkError};
use starling_checks::Runner;
use starling_conditions::{ConditionMetrics, ConditionsConfig};
use starling_gossip::{
    DataDirError, Gossip, GossipHandle, GossipMetrics, GossipNode, GossipSockets, NodeId,
    NodeIdentity, NodeMeta, SERVICE_SLOTS,
};
use starling_health::overlay::{OverlayIntake, OverlayMetrics};
use starling_health::status::{self, GossipPlacement, StatusMetrics};
use starling_history::{HistoryMetrics, Store, StoreError};
use starling_model::Service;
use starling_replicate::{Publisher, Replication, ReplicationMetrics, Scope};
use starling_seal::Keyring;
use tokio::net::TcpListener;

use crate::checks::{self, ChecksError};
use crate::config::AgentConfig;
use crate::stage::Stage;
use crate::view::{AgentSurface, SurfaceParts};

pub use starling_history::HISTORY_FILE;

/// Check results queued between the runner and the history.
const CHECK_RESULTS_BUFFER: usize = 256;
/// Node conditions: a heartbeat every minute, at most 50 patches a round
/// (a 5,000-node cluster spreads them over its members), and 5 s per
/// request, so an API server that hangs costs a round, not the agent.
const NODE_CONDITIONS_HEARTBEAT: Duration = Duration::from_secs(60);
const NODE_CONDITIONS_WRITES: usize = 50;
const NODE_CONDITIONS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    History(#[from] StoreError),
    #[error(transparent)]
    Checks(#[from] ChecksError),
    #[error(transparent)]
    Alerts(#[from] SinkError),
    #[error("{flag} {addr}: cannot bind: {source}")]
    Bind {
        flag: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
    #[error("an agent task panicked: {0}")]
    Panicked(#[from] tokio::task::JoinError),
}

/// A started agent. Dropping it does not stop it; call `shutdown`.
#[derive(Debug)]
pub struct RunningAgent {
    /// The advertised gossip address (with the bound port).
    pub gossip_addr: SocketAddr,
    /// The bound HTTP address.
    pub api_addr: SocketAddr,
    pub identity: NodeId,
    pub gossip: GossipHandle,
    pub metrics: GossipMetrics,
    /// This node's history database.
    pub history: Store,
    /// The runner, then the task turning its results into history.
    checks: Stage,
    /// Records alert marks: stopped before replication and gossip.
    alerting: Alerting,
    replication: Replication,
    /// Streams our log to the aggregators: stopped after replication, so
    /// our leave is streamed too.
    aggregation: Aggregation,
    /// Gossip, the HTTP server and overlay housekeeping (which writes
    /// verdicts: it ends before the history closes).
    serving: Stage,
}

/// Bind, join and serve. Returns once both sockets are bound, so callers
/// (and tests) can use the addresses at once.
pub async fn start(config: AgentConfig) -> Result<RunningAgent, AgentError> {
    let incarnation = starling_gossip::next_incarnation(&config.data_dir)?;
    let mut registry = Registry::with_prefix("starling");
    let history = Store::open(
        &config.data_dir.join(HISTORY_FILE),
        &config.node_name,
        config.history.clone(),
        HistoryMetrics::register(&mut registry),
    )?;
    let runner = checks::runner(&config).await?;
    let checks_here = checks::node_checks_here(&config);
    let Bound {
        sockets,
        api,
        gossip_addr,
        api_addr,
    } = bind(&config).await?;
    let identity = identity(&config, incarnation, gossip_addr, api_addr);

    let metrics = GossipMetrics::register(&mut registry);
    let replication_metrics = ReplicationMetrics::register(&mut registry);
    let status_metrics = StatusMetrics::register(&mut registry);
    let node = GossipNode::new(
        identity.clone(),
        config.gossip.clone(),
        rand::random(),
        Duration::ZERO,
    );
    let keyring = Arc::new(config.keyring.clone());
    keyring.replays().register(&mut registry);
    log_keyring(&keyring, gossip_addr);
    let has_seeds = !config.join.is_empty();
    let (gossip, handle) = Gossip::new(
        sockets,
        node,
        Arc::clone(&keyring),
        metrics.clone(),
        config.join,
    );
    let mut serving = Stage::new();
    serving.spawn(gossip.run(serving.stopped()));
    let aggregation_metrics = AggregationMetrics::register(&mut registry);
    let (scope, scope_rx) = tokio::sync::watch::channel(Scope::default());
    let publisher = Publisher::new(
        history.clone(),
        handle.clone(),
        replication_metrics.clone(),
        scope_rx,
    );
    let aggregation = Aggregation::start(
        AggregationParts {
            store: history.clone(),
            gossip: handle.clone(),
            keyring: Arc::clone(&keyring),
            metrics: aggregation_metrics.clone(),
            scope,
        },
        config.aggregation,
    );
    let replication = Replication::start(
        publisher.clone(),
        handle.clone(),
        Arc::clone(&keyring),
        replication_metrics.clone(),
        config.replication,
    );
    let checks = start_checks(runner, &handle, &publisher, &status_metrics);
    let overlay = Arc::new(OverlayIntake::new(
        config.overlay.clone(),
        Arc::clone(&keyring),
        handle.clone(),
        publisher.clone(),
        OverlayMetrics::register(&mut registry),
        status_metrics.clone(),
    ));
    serving.spawn(overlay_housekeeping(
        Arc::clone(&overlay),
        config.overlay.report_interval,
        serving.stopped(),
    ));
    // Registered whether on or off: the documented series are always there.
    let condition_metrics = ConditionMetrics::register(&mut registry);
    if let Some((kube, every)) = config
        .kube
        .as_ref()
        .and_then(|kube| Some((kube, kube.node_conditions?)))
    {
        let conditions = ConditionsConfig {
            kube: checks::kube_config(&kube.source).await?,
            every,
            heartbeat: NODE_CONDITIONS_HEARTBEAT,
            writes_per_round: NODE_CONDITIONS_WRITES,
            request_timeout: NODE_CONDITIONS_TIMEOUT,
        };
        serving.spawn(starling_conditions::run(
            conditions,
            handle.clone(),
            history.clone(),
            condition_metrics,
            serving.stopped(),
        ));
    }
    let alerting = Alerting::start(
        &config.alert,
        handle.clone(),
        publisher.clone(),
        replication.caught_up(),
        AlertMetrics::register(&mut registry),
    )?;
    let surface = Arc::new(AgentSurface::new(SurfaceParts {
        view: handle.view.clone(),
        registry: Arc::new(registry),
        publisher,
        keyring,
        replication: replication_metrics,
        forwarder: aggregation.forwarder(),
        aggregation: aggregation_metrics,
        status_metrics,
        checks_here,
        has_seeds,
        overlay,
    }));
    serving.spawn_fallible(starling_web::serve(api, surface, serving.stopped()));
    tracing::info!(
        node = %identity.name,
        gossip = %gossip_addr,
        api = %api_addr,
        incarnation,
        role = %identity.meta.role,
        "starling agent started"
    );
    Ok(RunningAgent {
        gossip_addr,
        api_addr,
        identity,
        gossip: handle,
        metrics,
        history,
        checks,
        alerting,
        replication,
        aggregation,
        serving,
    })
}

/// The runner, placing checks by the gossip view, and the task turning
/// its results into history rows and transitions.
fn start_checks(
    runner: Runner,
    gossip: &GossipHandle,
    publisher: &Publisher,
    metrics: &StatusMetrics,
) -> Stage {
    let mut checks = Stage::new();
    let configured = runner.names().map(str::to_owned).collect();
    let (results, results_inbox) = tokio::sync::mpsc::channel(CHECK_RESULTS_BUFFER);
    checks.spawn(runner.run(
        Arc::new(GossipPlacement::new(gossip.view.clone())),
        results,
        checks.stopped(),
    ));
    // Ends when the runner, and with it the results channel, is gone.
    checks.spawn(status::record_results(
        publisher.clone(),
        results_inbox,
        metrics.clone(),
        configured,
    ));
    checks
}

/// The sockets, bound before anything is announced, so a port in use is
/// an error at start naming its flag.
struct Bound {
    sockets: GossipSockets,
    api: TcpListener,
    /// Advertised: `--host-ip` with the bound port.
    gossip_addr: SocketAddr,
    /// As bound (the port may have been 0).
    api_addr: SocketAddr,
}

async fn bind(config: &AgentConfig) -> Result<Bound, AgentError> {
    let bind_error = |flag, addr| move |source| AgentError::Bind { flag, addr, source };
    let gossip_error = bind_error("--gossip-bind", config.gossip_bind);
    let api_error = bind_error("--api-bind", config.api_bind);
    let sockets = GossipSockets::bind(config.gossip_bind)
        .await
        .map_err(gossip_error)?;
    let api = TcpListener::bind(config.api_bind)
        .await
        .map_err(api_error)?;
    let gossip_port = sockets.local_addr().map_err(gossip_error)?.port();
    let api_addr = api.local_addr().map_err(api_error)?;
    Ok(Bound {
        sockets,
        api,
        gossip_addr: SocketAddr::new(config.advertise_ip, gossip_port),
        api_addr,
    })
}

/// Who this node is to the cluster: name, advertised address, this run's
/// incarnation, and the services it advertises (the probe's slot fills
/// once the probe reports, through the overlay intake).
fn identity(
    config: &AgentConfig,
    incarnation: u64,
    gossip_addr: SocketAddr,
    api_addr: SocketAddr,
) -> NodeId {
    let mut services = [None; SERVICE_SLOTS];
    services[usize::from(Service::Api)] =
        Some(SocketAddr::new(config.advertise_ip, api_addr.port()));
    NodeId::from(NodeIdentity {
        name: config.node_name.clone(),
        addr: gossip_addr,
        incarnation,
        meta: NodeMeta {
            role: config.role,
            services,
        },
    })
}

/// Says loudly when gossip runs without keys, and which keys are loaded.
fn log_keyring(keyring: &Keyring, gossip_addr: SocketAddr) {
    if keyring.is_insecure() {
        tracing::warn!(
            "GOSSIP IS UNENCRYPTED AND UNAUTHENTICATED (--insecure-gossip): anyone who can \
             reach {gossip_addr} or the API can read membership, join, forge updates, and read \
             and write the history"
        );
    } else {
        let keys: Vec<String> = keyring.key_ids().iter().map(ToString::to_string).collect();
        tracing::info!(?keys, "gossip keyring loaded (first key sends)");
    }
}

/// Retire what a previous run left, then expire the local probe's figures
/// whenever it goes silent.
async fn overlay_housekeeping(
    overlay: Arc<OverlayIntake>,
    every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    overlay
        .retire_leftovers(starling_model::unix_ms_now())
        .await;
    let mut ticker = tokio::time::interval(every);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => overlay.expire_if_stale(starling_model::unix_ms_now()).await,
        }
    }
}

/// Run until `shutdown` completes, then leave gracefully.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let agent = start(config).await?;
    shutdown.await;
    tracing::info!("shutting down: leaving the cluster");
    agent.shutdown().await
}

impl RunningAgent {
    /// Stop top-down, one stage after the other: record our leave, leave
    /// the cluster, then stop serving and close the history.
    pub async fn shutdown(self) -> Result<(), AgentError> {
        // 1. Checks, so their last transitions are recorded and pushed.
        self.checks.stop().await?;
        // 2. Alerting: the marks it records ride replication.
        self.alerting.stop().await?;
        // 3. Replication: our leave is recorded, then push and pull end.
        self.replication.stop().await?;
        // 4. Aggregation: a last stream carries the leave to our owners.
        self.aggregation.stop().await?;
        // 5. Gossip leaves the cluster; the API and overlay housekeeping end.
        let served = self.serving.stop().await;
        // 6. The writer finishes what is queued, off the async threads.
        self.history.close().await;
        served
    }
}
