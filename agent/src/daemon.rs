//! The agent process: history, gossip, replication and the HTTP surface,
//! started together and stopped in order (record our leave, leave the
//! cluster, then stop answering).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::alert::{AlertMetrics, Alerting, SinkError};
use crate::gossip::{
    Gossip, GossipHandle, GossipMetrics, GossipNode, GossipSockets, NodeId, NodeMeta,
};
use crate::history::{HistoryMetrics, Store, StoreError};
use crate::incarnation::{self, DataDirError};
use crate::overlay::{OverlayIntake, OverlayMetrics};
use crate::replicate::{Publisher, Replication, ReplicationMetrics};
use crate::settings::AgentSettings;
use crate::status::{self, GossipPlacement, StatusMetrics};
use crate::stopped;
use crate::view::{AgentSurface, SurfaceParts};

/// Check results queued between the runner and the history.
const CHECK_RESULTS_BUFFER: usize = 256;

/// The history database's file name inside `--data-dir`.
pub const HISTORY_FILE: &str = "history.db";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    History(#[from] StoreError),
    #[error(transparent)]
    Checks(#[from] status::ChecksError),
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
    replication: Replication,
    stop_checks: watch::Sender<bool>,
    /// The runner, then the task turning its results into history.
    checks_tasks: [JoinHandle<()>; 2],
    stop: watch::Sender<bool>,
    gossip_task: JoinHandle<()>,
    http_task: JoinHandle<std::io::Result<()>>,
    /// Writes overlay verdicts: stopped before the history closes.
    overlay_task: JoinHandle<()>,
    /// Records alert marks: stopped before replication and gossip.
    alerting: Alerting,
}

/// Bind, join and serve. Returns once both sockets are bound, so callers
/// (and tests) can use the addresses at once.
pub async fn start(settings: AgentSettings) -> Result<RunningAgent, AgentError> {
    let incarnation = incarnation::next(&settings.data_dir)?;
    let mut registry = Registry::with_prefix("starling");
    let history = Store::open(
        &settings.data_dir.join(HISTORY_FILE),
        &settings.node_name,
        settings.history.clone(),
        HistoryMetrics::register(&mut registry),
    )?;
    let runner = status::runner(&settings).await?;
    let checks_here = status::node_checks_here(&settings);
    let bind_error = |flag, addr| move |source| AgentError::Bind { flag, addr, source };
    let sockets = GossipSockets::bind(settings.gossip_bind)
        .await
        .map_err(bind_error("--gossip-bind", settings.gossip_bind))?;
    let api = tokio::net::TcpListener::bind(settings.api_bind)
        .await
        .map_err(bind_error("--api-bind", settings.api_bind))?;
    let gossip_port = sockets
        .local_addr()
        .map_err(bind_error("--gossip-bind", settings.gossip_bind))?
        .port();
    let api_addr = api
        .local_addr()
        .map_err(bind_error("--api-bind", settings.api_bind))?;
    let gossip_addr = SocketAddr::new(settings.advertise_ip, gossip_port);
    let identity = NodeId {
        name: settings.node_name.clone(),
        addr: gossip_addr,
        incarnation,
        meta: NodeMeta {
            role: settings.role,
            api_addr: Some(SocketAddr::new(settings.advertise_ip, api_addr.port())),
            probe_addr: None,
        },
    };

    let metrics = GossipMetrics::register(&mut registry);
    let replication_metrics = ReplicationMetrics::register(&mut registry);
    let status_metrics = StatusMetrics::register(&mut registry);
    let node = GossipNode::new(
        identity.clone(),
        settings.gossip.clone(),
        rand::random(),
        Duration::ZERO,
    );
    let keyring = Arc::new(settings.keyring.clone());
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
    let has_seeds = !settings.join.is_empty();
    let (gossip, handle) = Gossip::new(
        sockets,
        node,
        Arc::clone(&keyring),
        metrics.clone(),
        settings.join,
    );
    let (stop, stopping) = watch::channel(false);
    let gossip_task = tokio::spawn(gossip.run(stopped(stopping.clone())));
    let publisher = Publisher::new(history.clone(), handle.clone(), replication_metrics.clone());
    let replication = Replication::start(
        publisher.clone(),
        handle.clone(),
        Arc::clone(&keyring),
        replication_metrics.clone(),
        settings.replication,
    );
    let (stop_checks, checks_stopping) = watch::channel(false);
    let (results, results_inbox) = tokio::sync::mpsc::channel(CHECK_RESULTS_BUFFER);
    let checks_tasks = [
        tokio::spawn(runner.run(
            Arc::new(GossipPlacement::new(handle.view.clone())),
            results,
            stopped(checks_stopping),
        )),
        tokio::spawn(status::record_results(
            publisher.clone(),
            results_inbox,
            status_metrics.clone(),
        )),
    ];
    let overlay = Arc::new(OverlayIntake::new(
        settings.overlay.clone(),
        Arc::clone(&keyring),
        handle.clone(),
        publisher.clone(),
        OverlayMetrics::register(&mut registry),
        status_metrics.clone(),
    ));
    let overlay_task = tokio::spawn(overlay_housekeeping(
        Arc::clone(&overlay),
        settings.overlay.report_interval,
        stopped(stopping.clone()),
    ));
    let alerting = Alerting::start(
        &settings.alert,
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
        status_metrics,
        checks_here,
        has_seeds,
        overlay,
    }));
    let http_task = tokio::spawn(starling_web::serve(api, surface, stopped(stopping)));
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
        replication,
        stop_checks,
        checks_tasks,
        stop,
        gossip_task,
        http_task,
        overlay_task,
        alerting,
    })
}

/// Retire what a previous run left, then expire the local probe's figures
/// whenever it goes silent.
async fn overlay_housekeeping(
    overlay: Arc<OverlayIntake>,
    every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    overlay.retire_leftovers(crate::unix_ms_now()).await;
    let mut ticker = tokio::time::interval(every);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => overlay.expire_if_stale(crate::unix_ms_now()).await,
        }
    }
}

/// Run until `shutdown` completes, then leave gracefully.
pub async fn run(
    settings: AgentSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let agent = start(settings).await?;
    shutdown.await;
    tracing::info!("shutting down: leaving the cluster");
    agent.shutdown().await
}

impl RunningAgent {
    /// Record our leave, leave the cluster, then stop serving.
    pub async fn shutdown(self) -> Result<(), AgentError> {
        // Checks first, so their last transitions are recorded and pushed.
        let _ = self.stop_checks.send(true);
        for task in self.checks_tasks {
            task.await?;
        }
        self.alerting.stop().await?;
        self.replication.stop().await?;
        // No receiver left means both tasks already ended.
        let _ = self.stop.send(true);
        self.gossip_task.await?;
        let served = self.http_task.await?.map_err(AgentError::Http);
        self.overlay_task.await?;
        // Last: the writer finishes what is queued, off the async threads.
        self.history.close().await;
        served
    }
}
