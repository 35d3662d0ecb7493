//! Full replication in the gossip simulation: each node's rows pushed by
//! the real gossip path, and anti-entropy pulls paced by the real
//! [`Cadence`], compared by the real fingerprints, with the real sealed
//! requests and answers counted on the wire. Virtual time, no sockets, no
//! database: `starling-bench scale` drives it; not an API, hidden from the
//! docs.
//!
//! What stands in for the real parts, and why it is faithful enough:
//! - a node's history is its version vector (per origin, every seq held up
//!   to this), with rows past a gap held aside until the gap fills. That is
//!   all a pull compares, and what the store's `missing_in` selects from;
//!   rows are made again from (origin, seq) when they travel, always the
//!   same event, so their encoded size is real.
//! - a pull is one exchange at one virtual instant: its round trip is
//!   milliseconds against a pace of seconds.
//! - HTTP heads are not made here: [`HttpHeads`] carries their sizes, which
//!   the benchmark measures on the real client and server.
//!
//! Every replica starts holding the first row of every origin: the figures
//! are for a cluster whose logs agreed before the window measured.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use starling_gossip::sim::{self as gossip_sim, Sim, SimConfig, Traffic, VirtualTime};
use starling_gossip::{MemberState, Role, Transition};
use starling_history::digest::{Slices, VectorDigest, buckets_for};
use starling_history::{Event, EventKind, SyncBatch, VersionVector};
use starling_seal::{Keyring, Purpose, seal_json};

use super::cadence::{Cadence, Outcome};
use super::serve::{SYNC_BATCH_ROWS, compare};
use super::wire::{self, Comparison, Fingerprint, Pushed, SyncReply, SyncRequest};
use super::{DEFAULT_PULL_IDLE_INTERVAL, DEFAULT_PULL_INTERVAL, Scope};

mod rows;
pub use rows::{CheckChange, check_change, mix};

/// Bytes of the HTTP/1.1 heads around one `POST /v1/sync` and its answer,
/// as the real client and server write them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpHeads {
    pub request: u64,
    pub response: u64,
}

/// Pulls and what they found, cluster-wide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PullCounts {
    /// The peer's fingerprint was ours: one small exchange, nothing else.
    pub in_sync: u64,
    /// The vectors differed: slices compared, rows fetched if the peer
    /// had any we lacked.
    pub compared: u64,
    /// The peer was gone or cut off.
    pub failed: u64,
    /// Rows that came by pull rather than push.
    pub rows: u64,
}

#[derive(Debug)]
struct Replica {
    /// Per origin (by node index): every seq up to this is held.
    through: Vec<u64>,
    /// Rows held past a gap, as (origin, seq).
    ahead: BTreeSet<(usize, u64)>,
    cadence: Cadence,
    /// When this node pulls next; the queue may hold stale times, this is
    /// the one that counts.
    next_pull: Duration,
    /// Whom it replicates with, as the aggregation layer sets it.
    scope: Scope,
    /// With [`ReplicaSim::keep_arrivals`]: every row this node took, in
    /// the order it took them (an aggregator's log by rowid).
    arrivals: Option<Vec<(usize, u64)>>,
}

#[derive(Debug)]
pub struct ReplicaSim {
    pub gossip: Sim,
    keyring: Keyring,
    heads: HttpHeads,
    /// Each node's log id, as `Store` makes them.
    origins: Vec<String>,
    by_origin: HashMap<String, usize>,
    replicas: Vec<Replica>,
    pulls: BinaryHeap<Reverse<(Duration, usize)>>,
    /// Gossip observations already read for news.
    observed: usize,
    rng: StdRng,
    /// Per node, the bytes of sealed exchanges above gossip: anti-entropy
    /// pulls and what an upper layer counts with `exchange`.
    traffic: Vec<Traffic>,
    /// Cluster-wide bytes of sealed exchanges by the asker's channel, both
    /// directions: where the traffic above gossip goes.
    channels: Vec<(Purpose, u64)>,
    pub counts: PullCounts,
}

