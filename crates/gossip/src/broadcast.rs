//! Our own rumors, carried by foca's custom broadcasts (piggybacked on
//! gossip like membership updates).

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::mpsc;

use foca::{BroadcastHandler, Invalidates};
use serde::{Deserialize, Serialize};

use super::identity::NodeId;

/// How many rumor keys we remember to stop re-broadcasting what we have
/// already spread. Rumors are rare (a failed probe, a leave, an upper
/// layer's payload), so this covers far longer than a rumor lives in foca's queue;
/// one forgotten too early is spread once more and stored once anyway.
const REMEMBERED_RUMORS: usize = 8192;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Rumor {
    /// `by`'s own probe of `subject` failed: a Lifeguard confirmation.
    Suspects { subject: NodeId, by: SocketAddr },
    /// `who` is shutting down on purpose, so its Down is a leave, not a
    /// failure.
    Leaving { who: NodeId },
    /// An upper layer's payload for every member, opaque here:
    /// (origin, seq) names it once.
    Payload {
        origin: String,
        seq: u64,
        payload: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RumorKey {
    Suspects {
        subject: (SocketAddr, u64),
        by: SocketAddr,
    },
    Leaving {
        who: (SocketAddr, u64),
    },
    Payload {
        origin: String,
        seq: u64,
    },
}

impl Rumor {
    fn key(&self) -> RumorKey {
        match self {
            Rumor::Suspects { subject, by } => RumorKey::Suspects {
                subject: (subject.addr, subject.incarnation),
                by: *by,
            },
            Rumor::Leaving { who } => RumorKey::Leaving {
                who: (who.addr, who.incarnation),
            },
            Rumor::Payload { origin, seq, .. } => RumorKey::Payload {
                origin: origin.clone(),
                seq: *seq,
            },
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("rumors serialize: plain data, no maps")
    }
}

impl Invalidates for RumorKey {
    fn invalidates(&self, other: &Self) -> bool {
        self == other
    }
}

#[derive(Debug, thiserror::Error)]
#[error("undecodable rumor: {0}")]
pub(crate) struct RumorError(#[from] postcard::Error);

/// Decodes rumors for foca and hands new ones to the node through a
/// channel, since foca owns the handler and offers no way back to it.
#[derive(Debug)]
pub(crate) struct RumorHandler {
    seen: HashSet<RumorKey>,
    order: VecDeque<RumorKey>,
    inbox: mpsc::Sender<Rumor>,
}

impl RumorHandler {
    pub fn new() -> (Self, mpsc::Receiver<Rumor>) {
        let (inbox, receiver) = mpsc::channel();
        let handler = RumorHandler {
            seen: HashSet::new(),
            order: VecDeque::new(),
            inbox,
        };
        (handler, receiver)
    }

    fn remember(&mut self, key: &RumorKey) -> bool {
        if !self.seen.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key.clone());
        if self.order.len() > REMEMBERED_RUMORS
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        true
    }
}

impl BroadcastHandler<NodeId> for RumorHandler {
    type Key = RumorKey;
    type Error = RumorError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&NodeId>,
    ) -> Result<Option<RumorKey>, RumorError> {
        let rumor: Rumor = postcard::from_bytes(data)?;
        let key = rumor.key();
        if !self.remember(&key) {
            return Ok(None);
        }
        // The receiver lives as long as the node that owns this handler.
        let _ = self.inbox.send(rumor);
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_rumors_are_passed_on_once() {
        let (mut handler, inbox) = RumorHandler::new();
        let rumor = Rumor::Leaving {
            who: NodeId::seed("127.0.0.2:7946".parse().expect("valid literal")),
        };
        let bytes = rumor.encode();
        assert!(
            handler
                .receive_item(&bytes, None)
                .expect("decodes")
                .is_some()
        );
        assert!(
            handler
                .receive_item(&bytes, None)
                .expect("decodes")
                .is_none()
        );
        assert_eq!(inbox.try_recv().ok(), Some(rumor));
        assert!(inbox.try_recv().is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let (mut handler, _inbox) = RumorHandler::new();
        assert!(handler.receive_item(&[0xff, 0xff, 0xff], None).is_err());
    }
}
