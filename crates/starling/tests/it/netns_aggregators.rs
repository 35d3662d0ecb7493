//! An aggregated cluster of real agent processes in network namespaces:
//! eight ordinary nodes and three aggregators, one aggregator cut off by
//! a partition while events flow. Every acknowledged event stays
//! queryable from every node, and the cut-off aggregator catches up.
//!
//! Needs root (namespaces); skips with a message elsewhere, and fails
//! instead of skipping when STARLING_REQUIRE_NETNS=1 (as in CI).

use std::time::Duration;

use crate::support::lab::{self, Cluster};

const FORM: Duration = Duration::from_secs(45);
const CONVERGE: Duration = Duration::from_secs(30);
const NODES: usize = 8;
const AGGREGATORS: [usize; 3] = [8, 9, 10];

#[test]
fn a_partitioned_aggregator_loses_nothing_and_every_node_answers_for_every_event() {
    let Some(mut cluster) = Cluster::with_spare_hosts(NODES, AGGREGATORS.len(), |_| Vec::new())
    else {
        return;
    };
    for host in AGGREGATORS {
        cluster.start_with(host, &["--role", "aggregator"]);
    }
    let all: Vec<usize> = (0..NODES).chain(AGGREGATORS).collect();
    let nodes: Vec<usize> = (0..NODES).collect();
    cluster.expect("11 agents see 11 alive", FORM, || {
        cluster.all_see(&all, &all, "alive")
    });
    let mut acked = Vec::new();
    for &host in &nodes {
        acked.push(
            cluster
                .annotate(host, "before the cut")
                .expect("acknowledged"),
        );
    }
    let cut = AGGREGATORS[0];
    let rest: Vec<usize> = all.iter().copied().filter(|&h| h != cut).collect();
    cluster.lab.partition(&[cut], &rest).expect("partition");
    for &host in &nodes {
        acked.push(
            cluster
                .annotate(host, "during the cut")
                .expect("acknowledged"),
        );
    }
    cluster.expect("every node answers for every event", CONVERGE, || {
        nodes.iter().all(|&h| cluster.holds(h, &acked))
    });
    let page = cluster.history_page(nodes[3]).expect("answers");
    let served_by = page.served_by.expect("says who served it");
    assert!(
        AGGREGATORS.iter().any(|&a| Cluster::name(a) == served_by),
        "{served_by} is not an aggregator"
    );
    cluster.lab.heal().expect("heal");
    cluster.expect("the cut-off aggregator holds every event", CONVERGE, || {
        cluster.holds(cut, &acked)
    });
    let keys = lab::keys(&cluster.history(AGGREGATORS[1]).expect("answers"));
    assert!(acked.iter().all(|k| keys.contains(k)));
}
