//! A rolling upgrade: agents of the previous release and of this tree in
//! one namespace lab keep one cluster and one history, and an agent
//! restarted on the new binary (same name, same data dir) rejoins both.
//!
//! The previous release is a real build from git history: scripts/test
//! builds the commit it names and passes the binary as STARLING_PREVIOUS.
//! Without it the test skips with a message; with STARLING_REQUIRE_UPGRADE=1
//! (scripts/test as root, CI) it fails instead. Needs root (namespaces) as
//! the other netns tests do.

use std::path::PathBuf;
use std::time::Duration;

use starling_model::NodeHealth;

use crate::support::lab::{Cluster, STARLING};

const FORM: Duration = Duration::from_secs(30);
const CONVERGE: Duration = Duration::from_secs(30);
/// Hosts 0 and 1 run the previous release (0 is the seed), 2 and 3 this one.
const HOSTS: usize = 4;
const PREVIOUS_HOSTS: [usize; 2] = [0, 1];

/// The previous release's binary, or `None` after skipping.
fn previous_release() -> Option<PathBuf> {
    let reason = match std::env::var_os("STARLING_PREVIOUS").map(PathBuf::from) {
        Some(path) if path.is_file() => return Some(path),
        Some(path) => format!("STARLING_PREVIOUS={} is not a file", path.display()),
        None => "STARLING_PREVIOUS is not set (scripts/test builds the previous release)".into(),
    };
    if std::env::var("STARLING_REQUIRE_UPGRADE").is_ok_and(|v| v == "1") {
        panic!("STARLING_REQUIRE_UPGRADE=1 but the upgrade test cannot run: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

fn everyone_holds(cluster: &Cluster, wanted: &[(String, u64)]) -> bool {
    (0..HOSTS).all(|host| cluster.holds(host, wanted))
}

#[test]
fn a_rolling_upgrade_keeps_one_cluster_and_one_history() {
    let Some(previous) = previous_release() else {
        return;
    };
    let Some(mut cluster) = Cluster::with_spare_hosts(0, HOSTS, |_| Vec::new()) else {
        return;
    };
    for host in 0..HOSTS {
        let exe = if PREVIOUS_HOSTS.contains(&host) {
            previous.clone()
        } else {
            PathBuf::from(STARLING)
        };
        cluster.start_as(host, &exe);
    }
    let all: Vec<usize> = (0..HOSTS).collect();
    cluster.expect("old and new agents see all four alive", FORM, || {
        cluster.all_see(&all, &all, "alive")
    });
    // Sealed annotations in both directions, replicated by push and pull
    // between the releases; the new CLI reads the old agents' JSON.
    let from_old = cluster
        .annotate(0, "through the previous release")
        .expect("acked");
    let from_new = cluster.annotate(3, "through this release").expect("acked");
    cluster.expect("every agent holds both annotations", CONVERGE, || {
        everyone_holds(&cluster, &[from_old.clone(), from_new.clone()])
    });
    cluster.expect(
        "an old agent's roll-up calls all four healthy",
        CONVERGE,
        || {
            cluster.status(1).is_some_and(|s| {
                s.nodes.len() == HOSTS && s.nodes.iter().all(|n| n.status == NodeHealth::Healthy)
            })
        },
    );

    // Upgrade the seed: stop it gracefully, start this release on its data.
    let (_, before) = cluster.view(2, 0).expect("host-0 known");
    let process = cluster.process(0);
    process.terminate().expect("SIGTERM");
    process
        .wait_timeout(Duration::from_secs(15))
        .expect("waits")
        .expect("a graceful stop ends the process");
    cluster.start_as(0, std::path::Path::new(STARLING));
    cluster.expect(
        "the upgraded seed is back, one incarnation on",
        CONVERGE,
        || {
            (1..HOSTS).all(|o| {
                cluster
                    .view(o, 0)
                    .is_some_and(|(state, incarnation)| state == "alive" && incarnation > before)
            }) && cluster.all_see(&all, &all, "alive")
        },
    );
    let after_old = cluster
        .annotate(1, "old, after the upgrade")
        .expect("acked");
    let after_new = cluster
        .annotate(0, "upgraded, after the upgrade")
        .expect("acked");
    cluster.expect("history still flows both ways", CONVERGE, || {
        everyone_holds(
            &cluster,
            &[
                from_old.clone(),
                from_new.clone(),
                after_old.clone(),
                after_new.clone(),
            ],
        )
    });
}
