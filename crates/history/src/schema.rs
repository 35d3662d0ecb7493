//! Schema migrations, numbered by `PRAGMA user_version`.
//!
//! A migration is never edited once released: files in the field are at
//! every version, and each step must take the previous one's tables as
//! they were. Add a new step instead.

use rusqlite::{Connection, TransactionBehavior};

use super::db::SetupError;

/// Step `i` takes a file from user_version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // v1: the replicated event log.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE events (
         origin TEXT NOT NULL,
         seq INTEGER NOT NULL,
         observer TEXT NOT NULL,
         at_ms INTEGER NOT NULL,
         kind TEXT NOT NULL,
         node TEXT NOT NULL,
         check_name TEXT NULL,
         old_state TEXT NULL,
         new_state TEXT NULL,
         message TEXT NOT NULL,
         dedupe_key TEXT NULL,
         duplicate INTEGER NOT NULL DEFAULT 0,
         received_ms INTEGER NOT NULL,
         PRIMARY KEY (origin, seq)
     );
     CREATE INDEX events_node_at ON events (node, at_ms);
     CREATE INDEX events_at ON events (at_ms);
     CREATE INDEX events_dedupe ON events (dedupe_key) WHERE dedupe_key IS NOT NULL;
     CREATE TABLE origins (origin TEXT PRIMARY KEY, through INTEGER NOT NULL);",
    // v2: check results, this node's raw ones and everyone's latest.
    "CREATE TABLE check_results (
         id INTEGER PRIMARY KEY,
         check_name TEXT NOT NULL,
         status TEXT NOT NULL,
         message TEXT NOT NULL,
         details TEXT NOT NULL,
         duration_ms INTEGER NOT NULL,
         at_ms INTEGER NOT NULL
     );
     CREATE INDEX check_results_at ON check_results (at_ms);
     CREATE INDEX check_results_check_at ON check_results (check_name, at_ms);
     CREATE TABLE latest_results (
         node TEXT NOT NULL,
         check_name TEXT NOT NULL,
         status TEXT NOT NULL,
         message TEXT NOT NULL,
         details TEXT NOT NULL,
         duration_ms INTEGER NOT NULL,
         at_ms INTEGER NOT NULL,
         PRIMARY KEY (node, check_name)
     );",
    // v3: alert transitions waiting for a sink, oldest first per key.
    "CREATE TABLE alert_outbox (
         id INTEGER PRIMARY KEY,
         sink TEXT NOT NULL,
         alert_key TEXT NOT NULL,
         resolved INTEGER NOT NULL,
         transition INTEGER NOT NULL,
         notice TEXT NOT NULL,
         attempts INTEGER NOT NULL DEFAULT 0,
         next_attempt_ms INTEGER NOT NULL,
         created_ms INTEGER NOT NULL,
         last_error TEXT NULL
     );
     CREATE INDEX alert_outbox_head ON alert_outbox (sink, alert_key, id);",
    // v4: a revision per latest result, so an aggregator can serve "what
    // changed since revision R" and a node's copy of the cluster's health
    // costs nothing to keep current while nothing changes.
    "ALTER TABLE latest_results ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX latest_results_revision ON latest_results (revision);",
];

/// The user_version a fully migrated file has.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Run the steps the file lacks, each in its own transaction together with
/// its user_version bump, so a crash leaves the file at a known version.
pub fn migrate(conn: &mut Connection) -> Result<(), SetupError> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// `migrate`, stopping at `target`; tests use it to make old files.
pub(crate) fn migrate_to(conn: &mut Connection, target: u32) -> Result<(), SetupError> {
    let found = user_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(SetupError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for version in found..target.min(SCHEMA_VERSION) {
        // IMMEDIATE: two processes opening one new file must not both
        // read version 0 and both try to create the tables.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if user_version(&tx)? != version {
            continue;
        }
        tx.execute_batch(MIGRATIONS[version as usize])?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
    Ok(())
}

pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}
