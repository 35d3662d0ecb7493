//! The overlay end to end: real agents on each namespace's underlay
//! (`eth0`, gossip) and real `starling probe` processes on a VXLAN overlay
//! (`vx0`, the pod network). Overlay faults are nft drops on the overlay
//! only, so gossip keeps seeing every node alive.
//!
//! Needs root; skips with a message without it, and fails instead when
//! STARLING_REQUIRE_NETNS=1 (as in CI).

use std::path::Path;
use std::time::{Duration, Instant};

use starling_model::{NodeHealth, Status};

use starling_testkit::LabProcess;

use crate::support::lab;
use lab::{Cluster, STARLING, path};

/// A window of 5 s with a ping every 100 ms: 50 pings, enough that 10%
/// random loss stays well under the 20% limit.
const WINDOW: Duration = Duration::from_secs(5);
/// Detection takes about a window and a fifth (loss crosses 20% after a
/// fifth of a window, then must hold for one); plus replication.
const PATIENCE: Duration = Duration::from_secs(30);

fn overlay_flags() -> Vec<String> {
    [
        "--overlay-interval",
        "100ms",
        "--overlay-window",
        "5s",
        "--overlay-report-interval",
        "500ms",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A cluster of `hosts` agents with an overlay, and a probe per host.
fn overlay_cluster(hosts: usize) -> Option<(Cluster, Vec<LabProcess>)> {
    let cluster = Cluster::with_args(hosts, |lab| {
        lab.add_overlay().expect("VXLAN overlay in the lab");
        overlay_flags()
    })?;
    let probes = (0..hosts).map(|host| start_probe(&cluster, host)).collect();
    Some((cluster, probes))
}

fn start_probe(cluster: &Cluster, host: usize) -> LabProcess {
    let lab = &cluster.lab;
    let args = [
        "probe".to_owned(),
        "--node-name".to_owned(),
        Cluster::name(host),
        "--listen".to_owned(),
        format!("{}:7949", lab.overlay_addr(host)),
        "--agent".to_owned(),
        format!("http://{}:7947", lab.addr(host)),
        "--gossip-key-file".to_owned(),
        path(cluster.key()),
    ];
    lab.spawn(host, Path::new(STARLING), &args, &[])
        .expect("probe spawns in its namespace")
}

fn reasons(cluster: &Cluster, observer: usize) -> Vec<String> {
    cluster
        .status(observer)
        .map(|s| s.reasons)
        .unwrap_or_else(|| vec!["<no answer>".to_owned()])
}

/// Every path between the `hosts` nodes is measured and ok, as every one
/// of them sees it.
fn all_paths_ok(cluster: &Cluster, hosts: usize) -> bool {
    (0..hosts).all(|o| {
        cluster.overlay(o).is_some_and(|m| {
            m.paths.len() == hosts * (hosts - 1) && m.paths.iter().all(|p| p.status == Status::Ok)
        })
    })
}

fn every_agent_says(cluster: &Cluster, hosts: &[usize], what: &str) -> bool {
    hosts
        .iter()
        .all(|&o| reasons(cluster, o).iter().any(|r| r.contains(what)))
}

#[test]
fn a_broken_path_a_broken_pod_network_and_a_dead_node_are_told_apart() {
    let Some((mut cluster, mut probes)) = overlay_cluster(4) else {
        return;
    };
    let all = [0, 1, 2, 3];
    cluster.expect("every path measured and ok everywhere", PATIENCE, || {
        all_paths_ok(&cluster, 4)
    });
    // The probes' addresses came through gossip metadata.
    let members = cluster.members(2).expect("members");
    for (host, member) in members.members.iter().enumerate() {
        let expected = format!("{}:7949", cluster.lab.overlay_addr(host));
        assert_eq!(member.probe_addr.as_deref(), Some(expected.as_str()));
    }

    // host-0 ↔ host-1 on the overlay only.
    cluster.lab.cut_overlay(&[0], &[1]).expect("cut");
    let cut_at = Instant::now();
    cluster.expect("every agent reports the path", PATIENCE, || {
        every_agent_says(&cluster, &all, "overlay path host-0↔host-1 broken")
    });
    eprintln!(
        "path break reported everywhere after {:?}",
        cut_at.elapsed()
    );
    for observer in all {
        let status = cluster.status(observer).expect("status");
        assert_eq!(status.reasons, ["overlay path host-0↔host-1 broken"]);
        assert!(
            status.nodes.iter().all(|n| n.status == NodeHealth::Healthy),
            "{status:#?}"
        );
    }
    assert!(
        cluster.all_see(&all, &all[1..], "alive"),
        "gossip still sees everyone"
    );
    let matrix = cluster.overlay(3).expect("matrix");
    let status_of = |from: &str, to: &str| {
        matrix
            .paths
            .iter()
            .find(|p| p.from == from && p.to == to)
            .map(|p| p.status)
    };
    assert_eq!(status_of("host-0", "host-1"), Some(Status::Critical));
    assert_eq!(status_of("host-1", "host-0"), Some(Status::Critical));
    assert_eq!(status_of("host-2", "host-1"), Some(Status::Ok));

    // Healed: all clear within a window (plus the report and replication).
    cluster.lab.heal_overlay().expect("heal");
    let healed_at = Instant::now();
    cluster.expect("all clear", WINDOW * 2, || {
        all.iter().all(|&o| reasons(&cluster, o).is_empty())
    });
    eprintln!("all clear after {:?}", healed_at.elapsed());

    // host-1's pod network is gone for everyone.
    cluster.lab.cut_overlay(&[1], &[0, 2, 3]).expect("cut");
    cluster.expect("host-1's pod network blamed", PATIENCE, || {
        every_agent_says(&cluster, &all, "host-1's pod network is broken")
    });
    for observer in all {
        let status = cluster.status(observer).expect("status");
        assert_eq!(
            status.reasons.len(),
            1,
            "one verdict, no paths: {:?}",
            status.reasons
        );
        let host1 = status
            .nodes
            .iter()
            .find(|n| n.name == "host-1")
            .expect("listed");
        assert_eq!(host1.status, NodeHealth::Degraded);
    }
    cluster.lab.heal_overlay().expect("heal");
    cluster.expect("all clear", WINDOW * 2, || {
        all.iter().all(|&o| reasons(&cluster, o).is_empty())
    });

    // host-1 dies (agent and probe): it is down, and the overlay is not
    // blamed for it.
    cluster.process(1).kill9().expect("kill agent");
    probes[1].kill9().expect("kill probe");
    let survivors = [0, 2, 3];
    cluster.expect("host-1 down everywhere", PATIENCE, || {
        cluster.all_see(&survivors, &[1], "down")
    });
    // Longer than a window, so paths to host-1 would have gone critical.
    std::thread::sleep(WINDOW + Duration::from_secs(2));
    for observer in survivors {
        let reasons = reasons(&cluster, observer);
        assert_eq!(reasons, ["host-1: gossip: down"], "host {observer}");
        let matrix = cluster.overlay(observer).expect("matrix");
        assert!(
            matrix
                .paths
                .iter()
                .all(|p| p.from != "host-1" && p.to != "host-1"),
            "the dead node left the matrix: {matrix:#?}"
        );
    }
}

#[test]
fn ten_percent_loss_is_not_critical_and_fifty_percent_is() {
    let Some((cluster, _probes)) = overlay_cluster(3) else {
        return;
    };
    let all = [0, 1, 2];
    cluster.expect("every path measured and ok everywhere", PATIENCE, || {
        all_paths_ok(&cluster, 3)
    });
    // Every overlay packet into host-2 is dropped with 10% probability:
    // every path touching host-2 loses 10% of its round trips.
    cluster.lab.overlay_loss(2, 10).expect("loss");
    let until = Instant::now() + WINDOW * 3;
    while Instant::now() < until {
        for observer in all {
            let matrix = cluster.overlay(observer).expect("matrix");
            let critical: Vec<_> = matrix
                .paths
                .iter()
                .filter(|p| p.status == Status::Critical)
                .collect();
            assert!(critical.is_empty(), "10% loss tripped: {critical:#?}");
            assert!(matrix.verdicts.is_empty(), "{:?}", matrix.verdicts);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    cluster.lab.overlay_loss(2, 50).expect("loss");
    cluster.expect("50% loss is critical", PATIENCE, || {
        every_agent_says(&cluster, &all, "host-2's pod network is broken")
    });
}
