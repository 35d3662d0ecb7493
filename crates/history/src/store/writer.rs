//! The writer thread: the only connection that writes, committing what is
//! queued as one transaction.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

use super::{StoreConfig, StoreError, file_size, now_ms};
use crate::metrics::{HistoryMetrics, WriteFailure};
use crate::retention::{self, KeepOwn, RetentionReport};

/// Ops committed together at most: bounds how long the first caller of a
/// burst waits for the others' rows to be written.
const MAX_GROUP: usize = 256;

/// What a write op sees besides its transaction.
#[derive(Debug)]
pub struct WriteContext<'a> {
    /// This file's origin, which local events are recorded under.
    pub origin: &'a str,
    /// This node's name, the observer of local events.
    pub node_name: &'a str,
    /// One clock reading per transaction, as `received_ms` for its rows.
    pub now_ms: u64,
    /// Event rows the op added, for the gauge once the commit succeeded.
    pub events_added: u64,
    /// For each row from another node that was new: how long after it
    /// happened it was stored here (observed once the commit succeeded).
    pub replication_lags_ms: Vec<u64>,
    /// When this store was opened: rows that happened before it are
    /// catch-up (this node could not have had them earlier), not lag.
    pub opened_ms: u64,
}

impl WriteContext<'_> {
    /// Notes a row from another node that was new here, for the
    /// replication-lag histogram, unless it happened before this store
    /// opened: a node that joins or returns pulls days of old rows, and
    /// counting them would make every autoscaled node "lag" by days.
    pub fn note_replicated(&mut self, event: &crate::Event) {
        if event.at_unix_ms >= self.opened_ms {
            self.replication_lags_ms
                .push(self.now_ms.saturating_sub(event.at_unix_ms));
        }
    }
}

/// A queued write: run in a group transaction, and again alone if the
/// group failed, so each caller gets its own op's outcome.
pub(super) trait Job: Send {
    fn run(&mut self, tx: &Transaction<'_>, ctx: &mut WriteContext<'_>) -> Result<(), StoreError>;
    /// Answer the caller: the op's value once `outcome` says it committed.
    fn answer(self: Box<Self>, outcome: Result<(), StoreError>);
}

pub(super) struct Op<T, F> {
    pub(super) apply: F,
    pub(super) value: Option<T>,
    pub(super) reply: oneshot::Sender<Result<T, StoreError>>,
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

pub(super) enum Message {
    Job(Box<dyn Job>),
    /// Retention and checkpoint; `Some` when a caller asked for them.
    Housekeeping(Option<oneshot::Sender<Result<RetentionReport, StoreError>>>),
}

pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) origin: String,
    pub(super) node_name: String,
    pub(super) path: PathBuf,
    pub(super) config: StoreConfig,
    pub(super) metrics: HistoryMetrics,
    /// See [`WriteContext::opened_ms`].
    pub(super) opened_ms: u64,
    /// See [`super::Store::keep_own`].
    pub(super) keep_own: Arc<Mutex<KeepOwn>>,
}

impl Writer {
    pub(super) fn run(mut self, receiver: mpsc::Receiver<Message>) {
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
            replication_lags_ms: Vec::new(),
            opened_ms: self.opened_ms,
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
        for lag_ms in ctx.replication_lags_ms {
            self.metrics.replication_lag.observe(lag_ms as f64 / 1000.0);
        }
        Ok(())
    }

    fn housekeeping(
        &mut self,
        reply: Option<oneshot::Sender<Result<RetentionReport, StoreError>>>,
    ) {
        let keep = *self
            .keep_own
            .lock()
            .expect("nothing panics while holding keep_own");
        let outcome = retention::enforce(
            &self.conn,
            now_ms(),
            &self.config.retention,
            &self.origin,
            keep,
        )
        .and_then(|report| retention::checkpoint(&self.conn).map(|()| report));
        self.metrics.size_bytes.set(file_size(&self.path));
        let outcome = match outcome {
            Ok(report) => {
                if report.own_kept_unacknowledged > 0 {
                    tracing::warn!(
                        events = report.own_kept_unacknowledged,
                        "own events past retention are kept: no aggregator has acknowledged them yet"
                    );
                }
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