impl ReplicaSim {
    pub fn new(mut config: SimConfig, keyring: Keyring, heads: HttpHeads) -> Self {
        config.keep_payloads = true;
        let nodes = config.nodes;
        let seed = config.seed;
        // Random, as `new_origin` makes them: alike ids would deflate to
        // nothing in the aggregators' answers.
        let origins: Vec<String> = (0..nodes)
            .map(|i| format!("n{i}#{:016x}", mix(seed, i as u64)))
            .collect();
        let by_origin = origins.iter().cloned().zip(0..).collect();
        let replicas = (0..nodes)
            .map(|_| Replica {
                through: vec![1; nodes],
                ahead: BTreeSet::new(),
                cadence: Cadence::new(DEFAULT_PULL_INTERVAL, DEFAULT_PULL_IDLE_INTERVAL),
                next_pull: Duration::ZERO,
                scope: Scope::Everyone,
                arrivals: None,
            })
            .collect();
        ReplicaSim {
            gossip: Sim::new(config),
            keyring,
            heads,
            origins,
            by_origin,
            replicas,
            pulls: BinaryHeap::new(),
            observed: 0,
            rng: StdRng::seed_from_u64(seed ^ 0x5eed),
            traffic: vec![Traffic::default(); nodes],
            channels: Vec::new(),
            counts: PullCounts::default(),
        }
    }

    /// Start every node as the gossip simulation does; each starts pulling
    /// at the base pace, as the agent's pull loop does.
    pub fn cold_start(&mut self, window: Duration) {
        self.gossip.cold_start(window);
        for node in 0..self.replicas.len() {
            let first = self.jittered(DEFAULT_PULL_INTERVAL);
            self.schedule_pull(node, first);
        }
    }

    /// Replicate as `scope` says from now on: the aggregation layer's
    /// decision for this node.
    pub fn set_scope(&mut self, node: usize, scope: Scope) {
        self.replicas[node].scope = scope;
    }

    /// Bytes for `node` above gossip since the last reset: anti-entropy,
    /// and whatever an upper layer counted with [`ReplicaSim::exchange`].
    pub fn traffic(&self, node: usize) -> Traffic {
        self.traffic[node]
    }

    /// Bytes of every exchange asked on `request`'s channel since the last
    /// reset, the request and its answer, over the whole cluster.
    pub fn channel_bytes(&self, request: Purpose) -> u64 {
        self.channels
            .iter()
            .find(|(channel, _)| *channel == request)
            .map_or(0, |&(_, bytes)| bytes)
    }

    /// Start counting both layers' traffic afresh.
    pub fn reset_traffic(&mut self) {
        self.traffic.fill(Traffic::default());
        self.channels.clear();
        self.gossip.reset_traffic();
    }

    pub fn now(&self) -> Duration {
        self.gossip.now()
    }

    /// `node` records a new event, and in full replication pushes it, as
    /// the publisher does. Returns its (origin, seq).
    pub fn record(&mut self, node: usize) -> Result<(usize, u64), gossip_sim::SpreadError> {
        let seq = self.replicas[node].through[node] + 1;
        if self.replicas[node].scope == Scope::Everyone {
            let event = self.row(node, seq);
            self.gossip
                .spread(node, event.origin.clone(), seq, wire::encode_push(&event))?;
        }
        self.hold(node, node, seq);
        Ok((node, seq))
    }

    /// Keep the order in which `node` takes rows from now on.
    pub fn keep_arrivals(&mut self, node: usize) {
        self.replicas[node].arrivals.get_or_insert_with(Vec::new);
    }

    /// The rows `node` took since [`ReplicaSim::keep_arrivals`], as
    /// (origin, seq), in the order it took them.
    pub fn arrivals(&self, node: usize) -> &[(usize, u64)] {
        self.replicas[node].arrivals.as_deref().unwrap_or_default()
    }

    /// Every seq of `origin`'s log up to this is on `node`.
    pub fn through(&self, node: usize, origin: usize) -> u64 {
        self.replicas[node].through[origin]
    }

    /// The log id of `node`.
    pub fn origin(&self, node: usize) -> &str {
        &self.origins[node]
    }

