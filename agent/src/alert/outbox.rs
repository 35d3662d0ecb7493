//! The persisted outbox: alert notices waiting for their sink, in the
//! history database (one writer, and the same file survives a restart).
//! Per (sink, key) only the oldest row is ever attempted, so a key's
//! transitions arrive in order; other keys are not held up by it.

use rusqlite::{OptionalExtension, params};

use crate::history::{Store, StoreError};

use super::model::{AlertState, Notice};

/// Rows handed to a sink worker per round.
const BATCH: usize = 16;

/// The rows of sink `?1` that are the oldest of their key: the only ones
/// ever attempted, so a key's transitions stay in order.
macro_rules! heads_of_sink {
    () => {
        "FROM alert_outbox o
         WHERE o.sink = ?1
           AND o.id = (SELECT min(i.id) FROM alert_outbox i
                       WHERE i.sink = o.sink AND i.alert_key = o.alert_key)"
    };
}

/// A notice for one sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub id: i64,
    pub notice: Notice,
    /// A transition (its delivery is marked in the history) rather than
    /// an Alertmanager refresh.
    pub transition: bool,
    pub attempts: u32,
}

/// Why a row could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("alert outbox row {id} holds an unreadable notice: {source}")]
    Corrupt {
        id: i64,
        #[source]
        source: serde_json::Error,
    },
}

/// The outbox, a view onto the history store.
#[derive(Clone, Debug)]
pub struct Outbox {
    store: Store,
    /// Rows kept at most; beyond, the oldest resolved go first.
    max_rows: u64,
}

impl Outbox {
    pub fn new(store: Store, max_rows: u64) -> Self {
        Outbox { store, max_rows }
    }

    /// Queue `notice` for each of `sinks`. Returns how many older rows were
    /// dropped to stay within the bound.
    pub async fn enqueue(
        &self,
        notice: &Notice,
        sinks: Vec<String>,
        transition: bool,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        let json = serde_json::to_string(notice).expect("a notice always serializes to JSON");
        let key = notice.key.clone();
        let resolved = notice.state == AlertState::Resolved;
        let max_rows = self.max_rows as i64;
        self.store
            .submit(move |tx, _| {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO alert_outbox
                       (sink, alert_key, resolved, transition, notice, next_attempt_ms, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                )?;
                for sink in &sinks {
                    insert.execute(params![
                        sink,
                        key,
                        resolved,
                        transition,
                        json,
                        now_ms as i64
                    ])?;
                }
                let count: i64 =
                    tx.query_row("SELECT count(*) FROM alert_outbox", [], |r| r.get(0))?;
                let excess = count - max_rows;
                if excess <= 0 {
                    return Ok(0);
                }
                // Oldest resolved first: losing a resolution leaves a stale
                // alert that Alertmanager times out; losing a firing one
                // hides a problem.
                let dropped = tx.execute(
                    "DELETE FROM alert_outbox WHERE id IN (
                       SELECT id FROM alert_outbox ORDER BY resolved DESC, id LIMIT ?1)",
                    params![excess],
                )?;
                Ok(dropped as u64)
            })
            .await
    }

    /// Whether `sink` already has anything queued for `key`.
    pub async fn holds(&self, sink: String, key: String) -> Result<bool, StoreError> {
        self.store
            .read(move |conn| {
                conn.query_row(
                    "SELECT 1 FROM alert_outbox WHERE sink = ?1 AND alert_key = ?2 LIMIT 1",
                    params![sink, key],
                    |_| Ok(()),
                )
                .optional()
                .map(|found| found.is_some())
            })
            .await
    }

    /// The oldest row of each of `sink`'s keys that is due by `now_ms`.
    pub async fn due(&self, sink: String, now_ms: u64) -> Result<Vec<Row>, OutboxError> {
        let rows = self
            .store
            .read(move |conn| {
                let mut statement = conn.prepare_cached(concat!(
                    "SELECT o.id, o.notice, o.transition, o.attempts ",
                    heads_of_sink!(),
                    " AND o.next_attempt_ms <= ?2 ORDER BY o.id LIMIT ?3"
                ))?;
                let rows =
                    statement.query_map(params![sink, now_ms as i64, BATCH as i64], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, bool>(2)?,
                            row.get::<_, u32>(3)?,
                        ))
                    })?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        rows.into_iter()
            .map(|(id, json, transition, attempts)| {
                let notice = serde_json::from_str(&json)
                    .map_err(|source| OutboxError::Corrupt { id, source })?;
                Ok(Row {
                    id,
                    notice,
                    transition,
                    attempts,
                })
            })
            .collect()
    }

    /// When `sink`'s next row falls due, if it has any. Only the head of
    /// each key counts: a row waiting behind a backing-off head is not due.
    pub async fn next_due(&self, sink: String) -> Result<Option<u64>, StoreError> {
        self.store
            .read(move |conn| {
                conn.query_row(
                    concat!("SELECT min(o.next_attempt_ms) ", heads_of_sink!()),
                    params![sink],
                    |row| row.get::<_, Option<i64>>(0),
                )
                .map(|at| at.map(|at| at.max(0) as u64))
            })
            .await
    }

    /// The row was delivered, or refused for good: it leaves the outbox.
    pub async fn remove(&self, id: i64) -> Result<(), StoreError> {
        self.store
            .submit(move |tx, _| {
                tx.execute("DELETE FROM alert_outbox WHERE id = ?1", params![id])?;
                Ok(())
            })
            .await
    }

    /// Try the row again at `next_attempt_ms`.
    pub async fn retry_later(
        &self,
        id: i64,
        attempts: u32,
        next_attempt_ms: u64,
        error: String,
    ) -> Result<(), StoreError> {
        self.store
            .submit(move |tx, _| {
                tx.execute(
                    "UPDATE alert_outbox SET attempts = ?2, next_attempt_ms = ?3, last_error = ?4
                     WHERE id = ?1",
                    params![id, attempts, next_attempt_ms as i64, error],
                )?;
                Ok(())
            })
            .await
    }

    /// Rows waiting, for the gauge.
    pub async fn len(&self) -> Result<u64, StoreError> {
        self.store
            .read(|conn| {
                conn.query_row("SELECT count(*) FROM alert_outbox", [], |row| {
                    row.get::<_, i64>(0)
                })
                .map(|n| n.max(0) as u64)
            })
            .await
    }
}
