//! An ordinary node's copy of the cluster's health table: the latest
//! result of every (node, check), kept current from an aggregator by
//! revision, so a quiet cluster costs one small exchange per interval and
//! a busy one sends each changed check once per interval, however often
//! it changed. Every few pulls it also asks the same aggregator for the
//! newest events of the cluster log, this node's [`RecentWindow`].

use std::sync::Arc;
use std::time::Duration;

use starling_gossip::GossipHandle;
use starling_history::Store;
use starling_replicate::Scope;
use starling_seal::Keyring;
use tokio::sync::watch;

use crate::cursor::Cursor;
use crate::exchange::{self, ExchangeError};
use crate::metrics::AggregationMetrics;
use crate::owners::{Aggregator, alive_aggregators, ranked};
use crate::window::RecentWindow;
use crate::wire::{HealthReply, HealthRequest, WindowRequest};

pub(crate) struct HealthPuller {
    pub store: Store,
    pub gossip: GossipHandle,
    pub keyring: Arc<Keyring>,
    pub metrics: AggregationMetrics,
    pub scope: watch::Receiver<Scope>,
    pub interval: Duration,
    pub window: RecentWindow,
}

/// Pages one pull may take: a whole 5,000-node table is about six.
const MAX_PAGES: usize = 100;
/// The window is asked at every this many health pulls (every 15 s at the
/// default interval): it serves only while every aggregator is down, so a
/// few seconds' lag costs little, and each ask is bounded
/// (`WINDOW_BATCH_ROWS`).
pub const WINDOW_EVERY_HEALTH_PULLS: u64 = 3;

pub(crate) async fn run(puller: HealthPuller, shutdown: impl std::future::Future<Output = ()>) {
    let client = exchange::client();
    let mut cursor = Cursor::default();
    let mut ticker = tokio::time::interval(puller.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let mut pulls: u64 = 0;
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        if *puller.scope.borrow() != Scope::OwnLog {
            continue;
        }
        // The first pull asks for the window too: after a start it is empty.
        let with_window = pulls.is_multiple_of(WINDOW_EVERY_HEALTH_PULLS);
        pulls += 1;
        let candidates = {
            let view = Arc::clone(&puller.gossip.view.borrow());
            ranked(&view.me.name, &alive_aggregators(&view))
        };
        // The first owner, unless it does not answer: then the next.
        for aggregator in candidates.iter().take(3) {
            match puller.pull(&client, aggregator, &mut cursor).await {
                Ok(()) => {
                    puller.metrics.health_pulled(true);
                    if with_window {
                        puller.pull_window(&client, aggregator).await;
                    }
                    break;
                }
                Err(error) => {
                    puller.metrics.health_pulled(false);
                    tracing::debug!(%error, "health table pull failed");
                }
            }
        }
    }
}

impl HealthPuller {
    /// One ask of `aggregator` for the events it took in since the last;
    /// a failure is counted and the next ask tries again.
    async fn pull_window(&self, client: &reqwest::Client, aggregator: &Aggregator) {
        let cursor = self.window.cursor();
        let request = WindowRequest {
            epoch: cursor.epoch,
            after: cursor.after,
        };
        match exchange::pull_window(client, &self.keyring, aggregator.api, &request).await {
            Ok(reply) => {
                self.metrics.window_pulled(true);
                self.window.take(reply);
            }
            Err(error) => {
                self.metrics.window_pulled(false);
                tracing::debug!(%error, "window pull failed");
            }
        }
    }

    async fn pull(
        &self,
        client: &reqwest::Client,
        aggregator: &Aggregator,
        cursor: &mut Cursor,
    ) -> Result<(), ExchangeError> {
        for _ in 0..MAX_PAGES {
            let request = HealthRequest {
                epoch: cursor.epoch.clone(),
                after: cursor.after,
            };
            let reply: HealthReply =
                exchange::pull_health(client, &self.keyring, aggregator.api, &request).await?;
            if cursor.epoch.as_ref() != Some(&reply.epoch) {
                // Another database: its revisions are not ours to continue.
                *cursor = Cursor {
                    epoch: Some(reply.epoch.clone()),
                    after: 0,
                };
            }
            self.store.upsert_latest_all(reply.changed).await?;
            cursor.after = reply.through;
            if !reply.more {
                return Ok(());
            }
        }
        Ok(())
    }
}
