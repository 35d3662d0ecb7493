//! Check results into the history: every run into this node's raw table
//! and its latest row, and every change of status into the cluster's event
//! log, where it replicates to every node.

use std::collections::{BTreeSet, HashMap};

use starling_model::unix_ms_now;
use tokio::sync::mpsc;

use super::StatusMetrics;
use crate::overlay::{CLOCK_CHECK, path_target};
use starling_history::{CheckResult, EventKind, NewEvent, Status};
use starling_replicate::Publisher;

/// Records every result the runner sends until it stops. `configured`
/// names the checks this node's configuration runs: a check of ours that
/// a previous run recorded and that is not among them was removed, and is
/// retired first (see [`removed_checks`]).
pub async fn record_results(
    publisher: Publisher,
    mut results: mpsc::Receiver<starling_checks::CheckResult>,
    metrics: StatusMetrics,
    configured: BTreeSet<String>,
) {
    let store = publisher.store().clone();
    match store.last_passes().await {
        Ok(passes) => {
            for (check, at) in passes {
                metrics.seed_last_success(&check, Some(at));
            }
        }
        Err(error) => tracing::warn!(%error, "cannot read when checks last passed"),
    }
    let mut recorder = ResultRecorder::new(publisher, metrics).await;
    for retired in removed_checks(&recorder.last, &configured, unix_ms_now()) {
        tracing::info!(check = %retired.check, "check no longer configured here: retired as unknown");
        recorder.record(retired).await;
    }
    while let Some(result) = results.recv().await {
        recorder.metrics.observe(&result);
        recorder.record(result).await;
    }
}

/// Says why a retired check is unknown, on every node that shows it.
pub(crate) const REMOVED_MESSAGE: &str = "no longer run on this node: not in its configuration";

/// This node's checks that a previous run recorded and this run's
/// configuration no longer has, as results that retire them: unknown, which
/// the roll-up does not count against the node.
///
/// Without this their last status stood for good: other nodes keep this
/// node's latest rows for as long as gossip knows the node, so a check
/// removed while critical kept the node degraded on every node. Left
/// alone: checks already unknown, the overlay's paths and clock verdict
/// (the overlay intake retires those itself), and cluster checks, whose
/// newest result speaks for the cluster: a retirement of ours would hide
/// the verdict of the node that runs the check now.
pub(crate) fn removed_checks(
    last: &HashMap<String, Status>,
    configured: &BTreeSet<String>,
    now_ms: u64,
) -> Vec<starling_checks::CheckResult> {
    let mut removed: Vec<starling_checks::CheckResult> = last
        .iter()
        .filter(|(check, status)| {
            **status != Status::Unknown
                && !configured.contains(check.as_str())
                && path_target(check).is_none()
                && check.as_str() != CLOCK_CHECK
                && !starling_checks::is_cluster_check(check)
        })
        .map(|(check, _)| starling_checks::CheckResult {
            check: check.clone(),
            status: Status::Unknown,
            message: REMOVED_MESSAGE.to_owned(),
            details: serde_json::Value::Null,
            duration_ms: 0,
            at_unix_ms: now_ms,
            consecutive_failures: 0,
        })
        .collect();
    removed.sort_by(|a, b| a.check.cmp(&b.check));
    removed
}

/// Turns results into this node's rows and the cluster's transitions.
struct ResultRecorder {
    publisher: Publisher,
    metrics: StatusMetrics,
    me: String,
    /// The last status per check. It survives restarts through the latest
    /// table: a check that was critical before a restart and passes after
    /// it is a recovery, and is recorded as one.
    last: HashMap<String, Status>,
    unrecorded: Unrecorded,
}

impl ResultRecorder {
    async fn new(publisher: Publisher, metrics: StatusMetrics) -> Self {
        let store = publisher.store();
        let me = store.node_name().to_owned();
        let last = match store.latest_results().await {
            Ok(latest) => latest
                .into_iter()
                .filter(|r| r.node == me)
                .map(|r| (r.check, r.status))
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot read the last check results; transitions start afresh");
                HashMap::new()
            }
        };
        ResultRecorder {
            publisher,
            metrics,
            me,
            last,
            unrecorded: Unrecorded::default(),
        }
    }

    /// Into the history; the metrics are the caller's: a retirement is
    /// not a run.
    async fn record(&mut self, result: starling_checks::CheckResult) {
        let store = self.publisher.store();
        let status = result.status;
        let row = history_row(&self.me, &result);
        // Older transitions first, in order: the history catches up as soon
        // as a write succeeds again.
        self.unrecorded.flush(&self.publisher).await;
        let stored = match store.record_result(row.clone()).await {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(%error, check = %result.check, "check result not stored");
                store.hold_result(row.clone());
                false
            }
        };
        let previous = self.last.insert(result.check.clone(), status);
        if let Some(event) = transition(&self.me, &result, previous, status) {
            self.unrecorded.push(event);
            self.unrecorded.flush(&self.publisher).await;
        }
        // While this check's news cannot be written, the cluster hears it
        // from memory: its roll-up must not wait for this node's disk.
        if !stored && self.unrecorded.holds(&result.check) {
            self.publisher.spread_held(&row).await;
        }
    }
}

