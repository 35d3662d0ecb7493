//! Check results: this node's raw ones, and every node's latest.

use rusqlite::{Connection, Row, Transaction, params};

use super::{get_u64, int, own_origin, saturating};
use crate::model::{CheckResult, origin_node};

const RESULT_COLUMNS: &str = "check_name, status, message, details, duration_ms, at_ms";

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

/// When each of this node's checks last passed, among the raw results
/// still retained.
pub fn last_passes(conn: &Connection) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT check_name, max(at_ms) FROM check_results WHERE status = 'ok' GROUP BY check_name",
    )?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, get_u64(row, 1)?)))?;
    rows.collect()
}

/// Keep `result` as its (node, check)'s latest unless a newer one is
/// stored: results arrive by gossip in any order. Returns whether it won.
pub fn upsert_latest(tx: &Transaction<'_>, result: &CheckResult) -> rusqlite::Result<bool> {
    let changed = tx
        .prepare_cached(&format!(
            "INSERT INTO latest_results (node, {RESULT_COLUMNS}, revision)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,
                     (SELECT coalesce(max(revision), 0) + 1 FROM latest_results))
             ON CONFLICT (node, check_name) DO UPDATE SET
                 status = excluded.status, message = excluded.message,
                 details = excluded.details, duration_ms = excluded.duration_ms,
                 at_ms = excluded.at_ms, revision = excluded.revision
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

/// The latest results that changed after `revision`, oldest change first,
/// at most `limit`, each with its revision: what an aggregator sends a node
/// that holds its table as of `revision` (0: the whole table).
pub fn latest_after(
    conn: &Connection,
    revision: u64,
    limit: usize,
) -> rusqlite::Result<Vec<(u64, CheckResult)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT node, {RESULT_COLUMNS}, revision FROM latest_results
         WHERE revision > ?1 ORDER BY revision LIMIT ?2"
    ))?;
    let rows = stmt.query_map(
        params![saturating(revision), saturating(limit as u64)],
        |row| Ok((get_u64(row, 7)?, result_from_row(row)?)),
    )?;
    rows.collect()
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
