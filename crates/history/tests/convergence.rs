//! Property: whatever the interleaving of event creation, lost pushes,
//! partitions and heals between up to 10 replicas, once healed and after
//! n − 1 rounds of anti-entropy every replica holds exactly the same set
//! of events, each once.
//!
//! The replicas are real SQLite databases (in memory) driven through the
//! same functions the agent's push and pull paths call; only the network
//! is simulated.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use rusqlite::Connection;
use starling_history::db;
use starling_history::{Event, EventKind, NewEvent};

/// Rows per sync answer: tiny, so paging is exercised on every pull.
const BATCH_ROWS: usize = 3;

#[derive(Clone, Debug)]
enum Step {
    /// Replica `at` records an event and pushes it; bit i of `lost` drops
    /// the push to replica i.
    Create {
        at: usize,
        lost: u16,
    },
    /// Replicas whose bit is set form one side, the others the other.
    Partition {
        side: u16,
    },
    Heal,
    /// `from` pulls from `peer`, if they can reach each other.
    Pull {
        from: usize,
        peer: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..10usize, any::<u16>()).prop_map(|(at, lost)| Step::Create { at, lost }),
        1 => any::<u16>().prop_map(|side| Step::Partition { side }),
        1 => Just(Step::Heal),
        3 => (0..10usize, 0..10usize).prop_map(|(from, peer)| Step::Pull { from, peer }),
    ]
}

struct Replica {
    conn: Connection,
    origin: String,
    name: String,
}

struct Cluster {
    replicas: Vec<Replica>,
    /// Which side of the partition each replica is on.
    side: Vec<bool>,
    clock: u64,
}

impl Cluster {
    fn new(n: usize) -> Self {
        let replicas = (0..n)
            .map(|i| {
                let name = format!("node-{i}");
                let (conn, origin) = db::open_in_memory(&name).expect("in-memory database");
                Replica { conn, origin, name }
            })
            .collect();
        Cluster {
            replicas,
            side: vec![false; n],
            clock: 1_700_000_000_000,
        }
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        self.side[a] == self.side[b]
    }

    fn create(&mut self, at: usize, lost: u16) {
        self.clock += 1;
        let replica = &mut self.replicas[at];
        let new = NewEvent {
            at_unix_ms: self.clock,
            kind: EventKind::Annotation,
            node: replica.name.clone(),
            check: None,
            old_state: None,
            new_state: None,
            message: format!("event {} of {}", self.clock, replica.name),
            dedupe_key: None,
        };
        let tx = replica.conn.transaction().expect("begin");
        let event = db::record_local(&tx, &replica.origin, &replica.name, &new, self.clock)
            .expect("record");
        tx.commit().expect("commit");
        for to in 0..self.replicas.len() {
            if to != at && self.reachable(at, to) && lost & (1 << to) == 0 {
                self.push(to, event.clone());
            }
        }
    }

    fn push(&mut self, to: usize, event: Event) {
        let tx = self.replicas[to].conn.transaction().expect("begin");
        db::insert_replicated(&tx, &[event], self.clock).expect("insert");
        tx.commit().expect("commit");
    }

    /// Exactly the agent's pull: send our vector, apply the answer, again
    /// while the peer says there is more.
    fn pull(&mut self, from: usize, peer: usize) {
        if from == peer || !self.reachable(from, peer) {
            return;
        }
        for _ in 0..10_000 {
            let vector = db::version_vector(&self.replicas[from].conn).expect("vector");
            let batch = db::missing_for(&self.replicas[peer].conn, &vector, BATCH_ROWS)
                .expect("missing rows");
            let tx = self.replicas[from].conn.transaction().expect("begin");
            db::apply_batch(&tx, &batch, self.clock).expect("apply");
            tx.commit().expect("commit");
            if !batch.more {
                return;
            }
        }
        panic!("a pull from {peer} to {from} never finished paging");
    }

    fn rows(&self, at: usize) -> Vec<(String, u64, String)> {
        let mut stmt = self.replicas[at]
            .conn
            .prepare("SELECT origin, seq, message FROM events ORDER BY origin, seq")
            .expect("query");
        stmt.query_map([], |row| {
            Ok((row.get(0)?, row.get::<_, i64>(1)? as u64, row.get(2)?))
        })
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows decode")
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_to_the_same_events(
        n in 2..=10usize,
        steps in proptest::collection::vec(step(), 1..80),
    ) {
        let mut cluster = Cluster::new(n);
        let mut created = 0usize;
        for step in steps {
            match step {
                Step::Create { at, lost } => {
                    cluster.create(at % n, lost);
                    created += 1;
                }
                Step::Partition { side } => {
                    cluster.side = (0..n).map(|i| side & (1 << i) != 0).collect();
                }
                Step::Heal => cluster.side = vec![false; n],
                Step::Pull { from, peer } => cluster.pull(from % n, peer % n),
            }
        }
        cluster.side = vec![false; n];
        // Round k: replica i pulls from i + k. After n − 1 rounds each has
        // pulled from every origin's own node, which holds all its rows.
        for round in 1..n {
            for i in 0..n {
                cluster.pull(i, (i + round) % n);
            }
        }
        let reference = cluster.rows(0);
        let distinct: BTreeSet<_> = reference.iter().map(|(o, s, _)| (o.clone(), *s)).collect();
        prop_assert_eq!(distinct.len(), reference.len(), "no duplicates");
        prop_assert_eq!(reference.len(), created, "every created event is held");
        for i in 1..n {
            prop_assert_eq!(&cluster.rows(i), &reference, "replica {} differs", i);
        }
        // The version vectors agree too: nothing left to sync.
        let vectors: Vec<BTreeMap<String, u64>> = (0..n)
            .map(|i| db::version_vector(&cluster.replicas[i].conn).expect("vector"))
            .collect();
        for vector in &vectors[1..] {
            prop_assert_eq!(vector, &vectors[0]);
        }
    }
}
