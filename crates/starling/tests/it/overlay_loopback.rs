//! The overlay probe against real agents in this process, on 127.0.0.1:
//! probes learn each other from gossip, the matrix fills, a skewed clock
//! is found with its sign, a silent probe is blamed on its pod network, a
//! departed node drops out at once, and bad reports are refused.

use std::net::SocketAddr;
use std::time::Duration;

use starling_model::{NodeHealth, NodeResponse, OverlayResponse, Service, Status, StatusResponse};

use starling_agent::daemon::RunningAgent;
use starling_probe::{OffsetClock, ProbeReport, SystemClock};
use starling_seal::seal_json;
use starling_seal::{Keyring, Purpose};

use crate::support::agents;
use agents::{PATIENCE, agent_with, fast_overlay, get, keyring, metric, probe, sees_alive};

async fn overlay_agent(
    name: &str,
    key: &Keyring,
    join: Option<SocketAddr>,
) -> (RunningAgent, tempfile::TempDir) {
    agent_with(name, key, join, |settings| {
        settings.overlay = fast_overlay()
    })
    .await
}

async fn json<T: serde::de::DeserializeOwned>(
    agent: &RunningAgent,
    path: &str,
) -> (u16, Option<T>) {
    let response = get(format!("http://{}{path}", agent.api_addr))
        .await
        .expect("API reachable");
    let code = response.status().as_u16();
    (code, response.json().await.ok())
}

/// Poll `agent`'s `/v1/overlay` until `done` holds.
async fn overlay_until(
    agent: &RunningAgent,
    what: &str,
    done: impl Fn(&OverlayResponse) -> bool,
) -> OverlayResponse {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        if let (200, Some(overlay)) = json::<OverlayResponse>(agent, "/v1/overlay").await {
            if done(&overlay) {
                return overlay;
            }
            last = Some(overlay);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{}: {what} never held; last /v1/overlay: {last:#?}",
        agent.identity.name
    )
}

fn path_status<'a>(overlay: &'a OverlayResponse, from: &str, to: &str) -> Option<&'a str> {
    overlay
        .paths
        .iter()
        .find(|p| p.from == from && p.to == to)
        .map(|p| p.status.as_str())
}

