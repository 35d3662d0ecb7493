//! The history as the agent uses it: one writer thread owns the only write
//! connection and commits whatever is queued in one transaction; reads run
//! on a small pool of connections, which WAL lets proceed during writes.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, Transaction};
use tokio::sync::oneshot;

use super::db::{self, SetupError};
use super::digest::Slices;
use super::metrics::HistoryMetrics;
use super::model::{CheckResult, Event, EventFilter, NewEvent, SyncBatch, VersionVector};
use super::retention::{KeepOwn, Retention, RetentionReport};

mod error;
mod readers;
mod writer;

pub use error::{OpenError, StoreError};
use readers::ReaderPool;
pub use writer::WriteContext;
use writer::{Message, Op, Writer};

/// How the store runs.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// How much history to keep.
    pub retention: Retention,
    /// How often the writer thread runs retention and a WAL checkpoint;
    /// between runs the WAL grows and old rows linger.
    pub housekeeping_every: Duration,
    /// Read connections (at least one): reads that wait on each other stall
    /// the UI, while each connection costs its page cache.
    pub readers: usize,
    /// Cap on the database size in pages (`PRAGMA max_page_count`) on the
    /// writer: lets tests, and operators on a tiny volume, make SQLite
    /// refuse writes with "disk full" before the disk itself does.
    pub max_page_count: Option<u32>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            retention: Retention::default(),
            housekeeping_every: Duration::from_secs(60),
            readers: 2,
            max_page_count: None,
        }
    }
}

/// The history database of this node. Cheap to clone; the writer thread
/// finishes the queued ops and exits when the last clone is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    origin: String,
    node_name: String,
    path: PathBuf,
    /// `None` only while dropping: closing it is what stops the writer.
    sender: Option<mpsc::Sender<Message>>,
    writer: Option<JoinHandle<()>>,
    readers: Arc<ReaderPool>,
    /// Results known but not (yet) in the database, by (node, check): this
    /// node's own while its disk is full, and other nodes' sent by gossip
    /// while theirs is. `latest_results` answers with them until the
    /// database holds something as new, so a node's health never depends
    /// on a disk write.
    held: Mutex<HashMap<(String, String), CheckResult>>,
    /// Which of our own rows retention keeps; the writer reads it at each
    /// housekeeping, aggregation sets it as acknowledgements come.
    keep_own: Arc<Mutex<KeepOwn>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("origin", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.sender.take());
        // Waits for the writer to commit what is queued: an acknowledged
        // write is durable, and so should be one in flight at shutdown.
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "history writer thread panicked");
        }
    }
}

