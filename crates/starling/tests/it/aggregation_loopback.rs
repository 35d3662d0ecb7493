//! An aggregated cluster in this process, on 127.0.0.1: two aggregators
//! and three ordinary nodes. Each node's log streams to the aggregators,
//! the health table comes back, history is forwarded, and when the
//! aggregators leave the cluster returns to full replication with nothing
//! lost.

use std::time::Duration;

use starling_agent::daemon::RunningAgent;
use starling_alert::{AlertConfig, SinkKind};
use starling_gossip::Role;
use starling_history::{Event, EventFilter, EventKind, NewEvent, Status};
use starling_model::{HistoryQuery, HistoryResponse};
use starling_testkit::AlertReceiver;

use crate::support::agents::{
    self as support, AgentProcess, PATIENCE, agent_with, keyring, metric, sees_alive,
};

const ALERTMANAGER: &str = "/api/v2/alerts";

/// Polls `check` every 100 ms until it holds, or panics naming `what`.
async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A check of `node` turning critical, recorded in its own log.
async fn canary_broke(node: &RunningAgent) -> Event {
    node.history
        .record(NewEvent {
            at_unix_ms: starling_model::unix_ms_now(),
            kind: EventKind::Check,
            node: node.identity.name.clone(),
            check: Some("canary".to_owned()),
            old_state: Some("ok".to_owned()),
            new_state: Some("critical".to_owned()),
            message: "canary broken".to_owned(),
            dedupe_key: None,
        })
        .await
        .expect("recorded")
}

