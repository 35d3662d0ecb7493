//! Checks end to end: real agents in network namespaces checking a real
//! etcd and testkit's fake API server (as a process), both in one of the
//! namespaces; etcd stopped and started again; the scheduler probe's owner
//! killed.
//!
//! Needs root (namespaces) and etcd (Debian's etcd-server); skips with a
//! message without them, and fails instead when STARLING_REQUIRE_NETNS=1 /
//! STARLING_REQUIRE_ETCD=1 (as in CI).

use std::path::Path;
use std::time::Duration;

use starling_model::{EventKind, HistoryEvent, NodeHealth};

use starling_testkit::{LabProcess, NetLab, etcd_installed_or_skip};

use crate::support::lab;
use lab::Cluster;

const PATIENCE: Duration = Duration::from_secs(40);

/// etcd in host 0's namespace, serving clients on the host's lab address.
fn start_etcd(lab: &NetLab, data: &Path) -> LabProcess {
    let client = format!("http://{}:2379", lab.addr(0));
    let args = [
        "--name=lab-etcd".to_owned(),
        format!("--data-dir={}", data.display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        "--listen-peer-urls=http://127.0.0.1:2380".to_owned(),
        "--initial-advertise-peer-urls=http://127.0.0.1:2380".to_owned(),
        "--initial-cluster=lab-etcd=http://127.0.0.1:2380".to_owned(),
    ];
    lab.spawn(0, Path::new("etcd"), &args, &[])
        .expect("etcd starts in host 0's namespace")
}

/// `node`'s etcd transitions into `to` (from `from`, when given).
fn etcd_transitions(events: &[HistoryEvent], node: &str, from: Option<&str>, to: &str) -> usize {
    events
        .iter()
        .filter(|e| {
            e.kind == EventKind::Check
                && e.check.as_deref() == Some("etcd")
                && e.node == node
                && e.new_state.as_deref() == Some(to)
                && from.is_none_or(|from| e.old_state.as_deref() == Some(from))
        })
        .count()
}

#[test]
fn stopping_etcd_degrades_every_node_naming_it_and_starting_it_recovers() {
    if !etcd_installed_or_skip() {
        return;
    }
    let Some(binary) = lab::testkit_binary("stl-fake-apiserver") else {
        return;
    };
    let kube_dir = tempfile::tempdir().expect("temp dir");
    let mut fake = None;
    let Some(cluster) = Cluster::with_args(3, |lab| {
        let (process, mut flags) = fake_apiserver(lab, &binary, kube_dir.path());
        fake = Some(process);
        let endpoint = format!("http://{}:2379", lab.addr(0));
        let etcd = ["--etcd-endpoint", &endpoint, "--etcd-interval", "1s"];
        let more = ["--etcd-timeout", "800ms", "--etcd-failures", "2"];
        flags.extend(etcd.into_iter().chain(more).map(str::to_owned));
        flags
    }) else {
        return;
    };
    let _fake = fake.expect("started with the cluster");
    let data = cluster.dir().join("etcd-data");
    let mut etcd = Some(start_etcd(&cluster.lab, &data));
    let all = [0, 1, 2];
    let names: Vec<String> = all.iter().map(|h| format!("host-{h}")).collect();
    cluster.expect(
        "three agents see each other and a healthy cluster",
        PATIENCE,
        || {
            cluster.all_see(&all, &all, "alive")
                && all.iter().all(|&h| {
                    cluster.status(h).is_some_and(|s| {
                        s.healthy
                            && s.nodes
                                .iter()
                                .all(|n| n.checks.iter().any(|c| c.check == "etcd"))
                    })
                })
        },
    );

    if let Some(mut process) = etcd.take() {
        process.terminate().expect("stop etcd");
        let _ = process.wait_timeout(Duration::from_secs(10));
    }
    cluster.expect(
        "every agent says the cluster is degraded, naming etcd",
        PATIENCE,
        || {
            all.iter().all(|&h| {
                cluster.status(h).is_some_and(|s| {
                    !s.healthy
                        && s.nodes.iter().all(|n| n.status == NodeHealth::Degraded)
                        && names.iter().all(|name| {
                            s.reasons
                                .iter()
                                .any(|r| r.starts_with(&format!("{name}: etcd:")))
                        })
                })
            })
        },
    );
    // Every agent's history holds a transition to `to` of every node.
    let everywhere = |from: Option<&str>, to: &str| {
        all.iter().all(|&h| {
            cluster.history(h).is_some_and(|events| {
                names
                    .iter()
                    .all(|n| etcd_transitions(&events, n, from, to) >= 1)
            })
        })
    };
    cluster.expect(
        "every agent's history holds every node's etcd failure",
        PATIENCE,
        || everywhere(None, "critical"),
    );

    let _etcd = start_etcd(&cluster.lab, &data);
    cluster.expect("every agent says healthy again", PATIENCE, || {
        all.iter()
            .all(|&h| cluster.status(h).is_some_and(|s| s.healthy))
    });
    cluster.expect(
        "every agent's history holds every node's recovery",
        PATIENCE,
        || everywhere(Some("critical"), "ok"),
    );
    let events = cluster.history(1).expect("answers");
    let failure = events
        .iter()
        .find(|e| e.kind == EventKind::Check && e.new_state.as_deref() == Some("critical"))
        .expect("a failure recorded");
    assert!(
        failure.message.contains("2379"),
        "the recorded message names the endpoint: {}",
        failure.message
    );
}

/// `stl-fake-apiserver` in host 0's namespace (port 6443, for five
/// minutes), and the agent flags that point the API checks at it.
fn fake_apiserver(lab: &NetLab, binary: &Path, dir: &Path) -> (LabProcess, Vec<String>) {
    let addr = format!("{}:6443", lab.addr(0));
    let dir_arg = dir.to_str().expect("UTF-8 temp path");
    let process = lab
        .spawn(0, binary, &[addr.as_str(), "300", dir_arg], &[])
        .expect("the fake API server starts");
    let kubeconfig = dir.join("kubeconfig");
    assert!(
        starling_testkit::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            kubeconfig.exists()
        }),
        "the fake API server wrote its kubeconfig"
    );
    let flags = [
        "--kubeconfig",
        kubeconfig.to_str().expect("UTF-8"),
        "--kube-interval",
        "2s",
        "--probe-timeout",
        "1s",
        "--kube-failures",
        "1",
    ];
    (process, flags.map(str::to_owned).to_vec())
}

