//! History metrics, registered in the agent's Prometheus registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::retention::RetentionReport;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TableLabel {
    pub table: &'static str,
}

/// Why a write failed, as the `reason` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteFailure {
    DiskFull,
    Other,
}

/// Handles to every history metric; cheap to clone (shared atomics).
/// `HistoryMetrics::default()` works unregistered, for tests.
#[derive(Clone, Debug)]
pub struct HistoryMetrics {
    pub(crate) events: Gauge,
    pub(crate) size_bytes: Gauge,
    pub(crate) writes: Counter,
    pub(crate) write_errors: Family<ReasonLabel, Counter>,
    pub(crate) retention_deleted: Family<TableLabel, Counter>,
    pub(crate) replication_lag: Histogram,
}

impl Default for HistoryMetrics {
    fn default() -> Self {
        HistoryMetrics {
            events: Gauge::default(),
            size_bytes: Gauge::default(),
            writes: Counter::default(),
            write_errors: Family::default(),
            retention_deleted: Family::default(),
            // From a push (tens of ms) to a pull after a partition heals
            // (minutes).
            replication_lag: Histogram::new([
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
            ]),
        }
    }
}

/// The tables retention deletes from, in [`RetentionReport`]'s order.
const RETAINED_TABLES: [&str; 3] = ["events", "check_results", "latest_results"];

impl HistoryMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = HistoryMetrics::default();
        registry.register_with_unit(
            "replication_lag",
            "From when an event happened on another node (its clock) to when it was stored \
             here, for each row new to this node, pushed or pulled, that happened while this \
             agent ran (older rows are catch-up, not lag)",
            Unit::Seconds,
            metrics.replication_lag.clone(),
        );
        // Exported at 0 from the start, so alerts on them have a series.
        for reason in ["disk_full", "other"] {
            let _ = metrics.write_errors.get_or_create(&ReasonLabel { reason });
        }
        for table in RETAINED_TABLES {
            let _ = metrics
                .retention_deleted
                .get_or_create(&TableLabel { table });
        }
        let history = registry.sub_registry_with_prefix("history");
        history.register(
            "events",
            "Rows in the event log (duplicates included)",
            metrics.events.clone(),
        );
        history.register(
            "size_bytes",
            "Size of the history database file, its write-ahead log included",
            metrics.size_bytes.clone(),
        );
        history.register(
            "writes",
            "Transactions the history writer committed (one per group of queued writes)",
            metrics.writes.clone(),
        );
        history.register(
            "write_errors",
            "History writes refused, by reason (disk_full, other)",
            metrics.write_errors.clone(),
        );
        history.register(
            "retention_deleted",
            "Rows deleted by history retention, by table",
            metrics.retention_deleted.clone(),
        );
        metrics
    }

    pub(crate) fn write_failed(&self, failure: WriteFailure) {
        let reason = match failure {
            WriteFailure::DiskFull => "disk_full",
            WriteFailure::Other => "other",
        };
        self.write_errors
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub(crate) fn retained(&self, report: &RetentionReport) {
        let deleted = [
            report.events_deleted,
            report.results_deleted,
            report.latest_deleted,
        ];
        for (table, deleted) in RETAINED_TABLES.into_iter().zip(deleted) {
            if deleted > 0 {
                self.retention_deleted
                    .get_or_create(&TableLabel { table })
                    .inc_by(deleted);
            }
        }
        self.events
            .dec_by(i64::try_from(report.events_deleted).unwrap_or(i64::MAX));
    }

    #[cfg(test)]
    pub(crate) fn write_errors(&self, reason: &'static str) -> u64 {
        self.write_errors
            .get_or_create(&ReasonLabel { reason })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_out_under_the_history_prefix() {
        let mut registry = Registry::with_prefix("starling");
        let metrics = HistoryMetrics::register(&mut registry);
        metrics.write_failed(WriteFailure::DiskFull);
        metrics.retained(&RetentionReport {
            events_deleted: 2,
            ..RetentionReport::default()
        });
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        for name in [
            "starling_history_events ",
            "starling_history_size_bytes ",
            "starling_history_writes_total ",
            "starling_history_write_errors_total{reason=\"disk_full\"} 1",
            "starling_history_retention_deleted_total{table=\"events\"} 2",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
