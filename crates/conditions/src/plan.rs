//! What each Node's condition should say and which writes a round makes.
//! Pure: the roll-up, the view, what was written and the time come in.

use std::collections::BTreeMap;

use starling_gossip::{MembershipView, rendezvous};
use starling_model::{NodeHealth, NodeStatus};

/// The condition type on every Node: `kubectl describe node` lists it,
/// and remediation tools (Cluster API MachineHealthCheck, draino) match it.
pub const CONDITION_TYPE: &str = "StarlingHealthy";
/// Kubernetes caps a condition's message; a long list of reasons is cut.
const MESSAGE_LIMIT: usize = 1024;

/// A condition's `status`, as Kubernetes spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }

    pub fn parse(text: &str) -> ConditionStatus {
        match text {
            "True" => ConditionStatus::True,
            "False" => ConditionStatus::False,
            _ => ConditionStatus::Unknown,
        }
    }
}

/// What a node's condition should say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub status: ConditionStatus,
    /// CamelCase, as Kubernetes reasons are: `Healthy`, `Degraded`, …
    pub reason: String,
    pub message: String,
}

/// The condition for a node as the roll-up sees it; `None` for a node
/// that left the cluster (its Node object is going too).
pub fn desired(node: &NodeStatus) -> Option<Desired> {
    let (status, reason) = match node.status {
        NodeHealth::Healthy => (ConditionStatus::True, "Healthy"),
        NodeHealth::Degraded => (ConditionStatus::False, "Degraded"),
        NodeHealth::Unreachable => (ConditionStatus::False, "Unreachable"),
        NodeHealth::Unknown => (ConditionStatus::Unknown, "NoData"),
        NodeHealth::Left => return None,
    };
    let mut message = if node.reasons.is_empty() {
        format!("starling: {}", node.status)
    } else {
        format!("starling: {}: {}", node.status, node.reasons.join("; "))
    };
    if message.len() > MESSAGE_LIMIT {
        let mut cut = MESSAGE_LIMIT - 3;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("...");
    }
    Some(Desired {
        status,
        reason: reason.to_owned(),
        message,
    })
}

/// Whether this node writes `subject`'s condition: the first alive member
/// in rendezvous order, the subject itself excluded (a dead node cannot
/// say it is dead), so one writer per Node and a new one when it dies.
pub fn owns(view: &MembershipView, subject: &str) -> bool {
    let key = format!("node-condition/{subject}");
    let eligible = view.alive_names().filter(|name| *name != subject);
    rendezvous::rank(&key, eligible).first() == Some(&view.me.name.as_str())
}

/// What this node knows the API holds for a Node's condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub desired: Desired,
    /// `lastTransitionTime`: when the status last changed.
    pub transition_unix_ms: u64,
    pub written_unix_ms: u64,
}

/// One write of a round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub node: String,
    pub desired: Desired,
    pub transition_unix_ms: u64,
    /// The status changed from a known one: an Event says so.
    pub event: Option<ConditionStatus>,
}

/// The writes of one round, at most `limit` (changes first, then the
/// heartbeats due longest): a condition that changed, or one unchanged
/// for `heartbeat_ms`, so its `lastHeartbeatTime` shows starling watches.
pub fn plan(
    wanted: &BTreeMap<String, Desired>,
    written: &BTreeMap<String, Written>,
    now_unix_ms: u64,
    heartbeat_ms: u64,
    limit: usize,
) -> Vec<Write> {
    let mut changes = Vec::new();
    let mut heartbeats = Vec::new();
    for (node, desired) in wanted {
        let before = written.get(node);
        let (transition_unix_ms, event) = match before {
            Some(before) if before.desired.status == desired.status => {
                (before.transition_unix_ms, None)
            }
            Some(before) => (now_unix_ms, Some(before.desired.status)),
            None => (now_unix_ms, None),
        };
        let write = Write {
            node: node.clone(),
            desired: desired.clone(),
            transition_unix_ms,
            event,
        };
        match before {
            Some(before) if before.desired == *desired => {
                if now_unix_ms.saturating_sub(before.written_unix_ms) >= heartbeat_ms {
                    heartbeats.push((before.written_unix_ms, write));
                }
            }
            _ => changes.push(write),
        }
    }
    heartbeats.sort_by_key(|(written_at, _)| *written_at);
    changes
        .into_iter()
        .chain(heartbeats.into_iter().map(|(_, write)| write))
        .take(limit)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(status: NodeHealth, reasons: &[&str]) -> NodeStatus {
        NodeStatus {
            name: "n1".to_owned(),
            status,
            reasons: reasons.iter().map(|r| (*r).to_owned()).collect(),
            checks: Vec::new(),
        }
    }

    #[test]
    fn the_condition_follows_the_verdict_with_its_reasons() {
        let healthy = desired(&node(NodeHealth::Healthy, &[])).expect("a condition");
        assert_eq!(healthy.status, ConditionStatus::True);
        assert_eq!(healthy.reason, "Healthy");
        let degraded =
            desired(&node(NodeHealth::Degraded, &["disk: /var 2% free"])).expect("a condition");
        assert_eq!(degraded.status, ConditionStatus::False);
        assert_eq!(degraded.message, "starling: degraded: disk: /var 2% free");
        let unknown = desired(&node(NodeHealth::Unknown, &[])).expect("a condition");
        assert_eq!(unknown.status, ConditionStatus::Unknown);
        assert_eq!(desired(&node(NodeHealth::Left, &[])), None);
        let long = "é".repeat(2000);
        let cut = desired(&node(NodeHealth::Degraded, &[&long])).expect("a condition");
        assert!(cut.message.len() <= MESSAGE_LIMIT && cut.message.ends_with("..."));
    }

    #[test]
    fn changes_are_written_with_an_event_heartbeats_when_due_and_no_more_than_the_limit() {
        let want = |status| Desired {
            status,
            reason: "R".to_owned(),
            message: "m".to_owned(),
        };
        let wanted: BTreeMap<String, Desired> = [
            ("a".to_owned(), want(ConditionStatus::False)),
            ("b".to_owned(), want(ConditionStatus::True)),
            ("c".to_owned(), want(ConditionStatus::True)),
            ("d".to_owned(), want(ConditionStatus::True)),
        ]
        .into();
        let written: BTreeMap<String, Written> = [
            // a was True: a change, with an event.
            (
                "a".to_owned(),
                Written {
                    desired: want(ConditionStatus::True),
                    transition_unix_ms: 10,
                    written_unix_ms: 50,
                },
            ),
            // b unchanged, written long ago: a heartbeat, transition kept.
            (
                "b".to_owned(),
                Written {
                    desired: want(ConditionStatus::True),
                    transition_unix_ms: 5,
                    written_unix_ms: 20,
                },
            ),
            // c unchanged and fresh: nothing.
            (
                "c".to_owned(),
                Written {
                    desired: want(ConditionStatus::True),
                    transition_unix_ms: 5,
                    written_unix_ms: 95,
                },
            ),
        ]
        .into();
        // d is new: written, no event (nothing known before).
        let writes = plan(&wanted, &written, 100, 60, 10);
        let summary: Vec<(&str, u64, Option<ConditionStatus>)> = writes
            .iter()
            .map(|w| (w.node.as_str(), w.transition_unix_ms, w.event))
            .collect();
        assert_eq!(
            summary,
            [
                ("a", 100, Some(ConditionStatus::True)),
                ("d", 100, None),
                ("b", 5, None)
            ]
        );
        assert_eq!(plan(&wanted, &written, 100, 60, 2).len(), 2, "rate-limited");
    }
}
