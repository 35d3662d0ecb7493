//! What an alert is: a condition a source observes, and the notice a sink
//! receives when the cluster's answer to it changes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which source raised an alert. Part of the key, the Alertmanager
/// `alertname` and the webhook's `alert` field, so it never changes
/// spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    /// Gossip declared a member down.
    NodeDown,
    /// A member stayed suspect longer than `--alert-suspect-after`.
    NodeSuspect,
    /// A member went down and came back again and again within the flap
    /// window, however short each outage.
    NodeFlapping,
    /// A large share of the members was lost at once.
    Partition,
    /// A node's own checks found a critical problem.
    NodeDegraded,
    /// A cluster-scope check (one owner for the cluster) is critical.
    CheckCritical,
}

impl AlertKind {
    pub const ALL: [AlertKind; 6] = [
        AlertKind::NodeDown,
        AlertKind::NodeSuspect,
        AlertKind::NodeFlapping,
        AlertKind::Partition,
        AlertKind::NodeDegraded,
        AlertKind::CheckCritical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::NodeDown => "node-down",
            AlertKind::NodeSuspect => "node-suspect",
            AlertKind::NodeFlapping => "node-flapping",
            AlertKind::Partition => "partition",
            AlertKind::NodeDegraded => "node-degraded",
            AlertKind::CheckCritical => "check-critical",
        }
    }

    /// The Alertmanager `alertname` label, in the CamelCase routing rules
    /// and PrometheusRule alerts use.
    pub fn alertname(self) -> &'static str {
        match self {
            AlertKind::NodeDown => "StarlingNodeDown",
            AlertKind::NodeSuspect => "StarlingNodeSuspect",
            AlertKind::NodeFlapping => "StarlingNodeFlapping",
            AlertKind::Partition => "StarlingPartition",
            AlertKind::NodeDegraded => "StarlingNodeDegraded",
            AlertKind::CheckCritical => "StarlingCheckCritical",
        }
    }

    /// Fixed per kind, so a key's Alertmanager labels never change.
    pub fn severity(self) -> Severity {
        match self {
            AlertKind::NodeSuspect | AlertKind::NodeFlapping => Severity::Warning,
            _ => Severity::Critical,
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertKind {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        AlertKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == value)
            .ok_or_else(|| format!("unknown alert kind {value:?}"))
    }
}

/// How urgent; sinks are routed by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl FromStr for Severity {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            _ => Err(format!(
                "unknown severity {value:?} (expected warning or critical)"
            )),
        }
    }
}

/// Whether an alert is on. Resolved is also what a key that never fired
/// is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

impl FromStr for AlertState {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "firing" => Ok(AlertState::Firing),
            "resolved" => Ok(AlertState::Resolved),
            _ => Err(format!("unknown alert state {value:?}")),
        }
    }
}

/// What one evaluation saw about one alert key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// `{kind}/{what}`: the same on every node that sees the same thing,
    /// so owners, delivered marks and Alertmanager's dedup all agree.
    pub key: String,
    pub kind: AlertKind,
    /// The node it is about; `None` for the cluster (partition, cluster
    /// checks). The subject never sends its own alert.
    pub subject: Option<String>,
    /// The check, for check alerts.
    pub check: Option<String>,
    /// One line for a human: what is wrong, or why it is fine again.
    pub message: String,
    /// How many other members see the same thing, where that is known:
    /// suspicion witnesses for membership alerts, the members on this
    /// side for a partition.
    pub agreeing: Option<u32>,
    /// When the condition began as this node knows it: the member's state
    /// change, the check's critical result. A firing's `startsAt`.
    pub began_at_unix_ms: Option<u64>,
}

/// One alert as a sink receives it: a transition, or (Alertmanager only)
/// a refresh of one still firing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub key: String,
    pub kind: AlertKind,
    pub severity: Severity,
    pub subject: Option<String>,
    pub check: Option<String>,
    pub state: AlertState,
    /// Fired and resolved too often within the flap window: held firing
    /// until it stays resolved for a whole window.
    pub flapping: bool,
    pub message: String,
    /// The node that sent it.
    pub observer: String,
    pub agreeing: Option<u32>,
    /// Counts the key's transitions cluster-wide; with the key it names
    /// this notice everywhere (the idempotency key).
    pub generation: u64,
    pub starts_at_unix_ms: u64,
    /// Set on resolution only.
    pub ends_at_unix_ms: Option<u64>,
    /// The observer's API, for the Alertmanager `generatorURL`.
    pub generator_url: Option<String>,
}

impl Notice {
    /// Stable across senders and retries of one transition, so receivers
    /// dedupe on it; and never reused by another: the state tells apart
    /// two nodes that raced for one generation, and the start time a key
    /// whose generations began again at 1 once retention pruned its marks.
    pub fn id(&self) -> String {
        format!(
            "{}#{}:{}:{}",
            self.key,
            self.generation,
            self.state.as_str(),
            self.starts_at_unix_ms
        )
    }
}

#[cfg(test)]
impl Notice {
    /// A plain notice about `key` (its kind and subject or check read from
    /// it), observed by `a`, started at 1 s.
    pub(crate) fn for_tests(key: &str, generation: u64, state: AlertState) -> Notice {
        let kind = kind_of(key).expect("a key with a known kind");
        let what = key.split_once('/').map(|(_, what)| what.to_owned());
        let about_a_check = kind == AlertKind::CheckCritical;
        Notice {
            key: key.to_owned(),
            kind,
            severity: kind.severity(),
            subject: what.clone().filter(|_| !about_a_check),
            check: what.filter(|_| about_a_check),
            state,
            flapping: false,
            message: format!("{key} is {}", state.as_str()),
            observer: "a".to_owned(),
            agreeing: None,
            generation,
            starts_at_unix_ms: 1_000,
            ends_at_unix_ms: None,
            generator_url: None,
        }
    }
}

/// `{kind}/{what}`.
pub fn key(kind: AlertKind, what: &str) -> String {
    format!("{}/{what}", kind.as_str())
}

/// The kind a key starts with.
pub fn kind_of(key: &str) -> Option<AlertKind> {
    key.split_once('/')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_keys_and_serde() {
        for kind in AlertKind::ALL {
            assert_eq!(kind_of(&key(kind, "host-1")), Some(kind));
            let json = serde_json::to_string(&kind).expect("serializes");
            assert_eq!(json, format!("\"{kind}\""));
        }
        assert_eq!(kind_of("bogus/x"), None);
        assert_eq!(kind_of("node-down"), None);
        assert!(Severity::Critical > Severity::Warning);
    }
}
