//! Replication metrics, registered under `starling_replication_`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViaLabel {
    via: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Handles to every replication metric; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ReplicationMetrics {
    rows_received: Family<ViaLabel, Counter>,
    pulls: Family<ResultLabel, Counter>,
    syncs_served: Family<ResultLabel, Counter>,
    pushes_lost: Family<ReasonLabel, Counter>,
    recorded: Counter,
}

impl ReplicationMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ReplicationMetrics::default();
        let sub = registry.sub_registry_with_prefix("replication");
        sub.register(
            "rows_received",
            "Event rows from other nodes newly stored, by how they came (push: gossip, pull: anti-entropy)",
            metrics.rows_received.clone(),
        );
        sub.register(
            "pulls",
            "Anti-entropy pulls this node made, by result",
            metrics.pulls.clone(),
        );
        sub.register(
            "syncs_served",
            "Sync requests this node answered or refused",
            metrics.syncs_served.clone(),
        );
        sub.register(
            "pushes_lost",
            "Pushed rows not stored, by reason (pull repairs them)",
            metrics.pushes_lost.clone(),
        );
        sub.register(
            "events_recorded",
            "Events this node recorded in its own log",
            metrics.recorded.clone(),
        );
        metrics
    }

    pub(crate) fn received(&self, via: &'static str, rows: usize) {
        self.rows_received
            .get_or_create(&ViaLabel { via })
            .inc_by(rows as u64);
    }

    pub(crate) fn pulled(&self, result: &'static str) {
        self.pulls.get_or_create(&ResultLabel { result }).inc();
    }

    pub(crate) fn served(&self, result: &'static str) {
        self.syncs_served
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub(crate) fn push_lost(&self, reason: &'static str, rows: u64) {
        self.pushes_lost
            .get_or_create(&ReasonLabel { reason })
            .inc_by(rows);
    }

    pub(crate) fn recorded(&self) {
        self.recorded.inc();
    }
}
