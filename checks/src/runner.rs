//! The runner: every check on its own schedule, each run bounded by its
//! timeout and isolated on its own thread, at most `max_concurrent` at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use starling_model::unix_ms_now;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::checker::{Checker, Schedule, Scope};
use crate::result::{CheckResult, Outcome};
use crate::threshold::Threshold;

/// How often a check that does not run here asks again whether it should:
/// when a singleton's owner dies, the next owner starts within this.
pub const PLACEMENT_POLL: Duration = Duration::from_secs(1);
/// The first run of each check is spread over this much (or its interval,
/// if shorter), so an agent start does not fire every check at once.
const FIRST_RUN_SPREAD: Duration = Duration::from_secs(5);

/// Decides where checks run; the agent answers from its gossip view.
pub trait Placement: Send + Sync + 'static {
    /// Whether `check` of `scope` should run on this node now.
    fn runs_here(&self, check: &str, scope: Scope) -> bool;
}

/// Every check runs everywhere: for tests and single-node use.
#[derive(Debug, Clone, Copy, Default)]
pub struct Everywhere;

impl Placement for Everywhere {
    fn runs_here(&self, _check: &str, _scope: Scope) -> bool {
        true
    }
}

pub struct Runner {
    checks: Vec<(Arc<dyn Checker>, Schedule)>,
    /// Runs in flight at once across all checks: a burst of slow targets
    /// must not take every socket and thread the agent has.
    max_concurrent: usize,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.checks.iter().map(|(c, _)| c.name()).collect();
        f.debug_struct("Runner")
            .field("checks", &names)
            .field("max_concurrent", &self.max_concurrent)
            .finish()
    }
}

impl Runner {
    pub fn new(max_concurrent: usize) -> Self {
        Runner {
            checks: Vec::new(),
            max_concurrent: max_concurrent.max(1),
        }
    }

    pub fn add(&mut self, checker: impl Checker, schedule: Schedule) -> &mut Self {
        self.checks.push((Arc::new(checker), schedule));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// The names of the checks this runner was given, wherever they are
    /// placed: what this node's configuration asks for.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.checks.iter().map(|(checker, _)| checker.name())
    }

