//! The simulation's event queue: what happens to whom, in virtual time
//! order (ties in the order scheduled, so runs are deterministic).

use std::time::Duration;

use foca::Member;

use crate::NodeId;

#[derive(Debug)]
pub(super) enum Event {
    Start {
        node: usize,
        seed: Option<usize>,
    },
    Datagram {
        to: usize,
        data: Vec<u8>,
    },
    Wake {
        node: usize,
    },
    PushPull {
        from: usize,
        to: usize,
        state: Vec<Member<NodeId>>,
        digest_first: bool,
    },
    PushPullReply {
        to: usize,
        state: Vec<Member<NodeId>>,
    },
    Resume {
        node: usize,
    },
}

#[derive(Debug)]
pub(super) struct Scheduled {
    pub at: Duration,
    pub seq: u64,
    pub event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}