    /// Nodes holding row `seq` of `origin`'s log.
    pub fn holders(&self, origin: usize, seq: u64) -> usize {
        self.replicas
            .iter()
            .filter(|r| r.through[origin] >= seq || r.ahead.contains(&(origin, seq)))
            .count()
    }

    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now() + duration;
        while let Some(&Reverse((at, node))) = self.pulls.peek() {
            if at > until {
                break;
            }
            self.pulls.pop();
            self.gossip.run_for(at - self.now());
            self.take_news();
            if self.replicas[node].next_pull == at {
                self.pull(node);
            }
        }
        self.gossip.run_for(until - self.now());
        self.take_news();
    }

    /// Rows gossip delivered, and joins that send the pull loop back to
    /// its base pace.
    fn take_news(&mut self) {
        for (node, payloads) in self.gossip.take_payloads() {
            for payload in payloads {
                // The push task's decoding; a foreign payload is skipped,
                // as it is there.
                let Ok(Pushed::Row(event)) = wire::decode_pushed(&payload) else {
                    continue;
                };
                let Some(&origin) = self.by_origin.get(&event.origin) else {
                    continue;
                };
                if self.hold(node, origin, event.seq) {
                    self.news(node);
                }
            }
        }
        let fresh = self.gossip.observations.len();
        for index in self.observed..fresh {
            let seen = self.gossip.observations[index];
            if matches!(
                seen.transition,
                Transition::Joined | Transition::Rejoined | Transition::Recovered
            ) {
                self.news(seen.observer);
            }
        }
        self.observed = fresh;
    }

    /// Take a row; true when it lies past a gap (the push task's news).
    pub fn hold(&mut self, node: usize, origin: usize, seq: u64) -> bool {
        let replica = &mut self.replicas[node];
        let through = &mut replica.through[origin];
        if seq <= *through || replica.ahead.contains(&(origin, seq)) {
            return false;
        }
        if let Some(arrivals) = &mut replica.arrivals {
            arrivals.push((origin, seq));
        }
        if seq > *through + 1 {
            replica.ahead.insert((origin, seq));
            return true;
        }
        *through = seq;
        while replica.ahead.remove(&(origin, *through + 1)) {
            *through += 1;
        }
        false
    }

    fn news(&mut self, node: usize) {
        if self.replicas[node].cadence.news() {
            let sooner = self.now() + self.jittered(self.replicas[node].cadence.pause());
            if sooner < self.replicas[node].next_pull {
                self.schedule_pull(node, sooner);
            }
        }
    }

    fn schedule_pull(&mut self, node: usize, at: Duration) {
        self.replicas[node].next_pull = at;
        self.pulls.push(Reverse((at, node)));
    }

    /// ±25%, as the pull loop's.
    fn jittered(&mut self, pause: Duration) -> Duration {
        pause.mul_f64(self.rng.random_range(0.75..1.25))
    }

    /// One round of the pull loop for `node`.
    fn pull(&mut self, node: usize) {
        // An ordinary node of an aggregated cluster pulls from no one.
        let peer = match self.replicas[node].scope {
            Scope::OwnLog => None,
            scope => self.pick_peer(node, scope),
        };
        if let Some(peer) = peer {
            let outcome = self.pull_from(node, peer);
            let addr = gossip_sim::addr_of(peer);
            self.replicas[node].cadence.after(addr, outcome);
        }
        let pause = self.jittered(self.replicas[node].cadence.pause());
        self.schedule_pull(node, self.now() + pause);
    }

    /// A member `node`'s gossip counts alive, as the pull loop picks:
    /// any, or only aggregators.
    fn pick_peer(&mut self, node: usize, scope: Scope) -> Option<usize> {
        let gossip = self.gossip.node(node)?;
        let mut candidates: Vec<_> = gossip
            .members()
            .filter(|m| m.state == MemberState::Alive)
            .filter(|m| scope == Scope::Everyone || m.id.meta.role == Role::Aggregator)
            .map(|m| m.id.addr)
            .collect();
        // The member table is a hash map: in its order, one seed would not
        // give one run.
        candidates.sort_unstable();
        let cadence = &self.replicas[node].cadence;
        let rng = &mut self.rng;
        let addr = cadence.pick(&candidates, |len| rng.random_range(0..len))?;
        self.gossip.index_of(&addr)
    }

    /// `pull_from`'s exchanges between two replicas: the fingerprint, then
    /// while they differ, the slices that do and their missing rows.
    fn pull_from(&mut self, node: usize, peer: usize) -> Outcome {
        if !self.gossip.reachable(node, peer) {
            self.unanswered(node);
            self.counts.failed += 1;
            return Outcome::Failed;
        }
        let ours = self.vector(node);
        let fingerprint = Fingerprint {
            whole: VectorDigest::whole(&ours),
            buckets: buckets_for(ours.len()),
        };
        let request = SyncRequest::fingerprint(fingerprint);
        let answer = SyncReply {
            batch: SyncBatch::default(),
            unknown_origins: Vec::new(),
            comparison: Some(compare(&self.vector(peer), fingerprint)),
        };
        self.sync_exchange(node, peer, &request, &answer);
        let Some(Comparison::Differs(theirs)) = answer.comparison else {
            self.counts.in_sync += 1;
            return Outcome::NothingNew;
        };
        self.counts.compared += 1;
        let differing = VectorDigest::sliced(&ours, theirs.buckets).differing(&theirs);
        let only = Slices::new(theirs.buckets, differing);
        let mut fetched = 0;
        loop {
            let request = SyncRequest::within(only.clone(), only.restrict(&self.vector(node)));
            let batch = self.missing_in(peer, &request);
            let answer = SyncReply {
                batch,
                unknown_origins: Vec::new(),
                comparison: None,
            };
            self.sync_exchange(node, peer, &request, &answer);
            for event in &answer.batch.events {
                let origin = self.by_origin[&event.origin];
                self.hold(node, origin, event.seq);
                fetched += 1;
            }
            if !answer.batch.more {
                break;
            }
        }
        self.counts.rows += fetched;
        if fetched > 0 {
            Outcome::Fetched
        } else {
            Outcome::NothingNew
        }
    }

    /// One sealed request and its sealed answer, each in its HTTP head, on
    /// a short TCP connection, counted for both ends. The heads of a sync
    /// stand for every sealed exchange: each is a `POST` of sealed bytes
    /// answered with sealed bytes, by the same client and server.
    pub fn exchange(
        &mut self,
        (asker, request, asked): (usize, Purpose, &impl serde::Serialize),
        (answerer, answer, answered): (usize, Purpose, &impl serde::Serialize),
    ) {
        let channel = request;
        let request = seal_json(&self.keyring, request, asked).len() as u64;
        let answer = seal_json(&self.keyring, answer, answered).len() as u64;
        let (sent, answered) = gossip_sim::tcp_exchange_bytes(
            self.heads.request + request,
            self.heads.response + answer,
        );
        match self.channels.iter_mut().find(|(c, _)| *c == channel) {
            Some((_, bytes)) => *bytes += sent + answered,
            None => self.channels.push((channel, sent + answered)),
        }
        self.traffic[asker].sent += sent;
        self.traffic[asker].received += answered;
        self.traffic[answerer].received += sent;
        self.traffic[answerer].sent += answered;
    }

    /// A connection to a peer that is gone or cut off: a SYN into the void
    /// until the connect timeout.
    pub fn unanswered(&mut self, asker: usize) {
        self.traffic[asker].sent += gossip_sim::TCP_HEADERS;
    }

    fn sync_exchange(
        &mut self,
        asker: usize,
        answerer: usize,
        request: &SyncRequest,
        answer: &SyncReply,
    ) {
        self.exchange(
            (asker, Purpose::SyncRequest, request),
            (answerer, Purpose::SyncReply, answer),
        );
    }

    /// What `db::missing_in` answers from `peer`'s log: per origin in the
    /// slices, the rows after the asker's, up to the batch limit.
    fn missing_in(&self, peer: usize, request: &SyncRequest) -> SyncBatch {
        let only = request.only.as_ref().expect("a scoped request");
        let held = &self.replicas[peer].through;
        let mut batch = SyncBatch::default();
        for (origin, name) in self.origins.iter().enumerate() {
            if !only.contains(name) {
                continue;
            }
            let known = request.vector.get(name).copied().unwrap_or(0);
            let ours = held[origin];
            let room = (request.max_rows.min(SYNC_BATCH_ROWS) - batch.events.len()) as u64;
            let last = ours.min(known + room);
            batch
                .events
                .extend((known + 1..=last).map(|seq| self.row(origin, seq)));
            if ours > known {
                batch.through.insert(name.clone(), last);
            }
            if last < ours {
                batch.more = true;
                break;
            }
        }
        batch
    }

    /// `node`'s version vector, as `Store::version_vector` gives it.
    fn vector(&self, node: usize) -> VersionVector {
        self.origins
            .iter()
            .cloned()
            .zip(self.replicas[node].through.iter().copied())
            .collect()
    }

    /// Row `seq` of `origin`'s log: a check turning critical, with a
    /// message of the usual length.
    pub fn row(&self, origin: usize, seq: u64) -> Event {
        let node = format!("n{origin}");
        let noise = mix(origin as u64, seq);
        let CheckChange {
            check,
            old,
            new,
            message,
        } = check_change(noise, seq);
        Event {
            origin: self.origins[origin].clone(),
            seq,
            observer: node.clone(),
            // A minute apart on average, at any millisecond of it.
            at_unix_ms: 1_796_000_000_000 + seq * 60_000 + (noise >> 8) % 60_000,
            kind: EventKind::Check,
            node,
            check: Some(check.to_owned()),
            old_state: Some(old.to_owned()),
            new_state: Some(new.to_owned()),
            message,
            dedupe_key: None,
        }
    }
}

