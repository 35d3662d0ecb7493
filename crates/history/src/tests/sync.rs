//! Replication: contiguity of `through`, batches, paging.

use super::*;
use crate::db;
use crate::model::{SyncBatch, VersionVector};

#[test]
fn through_only_advances_over_contiguous_rows() {
    let (mut conn, _) = memory("node-a");
    let b = origin("b");
    let tx = tx(&mut conn);
    let added =
        db::insert_replicated(&tx, &[event(&b, 1, 1), event(&b, 3, 3)], NOW).expect("inserts");
    assert_eq!(added, 2);
    assert_eq!(through(&tx, &b), 1, "seq 2 is missing");
    assert_eq!(
        db::insert_replicated(&tx, &[event(&b, 2, 2)], NOW).expect("inserts"),
        1
    );
    assert_eq!(through(&tx, &b), 3);
    // Again: nothing new, nothing moves.
    let again = [event(&b, 1, 1), event(&b, 2, 2), event(&b, 3, 3)];
    assert_eq!(db::insert_replicated(&tx, &again, NOW).expect("inserts"), 0);
    assert_eq!(through(&tx, &b), 3);
}

#[test]
fn a_batch_through_raises_then_advances_and_never_lowers() {
    let (mut conn, _) = memory("node-a");
    let b = origin("b");
    let tx = tx(&mut conn);
    db::insert_replicated(&tx, &[event(&b, 1, 1), event(&b, 5, 5)], NOW).expect("inserts");
    assert_eq!(through(&tx, &b), 1);
    // The sender vouches for 2..=4 (it deleted them): 5 then follows.
    let batch = SyncBatch {
        through: [(b.clone(), 4)].into_iter().collect(),
        ..SyncBatch::default()
    };
    assert_eq!(db::apply_batch(&tx, &batch, NOW).expect("applies"), 0);
    assert_eq!(through(&tx, &b), 5);
    let lower = SyncBatch {
        through: [(b.clone(), 2)].into_iter().collect(),
        ..SyncBatch::default()
    };
    db::apply_batch(&tx, &lower, NOW).expect("applies");
    assert_eq!(through(&tx, &b), 5);
    // An origin first heard of through a vector is added.
    let c = origin("cc");
    let unknown = SyncBatch {
        events: vec![event(&c, 8, 8)],
        through: [(c.clone(), 7)].into_iter().collect(),
        more: false,
    };
    assert_eq!(db::apply_batch(&tx, &unknown, NOW).expect("applies"), 1);
    assert_eq!(through(&tx, &c), 8);
    // Rows at or below through are held or were deliberately deleted.
    assert_eq!(
        db::insert_replicated(&tx, &[event(&b, 3, 3)], NOW).expect("inserts"),
        0
    );
}

#[test]
fn our_own_origin_is_never_taken_from_peers() {
    let (mut conn, own) = memory("node-a");
    let tx = tx(&mut conn);
    db::record_local(&tx, &own, "node-a", &new_event(NOW, "mine"), NOW).expect("records");
    let forged = vec![event(&own, 1, 1), event(&own, 2, 2)];
    assert_eq!(
        db::insert_replicated(&tx, &forged, NOW).expect("inserts"),
        0
    );
    let batch = SyncBatch {
        events: forged,
        through: [(own.clone(), 99)].into_iter().collect(),
        more: false,
    };
    assert_eq!(db::apply_batch(&tx, &batch, NOW).expect("applies"), 0);
    assert_eq!(through(&tx, &own), 1);
    let next =
        db::record_local(&tx, &own, "node-a", &new_event(NOW, "mine"), NOW).expect("records");
    assert_eq!(next.seq, 2);
}

