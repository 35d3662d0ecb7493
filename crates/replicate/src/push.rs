//! Rows pushed by gossip into our database, in batches (one transaction
//! per burst).

use std::sync::Arc;

use std::collections::BTreeMap;

use tokio::sync::Notify;
use tokio::sync::broadcast::{self, error::RecvError};

use starling_history::{Event, Store};

use super::metrics::ReplicationMetrics;
use super::wire;

/// Rows stored in one transaction at most; a burst beyond waits a turn.
const BATCH: usize = 512;

/// `gaps` is told when a stored row lies past one that never arrived, so
/// the pull loop fetches the missing one now rather than at its idle pace.
pub(crate) async fn run(
    store: Store,
    mut pushed: broadcast::Receiver<Arc<[u8]>>,
    metrics: ReplicationMetrics,
    gaps: Arc<Notify>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let first = tokio::select! {
            () = &mut shutdown => return,
            received = pushed.recv() => received,
        };
        let mut payloads = Vec::new();
        match first {
            Ok(payload) => payloads.push(payload),
            Err(RecvError::Lagged(missed)) => {
                // Gossip outran the database: those rows come by pull.
                metrics.push_lost("lagged", missed);
                gaps.notify_one();
                tracing::warn!(
                    missed,
                    "pushed history rows dropped; anti-entropy will fetch them"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        }
        while payloads.len() < BATCH {
            match pushed.try_recv() {
                Ok(payload) => payloads.push(payload),
                Err(_) => break,
            }
        }
        let mut events = Vec::with_capacity(payloads.len());
        for payload in &payloads {
            match wire::decode_pushed(payload) {
                Ok(wire::Pushed::Row(event)) => events.push(event),
                Ok(wire::Pushed::Held(result)) => store.hold_result(result),
                Err(error) => {
                    // It opened under the cluster key, so a member sent it:
                    // a version mismatch, not an attack. Pull still works.
                    metrics.push_lost("undecodable", 1);
                    tracing::debug!(%error, "pushed history row ignored");
                }
            }
        }
        let newest = newest_per_origin(&events);
        match store.insert_replicated(events).await {
            Ok(stored) => {
                metrics.received("push", stored);
                if store.past_a_gap(newest).await.unwrap_or(true) {
                    gaps.notify_one();
                }
            }
            Err(error) => {
                metrics.push_lost("store", payloads.len() as u64);
                gaps.notify_one();
                tracing::warn!(%error, "pushed history rows not stored; anti-entropy will retry");
            }
        }
    }
}

/// The highest seq of each origin in a burst: if any is past a gap after
/// storing, something before it was lost.
fn newest_per_origin(events: &[Event]) -> Vec<(String, u64)> {
    let mut newest: BTreeMap<&str, u64> = BTreeMap::new();
    for event in events {
        let seq = newest.entry(&event.origin).or_default();
        *seq = (*seq).max(event.seq);
    }
    newest
        .into_iter()
        .map(|(origin, seq)| (origin.to_owned(), seq))
        .collect()
}
