//! Checks end to end: real agents in network namespaces checking a real
//! etcd that runs in one of the namespaces; etcd stopped and started again.
//!
//! Needs root (namespaces) and etcd (Debian's etcd-server); skips with a
//! message without them, and fails instead when STARLING_REQUIRE_NETNS=1 /
//! STARLING_REQUIRE_ETCD=1 (as in CI).

use std::path::Path;
use std::time::Duration;

use starling_testkit::{LabProcess, NetLab};
use starling_web::HistoryEvent;

#[path = "support/lab.rs"]
mod lab;
use lab::Cluster;

const PATIENCE: Duration = Duration::from_secs(40);

fn etcd_installed() -> bool {
    let found = std::process::Command::new("etcd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let reason =
            "etcd is not installed: apt-get install etcd-server (scripts/test installs it)";
        if std::env::var("STARLING_REQUIRE_ETCD").as_deref() == Ok("1") {
            panic!("{reason}");
        }
        eprintln!("SKIPPED: {reason}");
    }
    found
}

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

fn etcd_transitions(events: &[HistoryEvent], node: &str, to: &str) -> usize {
    events
        .iter()
        .filter(|e| {
            e.kind == "check"
                && e.check.as_deref() == Some("etcd")
                && e.node == node
                && e.new_state.as_deref() == Some(to)
        })
        .count()
}

#[test]
fn stopping_etcd_degrades_every_node_naming_it_and_starting_it_recovers() {
    if !etcd_installed() {
        return;
    }
    let Some(cluster) = Cluster::with_args(3, |lab| {
        [
            "--etcd-endpoint",
            &format!("http://{}:2379", lab.addr(0)),
            "--etcd-interval",
            "1s",
            "--etcd-timeout",
            "800ms",
            "--etcd-failures",
            "2",
        ]
        .map(str::to_owned)
        .to_vec()
    }) else {
        return;
    };
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
                        && s.nodes.iter().all(|n| n.status == "degraded")
                        && names.iter().all(|name| {
                            s.reasons
                                .iter()
                                .any(|r| r.starts_with(&format!("{name}: etcd:")))
                        })
                })
            })
        },
    );
    cluster.expect(
        "every agent's history holds every node's etcd failure",
        PATIENCE,
        || {
            all.iter().all(|&h| {
                cluster.history(h).is_some_and(|events| {
                    names
                        .iter()
                        .all(|n| etcd_transitions(&events, n, "critical") >= 1)
                })
            })
        },
    );

    let _etcd = start_etcd(&cluster.lab, &data);
    cluster.expect("every agent says healthy again", PATIENCE, || {
        all.iter()
            .all(|&h| cluster.status(h).is_some_and(|s| s.healthy))
    });
    cluster.expect(
        "every agent's history holds every node's recovery",
        PATIENCE,
        || {
            all.iter().all(|&h| {
                cluster.history(h).is_some_and(|events| {
                    names
                        .iter()
                        .all(|n| etcd_transitions(&events, n, "ok") >= 1)
                })
            })
        },
    );
    let events = cluster.history(1).expect("answers");
    let failure = events
        .iter()
        .find(|e| e.kind == "check" && e.new_state.as_deref() == Some("critical"))
        .expect("a failure recorded");
    assert!(
        failure.message.contains("2379"),
        "the recorded message names the endpoint: {}",
        failure.message
    );
}

/// testkit's fake API server binary, built next to this test by
/// `cargo test --workspace` (it is another package's binary).
fn fake_apiserver_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let path = exe.parent()?.parent()?.join("stl-fake-apiserver");
    if path.exists() {
        return Some(path);
    }
    let reason = format!(
        "{} is not built: run the tests with `cargo test --workspace` (scripts/test does)",
        path.display()
    );
    if std::env::var("STARLING_REQUIRE_NETNS").as_deref() == Ok("1") {
        panic!("{reason}");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

/// Which nodes report a `scheduler` result newer than `after` (Unix ms),
/// as `observer` sees it.
fn probers(cluster: &Cluster, observer: usize, after: u64) -> Vec<String> {
    cluster
        .status(observer)
        .map(|status| {
            status
                .nodes
                .into_iter()
                .filter(|n| {
                    n.checks
                        .iter()
                        .any(|c| c.check == "scheduler" && c.status == "ok" && c.at_unix_ms > after)
                })
                .map(|n| n.name)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn one_agent_of_five_runs_the_scheduler_probe_and_another_takes_over_when_it_dies() {
    let Some(binary) = fake_apiserver_binary() else {
        return;
    };
    let kube_dir = tempfile::tempdir().expect("temp dir");
    let mut fake = None;
    let Some(mut cluster) = Cluster::with_args(5, |lab| {
        let addr = format!("{}:6443", lab.addr(0));
        let dir = kube_dir
            .path()
            .to_str()
            .expect("UTF-8 temp path")
            .to_owned();
        let args = [addr.as_str(), "300", dir.as_str()];
        fake = Some(
            lab.spawn(0, &binary, &args, &[])
                .expect("the fake API server starts"),
        );
        let kubeconfig = kube_dir.path().join("kubeconfig");
        assert!(
            starling_testkit::wait_until(
                Duration::from_secs(10),
                Duration::from_millis(50),
                || { kubeconfig.exists() }
            ),
            "the fake API server wrote its kubeconfig"
        );
        [
            "--kubeconfig",
            kubeconfig.to_str().expect("UTF-8"),
            "--kube-interval",
            "2s",
            "--probe-timeout",
            "1s",
            "--kube-failures",
            "1",
        ]
        .map(str::to_owned)
        .to_vec()
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
