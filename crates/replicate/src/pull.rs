//! Anti-entropy: every few seconds, pull what we miss from one random
//! alive peer. Push is fast but lossy; this is what makes every node end
//! up with every row, after loss, partitions and restarts.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use tokio::sync::{Notify, broadcast, watch};

use starling_gossip::{GossipHandle, MemberState, Role, Transition};
use starling_history::Store;
use starling_history::digest::{Slices, VectorDigest, buckets_for};
use starling_model::Service;
use starling_seal::{Keyring, Purpose};

use super::Scope;
use super::cadence::{Cadence, Outcome};
use super::metrics::ReplicationMetrics;
use super::serve::SYNC_BATCH_ROWS;
use super::wire::{self, Comparison, Fingerprint, SyncReply, SyncRequest, WireError};
use starling_checks::{PostError, post_sealed};

/// Between two pulls while they find something to fetch (±25% jitter).
pub const DEFAULT_PULL_INTERVAL: Duration = Duration::from_secs(2);
/// The longest pause between pulls while every pull finds the peer in
/// sync: a quiet cluster's anti-entropy costs one small exchange per node
/// per this, yet a row push lost without a later row to reveal the gap is
/// fetched within it.
pub const DEFAULT_PULL_IDLE_INTERVAL: Duration = Duration::from_secs(30);
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
    /// The peer's vector was ours: one fingerprint exchanged, nothing else.
    pub in_sync: bool,
}

/// An HTTP client for pulls, with the bounds above.
pub fn client() -> reqwest::Client {
    starling_checks::agent_client()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .expect("a plain-HTTP client with a preconfigured TLS backend always builds")
}

/// Pull from `peer` until it has nothing more for us (or the batch cap).
///
/// First our vector's fingerprint: when the peer's is the same, that is
/// the whole exchange. Otherwise only the origins of the slices whose
/// fingerprints differ are compared, batch by batch. A peer of a release
/// before fingerprints refuses the first step, and gets our whole vector.
pub async fn pull_from(
    client: &reqwest::Client,
    peer: SocketAddr,
    store: &Store,
    keyring: &Keyring,
) -> Result<Pulled, PullError> {
    let exchange = Exchange {
        client,
        peer,
        keyring,
    };
    let ours = store.version_vector().await?;
    let fingerprint = Fingerprint {
        whole: VectorDigest::whole(&ours),
        buckets: buckets_for(ours.len()),
    };
    let only = match exchange.send(&SyncRequest::fingerprint(fingerprint)).await {
        Ok(reply) => match reply.comparison {
            Some(Comparison::Same) => {
                return Ok(Pulled {
                    in_sync: true,
                    ..Pulled::default()
                });
            }
            Some(Comparison::Differs(theirs)) => {
                let differing = VectorDigest::sliced(&ours, theirs.buckets).differing(&theirs);
                Some(Slices::new(theirs.buckets, differing))
            }
            None => {
                return Err(PullError::BadReply {
                    peer,
                    source: WireError::Invalid("rows in answer to a fingerprint".into()),
                });
            }
        },
        Err(PullError::Refused { status, body, .. })
            if status == reqwest::StatusCode::BAD_REQUEST
                && body.contains("unknown field `fingerprint`") =>
        {
            None
        }
        Err(error) => return Err(error),
    };
    let mut pulled = Pulled::default();
    // The vector read for the fingerprint serves the first batch; later
    // batches read it again, after what the previous one applied.
    let mut vector = ours;
    loop {
        let request = match &only {
            Some(only) => SyncRequest::within(only.clone(), only.restrict(&vector)),
            None => SyncRequest::everything(std::mem::take(&mut vector), SYNC_BATCH_ROWS),
        };
        let reply = exchange.send(&request).await?;
        let more = reply.batch.more;
        pulled.rows += store.apply_batch(reply.batch).await?;
        pulled.batches += 1;
        if !more || pulled.batches >= MAX_BATCHES_PER_PULL {
            return Ok(pulled);
        }
        vector = store.version_vector().await?;
    }
}

/// One peer's `/v1/sync`, sealed both ways.
struct Exchange<'a> {
    client: &'a reqwest::Client,
    peer: SocketAddr,
    keyring: &'a Keyring,
}

impl Exchange<'_> {
    async fn send(&self, request: &SyncRequest) -> Result<SyncReply, PullError> {
        let peer = self.peer;
        let body = starling_seal::seal_json(self.keyring, Purpose::SyncRequest, request);
        let url = format!("http://{peer}/v1/sync");
        let sealed = post_sealed(self.client, url, body, REQUEST_TIMEOUT)
            .await
            .map_err(|error| match error {
                PostError::Unreachable(cause) => PullError::Unreachable { peer, cause },
                PostError::Refused { status, body } => PullError::Refused { peer, status, body },
            })?;
        read_reply(self.keyring, sealed).map_err(|source| PullError::BadReply { peer, source })
    }
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