#[test]
fn malformed_rows_are_skipped_not_fatal() {
    let (mut conn, _) = memory("node-a");
    let tx = tx(&mut conn);
    let b = origin("b");
    let bad = vec![
        event("no-hash", 1, 1),
        event(&b, 0, 1),
        event(&b, u64::MAX, 1),
        event(&b, 1, u64::MAX),
        event(&b, 1, 1),
    ];
    assert_eq!(db::insert_replicated(&tx, &bad, NOW).expect("inserts"), 1);
    assert_eq!(db::count_events(&tx).expect("counts"), 1);
}

/// A node holding 12,000 rows of three origins, its own among them.
fn sender() -> (rusqlite::Connection, Vec<String>) {
    let (mut conn, own) = memory("node-a");
    let others = [origin("b"), origin("cc")];
    let tx = tx(&mut conn);
    for i in 0..4000 {
        db::record_local(&tx, &own, "node-a", &new_event(i, "x"), NOW).expect("records");
    }
    for other in &others {
        let events: Vec<Event> = (1..=4000).map(|seq| event(other, seq, seq)).collect();
        db::insert_replicated(&tx, &events, NOW).expect("inserts");
    }
    tx.commit().expect("commits");
    let mut origins = vec![own];
    origins.extend(others);
    origins.sort();
    (conn, origins)
}

#[test]
fn missing_rows_page_in_batches_and_reapplying_changes_nothing() {
    let (a, origins) = sender();
    let (mut b, _) = memory("node-b");
    let mut pages = Vec::new();
    loop {
        let theirs = db::version_vector(&b).expect("reads");
        let batch = db::missing_for(&a, &theirs, 5000).expect("pages");
        if batch.events.is_empty() {
            assert!(!batch.more);
            break;
        }
        let tx = tx(&mut b);
        let added = db::apply_batch(&tx, &batch, NOW).expect("applies");
        tx.commit().expect("commits");
        assert_eq!(added, batch.events.len());
        pages.push(batch);
        assert!(pages.len() <= 3, "three pages suffice");
    }
    let sizes: Vec<(usize, bool)> = pages.iter().map(|p| (p.events.len(), p.more)).collect();
    assert_eq!(sizes, vec![(5000, true), (5000, true), (2000, false)]);
    // The first cut falls inside the second origin, after its 1000th row.
    assert_eq!(pages[0].through.get(&origins[0]), Some(&4000));
    assert_eq!(pages[0].through.get(&origins[1]), Some(&1000));
    assert_eq!(pages[0].through.get(&origins[2]), None);
    let order: Vec<(String, u64)> = pages[0]
        .events
        .iter()
        .map(|e| (e.origin.clone(), e.seq))
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "ordered by (origin, seq)"
    );

    let vector = db::version_vector(&a).expect("reads");
    assert_eq!(db::version_vector(&b).expect("reads"), vector);
    assert_eq!(db::count_events(&b).expect("counts"), 12_000);
    for page in &pages {
        let tx = tx(&mut b);
        assert_eq!(db::apply_batch(&tx, page, NOW).expect("applies"), 0);
        tx.commit().expect("commits");
    }
    assert_eq!(db::count_events(&b).expect("counts"), 12_000);
    assert_eq!(db::version_vector(&b).expect("reads"), vector);
    let done = db::missing_for(&a, &vector, 5000).expect("pages");
    assert_eq!(done, SyncBatch::default());
}

#[test]
fn a_cut_exactly_at_an_origin_end_vouches_for_it_whole() {
    let (a, origins) = sender();
    let batch = db::missing_for(&a, &VersionVector::new(), 4000).expect("pages");
    assert_eq!(batch.events.len(), 4000);
    assert!(batch.more);
    assert_eq!(
        batch.through,
        [(origins[0].clone(), 4000)].into_iter().collect()
    );
}

#[test]
fn origins_the_sender_does_not_know_are_ignored() {
    let (a, _) = sender();
    let theirs: VersionVector = [(origin("zz"), 7)].into_iter().collect();
    let batch = db::missing_for(&a, &theirs, 20_000).expect("pages");
    assert_eq!(batch.events.len(), 12_000);
    assert!(!batch.through.contains_key(&origin("zz")));
}

