//! An aggregated cluster in the simulation, on top of full replication's
//! (`starling_replicate::sim`): ordinary nodes stream their own rows to
//! the owners the real rendezvous ranking picks from their gossip view,
//! pull the health table and the window from the first aggregator that
//! answers, and aggregators pull the whole log from each other by the
//! real anti-entropy path. Every exchange is sealed as the real wire types
//! and counted with its HTTP heads. Virtual time, no sockets, no database:
//! `starling-bench scale --aggregators` drives it; not an API, hidden from
//! the docs.
//!
//! What stands in for the real parts:
//! - an aggregator's log is the order in which its replica took rows (its
//!   rowid order); every row is a new latest result of its node's one
//!   check, so the same list is the health table's revisions;
//! - every node is in aggregated mode from the start, as the mode rule
//!   decides once an aggregator is a member of a large enough cluster;
//! - nodes start and tick in phases spread evenly over each interval,
//!   where the agents' timers fall where their starts put them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use starling_gossip::sim::{SimConfig, Traffic, VirtualTime};
use starling_gossip::{MemberState, Role};
use starling_history::{CheckResult, SyncBatch};
use starling_replicate::Scope;
use starling_replicate::sim::{HttpHeads, ReplicaSim};
use starling_seal::{Keyring, Purpose};

use crate::health::WINDOW_EVERY_HEALTH_PULLS;
use crate::owners::{Aggregator, DEFAULT_REPLICAS, ranked};
use crate::serve::{HEALTH_BATCH_ROWS, WINDOW_BATCH_ROWS};
use crate::wire::{
    HealthReply, HealthRequest, StreamReply, StreamRequest, WindowReply, WindowRequest,
};
use crate::{DEFAULT_HEALTH_INTERVAL, DEFAULT_STREAM_IDLE_INTERVAL, DEFAULT_STREAM_INTERVAL};

/// What an ordinary node does on its own timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Task {
    /// A check of this node changes state: a row in its own log.
    Transition,
    /// The streamer's round.
    Stream,
    /// The health puller's round (and every third, the window's).
    HealthPull,
}

/// Where an ordinary node stands with the aggregators.
#[derive(Debug, Default)]
struct Ordinary {
    /// Per owner (by node index): the seq it acknowledged, and when.
    acked: BTreeMap<usize, (u64, Duration)>,
    /// The aggregator its health table came from, and the revision.
    health: Option<(usize, u64)>,
    /// The aggregator its window came from, and the arrival.
    window: Option<(usize, u64)>,
    health_pulls: u64,
}

#[derive(Debug)]
pub struct AggregatedSim {
    pub replicas: ReplicaSim,
    /// Nodes `0..aggregators` are the aggregators.
    aggregators: usize,
    ordinary: Vec<Ordinary>,
    tasks: BinaryHeap<Reverse<(Duration, usize, Task)>>,
    /// Between two transitions of one node; none for an idle cluster.
    transition_every: Option<Duration>,
}

impl AggregatedSim {
    /// `config.aggregators` of `config.nodes` are aggregators; each other
    /// node records `transitions_per_minute` rows a minute.
    pub fn new(
        mut config: SimConfig,
        keyring: Keyring,
        heads: HttpHeads,
        transitions_per_minute: f64,
    ) -> Self {
        config.aggregators = config.aggregators.max(1);
        let (nodes, aggregators) = (config.nodes, config.aggregators);
        let mut replicas = ReplicaSim::new(config, keyring, heads);
        for node in 0..nodes {
            if node < aggregators {
                replicas.set_scope(node, Scope::Aggregators);
                replicas.keep_arrivals(node);
            } else {
                replicas.set_scope(node, Scope::OwnLog);
            }
        }
        let transition_every = (transitions_per_minute > 0.0)
            .then(|| Duration::from_secs(60).div_f64(transitions_per_minute));
        AggregatedSim {
            replicas,
            aggregators,
            ordinary: (0..nodes).map(|_| Ordinary::default()).collect(),
            tasks: BinaryHeap::new(),
            transition_every,
        }
    }

