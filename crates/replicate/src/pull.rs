//! Anti-entropy: every few seconds, pull what we miss from one random
//! alive peer. Push is fast but lossy; this is what makes every node end
//! up with every row, after loss, partitions and restarts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use tokio::sync::watch;

use starling_gossip::{GossipHandle, MemberState};
use starling_history::Store;
use starling_model::Service;
use starling_seal::{Keyring, Purpose};

use super::metrics::ReplicationMetrics;
use super::serve::SYNC_BATCH_ROWS;
use super::wire::{self, SyncReply, SyncRequest, WireError};

/// Between two pulls (±25% jitter, so agents started together do not
/// pull in lockstep).
pub const DEFAULT_PULL_INTERVAL: Duration = Duration::from_secs(2);
/// Batches one pull may fetch before yielding the peer to the next round
/// (200 × 5000 rows = a million rows).
const MAX_BATCHES_PER_PULL: usize = 200;
/// One HTTP exchange; a batch is about a megabyte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{peer}: {cause}")]
    Unreachable { peer: SocketAddr, cause: String },
    #[error("{peer} refused the sync ({status}): {body}")]
    Refused {
        peer: SocketAddr,
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("{peer} answered something we cannot accept: {source}")]
    BadReply {
        peer: SocketAddr,
        #[source]
        source: WireError,
    },
    #[error("local history: {0}")]
    Store(#[from] starling_history::StoreError),
}

/// What one pull brought.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pulled {
    pub rows: usize,
    pub batches: usize,
}

/// An HTTP client for pulls, with the bounds above.
pub fn client() -> reqwest::Client {
    starling_checks::http_client()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .expect("a plain-HTTP client with a preconfigured TLS backend always builds")
}

/// Pull from `peer` until it has nothing more for us (or the batch cap).
pub async fn pull_from(
    client: &reqwest::Client,
    peer: SocketAddr,
    store: &Store,
    keyring: &Keyring,
) -> Result<Pulled, PullError> {
    let mut pulled = Pulled::default();
    let url = format!("http://{peer}/v1/sync");
    let unreachable = |error: reqwest::Error| PullError::Unreachable {
        peer,
        cause: innermost(&error),
    };
    while pulled.batches < MAX_BATCHES_PER_PULL {
        let request = SyncRequest {
            vector: store.version_vector().await?,
            max_rows: SYNC_BATCH_ROWS,
        };
        let body = starling_seal::seal_json(keyring, Purpose::SyncRequest, &request);
        let response = client
            .post(&url)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(PullError::Refused { peer, status, body });
        }
        let sealed = response.bytes().await.map_err(unreachable)?.to_vec();
        let reply =
            read_reply(keyring, sealed).map_err(|source| PullError::BadReply { peer, source })?;
        let more = reply.batch.more;
        pulled.rows += store.apply_batch(reply.batch).await?;
        pulled.batches += 1;
        if !more {
            break;
        }
    }
    Ok(pulled)
}

/// A sync answer opened and checked, before any of it is stored.
pub(crate) fn read_reply(keyring: &Keyring, sealed: Vec<u8>) -> Result<SyncReply, WireError> {
    let reply: SyncReply = wire::open_json(keyring, Purpose::SyncReply, sealed)?;
    wire::check_origins(
        reply
            .batch
            .events
            .iter()
            .map(|e| &e.origin)
            .chain(reply.batch.through.keys()),
    )?;
    Ok(reply)
}

/// The pull loop: one random alive peer per round, until `shutdown`.
pub(crate) async fn run(
    store: Store,
    gossip: GossipHandle,
    keyring: Arc<Keyring>,
    metrics: ReplicationMetrics,
    interval: Duration,
    caught_up: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let client = client();
    tokio::pin!(shutdown);
    loop {
        let pause = interval.mul_f64(rand::rng().random_range(0.75..1.25));
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(pause) => {}
        }
        let Some(peer) = pick_peer(&gossip) else {
            continue;
        };
        tokio::select! {
            () = &mut shutdown => return,
            result = pull_from(&client, peer, &store, &keyring) => match result {
                Ok(pulled) => {
                    caught_up.send_if_modified(|done| !std::mem::replace(done, true));
                    metrics.pulled("ok");
                    metrics.received("pull", pulled.rows);
                    if pulled.rows > 0 {
                        tracing::debug!(%peer, rows = pulled.rows, batches = pulled.batches, "pulled history");
                    }
                }
                Err(error) => {
                    metrics.pulled("error");
                    tracing::debug!(%error, "history pull failed");
                }
            },
        }
    }
}

/// A random member gossip believes alive, by its API address.
fn pick_peer(gossip: &GossipHandle) -> Option<SocketAddr> {
    let view = Arc::clone(&gossip.view.borrow());
    let peers: Vec<SocketAddr> = view
        .members
        .iter()
        .filter(|m| m.state == MemberState::Alive)
        .filter_map(|m| m.id.meta.service(Service::Api))
        .collect();
    if peers.is_empty() {
        return None;
    }
    Some(peers[rand::rng().random_range(0..peers.len())])
}

fn innermost(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("no answer within {REQUEST_TIMEOUT:?}");
    }
    starling_checks::innermost_cause(error)
}
