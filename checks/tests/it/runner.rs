//! The runner with real tasks and real time (short intervals): isolation
//! of panics and hangs, timeouts, the failure threshold, the concurrency
//! cap, and placement.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use starling_checks::{
    BoxFuture, CheckResult, Checker, Everywhere, Outcome, Placement, Runner, Schedule, Scope,
    Status,
};
use tokio::sync::mpsc;

/// A check whose behaviour is a closure over its run number.
struct Scripted {
    name: &'static str,
    scope: Scope,
    runs: AtomicUsize,
    behave: Box<dyn Fn(usize) -> BoxFuture<'static, Outcome> + Send + Sync>,
}

impl Checker for Scripted {
    fn name(&self) -> &str {
        self.name
    }

    fn scope(&self) -> Scope {
        self.scope
    }

    fn check(&self) -> BoxFuture<'_, Outcome> {
        let run = self.runs.fetch_add(1, Ordering::SeqCst);
        (self.behave)(run)
    }
}

fn scripted(
    name: &'static str,
    behave: impl Fn(usize) -> BoxFuture<'static, Outcome> + Send + Sync + 'static,
) -> Scripted {
    Scripted {
        name,
        scope: Scope::EveryNode,
        runs: AtomicUsize::new(0),
        behave: Box::new(behave),
    }
}

fn fast(failures_before_critical: u32) -> Schedule {
    Schedule {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(300),
        failures_before_critical,
    }
}

/// Runs `runner` for `for_how_long` and returns every result, by check.
async fn collect(
    runner: Runner,
    placement: Arc<dyn Placement>,
    for_how_long: Duration,
) -> Vec<CheckResult> {
    let (sender, mut receiver) = mpsc::channel(1024);
    let task = tokio::spawn(runner.run(placement, sender, tokio::time::sleep(for_how_long)));
    let mut results = Vec::new();
    while let Some(result) = receiver.recv().await {
        results.push(result);
    }
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the runner stops after its shutdown")
        .expect("the runner does not panic");
    results
}

