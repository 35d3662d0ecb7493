//! Gossip metrics, registered in the agent's Prometheus registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::members::{MemberState, Transition};
use super::node::NodeStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabel {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TransitionLabel {
    pub transition: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabel {
    pub result: &'static str,
}

/// Every reason a datagram is dropped for: the envelope's refusals, and
/// the driver's own (`oversize`, `rejected` by SWIM). Their counters exist
/// from the start, so a rate over them never starts from a missing series.
pub(crate) const DROP_REASONS: [&str; 10] = [
    "too_short",
    "bad_magic",
    "unsupported_version",
    "wrong_purpose",
    "unknown_key",
    "unauthentic",
    "plaintext_rejected",
    "sealed_rejected",
    "oversize",
    "rejected",
];

/// What a push-pull exchange ends in.
const PUSH_PULL_RESULTS: [&str; 3] = ["ok", "in_sync", "error"];

/// Handles to every gossip metric; cheap to clone (shared atomics).
#[derive(Clone, Debug, Default)]
pub struct GossipMetrics {
    pub(crate) datagrams_received: Counter,
    pub(crate) datagrams_dropped: Family<ReasonLabel, Counter>,
    pub(crate) bytes_sent: Counter,
    pub(crate) bytes_received: Counter,
    pub(crate) members: Family<StateLabel, Gauge>,
    pub(crate) transitions: Family<TransitionLabel, Counter>,
    pub(crate) local_health: Gauge,
    pub(crate) probes_failed: Counter,
    pub(crate) stalls: Counter,
    pub(crate) push_pulls: Family<ResultLabel, Counter>,
    last_stats: std::sync::Arc<std::sync::Mutex<NodeStats>>,
}

impl GossipMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = GossipMetrics::default();
        // Every labelled counter exists from the start at 0, so a rate or an
        // increase over it never starts from a missing series.
        for reason in DROP_REASONS {
            let _ = metrics
                .datagrams_dropped
                .get_or_create(&ReasonLabel { reason });
        }
        for transition in Transition::ALL {
            let _ = metrics.transitions.get_or_create(&TransitionLabel {
                transition: transition.as_str(),
            });
        }
        for result in PUSH_PULL_RESULTS {
            let _ = metrics.push_pulls.get_or_create(&ResultLabel { result });
        }
        let gossip = registry.sub_registry_with_prefix("gossip");
        gossip.register(
            "datagrams_received",
            "Gossip datagrams that opened and were handed to SWIM",
            metrics.datagrams_received.clone(),
        );
        gossip.register(
            "datagrams_dropped",
            "Gossip datagrams dropped unparsed or rejected, by reason",
            metrics.datagrams_dropped.clone(),
        );
        gossip.register(
            "sent_bytes",
            "Bytes of gossip sent (UDP datagrams and push-pull frames, envelope included)",
            metrics.bytes_sent.clone(),
        );
        gossip.register(
            "received_bytes",
            "Bytes of gossip received (UDP datagrams and push-pull frames, envelope included)",
            metrics.bytes_received.clone(),
        );
        gossip.register(
            "members",
            "Other members by state, as this node sees them",
            metrics.members.clone(),
        );
        gossip.register(
            "member_transitions",
            "Membership transitions observed, by kind",
            metrics.transitions.clone(),
        );
        gossip.register(
            "local_health",
            "Lifeguard local health score (0 healthy; probe timeouts scale by 1 + score)",
            metrics.local_health.clone(),
        );
        gossip.register(
            "probes_failed",
            "Probes of other members that failed directly and indirectly",
            metrics.probes_failed.clone(),
        );
        gossip.register(
            "stalls",
            "Times this agent's own timers fired late enough to mean it was starved",
            metrics.stalls.clone(),
        );
        gossip.register(
            "push_pulls",
            "Full-state exchanges started by this node, by result",
            metrics.push_pulls.clone(),
        );
        metrics
    }

    pub(crate) fn dropped(&self, reason: &'static str) {
        self.datagrams_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub(crate) fn transition(&self, transition: Transition) {
        self.transitions
            .get_or_create(&TransitionLabel {
                transition: transition.as_str(),
            })
            .inc();
    }

    pub(crate) fn push_pull(&self, result: &'static str) {
        debug_assert!(
            PUSH_PULL_RESULTS.contains(&result),
            "{result} is exported from the start"
        );
        self.push_pulls.get_or_create(&ResultLabel { result }).inc();
    }

    /// Copy the node's counters and gauges; counters advance by the delta.
    pub(crate) fn observe(&self, stats: &NodeStats, counts: &[(MemberState, usize)], health: u32) {
        for (state, count) in counts {
            self.members
                .get_or_create(&StateLabel {
                    state: state.as_str(),
                })
                .set(*count as i64);
        }
        self.local_health.set(i64::from(health));
        let mut last = self
            .last_stats
            .lock()
            .expect("metrics lock is never held across a panic");
        self.probes_failed
            .inc_by(stats.probes_failed.saturating_sub(last.probes_failed));
        self.stalls.inc_by(stats.stalls.saturating_sub(last.stalls));
        *last = stats.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::DROP_REASONS;

    #[test]
    fn every_envelope_refusal_is_exported_from_the_start() {
        for error in starling_seal::OpenError::ALL {
            assert!(
                DROP_REASONS.contains(&error.reason()),
                "{} is exported from the start",
                error.reason()
            );
        }
    }
}
