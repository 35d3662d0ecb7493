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

/// Every label value each family takes. The series exist from the start at
/// 0, so a rule's `increase` or `rate` over them sees 0, not "no data".
const VIAS: [&str; 2] = ["push", "pull"];
const PULL_RESULTS: [&str; 3] = ["ok", "in_sync", "error"];
const SERVE_RESULTS: [&str; 2] = ["ok", "refused"];
const LOSS_REASONS: [&str; 3] = ["lagged", "undecodable", "store"];

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
        for via in VIAS {
            let _ = metrics.rows_received.get_or_create(&ViaLabel { via });
        }
        for result in PULL_RESULTS {
            let _ = metrics.pulls.get_or_create(&ResultLabel { result });
        }
        for result in SERVE_RESULTS {
            let _ = metrics.syncs_served.get_or_create(&ResultLabel { result });
        }
        for reason in LOSS_REASONS {
            let _ = metrics.pushes_lost.get_or_create(&ReasonLabel { reason });
        }
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
        debug_assert!(VIAS.contains(&via), "{via} is exported from the start");
        self.rows_received
            .get_or_create(&ViaLabel { via })
            .inc_by(rows as u64);
    }

    pub(crate) fn pulled(&self, result: &'static str) {
        debug_assert!(
            PULL_RESULTS.contains(&result),
            "{result} is exported from the start"
        );
        self.pulls.get_or_create(&ResultLabel { result }).inc();
    }

    pub(crate) fn served(&self, result: &'static str) {
        debug_assert!(
            SERVE_RESULTS.contains(&result),
            "{result} is exported from the start"
        );
        self.syncs_served
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub(crate) fn push_lost(&self, reason: &'static str, rows: u64) {
        debug_assert!(
            LOSS_REASONS.contains(&reason),
            "{reason} is exported from the start"
        );
        self.pushes_lost
            .get_or_create(&ReasonLabel { reason })
            .inc_by(rows);
    }

    pub(crate) fn recorded(&self) {
        self.recorded.inc();
    }
}
