//! What the history holds: events of the replicated log, and check results.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
pub use starling_model::{EventKind, ParseEnumError, Status};

/// Origin id to the highest sequence number known complete ("through"):
/// every seq up to it is held, or was deleted by retention.
pub type VersionVector = BTreeMap<String, u64>;

/// A rumor carrying an event must fit one gossip datagram whatever the
/// message says, so the message is capped when it is recorded.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// The hex part of an origin id: 64 random bits make a collision between
/// two wiped data dirs of the same node negligible.
const ORIGIN_HEX_DIGITS: usize = 16;

/// The longest DNS name, and so the longest Kubernetes node name.
const MAX_NODE_NAME_BYTES: usize = 253;

/// An event as the local agent reports it, before the log numbers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// When it happened by this node's clock; orders the log for readers.
    pub at_unix_ms: u64,
    /// Lets readers filter without parsing the message.
    pub kind: EventKind,
    /// The node the event is about, which need not be the observer.
    pub node: String,
    /// The check involved, for check and alert events.
    pub check: Option<String>,
    /// State before the transition, so a reader sees what changed.
    pub old_state: Option<String>,
    /// State after the transition.
    pub new_state: Option<String>,
    /// Human-readable text; capped at `MAX_MESSAGE_BYTES` when recorded.
    pub message: String,
    /// Nodes that see the same happening (say, one node failing) record it
    /// under the same key, so the log shows it once.
    pub dedupe_key: Option<String>,
}

/// An event of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The log it belongs to: one per database file, see `valid_origin`.
    pub origin: String,
    /// Position in the origin's log, from 1, without gaps; with `origin`
    /// it identifies the event everywhere.
    pub seq: u64,
    /// Name of the node that recorded it.
    pub observer: String,
    /// When it happened by the observer's clock.
    pub at_unix_ms: u64,
    /// See `NewEvent::kind`.
    pub kind: EventKind,
    /// The node the event is about.
    pub node: String,
    /// See `NewEvent::check`.
    pub check: Option<String>,
    /// See `NewEvent::old_state`.
    pub old_state: Option<String>,
    /// See `NewEvent::new_state`.
    pub new_state: Option<String>,
    /// See `NewEvent::message`.
    pub message: String,
    /// See `NewEvent::dedupe_key`.
    pub dedupe_key: Option<String>,
}

/// One answer to "what do I miss?", cut to a row limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncBatch {
    /// Rows the asker lacked, ordered by (origin, seq).
    pub events: Vec<Event>,
    /// Per origin: the sender vouches it holds (or deleted by retention)
    /// every seq up to this, so the receiver can skip what retention
    /// removed instead of waiting for it forever.
    pub through: VersionVector,
    /// The batch was cut at the row limit; ask again.
    pub more: bool,
}

/// Which events a reader wants; the conditions combine with AND.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilter {
    /// Only events about this node.
    pub node: Option<String>,
    /// Only events of this kind.
    pub kind: Option<EventKind>,
    /// Only events about this check.
    pub check: Option<String>,
    /// Only events at or after this time.
    pub since_unix_ms: Option<u64>,
    /// Only events before this time (exclusive, so windows tile).
    pub until_unix_ms: Option<u64>,
    /// Only events after this one in newest-first order: the next page.
    pub after: Option<EventPosition>,
    /// At most this many, newest first; bounds the work of one request.
    pub limit: usize,
}

/// An event's place in the newest-first order of `EventFilter`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPosition {
    pub at_unix_ms: u64,
    pub origin: String,
    pub seq: u64,
}

impl EventFilter {
    /// Whether `event` passes every condition but the limit: what
    /// `db::query_events` selects, for events held outside the database
    /// (an aggregated node's window of the cluster log).
    pub fn matches(&self, event: &Event) -> bool {
        self.node.as_ref().is_none_or(|node| event.node == *node)
            && self.kind.is_none_or(|kind| event.kind == kind)
            && self
                .check
                .as_ref()
                .is_none_or(|check| event.check.as_ref() == Some(check))
            && self
                .since_unix_ms
                .is_none_or(|since| event.at_unix_ms >= since)
            && self
                .until_unix_ms
                .is_none_or(|until| event.at_unix_ms < until)
            && self
                .after
                .as_ref()
                .is_none_or(|after| newest_first(&after.key(), &event_key(event)).is_lt())
    }
}

impl EventPosition {
    fn key(&self) -> (u64, &str, u64) {
        (self.at_unix_ms, &self.origin, self.seq)
    }
}

fn event_key(event: &Event) -> (u64, &str, u64) {
    (event.at_unix_ms, &event.origin, event.seq)
}

/// The order of `EventFilter` pages: newest first, then by origin and seq.
fn newest_first(a: &(u64, &str, u64), b: &(u64, &str, u64)) -> std::cmp::Ordering {
    b.0.cmp(&a.0).then_with(|| (a.1, a.2).cmp(&(b.1, b.2)))
}

