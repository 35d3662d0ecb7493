//! Check and status metrics: this node's check runs as they finish, and
//! the node and cluster verdicts as of each scrape.
//!
//! Cardinality is bounded by the checks configured here (a handful) and,
//! for `starling_node_status`, by the cluster size: one series per node and
//! status.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use starling_checks::{CheckResult, Status};
use starling_model::{NodeHealth, StatusResponse};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabel {
    check: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckStatusLabel {
    check: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeStatusLabel {
    node: String,
    status: &'static str,
}

/// The statuses a node can have in `/v1/status` (the roll-up leaves out
/// nodes that left).
const NODE_STATUSES: [NodeHealth; 4] = [
    NodeHealth::Healthy,
    NodeHealth::Degraded,
    NodeHealth::Unreachable,
    NodeHealth::Unknown,
];

type FloatGauge = Gauge<f64, AtomicU64>;

fn duration_histogram() -> Histogram {
    // Checks take from a millisecond (a loopback healthz) to their timeout
    // (tens of seconds for a probe pod).
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

/// Handles to every check and status metric; cheap to clone.
#[derive(Clone, Debug)]
pub struct StatusMetrics {
    check_status: Family<CheckStatusLabel, Gauge>,
    check_duration: Family<CheckLabel, Histogram, fn() -> Histogram>,
    consecutive_failures: Family<CheckLabel, Gauge>,
    since_success: Family<CheckLabel, FloatGauge>,
    /// Per check: the last passing run (Unix ms), `None` if none is known.
    last_success: Arc<Mutex<HashMap<String, Option<u64>>>>,
    node_status: Family<NodeStatusLabel, Gauge>,
    cluster_check_status: Family<CheckStatusLabel, Gauge>,
    cluster_healthy: Gauge,
    majority: Gauge,
}

impl StatusMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = StatusMetrics {
            check_status: Family::default(),
            check_duration: Family::new_with_constructor(duration_histogram),
            consecutive_failures: Family::default(),
            since_success: Family::default(),
            last_success: Arc::default(),
            node_status: Family::default(),
            cluster_check_status: Family::default(),
            cluster_healthy: Gauge::default(),
            majority: Gauge::default(),
        };
        let check = registry.sub_registry_with_prefix("check");
        check.register(
            "status",
            "This node's checks: 1 for the current status (after the failure threshold), 0 for \
             the others",
            metrics.check_status.clone(),
        );
        check.register_with_unit(
            "duration",
            "How long each run of this node's checks took",
            Unit::Seconds,
            metrics.check_duration.clone(),
        );
        check.register(
            "consecutive_failures",
            "Failed runs in a row of this node's checks (0 after a pass)",
            metrics.consecutive_failures.clone(),
        );
        check.register_with_unit(
            "since_success",
            "Time since this node's check last passed, as of the scrape (+Inf: no pass known \
             in the retained results)",
            Unit::Seconds,
            metrics.since_success.clone(),
        );
        registry.register(
            "node_status",
            "Every node's verdict as this node sees it: 1 for the current status, 0 for the others",
            metrics.node_status.clone(),
        );
        registry.register(
            "cluster_check_status",
            "Checks run once for the cluster (scheduler probe, leader leases), their latest \
             result wherever it ran: 1 for the current status",
            metrics.cluster_check_status.clone(),
        );
        registry.register(
            "cluster_healthy",
            "1 when every node is healthy and no cluster check is critical, as this node sees it",
            metrics.cluster_healthy.clone(),
        );
        registry.register(
            "cluster_majority",
            "1 when this node sees more than half the known members alive (in a partition, the \
             side to trust)",
            metrics.majority.clone(),
        );
        metrics
    }

    /// The last passing run of each check as the history knows it, so a
    /// restart does not forget how long a check has been failing.
    pub fn seed_last_success(&self, check: &str, at_unix_ms: Option<u64>) {
        let mut last = self.last_success.lock().expect("metrics lock poisoned");
        let known = last.entry(check.to_owned()).or_insert(None);
        *known = (*known).max(at_unix_ms);
    }

    /// One finished run of a check on this node.
    pub fn observe(&self, result: &CheckResult) {
        let label = CheckLabel {
            check: result.check.clone(),
        };
        set_one_hot(&self.check_status, &result.check, result.status);
        self.check_duration
            .get_or_create(&label)
            .observe(result.duration_ms as f64 / 1000.0);
        self.consecutive_failures
            .get_or_create(&label)
            .set(i64::from(result.consecutive_failures));
        let passed = (result.status == Status::Ok).then_some(result.at_unix_ms);
        self.seed_last_success(&result.check, passed);
    }

    /// Bring the scrape-time gauges up to date: seconds since success, and
    /// the verdicts of `status`.
    pub fn refresh(&self, status: &StatusResponse, now_unix_ms: u64) {
        for (check, at) in self
            .last_success
            .lock()
            .expect("metrics lock poisoned")
            .iter()
        {
            let seconds = at.map_or(f64::INFINITY, |at| {
                now_unix_ms.saturating_sub(at) as f64 / 1000.0
            });
            self.since_success
                .get_or_create(&CheckLabel {
                    check: check.clone(),
                })
                .set(seconds);
        }
        // Nodes come and go: rebuilt, so a removed node's series goes.
        self.node_status.clear();
        for node in &status.nodes {
            for candidate in NODE_STATUSES {
                self.node_status
                    .get_or_create(&NodeStatusLabel {
                        node: node.name.clone(),
                        status: candidate.as_str(),
                    })
                    .set(i64::from(candidate == node.status));
            }
        }
        for check in &status.cluster_checks {
            set_one_hot(&self.cluster_check_status, &check.check, check.status);
        }
        self.cluster_healthy.set(i64::from(status.healthy));
        self.majority.set(i64::from(status.majority));
    }
}

fn set_one_hot(family: &Family<CheckStatusLabel, Gauge>, check: &str, current: Status) {
    for status in Status::ALL {
        family
            .get_or_create(&CheckStatusLabel {
                check: check.to_owned(),
                status: status.as_str(),
            })
            .set(i64::from(status == current));
    }
}
