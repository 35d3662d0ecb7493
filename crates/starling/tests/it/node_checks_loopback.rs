//! The node checks in a real agent: an exec plugin's verdict and message
//! reach `/v1/nodes/{name}` and the node's status, the disk check watches
//! the data dir, the DNS check resolves through a local server, and a
//! check removed from the configuration stops counting.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use starling_model::{NodeHealth, NodeResponse};

use starling::settings::NodeChecksConfig;
use starling_checks::{DnsSpec, PluginSpec, Schedule, Status, Watermarks};
use starling_testkit::{DnsReply, DnsServer};

use crate::support::agents as support;
use support::{ANY_PORT, PATIENCE, get, keyring, settings};

async fn node(api: std::net::SocketAddr, name: &str) -> NodeResponse {
    get(format!("http://{api}/v1/nodes/{name}"))
        .await
        .expect("API reachable")
        .json()
        .await
        .expect("node JSON")
}

/// `starling status -o json --addr API`, as a script runs it: (exit
/// code, stdout).
async fn status_command(api: std::net::SocketAddr) -> (Option<i32>, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["status", "-o", "json", "--addr", &api.to_string()])
        .env_clear()
        .output()
        .await
        .expect("the starling binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugins_verdict_and_the_disk_reach_the_nodes_status() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin = dir.path().join("conntrack.sh");
    let write = |exit: u8, message: &str| {
        std::fs::write(
            &plugin,
            format!("#!/bin/sh\necho '{message}'\nexit {exit}\n"),
        )
        .expect("write plugin");
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    write(1, "conntrack table 97% full");
    let dns = DnsServer::start(&[(
        "kubernetes.default.svc.cluster.local",
        DnsReply::Address([10, 96, 0, 1].into()),
    )])
    .expect("a DNS server on loopback");
    let data = tempfile::tempdir().expect("temp dir");
    let mut settings = settings("node-a", &keyring(), ANY_PORT, Vec::new(), &data);
    settings.node = NodeChecksConfig {
        disk_paths: vec![data.path().to_owned()],
        // Watermarks every real disk passes.
        disk_marks: Watermarks {
            warning_free_percent: 0.0,
            critical_free_percent: 0.0,
        },
        kubelet_url: None,
        cri_socket: None,
        cri_start_sandbox: false,
        plugins: vec![PluginSpec {
            name: "conntrack".to_owned(),
            path: plugin.clone(),
            args: Vec::new(),
            timeout: Duration::from_secs(5),
            problem: Status::Critical,
        }],
        dns: Some(DnsSpec {
            server: dns.addr(),
            names: vec!["kubernetes.default.svc.cluster.local".to_owned()],
            query_timeout: Duration::from_secs(1),
        }),
        schedule: Schedule {
            interval: Duration::from_millis(300),
            timeout: Duration::from_secs(6),
            failures_before_critical: 1,
        },
    };
    let agent = starling_agent::daemon::start(settings)
        .await
        .expect("agent starts");

    let wait = |status: NodeHealth| {
        let api = agent.api_addr;
        async move {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            loop {
                let answer = node(api, "node-a").await;
                if answer.status == status && answer.checks.len() == 3 {
                    return answer;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "node-a never became {status}: {answer:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let degraded = wait(NodeHealth::Degraded).await;
    assert_eq!(degraded.reasons, ["conntrack: conntrack table 97% full"]);
    let conntrack = degraded
        .checks
        .iter()
        .find(|c| c.check == "conntrack")
        .expect("the plugin's result");
    assert_eq!(conntrack.status, Status::Critical);
    let details = conntrack.details.as_ref().expect("this node's own details");
    assert_eq!(details["exit_code"], 1);
    let disk = degraded
        .checks
        .iter()
        .find(|c| c.check == "disk")
        .expect("the disk check's result");
    assert_eq!(disk.status, Status::Ok);
    assert!(disk.message.contains(&data.path().display().to_string()));
    let dns_check = degraded
        .checks
        .iter()
        .find(|c| c.check == "dns")
        .expect("the DNS check's result");
    assert_eq!(dns_check.status, Status::Ok, "{dns_check:?}");
    // Scripts read the verdict from `starling status`'s exit code.
    let (code, stdout) = status_command(agent.api_addr).await;
    assert_eq!(code, Some(3), "not healthy: {stdout}");
    assert!(stdout.contains("\"healthy\": false"), "{stdout}");

    write(0, "conntrack table 12% full");
    let healthy = wait(NodeHealth::Healthy).await;
    assert!(healthy.reasons.is_empty());
    let (code, stdout) = status_command(agent.api_addr).await;
    assert_eq!(code, Some(0), "healthy: {stdout}");

    agent.shutdown().await.expect("clean shutdown");
}

/// Issue 16: a check removed from a node's configuration kept its last
/// status on every other node. They keep a node's latest rows for as long
/// as gossip knows the node, so a plugin removed while critical left the
/// node degraded everywhere, for good. Now the restarted agent retires the
/// check as unknown, and that reaches the others like any status change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_removed_from_the_configuration_no_longer_degrades_the_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin = dir.path().join("conntrack.sh");
    std::fs::write(
        &plugin,
        "#!/bin/sh\necho 'conntrack table 97% full'\nexit 1\n",
    )
    .expect("write plugin");
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let key = keyring();
    let (b, _db) = support::agent("b", &key, None).await;
    let data = tempfile::tempdir().expect("temp dir");
    let start_a = |plugins: Vec<PluginSpec>| {
        let mut settings = settings("a", &key, ANY_PORT, vec![b.gossip_addr.to_string()], &data);
        settings.node.plugins = plugins;
        settings.node.schedule = Schedule {
            interval: Duration::from_millis(300),
            timeout: Duration::from_secs(5),
            failures_before_critical: 1,
        };
        starling_agent::daemon::start(settings)
    };
    let a = start_a(vec![PluginSpec {
        name: "conntrack".to_owned(),
        path: plugin.clone(),
        args: Vec::new(),
        timeout: Duration::from_secs(5),
        problem: Status::Critical,
    }])
    .await
    .expect("agent starts");
    let conntrack_at_b = async |status: NodeHealth| {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let answer = node(b.api_addr, "a").await;
            let conntrack = answer.checks.iter().find(|c| c.check == "conntrack");
            if let Some(conntrack) = conntrack.filter(|_| answer.status == status) {
                return conntrack.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "b never saw a {status} with its conntrack check: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let critical = conntrack_at_b(NodeHealth::Degraded).await;
    assert_eq!(critical.status, Status::Critical);

    a.shutdown().await.expect("clean shutdown");
    let a = start_a(Vec::new()).await.expect("agent starts again");
    let retired = conntrack_at_b(NodeHealth::Healthy).await;
    assert_eq!(retired.status, Status::Unknown, "{retired:?}");
    assert!(
        retired.message.contains("not in its configuration"),
        "{retired:?}"
    );
    let at_b = node(b.api_addr, "a").await;
    let member = at_b.member.expect("a is a member");
    assert_eq!(
        (member.state.as_str(), member.incarnation),
        ("alive", a.identity.incarnation),
        "the restarted agent, not its old self that left"
    );
    let own = node(a.api_addr, "a").await;
    assert_eq!(own.status, NodeHealth::Healthy, "{own:?}");

    a.shutdown().await.expect("clean shutdown");
    b.shutdown().await.expect("clean shutdown");
}

/// Issue: with its data directory's file system full, a node's own
/// `/metrics` said the disk was critical, but `/v1/status` on every agent,
/// its own included, said healthy: check results reached the roll-up only
/// through a history write, which failed. Now every agent names the full
/// disk within two check intervals, nothing acknowledged is lost, and the
/// history catches up once space returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_named_by_every_agent_and_the_history_catches_up() {
    use starling_model::{AnnotationRequest, StatusResponse};
    let Some(disk) = starling_testkit::small_disk_or_skip(8 << 20) else {
        return;
    };
    let interval = Duration::from_secs(1);
    let key = keyring();
    let (a, _da) = support::agent("a", &key, None).await;
    let (full, _unused) = support::agent_with("full", &key, Some(a.gossip_addr), |s| {
        s.data_dir = disk.path().join("data");
        s.node.disk_paths = vec![disk.path().to_owned()];
        s.node.schedule = Schedule {
            interval,
            timeout: Duration::from_secs(5),
            failures_before_critical: 1,
        };
    })
    .await;
    let (b, _db) = support::agent("b", &key, Some(a.gossip_addr)).await;
    support::sees_alive(&a, 2).await;
    support::sees_alive(&full, 2).await;
    let status = async |api: std::net::SocketAddr| -> StatusResponse {
        get(format!("http://{api}/v1/status"))
            .await
            .expect("API reachable")
            .json()
            .await
            .expect("status JSON")
    };
    let full_node = async |api| {
        status(api)
            .await
            .nodes
            .into_iter()
            .find(|n| n.name == "full")
    };
    let apis = [a.api_addr, b.api_addr, full.api_addr];
    for api in apis {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while full_node(api)
            .await
            .is_none_or(|n| n.status != NodeHealth::Healthy)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "full healthy at {api}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let request = AnnotationRequest {
        node: None,
        message: "acknowledged before the disk filled".to_owned(),
    };
    let ack = starling_client::annotate(&[full.api_addr.to_string()], &key, &request)
        .await
        .expect("recorded");

    let filler = disk.fill().expect("the small disk fills");
    let filled_at = tokio::time::Instant::now();
    for api in apis {
        let deadline = filled_at + PATIENCE;
        loop {
            let node = full_node(api).await.expect("full listed");
            if node.status == NodeHealth::Degraded
                && node.reasons.iter().any(|r| r.starts_with("disk:"))
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{api} never named the full disk: {node:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let named_after = filled_at.elapsed();
    eprintln!("every agent named the full disk {named_after:?} after it filled");
    assert!(
        named_after <= interval * 2 + Duration::from_secs(1),
        "within two check intervals (and a gossip round): {named_after:?}"
    );
    let healthz = get(format!("http://{}/healthz", full.api_addr))
        .await
        .expect("API reachable");
    assert_eq!(
        healthz.status().as_u16(),
        503,
        "its own /healthz says so too"
    );
    let write_errors = support::metric(
        &full,
        "starling_history_write_errors_total{reason=\"disk_full\"}",
    )
    .await;
    assert!(
        write_errors > 0.0,
        "the history could not be written: {write_errors}"
    );

    std::fs::remove_file(&filler).expect("space returns");
    let recorded = async |agent: &starling_agent::daemon::RunningAgent| {
        agent
            .history
            .events(starling_history::EventFilter {
                node: Some("full".to_owned()),
                check: Some("disk".to_owned()),
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("history readable")
            .iter()
            .any(|e| e.new_state.as_deref() == Some("critical"))
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !(recorded(&full).await && recorded(&a).await && recorded(&b).await) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the disk's critical spell was never recorded and replicated"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for agent in [&a, &b, &full] {
        let held = agent
            .history
            .events(starling_history::EventFilter {
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("history readable")
            .iter()
            .any(|e| e.origin == ack.origin && e.seq == ack.seq);
        assert!(held, "the acknowledged annotation is kept everywhere");
    }
    for agent in [b, full, a] {
        agent.shutdown().await.expect("clean shutdown");
    }
}
