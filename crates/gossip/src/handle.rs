//! How other tasks talk to the gossip loop: a handle to read its view
//! and transitions, and the commands it takes.

use std::net::SocketAddr;
use std::sync::Arc;

use foca::Member;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::identity::NodeId;
use super::view::{MemberEvent, MembershipView};

/// What other tasks send into the loop.
#[derive(Debug)]
pub(crate) enum Command {
    Join(Vec<SocketAddr>),
    /// A peer pushed its state; answer with ours.
    Serve {
        theirs: Vec<Member<NodeId>>,
        reply: oneshot::Sender<Vec<Member<NodeId>>>,
    },
    /// The answer to a push-pull we started.
    Merge(Vec<Member<NodeId>>),
    /// Publish a service address in this node's identity.
    SetService {
        slot: usize,
        addr: SocketAddr,
    },
    /// Spread an upper layer's payload to every member.
    Spread {
        origin: String,
        seq: u64,
        payload: Vec<u8>,
    },
}

/// Read access to gossip for the rest of the agent.
#[derive(Clone, Debug)]
pub struct GossipHandle {
    pub view: watch::Receiver<Arc<MembershipView>>,
    pub(crate) events: broadcast::Sender<MemberEvent>,
    pub(crate) payloads: broadcast::Sender<Arc<[u8]>>,
    pub(crate) commands: mpsc::Sender<Command>,
}

impl GossipHandle {
    /// The typed stream of membership transitions.
    pub fn subscribe(&self) -> broadcast::Receiver<MemberEvent> {
        self.events.subscribe()
    }

    /// Payloads spread by members (ours included), as given to
    /// [`GossipHandle::spread`].
    pub fn subscribe_payloads(&self) -> broadcast::Receiver<Arc<[u8]>> {
        self.payloads.subscribe()
    }

    /// Publish where one of this node's services answers, in the slot the
    /// caller's layer owns (a no-op when it is already published).
    pub async fn set_service(&self, slot: impl Into<usize>, addr: SocketAddr) {
        let slot = slot.into();
        if self.view.borrow().me.meta.service(slot) == Some(addr) {
            return;
        }
        // A closed loop means the agent is stopping.
        let _ = self.commands.send(Command::SetService { slot, addr }).await;
    }

    /// Spread a payload to every member by gossip; (origin, seq) names it.
    /// Best effort: it is dropped if the loop is gone or it does not fit a
    /// datagram, so the caller needs another way to deliver it.
    pub async fn spread(&self, origin: String, seq: u64, payload: Vec<u8>) {
        let command = Command::Spread {
            origin,
            seq,
            payload,
        };
        // A closed loop means the agent is stopping.
        let _ = self.commands.send(command).await;
    }
}