    /// Run every check until `shutdown`, sending each finished run to
    /// `results`. Returns when all check loops have stopped.
    pub async fn run(
        self,
        placement: Arc<dyn Placement>,
        results: mpsc::Sender<CheckResult>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let permits = Arc::new(Semaphore::new(self.max_concurrent));
        let stop = CancellationToken::new();
        let loops: Vec<_> = self
            .checks
            .into_iter()
            .map(|(checker, schedule)| {
                tokio::spawn(check_loop(
                    checker,
                    schedule,
                    Arc::clone(&placement),
                    Arc::clone(&permits),
                    results.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        shutdown.await;
        stop.cancel();
        for task in loops {
            // A loop only ends by the stop signal; a panic in it would be
            // ours, and is reported by the task's own log line.
            let _ = task.await;
        }
    }
}

async fn check_loop(
    checker: Arc<dyn Checker>,
    schedule: Schedule,
    placement: Arc<dyn Placement>,
    permits: Arc<Semaphore>,
    results: mpsc::Sender<CheckResult>,
    stopping: CancellationToken,
) {
    let mut threshold = Threshold::new(schedule.failures_before_critical);
    let spread = FIRST_RUN_SPREAD.min(schedule.interval);
    let mut next_due = Instant::now() + spread.mul_f64(rand::rng().random_range(0.0..1.0));
    let mut ran_here = false;
    // The last run, if it outlived its timeout: nothing can stop a thread
    // that never yields, so the check is not started again until that run
    // ends; a misbehaving check holds one thread at most.
    let mut stuck: Option<tokio::task::JoinHandle<Outcome>> = None;
    loop {
        let wake = next_due.min(Instant::now() + PLACEMENT_POLL);
        tokio::select! {
            () = stopping.cancelled() => return,
            () = tokio::time::sleep_until(wake) => {}
        }
        if !placement.runs_here(checker.name(), checker.scope()) {
            ran_here = false;
            // Ask again after a poll: a due time left in the past would
            // wake this loop without pause (a worker burning CPU on a
            // control-plane-only check).
            next_due = Instant::now() + PLACEMENT_POLL;
            continue;
        }
        // A node that just became the owner runs at once: the previous
        // owner may have died mid-interval.
        if ran_here && Instant::now() < next_due {
            continue;
        }
        ran_here = true;
        next_due = Instant::now()
            + schedule
                .interval
                .mul_f64(rand::rng().random_range(0.9..1.1));
        let Ok(_permit) = permits.acquire().await else {
            return;
        };
        let result = match stuck.take() {
            Some(previous) if !previous.is_finished() => {
                stuck = Some(previous);
                let raw = Outcome::critical(format!(
                    "the previous run is still going past its {:?} timeout (it does not yield); not started again",
                    schedule.timeout
                ));
                finish(checker.name(), raw, 0, unix_ms_now(), &mut threshold)
            }
            _ => {
                let (result, still_running) = run_once(&checker, schedule, &mut threshold).await;
                stuck = still_running;
                result
            }
        };
        if result.status != crate::Status::Ok {
            tracing::debug!(check = %result.check, status = %result.status, message = %result.message, "check result");
        }
        if results.send(result).await.is_err() {
            return;
        }
    }
}

/// One run, isolated: a panic becomes `unknown`, a hang past the timeout
/// becomes `critical`, and neither reaches the runner. Returns the task
/// too when it timed out, in case the abort could not stop it.
async fn run_once(
    checker: &Arc<dyn Checker>,
    schedule: Schedule,
    threshold: &mut Threshold,
) -> (CheckResult, Option<tokio::task::JoinHandle<Outcome>>) {
    let at_unix_ms = unix_ms_now();
    let started = Instant::now();
    let mut task = {
        let checker = Arc::clone(checker);
        tokio::task::spawn_blocking(move || isolated(&*checker, schedule.timeout))
    };
    let mut timed_out = false;
    let raw = match tokio::time::timeout(schedule.timeout + BLOCKED_GRACE, &mut task).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(error)) if error.is_panic() => {
            let payload = error.into_panic();
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            tracing::error!(check = checker.name(), panic = %text, "a check panicked");
            Outcome::unknown(format!("the check panicked: {text}"))
        }
        Ok(Err(_cancelled)) => Outcome::unknown("the check was cancelled"),
        Err(_elapsed) => {
            task.abort();
            timed_out = true;
            Outcome::critical(format!("no answer within {:?}", schedule.timeout))
        }
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    let result = finish(checker.name(), raw, duration_ms, at_unix_ms, threshold);
    (result, timed_out.then_some(task))
}

/// How much longer than its timeout a run may take before it is judged
/// blocked: the run's own runtime enforces the timeout itself unless the
/// check never yields.
const BLOCKED_GRACE: Duration = Duration::from_millis(100);

/// A run on its own thread with its own single-threaded runtime. A check
/// that blocks its thread (sync I/O, a busy loop) then blocks only that
/// thread: on a shared runtime it would also stall whatever tasks were
/// queued on the same worker, other checks and the agent's included.
fn isolated(checker: &dyn Checker, timeout: Duration) -> Outcome {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return Outcome::unknown(format!("cannot start a runtime for the check: {error}"));
        }
    };
    runtime.block_on(async {
        tokio::time::timeout(timeout, checker.check())
            .await
            .unwrap_or_else(|_| Outcome::critical(format!("no answer within {timeout:?}")))
    })
}

fn finish(
    check: &str,
    raw: Outcome,
    duration_ms: u64,
    at_unix_ms: u64,
    threshold: &mut Threshold,
) -> CheckResult {
    let (outcome, consecutive_failures) = threshold.apply(raw);
    CheckResult {
        check: check.to_owned(),
        status: outcome.status,
        message: outcome.message,
        details: outcome.details,
        duration_ms,
        at_unix_ms,
        consecutive_failures,
    }
}
