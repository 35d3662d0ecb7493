//! Pure functions over a SQLite connection: no threads and no clock
//! (callers pass `now_ms`), so replication can be tested on in-memory
//! databases exactly as the store runs it.

use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

pub use super::schema::{SCHEMA_VERSION, migrate};
pub use results::{
    insert_result, last_passes, latest_after, latest_results, recent_results, upsert_latest,
};
pub use sync::{
    apply_batch, apply_batch_noting, held_through, insert_replicated, insert_replicated_noting,
    missing_for, missing_in, own_rows_after, past_a_gap, prune_latest, prune_origins,
    version_vector,
};

mod results;
mod sync;

use super::model::{
    Event, EventFilter, NewEvent, new_origin, origin_node, truncate_message, valid_node_name,
};

/// How long a connection waits for another's lock before giving up: long
/// enough to ride out a checkpoint, short enough to surface a stuck peer.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const EVENT_COLUMNS: &str = "origin, seq, observer, at_ms, kind, node, check_name, old_state, \
                             new_state, message, dedupe_key";

/// Why a connection could not be made ready for the history.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "schema version {found} is newer than this agent supports ({supported}): \
         a newer starling wrote it; upgrade, or move the file away to start a new history"
    )]
    NewerSchema {
        /// The file's user_version.
        found: u32,
        /// The highest this build knows.
        supported: u32,
    },
    #[error("node name {0:?} cannot name a history origin (1 to 253 of A-Z a-z 0-9 . _ -)")]
    InvalidNodeName(String),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// A u64 that SQLite's signed integers cannot hold.
#[derive(Debug, thiserror::Error)]
#[error("{what} {value} does not fit SQLite's signed 64-bit integers")]
struct OutOfRange {
    what: &'static str,
    value: u64,
}

/// `value` as SQLite stores integers, or an error naming the field.
pub(crate) fn int(what: &'static str, value: u64) -> rusqlite::Result<i64> {
    i64::try_from(value)
        .map_err(|_| rusqlite::Error::ToSqlConversionFailure(Box::new(OutOfRange { what, value })))
}

/// For query bounds, where "beyond any stored value" is what a huge u64 means.
fn saturating(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn get_u64(row: &Row<'_>, index: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(index)?;
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(index, value))
}

/// The pragmas of the one connection that writes.
pub fn configure_writer(conn: &Connection) -> rusqlite::Result<()> {
    // auto_vacuum only takes on a file before its first table exists, and
    // switching to WAL writes the header, so this goes first. INCREMENTAL
    // lets retention hand freed pages back to the file system.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    // WAL: readers never block the writer, nor it them.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // In WAL mode NORMAL loses at most the last commits on power loss,
    // never consistency; a process crash (kill -9) loses nothing.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)
}

/// The pragmas of a connection that only reads.
pub fn configure_reader(conn: &Connection) -> rusqlite::Result<()> {
    // A reader that wrote would race the writer's group commit for the lock.
    conn.pragma_update(None, "query_only", "ON")?;
    conn.busy_timeout(BUSY_TIMEOUT)
}

/// A migrated in-memory database with an origin for `node_name`, for tests
/// and simulations of replication.
pub fn open_in_memory(node_name: &str) -> Result<(Connection, String), SetupError> {
    let mut conn = Connection::open_in_memory()?;
    configure_writer(&conn)?;
    migrate(&mut conn)?;
    let origin = init_origin(&mut conn, node_name)?;
    Ok((conn, origin))
}

/// This file's origin for `node_name`, made anew when the file has none or
/// was written under another node name: reusing another name's log would
/// put events in it that node never recorded.
pub fn init_origin(conn: &mut Connection, node_name: &str) -> Result<String, SetupError> {
    if !valid_node_name(node_name) {
        return Err(SetupError::InvalidNodeName(node_name.to_owned()));
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(origin) = own_origin(&tx)?
        && origin_node(&origin) == node_name
    {
        return Ok(origin);
    }
    let origin = new_origin(node_name);
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('origin', ?1), ('next_seq', '1')",
        [&origin],
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO origins (origin, through) VALUES (?1, 0)",
        [&origin],
    )?;
    tx.commit()?;
    Ok(origin)
}

/// The origin this file records under, once `init_origin` ran.
pub fn own_origin(conn: &Connection) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = 'origin'", [], |row| {
        row.get(0)
    })
    .optional()
}

/// Append to our own log. The next seq lives in `meta` rather than being
/// max(seq) + 1, so retention deleting our newest-but-old rows can never
/// make a number come back.
pub fn record_local(
    tx: &Transaction<'_>,
    origin: &str,
    observer: &str,
    new: &NewEvent,
    now_ms: u64,
) -> rusqlite::Result<Event> {
    let seq: i64 = tx.query_row(
        "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'next_seq'",
        [],
        |row| row.get(0),
    )?;
    let seq = u64::try_from(seq)
        .ok()
        .filter(|&seq| seq > 0)
        .ok_or(rusqlite::Error::IntegralValueOutOfRange(0, seq))?;
    let mut message = new.message.clone();
    truncate_message(&mut message);
    let event = Event {
        origin: origin.to_owned(),
        seq,
        observer: observer.to_owned(),
        at_unix_ms: new.at_unix_ms,
        kind: new.kind,
        node: new.node.clone(),
        check: new.check.clone(),
        old_state: new.old_state.clone(),
        new_state: new.new_state.clone(),
        message,
        dedupe_key: new.dedupe_key.clone(),
    };
    // A plain INSERT: a clash here means next_seq went wrong, which must
    // fail loudly rather than drop the event.
    insert_event(tx, "INSERT", &event, now_ms)?;
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'next_seq'",
        [(seq + 1).to_string()],
    )?;
    // Our own log has no gaps, so it is complete through the row just added.
    tx.execute(
        "INSERT INTO origins (origin, through) VALUES (?1, ?2)
         ON CONFLICT (origin) DO UPDATE SET through = excluded.through",
        params![origin, int("seq", seq)?],
    )?;
    if let Some(key) = &event.dedupe_key {
        settle_duplicates(tx, key)?;
    }
    Ok(event)
}