impl VirtualTime for ReplicaSim {
    fn now(&self) -> Duration {
        ReplicaSim::now(self)
    }

    fn run_for(&mut self, duration: Duration) {
        ReplicaSim::run_for(self, duration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADS: HttpHeads = HttpHeads {
        request: 130,
        response: 110,
    };

    fn keyring() -> Keyring {
        Keyring::parse(&Keyring::generate_key()).expect("a fresh key parses")
    }

    fn converged(nodes: usize, seed: u64) -> ReplicaSim {
        let mut sim = ReplicaSim::new(SimConfig::new(nodes, seed), keyring(), HEADS);
        sim.cold_start(Duration::from_secs(1));
        let done = sim.run_until(Duration::from_secs(60), Duration::from_millis(250), |s| {
            s.gossip.all_count_everyone()
        });
        assert!(done.is_some(), "{nodes} nodes converge");
        sim
    }

    /// Replicas that agree find it out in one exchange each time, and
    /// slow to the idle pace.
    #[test]
    fn agreeing_replicas_exchange_fingerprints_only() {
        let mut sim = converged(20, 3);
        sim.run_for(Duration::from_secs(120));
        let before = sim.counts;
        sim.reset_traffic();
        sim.run_for(Duration::from_secs(120));
        let pulls = sim.counts.in_sync - before.in_sync;
        assert_eq!(sim.counts.compared, before.compared, "nothing differs");
        // At the idle pace (30 s ± 25%), 20 nodes make about 80 pulls in
        // 120 s; at the base pace it would be 1,200.
        assert!((50..=120).contains(&pulls), "{pulls} pulls");
        let bytes: u64 = (0..20).map(|n| sim.traffic(n).sent).sum();
        let per_pull = bytes / pulls;
        assert!((500..2000).contains(&per_pull), "{per_pull} B per pull");
    }

    /// A row the push missed (its node cut off while it spread) comes by
    /// pull once the node is back, and only then.
    #[test]
    fn a_row_push_missed_comes_by_pull() {
        let mut sim = converged(10, 5);
        sim.run_for(Duration::from_secs(60));
        let others: Vec<usize> = (0..9).collect();
        sim.gossip.partition(&[9], &others);
        let (origin, seq) = sim.record(0).expect("gossip takes the row");
        sim.run_for(Duration::from_secs(3));
        assert_eq!(sim.holders(origin, seq), 9, "every node but the cut one");
        sim.gossip.heal();
        let came = sim.run_until(Duration::from_secs(60), Duration::from_millis(100), |s| {
            s.holders(origin, seq) == 10
        });
        assert!(came.is_some(), "the cut node pulls the row");
        assert!(sim.counts.rows >= 1, "{:?}", sim.counts);
    }
}
