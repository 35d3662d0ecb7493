//! The node checks in a real agent: an exec plugin's verdict and message
//! reach `/v1/nodes/{name}` and the node's status, the disk check watches
//! the data dir, and the DNS check resolves through a local server.

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
