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
    while let Some(result) = results.recv().await {
        metrics.observe(&result);
        let status = result.status;
        if let Err(error) = store.record_result(history_row(&me, &result)).await {
            tracing::error!(%error, check = %result.check, "check result not stored");
        }
        let previous = last.insert(result.check.clone(), status);
        record_transition(&publisher, &me, &result, previous, status).await;
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

/// Put a change of a check's status into the cluster's event log, where it
/// replicates. The first result is recorded too: it is how every other
/// node learns the check exists here, and what it says.
pub(crate) async fn record_transition(
    publisher: &Publisher,
    me: &str,
    result: &starling_checks::CheckResult,
    previous: Option<Status>,
    status: Status,
) {
    if previous == Some(status) {
        return;
    }
    let event = NewEvent {
        at_unix_ms: result.at_unix_ms,
        kind: EventKind::Check,
        node: me.to_owned(),
        check: Some(result.check.clone()),
        old_state: previous.map(|s| s.as_str().to_owned()),
        new_state: Some(status.as_str().to_owned()),
        message: result.message.clone(),
        dedupe_key: None,
    };
    if let Err(error) = publisher.record(event).await {
        tracing::error!(%error, check = %result.check, "check transition not recorded");
    }
}
