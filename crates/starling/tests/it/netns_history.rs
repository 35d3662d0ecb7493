//! The replicated history with real `starling agent` processes in network
//! namespaces: partitions, kill -9 in the middle of writes, and survivors
//! answering for the dead.
//!
//! Needs root (namespaces); skips with a message elsewhere, and fails
//! instead of skipping when STARLING_REQUIRE_NETNS=1 (as in CI).

use std::collections::BTreeSet;
use std::time::Duration;

use starling_model::{EventKind, HistoryEvent};

use crate::support::lab;
use lab::{Cluster, STARLING, keys, parse_ack};

const FORM: Duration = Duration::from_secs(30);
const CONVERGE: Duration = Duration::from_secs(30);

/// Membership rows about `node` that say it went `state`.
fn membership_rows(events: &[HistoryEvent], node: &str, state: &str) -> usize {
    events
        .iter()
        .filter(|e| {
            e.kind == EventKind::Membership
                && e.node == node
                && e.new_state.as_deref() == Some(state)
        })
        .count()
}

fn downs_of(events: &[HistoryEvent], node: &str) -> usize {
    membership_rows(events, node, "down")
}

fn isolations_of(events: &[HistoryEvent], node: &str) -> usize {
    membership_rows(events, node, "isolated")
}

#[test]
fn events_from_both_sides_of_a_partition_reach_all_five_after_it_heals() {
    let Some(cluster) = Cluster::new(5) else {
        return;
    };
    let all: Vec<usize> = (0..5).collect();
    cluster.expect("5 agents see 5 alive", FORM, || {
        cluster.all_see(&all, &all, "alive")
    });
    cluster
        .lab
        .partition(&[0, 1], &[2, 3, 4])
        .expect("partition");
    cluster.expect("each side sees the other down", CONVERGE, || {
        cluster.all_see(&[0, 1], &[2, 3, 4], "down") && cluster.all_see(&[2, 3, 4], &[0, 1], "down")
    });
    let left = cluster
        .annotate(0, "written on the small side")
        .expect("acknowledged");
    let right = cluster
        .annotate(3, "written on the large side")
        .expect("acknowledged");
    // Each side holds its own events (and its Down records of the other).
    cluster.expect("each side replicated its own event", CONVERGE, || {
        cluster.holds(1, std::slice::from_ref(&left))
            && cluster.holds(4, std::slice::from_ref(&right))
    });
    // The small side judges itself cut off while the split lasts, whoever
    // of its two members declared the other side down first.
    cluster.expect(
        "the small side recorded that it was cut off",
        CONVERGE,
        || {
            [0, 1].iter().all(|&h| {
                cluster
                    .history(h)
                    .is_some_and(|events| isolations_of(&events, &Cluster::name(h)) >= 1)
            })
        },
    );
    let before_heal: BTreeSet<_> = [0, 3]
        .iter()
        .flat_map(|&h| keys(&cluster.history(h).expect("answers")))
        .collect();
    cluster.lab.heal().expect("heal");
    cluster.expect("all five alive again", FORM, || {
        cluster.all_see(&all, &all, "alive")
    });
    let wanted: Vec<(String, u64)> = before_heal.into_iter().collect();
    cluster.expect("every host holds both sides' events", CONVERGE, || {
        all.iter().all(|&h| cluster.holds(h, &wanted))
    });
    cluster.expect("all five hold the same log", CONVERGE, || {
        let logs: Vec<_> = all
            .iter()
            .map(|&h| cluster.history(h).map(|e| keys(&e)))
            .collect();
        logs.iter().all(|log| log.is_some() && log == &logs[0])
    });
    let events = cluster.history(2).expect("answers");
    for side in [&left, &right] {
        assert!(keys(&events).contains(side), "{side:?} missing");
    }
    // The majority recorded each member it lost, never twice; the
    // minority, whose view is not the cluster's, recorded that it was cut
    // off instead.
    for node in ["host-0", "host-1"] {
        assert!(downs_of(&events, node) <= 1, "{node}: {events:#?}");
        assert!(isolations_of(&events, node) >= 1, "{node}: {events:#?}");
    }
    for node in ["host-2", "host-3", "host-4"] {
        assert_eq!(downs_of(&events, node), 0, "{node}: {events:#?}");
    }
}

/// Issue: a node whose link flapped (down 3 s, up 3 s) recorded the
/// healthy members down from its side, and after each heal those rows
/// said healthy nodes went down in every history. Now the flapping node
/// records that it was cut off, the others record it down, and no healthy
/// node is ever recorded down: with the flap, and with one longer cut.
#[test]
fn a_cut_off_node_records_its_isolation_and_no_healthy_node_is_recorded_down() {
    let Some(cluster) = Cluster::new(5) else {
        return;
    };
    let all: Vec<usize> = (0..5).collect();
    let (cut, rest) = ([2], [0, 1, 3, 4]);
    cluster.expect("5 agents see 5 alive", FORM, || {
        cluster.all_see(&all, &all, "alive")
    });
    for _ in 0..5 {
        cluster.lab.partition(&cut, &rest).expect("partition");
        std::thread::sleep(Duration::from_secs(3));
        cluster.lab.heal().expect("heal");
        std::thread::sleep(Duration::from_secs(3));
    }
    cluster.lab.partition(&cut, &rest).expect("partition");
    cluster.expect("the cut node sees everyone down", CONVERGE, || {
        cluster.all_see(&cut, &rest, "down") && cluster.all_see(&rest, &cut, "down")
    });
    cluster.lab.heal().expect("heal");
    cluster.expect("all five alive again", FORM, || {
        cluster.all_see(&all, &all, "alive")
    });
    cluster.expect("all five hold the same log", CONVERGE, || {
        let logs: Vec<_> = all
            .iter()
            .map(|&h| cluster.history(h).map(|e| keys(&e)))
            .collect();
        logs.iter().all(|log| log.is_some() && log == &logs[0])
    });
    for host in all {
        let events = cluster.history(host).expect("answers");
        for healthy in rest {
            let name = Cluster::name(healthy);
            assert_eq!(
                downs_of(&events, &name),
                0,
                "{name} recorded down: {events:#?}"
            );
        }
        let name = Cluster::name(cut[0]);
        assert!(downs_of(&events, &name) >= 1, "{events:#?}");
        assert!(isolations_of(&events, &name) >= 1, "{events:#?}");
    }
}

