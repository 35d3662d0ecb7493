//! Alerting metrics, registered under `starling_alert_`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::model::{AlertKind, AlertState};

/// What an attempt to hand a notice to a sink ends in.
const DELIVERY_RESULTS: [&str; 4] = ["delivered", "failed", "rejected", "superseded"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    kind: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    sink: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// Handles to every alerting metric; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct AlertMetrics {
    queued: Family<TransitionLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    outbox_rows: Gauge,
    outbox_dropped: Counter,
    firing: Family<KindLabel, Gauge>,
}

impl AlertMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = AlertMetrics::default();
        let sub = registry.sub_registry_with_prefix("alert");
        sub.register(
            "transitions_queued",
            "Alert transitions this node took into its outbox (as owner or fallback), by kind and state",
            metrics.queued.clone(),
        );
        sub.register(
            "deliveries",
            "Attempts to hand a notice to a sink, by result (delivered, failed: retried, rejected: dropped, superseded: another node took it over)",
            metrics.deliveries.clone(),
        );
        sub.register(
            "outbox_rows",
            "Notices waiting in this node's outbox",
            metrics.outbox_rows.clone(),
        );
        sub.register(
            "outbox_dropped",
            "Notices dropped because the outbox was full (oldest resolved first)",
            metrics.outbox_dropped.clone(),
        );
        sub.register(
            "firing",
            "Alerts whose last transition the cluster sent was firing, by kind",
            metrics.firing.clone(),
        );
        // Every series exists from the start at 0, so rules over them see
        // 0 rather than "no data" until the first alert.
        for kind in AlertKind::ALL {
            let kind = kind.as_str();
            metrics.firing.get_or_create(&KindLabel { kind }).set(0);
            for state in [AlertState::Firing, AlertState::Resolved] {
                let state = state.as_str();
                let _ = metrics
                    .queued
                    .get_or_create(&TransitionLabels { kind, state });
            }
        }
        metrics
    }

    /// The delivery series of a configured sink, at 0 until it is used.
    pub(crate) fn sink(&self, sink: &str) {
        for result in DELIVERY_RESULTS {
            let _ = self.deliveries.get_or_create(&DeliveryLabels {
                sink: sink.to_owned(),
                result,
            });
        }
    }

    pub(crate) fn queued(&self, kind: AlertKind, state: &'static str) {
        self.queued
            .get_or_create(&TransitionLabels {
                kind: kind.as_str(),
                state,
            })
            .inc();
    }

    pub(crate) fn delivery(&self, sink: &str, result: &'static str) {
        debug_assert!(
            DELIVERY_RESULTS.contains(&result),
            "{result} is exported from the start"
        );
        self.deliveries
            .get_or_create(&DeliveryLabels {
                sink: sink.to_owned(),
                result,
            })
            .inc();
    }

    pub(crate) fn outbox_rows(&self, rows: u64) {
        self.outbox_rows.set(rows as i64);
    }

    pub(crate) fn outbox_dropped(&self, dropped: u64) {
        self.outbox_dropped.inc_by(dropped);
    }

    pub(crate) fn firing(&self, counts: impl IntoIterator<Item = (AlertKind, usize)>) {
        for (kind, count) in counts {
            self.firing
                .get_or_create(&KindLabel {
                    kind: kind.as_str(),
                })
                .set(count as i64);
        }
    }
}
