//! Retention by age and by size.

use super::*;
use crate::db;
use crate::model::EventFilter;
use crate::retention::{self, KeepOwn, Retention, RetentionReport};

#[test]
fn age_limits_delete_exactly_what_is_older() {
    let (mut conn, own) = memory("node-a");
    let week = 7 * DAY_MS;
    let b = origin("b");
    let tx = tx(&mut conn);
    for at in [NOW - week - 1, NOW - week, NOW - week + 1] {
        db::record_local(&tx, &own, "node-a", &new_event(at, "x"), NOW).expect("records");
    }
    let peer = [event(&b, 1, NOW - week - 1), event(&b, 2, NOW - week + 1)];
    db::insert_replicated(&tx, &peer, NOW).expect("inserts");
    for at in [NOW - DAY_MS - 1, NOW - DAY_MS, NOW - DAY_MS + 1] {
        db::insert_result(&tx, &result("node-a", "dns", at, Status::Ok)).expect("inserts");
    }
    for (node, check, at) in [
        ("node-a", "removed", NOW - week - 1),
        ("old", "dns", NOW - week - 1),
        ("kept", "dns", NOW - week + 1),
    ] {
        db::upsert_latest(&tx, &result(node, check, at, Status::Ok)).expect("upserts");
    }
    tx.commit().expect("commits");

    let report = retention::enforce(&conn, NOW, &Retention::default(), &own, KeepOwn::Nothing)
        .expect("enforces");
    assert_eq!(report.events_deleted, 2);
    assert_eq!(report.results_deleted, 1);
    assert_eq!(report.latest_deleted, 1);
    let left: Vec<u64> = db::query_events(&conn, &EventFilter::default())
        .expect("reads")
        .iter()
        .map(|e| e.at_unix_ms)
        .collect();
    assert_eq!(left, [NOW - week + 1, NOW - week + 1, NOW - week]);
    let results: Vec<u64> = db::recent_results(&conn, None, 0, 10)
        .expect("reads")
        .iter()
        .map(|r| r.at_unix_ms)
        .collect();
    assert_eq!(results, [NOW - DAY_MS + 1, NOW - DAY_MS]);
    // Our own check not run for a week was removed; another node's old
    // result is its latest still (it changes only with a transition).
    let latest: Vec<String> = db::latest_results(&conn)
        .expect("reads")
        .into_iter()
        .map(|r| r.node)
        .collect();
    assert_eq!(latest, ["kept", "old"]);
    assert_eq!(through(&conn, &own), 3, "deleting does not lower through");
    assert_eq!(through(&conn, &b), 2);
}

/// Bytes of page content in use (what `enforce` measures against the cap).
fn data_bytes(conn: &rusqlite::Connection) -> u64 {
    conn.query_row(
        "SELECT sum(pgsize - unused) FROM dbstat WHERE aggregate = TRUE",
        [],
        |row| row.get::<_, i64>(0),
    )
    .expect("dbstat is built in") as u64
}

/// `total` events of 500 bytes; `scatter` records them out of time order.
fn filled(total: u64, scatter: bool) -> (rusqlite::Connection, String) {
    let (mut conn, own) = memory("node-a");
    let tx = tx(&mut conn);
    let message = "m".repeat(500);
    for i in 0..total {
        // 7919 is prime, so i * 7919 % total runs through 0..total.
        let age = if scatter {
            i * 7919 % total
        } else {
            total - 1 - i
        };
        db::record_local(&tx, &own, "node-a", &new_event(NOW - age, &message), NOW)
            .expect("records");
    }
    tx.commit().expect("commits");
    (conn, own)
}

/// Runs `enforce` with `cap` on `conn`, and checks what is left is exactly
/// the newest events and that `through` stayed.
fn enforce_cap(conn: &rusqlite::Connection, own: &str, total: u64, cap: u64) -> RetentionReport {
    assert!(
        retention::used_bytes(conn).expect("reads") > 4 * cap,
        "start well over the cap"
    );
    let limits = Retention {
        max_size_bytes: cap,
        ..Retention::default()
    };
    let report = retention::enforce(conn, NOW, &limits, own, KeepOwn::Nothing).expect("enforces");
    assert!(report.events_deleted > 0);
    let left = db::count_events(conn).expect("counts");
    assert!(left > 0, "the cap must not take the whole log");
    assert_eq!(left + report.events_deleted, total);
    let oldest_left = conn
        .query_row("SELECT min(at_ms) FROM events", [], |row| {
            row.get::<_, i64>(0)
        })
        .expect("reads") as u64;
    assert_eq!(oldest_left, NOW - (left - 1), "the oldest went first");
    assert!(data_bytes(conn) <= cap);
    assert!(
        data_bytes(conn) > cap / 2 - 2048,
        "not much more than needed went"
    );
    assert_eq!(through(conn, own), total);
    report
}

