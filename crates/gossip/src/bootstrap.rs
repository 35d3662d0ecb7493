//! Finding the cluster without the API server: static seeds and a DNS name
//! (the DaemonSet's headless Service), resolved and retried with backoff.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::handle::Command;
use super::view::MembershipView;

/// The default gossip port, used when a `--join-dns` name has none.
pub const DEFAULT_GOSSIP_PORT: u16 = 7946;

const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Where to look for the cluster: `host:port` strings, resolved on every
/// attempt so a seed that moved or a Service whose endpoints filled in
/// later is picked up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinTargets {
    pub targets: Vec<String>,
}

impl JoinTargets {
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    async fn resolve(&self, me: SocketAddr) -> Vec<SocketAddr> {
        let mut found = Vec::new();
        for target in &self.targets {
            match tokio::net::lookup_host(target.as_str()).await {
                Ok(addrs) => found.extend(addrs),
                Err(error) => tracing::warn!(%target, %error, "could not resolve join target"),
            }
        }
        found.retain(|addr| *addr != me);
        found.sort();
        found.dedup();
        found
    }
}

/// Announce to every resolved seed until one answers, then stop: from
/// there SWIM and push-pull keep us connected.
pub(crate) async fn run(
    targets: JoinTargets,
    me: SocketAddr,
    commands: mpsc::Sender<Command>,
    mut view: watch::Receiver<Arc<MembershipView>>,
) {
    if targets.is_empty() {
        tracing::info!("no join targets: waiting for others to join us");
        return;
    }
    let mut retry = FIRST_RETRY;
    loop {
        let seeds = targets.resolve(me).await;
        if seeds.is_empty() {
            tracing::warn!(targets = ?targets.targets, "no join address resolved (other than our own)");
        } else {
            tracing::info!(?seeds, "announcing to seeds");
            if commands.send(Command::Join(seeds)).await.is_err() {
                return;
            }
        }
        let joined = tokio::time::timeout(retry, view.wait_for(|view| view.connected)).await;
        match joined {
            Ok(Ok(_)) => {
                tracing::info!("joined the cluster");
                return;
            }
            // The gossip loop ended: nothing left to join for.
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::warn!(retry_in = ?retry, "no seed answered yet; retrying");
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
}
