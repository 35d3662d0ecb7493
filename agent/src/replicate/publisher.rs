//! Recording an event of our own: durable first, then pushed by gossip.

use crate::gossip::GossipHandle;
use crate::history::{Event, NewEvent, Store, StoreError};

use super::metrics::ReplicationMetrics;
use super::wire;

/// The one way this node adds to the cluster's event log.
#[derive(Clone, Debug)]
pub struct Publisher {
    store: Store,
    gossip: GossipHandle,
    metrics: ReplicationMetrics,
}

impl Publisher {
    pub fn new(store: Store, gossip: GossipHandle, metrics: ReplicationMetrics) -> Self {
        Publisher {
            store,
            gossip,
            metrics,
        }
    }

    /// Returns once the event is committed to our database (it survives a
    /// crash from then on) and queued for gossip. Pull delivers it to
    /// whoever the push misses.
    pub async fn record(&self, new: NewEvent) -> Result<Event, StoreError> {
        let event = self.store.record(new).await?;
        self.metrics.recorded();
        tracing::info!(
            seq = event.seq,
            kind = event.kind.as_str(),
            node = %event.node,
            message = %event.message,
            "event recorded"
        );
        self.gossip
            .replicate(event.origin.clone(), event.seq, wire::encode_push(&event))
            .await;
        Ok(event)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}
