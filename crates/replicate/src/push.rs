//! Rows pushed by gossip into our database, in batches (one transaction
//! per burst).

use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use starling_history::Store;

use super::metrics::ReplicationMetrics;
use super::wire;

/// Rows stored in one transaction at most; a burst beyond waits a turn.
const BATCH: usize = 512;

pub(crate) async fn run(
    store: Store,
    mut pushed: broadcast::Receiver<Arc<[u8]>>,
    metrics: ReplicationMetrics,
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
        match store.insert_replicated(events).await {
            Ok(stored) => metrics.received("push", stored),
            Err(error) => {
                metrics.push_lost("store", payloads.len() as u64);
                tracing::warn!(%error, "pushed history rows not stored; anti-entropy will retry");
            }
        }
    }
}
