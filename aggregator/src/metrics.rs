//! Aggregation metrics, registered under `starling_aggregation_`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Every label value each family takes, exported from the start at 0.
const RESULTS: [&str; 2] = ["ok", "error"];

/// Handles to every aggregation metric; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct AggregationMetrics {
    /// 1 while this node is in an aggregated cluster.
    aggregated: Gauge,
    /// Own rows not yet acknowledged by every owning aggregator.
    unacked: Gauge,
    streams: Family<ResultLabel, Counter>,
    health_pulls: Family<ResultLabel, Counter>,
    window_pulls: Family<ResultLabel, Counter>,
    forwarded: Family<ResultLabel, Counter>,
    ingested: Counter,
}

impl AggregationMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = AggregationMetrics::default();
        for result in RESULTS {
            for family in [
                &metrics.streams,
                &metrics.health_pulls,
                &metrics.window_pulls,
                &metrics.forwarded,
            ] {
                let _ = family.get_or_create(&ResultLabel { result });
            }
        }
        let sub = registry.sub_registry_with_prefix("aggregation");
        sub.register(
            "aggregated",
            "1 while the cluster is aggregated as this node sees it (aggregators hold the log), 0 in full replication",
            metrics.aggregated.clone(),
        );
        sub.register(
            "unacked_rows",
            "Rows of this node's own log not yet acknowledged by every aggregator that owns it",
            metrics.unacked.clone(),
        );
        sub.register(
            "streams",
            "Streams of this node's own rows to an aggregator, by result",
            metrics.streams.clone(),
        );
        sub.register(
            "health_pulls",
            "Pulls of the cluster's health table from an aggregator, by result",
            metrics.health_pulls.clone(),
        );
        sub.register(
            "window_pulls",
            "Pulls of the newest events of the cluster log (this node's window) from an aggregator, by result",
            metrics.window_pulls.clone(),
        );
        sub.register(
            "history_forwarded",
            "History queries this node forwarded to an aggregator, by result",
            metrics.forwarded.clone(),
        );
        sub.register(
            "rows_ingested",
            "Rows this aggregator took from nodes' streams",
            metrics.ingested.clone(),
        );
        metrics
    }

    pub(crate) fn set_aggregated(&self, aggregated: bool) {
        self.aggregated.set(i64::from(aggregated));
    }

    pub(crate) fn set_unacked(&self, rows: u64) {
        self.unacked.set(i64::try_from(rows).unwrap_or(i64::MAX));
    }

    pub(crate) fn streamed(&self, ok: bool) {
        self.streams.get_or_create(&label(ok)).inc();
    }

    pub(crate) fn health_pulled(&self, ok: bool) {
        self.health_pulls.get_or_create(&label(ok)).inc();
    }

    pub(crate) fn window_pulled(&self, ok: bool) {
        self.window_pulls.get_or_create(&label(ok)).inc();
    }

    pub(crate) fn forwarded(&self, ok: bool) {
        self.forwarded.get_or_create(&label(ok)).inc();
    }

    pub(crate) fn ingested(&self, rows: usize) {
        self.ingested.inc_by(rows as u64);
    }
}

fn label(ok: bool) -> ResultLabel {
    ResultLabel {
        result: if ok { "ok" } else { "error" },
    }
}
