//! Check results into the history: every run into this node's raw table
//! and its latest row, and every change of status into the cluster's event
//! log, where it replicates to every node.

use std::collections::HashMap;

use tokio::sync::mpsc;

use super::StatusMetrics;
use starling_history::{CheckResult, EventKind, NewEvent, Status};
use starling_replicate::Publisher;

pub async fn record_results(
    publisher: Publisher,
    mut results: mpsc::Receiver<starling_checks::CheckResult>,
    metrics: StatusMetrics,
) {
    let store = publisher.store().clone();
    let me = store.node_name().to_owned();
    match store.last_passes().await {
        Ok(passes) => {
            for (check, at) in passes {
                metrics.seed_last_success(&check, Some(at));
            }
        }
        Err(error) => tracing::warn!(%error, "cannot read when checks last passed"),
    }
    // The last status per check survives restarts through the latest
    // table: a check that was critical before a restart and passes after
    // it is a recovery, and is recorded as one.
    let mut last: HashMap<String, Status> = match store.latest_results().await {
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
    let mut unrecorded = Unrecorded::default();
    while let Some(result) = results.recv().await {
        metrics.observe(&result);
        let status = result.status;
        let row = history_row(&me, &result);
        // Older transitions first, in order: the history catches up as soon
        // as a write succeeds again.
        unrecorded.flush(&publisher).await;
        let stored = match store.record_result(row.clone()).await {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(%error, check = %result.check, "check result not stored");
                store.hold_result(row.clone());
                false
            }
        };
        let previous = last.insert(result.check.clone(), status);
        if let Some(event) = transition(&me, &result, previous, status) {
            unrecorded.push(event);
            unrecorded.flush(&publisher).await;
        }
        // While this check's news cannot be written, the cluster hears it
        // from memory: its roll-up must not wait for this node's disk.
        if !stored && unrecorded.holds(&result.check) {
            publisher.spread_held(&row).await;
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
