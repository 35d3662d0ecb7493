//! The log's own rows, queries and results, on in-memory databases.

use super::*;
use crate::db;
use crate::model::{EventFilter, EventPosition, MAX_MESSAGE_BYTES, valid_origin};

#[test]
fn local_events_are_numbered_from_one_without_gaps() {
    let (mut conn, origin) = memory("node-a");
    assert!(valid_origin(&origin), "{origin}");
    let tx = tx(&mut conn);
    for expected in 1..=3 {
        let event =
            db::record_local(&tx, &origin, "node-a", &new_event(NOW, "x"), NOW).expect("records");
        assert_eq!(event.seq, expected);
        assert_eq!(event.origin, origin);
        assert_eq!(event.observer, "node-a");
    }
    tx.commit().expect("commits");
    assert_eq!(through(&conn, &origin), 3);
    assert_eq!(db::count_events(&conn).expect("counts"), 3);
    assert_eq!(
        db::version_vector(&conn).expect("reads"),
        [(origin, 3)].into_iter().collect()
    );
}

#[test]
fn seq_survives_deleting_every_row() {
    let (mut conn, origin) = memory("node-a");
    let tx = tx(&mut conn);
    for _ in 0..3 {
        db::record_local(&tx, &origin, "node-a", &new_event(NOW, "x"), NOW).expect("records");
    }
    tx.execute("DELETE FROM events", []).expect("deletes");
    let event =
        db::record_local(&tx, &origin, "node-a", &new_event(NOW, "x"), NOW).expect("records");
    assert_eq!(event.seq, 4, "a deleted seq must never be handed out again");
}

#[test]
fn long_messages_are_cut_to_fit_a_datagram() {
    let (mut conn, origin) = memory("node-a");
    let tx = tx(&mut conn);
    let long = "é".repeat(MAX_MESSAGE_BYTES);
    let event =
        db::record_local(&tx, &origin, "node-a", &new_event(NOW, &long), NOW).expect("records");
    assert_eq!(event.message.len(), MAX_MESSAGE_BYTES);
    let stored = db::query_events(&tx, &EventFilter::default()).expect("reads");
    assert_eq!(stored, vec![event]);
}

#[test]
fn a_timestamp_sqlite_cannot_hold_is_refused_not_wrapped() {
    let (mut conn, origin) = memory("node-a");
    let tx = tx(&mut conn);
    let error = db::record_local(&tx, &origin, "node-a", &new_event(u64::MAX, "x"), NOW)
        .expect_err("out of range");
    assert!(error.to_string().contains("at_unix_ms"), "{error}");
}

#[test]
fn the_origin_is_kept_for_the_same_name_and_replaced_for_another() {
    let (mut conn, first) = memory("node-a");
    assert_eq!(db::init_origin(&mut conn, "node-a").expect("inits"), first);
    let second = db::init_origin(&mut conn, "node-b").expect("inits");
    assert_ne!(second, first);
    assert_eq!(origin_node(&second), "node-b");
    let tx = tx(&mut conn);
    let event =
        db::record_local(&tx, &second, "node-b", &new_event(NOW, "x"), NOW).expect("records");
    assert_eq!(event.seq, 1, "a new origin starts a new log");
    drop(tx);
    let error = db::init_origin(&mut conn, "bad name").expect_err("space");
    assert!(
        matches!(error, db::SetupError::InvalidNodeName(_)),
        "{error}"
    );
}

#[test]
fn pages_tile_the_log_without_gaps_or_repeats_through_same_millisecond_ties() {
    let (mut conn, origin) = memory("node-a");
    let tx = tx(&mut conn);
    // 3 rows per millisecond, so page boundaries fall inside ties.
    for i in 0..20u64 {
        db::record_local(&tx, &origin, "node-a", &new_event(1000 + i / 3, "x"), NOW)
            .expect("records");
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = db::query_events(
            &tx,
            &EventFilter {
                after: after.clone(),
                limit: 4,
                ..EventFilter::default()
            },
        )
        .expect("queries");
        let Some(last) = page.last() else { break };
        after = Some(EventPosition {
            at_unix_ms: last.at_unix_ms,
            origin: last.origin.clone(),
            seq: last.seq,
        });
        seen.extend(page.iter().map(|e| (e.at_unix_ms, e.seq)));
    }
    let mut expected: Vec<(u64, u64)> = (0..20u64).map(|i| (1000 + i / 3, i + 1)).collect();
    // Newest first; within a millisecond, by origin then seq ascending.
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    assert_eq!(seen, expected);
}

