//! Replication of the cluster's event log: our own events recorded and
//! pushed by gossip, other nodes' rows taken from gossip, anti-entropy
//! pulls over `POST /v1/sync`, and membership transitions recorded once
//! for the cluster.

mod cadence;
#[doc(hidden)]
pub mod fuzzing;
mod metrics;
mod publisher;
mod pull;
mod push;
mod recorder;
mod serve;
#[doc(hidden)]
pub mod sim;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use starling_gossip::GossipHandle;
use starling_seal::Keyring;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use metrics::ReplicationMetrics;
pub use publisher::Publisher;
pub use pull::{
    DEFAULT_PULL_IDLE_INTERVAL, DEFAULT_PULL_INTERVAL, PullError, Pulled, client, pull_from,
};
pub use recorder::DEFAULT_RECORD_GRACE;
pub use serve::{MAX_ANNOTATION_BYTES, SYNC_BATCH_ROWS};
pub use serve::{accept_annotation, answer_sync, refusal};
pub use wire::WireError;

/// Whom this node replicates the cluster's log with. The aggregation
/// layer sets it from the membership; without aggregators it stays
/// `Everyone`, which is full replication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every row pushed by gossip to every node and pulled from any alive
    /// peer: every node holds the whole log.
    #[default]
    Everyone,
    /// This node is an aggregator of an aggregated cluster: it pulls from
    /// the other aggregators only, and only they record what happens to
    /// other members (ordinary nodes would not see each other's records).
    Aggregators,
    /// An ordinary node of an aggregated cluster: it keeps its own log,
    /// which the aggregation layer streams to its aggregators; nothing is
    /// pushed or pulled here, and it records only its own transitions.
    OwnLog,
}

/// Timing of replication; the defaults suit production, tests shorten them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// Between two anti-entropy pulls while they find something to do.
    pub pull_interval: Duration,
    /// The longest pause between pulls while each finds the peer in sync.
    pub pull_idle_interval: Duration,
    /// Per rank, how long a fallback recorder waits for a better-ranked
    /// node's record.
    pub record_grace: Duration,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            pull_interval: DEFAULT_PULL_INTERVAL,
            pull_idle_interval: DEFAULT_PULL_IDLE_INTERVAL,
            record_grace: DEFAULT_RECORD_GRACE,
        }
    }
}

/// The running replication tasks.
#[derive(Debug)]
pub struct Replication {
    /// Stops the recorder first, so our leave is recorded while push and
    /// pull still carry it.
    stop_recorder: CancellationToken,
    stop_transfer: CancellationToken,
    recorder: JoinHandle<()>,
    transfer: [JoinHandle<()>; 2],
    /// True once a pull from a peer succeeded: what the cluster recorded
    /// while this node was away is here now (alerting waits for it).
    caught_up: watch::Receiver<bool>,
}

impl Replication {
    pub fn start(
        publisher: Publisher,
        gossip: GossipHandle,
        keyring: Arc<Keyring>,
        metrics: ReplicationMetrics,
        config: ReplicationConfig,
    ) -> Self {
        let stop_recorder = CancellationToken::new();
        let stop_transfer = CancellationToken::new();
        let store = publisher.store().clone();
        let scope = publisher.scope();
        let (caught_up_tx, caught_up) = watch::channel(false);
        let gaps = Arc::new(Notify::new());
        let push = tokio::spawn(push::run(
            store.clone(),
            gossip.subscribe_payloads(),
            metrics.clone(),
            Arc::clone(&gaps),
            stop_transfer.clone().cancelled_owned(),
        ));
        let pace = pull::Pace {
            interval: config.pull_interval,
            idle_interval: config.pull_idle_interval.max(config.pull_interval),
        };
        let puller = pull::Puller {
            store,
            gossip: gossip.clone(),
            keyring,
            metrics,
            pace,
            caught_up: caught_up_tx,
            gaps,
            scope: scope.clone(),
        };
        let pull = tokio::spawn(pull::run(puller, stop_transfer.clone().cancelled_owned()));
        let recorder = tokio::spawn(recorder::run(
            publisher,
            gossip,
            scope,
            config.record_grace,
            stop_recorder.clone().cancelled_owned(),
        ));
        Replication {
            stop_recorder,
            stop_transfer,
            recorder,
            transfer: [push, pull],
            caught_up,
        }
    }

    /// Becomes true after the first successful pull from a peer.
    pub fn caught_up(&self) -> watch::Receiver<bool> {
        self.caught_up.clone()
    }

    /// Record our leave, then stop. Call before gossip leaves, so the
    /// row rides the leave's gossip rounds.
    pub async fn stop(self) -> Result<(), tokio::task::JoinError> {
        self.stop_recorder.cancel();
        self.recorder.await?;
        self.stop_transfer.cancel();
        for task in self.transfer {
            task.await?;
        }
        Ok(())
    }
}
