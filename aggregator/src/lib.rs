//! Aggregator super-nodes, and what ordinary nodes do when a cluster has
//! them.
//!
//! Below a few hundred nodes every node holds the whole cluster's log.
//! Above, that costs every node storage and traffic in proportion to the
//! cluster's event rate. An aggregated cluster moves the log to a few
//! aggregators (`--role aggregator`, no node-local checks):
//! - each ordinary node keeps its own log and streams it to the
//!   aggregators that own it (rendezvous hash, 2 by default), until each
//!   acknowledged every row ([`stream`]);
//! - it keeps the cluster's health table (the latest result of every
//!   check) current from an aggregator, so status, nodes, `/json`,
//!   `/healthz` and the roll-up still answer on any node ([`health`]);
//! - it asks an aggregator for history, and says who served it; with none
//!   answering it answers from its own log and its window of the newest
//!   events of the cluster ([`RecentWindow`]), and says older history is
//!   unavailable ([`Forwarder`]);
//! - aggregators pull the whole log from each other (anti-entropy limited
//!   to them), so every row reaches all of them.
//!
//! Whether a cluster is aggregated is each node's decision from its view
//! ([`ModeRule`]); the layers below only see the resulting
//! [`Scope`](starling_replicate::Scope).

mod cursor;
mod exchange;
mod forward;
mod health;
mod metrics;
mod mode;
mod owners;
mod serve;
#[doc(hidden)]
pub mod sim;
mod stream;
mod window;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use starling_gossip::GossipHandle;
use starling_history::Store;
use starling_replicate::Scope;
use starling_seal::Keyring;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use exchange::{ExchangeError, client, pull_health, pull_window, send_stream};
pub use forward::{ForwardError, Forwarder};
pub use health::WINDOW_EVERY_HEALTH_PULLS;
pub use metrics::AggregationMetrics;
pub use mode::{Mode, ModeRule};
pub use owners::{Aggregator, DEFAULT_REPLICAS, alive_aggregators, owners, ranked};
pub use serve::{
    HEALTH_BATCH_ROWS, STREAM_BATCH_ROWS, WINDOW_BATCH_ROWS, answer_health, answer_stream,
    answer_window,
};
pub use window::{RecentWindow, WINDOW_ROWS};
pub use wire::{
    HealthReply, HealthRequest, StreamReply, StreamRequest, WindowReply, WindowRequest,
};

/// Between two looks at our own log for rows to stream: the delay an
/// event of ours may take to reach its aggregators.
pub const DEFAULT_STREAM_INTERVAL: Duration = Duration::from_secs(1);
/// Between two pulls of the health table: how stale another node's check
/// may be on this node, on top of its own stream's delay.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// The longest an owner goes unasked when nothing is new: how soon a
/// wiped aggregator gets our log again.
pub const DEFAULT_STREAM_IDLE_INTERVAL: Duration = Duration::from_secs(30);

/// How aggregation runs; the defaults suit production, tests shorten them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AggregationConfig {
    pub rule: ModeRule,
    /// Aggregators that own each node's events.
    pub replicas: usize,
    pub stream_interval: Duration,
    pub stream_idle_interval: Duration,
    pub health_interval: Duration,
}

impl Default for AggregationConfig {
    fn default() -> Self {
        AggregationConfig {
            rule: ModeRule { aggregate_above: 0 },
            replicas: DEFAULT_REPLICAS,
            stream_interval: DEFAULT_STREAM_INTERVAL,
            stream_idle_interval: DEFAULT_STREAM_IDLE_INTERVAL,
            health_interval: DEFAULT_HEALTH_INTERVAL,
        }
    }
}

/// What aggregation works with.
#[derive(Debug)]
pub struct AggregationParts {
    pub store: Store,
    pub gossip: GossipHandle,
    pub keyring: Arc<Keyring>,
    pub metrics: AggregationMetrics,
    /// Told the replication scope each time the mode changes; replication
    /// and the publisher read it.
    pub scope: watch::Sender<Scope>,
}

/// The running aggregation tasks.
#[derive(Debug)]
pub struct Aggregation {
    stop: CancellationToken,
    tasks: [JoinHandle<()>; 3],
    forwarder: Forwarder,
    scope: watch::Receiver<Scope>,
}

impl Aggregation {
    pub fn start(parts: AggregationParts, config: AggregationConfig) -> Self {
        let AggregationParts {
            store,
            gossip,
            keyring,
            metrics,
            scope,
        } = parts;
        let stop = CancellationToken::new();
        let scope_rx = scope.subscribe();
        let decide = tokio::spawn(follow_mode(
            gossip.clone(),
            config.rule,
            scope,
            metrics.clone(),
            stop.clone().cancelled_owned(),
        ));
        let stream = tokio::spawn(stream::run(
            stream::Streamer {
                store: store.clone(),
                gossip: gossip.clone(),
                keyring: Arc::clone(&keyring),
                metrics: metrics.clone(),
                scope: scope_rx.clone(),
                replicas: config.replicas.max(1),
                interval: config.stream_interval,
                idle_interval: config.stream_idle_interval,
            },
            stop.clone().cancelled_owned(),
        ));
        let window = RecentWindow::default();
        let health = tokio::spawn(health::run(
            health::HealthPuller {
                store,
                gossip: gossip.clone(),
                keyring,
                metrics: metrics.clone(),
                scope: scope_rx.clone(),
                interval: config.health_interval,
                window: window.clone(),
            },
            stop.clone().cancelled_owned(),
        ));
        Aggregation {
            stop,
            tasks: [decide, stream, health],
            forwarder: Forwarder::new(gossip, metrics, window),
            scope: scope_rx,
        }
    }

    /// Asks aggregators for what this node's log cannot answer.
    pub fn forwarder(&self) -> Forwarder {
        self.forwarder.clone()
    }

    /// Whom this node replicates with now.
    pub fn scope(&self) -> watch::Receiver<Scope> {
        self.scope.clone()
    }

    pub async fn stop(self) -> Result<(), tokio::task::JoinError> {
        self.stop.cancel();
        for task in self.tasks {
            task.await?;
        }
        Ok(())
    }
}

/// Re-decide the mode at every change of the view, and tell replication.
async fn follow_mode(
    gossip: GossipHandle,
    rule: ModeRule,
    scope: watch::Sender<Scope>,
    metrics: AggregationMetrics,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut view = gossip.view.clone();
    let mut mode = Mode::Full;
    tokio::pin!(shutdown);
    loop {
        let (next, role) = {
            let view = view.borrow_and_update();
            (rule.next_for(mode, &view), view.me.meta.role)
        };
        if next != mode {
            tracing::info!(
                from = mode.as_str(),
                to = next.as_str(),
                role = %role,
                "replication mode changed"
            );
            mode = next;
            metrics.set_aggregated(mode == Mode::Aggregated);
            scope.send_replace(mode.scope(role));
        }
        tokio::select! {
            () = &mut shutdown => return,
            changed = view.changed() => if changed.is_err() { return },
        }
    }
}
