//! Keeping the history bounded in age and in size.

use std::time::Duration;

use rusqlite::Connection;

use super::db::get_u64;

/// Rows deleted per step when over the size cap: small enough that the
/// writer answers queued ops between steps of a big purge.
const SIZE_CHUNK_ROWS: i64 = 1000;

/// How much history to keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Events older than this go: a week covers "what happened over the
    /// weekend" without the log growing without bound.
    pub events_max_age: Duration,
    /// Raw results are only for recent graphs; the latest per check, and
    /// the events for its transitions, outlive them.
    pub results_max_age: Duration,
    /// Cap on the used part of the database file, so a flapping cluster
    /// cannot fill the node's disk; the oldest events go first.
    pub max_size_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            events_max_age: Duration::from_secs(7 * 24 * 3600),
            results_max_age: Duration::from_secs(24 * 3600),
            max_size_bytes: 256 * 1024 * 1024,
        }
    }
}

/// What one `enforce` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Event rows deleted, by age or for size; the events gauge goes down by it.
    pub events_deleted: u64,
    /// Raw result rows deleted by age.
    pub results_deleted: u64,
    /// Latest-result rows deleted: a check not heard of for as long as
    /// events are kept is gone (its node left, or the check was removed).
    pub latest_deleted: u64,
    /// Bytes the database file uses afterwards (its pages, WAL excluded).
    pub size_bytes: u64,
}

/// Delete what is older than `retention` allows, then the oldest events
/// while the file is over its size cap, and give freed pages back.
///
/// `origins.through` is left alone: what a node deleted it still vouches
/// for, or peers would send the old rows back forever.
pub fn enforce(
    conn: &Connection,
    now_ms: u64,
    retention: &Retention,
) -> rusqlite::Result<RetentionReport> {
    let cutoff = |age: Duration| {
        let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        i64::try_from(now_ms.saturating_sub(age_ms)).unwrap_or(i64::MAX)
    };
    let events_cutoff = cutoff(retention.events_max_age);
    let mut report = RetentionReport::default();
    {
        let tx = conn.unchecked_transaction()?;
        report.events_deleted =
            tx.execute("DELETE FROM events WHERE at_ms < ?1", [events_cutoff])? as u64;
        report.results_deleted = tx.execute(
            "DELETE FROM check_results WHERE at_ms < ?1",
            [cutoff(retention.results_max_age)],
        )? as u64;
        report.latest_deleted = tx.execute(
            "DELETE FROM latest_results WHERE at_ms < ?1",
            [events_cutoff],
        )? as u64;
        tx.commit()?;
    }
    while used_bytes(conn)? > retention.max_size_bytes {
        let deleted = conn.execute(
            "DELETE FROM events WHERE rowid IN
                 (SELECT rowid FROM events ORDER BY at_ms, origin, seq LIMIT ?1)",
            [SIZE_CHUNK_ROWS],
        )?;
        if deleted == 0 {
            // Nothing left to delete: the rest is results and overhead.
            break;
        }
        report.events_deleted += deleted as u64;
    }
    conn.execute_batch("PRAGMA incremental_vacuum")?;
    report.size_bytes = file_pages_bytes(conn)?;
    Ok(report)
}

/// Move the WAL's content into the file and truncate the WAL, so it does
/// not grow between restarts. Readers in the middle of a read make it stop
/// short, which is fine: the next one finishes.
pub fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
}

/// Bytes in pages that hold data: the free list is space the file has but
/// the history does not use.
pub fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let free = pragma_u64(conn, "freelist_count")?;
    let pages = pragma_u64(conn, "page_count")?;
    Ok(pages.saturating_sub(free) * pragma_u64(conn, "page_size")?)
}

fn file_pages_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    Ok(pragma_u64(conn, "page_count")? * pragma_u64(conn, "page_size")?)
}

fn pragma_u64(conn: &Connection, name: &str) -> rusqlite::Result<u64> {
    conn.pragma_query_value(None, name, |row| get_u64(row, 0))
}
