//! A node's own rows, streamed to the aggregators that hold them for it
//! until each has acknowledged them: an ordinary node's to its owners, an
//! aggregator's to the other aggregators.
//!
//! The node deletes nothing for this: an acknowledgement only moves where
//! the next stream to that aggregator starts, and what not every owner has
//! acknowledged is kept from retention (`KeepOwn`), so aggregators down
//! for longer than the retention cost disk, not events. An owner that dies
//! is replaced by the next one in rendezvous order, which learns where it
//! stands with an empty stream and gets the rest; an owner wiped and back
//! under the same name answers with a new epoch, and gets everything again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use starling_gossip::GossipHandle;
use starling_history::{KeepOwn, Store, SyncBatch};
use starling_replicate::Scope;
use starling_seal::Keyring;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::exchange::{self, ExchangeError};
use crate::metrics::AggregationMetrics;
use crate::owners::{Aggregator, alive_aggregators, owners};
use crate::serve::STREAM_BATCH_ROWS;
use crate::wire::{StreamReply, StreamRequest};

/// Batches one owner may take in a round: 200 × 5,000 rows, then the next
/// owner gets its turn.
const MAX_BATCHES_PER_ROUND: usize = 200;

/// Where one owner stands, as it last said.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Acked {
    epoch: String,
    through: u64,
    /// When it last answered: an owner is asked again after the idle
    /// interval even with nothing new, so a wipe is noticed.
    at: Instant,
}

pub(crate) struct Streamer {
    pub store: Store,
    pub gossip: GossipHandle,
    pub keyring: Arc<Keyring>,
    pub metrics: AggregationMetrics,
    pub scope: watch::Receiver<Scope>,
    pub replicas: usize,
    /// Between two looks at the log for rows to send.
    pub interval: Duration,
    /// The longest an owner goes unasked.
    pub idle_interval: Duration,
}

pub(crate) async fn run(streamer: Streamer, shutdown: impl std::future::Future<Output = ()>) {
    let client = exchange::client();
    let mut acked: HashMap<String, Acked> = HashMap::new();
    let mut ticker = tokio::time::interval(streamer.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        let stopping = tokio::select! {
            () = &mut shutdown => true,
            _ = ticker.tick() => false,
        };
        let scope = *streamer.scope.borrow();
        if scope != Scope::OwnLog {
            // Every peer, or every aggregator, pulls our rows: retention
            // applies.
            streamer.store.keep_own(KeepOwn::Nothing);
        }
        if scope != Scope::Everyone {
            // On the way out too: our leave was just recorded.
            let round = streamer.round(&client, scope, &mut acked);
            match tokio::time::timeout(LAST_ROUND, round).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "streaming own events to aggregators"),
                Err(_) => tracing::warn!("streaming own events to aggregators: no answer in time"),
            }
        }
        if stopping {
            return;
        }
    }
}

/// The seq through which every owner holds our log: 0 while one has not
/// answered yet, or when no aggregator is alive to own it.
fn acknowledged_by_all(owners: &[Aggregator], acked: &HashMap<String, Acked>) -> u64 {
    owners
        .iter()
        .map(|o| acked.get(&o.name).map_or(0, |a| a.through))
        .min()
        .unwrap_or(0)
}

/// How long a round may take; on shutdown, how long the last one may
/// hold the exit. What it does not send, the next start does.
const LAST_ROUND: Duration = Duration::from_secs(5);

impl Streamer {
    /// Send each owner what it lacks, or ask where it stands.
    ///
    /// An ordinary node's owners are its rendezvous-ranked aggregators. An
    /// aggregator streams its own log to every other aggregator: anti-
    /// entropy among them idles up to half a minute, and what an
    /// aggregator records (an alert sent, a member down) must reach the
    /// others within an alert's grace period, or they would act on it too.
    async fn round(
        &self,
        client: &reqwest::Client,
        scope: Scope,
        acked: &mut HashMap<String, Acked>,
    ) -> Result<(), ExchangeError> {
        let me = self.store.node_name().to_owned();
        let owners = {
            let view = Arc::clone(&self.gossip.view.borrow());
            let mut alive = alive_aggregators(&view);
            if scope == Scope::OwnLog {
                owners(&me, &alive, self.replicas)
            } else {
                alive.retain(|aggregator| aggregator.name != me);
                alive
            }
        };
        acked.retain(|name, _| owners.iter().any(|o| &o.name == name));
        if scope == Scope::OwnLog {
            // Before anything that can fail: a new owner, or none alive,
            // keeps our whole log from retention until acknowledged.
            self.store
                .keep_own(KeepOwn::After(acknowledged_by_all(&owners, acked)));
        }
        let own = self.own_through().await?;
        for owner in &owners {
            let due = match acked.get(&owner.name) {
                None => true,
                Some(state) => state.through < own || state.at.elapsed() >= self.idle_interval,
            };
            if !due {
                continue;
            }
            match self.stream_to(client, owner, acked.get(&owner.name)).await {
                Ok(state) => {
                    self.metrics.streamed(true);
                    acked.insert(owner.name.clone(), state);
                }
                Err(error) => {
                    self.metrics.streamed(false);
                    tracing::debug!(%error, aggregator = %owner.name, "stream failed");
                }
            }
        }
        let floor = acknowledged_by_all(&owners, acked);
        if scope == Scope::OwnLog {
            self.store.keep_own(KeepOwn::After(floor));
        }
        self.metrics.set_unacked(own.saturating_sub(floor));
        Ok(())
    }

    /// Batches to `owner` from where it stands until it holds our whole
    /// log; a first contact starts with an empty one, to learn where.
    async fn stream_to(
        &self,
        client: &reqwest::Client,
        owner: &Aggregator,
        known: Option<&Acked>,
    ) -> Result<Acked, ExchangeError> {
        let mut state = known.cloned();
        for _ in 0..MAX_BATCHES_PER_ROUND {
            let (from, batch) = match &state {
                None => (0, SyncBatch::default()),
                Some(state) => (
                    state.through,
                    self.store
                        .own_rows_after(state.through, STREAM_BATCH_ROWS)
                        .await?,
                ),
            };
            let request = StreamRequest {
                node: self.store.node_name().to_owned(),
                origin: self.store.origin().to_owned(),
                from,
                batch,
            };
            let reply: StreamReply =
                exchange::send_stream(client, &self.keyring, owner.api, &request).await?;
            let met = state.as_ref().is_none_or(|s| s.epoch != reply.epoch);
            if met && state.is_some() {
                tracing::info!(
                    aggregator = %owner.name,
                    through = reply.through,
                    "an aggregator's data is new (wiped or replaced): streaming our log to it again"
                );
            }
            let moved = met || state.as_ref().is_some_and(|s| reply.through > s.through);
            let acked = Acked {
                epoch: reply.epoch,
                through: reply.through,
                at: Instant::now(),
            };
            // Stop once it holds everything, or when a batch moved nothing
            // (its rows wait past a gap there; the next round starts from
            // where it really stands).
            if !moved || acked.through >= self.own_through().await? {
                return Ok(acked);
            }
            state = Some(acked);
        }
        Ok(state.expect("the loop ran at least once"))
    }

    /// The last seq of our own log.
    async fn own_through(&self) -> Result<u64, ExchangeError> {
        let origin = self.store.origin().to_owned();
        Ok(self.store.held_through(origin).await?)
    }
}