async fn clock_check(agent: &RunningAgent, node: &str) -> Option<(Status, String)> {
    let (_, node) = json::<NodeResponse>(agent, &format!("/v1/nodes/{node}")).await;
    node?
        .checks
        .into_iter()
        .find(|c| c.check == "clock-drift")
        .map(|c| (c.status, c.message))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_fill_the_matrix_find_a_skewed_clock_and_blame_a_silent_pod_network() {
    let key = keyring();
    let (a, _da) = overlay_agent("a", &key, None).await;
    let (b, _db) = overlay_agent("b", &key, Some(a.gossip_addr)).await;
    let (c, _dc) = overlay_agent("c", &key, Some(a.gossip_addr)).await;
    let (d, _dd) = overlay_agent("d", &key, Some(a.gossip_addr)).await;
    for agent in [&a, &b, &c, &d] {
        sees_alive(agent, 3).await;
    }
    let (code, _) = json::<serde_json::Value>(&a, "/v1/overlay").await;
    assert_eq!(code, 404, "no probe has reported yet");

    let _pa = probe(&a, &key, SystemClock).await;
    let pb = probe(&b, &key, SystemClock).await;
    let _pc = probe(&c, &key, SystemClock).await;
    // d's clock runs 1.5 s ahead of everyone else's.
    let _pd = probe(&d, &key, OffsetClock(1_500)).await;

    // Every agent learns every probe address by gossip and sees all 12
    // paths healthy, whoever measured them.
    for agent in [&a, &b, &c, &d] {
        let overlay = overlay_until(agent, "12 healthy paths", |o| {
            o.paths.len() == 12 && o.paths.iter().all(|p| p.status == Status::Ok)
        })
        .await;
        assert!(overlay.verdicts.is_empty(), "{:?}", overlay.verdicts);
        assert_eq!(overlay.nodes, ["a", "b", "c", "d"]);
        assert!(
            overlay.probed_by.values().all(|n| *n == 3),
            "{:?}",
            overlay.probed_by
        );
        let own = overlay
            .paths
            .iter()
            .filter(|p| p.from == agent.identity.name);
        for path in own {
            assert_eq!(path.loss_ratio, Some(0.0), "{path:?}");
            assert!(path.rtt_p95_ms.is_some_and(|ms| ms < 100.0), "{path:?}");
        }
    }
    assert_eq!(metric(&a, "starling_overlay_probed_by ").await, 3.0);
    let text = agents::openmetrics(a.api_addr).await;
    let families = starling_testkit::parse_exposition(&text).expect("a strict exposition");
    for (name, series) in [
        ("starling_overlay_loss_ratio", 3),
        ("starling_overlay_rtt_p50_seconds", 3),
        ("starling_overlay_rtt_p95_seconds", 3),
        ("starling_overlay_path_status", 12),
        ("starling_overlay_probed_by", 1),
        ("starling_overlay_probe_bytes", 2),
        ("starling_overlay_reports", 2),
        ("starling_clock_offset_seconds", 1),
    ] {
        let family = families
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} missing from /metrics"));
        assert_eq!(
            family.samples.len(),
            series,
            "{name}: one series per peer (3) or as listed"
        );
    }
    assert!(metric(&a, "starling_overlay_probe_bytes_total{direction=\"sent\"}").await > 0.0);

    // The skewed node finds itself 1.5 s ahead; the others are in step.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let skewed = clock_check(&d, "d").await;
        let fine = clock_check(&a, "a").await;
        if let (Some((d_status, d_message)), Some((a_status, _))) = (&skewed, &fine)
            && *d_status == Status::Critical
            && *a_status == Status::Ok
        {
            assert!(d_message.contains("ahead of"), "{d_message}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "d: {skewed:?}, a: {fine:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let offset = metric(&d, "starling_clock_offset_seconds ").await;
    assert!((offset - 1.5).abs() < 0.1, "d's offset {offset}");
    let offset = metric(&a, "starling_clock_offset_seconds ").await;
    assert!(offset.abs() < 0.1, "a's offset {offset}");
    // Everyone else hears of d's verdict through the history.
    let (_, status) = json::<StatusResponse>(&b, "/v1/status").await;
    let d_status = status
        .expect("status")
        .nodes
        .into_iter()
        .find(|n| n.name == "d");
    assert_eq!(d_status.map(|n| n.status), Some(NodeHealth::Degraded));

    // b's probe dies; b's agent is fine. Paths from b go unknown (its
    // probe went silent), everyone's paths to b fail for a whole window,
    // and that is b's pod network, not three broken paths.
    drop(pb);
    for agent in [&a, &c, &d] {
        let overlay = overlay_until(agent, "b's pod network blamed", |o| {
            o.verdicts
                .iter()
                .any(|v| v.starts_with("b's pod network is broken: 3 of 3"))
        })
        .await;
        assert_eq!(overlay.verdicts.len(), 1, "{:?}", overlay.verdicts);
        assert_eq!(path_status(&overlay, "b", "a"), Some("unknown"));
    }
    let (_, status) = json::<StatusResponse>(&c, "/v1/status").await;
    let status = status.expect("status");
    let b_status = status
        .nodes
        .iter()
        .find(|n| n.name == "b")
        .expect("b listed");
    assert_eq!(b_status.status, NodeHealth::Degraded, "{b_status:?}");

    // b leaves: it drops out of every matrix at once, and nobody blames
    // the overlay for it.
    b.shutdown().await.expect("clean shutdown");
    for agent in [&a, &c, &d] {
        let overlay = overlay_until(agent, "b gone", |o| {
            !o.nodes.contains(&"b".to_owned())
                && o.paths.iter().all(|p| p.from != "b" && p.to != "b")
        })
        .await;
        assert!(overlay.verdicts.is_empty(), "{:?}", overlay.verdicts);
    }
    for agent in [a, c, d] {
        agent.shutdown().await.expect("clean shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_for_another_node_or_without_the_key_are_refused() {
    let key = keyring();
    let (a, _da) = overlay_agent("a", &key, None).await;
    let url = format!("http://{}/v1/overlay/report", a.api_addr);
    let client = starling_checks::http_client().build().expect("client");
    let report = |node: &str, addr: &str| ProbeReport {
        node: node.to_owned(),
        probe_addr: addr.parse().expect("literal"),
        window_ms: 2_000,
        peers: Vec::new(),
        probed_by: Vec::new(),
        sent_bytes: 0,
        received_bytes: 0,
    };
    let post = |body: Vec<u8>| client.post(&url).body(body).send();
    let cases: [(Vec<u8>, u16, &str); 4] = [
        (
            seal_json(&key, Purpose::ProbeReport, &report("z", "10.0.0.1:7949")),
            400,
            "but this agent is node",
        ),
        (
            seal_json(
                &keyring(),
                Purpose::ProbeReport,
                &report("a", "10.0.0.1:7949"),
            ),
            401,
            "cluster key",
        ),
        (
            seal_json(&key, Purpose::ProbeReport, &report("a", "0.0.0.0:7949")),
            400,
            "not reachable by peers",
        ),
        (b"not sealed at all".to_vec(), 401, "cluster key"),
    ];
    for (body, code, says) in cases {
        let response = post(body).await.expect("agent reachable");
        assert_eq!(response.status().as_u16(), code);
        let text = response.text().await.expect("body");
        assert!(text.contains(says), "{text}");
    }
    assert_eq!(
        metric(&a, "starling_overlay_reports_total{result=\"refused\"}").await,
        4.0
    );
    assert!(
        a.gossip
            .view
            .borrow()
            .me
            .meta
            .service(Service::Probe)
            .is_none(),
        "nothing was published"
    );

    // A captured report sent again is refused: a dead probe's figures
    // cannot be kept alive by replaying its last report.
    let captured = seal_json(&key, Purpose::ProbeReport, &report("a", "10.0.0.1:7949"));
    let first = post(captured.clone()).await.expect("agent reachable");
    assert_eq!(first.status().as_u16(), 200);
    let again = post(captured).await.expect("agent reachable");
    assert_eq!(again.status().as_u16(), 409);
    let text = again.text().await.expect("body");
    assert!(text.contains("already received"), "{text}");
    assert_eq!(
        metric(
            &a,
            "starling_sealed_refused_total{channel=\"probe_report\",reason=\"replayed\"}"
        )
        .await,
        1.0
    );
    a.shutdown().await.expect("clean shutdown");
}