    /// Start every node; its timers begin within their first interval.
    pub fn cold_start(&mut self, window: Duration) {
        self.replicas.cold_start(window);
        let nodes = self.ordinary.len();
        for node in self.aggregators..nodes {
            let phase = (node as f64 * 0.618_033_988_7).fract();
            let after = |interval: Duration| window + interval.mul_f64(phase);
            self.tasks.push(Reverse((
                after(DEFAULT_STREAM_INTERVAL),
                node,
                Task::Stream,
            )));
            self.tasks.push(Reverse((
                after(DEFAULT_HEALTH_INTERVAL),
                node,
                Task::HealthPull,
            )));
            if let Some(every) = self.transition_every {
                self.tasks
                    .push(Reverse((after(every), node, Task::Transition)));
            }
        }
    }

    pub fn now(&self) -> Duration {
        self.replicas.now()
    }

    pub fn aggregators(&self) -> std::ops::Range<usize> {
        0..self.aggregators
    }

    /// Bytes `node` sent and received since the last reset, every layer.
    pub fn traffic(&self, node: usize) -> Traffic {
        let (gossip, above) = (
            self.replicas.gossip.traffic(node),
            self.replicas.traffic(node),
        );
        Traffic {
            sent: gossip.sent + above.sent,
            received: gossip.received + above.received,
        }
    }

    /// Aggregators holding row `seq` of `origin`'s log.
    pub fn on_aggregators(&self, origin: usize, seq: u64) -> usize {
        self.aggregators()
            .filter(|&a| self.replicas.gossip.is_running(a))
            .filter(|&a| self.replicas.through(a, origin) >= seq)
            .count()
    }

