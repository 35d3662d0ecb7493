//! The threaded store, on real files.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::model::{EventFilter, SyncBatch};
use crate::schema;
use crate::{HistoryMetrics, Store, StoreConfig, StoreError};

fn open(path: &Path, node: &str) -> Store {
    Store::open(
        path,
        node,
        StoreConfig::default(),
        HistoryMetrics::default(),
    )
    .expect("opens")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64
}

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    // A subdirectory that does not exist yet: open creates it.
    dir.path().join("data").join("history.db")
}

#[test]
fn the_store_is_shareable() {
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
    assert_shareable::<Store>();
}

#[tokio::test]
async fn every_row_kind_round_trips() {
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = HistoryMetrics::default();
    let store = Store::open(
        &db_path(&dir),
        "node-a",
        StoreConfig::default(),
        metrics.clone(),
    )
    .expect("opens");
    assert_eq!(store.node_name(), "node-a");
    assert_eq!(store.path(), db_path(&dir));
    assert_eq!(origin_node(store.origin()), "node-a");

    let recorded = store
        .record(new_event(now(), "local"))
        .await
        .expect("records");
    assert_eq!(
        (recorded.origin.as_str(), recorded.seq),
        (store.origin(), 1)
    );

    let b = origin("b");
    let pushed = vec![event(&b, 1, 10), event(&b, 2, 20)];
    assert_eq!(
        store
            .insert_replicated(pushed.clone())
            .await
            .expect("inserts"),
        2
    );
    let c = origin("cc");
    let batch = SyncBatch {
        events: vec![event(&c, 1, 30)],
        through: [(c.clone(), 1)].into_iter().collect(),
        more: false,
    };
    assert_eq!(store.apply_batch(batch).await.expect("applies"), 1);

    let events = store.events(EventFilter::default()).await.expect("reads");
    assert_eq!(
        events,
        vec![
            recorded.clone(),
            event(&c, 1, 30),
            pushed[1].clone(),
            pushed[0].clone()
        ]
    );
    let vector = store.version_vector().await.expect("reads");
    let expected = [
        (store.origin().to_owned(), 1),
        (b.clone(), 2),
        (c.clone(), 1),
    ];
    assert_eq!(vector, expected.into_iter().collect());
    let missing = store
        .missing_for([(b, 1)].into_iter().collect(), 100, None)
        .await
        .expect("reads");
    assert_eq!(missing.events.len(), 3);

    let raw = result("node-a", "dns", now(), Status::Warning);
    store.record_result(raw.clone()).await.expect("records");
    assert_eq!(
        store.recent_results(None, 0, 10).await.expect("reads"),
        vec![raw.clone()]
    );
    assert_eq!(
        store.latest_results().await.expect("reads"),
        vec![raw.clone()]
    );
    let older = CheckResult {
        at_unix_ms: raw.at_unix_ms - 1,
        ..result("node-a", "dns", 0, Status::Ok)
    };
    assert!(!store.upsert_latest(older).await.expect("upserts"));
    let peer = result("node-b", "dns", 5, Status::Critical);
    assert!(store.upsert_latest(peer.clone()).await.expect("upserts"));
    assert_eq!(
        store.latest_results().await.expect("reads"),
        vec![raw, peer]
    );

    let keyed = NewEvent {
        dedupe_key: Some("k".to_owned()),
        ..new_event(now(), "keyed")
    };
    store.record(keyed).await.expect("records");
    assert!(store.has_dedupe_key("k".to_owned()).await.expect("reads"));
    let count = store
        .read(|conn| conn.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0)));
    assert_eq!(count.await.expect("reads"), 5);
    assert_eq!(metrics.events.get(), 5);
    store.close().await;
}

#[tokio::test]
async fn reopening_keeps_the_origin_and_continues_the_sequence() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_path(&dir);
    let old = now() - 8 * DAY_MS;
    let store = open(&path, "node-a");
    let origin = store.origin().to_owned();
    for _ in 0..3 {
        store.record(new_event(old, "old")).await.expect("records");
    }
    let report = store.enforce_retention().await.expect("enforces");
    assert_eq!(report.events_deleted, 3, "every event of ours is gone");
    store.close().await;

    let store = open(&path, "node-a");
    assert_eq!(store.origin(), origin);
    let next = store
        .record(new_event(now(), "new"))
        .await
        .expect("records");
    assert_eq!(next.seq, 4, "no reuse, no gap");
    let vector = store.version_vector().await.expect("reads");
    assert_eq!(vector, [(origin, 4)].into_iter().collect());
    store.close().await;
}

