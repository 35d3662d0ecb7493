//! The history as the agent uses it: one writer thread owns the only write
//! connection and commits whatever is queued in one transaction; reads run
//! on a small pool of connections, which WAL lets proceed during writes.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior};
use tokio::sync::{Semaphore, oneshot};

use super::db::{self, SetupError};
use super::metrics::{HistoryMetrics, WriteFailure};
use super::model::{CheckResult, Event, EventFilter, NewEvent, SyncBatch, VersionVector};
use super::retention::{self, Retention, RetentionReport};

/// Ops committed together at most: bounds how long the first caller of a
/// burst waits for the others' rows to be written.
const MAX_GROUP: usize = 256;

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

/// Why a history operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("history database {}: {source}", path.display())]
    Open {
        /// The database file, so the operator knows which file to look at.
        path: PathBuf,
        /// What is wrong with it, and what to do.
        #[source]
        source: OpenError,
    },
    #[error(
        "history database {}: schema version {found} is newer than this agent supports \
         ({supported}): a newer starling wrote it; upgrade, or move the file away to start \
         a new history",
        path.display()
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The file's schema version.
        found: u32,
        /// The highest this build knows.
        supported: u32,
    },
    #[error("history database {}: disk full, write refused", path.display())]
    DiskFull {
        /// The database file, whose file system is the full one.
        path: PathBuf,
    },
    #[error("node name {0:?} cannot name a history origin (1 to 253 of A-Z a-z 0-9 . _ -)")]
    InvalidNodeName(String),
    #[error("history database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("history store is closed (its writer thread is gone)")]
    Closed,
}

/// What is wrong with a database file that would not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create its directory: {0}")]
    CreateDir(#[source] std::io::Error),
    #[error(
        "file is not a database (corrupt, or not a starling history file): \
         move it away to start a new history"
    )]
    NotADatabase(#[source] rusqlite::Error),
    #[error("database is corrupt ({0}): move it away to start a new history")]
    Corrupt(String),
    #[error("cannot open it (a directory in the way, or no permission to read it): {0}")]
    CannotOpen(#[source] rusqlite::Error),
    #[error("cannot write it (a read-only file or file system): {0}")]
    ReadOnly(#[source] rusqlite::Error),
    #[error("cannot start the writer thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("{0}")]
    Sqlite(#[source] rusqlite::Error),
}

impl OpenError {
    fn classify(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => OpenError::NotADatabase(error),
            Some(ErrorCode::DatabaseCorrupt) => OpenError::Corrupt(error.to_string()),
            Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
                OpenError::CannotOpen(error)
            }
            Some(ErrorCode::ReadOnly) => OpenError::ReadOnly(error),
            _ => OpenError::Sqlite(error),
        }
    }
}

/// What a write op sees besides its transaction.
#[derive(Debug)]
pub(crate) struct WriteContext<'a> {
    pub origin: &'a str,
    pub node_name: &'a str,
    /// One clock reading per transaction, as `received_ms` for its rows.
    pub now_ms: u64,
    /// Event rows the op added, for the gauge once the commit succeeded.
    pub events_added: u64,
}

/// A queued write: run in a group transaction, and again alone if the
/// group failed, so each caller gets its own op's outcome.
trait Job: Send {
    fn run(&mut self, tx: &Transaction<'_>, ctx: &mut WriteContext<'_>) -> Result<(), StoreError>;
    /// Answer the caller: the op's value once `outcome` says it committed.
    fn answer(self: Box<Self>, outcome: Result<(), StoreError>);
}

struct Op<T, F> {
    apply: F,
    value: Option<T>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Op<T, F>
where
    T: Send,
    F: FnMut(&Transaction<'_>, &mut WriteContext<'_>) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, tx: &Transaction<'_>, ctx: &mut WriteContext<'_>) -> Result<(), StoreError> {
        self.value = Some((self.apply)(tx, ctx)?);
        Ok(())
    }

    fn answer(self: Box<Self>, outcome: Result<(), StoreError>) {
        let Op { value, reply, .. } = *self;
        let answer =
            outcome.map(|()| value.expect("an op is answered as committed only after it ran"));
        // The caller may have given up waiting; the write stands anyway.
        let _ = reply.send(answer);
    }
}