    /// Rows of ordinary nodes' logs that fewer than `copies` running
    /// aggregators hold.
    pub fn rows_on_fewer_than(&self, copies: usize) -> u64 {
        (self.aggregators..self.ordinary.len())
            .map(|node| {
                let own = self.replicas.through(node, node);
                (1..=own)
                    .filter(|&seq| self.on_aggregators(node, seq) < copies)
                    .count() as u64
            })
            .sum()
    }

    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now() + duration;
        while let Some(&Reverse((at, node, task))) = self.tasks.peek() {
            if at > until {
                break;
            }
            self.tasks.pop();
            self.replicas.run_for(at - self.now());
            if !self.replicas.gossip.is_running(node) {
                continue;
            }
            let next = match task {
                Task::Transition => {
                    // An ordinary node spreads nothing: the error is
                    // gossip's, and no rumor is asked of it here.
                    let _ = self.replicas.record(node);
                    self.transition_every.expect("scheduled only with a rate")
                }
                Task::Stream => {
                    self.stream_round(node);
                    DEFAULT_STREAM_INTERVAL
                }
                Task::HealthPull => {
                    self.health_round(node);
                    DEFAULT_HEALTH_INTERVAL
                }
            };
            self.tasks.push(Reverse((at + next, node, task)));
        }
        self.replicas.run_for(until - self.now());
    }

    /// The aggregators `node`'s gossip counts alive, ranked for it (as
    /// `alive_aggregators` and `ranked` do from the agent's view). The
    /// simulation's nodes publish no API address: their gossip address
    /// stands in for it, to find the node again.
    fn ranked_for(&self, node: usize) -> Vec<usize> {
        let Some(gossip) = self.replicas.gossip.node(node) else {
            return Vec::new();
        };
        let alive: Vec<Aggregator> = gossip
            .members()
            .filter(|m| m.state == MemberState::Alive && m.id.meta.role == Role::Aggregator)
            .map(|m| Aggregator {
                name: m.id.name.clone(),
                api: m.id.addr,
            })
            .collect();
        ranked(&name(node), &alive)
            .iter()
            .filter_map(|a| self.replicas.gossip.index_of(&a.api))
            .collect()
    }

    /// The streamer's round: each owner that lacks rows, or has gone
    /// unasked for the idle interval, gets what it lacks.
    fn stream_round(&mut self, node: usize) {
        // `owners` is the rank cut to the replication factor.
        let owners: Vec<usize> = self
            .ranked_for(node)
            .into_iter()
            .take(DEFAULT_REPLICAS)
            .collect();
        let now = self.now();
        self.ordinary[node].acked.retain(|a, _| owners.contains(a));
        let own = self.replicas.through(node, node);
        for owner in owners {
            let due = self.ordinary[node]
                .acked
                .get(&owner)
                .is_none_or(|&(through, at)| {
                    through < own || now - at >= DEFAULT_STREAM_IDLE_INTERVAL
                });
            if !due {
                continue;
            }
            if !self.replicas.gossip.reachable(node, owner) {
                self.replicas.unanswered(node);
                continue;
            }
            // A first contact learns where the owner stands, with nothing.
            let from = match self.ordinary[node].acked.get(&owner) {
                Some(&(through, _)) => through,
                None => self.stream(node, owner, 0, 0),
            };
            let through = if from < own {
                self.stream(node, owner, from, own)
            } else {
                from
            };
            self.ordinary[node].acked.insert(owner, (through, now));
        }
    }

    /// One stream of `node`'s rows `from+1..=to` to `owner`, which takes
    /// them; its acknowledgement.
    fn stream(&mut self, node: usize, owner: usize, from: u64, to: u64) -> u64 {
        let origin = self.replicas.origin(node).to_owned();
        let mut batch = SyncBatch::default();
        if to > from {
            batch.events = (from + 1..=to)
                .map(|seq| self.replicas.row(node, seq))
                .collect();
            batch.through.insert(origin.clone(), to);
        }
        let request = StreamRequest {
            node: name(node),
            origin: origin.clone(),
            from,
            batch,
        };
        // The aggregator takes the batch only from where it stands.
        if self.replicas.through(owner, node) >= from {
            for seq in from + 1..=to {
                self.replicas.hold(owner, node, seq);
            }
        }
        let reply = StreamReply {
            aggregator: name(owner),
            epoch: self.replicas.origin(owner).to_owned(),
            origin,
            through: self.replicas.through(owner, node),
        };
        self.replicas.exchange(
            (node, Purpose::StreamRequest, &request),
            (owner, Purpose::StreamReply, &reply),
        );
        reply.through
    }

    /// The health puller's round: the changes since its revision, from
    /// the first aggregator in rank order that answers; every third round
    /// the window too, from the same one.
    fn health_round(&mut self, node: usize) {
        let with_window = self.ordinary[node]
            .health_pulls
            .is_multiple_of(WINDOW_EVERY_HEALTH_PULLS);
        self.ordinary[node].health_pulls += 1;
        for aggregator in self.ranked_for(node) {
            if !self.replicas.gossip.reachable(node, aggregator) {
                self.replicas.unanswered(node);
                continue;
            }
            self.pull_health(node, aggregator);
            if with_window {
                self.pull_window(node, aggregator);
            }
            return;
        }
    }

    fn pull_health(&mut self, node: usize, aggregator: usize) {
        let epoch = self.replicas.origin(aggregator).to_owned();
        let mut after = match self.ordinary[node].health {
            Some((from, revision)) if from == aggregator => revision,
            _ => 0,
        };
        loop {
            let request = HealthRequest {
                epoch: (after > 0).then(|| epoch.clone()),
                after,
            };
            // The latest revision of each node's row after `after`.
            let arrivals = self.replicas.arrivals(aggregator);
            let mut latest: BTreeMap<usize, u64> = BTreeMap::new();
            for (index, &(origin, _)) in arrivals.iter().enumerate().skip(after as usize) {
                latest.insert(origin, index as u64 + 1);
            }
            let mut changed: Vec<(u64, usize)> = latest.into_iter().map(|(o, r)| (r, o)).collect();
            changed.sort_unstable();
            let more = changed.len() > HEALTH_BATCH_ROWS;
            changed.truncate(HEALTH_BATCH_ROWS);
            after = changed.last().map_or(after, |&(revision, _)| revision);
            let reply = HealthReply {
                aggregator: name(aggregator),
                epoch: epoch.clone(),
                changed: changed
                    .iter()
                    .map(|&(_, origin)| self.result(origin))
                    .collect(),
                through: after,
                more,
            };
            self.replicas.exchange(
                (node, Purpose::HealthRequest, &request),
                (aggregator, Purpose::HealthReply, &reply),
            );
            if !more {
                break;
            }
        }
        self.ordinary[node].health = Some((aggregator, after));
    }

    fn pull_window(&mut self, node: usize, aggregator: usize) {
        let epoch = self.replicas.origin(aggregator).to_owned();
        let after = match self.ordinary[node].window {
            Some((from, arrival)) if from == aggregator => arrival,
            _ => 0,
        };
        let arrivals = self.replicas.arrivals(aggregator);
        let through = arrivals.len() as u64;
        let newest = arrivals
            .iter()
            .skip(after as usize)
            .rev()
            .take(WINDOW_BATCH_ROWS)
            .rev()
            .map(|&(origin, seq)| self.replicas.row(origin, seq))
            .collect();
        let request = WindowRequest {
            epoch: (after > 0).then(|| epoch.clone()),
            after,
        };
        let reply = WindowReply {
            aggregator: name(aggregator),
            epoch,
            events: newest,
            through,
        };
        self.replicas.exchange(
            (node, Purpose::WindowRequest, &request),
            (aggregator, Purpose::WindowReply, &reply),
        );
        self.ordinary[node].window = Some((aggregator, through));
    }

    /// The latest result of `node`'s check, as an aggregator's table has
    /// it: from the node's newest row, as every replica takes it.
    fn result(&self, node: usize) -> CheckResult {
        let row = self.replicas.row(node, self.replicas.through(node, node));
        CheckResult::from_transition(&row).expect("simulated rows are check transitions")
    }
}

