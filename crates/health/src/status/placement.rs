//! Where a check runs, decided from this node's gossip view.

use std::sync::Arc;

use starling_checks::{Placement, Scope};
use tokio::sync::watch;

use starling_gossip::rendezvous;
use starling_gossip::{MembershipView, Role};

/// An agent that has found no other member for this long runs the
/// cluster-scope checks itself: it is a one-node cluster.
const SOLO_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct GossipPlacement {
    view: watch::Receiver<Arc<MembershipView>>,
}

impl GossipPlacement {
    pub fn new(view: watch::Receiver<Arc<MembershipView>>) -> Self {
        GossipPlacement { view }
    }
}

impl Placement for GossipPlacement {
    fn runs_here(&self, check: &str, scope: Scope) -> bool {
        let view = Arc::clone(&self.view.borrow());
        match scope {
            Scope::EveryNode => true,
            Scope::ControlPlane => view.me.meta.role == Role::ControlPlane,
            // The owner is the first alive member for the check's name.
            // When it dies, every survivor drops it from the ranking at
            // its Down, and the next in rank starts within a placement
            // poll; a suspect owner keeps the check until it is declared.
            // Aggregators run no checks: one must never own a check no
            // one would then run.
            Scope::Cluster if view.me.meta.role == Role::Aggregator => false,
            Scope::Cluster => {
                // Until it has met the others, every agent would think it
                // is the owner: wait for the cluster, or, alone for a
                // while, accept being a one-node cluster.
                let alone_for = starling_model::unix_ms_now().saturating_sub(view.started_unix_ms);
                if !view.connected && alone_for < SOLO_AFTER.as_millis() as u64 {
                    return false;
                }
                let candidates = std::iter::once(view.me.name.as_str()).chain(
                    view.members
                        .iter()
                        .filter(|m| m.state.is_active() && m.id.meta.role != Role::Aggregator)
                        .map(|m| m.id.name.as_str()),
                );
                rendezvous::rank(check, candidates).first() == Some(&view.me.name.as_str())
            }
        }
    }
}
