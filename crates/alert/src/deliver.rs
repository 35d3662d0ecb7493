//! One worker per sink: hands the outbox's due rows to the sink, marks
//! deliveries in the history, and backs off with jitter while the sink
//! fails. A row leaves the outbox only once delivered or refused for good.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use starling_replicate::Publisher;

use super::ledger::{self, Step};
use super::metrics::AlertMetrics;
use super::outbox::{Outbox, Row};
use super::sinks::{self, Sink};

/// Look at the outbox at least this often even without a wake-up: rows
/// queued by a previous run, or whose backoff ended.
const IDLE_POLL: Duration = Duration::from_secs(30);

/// Exponential backoff between attempts at one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The wait after the `attempts`-th failure: doubling from `initial`
    /// up to `max`, then a random point in its upper half, so the nodes'
    /// retries at a recovering receiver do not arrive in step.
    pub fn delay(&self, attempts: u32, unit_random: f64) -> Duration {
        let doubled = self
            .initial
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
        let ceiling = doubled.min(self.max);
        ceiling.mul_f64(0.5 + 0.5 * unit_random.clamp(0.0, 1.0))
    }
}

/// What a worker needs besides its sink.
#[derive(Clone, Debug)]
pub struct Deliverer {
    pub outbox: Outbox,
    pub publisher: Publisher,
    pub metrics: AlertMetrics,
    pub backoff: Backoff,
}

/// Deliver `sink`'s rows until `shutdown`; `wake` says new rows arrived.
/// Nothing is sent before `released`: the evaluator first drops the rows
/// a previous run left that another node has taken over meanwhile.
pub async fn run(
    deliverer: Deliverer,
    sink: Arc<Sink>,
    wake: Arc<Notify>,
    mut released: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    tokio::select! {
        () = &mut shutdown => return,
        result = released.wait_for(|released| *released) => {
            if result.is_err() {
                return;
            }
        }
    }
    loop {
        let now = starling_model::unix_ms_now();
        match deliverer.outbox.due(sink.name.clone(), now).await {
            Ok(rows) => {
                for row in rows {
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = attempt(&deliverer, &sink, row) => {}
                    }
                }
            }
            Err(error) => {
                tracing::error!(sink = %sink.name, %error, "cannot read the alert outbox")
            }
        }
        let next = match deliverer.outbox.next_due(sink.name.clone()).await {
            Ok(next) => next,
            Err(error) => {
                tracing::error!(sink = %sink.name, %error, "cannot read the alert outbox");
                None
            }
        };
        let wait = next.map_or(IDLE_POLL, |at| {
            Duration::from_millis(at.saturating_sub(starling_model::unix_ms_now())).min(IDLE_POLL)
        });
        tokio::select! {
            () = &mut shutdown => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

async fn attempt(deliverer: &Deliverer, sink: &Sink, row: Row) {
    let Deliverer {
        outbox,
        publisher,
        metrics,
        backoff,
    } = deliverer;
    let notice = &row.notice;
    let outcome = sinks::deliver(sink, notice).await;
    let now = starling_model::unix_ms_now();
    let error = match outcome {
        Ok(()) => {
            metrics.delivery(&sink.name, "delivered");
            tracing::info!(sink = %sink.name, id = %notice.id(), state = notice.state.as_str(),
                transition = row.transition, "alert delivered");
            if row.transition {
                let mark = ledger::mark_event(Step::Delivered, notice, Some(&sink.name), now);
                if let Err(error) = publisher.record(mark).await {
                    tracing::error!(%error, "alert delivered but its mark not recorded");
                }
            }
            if let Err(error) = outbox.remove(row.id).await {
                tracing::error!(%error, "alert delivered but not removed from the outbox: it will be sent again");
            }
            return;
        }
        Err(error) => error,
    };
    let attempts = row.attempts + 1;
    let text = error.to_string();
    if !error.retryable() {
        metrics.delivery(&sink.name, "rejected");
        tracing::error!(sink = %sink.name, id = %notice.id(), error = %text,
            "the sink refused the alert; dropped, since sending it again cannot help");
        note_failure(
            publisher,
            row.transition,
            notice,
            &sink.name,
            attempts,
            &format!("{text} (dropped)"),
            now,
        )
        .await;
        if let Err(error) = outbox.remove(row.id).await {
            tracing::error!(%error, "cannot remove a refused alert from the outbox");
        }
        return;
    }
    metrics.delivery(&sink.name, "failed");
    let delay = backoff.delay(attempts, rand::random::<f64>());
    tracing::warn!(sink = %sink.name, id = %notice.id(), attempts, retry_in = ?delay, error = %text,
        "alert delivery failed");
    // Attempts 1, 2, 4, 8…: the history shows an outage without a row per retry.
    if attempts.is_power_of_two() {
        note_failure(
            publisher,
            row.transition,
            notice,
            &sink.name,
            attempts,
            &text,
            now,
        )
        .await;
    }
    let next = now + delay.as_millis() as u64;
    if let Err(error) = outbox.retry_later(row.id, attempts, next, text).await {
        tracing::error!(%error, "cannot reschedule an alert in the outbox");
    }
}

async fn note_failure(
    publisher: &Publisher,
    transition: bool,
    notice: &super::model::Notice,
    sink: &str,
    attempts: u32,
    error: &str,
    now: u64,
) {
    // Refreshes repeat what was delivered; their failures are metrics only.
    if !transition {
        return;
    }
    let event = ledger::failure_event(notice, sink, attempts, error, now);
    if let Err(error) = publisher.record(event).await {
        tracing::error!(%error, "alert delivery failure not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_in_the_upper_half() {
        let backoff = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        assert_eq!(backoff.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff.delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff.delay(4, 1.0), Duration::from_secs(8));
        assert_eq!(backoff.delay(30, 1.0), Duration::from_secs(60));
        assert_eq!(backoff.delay(30, 0.0), Duration::from_secs(30));
    }
}