/// The nodes that ran the scheduler probe after `after` (Unix ms), as
/// `observer`'s history tells: a node's first result of a check is an
/// event, so a new prober shows up there.
fn probers(cluster: &Cluster, observer: usize, after: u64) -> Vec<String> {
    let mut nodes: Vec<String> = cluster
        .history(observer)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.kind == EventKind::Check
                && e.check.as_deref() == Some("scheduler")
                && e.at_unix_ms > after
        })
        .map(|e| e.node)
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

#[test]
fn one_agent_of_five_runs_the_scheduler_probe_and_another_takes_over_when_it_dies() {
    let Some(binary) = lab::testkit_binary("stl-fake-apiserver") else {
        return;
    };
    let kube_dir = tempfile::tempdir().expect("temp dir");
    let mut fake = None;
    let Some(mut cluster) = Cluster::with_args(5, |lab| {
        let (process, flags) = fake_apiserver(lab, &binary, kube_dir.path());
        fake = Some(process);
        flags
    }) else {
        return;
    };
    let fake = fake.expect("started with the cluster");
    let all: Vec<usize> = (0..5).collect();
    cluster.expect("five agents see each other", PATIENCE, || {
        cluster.all_see(&all, &all, "alive")
    });
    let mut owner = Vec::new();
    cluster.expect("one agent reports the scheduler probe", PATIENCE, || {
        owner = probers(&cluster, 1, 0);
        !owner.is_empty()
    });
    assert_eq!(owner.len(), 1, "exactly one prober: {owner:?}");
    // A few probe rounds later, still that one, as another node sees it.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        probers(&cluster, 2, 0),
        owner,
        "the probe stayed with one owner"
    );
    let owner_host: usize = owner[0]
        .strip_prefix("host-")
        .and_then(|n| n.parse().ok())
        .expect("host-N");
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    cluster
        .process(owner_host)
        .kill9()
        .expect("kill -9 the owner");
    let observer = (owner_host + 1) % 5;
    let mut successor = Vec::new();
    cluster.expect("another agent takes the probe over", PATIENCE, || {
        successor = probers(&cluster, observer, killed_at);
        !successor.is_empty()
    });
    assert_eq!(successor.len(), 1, "{successor:?}");
    assert_ne!(successor[0], owner[0]);
    // No two probe pods ever existed at once, across the takeover too.
    let most = fake
        .log()
        .lines()
        .filter_map(|line| line.strip_prefix("probe-pods "))
        .filter_map(|n| n.trim().parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    assert_eq!(most, 1, "probe pods at once, at most:\n{}", fake.log());
}