#[test]
fn filters_combine_since_is_inclusive_until_exclusive_newest_first() {
    let (mut conn, origin) = memory("node-a");
    let tx = tx(&mut conn);
    let mut recorded = Vec::new();
    for (i, (node, kind, check)) in [
        ("n1", EventKind::Check, Some("dns")),
        ("n1", EventKind::Alert, Some("dns")),
        ("n2", EventKind::Check, Some("disk")),
        ("n1", EventKind::Membership, None),
        ("n1", EventKind::Check, Some("disk")),
    ]
    .into_iter()
    .enumerate()
    {
        let new = NewEvent {
            node: node.to_owned(),
            kind,
            check: check.map(str::to_owned),
            ..new_event(1000 + i as u64 * 10, "x")
        };
        recorded.push(db::record_local(&tx, &origin, "node-a", &new, NOW).expect("records"));
    }
    let seqs = |filter: EventFilter| -> Vec<u64> {
        db::query_events(&tx, &filter)
            .expect("queries")
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(seqs(EventFilter::default()), vec![5, 4, 3, 2, 1]);
    let n1 = || EventFilter {
        node: Some("n1".to_owned()),
        ..EventFilter::default()
    };
    assert_eq!(seqs(n1()), vec![5, 4, 2, 1]);
    assert_eq!(
        seqs(EventFilter {
            kind: Some(EventKind::Check),
            ..n1()
        }),
        vec![5, 1]
    );
    assert_eq!(
        seqs(EventFilter {
            check: Some("dns".to_owned()),
            ..n1()
        }),
        vec![2, 1]
    );
    // at_ms of seq s is 1000 + (s - 1) * 10.
    assert_eq!(
        seqs(EventFilter {
            since_unix_ms: Some(1010),
            until_unix_ms: Some(1030),
            ..EventFilter::default()
        }),
        vec![3, 2]
    );
    assert_eq!(
        seqs(EventFilter {
            limit: 2,
            ..EventFilter::default()
        }),
        vec![5, 4]
    );
    assert_eq!(
        db::query_events(&tx, &n1()).expect("queries")[0],
        recorded[4]
    );
}

#[test]
fn same_time_events_order_by_origin_then_seq() {
    let (mut conn, _) = memory("node-a");
    let tx = tx(&mut conn);
    let b = origin("b");
    let c = origin("cc");
    let events = vec![event(&c, 1, 5), event(&b, 2, 5), event(&b, 1, 5)];
    db::insert_replicated(&tx, &events, NOW).expect("inserts");
    let got: Vec<(String, u64)> = db::query_events(&tx, &EventFilter::default())
        .expect("queries")
        .into_iter()
        .map(|e| (e.origin, e.seq))
        .collect();
    assert_eq!(got, vec![(b.clone(), 1), (b, 2), (c, 1)]);
}

#[test]
fn queries_use_the_indexes() {
    let (conn, _) = memory("node-a");
    let plan = |sql: &str| -> String {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("prepares");
        let rows = stmt
            .query_map([], |row| row.get::<_, String>(3))
            .expect("plans");
        rows.map(|r| r.expect("a plan row"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let by_node = plan(
        "SELECT * FROM events WHERE duplicate = 0 AND node = 'n' \
         ORDER BY at_ms DESC, origin, seq LIMIT 100",
    );
    assert!(by_node.contains("events_node_at"), "{by_node}");
    let newest = plan(
        "SELECT * FROM events WHERE duplicate = 0 AND at_ms >= 5 \
         ORDER BY at_ms DESC, origin, seq LIMIT 100",
    );
    assert!(newest.contains("events_at"), "{newest}");
    let page = plan("SELECT * FROM events WHERE origin = 'o' AND seq > 5 ORDER BY seq LIMIT 5001");
    assert!(page.contains("sqlite_autoindex_events_1"), "{page}");
    assert!(!page.contains("TEMP B-TREE"), "{page}");
    let dedupe = plan("SELECT EXISTS (SELECT 1 FROM events WHERE dedupe_key = 'k')");
    assert!(dedupe.contains("events_dedupe"), "{dedupe}");
}

#[test]
fn the_same_happening_from_two_observers_is_shown_once_everywhere() {
    let keyed = |origin: &str, seq, at| Event {
        dedupe_key: Some("node-z failed".to_owned()),
        ..event(origin, seq, at)
    };
    let (b, c) = (origin("b"), origin("cc"));
    let (first, second) = (keyed(&b, 1, 100), keyed(&c, 1, 101));
    let mut shown = Vec::new();
    // Whichever copy arrives first, every node shows the earliest one.
    for order in [[&first, &second], [&second, &first]] {
        let (mut conn, _) = memory("node-a");
        let tx = tx(&mut conn);
        for event in order {
            db::insert_replicated(&tx, std::slice::from_ref(event), NOW).expect("inserts");
        }
        assert_eq!(db::count_events(&tx).expect("counts"), 2, "both rows kept");
        assert!(db::has_dedupe_key(&tx, "node-z failed").expect("reads"));
        assert!(!db::has_dedupe_key(&tx, "other").expect("reads"));
        shown.push(db::query_events(&tx, &EventFilter::default()).expect("queries"));
    }
    assert_eq!(shown[0], vec![first.clone()]);
    assert_eq!(shown[1], vec![first]);

    // Our own recording takes part too.
    let (mut conn, own) = memory("node-a");
    let tx = tx(&mut conn);
    db::insert_replicated(&tx, std::slice::from_ref(&second), NOW).expect("inserts");
    let new = NewEvent {
        dedupe_key: Some("node-z failed".to_owned()),
        ..new_event(50, "x")
    };
    let ours = db::record_local(&tx, &own, "node-a", &new, NOW).expect("records");
    assert_eq!(
        db::query_events(&tx, &EventFilter::default()).expect("queries"),
        vec![ours]
    );
}

#[test]
fn raw_results_come_back_newest_first_as_ours() {
    let (mut conn, _) = memory("node-a");
    let tx = tx(&mut conn);
    for (check, at) in [("dns", 10), ("disk", 20), ("dns", 30)] {
        db::insert_result(&tx, &result("node-a", check, at, Status::Ok)).expect("inserts");
    }
    let all = db::recent_results(&tx, None, 0, 10).expect("reads");
    assert_eq!(
        all.iter().map(|r| r.at_unix_ms).collect::<Vec<_>>(),
        [30, 20, 10]
    );
    assert_eq!(all[0], result("node-a", "dns", 30, Status::Ok));
    let dns = db::recent_results(&tx, Some("dns"), 11, 10).expect("reads");
    assert_eq!(dns, vec![result("node-a", "dns", 30, Status::Ok)]);
    assert_eq!(db::recent_results(&tx, None, 0, 1).expect("reads").len(), 1);
}

#[test]
fn an_older_latest_result_does_not_replace_a_newer_one() {
    let (mut conn, _) = memory("node-a");
    let tx = tx(&mut conn);
    let newer = result("n2", "dns", 200, Status::Critical);
    assert!(db::upsert_latest(&tx, &newer).expect("upserts"));
    assert!(!db::upsert_latest(&tx, &result("n2", "dns", 100, Status::Ok)).expect("upserts"));
    assert!(!db::upsert_latest(&tx, &result("n2", "dns", 200, Status::Ok)).expect("upserts"));
    let newest = result("n2", "dns", 300, Status::Warning);
    assert!(db::upsert_latest(&tx, &newest).expect("upserts"));
    let other = result("n1", "dns", 5, Status::Unknown);
    assert!(db::upsert_latest(&tx, &other).expect("upserts"));
    let also = result("n2", "disk", 5, Status::Ok);
    assert!(db::upsert_latest(&tx, &also).expect("upserts"));
    assert_eq!(
        db::latest_results(&tx).expect("reads"),
        vec![other, also, newest]
    );
}

#[test]
fn latest_after_a_revision_lists_only_what_changed_since_and_once() {
    let (mut conn, _) = memory("aggregator");
    let tx = tx(&mut conn);
    db::upsert_latest(&tx, &result("n1", "dns", 10, Status::Ok)).expect("upserts");
    db::upsert_latest(&tx, &result("n2", "dns", 10, Status::Ok)).expect("upserts");
    let whole = db::latest_after(&tx, 0, 100).expect("reads");
    assert_eq!(whole.len(), 2);
    let seen = whole.last().expect("two rows").0;
    assert!(db::latest_after(&tx, seen, 100).expect("reads").is_empty());
    // An older result changes nothing, so it is not news either.
    db::upsert_latest(&tx, &result("n1", "dns", 5, Status::Critical)).expect("upserts");
    assert!(db::latest_after(&tx, seen, 100).expect("reads").is_empty());
    // n1 changes twice: one row, the newest, past `seen`.
    db::upsert_latest(&tx, &result("n1", "dns", 20, Status::Critical)).expect("upserts");
    db::upsert_latest(&tx, &result("n1", "dns", 30, Status::Ok)).expect("upserts");
    let changed = db::latest_after(&tx, seen, 100).expect("reads");
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].1, result("n1", "dns", 30, Status::Ok));
    assert!(changed[0].0 > seen);
    assert_eq!(
        db::latest_after(&tx, 0, 1).expect("reads").len(),
        1,
        "limit holds"
    );
}

#[test]
fn own_rows_after_an_acknowledged_seq_are_ours_alone_with_our_through() {
    let (mut conn, origin) = memory("node-a");
    let tx = tx(&mut conn);
    for _ in 0..5 {
        db::record_local(&tx, &origin, "node-a", &new_event(NOW, "x"), NOW).expect("records");
    }
    let theirs = event(&super::origin("node-b"), 1, NOW);
    db::insert_replicated(&tx, std::slice::from_ref(&theirs), NOW).expect("stores");
    let batch = db::own_rows_after(&tx, 2, 100).expect("reads");
    assert_eq!(
        batch.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert!(batch.events.iter().all(|e| e.origin == origin));
    assert_eq!(batch.through, [(origin.clone(), 5)].into_iter().collect());
    assert!(!batch.more);
    let cut = db::own_rows_after(&tx, 0, 2).expect("reads");
    assert_eq!((cut.events.len(), cut.more), (2, true));
    assert!(
        db::own_rows_after(&tx, 5, 100)
            .expect("reads")
            .events
            .is_empty()
    );
}

/// An aggregated node filters its window of the cluster log in memory:
/// every filter and every page must select what the database would.
#[test]
fn filters_in_memory_select_and_order_what_the_database_does() {
    let (mut conn, _) = memory("node-a");
    let tx = tx(&mut conn);
    let mut all = Vec::new();
    for (i, origin) in ["b", "cc", "ddd"].iter().map(|n| origin(n)).enumerate() {
        for seq in 1..=12u64 {
            let mut e = event(&origin, seq, 1000 + (seq * 7 + i as u64) % 5);
            e.node = ["n1", "n2"][(seq % 2) as usize].to_owned();
            e.kind =
                [EventKind::Check, EventKind::Membership, EventKind::Alert][(seq % 3) as usize];
            e.check = (e.kind == EventKind::Check)
                .then(|| ["dns", "disk"][(seq % 4 / 2) as usize].to_owned());
            all.push(e);
        }
    }
    db::insert_replicated(&tx, &all, NOW).expect("inserts");
    let in_memory = |filter: &EventFilter| {
        let mut picked: Vec<Event> = all.iter().filter(|e| filter.matches(e)).cloned().collect();
        crate::model::sort_newest_first(&mut picked);
        picked.truncate(filter.limit);
        picked
    };
    let filters = [
        EventFilter::default(),
        EventFilter {
            node: Some("n1".to_owned()),
            ..EventFilter::default()
        },
        EventFilter {
            kind: Some(EventKind::Check),
            check: Some("dns".to_owned()),
            ..EventFilter::default()
        },
        EventFilter {
            since_unix_ms: Some(1001),
            until_unix_ms: Some(1004),
            ..EventFilter::default()
        },
    ];
    for filter in filters {
        // Page through with small pages: cursors land inside same-time ties.
        let mut page_filter = EventFilter {
            limit: 4,
            ..filter.clone()
        };
        loop {
            let page = db::query_events(&tx, &page_filter).expect("queries");
            assert_eq!(in_memory(&page_filter), page, "{page_filter:?}");
            let Some(last) = page.last() else { break };
            page_filter.after = Some(EventPosition {
                at_unix_ms: last.at_unix_ms,
                origin: last.origin.clone(),
                seq: last.seq,
            });
        }
    }
}

#[test]
fn recent_events_are_the_newest_arrivals_after_a_position() {
    let (mut conn, _) = memory("node-a");
    let tx = tx(&mut conn);
    let b = origin("b");
    // Arrival order is not time order: a late row of an old event.
    let arrivals = [event(&b, 2, 2000), event(&b, 3, 3000), event(&b, 1, 1000)];
    for row in &arrivals {
        db::insert_replicated(&tx, std::slice::from_ref(row), NOW).expect("inserts");
    }
    let seqs = |events: &[Event]| events.iter().map(|e| e.seq).collect::<Vec<_>>();

    let (newest, through) = db::recent_events(&tx, 0, 2).expect("reads");
    assert_eq!(
        seqs(&newest),
        [3, 1],
        "the newest two arrivals, oldest first"
    );
    let (none, same) = db::recent_events(&tx, through, 2).expect("reads");
    assert!(none.is_empty());
    assert_eq!(same, through, "nothing new: the position stays");

    db::insert_replicated(&tx, &[event(&b, 4, 4000), event(&b, 5, 5000)], NOW).expect("inserts");
    let (next, after) = db::recent_events(&tx, through, 10).expect("reads");
    assert_eq!(seqs(&next), [4, 5]);
    assert!(after > through);
    let (cut, _) = db::recent_events(&tx, 0, 1).expect("reads");
    assert_eq!(seqs(&cut), [5], "past the limit the older are skipped");
}
