//! Recording an event of our own: durable first, then pushed by gossip.

use starling_gossip::GossipHandle;
use starling_history::{CheckResult, Event, EventFilter, NewEvent, Store, StoreError};
use tokio::sync::watch;

use super::Scope;
use super::metrics::ReplicationMetrics;
use super::wire;

/// The one way this node adds to the cluster's event log.
#[derive(Clone, Debug)]
pub struct Publisher {
    store: Store,
    gossip: GossipHandle,
    metrics: ReplicationMetrics,
    /// Rows are pushed by gossip only in full replication: an aggregated
    /// cluster's nodes stream theirs to the aggregators instead.
    scope: watch::Receiver<Scope>,
}

impl Publisher {
    pub fn new(
        store: Store,
        gossip: GossipHandle,
        metrics: ReplicationMetrics,
        scope: watch::Receiver<Scope>,
    ) -> Self {
        Publisher {
            store,
            gossip,
            metrics,
            scope,
        }
    }

    /// Whom this node replicates with, as the aggregation layer last said.
    pub fn scope(&self) -> watch::Receiver<Scope> {
        self.scope.clone()
    }

    /// Returns once the event is committed to our database (it survives a
    /// crash from then on) and, in full replication, queued for gossip.
    /// Pull delivers it to whoever the push misses; in an aggregated
    /// cluster the stream to the aggregators carries it.
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
        if *self.scope.borrow() == Scope::Everyone {
            self.gossip
                .spread(event.origin.clone(), event.seq, wire::encode_push(&event))
                .await;
        }
        Ok(event)
    }

    /// Tell the cluster a result of ours that the history could not take
    /// (a full disk): held in memory here and on every node that hears it,
    /// until the row itself arrives. Named by its check and time, so each
    /// result is one rumor.
    pub async fn spread_held(&self, result: &CheckResult) {
        self.store.hold_result(result.clone());
        let origin = format!("{}#held/{}", self.store.node_name(), result.check);
        self.gossip
            .spread(origin, result.at_unix_ms, wire::encode_held(result))
            .await;
    }

    /// Whether `name` is a node of this cluster: a member in gossip (this
    /// node included, whatever its state) or the subject of an event in
    /// the history (a node that left long ago still has its past).
    pub async fn knows_node(&self, name: &str) -> Result<bool, StoreError> {
        let view = std::sync::Arc::clone(&self.gossip.view.borrow());
        if view.me.name == name || view.members.iter().any(|m| m.id.name == name) {
            return Ok(true);
        }
        let about = EventFilter {
            node: Some(name.to_owned()),
            limit: 1,
            ..EventFilter::default()
        };
        Ok(!self.store.events(about).await?.is_empty())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}