/// The pull loop: one alive peer per round, until `shutdown`, at the
/// pace [`Cadence`] sets: the base interval while pulls find something to
/// do or after news, slowing to the idle interval while they find peers in
/// sync.
pub(crate) async fn run(puller: Puller, shutdown: impl std::future::Future<Output = ()>) {
    let Puller {
        store,
        gossip,
        keyring,
        metrics,
        pace,
        caught_up,
        gaps,
        scope,
    } = puller;
    let client = client();
    let mut members = gossip.subscribe();
    let mut cadence = Cadence::new(pace.interval, pace.idle_interval);
    let mut next_prune = tokio::time::Instant::now() + PRUNE_EVERY;
    tokio::pin!(shutdown);
    loop {
        if tokio::time::Instant::now() >= next_prune {
            next_prune += PRUNE_EVERY;
            prune(&store, &gossip).await;
        }
        let wake = tokio::time::sleep(jittered(cadence.pause()));
        tokio::pin!(wake);
        loop {
            let news = tokio::select! {
                () = &mut shutdown => return,
                () = &mut wake => break,
                () = gaps.notified() => true,
                event = members.recv() => match event {
                    Ok(event) => matches!(
                        event.transition,
                        Transition::Joined | Transition::Rejoined | Transition::Recovered
                    ),
                    Err(broadcast::error::RecvError::Lagged(_)) => true,
                    Err(broadcast::error::RecvError::Closed) => false,
                },
            };
            if news && cadence.news() {
                let sooner = tokio::time::Instant::now() + jittered(cadence.pause());
                if sooner < wake.deadline() {
                    wake.as_mut().reset(sooner);
                }
            }
        }
        let scope = *scope.borrow();
        if scope == Scope::OwnLog {
            // Nothing to catch up on by pull: the aggregators hold the
            // cluster's log, and this node's own is all it keeps.
            caught_up.send_if_modified(|done| !std::mem::replace(done, true));
            continue;
        }
        let candidates = alive_peers(&gossip, scope);
        let Some(peer) = cadence.pick(&candidates, |len| rand::rng().random_range(0..len)) else {
            continue;
        };
        tokio::select! {
            () = &mut shutdown => return,
            result = pull_from(&client, peer, &store, &keyring) => match result {
                Ok(pulled) => {
                    caught_up.send_if_modified(|done| !std::mem::replace(done, true));
                    metrics.pulled(if pulled.in_sync { "in_sync" } else { "ok" });
                    metrics.received("pull", pulled.rows);
                    // A peer behind us differs too, yet brings nothing:
                    // only rows that came are news.
                    let outcome = if pulled.rows > 0 { Outcome::Fetched } else { Outcome::NothingNew };
                    cadence.after(peer, outcome);
                    if pulled.rows > 0 {
                        tracing::debug!(%peer, rows = pulled.rows, batches = pulled.batches, "pulled history");
                    }
                }
                Err(error) => {
                    metrics.pulled("error");
                    cadence.after(peer, Outcome::Failed);
                    tracing::debug!(%error, "history pull failed");
                }
            },
        }
    }
}

/// How often origins of departed nodes whose rows retention has deleted
/// are forgotten: retention deletes by day, so this can be lazy.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Forget the origins of nodes gossip no longer counts as members, and
/// the latest results of nodes it has forgotten altogether (see
/// `starling_history::db::prune_origins` and `prune_latest`).
async fn prune(store: &Store, gossip: &GossipHandle) {
    let (live, known): (HashSet<String>, HashSet<String>) = {
        let view = gossip.view.borrow();
        let me = std::iter::once(view.me.name.clone());
        let live = view
            .members
            .iter()
            .filter(|m| m.state.is_active())
            .map(|m| m.id.name.clone())
            .chain(me.clone())
            .collect();
        let known = view.members.iter().map(|m| m.id.name.clone()).chain(me);
        (live, known.collect())
    };
    match store.prune_origins(live).await {
        Ok(0) => {}
        Ok(pruned) => tracing::info!(pruned, "forgot the history origins of departed nodes"),
        Err(error) => tracing::warn!(%error, "pruning history origins failed"),
    }
    match store.prune_latest(known).await {
        Ok(0) => {}
        Ok(pruned) => tracing::info!(pruned, "forgot the latest results of departed nodes"),
        Err(error) => tracing::warn!(%error, "pruning latest results failed"),
    }
}

/// What the pull loop works with.
pub(crate) struct Puller {
    pub store: Store,
    pub gossip: GossipHandle,
    pub keyring: Arc<Keyring>,
    pub metrics: ReplicationMetrics,
    pub pace: Pace,
    /// Set after the first successful pull.
    pub caught_up: watch::Sender<bool>,
    /// Told by the push task when a row arrived past a gap.
    pub gaps: Arc<Notify>,
    /// Whom to pull from: anyone, the other aggregators, or no one.
    pub scope: watch::Receiver<Scope>,
}

/// How often the pull loop runs; see [`run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pace {
    pub interval: Duration,
    pub idle_interval: Duration,
}

/// ±25%, so agents started together do not pull in lockstep.
fn jittered(pause: Duration) -> Duration {
    pause.mul_f64(rand::rng().random_range(0.75..1.25))
}

/// The members gossip believes alive that `scope` pulls from, by their
/// API addresses.
fn alive_peers(gossip: &GossipHandle, scope: Scope) -> Vec<SocketAddr> {
    let view = Arc::clone(&gossip.view.borrow());
    view.members
        .iter()
        .filter(|m| m.state == MemberState::Alive)
        .filter(|m| scope == Scope::Everyone || m.id.meta.role == Role::Aggregator)
        .filter_map(|m| m.id.meta.service(Service::Api))
        .collect()
}