#[tokio::test]
async fn a_new_node_name_on_the_same_file_starts_a_new_origin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_path(&dir);
    let store = open(&path, "node-a");
    let first = store.origin().to_owned();
    store.record(new_event(now(), "a")).await.expect("records");
    store.close().await;
    let store = open(&path, "node-b");
    assert_ne!(store.origin(), first);
    assert_eq!(origin_node(store.origin()), "node-b");
    let event = store.record(new_event(now(), "b")).await.expect("records");
    assert_eq!(event.seq, 1);
    let vector = store.version_vector().await.expect("reads");
    assert_eq!(
        vector.get(&first),
        Some(&1),
        "the old log is still vouched for"
    );
    store.close().await;
}

#[tokio::test]
async fn an_old_file_is_migrated_and_keeps_its_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_path(&dir);
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    let origin = {
        let mut conn = rusqlite::Connection::open(&path).expect("opens");
        crate::db::configure_writer(&conn).expect("configures");
        schema::migrate_to(&mut conn, 1).expect("migrates to v1");
        let origin = crate::db::init_origin(&mut conn, "node-a").expect("inits");
        let tx = conn.transaction().expect("begins");
        crate::db::record_local(&tx, &origin, "node-a", &new_event(now(), "v1"), 0)
            .expect("records");
        tx.commit().expect("commits");
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'latest_results'",
                [],
                |r| r.get(0),
            )
            .expect("reads");
        assert_eq!(tables, 0, "a v1 file has no v2 tables");
        origin
    };
    let store = open(&path, "node-a");
    assert_eq!(store.origin(), origin);
    let events = store.events(EventFilter::default()).await.expect("reads");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].message, "v1");
    store
        .record_result(result("node-a", "dns", now(), Status::Ok))
        .await
        .expect("v2 tables exist");
    let version = store.read(schema::user_version).await.expect("reads");
    assert_eq!(version, schema::SCHEMA_VERSION);
    assert_eq!(schema::SCHEMA_VERSION, 4);
    store.close().await;
}

#[test]
fn a_newer_schema_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("history.db");
    let conn = rusqlite::Connection::open(&path).expect("opens");
    conn.pragma_update(None, "user_version", 99).expect("sets");
    drop(conn);
    let error = Store::open(
        &path,
        "node-a",
        StoreConfig::default(),
        HistoryMetrics::default(),
    )
    .expect_err("too new");
    assert!(
        matches!(
            error,
            StoreError::NewerSchema {
                found: 99,
                supported: 4,
                ..
            }
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("newer"), "{message}");
}

#[test]
fn unusable_files_are_named_with_what_is_wrong() {
    let dir = tempfile::tempdir().expect("temp dir");
    let garbage = dir.path().join("garbage.db");
    let bytes: Vec<u8> = (0..16384u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&garbage, bytes).expect("writes");
    let directory = dir.path().join("dir.db");
    std::fs::create_dir(&directory).expect("mkdir");
    let blocked = dir.path().join("file").join("history.db");
    std::fs::write(dir.path().join("file"), "x").expect("writes");
    for (path, says) in [
        (&garbage, "file is not a database"),
        (&directory, "cannot open"),
        (&blocked, "cannot create its directory"),
    ] {
        let error = Store::open(
            path,
            "node-a",
            StoreConfig::default(),
            HistoryMetrics::default(),
        )
        .expect_err("unusable");
        let message = error.to_string();
        assert!(matches!(error, StoreError::Open { .. }), "{message}");
        assert!(message.starts_with("history database "), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(says), "{message}");
    }
}

#[tokio::test]
async fn a_full_disk_refuses_writes_and_the_store_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = HistoryMetrics::default();
    let config = StoreConfig {
        max_page_count: Some(48),
        ..StoreConfig::default()
    };
    let store = Store::open(&db_path(&dir), "node-a", config, metrics.clone()).expect("opens");
    let message = "m".repeat(1000);
    let mut written = 0;
    let error = loop {
        match store.record(new_event(now(), &message)).await {
            Ok(_) => written += 1,
            Err(error) => break error,
        }
        assert!(written < 10_000, "48 pages cannot hold this much");
    };
    assert!(written > 0);
    assert!(matches!(error, StoreError::DiskFull { .. }), "{error}");
    let text = error.to_string();
    assert!(text.contains("disk full, write refused"), "{text}");
    assert!(
        text.contains(&db_path(&dir).display().to_string()),
        "{text}"
    );
    assert_eq!(metrics.write_errors("disk_full"), 1);
    assert_eq!(metrics.events.get(), written);

    let events = store.events(EventFilter {
        limit: 10_000,
        ..EventFilter::default()
    });
    assert_eq!(
        events.await.expect("reads still work").len() as i64,
        written
    );
    // Space comes back: writes succeed again, numbered on without a gap.
    store
        .submit(|tx, _| Ok(tx.pragma_update(None, "max_page_count", 1_000_000)?))
        .await
        .expect("raises the cap");
    let next = store
        .record(new_event(now(), "after"))
        .await
        .expect("records again");
    assert_eq!(next.seq, written as u64 + 1);
    store.close().await;
}

