//! The history database as a decoder: `Store::open` (check, migration,
//! origin) and the first reads and write an agent makes, on files a
//! hostile or broken disk could hold.
//!
//! Seeds are real files: one `Store::open` made and filled, and the same
//! taken back to each earlier schema version the way those versions left
//! them (migrations are never edited, so dropping a later step's tables
//! and version is that version's file). Mutations are made through SQL
//! (versions, dropped or replaced tables, rows of the wrong type, a
//! trigger on our writes, a foreign origin) or on the bytes (header
//! fields, pages, truncation).

use std::path::{Path, PathBuf};

use rand::RngExt;
use rand::rngs::StdRng;
use rusqlite::Connection;
use starling_history::{CheckResult, Event, EventFilter, EventKind, NewEvent, Status};

use super::seeds::{self, ME};
use super::{FuzzError, Target, mutate};

pub const NAME: &str = "history-file";

/// SQL a hostile file may have had run on it. Each may fail on a file
/// where an earlier one removed what it needs; that is fine.
const SQL_EDITS: &[&str] = &[
    "PRAGMA user_version = 0",
    "PRAGMA user_version = 2",
    "PRAGMA user_version = 4",
    "PRAGMA user_version = -1",
    "PRAGMA user_version = 2147483647",
    "DROP TABLE events",
    "DROP TABLE meta",
    "DROP TABLE origins",
    "DROP TABLE latest_results",
    "DROP INDEX events_at",
    "DELETE FROM meta",
    "UPDATE meta SET value = 'x' WHERE key = 'next_seq'",
    "UPDATE meta SET value = '-7' WHERE key = 'next_seq'",
    "UPDATE meta SET value = '9223372036854775807' WHERE key = 'next_seq'",
    "UPDATE meta SET value = 'node-a#zz' WHERE key = 'origin'",
    "UPDATE meta SET value = 'other#0123456789abcdef' WHERE key = 'origin'",
    "UPDATE meta SET value = NULL WHERE key = 'origin'",
    "UPDATE events SET seq = -1",
    "UPDATE events SET at_ms = 'yesterday'",
    "UPDATE events SET kind = 'explosion'",
    "UPDATE events SET message = randomblob(4000)",
    "UPDATE events SET origin = NULL",
    "UPDATE origins SET through = -5",
    "UPDATE origins SET through = 'x'",
    "UPDATE latest_results SET status = 'sideways', details = 'not json'",
    "UPDATE latest_results SET at_ms = -1, duration_ms = 1e300",
    "INSERT INTO events VALUES ('x', 1, 'o', 1, 'check', 'n', NULL, NULL, NULL, 'm', NULL, 0, 1)",
    "INSERT INTO origins VALUES ('node-b#0123456789abcdef', 9223372036854775807)",
    "CREATE TABLE alert_outbox (x)",
    "CREATE TABLE IF NOT EXISTS check_results (y)",
    "DROP TABLE events; CREATE TABLE events (origin, seq)",
    "DROP TABLE events; CREATE VIEW events AS SELECT 1 AS origin",
    "CREATE TRIGGER no_writes BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'no'); END",
    "CREATE TRIGGER more AFTER INSERT ON events BEGIN INSERT INTO meta VALUES (randomblob(8), 'x'); END",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA page_size = 512; VACUUM",
    "PRAGMA auto_vacuum = NONE; VACUUM",
];

/// One SQLite open and close per input: thousands, not millions.
pub struct HistoryFile {
    seeds: Vec<Vec<u8>>,
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
}

