//! Pure functions over a SQLite connection: no threads and no clock
//! (callers pass `now_ms`), so replication can be tested on in-memory
//! databases exactly as the store runs it.

use std::collections::BTreeMap;
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

pub use super::schema::{SCHEMA_VERSION, migrate};

use super::model::{
    CheckResult, CheckStatus, Event, EventFilter, EventKind, NewEvent, SyncBatch, VersionVector,
    new_origin, origin_node, truncate_message, valid_node_name, valid_origin,
};

/// How long a connection waits for another's lock before giving up: long
/// enough to ride out a checkpoint, short enough to surface a stuck peer.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const EVENT_COLUMNS: &str = "origin, seq, observer, at_ms, kind, node, check_name, old_state, \
                             new_state, message, dedupe_key";

const RESULT_COLUMNS: &str = "check_name, status, message, details, duration_ms, at_ms";

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

impl ToSql for EventKind {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl FromSql for EventKind {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

impl ToSql for CheckStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl FromSql for CheckStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
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

/// Store events another node sent; returns how many were new. Rows of our
/// own origin are ignored (we are its authority), as are rows at or below
/// the origin's `through` (held already, or deleted by retention: taking
/// them back would only resurrect what was meant to go), and malformed
/// rows (one bad row must not make a peer's whole batch fail forever).
pub fn insert_replicated(
    tx: &Transaction<'_>,
    events: &[Event],
    now_ms: u64,
) -> rusqlite::Result<usize> {
    let own = own_origin(tx)?;
    let mut throughs: BTreeMap<&str, u64> = BTreeMap::new();
    let mut inserted = 0;
    for event in events {
        if own.as_deref() == Some(event.origin.as_str()) {
            continue;
        }
        if !valid_origin(&event.origin)
            || event.seq == 0
            || int("seq", event.seq).is_err()
            || int("at_unix_ms", event.at_unix_ms).is_err()
        {
            tracing::debug!(origin = %event.origin, seq = event.seq, "malformed replicated event skipped");
            continue;
        }
        let through = match throughs.get(event.origin.as_str()) {
            Some(&through) => through,
            None => {
                let through = ensure_origin(tx, &event.origin)?;
                throughs.insert(&event.origin, through);
                through
            }
        };
        if event.seq <= through {
            continue;
        }
        let added = if event.message.len() > super::model::MAX_MESSAGE_BYTES {
            let mut event = event.clone();
            truncate_message(&mut event.message);
            insert_event(tx, "INSERT OR IGNORE", &event, now_ms)?
        } else {
            insert_event(tx, "INSERT OR IGNORE", event, now_ms)?
        };
        if added {
            inserted += 1;
            if let Some(key) = &event.dedupe_key {
                settle_duplicates(tx, key)?;
            }
        }
    }
    for origin in throughs.keys() {
        advance(tx, origin)?;
    }
    Ok(inserted)
}

/// Apply a `missing_for` answer: its rows, then what the sender vouches is
/// complete, so gaps retention made elsewhere stop being waited for.
pub fn apply_batch(
    tx: &Transaction<'_>,
    batch: &SyncBatch,
    now_ms: u64,
) -> rusqlite::Result<usize> {
    let inserted = insert_replicated(tx, &batch.events, now_ms)?;
    let own = own_origin(tx)?;
    for (origin, &through) in &batch.through {
        if own.as_deref() == Some(origin.as_str()) || !valid_origin(origin) {
            continue;
        }
        let Ok(through) = int("through", through) else {
            continue;
        };
        tx.execute(
            "INSERT INTO origins (origin, through) VALUES (?1, ?2)
             ON CONFLICT (origin) DO UPDATE SET through = max(through, excluded.through)",
            params![origin, through],
        )?;
        advance(tx, origin)?;
    }
    Ok(inserted)
}

/// What we hold complete, per origin; origins at 0 say nothing and are left
/// out so that vectors of nodes with equal knowledge compare equal.
pub fn version_vector(conn: &Connection) -> rusqlite::Result<VersionVector> {
    let mut stmt = conn
        .prepare_cached("SELECT origin, through FROM origins WHERE through > 0 ORDER BY origin")?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, get_u64(row, 1)?)))?;
    rows.collect()
}

/// The rows a node with vector `theirs` lacks, at most `max_rows` of them,
/// by (origin, seq). See `SyncBatch` for `through` and `more`.
///
/// `more` is set only when the batch was cut *and* moves the asker's
/// vector: rows we hold past a gap in an origin cannot be acknowledged by
/// any vector, and promising more of them would have the asker page forever.
pub fn missing_for(
    conn: &Connection,
    theirs: &VersionVector,
    max_rows: usize,
) -> rusqlite::Result<SyncBatch> {
    let origins: Vec<(String, u64)> = {
        let mut stmt =
            conn.prepare_cached("SELECT origin, through FROM origins ORDER BY origin")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, get_u64(row, 1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE origin = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
    ))?;
    let mut batch = SyncBatch::default();
    let mut cut = false;
    for (origin, ours) in origins {
        let known = theirs.get(&origin).copied().unwrap_or(0);
        let budget = max_rows - batch.events.len();
        // One row past the budget tells whether the cut falls in this origin.
        let limit = saturating(budget as u64 + 1);
        let mut rows = stmt
            .query_map(params![origin, saturating(known), limit], event_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if rows.len() > budget {
            rows.truncate(budget);
            cut = true;
            if let Some(last) = rows.last() {
                batch.through.insert(origin, ours.min(last.seq));
            }
            batch.events.extend(rows);
            break;
        }
        if !rows.is_empty() || ours > known {
            batch.through.insert(origin, ours);
        }
        batch.events.extend(rows);
    }
    batch.more = cut
        && batch
            .through
            .iter()
            .any(|(origin, &through)| through > theirs.get(origin).copied().unwrap_or(0));
    Ok(batch)
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
    sql.push_str(" ORDER BY at_ms DESC, origin, seq LIMIT ?");
    args.push(Value::Integer(saturating(filter.limit as u64)));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), event_from_row)?;
    rows.collect()
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