#[test]
fn deleted_rows_are_vouched_for_without_being_sent() {
    let (mut a, _) = memory("node-a");
    let b = origin("b");
    let tx = tx(&mut a);
    let events: Vec<Event> = (1..=10).map(|seq| event(&b, seq, seq)).collect();
    db::insert_replicated(&tx, &events, NOW).expect("inserts");
    tx.execute("DELETE FROM events WHERE seq <= 6", [])
        .expect("deletes");
    tx.commit().expect("commits");
    let batch = db::missing_for(&a, &VersionVector::new(), 100).expect("pages");
    assert_eq!(
        batch.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [7, 8, 9, 10]
    );
    assert_eq!(batch.through, [(b.clone(), 10)].into_iter().collect());
    let (mut c, _) = memory("node-c");
    let apply = super::tx(&mut c);
    db::apply_batch(&apply, &batch, NOW).expect("applies");
    assert_eq!(through(&apply, &b), 10);
}

#[test]
fn rows_past_a_gap_are_sent_but_never_promise_endless_paging() {
    let (mut a, _) = memory("node-a");
    let b = origin("b");
    let tx = tx(&mut a);
    let events = vec![
        event(&b, 1, 1),
        event(&b, 2, 2),
        event(&b, 5, 5),
        event(&b, 6, 6),
    ];
    db::insert_replicated(&tx, &events, NOW).expect("inserts");
    tx.commit().expect("commits");
    assert_eq!(through(&a, &b), 2);
    // Everything fits: the gap's far side goes too, vouched only to 2.
    let all = db::missing_for(&a, &VersionVector::new(), 10).expect("pages");
    assert_eq!(all.events.len(), 4);
    assert_eq!(all.through, [(b.clone(), 2)].into_iter().collect());
    assert!(!all.more);
    // Cut past the gap for an asker already through 2: its vector cannot
    // move, so asking again would return the same rows forever.
    let theirs: VersionVector = [(b.clone(), 2)].into_iter().collect();
    let cut = db::missing_for(&a, &theirs, 1).expect("pages");
    assert_eq!(cut.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [5]);
    assert!(!cut.more);
    // Cut before the gap: the asker moves, so more is right.
    let first = db::missing_for(&a, &VersionVector::new(), 1).expect("pages");
    assert_eq!(first.through, [(b, 1)].into_iter().collect());
    assert!(first.more);
}

#[test]
fn replicas_that_differ_in_one_origin_exchange_only_its_slice() {
    use crate::digest::{Slices, VectorDigest, buckets_for};
    let (mut ahead, _) = memory("node-a");
    let (mut behind, _) = memory("node-z");
    let origins: Vec<String> = (0..200).map(|i| origin(&format!("n{i}"))).collect();
    for conn in [&mut ahead, &mut behind] {
        let tx = tx(conn);
        let rows: Vec<Event> = origins.iter().map(|o| event(o, 1, 1)).collect();
        db::insert_replicated(&tx, &rows, NOW).expect("inserts");
        tx.commit().expect("commits");
    }
    let changed = &origins[17];
    {
        let tx = tx(&mut ahead);
        db::insert_replicated(&tx, &[event(changed, 2, 2)], NOW).expect("inserts");
        tx.commit().expect("commits");
    }
    let mine = db::version_vector(&behind).expect("reads");
    let theirs = db::version_vector(&ahead).expect("reads");
    let buckets = buckets_for(mine.len());
    let differing =
        VectorDigest::sliced(&mine, buckets).differing(&VectorDigest::sliced(&theirs, buckets));
    assert_eq!(differing.len(), 1, "one origin moved, one slice differs");
    let only = Slices::new(buckets, differing);
    let asked = only.restrict(&mine);
    assert!(asked.len() < 30, "{} origins travel, not 200", asked.len());
    let batch = db::missing_in(&ahead, &asked, 5000, &only).expect("pages");
    assert_eq!(batch.events.len(), 1);
    assert_eq!(&batch.events[0].origin, changed);
    assert!(
        batch.through.keys().all(|o| only.contains(o)),
        "nothing of the other slices is vouched for: {:?}",
        batch.through
    );
    // The same request without the scope would send every origin the
    // restricted vector leaves out.
    let unscoped = db::missing_for(&ahead, &asked, 5000).expect("pages");
    assert!(unscoped.events.len() > 150);
}