#[test]
fn the_size_cap_deletes_the_oldest_events_until_under_it() {
    let total = 3000;
    let cap = 256 * 1024;
    let (conn, own) = filled(total, false);
    let report = enforce_cap(&conn, &own, total, cap);
    assert!(retention::used_bytes(&conn).expect("reads") <= cap);
    assert!(
        report.size_bytes <= cap,
        "freed pages go back: {}",
        report.size_bytes
    );
}

#[test]
fn the_size_cap_keeps_most_of_what_fits_when_rows_are_out_of_time_order() {
    let total = 3000;
    let cap = 256 * 1024;
    let (conn, own) = filled(total, true);
    enforce_cap(&conn, &own, total, cap);
}

#[test]
fn checkpoint_runs_on_a_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = rusqlite::Connection::open(dir.path().join("h.db")).expect("opens");
    db::configure_writer(&conn).expect("configures");
    db::migrate(&mut conn).expect("migrates");
    let origin = db::init_origin(&mut conn, "node-a").expect("inits");
    let tx = tx(&mut conn);
    db::record_local(&tx, &origin, "node-a", &new_event(NOW, "x"), NOW).expect("records");
    tx.commit().expect("commits");
    retention::checkpoint(&conn).expect("checkpoints");
    let wal = std::fs::metadata(dir.path().join("h.db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "TRUNCATE empties the WAL");
    let auto_vacuum: i64 = conn
        .pragma_query_value(None, "auto_vacuum", |row| row.get(0))
        .expect("reads");
    assert_eq!(auto_vacuum, 2, "INCREMENTAL was set before the first table");
}

/// In aggregated mode our log is the only copy of what no aggregator has
/// acknowledged: age does not take it, and the size cap gives way.
#[test]
fn own_events_no_aggregator_acknowledged_outlive_age_and_size_limits() {
    let (mut conn, own) = memory("node-a");
    let week = 7 * DAY_MS;
    let b = origin("b");
    let tx = tx(&mut conn);
    for i in 0..4 {
        db::record_local(
            &tx,
            &own,
            "node-a",
            &new_event(NOW - week - 10 + i, "x"),
            NOW,
        )
        .expect("records");
    }
    db::insert_replicated(&tx, &[event(&b, 1, NOW - week - 1)], NOW).expect("inserts");
    tx.commit().expect("commits");

    let report = retention::enforce(&conn, NOW, &Retention::default(), &own, KeepOwn::After(2))
        .expect("enforces");
    assert_eq!(report.events_deleted, 3, "ours through 2, and the peer's");
    assert_eq!(report.own_kept_unacknowledged, 2);
    let left: Vec<u64> = db::query_events(&conn, &EventFilter::default())
        .expect("reads")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(left, [4, 3]);

    let total = 3000;
    let cap = 256 * 1024;
    let (conn, own) = filled(total, false);
    let limits = Retention {
        max_size_bytes: cap,
        ..Retention::default()
    };
    let report =
        retention::enforce(&conn, NOW, &limits, &own, KeepOwn::After(0)).expect("enforces");
    assert_eq!(
        report.events_deleted, 0,
        "nothing acknowledged, nothing goes"
    );
    let report =
        retention::enforce(&conn, NOW, &limits, &own, KeepOwn::After(2000)).expect("enforces");
    assert!(report.events_deleted > 0 && report.events_deleted <= 2000);
    let lowest_left = conn
        .query_row("SELECT min(seq) FROM events", [], |row| {
            row.get::<_, i64>(0)
        })
        .expect("reads");
    assert!(lowest_left <= 2001, "every unacknowledged row is left");
    assert_eq!(
        db::count_events(&conn).expect("counts"),
        total - report.events_deleted
    );
}