/// Keep one of our node's raw results.
pub fn insert_result(tx: &Transaction<'_>, result: &CheckResult) -> rusqlite::Result<()> {
    tx.prepare_cached(&format!(
        "INSERT INTO check_results ({RESULT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
    ))?
    .execute(params![
        result.check,
        result.status,
        result.message,
        result.details.to_string(),
        saturating(result.duration_ms),
        int("at_unix_ms", result.at_unix_ms)?,
    ])?;
    Ok(())
}

/// Our node's raw results at or after `since_ms`, newest first. The table
/// has no node column (every row is ours): the node comes from our origin.
pub fn recent_results(
    conn: &Connection,
    check: Option<&str>,
    since_ms: u64,
    limit: usize,
) -> rusqlite::Result<Vec<CheckResult>> {
    let node = own_origin(conn)?.map_or_else(String::new, |o| origin_node(&o).to_owned());
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT ?1, {RESULT_COLUMNS} FROM check_results
         WHERE at_ms >= ?2 AND (?3 IS NULL OR check_name = ?3)
         ORDER BY at_ms DESC, id DESC LIMIT ?4"
    ))?;
    let rows = stmt.query_map(
        params![node, saturating(since_ms), check, saturating(limit as u64)],
        result_from_row,
    )?;
    rows.collect()
}

/// Keep `result` as its (node, check)'s latest unless a newer one is
/// stored: results arrive by gossip in any order. Returns whether it won.
pub fn upsert_latest(tx: &Transaction<'_>, result: &CheckResult) -> rusqlite::Result<bool> {
    let changed = tx
        .prepare_cached(&format!(
            "INSERT INTO latest_results (node, {RESULT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (node, check_name) DO UPDATE SET
                 status = excluded.status, message = excluded.message,
                 details = excluded.details, duration_ms = excluded.duration_ms,
                 at_ms = excluded.at_ms
             WHERE excluded.at_ms > latest_results.at_ms"
        ))?
        .execute(params![
            result.node,
            result.check,
            result.status,
            result.message,
            result.details.to_string(),
            saturating(result.duration_ms),
            int("at_unix_ms", result.at_unix_ms)?,
        ])?;
    Ok(changed > 0)
}

/// The latest result of every (node, check), ordered by node then check.
pub fn latest_results(conn: &Connection) -> rusqlite::Result<Vec<CheckResult>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT node, {RESULT_COLUMNS} FROM latest_results ORDER BY node, check_name"
    ))?;
    let rows = stmt.query_map([], result_from_row)?;
    rows.collect()
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

/// Make sure `origin` has a row in the vector; returns its through.
fn ensure_origin(tx: &Transaction<'_>, origin: &str) -> rusqlite::Result<u64> {
    tx.prepare_cached("INSERT OR IGNORE INTO origins (origin, through) VALUES (?1, 0)")?
        .execute([origin])?;
    through_of(tx, origin)
}

fn through_of(conn: &Connection, origin: &str) -> rusqlite::Result<u64> {
    conn.prepare_cached("SELECT through FROM origins WHERE origin = ?1")?
        .query_row([origin], |row| get_u64(row, 0))
}

/// Move `origin`'s through up over the rows that follow it without a gap:
/// a pushed row can arrive before a lost earlier one, and the vector must
/// not claim the missing row is held.
fn advance(tx: &Transaction<'_>, origin: &str) -> rusqlite::Result<()> {
    let start = through_of(tx, origin)?;
    let mut through = start;
    {
        let mut stmt = tx
            .prepare_cached("SELECT seq FROM events WHERE origin = ?1 AND seq > ?2 ORDER BY seq")?;
        let mut rows = stmt.query(params![origin, saturating(start)])?;
        while let Some(row) = rows.next()? {
            let seq = get_u64(row, 0)?;
            if seq != through + 1 {
                break;
            }
            through = seq;
        }
    }
    if through > start {
        tx.prepare_cached("UPDATE origins SET through = ?2 WHERE origin = ?1")?
            .execute(params![origin, saturating(through)])?;
    }
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

/// Columns: node, then `RESULT_COLUMNS`.
fn result_from_row(row: &Row<'_>) -> rusqlite::Result<CheckResult> {
    let details: String = row.get(4)?;
    Ok(CheckResult {
        node: row.get(0)?,
        check: row.get(1)?,
        status: row.get(2)?,
        message: row.get(3)?,
        details: serde_json::from_str(&details).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
        })?,
        duration_ms: get_u64(row, 5)?,
        at_unix_ms: get_u64(row, 6)?,
    })
}
