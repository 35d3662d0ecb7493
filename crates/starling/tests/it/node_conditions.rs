//! Node conditions and Events against the fake API server: three agents
//! write `StarlingHealthy` on their Nodes (each Node by one other agent);
//! a node degraded by a plugin turns False with the reason and gets one
//! Warning Event; with the API server hanging the agents keep answering;
//! with it refusing, a flap meanwhile leaves no backlog, and once it
//! answers again the conditions say the truth with no Event for what was
//! never written.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, NodeCondition};
use starling::settings::{AgentConfig, KubeChecksConfig, KubeSource};
use starling_agent::daemon::RunningAgent;
use starling_checks::SchedulerConfig;
use starling_testkit::FakeApiServer;

use crate::support::agents::{self, PATIENCE};

const NAMES: [&str; 3] = ["node-a", "node-b", "node-c"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_carry_starlings_verdict_and_one_event_per_change() {
    let api = FakeApiServer::start().await.expect("fake API server");
    for name in NAMES {
        api.add_node(name);
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let kubeconfig = api.write_kubeconfig(dir.path()).expect("kubeconfig");
    let canary = dir.path().join("canary-broken");
    let keyring = agents::keyring();
    let mut running: Vec<(RunningAgent, tempfile::TempDir)> = Vec::new();
    for name in NAMES {
        let join = running.first().map(|(first, _)| first.gossip_addr);
        let tune = |settings: &mut AgentConfig| {
            with_conditions(settings, &kubeconfig);
            if name == "node-a" {
                agents::canary(settings, &canary);
            }
        };
        running.push(agents::agent_with(name, &keyring, join, tune).await);
    }
    for (agent, _) in &running {
        agents::sees_alive(agent, 2).await;
    }

    for name in NAMES {
        condition_until(&api, name, "every node healthy", |c| c.status == "True").await;
    }
    let healthy = condition(&api, "node-a").expect("written");
    assert_eq!(healthy.reason.as_deref(), Some("Healthy"));
    assert!(healthy.last_heartbeat_time.is_some() && healthy.last_transition_time.is_some());

    // A critical check: False, with the check's words, and one Event.
    std::fs::write(&canary, "").expect("breaks the canary");
    let degraded =
        condition_until(&api, "node-a", "node-a degraded", |c| c.status == "False").await;
    assert_eq!(degraded.reason.as_deref(), Some("Degraded"));
    assert!(
        degraded
            .message
            .as_deref()
            .is_some_and(|m| m.contains("canary broken")),
        "{degraded:?}"
    );
    // Several rounds later, still one Event for the one change.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = events_about(&api, "node-a");
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].reason.as_deref(), Some("StarlingDegraded"));
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    assert!(
        events[0]
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("StarlingHealthy True -> False"))
    );

    // The API server hangs: the agents still answer at once.
    api.set_unresponsive(true);
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        agents::get(format!("http://{}/v1/status", running[1].0.api_addr)),
    )
    .await
    .expect("an answer while the API server hangs")
    .expect("the agent answers");
    assert!(answer.status().is_success() || answer.status().as_u16() == 503);
    api.set_unresponsive(false);

    // The API server refuses everything: a flap meanwhile queues nothing,
    // and once it answers the condition says the truth.
    api.set_errors(true);
    std::fs::remove_file(&canary).expect("mends the canary");
    tokio::time::sleep(Duration::from_secs(1)).await;
    std::fs::write(&canary, "").expect("breaks it again");
    tokio::time::sleep(Duration::from_secs(1)).await;
    std::fs::remove_file(&canary).expect("mends it for good");
    tokio::time::sleep(Duration::from_secs(1)).await;
    api.set_errors(false);
    condition_until(&api, "node-a", "node-a healthy again", |c| {
        c.status == "True"
    })
    .await;
    let events = events_about(&api, "node-a");
    let reasons: Vec<&str> = events.iter().filter_map(|e| e.reason.as_deref()).collect();
    assert_eq!(
        reasons,
        ["StarlingDegraded", "StarlingHealthy"],
        "what was never written has no Event: {events:#?}"
    );

    for (agent, _) in running.into_iter().rev() {
        agent.shutdown().await.expect("clean shutdown");
    }
    api.shutdown().await;
}

fn with_conditions(settings: &mut AgentConfig, kubeconfig: &Path) {
    settings.kube = Some(KubeChecksConfig {
        source: KubeSource::Kubeconfig(kubeconfig.to_owned()),
        dns_url: None,
        scheduler: SchedulerConfig::default(),
        interval: Duration::from_secs(1),
        // The API server check may fail while the test makes the server
        // hang: that must not degrade the nodes under test.
        failures: 1_000,
        cert_warning: starling_checks::DEFAULT_CERT_WARNING,
        node_conditions: Some(Duration::from_millis(300)),
    });
}

fn condition(api: &FakeApiServer, node: &str) -> Option<NodeCondition> {
    api.node(node)?
        .status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "StarlingHealthy")
}

async fn condition_until(
    api: &FakeApiServer,
    node: &str,
    what: &str,
    done: impl Fn(&NodeCondition) -> bool,
) -> NodeCondition {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = condition(api, node);
        if let Some(found) = now.as_ref().filter(|c| done(c)) {
            return found.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {PATIENCE:?}: {what}; {node} has {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn events_about(api: &FakeApiServer, node: &str) -> Vec<Event> {
    api.events()
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(node))
        .collect()
}