/// Events matching `filter`, newest first, each happening shown once.
pub fn query_events(conn: &Connection, filter: &EventFilter) -> rusqlite::Result<Vec<Event>> {
    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE duplicate = 0");
    let mut args: Vec<Value> = Vec::new();
    if let Some(node) = &filter.node {
        sql.push_str(" AND node = ?");
        args.push(Value::Text(node.clone()));
    }
    if let Some(kind) = filter.kind {
        sql.push_str(" AND kind = ?");
        args.push(Value::Text(kind.as_str().to_owned()));
    }
    if let Some(check) = &filter.check {
        sql.push_str(" AND check_name = ?");
        args.push(Value::Text(check.clone()));
    }
    if let Some(since) = filter.since_unix_ms {
        sql.push_str(" AND at_ms >= ?");
        args.push(Value::Integer(saturating(since)));
    }
    if let Some(until) = filter.until_unix_ms {
        sql.push_str(" AND at_ms < ?");
        args.push(Value::Integer(saturating(until)));
    }
    if let Some(after) = &filter.after {
        // Strictly after the cursor in the ORDER BY below.
        sql.push_str(" AND (at_ms < ? OR (at_ms = ? AND (origin, seq) > (?, ?)))");
        let at = Value::Integer(saturating(after.at_unix_ms));
        args.extend([
            at.clone(),
            at,
            Value::Text(after.origin.clone()),
            Value::Integer(saturating(after.seq)),
        ]);
    }
    sql.push_str(" ORDER BY at_ms DESC, origin, seq LIMIT ?");
    args.push(Value::Integer(saturating(filter.limit as u64)));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), event_from_row)?;
    rows.collect()
}

/// The newest events this database took in after position `after` of its
/// own arrival order (SQLite's rowid; 0 for the newest there are), at most
/// `limit`, oldest first, with the position of the newest. Past the limit
/// the older ones are skipped: this serves a bounded window of the recent
/// log, not a copy of it. SQLite numbers a new row one past the highest
/// held, so a cursor misses a row only when retention deleted the newest
/// one and its number came back; a window tolerates that.
pub fn recent_events(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> rusqlite::Result<(Vec<Event>, u64)> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS}, rowid FROM events WHERE rowid > ?1 AND duplicate = 0
         ORDER BY rowid DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(
        params![saturating(after), saturating(limit as u64)],
        |row| Ok((event_from_row(row)?, get_u64(row, 11)?)),
    )?;
    let mut events = Vec::new();
    let mut through = after;
    for row in rows {
        let (event, position) = row?;
        through = through.max(position);
        events.push(event);
    }
    events.reverse();
    Ok((events, through))
}

/// Whether any node already logged this happening; lets a caller skip
/// recording what another observer reported first.
pub fn has_dedupe_key(conn: &Connection, key: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM events WHERE dedupe_key = ?1)",
        [key],
        |row| row.get(0),
    )
}

/// Rows in the event log, duplicates included (they take space too).
pub fn count_events(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT count(*) FROM events", [], |row| get_u64(row, 0))
}

/// Insert one event row; `verb` is INSERT or INSERT OR IGNORE. Returns
/// whether a row was added.
fn insert_event(
    tx: &Transaction<'_>,
    verb: &str,
    event: &Event,
    now_ms: u64,
) -> rusqlite::Result<bool> {
    let added = tx
        .prepare_cached(&format!(
            "{verb} INTO events ({EVENT_COLUMNS}, received_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ))?
        .execute(params![
            event.origin,
            int("seq", event.seq)?,
            event.observer,
            int("at_unix_ms", event.at_unix_ms)?,
            event.kind,
            event.node,
            event.check,
            event.old_state,
            event.new_state,
            event.message,
            event.dedupe_key,
            saturating(now_ms),
        ])?;
    Ok(added > 0)
}

/// Among the rows sharing `key`, show only the earliest (by time, then
/// origin and seq). Deciding by content rather than arrival order means
/// every node shows the same row whichever copy reached it first.
fn settle_duplicates(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE events SET duplicate = ((origin, seq) <> (
             SELECT origin, seq FROM events WHERE dedupe_key = ?1
             ORDER BY at_ms, origin, seq LIMIT 1))
         WHERE dedupe_key = ?1",
    )?
    .execute([key])?;
    Ok(())
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        origin: row.get(0)?,
        seq: get_u64(row, 1)?,
        observer: row.get(2)?,
        at_unix_ms: get_u64(row, 3)?,
        kind: row.get(4)?,
        node: row.get(5)?,
        check: row.get(6)?,
        old_state: row.get(7)?,
        new_state: row.get(8)?,
        message: row.get(9)?,
        dedupe_key: row.get(10)?,
    })
}