fn of<'a>(results: &'a [CheckResult], name: &str) -> Vec<&'a CheckResult> {
    results.iter().filter(|r| r.check == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn panics_hangs_and_blocked_threads_do_not_stop_other_checks() {
    let mut runner = Runner::new(8);
    runner
        .add(
            scripted("fine", |_| Box::pin(async { Outcome::ok("fine") })),
            fast(1),
        )
        .add(
            // `resume_unwind` unwinds like `panic!` but skips the panic hook:
            // with RUST_BACKTRACE set (as in CI) the default hook resolves a
            // backtrace, which on a loaded machine takes longer than the
            // check's timeout and would turn this into a timeout test.
            scripted("panics", |_| {
                Box::pin(async { std::panic::resume_unwind(Box::new("boom")) })
            }),
            fast(1),
        )
        .add(
            scripted("hangs", |_| Box::pin(std::future::pending())),
            fast(1),
        )
        .add(
            scripted("blocks its thread", |_| {
                Box::pin(async {
                    // Ignores its timeout: no await point for 2 s.
                    std::thread::sleep(Duration::from_secs(2));
                    Outcome::ok("too late")
                })
            }),
            fast(1),
        );
    let results = collect(runner, Arc::new(Everywhere), Duration::from_secs(3)).await;

    let fine = of(&results, "fine");
    assert!(
        fine.len() >= 15,
        "the healthy check kept its pace: {}",
        fine.len()
    );
    assert!(fine.iter().all(|r| r.status == Status::Ok));

    let panics = of(&results, "panics");
    assert!(panics.len() >= 10);
    assert!(
        panics
            .iter()
            .all(|r| r.status == Status::Unknown && r.message == "the check panicked: boom")
    );

    for name in ["hangs", "blocks its thread"] {
        let timed_out = of(&results, name);
        assert!(!timed_out.is_empty(), "{name} reported");
        for result in timed_out {
            assert_eq!(result.status, Status::Critical, "{name}: {result:?}");
            assert!(
                result.message == "no answer within 300ms"
                    || result
                        .message
                        .contains("still going past its 300ms timeout"),
                "{name}: {result:?}"
            );
            assert!(
                result.duration_ms < 1000,
                "{name} bounded by its timeout: {result:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consecutive_failure_threshold_holds_and_one_pass_recovers() {
    let mut runner = Runner::new(1);
    // fail, fail, fail, fail, pass, fail, pass, ...
    runner.add(
        scripted("flaky", |run| {
            Box::pin(async move {
                if run < 4 || run == 5 {
                    Outcome::critical("down")
                } else {
                    Outcome::ok("up")
                }
            })
        }),
        fast(3),
    );
    let results = collect(runner, Arc::new(Everywhere), Duration::from_millis(1500)).await;
    let seen: Vec<(Status, u32)> = results
        .iter()
        .take(7)
        .map(|r| (r.status, r.consecutive_failures))
        .collect();
    assert_eq!(
        seen,
        [
            (Status::Warning, 1),
            (Status::Warning, 2),
            (Status::Critical, 3),
            (Status::Critical, 4),
            (Status::Ok, 0),
            (Status::Warning, 1),
            (Status::Ok, 0),
        ]
    );
    assert!(
        results[0]
            .message
            .contains("failed 1 of 3 times in a row before critical: down")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_most_max_concurrent_runs_at_once() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut runner = Runner::new(2);
    for name in ["a", "b", "c", "d"] {
        let (in_flight, most) = (Arc::clone(&in_flight), Arc::clone(&most));
        runner.add(
            scripted(name, move |_| {
                let (in_flight, most) = (Arc::clone(&in_flight), Arc::clone(&most));
                Box::pin(async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    Outcome::ok("done")
                })
            }),
            fast(1),
        );
    }
    let results = collect(runner, Arc::new(Everywhere), Duration::from_secs(1)).await;
    assert!(results.len() >= 8);
    assert_eq!(most.load(Ordering::SeqCst), 2);
}

/// Ownership that the test flips.
struct Switch(AtomicBool);

impl Placement for Switch {
    fn runs_here(&self, _check: &str, scope: Scope) -> bool {
        scope != Scope::Cluster || self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_check_runs_only_while_owned_and_at_once_when_it_becomes_owned() {
    let switch = Arc::new(Switch(AtomicBool::new(false)));
    let mut runner = Runner::new(2);
    let mut singleton = scripted("singleton", |_| Box::pin(async { Outcome::ok("ran") }));
    singleton.scope = Scope::Cluster;
    runner.add(
        singleton,
        Schedule {
            // Long: only ownership can make it run twice in this test.
            interval: Duration::from_secs(60),
            ..fast(1)
        },
    );
    let (sender, mut receiver) = mpsc::channel(16);
    let placement: Arc<dyn Placement> = switch.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runner.run(placement, sender, async {
        let _ = stopped.await;
    }));
    // Not the owner: nothing runs.
    assert!(
        tokio::time::timeout(Duration::from_secs(2), receiver.recv())
            .await
            .is_err()
    );
    switch.0.store(true, Ordering::SeqCst);
    let first = tokio::time::timeout(Duration::from_millis(1500), receiver.recv())
        .await
        .expect("became owner: runs within the placement poll")
        .expect("a result");
    assert_eq!(first.status, Status::Ok);
    // Losing and regaining ownership runs it again at once, interval or not.
    switch.0.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    switch.0.store(true, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_millis(1500), receiver.recv())
        .await
        .expect("regained ownership: runs again")
        .expect("a result");
    let _ = stop.send(());
    task.await.expect("runner stops");
}

/// Never the owner; counts how often it is asked.
struct Elsewhere(AtomicUsize);

impl Placement for Elsewhere {
    fn runs_here(&self, _check: &str, _scope: Scope) -> bool {
        self.0.fetch_add(1, Ordering::SeqCst);
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_placed_elsewhere_is_polled_once_per_placement_poll_not_spun() {
    let placement = Arc::new(Elsewhere(AtomicUsize::new(0)));
    let mut runner = Runner::new(2);
    // A short interval: its first due time passes at once, and must not
    // become a deadline in the past that the loop wakes for without end.
    runner.add(
        scripted("elsewhere", |_| Box::pin(async { Outcome::ok("ran") })),
        fast(1),
    );
    let results = collect(
        runner,
        Arc::clone(&placement) as Arc<dyn Placement>,
        Duration::from_millis(2500),
    )
    .await;
    assert!(results.is_empty(), "placed elsewhere, it never runs");
    let asked = placement.0.load(Ordering::SeqCst);
    // Once at the first due time, then once per PLACEMENT_POLL (1 s).
    assert!(
        (1..=4).contains(&asked),
        "asked {asked} times in 2.5 s: the loop spins"
    );
}
