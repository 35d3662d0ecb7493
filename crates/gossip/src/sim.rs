//! A deterministic, seeded simulation of many `GossipNode`s: virtual time,
//! no sockets. Datagrams get a latency, may be lost, and may be blocked by a
//! partition; nodes can be killed or paused (CPU starvation).
//!
//! Addresses are 127.x.y.z identifiers only: nothing is ever sent on a
//! network. The gossip tests (`tests/sim`) and `starling-bench scale` drive
//! it; not an API, hidden from the docs.
//!
//! Every byte a node would put on the wire is counted (see [`Traffic`]):
//! each datagram as sealed, each push-pull frame as the real framing
//! writes it (the fingerprint first for the periodic exchange), and the
//! IP, UDP and TCP headers around them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

mod bytes;
mod queue;

pub use bytes::{TCP_HEADERS, Traffic, tcp_exchange_bytes};

use crate::pushpull::{self, Trailer};
use crate::{
    GossipConfig, GossipNode, MemberState, NodeId, NodeIdentity, NodeMeta, PushPull, Role,
    SERVICE_SLOTS, Transition,
};
use bytes::{connection_bytes, datagram_bytes, frame_bytes};
use queue::{Event, Scheduled};

/// A simulation that virtual time moves forward: the gossip one, and the
/// layers above that build on it.
pub trait VirtualTime {
    fn now(&self) -> Duration;
    fn run_for(&mut self, duration: Duration);

    /// Run until `done` holds (checked every `step`) or `limit` passes.
    /// Returns the virtual time at which it first held.
    fn run_until(
        &mut self,
        limit: Duration,
        step: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Option<Duration>
    where
        Self: Sized,
    {
        let give_up = self.now() + limit;
        while self.now() < give_up {
            if done(self) {
                return Some(self.now());
            }
            self.run_for(step);
        }
        done(self).then_some(self.now())
    }
}

impl VirtualTime for Sim {
    fn now(&self) -> Duration {
        Sim::now(self)
    }

    fn run_for(&mut self, duration: Duration) {
        Sim::run_for(self, duration);
    }
}

/// Why gossip refused to spread a payload (foca's own error).
pub type SpreadError = foca::Error;

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub nodes: usize,
    pub seed: u64,
    /// Probability that any one datagram is lost.
    pub loss: f64,
    /// One-way latency is `latency + uniform(0, jitter)`.
    pub latency: Duration,
    pub jitter: Duration,
    pub gossip: GossipConfig,
    /// Keep each payload a node takes for [`Sim::take_payloads`], for an
    /// upper layer that reads them (replication's simulation); off, only
    /// the count is kept, which is all the gossip figures need.
    pub keep_payloads: bool,
    /// The first this many nodes are aggregators (by their gossip role).
    pub aggregators: usize,
}

