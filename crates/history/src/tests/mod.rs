//! Tests of the history: `db` and `retention` on in-memory databases,
//! `store` on real files.

mod db;
mod retention;
mod store;
mod sync;

use rusqlite::{Connection, Transaction};

use super::model::{CheckResult, Event, EventKind, NewEvent, Status, origin_node};

const DAY_MS: u64 = 24 * 3600 * 1000;

/// A fixed "now", far from 0 so that "now minus a week" is positive.
const NOW: u64 = 1_700_000_000_000;

/// A valid origin for `node` with a fixed hex part, so tests can name it.
fn origin(node: &str) -> String {
    format!("{node}#00000000000000{:02x}", node.len())
}

fn memory(node: &str) -> (Connection, String) {
    super::db::open_in_memory(node).expect("an in-memory database opens")
}

fn tx(conn: &mut Connection) -> Transaction<'_> {
    conn.transaction().expect("begins")
}

fn new_event(at_unix_ms: u64, message: &str) -> NewEvent {
    NewEvent {
        at_unix_ms,
        kind: EventKind::Check,
        node: "node-a".to_owned(),
        check: Some("dns".to_owned()),
        old_state: Some("ok".to_owned()),
        new_state: Some("critical".to_owned()),
        message: message.to_owned(),
        dedupe_key: None,
    }
}

/// Event `seq` of `origin`, as a peer would send it.
fn event(origin: &str, seq: u64, at_unix_ms: u64) -> Event {
    Event {
        origin: origin.to_owned(),
        seq,
        observer: origin_node(origin).to_owned(),
        at_unix_ms,
        kind: EventKind::Membership,
        node: "node-z".to_owned(),
        check: None,
        old_state: Some("alive".to_owned()),
        new_state: Some("suspect".to_owned()),
        message: format!("{origin} {seq}"),
        dedupe_key: None,
    }
}

fn result(node: &str, check: &str, at_unix_ms: u64, status: Status) -> CheckResult {
    CheckResult {
        node: node.to_owned(),
        check: check.to_owned(),
        status,
        message: format!("{check} is {status}"),
        details: serde_json::json!({ "latency_ms": 12, "targets": ["a", "b"] }),
        duration_ms: 12,
        at_unix_ms,
    }
}

fn through(conn: &Connection, origin: &str) -> u64 {
    conn.query_row(
        "SELECT through FROM origins WHERE origin = ?1",
        [origin],
        |row| row.get::<_, i64>(0),
    )
    .map(|t| t as u64)
    .expect("the origin is known")
}
