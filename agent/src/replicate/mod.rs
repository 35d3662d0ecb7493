//! Replication of the cluster's event log: our own events recorded and
//! pushed by gossip, other nodes' rows taken from gossip, anti-entropy
//! pulls over `POST /v1/sync`, and membership transitions recorded once
//! for the cluster.

mod metrics;
mod publisher;
mod pull;
mod push;
mod recorder;
mod serve;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::gossip::{GossipHandle, Keyring};
use crate::stopped;

pub use metrics::ReplicationMetrics;
pub use publisher::Publisher;
pub use pull::{DEFAULT_PULL_INTERVAL, PullError, Pulled, client, pull_from};
pub use recorder::DEFAULT_RECORD_GRACE;
pub use serve::{MAX_ANNOTATION_BYTES, SYNC_BATCH_ROWS};
pub(crate) use serve::{accept_annotation, answer_sync, refusal};
pub(crate) use wire::open_json;
pub use wire::{AnnotationRequest, WireError, seal_json};

/// Timing of replication; the defaults suit production, tests shorten them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// Between two anti-entropy pulls.
    pub pull_interval: Duration,
    /// Per rank, how long a fallback recorder waits for a better-ranked
    /// node's record.
    pub record_grace: Duration,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            pull_interval: DEFAULT_PULL_INTERVAL,
            record_grace: DEFAULT_RECORD_GRACE,
        }
    }
}

/// The running replication tasks.
#[derive(Debug)]
pub struct Replication {
    stop_recorder: watch::Sender<bool>,
    stop_transfer: watch::Sender<bool>,
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
        let (stop_recorder, recorder_stopping) = watch::channel(false);
        let (stop_transfer, transfer_stopping) = watch::channel(false);
        let store = publisher.store().clone();
        let (caught_up_tx, caught_up) = watch::channel(false);
        let push = tokio::spawn(push::run(
            store.clone(),
            gossip.subscribe_replicated(),
            metrics.clone(),
            stopped(transfer_stopping.clone()),
        ));
        let pull = tokio::spawn(pull::run(
            store,
            gossip.clone(),
            keyring,
            metrics,
            config.pull_interval,
            caught_up_tx,
            stopped(transfer_stopping),
        ));
        let recorder = tokio::spawn(recorder::run(
            publisher,
            gossip,
            config.record_grace,
            stopped(recorder_stopping),
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
        let _ = self.stop_recorder.send(true);
        self.recorder.await?;
        let _ = self.stop_transfer.send(true);
        for task in self.transfer {
            task.await?;
        }
        Ok(())
    }
}