enum Message {
    Job(Box<dyn Job>),
    /// Retention and checkpoint; `Some` when a caller asked for them.
    Housekeeping(Option<oneshot::Sender<Result<RetentionReport, StoreError>>>),
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
    /// Open (creating it and its directory if needed) and migrate the
    /// database at `path`, and start the writer thread.
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
        let readers = Arc::new(ReaderPool {
            permits: Arc::new(Semaphore::new(idle.len())),
            idle: Mutex::new(idle),
        });
        let (sender, receiver) = mpsc::channel();
        let writer = Writer {
            conn,
            origin: origin.clone(),
            node_name: node_name.to_owned(),
            path: path.clone(),
            config,
            metrics,
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
            }),
        })
    }

    /// The origin id this node's events are recorded under.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    pub fn node_name(&self) -> &str {
        &self.inner.node_name
    }

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
            let added = db::insert_replicated(tx, &events, ctx.now_ms)?;
            ctx.events_added += added as u64;
            Ok(added)
        })
        .await
    }

    /// See `db::apply_batch`; returns how many rows were new.
    pub async fn apply_batch(&self, batch: SyncBatch) -> Result<usize, StoreError> {
        self.submit(move |tx, ctx| {
            let added = db::apply_batch(tx, &batch, ctx.now_ms)?;
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

    /// Run retention and a checkpoint now, rather than at the next tick.
    pub async fn enforce_retention(&self) -> Result<RetentionReport, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::Housekeeping(Some(reply)))?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Run `f` on a read connection, off the async threads.
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

    pub async fn events(&self, filter: EventFilter) -> Result<Vec<Event>, StoreError> {
        self.read(move |conn| db::query_events(conn, &filter)).await
    }

    pub async fn version_vector(&self) -> Result<VersionVector, StoreError> {
        self.read(db::version_vector).await
    }

    pub async fn missing_for(
        &self,
        theirs: VersionVector,
        max_rows: usize,
    ) -> Result<SyncBatch, StoreError> {
        self.read(move |conn| db::missing_for(conn, &theirs, max_rows))
            .await
    }

    pub async fn has_dedupe_key(&self, key: String) -> Result<bool, StoreError> {
        self.read(move |conn| db::has_dedupe_key(conn, &key)).await
    }

    pub async fn latest_results(&self) -> Result<Vec<CheckResult>, StoreError> {
        self.read(db::latest_results).await
    }

    pub async fn recent_results(
        &self,
        check: Option<String>,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<CheckResult>, StoreError> {
        self.read(move |conn| db::recent_results(conn, check.as_deref(), since_ms, limit))
            .await
    }

    /// Let go of this handle; when it is the last, wait (off the async
    /// threads) for the writer to commit what is queued and exit.
    pub async fn close(self) {
        if let Some(inner) = Arc::into_inner(self.inner) {
            let _ = tokio::task::spawn_blocking(move || drop(inner)).await;
        }
    }

    /// Queue a write op; it answers after the transaction committed.
    pub(crate) async fn submit<T, F>(&self, apply: F) -> Result<T, StoreError>
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
fn file_size(path: &Path) -> i64 {
    let mut wal = OsString::from(path.as_os_str());
    wal.push("-wal");
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    i64::try_from(size(path) + size(Path::new(&wal))).unwrap_or(i64::MAX)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct ReaderPool {
    /// One permit per connection in `idle`: holding one guarantees a pop.
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    fn lease(&self) -> Lease<'_> {
        let conn = self
            .idle
            .lock()
            .expect("the reader pool lock is only held to push or pop")
            .pop()
            .expect("a reader permit guarantees an idle connection");
        Lease {
            pool: self,
            conn: Some(conn),
        }
    }
}

/// A read connection out of the pool; back in on drop, even if the
/// reader's closure panicked, so the pool never shrinks.
struct Lease<'a> {
    pool: &'a ReaderPool,
    conn: Option<Connection>,
}

impl Lease<'_> {
    fn conn(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("a lease holds its connection until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let (Some(conn), Ok(mut idle)) = (self.conn.take(), self.pool.idle.lock()) {
            idle.push(conn);
        }
    }
}

struct Writer {
    conn: Connection,
    origin: String,
    node_name: String,
    path: PathBuf,
    config: StoreConfig,
    metrics: HistoryMetrics,
}

impl Writer {
    fn run(mut self, receiver: mpsc::Receiver<Message>) {
        let every = self.config.housekeeping_every;
        let mut due = Instant::now() + every;
        loop {
            let wait = due.saturating_duration_since(Instant::now());
            let mut next = match receiver.recv_timeout(wait) {
                Ok(message) => Some(message),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            // Group commit: everything already queued goes in one
            // transaction, so a burst costs one fsync instead of one each.
            let mut jobs = Vec::new();
            while let Some(message) = next.take() {
                match message {
                    Message::Job(job) => jobs.push(job),
                    Message::Housekeeping(reply) => {
                        self.commit(std::mem::take(&mut jobs));
                        self.housekeeping(reply);
                        due = Instant::now() + every;
                    }
                }
                if jobs.len() < MAX_GROUP {
                    next = receiver.try_recv().ok();
                }
            }
            self.commit(jobs);
            if Instant::now() >= due {
                self.housekeeping(None);
                due = Instant::now() + every;
            }
        }
        if let Err(error) = retention::checkpoint(&self.conn) {
            tracing::warn!(path = %self.path.display(), %error, "history checkpoint at close failed");
        }
    }

    fn commit(&mut self, mut jobs: Vec<Box<dyn Job>>) {
        if jobs.is_empty() {
            return;
        }
        match self.transact(&mut jobs) {
            Ok(()) => jobs.into_iter().for_each(|job| job.answer(Ok(()))),
            Err(error) if jobs.len() == 1 => {
                let error = self.failed(error);
                if let Some(job) = jobs.pop() {
                    job.answer(Err(error));
                }
            }
            // One op's failure must not fail the others: retry each alone,
            // and each caller gets its own op's outcome.
            Err(_) => jobs.into_iter().for_each(|job| self.commit(vec![job])),
        }
    }

    fn transact(&mut self, jobs: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
        let mut ctx = WriteContext {
            origin: &self.origin,
            node_name: &self.node_name,
            now_ms: now_ms(),
            events_added: 0,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for job in jobs.iter_mut() {
            job.run(&tx, &mut ctx)?;
        }
        tx.commit()?;
        self.metrics.writes.inc();
        self.metrics
            .events
            .inc_by(i64::try_from(ctx.events_added).unwrap_or(i64::MAX));
        Ok(())
    }

    fn housekeeping(
        &mut self,
        reply: Option<oneshot::Sender<Result<RetentionReport, StoreError>>>,
    ) {
        let outcome = retention::enforce(&self.conn, now_ms(), &self.config.retention)
            .and_then(|report| retention::checkpoint(&self.conn).map(|()| report));
        self.metrics.size_bytes.set(file_size(&self.path));
        let outcome = match outcome {
            Ok(report) => {
                self.metrics.retained(&report);
                Ok(report)
            }
            Err(error) => Err(self.failed(error.into())),
        };
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }

    /// Count and log a failed write, and name a full disk as such; the
    /// writer goes on, so writes succeed again once space is back.
    fn failed(&self, error: StoreError) -> StoreError {
        let disk_full = matches!(
            &error,
            StoreError::Sqlite(e) if e.sqlite_error_code() == Some(ErrorCode::DiskFull)
        );
        if disk_full {
            self.metrics.write_failed(WriteFailure::DiskFull);
            let error = StoreError::DiskFull {
                path: self.path.clone(),
            };
            tracing::error!(path = %self.path.display(), "{error}");
            error
        } else {
            self.metrics.write_failed(WriteFailure::Other);
            tracing::error!(path = %self.path.display(), %error, "history write failed");
            error
        }
    }
}