impl Store {
    /// Open (creating it and its directory if needed), check and migrate
    /// the database at `path`, and start the writer thread.
    ///
    /// Blocking (the check reads the whole file): async callers run it on
    /// `spawn_blocking`.
    pub fn open(
        path: &Path,
        node_name: &str,
        config: StoreConfig,
        metrics: HistoryMetrics,
    ) -> Result<Store, StoreError> {
        if !super::model::valid_node_name(node_name) {
            return Err(StoreError::InvalidNodeName(node_name.to_owned()));
        }
        let path = path.to_owned();
        let failed = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| failed(OpenError::CreateDir(e)))?;
        }
        let sqlite = |e| failed(OpenError::classify(e));
        let mut conn = Connection::open(&path).map_err(sqlite)?;
        db::configure_writer(&conn).map_err(sqlite)?;
        quick_check(&conn).map_err(failed)?;
        let setup = |error| match error {
            SetupError::NewerSchema { found, supported } => StoreError::NewerSchema {
                path: path.clone(),
                found,
                supported,
            },
            SetupError::InvalidNodeName(name) => StoreError::InvalidNodeName(name),
            SetupError::Sqlite(e) => failed(OpenError::classify(e)),
        };
        db::migrate(&mut conn).map_err(setup)?;
        let origin = db::init_origin(&mut conn, node_name).map_err(setup)?;
        if let Some(pages) = config.max_page_count {
            conn.pragma_update(None, "max_page_count", pages)
                .map_err(sqlite)?;
        }
        let events = db::count_events(&conn).map_err(sqlite)?;
        metrics
            .events
            .set(i64::try_from(events).unwrap_or(i64::MAX));
        metrics.size_bytes.set(file_size(&path));
        let mut idle = Vec::new();
        for _ in 0..config.readers.max(1) {
            let reader = Connection::open(&path).map_err(sqlite)?;
            db::configure_reader(&reader).map_err(sqlite)?;
            idle.push(reader);
        }
        let readers = Arc::new(ReaderPool::new(idle));
        let (sender, receiver) = mpsc::channel();
        let keep_own = Arc::new(Mutex::new(KeepOwn::default()));
        let writer = Writer {
            keep_own: Arc::clone(&keep_own),
            conn,
            origin: origin.clone(),
            node_name: node_name.to_owned(),
            path: path.clone(),
            config,
            metrics,
            opened_ms: now_ms(),
        };
        let writer = std::thread::Builder::new()
            .name("history-writer".to_owned())
            .spawn(move || writer.run(receiver))
            .map_err(|e| failed(OpenError::Thread(e)))?;
        tracing::info!(path = %path.display(), %origin, events, "history database open");
        Ok(Store {
            inner: Arc::new(Inner {
                origin,
                node_name: node_name.to_owned(),
                path,
                sender: Some(sender),
                writer: Some(writer),
                readers,
                held: Mutex::new(HashMap::new()),
                keep_own,
            }),
        })
    }

    /// The origin id this node's events are recorded under.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The node name the store was opened for; the observer of our events.
    pub fn node_name(&self) -> &str {
        &self.inner.node_name
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Append an event to this node's log; returns it numbered.
    pub async fn record(&self, new: NewEvent) -> Result<Event, StoreError> {
        self.submit(move |tx, ctx| {
            let event = db::record_local(tx, ctx.origin, ctx.node_name, &new, ctx.now_ms)?;
            ctx.events_added += 1;
            Ok(event)
        })
        .await
    }

    /// See `db::insert_replicated`; returns how many rows were new.
    pub async fn insert_replicated(&self, events: Vec<Event>) -> Result<usize, StoreError> {
        self.submit(move |tx, ctx| {
            let now_ms = ctx.now_ms;
            let added = db::insert_replicated_noting(tx, &events, now_ms, &mut |event| {
                ctx.note_replicated(event)
            })?;
            ctx.events_added += added as u64;
            Ok(added)
        })
        .await
    }

    /// See `db::apply_batch`; returns how many rows were new.
    pub async fn apply_batch(&self, batch: SyncBatch) -> Result<usize, StoreError> {
        self.submit(move |tx, ctx| {
            let now_ms = ctx.now_ms;
            let added = db::apply_batch_noting(tx, &batch, now_ms, &mut |event| {
                ctx.note_replicated(event)
            })?;
            ctx.events_added += added as u64;
            Ok(added)
        })
        .await
    }

    /// Keep one of this node's results, raw and as its check's latest.
    pub async fn record_result(&self, result: CheckResult) -> Result<(), StoreError> {
        self.submit(move |tx, _| {
            db::insert_result(tx, &result)?;
            db::upsert_latest(tx, &result)?;
            Ok(())
        })
        .await
    }

    /// See `db::upsert_latest`; returns whether `result` is now the latest.
    pub async fn upsert_latest(&self, result: CheckResult) -> Result<bool, StoreError> {
        self.submit(move |tx, _| Ok(db::upsert_latest(tx, &result)?))
            .await
    }

    /// `upsert_latest` for each, in one transaction; returns how many won.
    pub async fn upsert_latest_all(&self, results: Vec<CheckResult>) -> Result<usize, StoreError> {
        self.submit(move |tx, _| {
            let mut won = 0;
            for result in &results {
                won += usize::from(db::upsert_latest(tx, result)?);
            }
            Ok(won)
        })
        .await
    }

    /// See `db::latest_after`.
    pub async fn latest_after(
        &self,
        revision: u64,
        limit: usize,
    ) -> Result<Vec<(u64, CheckResult)>, StoreError> {
        self.read(move |conn| db::latest_after(conn, revision, limit))
            .await
    }

    /// See `db::held_through`.
    pub async fn held_through(&self, origin: String) -> Result<u64, StoreError> {
        self.read(move |conn| db::held_through(conn, &origin)).await
    }

    /// See `db::own_rows_after`.
    pub async fn own_rows_after(
        &self,
        after: u64,
        max_rows: usize,
    ) -> Result<SyncBatch, StoreError> {
        self.read(move |conn| db::own_rows_after(conn, after, max_rows))
            .await
    }

    /// Keep these of our own rows from retention from now on (see
    /// [`KeepOwn`]). Until told, retention keeps none: the first
    /// housekeeping runs a `housekeeping_every` after the open, by which
    /// time aggregation knows the cluster's mode.
    pub fn keep_own(&self, keep: KeepOwn) {
        *self
            .inner
            .keep_own
            .lock()
            .expect("nothing panics while holding keep_own") = keep;
    }

    /// Run retention and a checkpoint now, rather than at the next tick.
    pub async fn enforce_retention(&self) -> Result<RetentionReport, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::Housekeeping(Some(reply)))?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Run `f` on a read connection, off the async threads. The connection
    /// is query-only: writes go through the writer, or they would race its
    /// group commit for the lock.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let permit = Arc::clone(&self.inner.readers.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = Arc::clone(&self.inner.readers);
        let outcome = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let lease = pool.lease();
            f(lease.conn())
        })
        .await;
        match outcome {
            Ok(value) => Ok(value?),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// See `db::query_events`.
    pub async fn events(&self, filter: EventFilter) -> Result<Vec<Event>, StoreError> {
        self.read(move |conn| db::query_events(conn, &filter)).await
    }

    /// See `db::recent_events`.
    pub async fn recent_events(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<Event>, u64), StoreError> {
        self.read(move |conn| db::recent_events(conn, after, limit))
            .await
    }

    /// See `db::version_vector`.
    pub async fn version_vector(&self) -> Result<VersionVector, StoreError> {
        self.read(db::version_vector).await
    }

    /// See `db::prune_origins`: `live` names the nodes gossip sees alive
    /// or suspect.
    pub async fn prune_origins(&self, live: HashSet<String>) -> Result<usize, StoreError> {
        self.submit(move |tx, _| Ok(db::prune_origins(tx, |node| live.contains(node))?))
            .await
    }

    /// See `db::prune_latest`.
    pub async fn prune_latest(&self, known: HashSet<String>) -> Result<usize, StoreError> {
        self.submit(move |tx, _| Ok(db::prune_latest(tx, |node| known.contains(node))?))
            .await
    }

    /// See `db::past_a_gap`.
    pub async fn past_a_gap(&self, rows: Vec<(String, u64)>) -> Result<bool, StoreError> {
        self.read(move |conn| db::past_a_gap(conn, &rows)).await
    }

    /// See `db::missing_for`, and `db::missing_in` for `only`.
    pub async fn missing_for(
        &self,
        theirs: VersionVector,
        max_rows: usize,
        only: Option<Slices>,
    ) -> Result<SyncBatch, StoreError> {
        self.read(move |conn| match &only {
            Some(only) => db::missing_in(conn, &theirs, max_rows, only),
            None => db::missing_for(conn, &theirs, max_rows),
        })
        .await
    }

    /// See `db::has_dedupe_key`.
    pub async fn has_dedupe_key(&self, key: String) -> Result<bool, StoreError> {
        self.read(move |conn| db::has_dedupe_key(conn, &key)).await
    }

    /// See `db::latest_results`; results held in memory (see
    /// [`Store::hold_result`]) stand in for older rows, or missing ones.
    pub async fn latest_results(&self) -> Result<Vec<CheckResult>, StoreError> {
        let mut latest = self.read(db::latest_results).await?;
        let mut held = self.held();
        if held.is_empty() {
            return Ok(latest);
        }
        for row in &mut latest {
            let key = (row.node.clone(), row.check.clone());
            match held.get(&key) {
                // The database caught up: the held copy has done its job.
                Some(h) if h.at_unix_ms <= row.at_unix_ms => {
                    held.remove(&key);
                }
                Some(h) => *row = h.clone(),
                None => {}
            }
        }
        for ((node, check), result) in held.iter() {
            if !latest.iter().any(|r| &r.node == node && &r.check == check) {
                latest.push(result.clone());
            }
        }
        latest.sort_by(|a, b| (&a.node, &a.check).cmp(&(&b.node, &b.check)));
        Ok(latest)
    }

    /// Keep `result` in memory as its check's latest, until the database
    /// holds one as new: for a result that could not be written here (a
    /// full disk), or one a node with a full disk sent by gossip.
    pub fn hold_result(&self, result: CheckResult) {
        let key = (result.node.clone(), result.check.clone());
        let mut held = self.held();
        if held
            .get(&key)
            .is_none_or(|h| h.at_unix_ms < result.at_unix_ms)
        {
            held.insert(key, result);
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), CheckResult>> {
        // A panic while holding it cannot leave the map half-updated.
        self.inner
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// See `db::last_passes`.
    pub async fn last_passes(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(db::last_passes).await
    }

    /// See `db::recent_results`.
    pub async fn recent_results(
        &self,
        check: Option<String>,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<CheckResult>, StoreError> {
        self.read(move |conn| db::recent_results(conn, check.as_deref(), since_ms, limit))
            .await
    }

    /// The writer has stopped (it can only have panicked while handles
    /// remain): every write would fail.
    pub fn is_closed(&self) -> bool {
        self.inner.writer.as_ref().is_none_or(|w| w.is_finished())
    }

    /// Let go of this handle; when it is the last, wait (off the async
    /// threads) for the writer to commit what is queued and exit.
    pub async fn close(self) {
        if let Some(inner) = Arc::into_inner(self.inner) {
            let _ = tokio::task::spawn_blocking(move || drop(inner)).await;
        }
    }

    /// Queue a write op on the one writer; it answers after the
    /// transaction committed. Public for the layers that keep tables of
    /// their own in this database (the alert outbox), so every write still
    /// goes through one writer thread.
    pub async fn submit<T, F>(&self, apply: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Transaction<'_>, &mut WriteContext<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send(Message::Job(Box::new(Op {
            apply,
            value: None,
            reply,
        })))?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    fn send(&self, message: Message) -> Result<(), StoreError> {
        self.inner
            .sender
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(message)
            .map_err(|_| StoreError::Closed)
    }
}

/// `PRAGMA quick_check`: finds most corruption in a fraction of a full
/// integrity check's time, so a damaged file is named at startup rather
/// than failing writes at random later.
fn quick_check(conn: &Connection) -> Result<(), OpenError> {
    let mut stmt = conn
        .prepare("PRAGMA quick_check(5)")
        .map_err(OpenError::classify)?;
    let problems = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(OpenError::classify)?;
    if problems.len() == 1 && problems[0] == "ok" {
        Ok(())
    } else {
        Err(OpenError::Corrupt(problems.join("; ")))
    }
}

/// Bytes on disk: the file and its write-ahead log.
pub(super) fn file_size(path: &Path) -> i64 {
    let mut wal = OsString::from(path.as_os_str());
    wal.push("-wal");
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    i64::try_from(size(path) + size(Path::new(&wal))).unwrap_or(i64::MAX)
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
