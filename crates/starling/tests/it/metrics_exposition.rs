//! `/metrics` of a real agent running real checks (the Kubernetes API
//! checks against the fake API server), an overlay probe and alerts: the
//! exposition parses strictly, the names follow Prometheus conventions,
//! every metric the operator documentation promises is there, and so is
//! every metric deploy/'s PrometheusRule and Grafana dashboard use; the
//! classic format `curl` gets passes `promtool check metrics`.

use std::time::Duration;

use starling::settings::{KubeChecksConfig, KubeSource};
use starling_alert::SinkKind;
use starling_checks::SchedulerConfig;
use starling_probe::SystemClock;
use starling_testkit::{
    AlertReceiver, FakeApiServer, MetricFamily, Sample, parse_exposition, promtool_or_skip,
};

use crate::support::agents as support;
use crate::support::manifests;
use support::{ANY_PORT, PATIENCE, fast_overlay, get, keyring, openmetrics, probe, settings};

/// `/metrics` as `curl` gets it: the classic text format.
async fn scrape_classic(api: std::net::SocketAddr) -> String {
    get(format!("http://{api}/metrics"))
        .await
        .expect("metrics reachable")
        .text()
        .await
        .expect("metrics text")
}

fn family<'a>(families: &'a [MetricFamily], name: &str) -> &'a MetricFamily {
    families
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name} is not exported"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_follow_the_conventions_and_cover_checks_and_cluster() {
    let api = FakeApiServer::start().await.expect("fake API server");
    let receiver = AlertReceiver::start().await.expect("alert receiver");
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = api.write_kubeconfig(dir.path()).expect("kubeconfig");
    let keyring = keyring();
    // Two agents: cluster-scope checks (the scheduler probe) wait for a
    // cluster to pick their owner.
    let data = [(); 2].map(|()| tempfile::tempdir().expect("temp dir"));
    let with_kube = |name: &str, join: Vec<String>, data| {
        let mut settings = settings(name, &keyring, ANY_PORT, join, data);
        settings.kube = Some(KubeChecksConfig {
            source: KubeSource::Kubeconfig(kubeconfig.clone()),
            dns_url: None,
            scheduler: SchedulerConfig {
                schedule_timeout: Duration::from_secs(5),
                ..SchedulerConfig::default()
            },
            interval: Duration::from_secs(1),
            failures: 1,
            cert_warning: starling_checks::DEFAULT_CERT_WARNING,
            node_conditions: None,
        });
        settings.overlay = fast_overlay();
        settings.alert = support::fast_alerting("hook", SinkKind::Webhook, receiver.url());
        settings
    };
    let agent = starling_agent::daemon::start(with_kube("metrics-node", Vec::new(), &data[0]))
        .await
        .expect("agent starts");
    let peer = starling_agent::daemon::start(with_kube(
        "peer-node",
        vec![agent.gossip_addr.to_string()],
        &data[1],
    ))
    .await
    .expect("peer starts");
    // Counters whose label values are known are there at 0 before any
    // event, so rules over them see 0 rather than "no data".
    let fresh = parse_exposition(&openmetrics(agent.api_addr).await).expect("parses");
    for name in [
        "starling_alert_deliveries",
        "starling_alert_transitions_queued",
        "starling_replication_pushes_lost",
        "starling_replication_pulls",
        "starling_gossip_member_transitions",
        "starling_history_retention_deleted",
    ] {
        let series = &family(&fresh, name).samples;
        assert!(!series.is_empty(), "{name} has its series from the start");
    }
    // No probe has reported: the clock offset is unknown, not 0.
    let offset = family(&fresh, "starling_clock_offset_seconds").samples[0].value;
    assert!(offset.is_nan(), "an unknown clock offset reads {offset}");
    let _probes = [
        probe(&agent, &keyring, SystemClock).await,
        probe(&peer, &keyring, SystemClock).await,
    ];

    // Wait for the first runs of the API server check (on every node) and
    // the scheduler probe (once for the cluster) to be counted, and this
    // node to be healthy.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let text = loop {
        let text = openmetrics(agent.api_addr).await;
        if text.contains("starling_check_duration_seconds_count{check=\"apiserver\"}")
            && text.contains("starling_overlay_loss_ratio{peer=\"peer-node\"}")
            && text.contains("starling_cluster_check_status{check=\"scheduler\"")
            && text.contains("starling_node_status{node=\"metrics-node\",status=\"healthy\"} 1")
        {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no apiserver and scheduler runs within {PATIENCE:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let families = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for family in &families {
        assert!(
            family.name.starts_with("starling_"),
            "{} lacks the starling_ prefix",
            family.name
        );
        assert!(!family.help.is_empty(), "{} has no HELP", family.name);
        // Units in names: anything timed is in seconds, anything sized in bytes.
        for (hint, unit) in [
            ("duration", "_seconds"),
            ("lag", "_seconds"),
            ("since", "_seconds"),
            ("latency", "_seconds"),
            ("size", "_bytes"),
        ] {
            if family.name.contains(hint) {
                assert!(
                    family.name.ends_with(unit),
                    "{} should end in {unit}",
                    family.name
                );
            }
        }
    }
    // What `curl` and `promtool` get is the classic format, and promtool's
    // linter finds nothing in it (no counter without help, no bad name).
    if let Some(promtool) = promtool_or_skip() {
        let classic = scrape_classic(agent.api_addr).await;
        assert!(!classic.contains("# EOF"), "{classic}");
        let findings = promtool.check_metrics(&classic);
        assert_eq!(findings, Ok(String::new()), "promtool on:\n{classic}");
    }

    // The check's own series say what the run said.
    let status = family(&families, "starling_check_status");
    let current: Vec<&str> = status
        .samples
        .iter()
        .filter(|s| s.labels["check"] == "apiserver" && s.value == 1.0)
        .map(|s| s.labels["status"].as_str())
        .collect();
    assert_eq!(current, ["ok"], "exactly one current status, ok");
    let since = family(&families, "starling_check_since_success_seconds");
    let apiserver = since
        .samples
        .iter()
        .find(|s| s.labels["check"] == "apiserver")
        .expect("seconds since success of the apiserver check");
    assert!(apiserver.value < 30.0, "it passed just now: {apiserver:?}");
    let nodes = family(&families, "starling_node_status");
    for name in ["metrics-node", "peer-node"] {
        let current: Vec<&Sample> = nodes
            .samples
            .iter()
            .filter(|s| s.labels["node"] == name && s.value == 1.0)
            .collect();
        assert_eq!(current.len(), 1, "one current status per node: {nodes:?}");
    }
    // The API server fails: the check turns critical, its failures count,
    // and the node's verdict and the cluster's follow.
    api.fail_readyz_check(Some("etcd"));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let families = parse_exposition(&openmetrics(agent.api_addr).await).expect("parses");
        let failures = family(&families, "starling_check_consecutive_failures")
            .samples
            .iter()
            .find(|s| s.labels["check"] == "apiserver")
            .map_or(0.0, |s| s.value);
        let degraded = family(&families, "starling_node_status")
            .samples
            .iter()
            .any(|s| {
                s.labels["node"] == "metrics-node"
                    && s.labels["status"] == "degraded"
                    && s.value == 1.0
            });
        let healthy = family(&families, "starling_cluster_healthy").samples[0].value;
        // And the peer's degraded node is an alert this node delivers.
        let delivered = families
            .iter()
            .find(|f| f.name == "starling_alert_deliveries")
            .is_some_and(|f| f.samples.iter().any(|s| s.labels["result"] == "delivered"));
        if failures >= 1.0 && degraded && healthy == 0.0 && delivered {
            let exposed: Vec<String> = families
                .iter()
                .flat_map(|f| {
                    let suffixes: &[&str] = match f.kind.as_str() {
                        "counter" => &["_total"],
                        "histogram" => &["", "_bucket", "_sum", "_count"],
                        _ => &[""],
                    };
                    suffixes.iter().map(move |s| format!("{}{s}", f.name))
                })
                .collect();
            let documented = manifests::metrics_documented();
            assert!(documented.len() >= 40, "{documented:?}");
            let undocumented: Vec<&String> =
                documented.iter().filter(|n| !exposed.contains(n)).collect();
            assert!(
                undocumented.is_empty(),
                "docs/reference.md lists metrics the agent does not export: {undocumented:?}"
            );
            let used = manifests::metrics_used();
            assert!(used.len() >= 15, "{used:?}");
            let missing: Vec<&String> = used.iter().filter(|n| !exposed.contains(n)).collect();
            assert!(
                missing.is_empty(),
                "deploy/ uses metrics the agent does not export: {missing:?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failing API server never showed in the metrics"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    peer.shutdown().await.expect("clean shutdown");
    agent.shutdown().await.expect("clean shutdown");
    api.shutdown().await;
}
