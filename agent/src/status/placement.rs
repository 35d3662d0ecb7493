//! Where a check runs, decided from this node's gossip view.

use std::sync::Arc;

use starling_checks::{Placement, Scope};
use tokio::sync::watch;

use crate::gossip::{MemberState, MembershipView, Role};
use crate::rendezvous;

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
            Scope::Cluster => {
                let candidates = std::iter::once(view.me.name.as_str()).chain(
                    view.members
                        .iter()
                        .filter(|m| m.state.is_active() && m.state != MemberState::Left)
                        .map(|m| m.id.name.as_str()),
                );
                rendezvous::rank(check, candidates).first() == Some(&view.me.name.as_str())
            }
        }
    }
}