#[test]
fn kill_9_in_the_middle_of_writes_loses_nothing_acknowledged() {
    let Some(mut cluster) = Cluster::new(5) else {
        return;
    };
    let all: Vec<usize> = (0..5).collect();
    cluster.expect("5 agents see 5 alive", FORM, || {
        cluster.all_see(&all, &all, "alive")
    });
    let addr = format!("{}:7947", cluster.lab.addr(2));
    let key = lab::path(cluster.key());
    // Annotations as fast as the CLI can send them, until the agent dies.
    let script = format!(
        "i=0; while [ $i -lt 5000 ]; do \
         {STARLING} annotate --addr {addr} --gossip-key-file {key} \"burst $i\" || exit 0; \
         i=$((i+1)); done"
    );
    let (lab, agents) = (&cluster.lab, &mut cluster.agents);
    let acknowledged = std::thread::scope(|scope| {
        let writer = scope.spawn(|| lab.run_in(2, "sh", &["-c", &script]));
        std::thread::sleep(Duration::from_secs(3));
        let victim = agents[2].as_mut().expect("host 2 runs an agent");
        victim.kill9().expect("kill -9");
        let output = writer.join().expect("writer thread").expect("writer ran");
        let acks: Vec<(String, u64)> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(parse_ack)
            .collect();
        acks
    });
    assert!(
        acknowledged.len() >= 20,
        "too few writes before the kill to prove anything: {}",
        acknowledged.len()
    );
    // Written while host 2 is dead: it must catch up by pull.
    let missed = cluster
        .annotate(0, "while host-2 was dead")
        .expect("acknowledged");
    cluster.start(2);
    cluster.expect("the restarted agent answers", FORM, || {
        cluster.history(2).is_some()
    });
    let events = cluster.history(2).expect("answers");
    let held = keys(&events);
    let lost: Vec<_> = acknowledged.iter().filter(|k| !held.contains(k)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but lost after kill -9: {lost:?}"
    );
    let origin = &acknowledged[0].0;
    let last = acknowledged.iter().map(|(_, s)| *s).max().expect("some");
    let next = cluster
        .annotate(2, "after the restart")
        .expect("acknowledged");
    assert_eq!(&next.0, origin, "the restarted agent keeps its log");
    assert!(
        next.1 > last,
        "sequence number {} reused (last acknowledged {last})",
        next.1
    );
    let mut wanted = acknowledged.clone();
    wanted.push(missed);
    wanted.push(next);
    cluster.expect(
        "every host holds every acknowledged write",
        CONVERGE,
        || all.iter().all(|&h| cluster.holds(h, &wanted)),
    );
}

#[test]
fn two_survivors_of_five_answer_with_the_whole_clusters_history() {
    let Some(mut cluster) = Cluster::new(5) else {
        return;
    };
    let all: Vec<usize> = (0..5).collect();
    cluster.expect("5 agents see 5 alive", FORM, || {
        cluster.all_see(&all, &all, "alive")
    });
    let last_words: Vec<(String, u64)> = (2..5)
        .map(|h| {
            cluster
                .annotate(h, &format!("last words of host-{h}"))
                .expect("acknowledged")
        })
        .collect();
    cluster.expect("the last words reached the survivors", CONVERGE, || {
        cluster.holds(0, &last_words) && cluster.holds(1, &last_words)
    });
    for host in 2..5 {
        cluster.process(host).kill9().expect("kill -9");
    }
    cluster.expect("the survivors see the three down", CONVERGE, || {
        cluster.all_see(&[0, 1], &[2, 3, 4], "down")
    });
    // Two of five cannot tell three deaths from their own isolation: each
    // records that it lost contact with the three, not three Downs.
    cluster.expect(
        "each survivor holds both survivors' losses, naming the three",
        CONVERGE,
        || {
            [0, 1].iter().all(|&h| {
                cluster.history(h).is_some_and(|events| {
                    (0..2).all(|s| {
                        events.iter().any(|e| {
                            e.node == format!("host-{s}")
                                && e.new_state.as_deref() == Some("isolated")
                                && e.message.contains("lost contact with")
                        })
                    }) && (2..5).all(|d| downs_of(&events, &format!("host-{d}")) == 0)
                })
            })
        },
    );
    for survivor in [0, 1] {
        let events = cluster.history(survivor).expect("answers");
        assert!(cluster.holds(survivor, &last_words));
        for host in 0..5 {
            let name = format!("host-{host}");
            assert!(
                events
                    .iter()
                    .any(|e| e.node == name && e.new_state.as_deref() == Some("alive")),
                "{name}'s join missing at host-{survivor}"
            );
        }
    }
}