impl VirtualTime for AggregatedSim {
    fn now(&self) -> Duration {
        AggregatedSim::now(self)
    }

    fn run_for(&mut self, duration: Duration) {
        AggregatedSim::run_for(self, duration);
    }
}

/// The gossip simulation's name for a node.
fn name(node: usize) -> String {
    format!("n{node}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADS: HttpHeads = HttpHeads {
        request: 130,
        response: 110,
    };

    fn cluster(nodes: usize, aggregators: usize, per_minute: f64) -> AggregatedSim {
        let mut config = SimConfig::new(nodes, 7);
        config.aggregators = aggregators;
        let keyring = Keyring::parse(&Keyring::generate_key()).expect("a fresh key parses");
        let mut sim = AggregatedSim::new(config, keyring, HEADS, per_minute);
        sim.cold_start(Duration::from_secs(1));
        let converged = sim.run_until(Duration::from_secs(60), Duration::from_millis(250), |s| {
            s.replicas.gossip.all_count_everyone()
        });
        assert!(converged.is_some(), "{nodes} nodes converge");
        sim
    }

    /// A row is on both owners within a stream interval and a round trip,
    /// and on every aggregator once they pull from each other; ordinary
    /// nodes pull from no one.
    #[test]
    fn a_row_reaches_its_owners_then_every_aggregator() {
        let mut sim = cluster(20, 3, 0.0);
        sim.run_for(Duration::from_secs(10));
        let pulls = sim.replicas.counts;
        let (origin, seq) = sim.replicas.record(10).expect("recorded");
        let recorded = sim.now();
        let owned = sim.run_until(Duration::from_secs(5), Duration::from_millis(10), |s| {
            s.on_aggregators(origin, seq) >= 2
        });
        let owned = owned.expect("both owners take it") - recorded;
        assert!(owned <= Duration::from_millis(1100), "{owned:?}");
        let everywhere = sim.run_until(Duration::from_secs(90), Duration::from_millis(100), |s| {
            s.on_aggregators(origin, seq) == 3
        });
        assert!(everywhere.is_some(), "the third aggregator pulls it");
        // Only the 3 aggregators pull, one pull at a time each, at most
        // every 1.5 s (2 s less its jitter).
        let made = sim.replicas.counts.in_sync + sim.replicas.counts.compared
            - pulls.in_sync
            - pulls.compared;
        let bound = 3 * ((sim.now() - recorded).as_millis() as u64 / 1500 + 1);
        assert!(made <= bound, "{made} pulls, at most {bound}");
    }

    /// An owner killed -9 with rows flowing: its nodes stream to the next
    /// aggregator in rank, and every row ends on two running aggregators.
    #[test]
    fn a_killed_owner_is_replaced_and_no_row_is_lost() {
        let mut sim = cluster(30, 3, 6.0);
        sim.run_for(Duration::from_secs(30));
        assert_eq!(sim.rows_on_fewer_than(2), 0, "before the kill");
        sim.replicas.gossip.kill(0);
        // The newest rows were on the dead one and one other only.
        assert!(sim.rows_on_fewer_than(2) > 0, "the kill exposes rows");
        sim.run_for(Duration::from_secs(30));
        let whole = sim.run_until(Duration::from_secs(60), Duration::from_secs(1), |s| {
            s.rows_on_fewer_than(2) == 0
        });
        assert!(
            whole.is_some(),
            "{} rows on one aggregator",
            sim.rows_on_fewer_than(2)
        );
        let rows: u64 = (3..30).map(|n| sim.replicas.through(n, n) - 1).sum();
        assert!(rows > 27 * 5, "{rows} rows recorded");
    }
}
