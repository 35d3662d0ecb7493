//! Replication of the event log: storing what peers send, and answering
//! "what do I miss?" by version vector.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::results::upsert_latest;
use super::{
    EVENT_COLUMNS, event_from_row, get_u64, insert_event, int, own_origin, saturating,
    settle_duplicates,
};
use crate::digest::Slices;
use crate::model::{
    CheckResult, Event, MAX_MESSAGE_BYTES, SyncBatch, VersionVector, origin_node, truncate_message,
    valid_origin,
};

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
    insert_replicated_noting(tx, events, now_ms, &mut |_| {})
}

/// `insert_replicated`, calling `on_new` with each row that was new (the
/// store measures replication lag with it).
pub fn insert_replicated_noting(
    tx: &Transaction<'_>,
    events: &[Event],
    now_ms: u64,
    on_new: &mut dyn FnMut(&Event),
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
        let added = if event.message.len() > MAX_MESSAGE_BYTES {
            let mut event = event.clone();
            truncate_message(&mut event.message);
            insert_event(tx, "INSERT OR IGNORE", &event, now_ms)?
        } else {
            insert_event(tx, "INSERT OR IGNORE", event, now_ms)?
        };
        if added {
            inserted += 1;
            on_new(event);
            if let Some(key) = &event.dedupe_key {
                settle_duplicates(tx, key)?;
            }
            // A transition on another node is its latest result as far as
            // we know (`CheckResult::from_transition`).
            if let Some(result) = CheckResult::from_transition(event) {
                upsert_latest(tx, &result)?;
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
    apply_batch_noting(tx, batch, now_ms, &mut |_| {})
}

/// `apply_batch`, calling `on_new` with each row that was new.
pub fn apply_batch_noting(
    tx: &Transaction<'_>,
    batch: &SyncBatch,
    now_ms: u64,
    on_new: &mut dyn FnMut(&Event),
) -> rusqlite::Result<usize> {
    let inserted = insert_replicated_noting(tx, &batch.events, now_ms, on_new)?;
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
    missing_among(conn, theirs, max_rows, |_| true)
}

/// `missing_for`, about the origins in `only` alone: the asker compared
/// fingerprints first and knows the other slices agree.
pub fn missing_in(
    conn: &Connection,
    theirs: &VersionVector,
    max_rows: usize,
    only: &Slices,
) -> rusqlite::Result<SyncBatch> {
    missing_among(conn, theirs, max_rows, |origin| only.contains(origin))
}

/// Rows of our own origin after `after`, at most `max_rows`: what a node
/// streams to the aggregators that own it, from where each acknowledged.
/// `through` names our origin whenever there is anything past `after`.
pub fn own_rows_after(
    conn: &Connection,
    after: u64,
    max_rows: usize,
) -> rusqlite::Result<SyncBatch> {
    let Some(own) = own_origin(conn)? else {
        return Ok(SyncBatch::default());
    };
    let theirs = VersionVector::from([(own.clone(), after)]);
    missing_among(conn, &theirs, max_rows, |origin| origin == own)
}

fn missing_among(
    conn: &Connection,
    theirs: &VersionVector,
    max_rows: usize,
    wanted: impl Fn(&str) -> bool,
) -> rusqlite::Result<SyncBatch> {
    let origins: Vec<(String, u64)> = {
        let mut stmt =
            conn.prepare_cached("SELECT origin, through FROM origins ORDER BY origin")?;
        let rows = stmt.query_map([], |row| Ok((row.get::<_, String>(0)?, get_u64(row, 1)?)))?;
        rows.filter(|row| row.as_ref().map_or(true, |(origin, _)| wanted(origin)))
            .collect::<rusqlite::Result<_>>()?
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

/// Forget origins that hold no rows and whose node `live` does not name,
/// except our own; returns how many went.
///
/// An origin is one node's log for one data-dir lifetime, so without this
/// the vector grows by one entry per wiped disk or replaced node, forever,
/// and travels in every sync that compares it. Once retention has deleted
/// the last row of a departed node's log, its entry says only "nothing to
/// wait for". Should a peer that has not pruned it yet still vouch for it,
/// the entry comes back with that peer's `through` and goes again at the
/// next pruning: harmless either way. A live node's entry is kept even when
/// its rows are gone, or each sync with an unpruned peer would restore it.
pub fn prune_origins(conn: &Connection, live: impl Fn(&str) -> bool) -> rusqlite::Result<usize> {
    let own = own_origin(conn)?;
    let empty: Vec<String> = {
        let mut stmt = conn.prepare_cached(
            "SELECT origin FROM origins AS o
             WHERE NOT EXISTS (SELECT 1 FROM events AS e WHERE e.origin = o.origin)",
        )?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut pruned = 0;
    for origin in empty {
        if own.as_deref() == Some(origin.as_str()) || live(origin_node(&origin)) {
            continue;
        }
        pruned += conn
            .prepare_cached("DELETE FROM origins WHERE origin = ?1")?
            .execute([&origin])?;
    }
    Ok(pruned)
}

/// Forget the latest results of nodes `known` does not name (gossip forgot
/// them: gone longer than it remembers the down), except our own; returns
/// how many rows went. A node's results change only with its transitions,
/// so age says nothing about whether they still hold: membership does.
pub fn prune_latest(conn: &Connection, known: impl Fn(&str) -> bool) -> rusqlite::Result<usize> {
    let own = own_origin(conn)?;
    let own_node = own.as_deref().map(origin_node);
    let nodes: Vec<String> = {
        let mut stmt = conn.prepare_cached("SELECT DISTINCT node FROM latest_results")?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut pruned = 0;
    for node in nodes {
        if own_node == Some(node.as_str()) || known(&node) {
            continue;
        }
        pruned += conn
            .prepare_cached("DELETE FROM latest_results WHERE node = ?1")?
            .execute([&node])?;
    }
    Ok(pruned)
}

/// Whether any of these (origin, seq) lies past a gap: its origin's through
/// is below it, so an earlier row of that origin never arrived. Rows of
/// our own origin never lie past a gap.
pub fn past_a_gap(conn: &Connection, rows: &[(String, u64)]) -> rusqlite::Result<bool> {
    let own = own_origin(conn)?;
    for (origin, seq) in rows {
        if own.as_deref() == Some(origin.as_str()) {
            continue;
        }
        let through = conn
            .prepare_cached("SELECT through FROM origins WHERE origin = ?1")?
            .query_row([origin], |row| get_u64(row, 0))
            .optional()?
            .unwrap_or(0);
        if through < *seq {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Make sure `origin` has a row in the vector; returns its through.
fn ensure_origin(tx: &Transaction<'_>, origin: &str) -> rusqlite::Result<u64> {
    tx.prepare_cached("INSERT OR IGNORE INTO origins (origin, through) VALUES (?1, 0)")?
        .execute([origin])?;
    through_of(tx, origin)
}

/// Every seq of `origin` up to this is held here (0 for an origin never
/// heard of): one entry of the version vector, without reading the rest.
pub fn held_through(conn: &Connection, origin: &str) -> rusqlite::Result<u64> {
    Ok(conn
        .prepare_cached("SELECT through FROM origins WHERE origin = ?1")?
        .query_row([origin], |row| get_u64(row, 0))
        .optional()?
        .unwrap_or(0))
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