#[tokio::test]
async fn queued_writes_share_a_transaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = HistoryMetrics::default();
    let store = Store::open(
        &db_path(&dir),
        "node-a",
        StoreConfig::default(),
        metrics.clone(),
    )
    .expect("opens");
    // Hold the writer in an op until the burst has queued behind it.
    let (started, mut writer_busy) = tokio::sync::mpsc::unbounded_channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let blocker = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .submit(move |_, _| {
                    let _ = started.send(());
                    let _ = released.recv();
                    Ok(())
                })
                .await
        }
    });
    writer_busy
        .recv()
        .await
        .expect("the writer runs the blocker");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.spawn(async move { store.record(new_event(i, "burst")).await });
    }
    // Let every task reach its await, that is, queue its op.
    tokio::time::sleep(Duration::from_millis(100)).await;
    release.send(()).expect("the blocker waits");
    blocker.await.expect("the task ran").expect("commits");
    let mut seqs = Vec::new();
    while let Some(done) = tasks.join_next().await {
        seqs.push(done.expect("the task ran").expect("records").seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    assert_eq!(
        metrics.writes.get(),
        2,
        "the blocker, then one group of 200"
    );
    // A failing op in a group fails alone.
    let (good, bad) = tokio::join!(
        store.record(new_event(1, "good")),
        store.record(new_event(u64::MAX, "bad")),
    );
    assert_eq!(good.expect("records").seq, 201);
    assert!(matches!(bad, Err(StoreError::Sqlite(_))), "{bad:?}");
    assert_eq!(metrics.write_errors("other"), 1);
    assert_eq!(
        store
            .record(new_event(2, "next"))
            .await
            .expect("records")
            .seq,
        202
    );
    store.close().await;
}

#[tokio::test]
async fn housekeeping_runs_on_its_own_and_closing_keeps_every_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_path(&dir);
    let metrics = HistoryMetrics::default();
    let config = StoreConfig {
        housekeeping_every: Duration::from_millis(50),
        ..StoreConfig::default()
    };
    let store = Store::open(&path, "node-a", config, metrics.clone()).expect("opens");
    store
        .record(new_event(now() - 8 * DAY_MS, "old"))
        .await
        .expect("records");
    store
        .record(new_event(now(), "new"))
        .await
        .expect("records");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metrics.events.get() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "housekeeping never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(metrics.size_bytes.get() > 0);
    let clone = store.clone();
    store.close().await;
    clone
        .record(new_event(now(), "last"))
        .await
        .expect("a clone keeps it open");
    clone.close().await;
    let store = open(&path, "node-a");
    let events = store.events(EventFilter::default()).await.expect("reads");
    assert_eq!(events.len(), 2);
    store.close().await;
}

#[tokio::test]
async fn rows_from_before_the_store_opened_are_catch_up_not_replication_lag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut registry = prometheus_client::registry::Registry::with_prefix("starling");
    let metrics = HistoryMetrics::register(&mut registry);
    let store =
        Store::open(&db_path(&dir), "node-a", StoreConfig::default(), metrics).expect("opens");
    let b = origin("b");
    let an_hour_ago = now() - 3_600_000;
    let rows = vec![event(&b, 1, an_hour_ago), event(&b, 2, now())];
    assert_eq!(store.insert_replicated(rows).await.expect("inserts"), 2);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    // One row observed (the one that happened while this node ran), and
    // it took well under a minute: the hour-old row did not count.
    assert!(
        text.contains("starling_replication_lag_seconds_count 1\n"),
        "{text}"
    );
    assert!(
        text.contains("starling_replication_lag_seconds_bucket{le=\"1.0\"} 1\n"),
        "{text}"
    );
}