impl SimConfig {
    pub fn new(nodes: usize, seed: u64) -> Self {
        SimConfig {
            nodes,
            seed,
            loss: 0.0,
            latency: Duration::from_micros(300),
            jitter: Duration::from_millis(2),
            gossip: GossipConfig::default(),
            keep_payloads: false,
            aggregators: 0,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Status {
    NotStarted,
    Running,
    Dead,
    /// Starved: nothing runs; arriving work waits in `held`.
    Paused,
}

#[derive(Debug)]
struct SimNode {
    id: NodeId,
    node: Option<GossipNode>,
    status: Status,
    held: Vec<Event>,
    wake_at: Option<Duration>,
}

/// One observed transition, by node index. Compact on purpose: a cold
/// start of N nodes records N² of them (25 million at 5,000), and a whole
/// `MembershipEvent` with its identity each ran the 5,000-node run out of
/// memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    pub at: Duration,
    pub observer: usize,
    pub subject: usize,
    pub transition: Transition,
}

#[derive(Debug)]
pub struct Sim {
    config: SimConfig,
    now: Duration,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    rng: StdRng,
    /// Directed (from, to) pairs whose traffic is dropped.
    blocked: HashSet<(usize, usize)>,
    pub observations: Vec<Observation>,
    pub datagrams_delivered: u64,
    /// Per node, since the start or the last `reset_traffic`.
    traffic: Vec<Traffic>,
    /// Per node, payloads (an upper layer's rows) it took from gossip.
    payloads_taken: Vec<u32>,
    /// With `keep_payloads`: what each node took and nobody read yet, and
    /// which nodes have any, so a reader visits only those.
    inbox: Vec<Vec<Vec<u8>>>,
    unread: Vec<usize>,
}

pub fn addr_of(index: usize) -> SocketAddr {
    let [_, _, hi, lo] = (index as u32 + 1).to_be_bytes();
    SocketAddr::from(([127, 10, hi, lo], 7946))
}

impl Sim {
    pub fn new(config: SimConfig) -> Self {
        let nodes = (0..config.nodes)
            .map(|i| SimNode {
                id: NodeId::from(NodeIdentity {
                    name: format!("n{i}"),
                    addr: addr_of(i),
                    incarnation: 1,
                    meta: NodeMeta {
                        role: if i < config.aggregators {
                            Role::Aggregator
                        } else {
                            Role::Worker
                        },
                        services: [None; SERVICE_SLOTS],
                    },
                }),
                node: None,
                status: Status::NotStarted,
                held: Vec::new(),
                wake_at: None,
            })
            .collect();
        let by_addr = (0..config.nodes).map(|i| (addr_of(i), i)).collect();
        let traffic = vec![Traffic::default(); config.nodes];
        let payloads_taken = vec![0; config.nodes];
        let inbox = vec![Vec::new(); config.nodes];
        Sim {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            now: Duration::ZERO,
            nodes,
            by_addr,
            queue: BinaryHeap::new(),
            seq: 0,
            blocked: HashSet::new(),
            observations: Vec::new(),
            datagrams_delivered: 0,
            traffic,
            payloads_taken,
            inbox,
            unread: Vec::new(),
        }
    }

    /// What `node` sent and received since the start or the last reset.
    pub fn traffic(&self, node: usize) -> Traffic {
        self.traffic[node]
    }

    /// Start counting traffic afresh (a steady-state window).
    pub fn reset_traffic(&mut self) {
        self.traffic.fill(Traffic::default());
    }

    /// Count a transfer of `bytes` from one node to another.
    fn carry(&mut self, from: usize, to: usize, bytes: u64) {
        self.traffic[from].sent += bytes;
        self.traffic[to].received += bytes;
    }

    pub fn now(&self) -> Duration {
        self.now
    }

    /// Node 0 starts at once; every other node starts at a random instant
    /// within `window` and joins through node 0: a DaemonSet rollout.
    pub fn cold_start(&mut self, window: Duration) {
        self.schedule(
            Duration::ZERO,
            Event::Start {
                node: 0,
                seed: None,
            },
        );
        for node in 1..self.nodes.len() {
            let at = window.mul_f64(self.rng.random_range(0.0..1.0));
            self.schedule(
                at,
                Event::Start {
                    node,
                    seed: Some(0),
                },
            );
        }
    }

    pub fn kill(&mut self, node: usize) {
        self.nodes[node].status = Status::Dead;
        self.nodes[node].node = None;
        self.nodes[node].held.clear();
    }

    pub fn pause(&mut self, node: usize, duration: Duration) {
        self.nodes[node].status = Status::Paused;
        self.schedule(self.now + duration, Event::Resume { node });
    }

    pub fn partition(&mut self, side_a: &[usize], side_b: &[usize]) {
        for &a in side_a {
            for &b in side_b {
                self.blocked.insert((a, b));
                self.blocked.insert((b, a));
            }
        }
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > until {
                break;
            }
            let Reverse(next) = self.queue.pop().expect("peeked just above");
            self.now = next.at;
            self.process(next.event);
        }
        self.now = until;
    }

    /// Have `node` publish a new address in service `slot`.
    pub fn set_service(&mut self, node: usize, slot: usize, addr: SocketAddr) {
        let now = self.now;
        let gossip = self.nodes[node].node.as_mut().expect("running");
        assert!(gossip.set_service(slot, Some(addr), now), "a new address");
        self.nodes[node].id = gossip.identity().clone();
        self.flush(node);
    }

    /// Have `node` spread an upper layer's payload by gossip, as
    /// replication pushes each new row.
    pub fn spread(
        &mut self,
        node: usize,
        origin: String,
        seq: u64,
        payload: Vec<u8>,
    ) -> Result<(), SpreadError> {
        let now = self.now;
        let gossip = self.nodes[node].node.as_mut().expect("running");
        gossip.spread_payload(origin, seq, payload, now)?;
        self.flush(node);
        Ok(())
    }

    /// How many nodes the simulation has.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// The payloads nodes took from gossip since the last call, by node
    /// (with `keep_payloads`; otherwise always empty).
    pub fn take_payloads(&mut self) -> Vec<(usize, Vec<Vec<u8>>)> {
        std::mem::take(&mut self.unread)
            .into_iter()
            .map(|node| (node, std::mem::take(&mut self.inbox[node])))
            .collect()
    }

    /// The node with this gossip address.
    pub fn index_of(&self, addr: &SocketAddr) -> Option<usize> {
        self.by_addr.get(addr).copied()
    }

    /// Nodes that took at least `count` payloads from gossip.
    pub fn nodes_holding_payloads(&self, count: u32) -> usize {
        self.payloads_taken.iter().filter(|&&n| n >= count).count()
    }

    /// Whether a connection from one node to another would be answered:
    /// the peer runs and no partition lies between.
    pub fn reachable(&self, from: usize, to: usize) -> bool {
        self.is_running(to) && !self.blocked.contains(&(from, to))
    }

    pub fn is_running(&self, node: usize) -> bool {
        self.nodes[node].status == Status::Running
    }

    pub fn node(&self, index: usize) -> Option<&GossipNode> {
        self.nodes[index].node.as_ref()
    }

    /// How `observer` sees `subject`, if it knows it at all.
    pub fn state(&self, observer: usize, subject: usize) -> Option<MemberState> {
        self.node(observer)?
            .member(&addr_of(subject))
            .map(|record| record.state)
    }

    /// Every running node sees exactly the other running nodes as alive.
    pub fn converged(&self) -> bool {
        if self.nodes.iter().any(|n| n.status == Status::NotStarted) {
            return false;
        }
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.is_running(i))
            .collect();
        running.iter().all(|&observer| {
            running.iter().all(|&subject| {
                subject == observer || self.state(observer, subject) == Some(MemberState::Alive)
            })
        })
    }