/// Sorts events into the order of `EventFilter` pages.
pub fn sort_newest_first(events: &mut [Event]) {
    events.sort_by(|a, b| newest_first(&event_key(a), &event_key(b)));
}

impl Default for EventFilter {
    fn default() -> Self {
        EventFilter {
            node: None,
            kind: None,
            check: None,
            since_unix_ms: None,
            until_unix_ms: None,
            after: None,
            limit: 100,
        }
    }
}

/// The outcome of one check run on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The node the check ran on.
    pub node: String,
    /// The check's name, unique within a node.
    pub check: String,
    /// What the check concluded.
    pub status: Status,
    /// Human-readable summary.
    pub message: String,
    /// Check-specific data (latencies, counts) for the UI to show.
    pub details: serde_json::Value,
    /// How long the check took; slow checks are a symptom themselves.
    pub duration_ms: u64,
    /// When the run finished, by the node's clock; newer replaces older.
    pub at_unix_ms: u64,
}

impl CheckResult {
    /// A check's status transition on another node, as that node's latest
    /// result as far as the cluster knows: this is how the latest result of
    /// every (node, check) reaches every node without shipping every run.
    /// Only the transition travels, so no details and no duration. `None`
    /// for any other event, or a state that is not a status.
    pub fn from_transition(event: &Event) -> Option<CheckResult> {
        let (EventKind::Check, Some(check), Some(status)) =
            (event.kind, &event.check, &event.new_state)
        else {
            return None;
        };
        Some(CheckResult {
            node: event.node.clone(),
            check: check.clone(),
            status: status.parse().ok()?,
            message: event.message.clone(),
            details: serde_json::Value::Null,
            duration_ms: 0,
            at_unix_ms: event.at_unix_ms,
        })
    }
}

/// Whether `s` is `{node}#{16 lowercase hex}`, the form `new_origin` makes.
pub fn valid_origin(s: &str) -> bool {
    let Some((node, hex)) = s.rsplit_once('#') else {
        return false;
    };
    valid_node_name(node)
        && hex.len() == ORIGIN_HEX_DIGITS
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether a node name can be the first part of an origin id.
pub fn valid_node_name(name: &str) -> bool {
    (1..=MAX_NODE_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The node part of an origin id (all of it when there is no `#`).
pub fn origin_node(origin: &str) -> &str {
    origin.rsplit_once('#').map_or(origin, |(node, _)| node)
}

/// A fresh origin id for `node_name`. The random part is what keeps a node
/// whose data dir was wiped from reusing (origin, seq) pairs peers hold.
pub(crate) fn new_origin(node_name: &str) -> String {
    format!("{node_name}#{:016x}", rand::random::<u64>())
}

/// Cut `message` to at most `MAX_MESSAGE_BYTES`, on a char boundary.
pub(crate) fn truncate_message(message: &mut String) {
    if message.len() > MAX_MESSAGE_BYTES {
        let end = (0..=MAX_MESSAGE_BYTES)
            .rev()
            .find(|&i| message.is_char_boundary(i))
            .expect("index 0 is always a char boundary");
        message.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_node_hash_sixteen_lowercase_hex() {
        let origin = new_origin("node-1.example_a");
        assert!(valid_origin(&origin), "{origin}");
        assert_eq!(origin_node(&origin), "node-1.example_a");
        assert!(valid_origin("a#0123456789abcdef"));
        for bad in [
            "",
            "#0123456789abcdef",
            "a#0123456789ABCDEF",
            "a#0123456789abcde",
            "a#0123456789abcdef0",
            "a b#0123456789abcdef",
            "a",
        ] {
            assert!(!valid_origin(bad), "{bad:?}");
        }
        assert!(valid_origin(&format!(
            "{}#0123456789abcdef",
            "n".repeat(253)
        )));
        assert!(!valid_origin(&format!(
            "{}#0123456789abcdef",
            "n".repeat(254)
        )));
    }

    #[test]
    fn enums_round_trip_through_text_and_serde() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
            let json = serde_json::to_string(&kind).expect("serializes");
            assert_eq!(json, format!("\"{kind}\""));
        }
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>(), Ok(status));
        }
        let error = "Check".parse::<EventKind>().expect_err("case matters");
        assert_eq!(
            error.to_string(),
            "unknown event kind \"Check\" (expected one of: membership, check, alert, annotation)"
        );
    }

    #[test]
    fn truncation_keeps_char_boundaries() {
        let mut short = "héllo".to_owned();
        truncate_message(&mut short);
        assert_eq!(short, "héllo");
        // 'é' is two bytes: 1023 of them then a split one must drop it whole.
        let mut long = format!("{}é", "a".repeat(MAX_MESSAGE_BYTES - 1));
        truncate_message(&mut long);
        assert_eq!(long.len(), MAX_MESSAGE_BYTES - 1);
        let mut exact = "é".repeat(MAX_MESSAGE_BYTES / 2 + 3);
        truncate_message(&mut exact);
        assert_eq!(exact.len(), MAX_MESSAGE_BYTES);
    }
}