impl HistoryFile {
    pub fn new(events: &[Event]) -> Result<Self, FuzzError> {
        let dir = tempfile::Builder::new()
            .prefix("starling-fuzz-history-")
            .tempdir()
            .map_err(|e| FuzzError::Seeds(format!("temp dir: {e}")))?;
        let runtime = seeds::runtime()?;
        let seeds = files(dir.path(), &runtime, events)?;
        Ok(HistoryFile {
            seeds,
            dir,
            runtime,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn fail(error: impl std::fmt::Display) -> FuzzError {
    FuzzError::Seeds(format!("history file: {error}"))
}

/// A file `Store::open` made and filled (an own event, replicated rows, a
/// check result), then the same at each earlier schema version, and an
/// empty file.
fn files(
    dir: &Path,
    runtime: &tokio::runtime::Runtime,
    events: &[Event],
) -> Result<Vec<Vec<u8>>, FuzzError> {
    let path = dir.join("seed.db");
    runtime.block_on(async {
        let store = crate::history::open(&path, ME).map_err(fail)?;
        store.record(annotation()).await.map_err(fail)?;
        store
            .insert_replicated(events.to_vec())
            .await
            .map_err(fail)?;
        store
            .record_result(CheckResult {
                node: ME.to_owned(),
                check: "etcd".to_owned(),
                status: Status::Ok,
                message: "etcd: healthy".to_owned(),
                details: serde_json::json!({ "latency_ms": 3 }),
                duration_ms: 3,
                at_unix_ms: 1_796_000_000_000,
            })
            .await
            .map_err(fail)?;
        store.close().await;
        Ok::<(), FuzzError>(())
    })?;
    let mut files = vec![std::fs::read(&path).map_err(fail)?];
    for (version, drops) in [
        (2, "DROP TABLE alert_outbox;"),
        (
            1,
            "DROP TABLE alert_outbox; DROP TABLE check_results; DROP TABLE latest_results;",
        ),
    ] {
        let older = dir.join(format!("seed-v{version}.db"));
        std::fs::copy(&path, &older).map_err(fail)?;
        let conn = Connection::open(&older).map_err(fail)?;
        conn.execute_batch(&format!("{drops} PRAGMA user_version = {version};"))
            .map_err(fail)?;
        drop(conn);
        files.push(std::fs::read(&older).map_err(fail)?);
    }
    files.push(Vec::new());
    Ok(files)
}

fn annotation() -> NewEvent {
    NewEvent {
        at_unix_ms: starling_model::unix_ms_now(),
        kind: EventKind::Annotation,
        node: ME.to_owned(),
        check: None,
        old_state: None,
        new_state: None,
        message: "fuzz".to_owned(),
        dedupe_key: None,
    }
}

/// Removes the file and what SQLite keeps beside it.
fn remove(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

impl Target for HistoryFile {
    fn name(&self) -> &'static str {
        NAME
    }

    fn input(&mut self, rng: &mut StdRng, out: &mut Vec<u8>) {
        out.clone_from(&self.seeds[rng.random_range(0..self.seeds.len())]);
        if rng.random_ratio(1, 16) {
            return;
        }
        if !out.is_empty() && rng.random_bool(0.6) {
            let scratch = self.path("edit.db");
            remove(&scratch);
            let edited = std::fs::write(&scratch, &*out).is_ok()
                && Connection::open(&scratch).is_ok_and(|conn| {
                    for _ in 0..rng.random_range(1..=3) {
                        let edit = SQL_EDITS[rng.random_range(0..SQL_EDITS.len())];
                        let _ = conn.execute_batch(edit);
                    }
                    conn.close().is_ok()
                });
            if edited && let Ok(bytes) = std::fs::read(&scratch) {
                *out = bytes;
            }
            if rng.random_bool(0.7) {
                return;
            }
        }
        page_edit(rng, out, &self.seeds);
    }

    fn feed(&mut self, input: &[u8]) -> bool {
        let path = self.path("input.db");
        remove(&path);
        if std::fs::write(&path, input).is_err() {
            return false;
        }
        let opened = self.runtime.block_on(async {
            let store = crate::history::open(&path, ME).ok()?;
            // What an agent does first: count, read the log and the
            // latest results, record.
            let _ = store.version_vector().await;
            let _ = store
                .events(EventFilter {
                    limit: 100,
                    ..EventFilter::default()
                })
                .await;
            let _ = store.latest_results().await;
            let _ = store.record(annotation()).await;
            store.close().await;
            Some(())
        });
        opened.is_some()
    }
}

/// Byte edits aimed at SQLite's structures: the 100-byte header (page
/// size, versions, reserved space, counts), the first bytes of a page
/// (its type, cell count and pointers), or anywhere.
fn page_edit(rng: &mut StdRng, file: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    if file.len() < 100 || rng.random_ratio(1, 4) {
        mutate::bytes(rng, file, seeds);
        return;
    }
    let page_size = match u16::from_be_bytes([file[16], file[17]]) {
        1 => 65_536,
        size => usize::from(size).max(512),
    };
    let pages = file.len().div_ceil(page_size);
    let at = match rng.random_range(0..3) {
        0 => rng.random_range(16..100),
        1 => {
            let page = rng.random_range(0..pages);
            let header = if page == 0 { 100 } else { 0 };
            (page * page_size + header + rng.random_range(0..12)).min(file.len() - 1)
        }
        _ => rng.random_range(0..file.len()),
    };
    match rng.random_range(0..4) {
        0 => file[at] ^= 1 << rng.random_range(0..8),
        1 => file[at] = [0, 1, 0x7f, 0x80, 0xff][rng.random_range(0..5)],
        2 => file.truncate(rng.random_range(0..pages) * page_size),
        _ => {
            let end = (at + 4).min(file.len());
            file[at..end].fill(0xff);
        }
    }
}