    /// Every running node counts every other running node alive: the same
    /// as `converged` when no node is dead, in O(n) rather than O(n²)
    /// lookups, for thousands of nodes.
    pub fn all_count_everyone(&self) -> bool {
        if self.nodes.iter().any(|n| n.status == Status::NotStarted) {
            return false;
        }
        let running = (0..self.nodes.len())
            .filter(|&i| self.is_running(i))
            .count();
        (0..self.nodes.len())
            .filter(|&i| self.is_running(i))
            .all(|i| {
                self.node(i).is_some_and(|node| {
                    node.members()
                        .filter(|m| m.state == MemberState::Alive)
                        .count()
                        == running - 1
                })
            })
    }

    /// Observers that ever recorded `transition` about `subject`.
    pub fn observers_of(&self, subject: usize, transition: Transition) -> HashSet<usize> {
        self.observations
            .iter()
            .filter(|o| o.subject == subject && o.transition == transition)
            .map(|o| o.observer)
            .collect()
    }

    /// Every (observer, subject) pair ever recorded as Down.
    pub fn downs(&self) -> Vec<(Duration, usize, String)> {
        self.observations
            .iter()
            .filter(|o| o.transition == Transition::Failed)
            .map(|o| (o.at, o.observer, self.nodes[o.subject].id.name.clone()))
            .collect()
    }