async fn holds(agent: &RunningAgent, event: &Event) -> bool {
    let rows = agent
        .history
        .events(EventFilter {
            node: Some(event.node.clone()),
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .expect("reads");
    rows.iter()
        .any(|row| row.origin == event.origin && row.seq == event.seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_stream_to_aggregators_read_health_and_history_back_and_lose_nothing_when_they_leave()
{
    let key = keyring();
    let aggregator = |s: &mut starling_agent::AgentConfig| s.role = Role::Aggregator;
    let (a1, _d1) = agent_with("agg-1", &key, None, aggregator).await;
    let (a2, _d2) = agent_with("agg-2", &key, Some(a1.gossip_addr), aggregator).await;
    let mut workers = Vec::new();
    for name in ["w1", "w2", "w3"] {
        workers.push(agent_with(name, &key, Some(a1.gossip_addr), |_| {}).await);
    }
    let workers: Vec<&RunningAgent> = workers.iter().map(|(w, _)| w).collect();
    for agent in [&a1, &a2].into_iter().chain(workers.iter().copied()) {
        sees_alive(agent, 4).await;
    }
    for worker in &workers {
        eventually("every node aggregated", || async {
            metric(worker, "starling_aggregation_aggregated ").await == 1.0
        })
        .await;
    }
    let mut broke = Vec::new();
    for worker in &workers {
        broke.push(canary_broke(worker).await);
    }
    // Every row reaches both aggregators: each is an owner (replicas 2).
    for event in &broke {
        for aggregator in [&a1, &a2] {
            eventually("an aggregator holds a node's row", || {
                holds(aggregator, event)
            })
            .await;
        }
    }
    for worker in &workers {
        eventually("every row acknowledged", || async {
            metric(worker, "starling_aggregation_unacked_rows ").await == 0.0
        })
        .await;
    }
    // Each node's health table shows the others' checks...
    eventually("w1 sees w2's canary critical", || async {
        let latest = workers[0].history.latest_results().await.expect("reads");
        latest
            .iter()
            .any(|r| r.node == "w2" && r.check == "canary" && r.status == Status::Critical)
    })
    .await;
    // ...while its database does not hold their rows.
    assert!(
        !holds(workers[0], &broke[1]).await,
        "w1 replicated w2's log"
    );
    // History about another node, asked of w1, comes from an aggregator.
    let filter = HistoryQuery {
        node: Some("w2".to_owned()),
        limit: 100,
        ..HistoryQuery::default()
    };
    let page = starling_client::history(&[workers[0].api_addr.to_string()], &filter)
        .await
        .expect("w1 answers");
    assert_eq!(page.answered_by, "w1");
    let served_by = page.served_by.clone().expect("says who served it");
    assert!(served_by.starts_with("agg-"), "{served_by}");
    assert!(page.incomplete.is_none());
    assert!(
        page.events
            .iter()
            .any(|e| e.origin == broke[1].origin && e.seq == broke[1].seq),
        "{page:?}"
    );
    // An aggregator takes no stream meant for it from a node that is not
    // one: a worker refuses.
    let refused = starling_checks::http_client()
        .build()
        .expect("a plain HTTP client")
        .post(format!("http://{}/v1/stream", workers[1].api_addr))
        .body(Vec::new())
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status(), 404);

    // The aggregators leave: the cluster goes back to full replication,
    // and every node pulls the others' logs again.
    a1.shutdown().await.expect("clean shutdown");
    a2.shutdown().await.expect("clean shutdown");
    for worker in &workers {
        for event in &broke {
            eventually("full replication brings every row back", || {
                holds(worker, event)
            })
            .await;
        }
        assert_eq!(
            metric(worker, "starling_aggregation_aggregated ").await,
            0.0
        );
    }
}

/// `/v1/history` of the agent at `api` (up to 1000 rows about `node`).
async fn history_at(api: std::net::SocketAddr, node: &str) -> Option<HistoryResponse> {
    let filter = HistoryQuery {
        node: Some(node.to_owned()),
        limit: 1000,
        ..HistoryQuery::default()
    };
    starling_client::history(&[api.to_string()], &filter)
        .await
        .ok()
}

fn lists(page: &HistoryResponse, event: &Event) -> bool {
    page.events
        .iter()
        .any(|e| e.origin == event.origin && e.seq == event.seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_an_aggregator_killed_and_one_wiped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_text = starling_seal::Keyring::generate_key();
    let key = starling_seal::Keyring::parse(&key_text).expect("a generated key parses");
    let (seed, _d0) = agent_with("w0", &key, None, |_| {}).await;
    let mut aggregators: Vec<AgentProcess> = ["agg-1", "agg-2", "agg-3"]
        .iter()
        .map(|name| {
            AgentProcess::start_with(
                name,
                &key_text,
                seed.gossip_addr,
                dir.path(),
                &["--role", "aggregator", "--sync-interval", "300ms"],
            )
        })
        .collect();
    // w1 keeps events one second, and runs retention only when told.
    let (w1, _d1) = agent_with("w1", &key, Some(seed.gossip_addr), |config| {
        config.history.retention.events_max_age = Duration::from_secs(1);
        config.history.housekeeping_every = Duration::from_secs(3600);
    })
    .await;
    for worker in [&seed, &w1] {
        sees_alive(worker, 4).await;
        eventually("aggregated", || async {
            metric(worker, "starling_aggregation_aggregated ").await == 1.0
        })
        .await;
    }
    let before = [canary_broke(&seed).await, canary_broke(&w1).await];
    for worker in [&seed, &w1] {
        eventually("acknowledged", || async {
            metric(worker, "starling_aggregation_unacked_rows ").await == 0.0
        })
        .await;
    }
    // kill -9 one aggregator: what it acknowledged is on another owner.
    aggregators[0].kill();
    let after = [canary_broke(&seed).await, canary_broke(&w1).await];
    for asker in [&seed, &w1] {
        for event in before.iter().chain(&after) {
            eventually("every event queryable from every node", || async {
                history_at(asker.api_addr, &event.node)
                    .await
                    .is_some_and(|page| lists(&page, event) && page.incomplete.is_none())
            })
            .await;
        }
    }
    // Wiped and back under the same name: it gets every event again.
    let wiped = &mut aggregators[1];
    wiped.kill();
    std::fs::remove_dir_all(dir.path().join("agg-2")).expect("wipes its data");
    wiped.restart();
    let wiped_api = wiped.api;
    for event in before.iter().chain(&after) {
        eventually("the wiped aggregator holds every event again", || async {
            history_at(wiped_api, &event.node)
                .await
                .is_some_and(|page| lists(&page, event))
        })
        .await;
    }
    // The window lags the aggregators by a few health pulls: let two
    // more asks pass, now that every event is on them.
    let window_pulls = "starling_aggregation_window_pulls_total{result=\"ok\"}";
    let asked = metric(&w1, window_pulls).await;
    eventually("two more window pulls", || async {
        metric(&w1, window_pulls).await >= asked + 2.0
    })
    .await;
    // With every aggregator gone, a node still answers, from its own log
    // and its window of the newest events (another node's included), and
    // says the rest is unavailable.
    for aggregator in &mut aggregators {
        aggregator.kill();
    }
    for node in ["w1", "w0"] {
        let complete = |page: &HistoryResponse| {
            page.incomplete.as_deref().is_some_and(|why| {
                why.contains("newest events of the cluster it had from the aggregators")
            }) && before
                .iter()
                .chain(&after)
                .filter(|e| e.node == node)
                .all(|e| lists(page, e))
        };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let page = history_at(w1.api_addr, node).await;
            if page.as_ref().is_some_and(complete) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "w1 never answered for {node} from its log and window, saying it is \
                 incomplete: {page:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let status = starling_client::status(&[w1.api_addr.to_string()]).await;
    assert!(status.is_ok(), "status still answers: {status:?}");
    // What no aggregator acknowledged is the only copy: past the age
    // limit, retention keeps it.
    let unacknowledged = canary_broke(&w1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = w1
        .history
        .enforce_retention()
        .await
        .expect("retention runs");
    assert!(report.own_kept_unacknowledged >= 1, "{report:?}");
    assert!(
        holds(&w1, &unacknowledged).await,
        "retention deleted an event no aggregator had"
    );
    seed.shutdown().await.expect("clean shutdown");
    w1.shutdown().await.expect("clean shutdown");
}

/// Alerts to `receiver`'s Alertmanager endpoint.
fn alerting(receiver: &AlertReceiver) -> AlertConfig {
    support::fast_alerting("am", SinkKind::Alertmanager, receiver.url())
}

/// Alert dedupe rests on each sender seeing the others' marks, and an
/// ordinary node of an aggregated cluster sees only its own: there only
/// aggregators send, so a degraded node is one alert, from one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_aggregated_cluster_sends_each_alert_once_from_an_aggregator() {
    let receiver = AlertReceiver::start().await.expect("receiver binds");
    let key = keyring();
    let dir = tempfile::tempdir().expect("temp dir");
    let flag = dir.path().join("broken");
    let aggregator = |s: &mut starling_agent::AgentConfig| {
        s.role = Role::Aggregator;
        s.alert = alerting(&receiver);
    };
    let (a1, _d1) = agent_with("agg-1", &key, None, aggregator).await;
    let (a2, _d2) = agent_with("agg-2", &key, Some(a1.gossip_addr), aggregator).await;
    let mut workers = vec![
        agent_with("w1", &key, Some(a1.gossip_addr), |s| {
            support::canary(s, &flag);
            s.alert = alerting(&receiver);
        })
        .await,
    ];
    for name in ["w2", "w3", "w4"] {
        workers.push(
            agent_with(name, &key, Some(a1.gossip_addr), |s| {
                s.alert = alerting(&receiver)
            })
            .await,
        );
    }
    for agent in [&a1, &a2].into_iter().chain(workers.iter().map(|(w, _)| w)) {
        sees_alive(agent, 5).await;
    }
    for (worker, _) in &workers {
        eventually("every node aggregated", || async {
            metric(worker, "starling_aggregation_aggregated ").await == 1.0
        })
        .await;
    }
    for aggregator in [&a1, &a2] {
        eventually(
            "aggregators stream their own logs to each other",
            || async {
                metric(
                    aggregator,
                    "starling_aggregation_streams_total{result=\"ok\"} ",
                )
                .await
                    > 0.0
            },
        )
        .await;
    }
    std::fs::write(&flag, "").expect("flag");
    eventually("the alert is sent", || async {
        !receiver.accepted(ALERTMANAGER).is_empty()
    })
    .await;
    // Past the grace of every rank among the five others: any node that
    // ranked and missed the first mark would have sent by now.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let posts = receiver.accepted(ALERTMANAGER);
    assert_eq!(posts.len(), 1, "one post, from one node: {posts:#?}");
    let alert = &posts[0].body[0];
    assert_eq!(alert["labels"]["node"], "w1");
    let observer = alert["annotations"]["observer"].as_str().expect("observer");
    assert!(observer.starts_with("agg-"), "sent by {observer}");
}
