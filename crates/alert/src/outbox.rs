//! The persisted outbox: alert notices waiting for their sink, in the
//! history database (one writer, and the same file survives a restart).
//! Per (sink, key) only the oldest row is ever attempted, so a key's
//! transitions arrive in order; other keys are not held up by it.

use rusqlite::{OptionalExtension, params};

use starling_history::{Store, StoreError};

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

    /// The keys with rows waiting.
    pub async fn keys(&self) -> Result<Vec<String>, StoreError> {
        self.store
            .read(|conn| {
                let mut statement =
                    conn.prepare_cached("SELECT DISTINCT alert_key FROM alert_outbox")?;
                let keys = statement.query_map([], |row| row.get(0))?;
                keys.collect()
            })
            .await
    }

    /// Drop `key`'s rows that another node's claim of `generation` makes
    /// stale: every older row, and this generation's transitions (the
    /// claimant sends them). Refreshes of `generation` still serve. Returns
    /// the sink of each row dropped.
    pub async fn drop_superseded(
        &self,
        key: String,
        generation: u64,
    ) -> Result<Vec<String>, StoreError> {
        self.store
            .submit(move |tx, _| {
                let mut statement = tx.prepare_cached(
                    "DELETE FROM alert_outbox
                     WHERE alert_key = ?1
                       AND (json_extract(notice, '$.generation') < ?2
                            OR (json_extract(notice, '$.generation') = ?2 AND transition))
                     RETURNING sink",
                )?;
                let sinks =
                    statement.query_map(params![key, generation as i64], |row| row.get(0))?;
                Ok(sinks.collect::<Result<Vec<String>, _>>()?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use starling_history::{HistoryMetrics, StoreConfig};

    fn store(dir: &tempfile::TempDir) -> Store {
        Store::open(
            &dir.path().join("history.db"),
            "a",
            StoreConfig::default(),
            HistoryMetrics::default(),
        )
        .expect("a history opens in a temp dir")
    }

    fn sinks(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    async fn heads(outbox: &Outbox, sink: &str) -> Vec<(String, u64, bool)> {
        outbox
            .due(sink.to_owned(), u64::MAX / 2)
            .await
            .expect("reads")
            .into_iter()
            .map(|r| (r.notice.key, r.notice.generation, r.transition))
            .collect()
    }

    #[tokio::test]
    async fn a_claim_elsewhere_drops_older_rows_and_its_transitions_but_not_its_refreshes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let outbox = Outbox::new(store(&dir), 100);
        let firing = Notice::for_tests("node-down/x", 1, AlertState::Firing);
        outbox
            .enqueue(&firing, sinks(&["am", "hook"]), true, 1)
            .await
            .expect("queued");
        outbox
            .enqueue(&firing, sinks(&["am"]), false, 2)
            .await
            .expect("queued");
        let resolved = Notice::for_tests("node-down/x", 2, AlertState::Resolved);
        outbox
            .enqueue(&resolved, sinks(&["am"]), true, 3)
            .await
            .expect("queued");
        let other = Notice::for_tests("node-down/y", 1, AlertState::Firing);
        outbox
            .enqueue(&other, sinks(&["am"]), true, 4)
            .await
            .expect("queued");
        assert_eq!(outbox.keys().await.expect("reads").len(), 2);

        let mut dropped = outbox
            .drop_superseded("node-down/x".to_owned(), 1)
            .await
            .expect("drops");
        dropped.sort();
        assert_eq!(dropped, sinks(&["am", "hook"]));
        assert_eq!(
            heads(&outbox, "am").await,
            [
                ("node-down/x".to_owned(), 1, false),
                ("node-down/y".to_owned(), 1, true)
            ]
        );
        assert!(heads(&outbox, "hook").await.is_empty());

        let dropped = outbox
            .drop_superseded("node-down/x".to_owned(), 2)
            .await
            .expect("drops");
        assert_eq!(dropped, sinks(&["am", "am"]), "the stale refresh goes too");
        assert_eq!(outbox.keys().await.expect("reads"), ["node-down/y"]);
    }

    #[tokio::test]
    async fn a_full_outbox_drops_the_oldest_resolved_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let outbox = Outbox::new(store(&dir), 3);
        let queue = [
            Notice::for_tests("node-down/k1", 1, AlertState::Firing),
            Notice::for_tests("node-down/k1", 2, AlertState::Resolved),
            Notice::for_tests("node-down/k2", 1, AlertState::Firing),
            Notice::for_tests("node-down/k3", 1, AlertState::Firing),
        ];
        let mut dropped = 0;
        for (at, notice) in queue.iter().enumerate() {
            dropped += outbox
                .enqueue(notice, sinks(&["am"]), true, at as u64)
                .await
                .expect("queued");
        }
        assert_eq!((dropped, outbox.len().await.expect("counts")), (1, 3));
        assert_eq!(
            heads(&outbox, "am").await,
            [
                ("node-down/k1".to_owned(), 1, true),
                ("node-down/k2".to_owned(), 1, true),
                ("node-down/k3".to_owned(), 1, true)
            ]
        );
        let k1 = outbox.due("am".to_owned(), 10).await.expect("reads")[0].id;
        outbox.remove(k1).await.expect("removes");
        assert!(
            !outbox
                .holds("am".to_owned(), "node-down/k1".to_owned())
                .await
                .expect("reads"),
            "k1's resolution was the row dropped"
        );
    }
}
