//! Keeping the history bounded in age and in size.

use std::time::Duration;

use rusqlite::Connection;

use super::db::{count_events, get_u64};
use super::model::origin_node;

/// Rows deleted per step when over the size cap: small enough that the
/// writer answers queued ops between steps of a big purge.
const SIZE_CHUNK_ROWS: u64 = 1000;

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

/// Which of this node's own events retention keeps whatever their age and
/// the size cap. In aggregated mode a node's own log is the only copy until
/// its aggregators acknowledge it, so what they have not is kept: with
/// every aggregator down for longer than the retention, nothing is lost,
/// and the log grows by the node's own events only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeepOwn {
    /// Full replication: every peer holds our rows, retention applies.
    #[default]
    Nothing,
    /// Our rows past this seq: the lowest any owning aggregator holds.
    After(u64),
}

impl KeepOwn {
    /// The seq past which our rows stay, as SQLite compares it.
    fn after(self) -> i64 {
        match self {
            KeepOwn::Nothing => i64::MAX,
            KeepOwn::After(seq) => i64::try_from(seq).unwrap_or(i64::MAX),
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
    /// Latest-result rows of our own checks deleted: one not run for as
    /// long as events are kept was removed. Other nodes' rows are not
    /// aged out: they change only with a transition, so a check steady
    /// for a week would lose its row everywhere but on its node. They go
    /// when gossip forgets their node (`db::prune_latest`).
    pub latest_deleted: u64,
    /// Bytes the database file uses afterwards (its pages, WAL excluded).
    pub size_bytes: u64,
    /// Our own events past the age limit kept because no aggregator has
    /// acknowledged them ([`KeepOwn`]).
    pub own_kept_unacknowledged: u64,
}

/// Events retention may delete: not our own rows that [`KeepOwn`] keeps.
/// `?1` is our origin, `?2` the seq past which ours stay.
const DELETABLE: &str = "NOT (origin = ?1 AND seq > ?2)";

/// Delete what is older than `retention` allows, then the oldest events
/// while the file is over its size cap, and give freed pages back.
///
/// `origins.through` is left alone: what a node deleted it still vouches
/// for, or peers would send the old rows back forever. Our own rows (of
/// `own_origin`) that `keep` names stay.
pub fn enforce(
    conn: &Connection,
    now_ms: u64,
    retention: &Retention,
    own_origin: &str,
    keep: KeepOwn,
) -> rusqlite::Result<RetentionReport> {
    let cutoff = |age: Duration| {
        let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        i64::try_from(now_ms.saturating_sub(age_ms)).unwrap_or(i64::MAX)
    };
    let events_cutoff = cutoff(retention.events_max_age);
    let mut report = RetentionReport::default();
    {
        let tx = conn.unchecked_transaction()?;
        report.events_deleted = tx.execute(
            &format!("DELETE FROM events WHERE at_ms < ?3 AND {DELETABLE}"),
            rusqlite::params![own_origin, keep.after(), events_cutoff],
        )? as u64;
        report.own_kept_unacknowledged = tx.query_row(
            "SELECT count(*) FROM events WHERE at_ms < ?3 AND origin = ?1 AND seq > ?2",
            rusqlite::params![own_origin, keep.after(), events_cutoff],
            |row| get_u64(row, 0),
        )?;
        report.results_deleted = tx.execute(
            "DELETE FROM check_results WHERE at_ms < ?1",
            [cutoff(retention.results_max_age)],
        )? as u64;
        report.latest_deleted = tx.execute(
            "DELETE FROM latest_results WHERE at_ms < ?1 AND node = ?2",
            rusqlite::params![events_cutoff, origin_node(own_origin)],
        )? as u64;
        tx.commit()?;
    }
    if used_bytes(conn)? > retention.max_size_bytes {
        report.events_deleted += shrink_to(conn, retention.max_size_bytes, own_origin, keep)?;
    }
    // Each step of this pragma frees one page: it must run to the end.
    let mut vacuum = conn.prepare("PRAGMA incremental_vacuum")?;
    let mut steps = vacuum.query([])?;
    while steps.next()?.is_some() {}
    drop(steps);
    drop(vacuum);
    report.size_bytes = file_pages_bytes(conn)?;
    Ok(report)
}

/// Delete the oldest events until the used pages fit `cap`; returns how
/// many.
///
/// A page counts as used while any row is left on it, so deleting rows
/// stored out of time order (a peer's backlog arrives by origin, not by
/// time) can free few pages: chasing the page count alone could delete the
/// whole log. So each round deletes as many rows as the excess is worth at
/// the pages events take per row (`dbstat`), and once the rows' bytes fill
/// no more than half the cap, retention stops and leaves the rest to
/// SQLite merging emptied pages. When only kept rows of our own are left
/// it stops too: the cap gives way to losing nothing.
fn shrink_to(
    conn: &Connection,
    cap: u64,
    own_origin: &str,
    keep: KeepOwn,
) -> rusqlite::Result<u64> {
    let mut deleted = 0;
    loop {
        let used = used_bytes(conn)?;
        let usage = dbstat(conn)?;
        let count = count_events(conn)?;
        if used <= cap || usage.data <= cap / 2 || count == 0 {
            return Ok(deleted);
        }
        // Enough rows to free the excess if their pages go with them...
        let freeing = (used - cap).div_ceil((usage.event_pages / count).max(1));
        // ...but never so many that the rows left would fill under half.
        let floor = (usage.data - cap / 2) / (usage.event_data / count).max(1);
        let mut excess = freeing.min(floor).min(count);
        if excess == 0 {
            return Ok(deleted);
        }
        while excess > 0 {
            let chunk = i64::try_from(excess.min(SIZE_CHUNK_ROWS)).expect("a chunk is small");
            let removed = conn.execute(
                &format!(
                    "DELETE FROM events WHERE rowid IN
                         (SELECT rowid FROM events WHERE {DELETABLE}
                          ORDER BY at_ms, origin, seq LIMIT ?3)"
                ),
                rusqlite::params![own_origin, keep.after(), chunk],
            )? as u64;
            if removed == 0 {
                return Ok(deleted);
            }
            deleted += removed;
            excess = excess.saturating_sub(removed);
        }
    }
}

/// What the pages hold, from `dbstat`.
struct Usage {
    /// Bytes of page content in use, all tables and indexes.
    data: u64,
    /// Bytes of the pages that hold events and their indexes.
    event_pages: u64,
    /// Bytes of content in use on those pages.
    event_data: u64,
}

fn dbstat(conn: &Connection) -> rusqlite::Result<Usage> {
    conn.query_row(
        "SELECT coalesce(sum(pgsize - unused), 0),
                coalesce(sum(CASE WHEN tbl_name = 'events' THEN pgsize END), 0),
                coalesce(sum(CASE WHEN tbl_name = 'events' THEN pgsize - unused END), 0)
         FROM dbstat AS s LEFT JOIN sqlite_schema AS m ON m.name = s.name
         WHERE aggregate = TRUE",
        [],
        |row| {
            Ok(Usage {
                data: get_u64(row, 0)?,
                event_pages: get_u64(row, 1)?,
                event_data: get_u64(row, 2)?,
            })
        },
    )
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