#[test]
fn an_emptied_origin_of_a_departed_node_is_forgotten_and_a_live_one_kept() {
    let (mut conn, own) = memory("node-a");
    let gone = origin("gone");
    let live = origin("live");
    let kept = origin("kept");
    {
        let tx = tx(&mut conn);
        let rows = [event(&gone, 1, 1), event(&live, 1, 1), event(&kept, 1, 1)];
        db::insert_replicated(&tx, &rows, NOW).expect("inserts");
        tx.commit().expect("commits");
    }
    // Retention took the rows of two of them; `kept` still has its row.
    conn.execute(
        "DELETE FROM events WHERE origin IN (?1, ?2)",
        [&gone, &live],
    )
    .expect("deletes");
    let pruned = db::prune_origins(&conn, |node| node == "live").expect("prunes");
    assert_eq!(pruned, 1);
    let vector = db::version_vector(&conn).expect("reads");
    assert!(!vector.contains_key(&gone), "{vector:?}");
    assert_eq!(vector.get(&live), Some(&1), "a live node's entry stays");
    assert_eq!(vector.get(&kept), Some(&1), "an origin with rows stays");
    let own_kept: i64 = conn
        .query_row(
            "SELECT count(*) FROM origins WHERE origin = ?1",
            [&own],
            |row| row.get(0),
        )
        .expect("reads");
    assert_eq!(own_kept, 1, "our own origin is never pruned");
}

/// Other nodes' latest results change only with a transition, so they stay
/// however old they are, until gossip forgets their node.
#[test]
fn latest_results_go_with_their_node_not_with_age() {
    let (mut conn, own) = memory("node-a");
    let week = 7 * DAY_MS;
    let tx = tx(&mut conn);
    for (node, check, at) in [
        ("node-a", "removed", NOW - week - 1),
        ("node-a", "dns", NOW),
        ("steady", "dns", NOW - 30 * DAY_MS),
        ("gone", "dns", NOW),
    ] {
        db::upsert_latest(&tx, &result(node, check, at, Status::Ok)).expect("upserts");
    }
    db::record_local(&tx, &own, "node-a", &new_event(NOW, "x"), NOW).expect("records");
    tx.commit().expect("commits");
    let rows = |conn: &rusqlite::Connection| -> Vec<(String, String)> {
        db::latest_results(conn)
            .expect("reads")
            .into_iter()
            .map(|r| (r.node, r.check))
            .collect()
    };

    let report = crate::retention::enforce(
        &conn,
        NOW,
        &crate::Retention::default(),
        &own,
        crate::KeepOwn::Nothing,
    )
    .expect("enforces");
    assert_eq!(report.latest_deleted, 1, "our own removed check");
    let pair = |node: &str, check: &str| (node.to_owned(), check.to_owned());
    assert_eq!(
        rows(&conn),
        [
            pair("gone", "dns"),
            pair("node-a", "dns"),
            pair("steady", "dns")
        ],
        "a month-old result of a live node stays"
    );

    let pruned = db::prune_latest(&conn, |node| node == "steady").expect("prunes");
    assert_eq!(pruned, 1);
    assert_eq!(
        rows(&conn),
        [pair("node-a", "dns"), pair("steady", "dns")],
        "a forgotten node's rows go; ours never"
    );
}