    fn schedule(&mut self, at: Duration, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            event,
        }));
    }

    fn process(&mut self, event: Event) {
        let target = match &event {
            Event::Start { node, .. } | Event::Wake { node } | Event::Resume { node } => *node,
            Event::Datagram { to, .. } | Event::PushPullReply { to, .. } => *to,
            Event::PushPull { to, .. } => *to,
        };
        match (&self.nodes[target].status, &event) {
            (_, Event::Start { .. }) | (Status::Paused, Event::Resume { .. }) => {}
            (Status::Running, _) => {}
            (Status::Paused, Event::Wake { .. }) => {
                self.nodes[target].wake_at = None;
                return;
            }
            // A starved process does not read its socket: the work waits.
            (Status::Paused, _) => {
                self.nodes[target].held.push(event);
                return;
            }
            _ => return,
        }
        let now = self.now;
        match event {
            Event::Start { node, seed } => {
                let slot = &mut self.nodes[node];
                if slot.status != Status::NotStarted {
                    slot.id.make_mut().incarnation += 1;
                }
                let mut gossip = GossipNode::new(
                    slot.id.clone(),
                    self.config.gossip.clone(),
                    self.config.seed ^ (node as u64) << 20 ^ slot.id.incarnation,
                    now,
                );
                if let Some(seed) = seed {
                    gossip.join(addr_of(seed), now);
                }
                slot.node = Some(gossip);
                slot.status = Status::Running;
                slot.wake_at = None;
            }
            Event::Datagram { to, data } => {
                self.datagrams_delivered += 1;
                self.traffic[to].received += datagram_bytes(&data);
                let node = self.nodes[to]
                    .node
                    .as_mut()
                    .expect("running nodes have a node");
                // Errors are part of life (e.g. stale packets); the agent
                // counts them, the simulation just moves on.
                let _ = node.handle_datagram(&data, now);
            }
            Event::Wake { node } => {
                self.nodes[node].wake_at = None;
                let gossip = self.nodes[node].node.as_mut().expect("running");
                gossip.handle_timers(now);
            }
            Event::PushPull {
                from,
                to,
                state,
                digest_first,
            } => {
                let gossip = self.nodes[to].node.as_mut().expect("running");
                let ours = gossip.membership_state();
                // As the driver answers (see `pushpull`): a periodic
                // exchange whose fingerprints match moves no state.
                let theirs = digest_first.then(|| pushpull::fingerprint(&state));
                let same = theirs.is_some_and(|sum| sum == pushpull::fingerprint(&ours));
                let mut frames = (0, 0);
                if let Some(sum) = theirs {
                    frames.0 += frame_bytes(&[], Some(Trailer::Fingerprint(sum)));
                }
                if same {
                    frames.1 += frame_bytes(&[], Some(Trailer::Same));
                } else {
                    let answer = digest_first.then_some(Trailer::SendYours);
                    frames.1 += frame_bytes(&ours, answer);
                    frames.0 += frame_bytes(&state, None);
                    gossip.apply_membership_state(state, now);
                    let reply = gossip.membership_state();
                    let at = now + self.latency();
                    self.schedule(
                        at,
                        Event::PushPullReply {
                            to: from,
                            state: reply,
                        },
                    );
                }
                let (setup_from, setup_to) = connection_bytes();
                self.carry(from, to, frames.0 + setup_from);
                self.carry(to, from, frames.1 + setup_to);
            }
            Event::PushPullReply { to, state } => {
                let gossip = self.nodes[to].node.as_mut().expect("running");
                gossip.apply_membership_state(state, now);
            }
            Event::Resume { node } => {
                self.nodes[node].status = Status::Running;
                // What queued up is read first, then overdue timers fire —
                // the agent's loop drains its socket before timers.
                for held in std::mem::take(&mut self.nodes[node].held) {
                    self.process(held);
                }
                let gossip = self.nodes[node].node.as_mut().expect("running");
                gossip.handle_timers(now);
            }
        }
        self.flush(target);
    }

    /// Move what a node produced into the event queue.
    fn flush(&mut self, index: usize) {
        let now = self.now;
        let Some(gossip) = self.nodes[index].node.as_mut() else {
            return;
        };
        let outgoing = gossip.take_outgoing();
        let push_pulls = gossip.take_push_pulls();
        for event in gossip.take_events() {
            if let Some(&subject) = self.by_addr.get(&event.member.addr) {
                self.observations.push(Observation {
                    at: now,
                    observer: index,
                    subject,
                    transition: event.transition,
                });
            }
        }
        let payloads = gossip.take_payloads();
        self.payloads_taken[index] += payloads.len() as u32;
        if self.config.keep_payloads && !payloads.is_empty() {
            if self.inbox[index].is_empty() {
                self.unread.push(index);
            }
            self.inbox[index].extend(payloads);
        }
        let next = gossip.next_deadline();
        for (to_addr, data) in outgoing {
            let Some(&to) = self.by_addr.get(&to_addr) else {
                continue;
            };
            self.traffic[index].sent += datagram_bytes(&data);
            if self.blocked.contains(&(index, to)) || self.rng.random_bool(self.config.loss) {
                continue;
            }
            let at = now + self.latency();
            self.schedule(at, Event::Datagram { to, data });
        }
        for PushPull {
            peer,
            state,
            digest_first,
        } in push_pulls
        {
            let Some(&to) = self.by_addr.get(&peer) else {
                continue;
            };
            // TCP: no random loss, but a partition or a dead peer fails it.
            if self.blocked.contains(&(index, to)) || self.nodes[to].status == Status::Dead {
                continue;
            }
            let at = now + self.latency();
            self.schedule(
                at,
                Event::PushPull {
                    from: index,
                    to,
                    state,
                    digest_first,
                },
            );
        }
        if let Some(next) = next {
            let slot = &mut self.nodes[index];
            if slot.wake_at.is_none_or(|current| next < current) {
                slot.wake_at = Some(next);
                self.schedule(next.max(now), Event::Wake { node: index });
            }
        }
    }

    fn latency(&mut self) -> Duration {
        let jitter = self.config.jitter.mul_f64(self.rng.random_range(0.0..1.0));
        self.config.latency + jitter
    }
}
