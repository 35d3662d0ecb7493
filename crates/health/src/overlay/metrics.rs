//! Overlay and clock metrics, under `starling_overlay_` and
//! `starling_clock_`.
//!
//! Per-peer series exist only for the peers this node's probe pings (all
//! others up to `--overlay-all-pairs-up-to`, about `--overlay-peers` above
//! it), and a peer's series are removed when its path is retired, so the
//! cardinality follows the assignment rather than growing with churn.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use starling_checks::Status;

use starling_probe::{PeerReport, ProbeReport};

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerStatusLabel {
    peer: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Handles to every overlay metric; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct OverlayMetrics {
    loss: Family<PeerLabel, FloatGauge>,
    rtt_p50: Family<PeerLabel, FloatGauge>,
    rtt_p95: Family<PeerLabel, FloatGauge>,
    path_status: Family<PeerStatusLabel, Gauge>,
    probed_by: Gauge,
    probe_bytes: Family<DirectionLabel, Counter>,
    reports: Family<ResultLabel, Counter>,
    clock_offset: FloatGauge,
}

impl OverlayMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = OverlayMetrics::default();
        let overlay = registry.sub_registry_with_prefix("overlay");
        overlay.register(
            "loss_ratio",
            "Share of echo pings to the peer lost over the window (0..1)",
            metrics.loss.clone(),
        );
        overlay.register_with_unit(
            "rtt_p50",
            "Median echo round trip to the peer over the window",
            Unit::Seconds,
            metrics.rtt_p50.clone(),
        );
        overlay.register_with_unit(
            "rtt_p95",
            "95th percentile echo round trip to the peer over the window",
            Unit::Seconds,
            metrics.rtt_p95.clone(),
        );
        overlay.register(
            "path_status",
            "The path from this node to the peer: 1 for its current status",
            metrics.path_status.clone(),
        );
        overlay.register(
            "probed_by",
            "Distinct probes that pinged this node's probe within the window (coverage)",
            metrics.probed_by.clone(),
        );
        overlay.register_with_unit(
            "probe",
            "Echo bytes sent and received by this node's probe",
            Unit::Bytes,
            metrics.probe_bytes.clone(),
        );
        overlay.register(
            "reports",
            "Reports from the local probe, by result",
            metrics.reports.clone(),
        );
        registry
            .sub_registry_with_prefix("clock")
            .register_with_unit(
                "offset",
                "This node's clock minus the cluster's median, from probe round trips",
                Unit::Seconds,
                metrics.clock_offset.clone(),
            );
        metrics.clock_offset(None);
        // At 0 from the start, so rates over them never miss a series.
        for result in ["accepted", "refused"] {
            let _ = metrics.reports.get_or_create(&ResultLabel { result });
        }
        for direction in ["sent", "received"] {
            let _ = metrics
                .probe_bytes
                .get_or_create(&DirectionLabel { direction });
        }
        metrics
    }

    pub fn report(&self, accepted: bool) {
        let result = if accepted { "accepted" } else { "refused" };
        self.reports.get_or_create(&ResultLabel { result }).inc();
    }

    /// Totals from a report. The probe counts from its own start, so a
    /// smaller total means it restarted and counts again from zero.
    pub fn probe_totals(&self, report: &ProbeReport, previous: Option<(u64, u64)>) {
        let (sent0, received0) = previous.unwrap_or_default();
        for (direction, total, before) in [
            ("sent", report.sent_bytes, sent0),
            ("received", report.received_bytes, received0),
        ] {
            let delta = if total >= before {
                total - before
            } else {
                total
            };
            self.probe_bytes
                .get_or_create(&DirectionLabel { direction })
                .inc_by(delta);
        }
        self.probed_by.set(report.probed_by.len() as i64);
    }

    pub fn path(&self, figures: &PeerReport, status: Status) {
        let label = PeerLabel {
            peer: figures.node.clone(),
        };
        let set = |family: &Family<PeerLabel, FloatGauge>, value: Option<f64>| {
            family.get_or_create(&label).set(value.unwrap_or(f64::NAN));
        };
        set(&self.loss, figures.loss_ratio());
        set(&self.rtt_p50, figures.rtt_p50_ms.map(|ms| ms / 1000.0));
        set(&self.rtt_p95, figures.rtt_p95_ms.map(|ms| ms / 1000.0));
        for candidate in Status::ALL {
            self.path_status
                .get_or_create(&PeerStatusLabel {
                    peer: figures.node.clone(),
                    status: candidate.as_str(),
                })
                .set(i64::from(candidate == status));
        }
    }

    pub fn retire(&self, peer: &str) {
        let label = PeerLabel {
            peer: peer.to_owned(),
        };
        self.loss.remove(&label);
        self.rtt_p50.remove(&label);
        self.rtt_p95.remove(&label);
        for status in Status::ALL {
            self.path_status.remove(&PeerStatusLabel {
                peer: peer.to_owned(),
                status: status.as_str(),
            });
        }
    }

    /// The offset from this report, NaN when it gave none: an unknown
    /// offset must not read as a clock in perfect agreement.
    pub fn clock_offset(&self, offset_ms: Option<f64>) {
        self.clock_offset
            .set(offset_ms.map_or(f64::NAN, |ms| ms / 1000.0));
    }
}