/// Status changes not yet in the event log (the disk is full), oldest
/// first, retried before every new result. Bounded: past the bound the
/// oldest change is dropped with a log line, its check's later state is
/// still recorded.
#[derive(Debug, Default)]
struct Unrecorded {
    events: std::collections::VecDeque<NewEvent>,
}

/// Hours of a few checks flapping; a status change is a few hundred bytes.
const MAX_UNRECORDED: usize = 1_000;

impl Unrecorded {
    fn push(&mut self, event: NewEvent) {
        if self.events.len() >= MAX_UNRECORDED {
            let dropped = self.events.pop_front();
            tracing::error!(
                ?dropped,
                "history unwritable too long: oldest status change dropped"
            );
        }
        self.events.push_back(event);
    }

    async fn flush(&mut self, publisher: &Publisher) {
        while let Some(event) = self.events.front() {
            match publisher.record(event.clone()).await {
                Ok(_) => {
                    self.events.pop_front();
                }
                Err(error) => {
                    tracing::error!(%error, check = ?event.check, pending = self.events.len(),
                        "check transition not recorded yet; kept to retry");
                    return;
                }
            }
        }
    }

    fn holds(&self, check: &str) -> bool {
        self.events
            .iter()
            .any(|e| e.check.as_deref() == Some(check))
    }
}

/// A check run on this node (`me`) as the history keeps it.
pub(crate) fn history_row(me: &str, result: &starling_checks::CheckResult) -> CheckResult {
    CheckResult {
        node: me.to_owned(),
        check: result.check.clone(),
        status: result.status,
        message: result.message.clone(),
        details: result.details.clone(),
        duration_ms: result.duration_ms,
        at_unix_ms: result.at_unix_ms,
    }
}

/// A change of a check's status, for the cluster's event log, where it
/// replicates. The first result is one too: it is how every other node
/// learns the check exists here, and what it says.
pub(crate) fn transition(
    me: &str,
    result: &starling_checks::CheckResult,
    previous: Option<Status>,
    status: Status,
) -> Option<NewEvent> {
    if previous == Some(status) {
        return None;
    }
    Some(NewEvent {
        at_unix_ms: result.at_unix_ms,
        kind: EventKind::Check,
        node: me.to_owned(),
        check: Some(result.check.clone()),
        old_state: previous.map(|s| s.as_str().to_owned()),
        new_state: Some(status.as_str().to_owned()),
        message: result.message.clone(),
        dedupe_key: None,
    })
}

/// [`transition`], recorded at once or logged: for verdicts that are
/// judged again every report (the overlay's), where a lost change is
/// replaced by the next.
pub(crate) async fn record_transition(
    publisher: &Publisher,
    me: &str,
    result: &starling_checks::CheckResult,
    previous: Option<Status>,
    status: Status,
) {
    let Some(event) = transition(me, result, previous, status) else {
        return;
    };
    if let Err(error) = publisher.record(event).await {
        tracing::error!(%error, check = %result.check, "check transition not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::PATH_CHECK_PREFIX;

    /// A check removed from a node's configuration kept its last status in
    /// every node's roll-up: other nodes drop a node's latest rows only when
    /// gossip forgets the node, so a plugin removed while critical left the
    /// node degraded everywhere for as long as it lived.
    #[test]
    fn checks_gone_from_the_configuration_are_retired_and_nothing_else() {
        let last: HashMap<String, Status> = [
            ("conntrack", Status::Critical),
            ("dns", Status::Warning),
            ("disk", Status::Critical),
            ("gone-long-ago", Status::Unknown),
            (starling_checks::SCHEDULER, Status::Critical),
            (CLOCK_CHECK, Status::Critical),
        ]
        .into_iter()
        .map(|(check, status)| (check.to_owned(), status))
        .chain([(format!("{PATH_CHECK_PREFIX}node-b"), Status::Critical)])
        .collect();
        let configured: BTreeSet<String> = ["disk".to_owned()].into();

        let retired = removed_checks(&last, &configured, 1_000);

        let names: Vec<&str> = retired.iter().map(|r| r.check.as_str()).collect();
        assert_eq!(names, ["conntrack", "dns"]);
        for result in &retired {
            assert_eq!(result.status, Status::Unknown);
            assert_eq!(result.message, REMOVED_MESSAGE);
            assert_eq!(result.at_unix_ms, 1_000);
        }
    }
}
