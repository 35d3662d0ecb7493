//! The shipped PrometheusRule and Grafana dashboard against the real
//! `promtool` and Prometheus (Debian's `prometheus`): the groups are valid
//! rules, every alert has unit tests in `tests/prometheus/rules.test.yaml`
//! that pass, including the outage where no agent is on a majority side,
//! and a real Prometheus scraping live agents evaluates every rule and
//! dashboard query.

use std::collections::BTreeSet;

use starling_seal::Keyring;
use starling_testkit::{Prometheus, prometheus_or_skip, promtool_or_skip};

use crate::support::agents::{self, AgentProcess};
use crate::support::manifests::{self, PrometheusRule, deploy, render};

/// The unit tests, next to this crate's tests.
fn rule_tests() -> std::path::PathBuf {
    manifests::repository().join("crates/starling/tests/prometheus/rules.test.yaml")
}

fn shipped_rule() -> PrometheusRule {
    render(&deploy("overlays/prometheus"))
        .into_iter()
        .find(|document| document.kind().1 == "PrometheusRule")
        .expect("the Prometheus overlay ships a PrometheusRule")
        .strict()
}

#[test]
fn every_shipped_alert_has_unit_tests() {
    let shipped: BTreeSet<String> = shipped_rule()
        .spec
        .groups
        .into_iter()
        .flat_map(|group| group.rules)
        .map(|rule| rule.alert)
        .collect();
    let tests = std::fs::read_to_string(rule_tests()).expect("the rule tests");
    let tested: BTreeSet<String> = tests
        .lines()
        .filter_map(|line| line.trim().strip_prefix("alertname: "))
        .map(str::to_owned)
        .collect();
    assert_eq!(shipped, tested);
}

#[test]
fn the_shipped_rules_are_valid_and_pass_their_unit_tests() {
    let Some(promtool) = promtool_or_skip() else {
        return;
    };
    // promtool reads plain rule files: the PrometheusRule's spec is one.
    // JSON is YAML, so serde_json writes it.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rules = dir.path().join("rules.yaml");
    let groups = serde_json::to_string_pretty(&shipped_rule().spec).expect("serialises");
    std::fs::write(&rules, groups).expect("writes the rules");
    let tests = dir.path().join("rules.test.yaml");
    std::fs::copy(rule_tests(), &tests).expect("copies the tests");

    let checked = promtool
        .check_rules(&rules)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool
        .test_rules(&tests)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// Two agents scraped by a real Prometheus that loads the shipped rules:
/// every rule evaluates cleanly, every dashboard query answers, and when
/// one agent dies (so the survivor has no majority) the cluster verdict is
/// pending as an alert and reads 0 on the dashboard, not "no data".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_evaluates_the_rules_and_dashboard_on_live_agents() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rules = dir.path().join("rules.yaml");
    let groups = serde_json::to_string_pretty(&shipped_rule().spec).expect("serialises");
    std::fs::write(&rules, groups).expect("writes the rules");

    let key = Keyring::generate_key();
    let keyring = Keyring::parse(&key).expect("a generated key parses");
    let (survivor, _data) = agents::agent("survivor", &keyring, None).await;
    let mut doomed = AgentProcess::start("doomed", &key, survivor.gossip_addr, dir.path());
    agents::sees_alive(&survivor, 1).await;
    let Some(prometheus) = prometheus_or_skip(&[survivor.api_addr, doomed.api], &[rules.as_path()])
    else {
        return;
    };
    let api = PrometheusApi::new(&prometheus);

    // Both agents scraped, every rule evaluated at least once.
    api.until(
        "both agents scraped and every rule evaluated",
        |api| async move {
            let up = api.query("count(up == 1)").await;
            let rules = api.get("/api/v1/rules", &[]).await;
            let evaluated = rules["data"]["groups"][0]["rules"]
                .as_array()
                .is_some_and(|rules| {
                    rules.iter().all(|rule| {
                        rule["health"] == "ok" && rule["lastEvaluation"] != "0001-01-01T00:00:00Z"
                    })
                });
            (value(&up) == Some(2.0) && evaluated).then_some(())
        },
    )
    .await;

    // Every dashboard query is valid PromQL and answers; the stats have a
    // value now that both agents are up.
    for (title, expr) in dashboard_queries() {
        let answer = api.query(&expr).await;
        assert_eq!(answer["status"], "success", "{title}: {expr}: {answer}");
    }
    let stat = |title: &str| {
        dashboard_queries()
            .into_iter()
            .find(|(t, _)| t == title)
            .unwrap_or_else(|| panic!("the dashboard has {title}"))
            .1
    };
    assert_eq!(value(&api.query(&stat("Cluster healthy")).await), Some(1.0));
    assert_eq!(value(&api.query(&stat("Members down")).await), Some(0.0));
    assert_eq!(value(&api.query(&stat("Alerts firing")).await), Some(0.0));

    // One of two dies: the survivor is no majority. The verdict is 0, not
    // "no data", and the critical alert is on its way.
    doomed.kill();
    api.until(
        "the survivor alone, without a majority, is pending as unhealthy",
        |api| async move {
            let alerts = api.get("/api/v1/alerts", &[]).await;
            let pending = alerts["data"]["alerts"].as_array().is_some_and(|alerts| {
                alerts
                    .iter()
                    .any(|a| a["labels"]["alertname"] == "StarlingClusterUnhealthy")
            });
            pending.then_some(())
        },
    )
    .await;
    assert_eq!(value(&api.query(&stat("Cluster healthy")).await), Some(0.0));
    survivor.shutdown().await.expect("clean shutdown");
}

/// What Grafana needs to render the dashboard as an operator reads it.
#[test]
fn the_dashboard_has_units_thresholds_and_a_cluster_variable() {
    let path = deploy("overlays/prometheus/grafana-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard"))
            .expect("the dashboard is JSON");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert!(variables.iter().any(|v| v["name"] == "cluster"));
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("a title");
        let defaults = &panel["fieldConfig"]["defaults"];
        assert!(defaults["unit"].is_string(), "{title} has a unit");
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("an expression");
            assert!(
                expr.contains("$cluster"),
                "{title} follows the cluster variable"
            );
        }
        match panel["type"].as_str() {
            // A stat that says 0 must not be green when 0 is bad.
            Some("stat") => assert!(
                defaults["thresholds"]["steps"]
                    .as_array()
                    .is_some_and(|steps| steps.len() >= 2),
                "{title} is coloured by thresholds"
            ),
            // A table of what is wrong now, not a range of samples.
            Some("table") => assert!(
                panel["targets"]
                    .as_array()
                    .expect("targets")
                    .iter()
                    .all(|t| t["instant"] == true),
                "{title} is an instant query"
            ),
            _ => {}
        }
    }
}

/// Each dashboard target's title and expression, over every cluster.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = deploy("overlays/prometheus/grafana-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard"))
            .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("an expression");
            queries.push((
                panel["title"].as_str().expect("a title").to_owned(),
                expr.replace("$cluster", ".*"),
            ));
        }
    }
    queries
}

/// The single value of an instant vector with one sample.
fn value(answer: &serde_json::Value) -> Option<f64> {
    let result = answer["data"]["result"].as_array()?;
    match result.as_slice() {
        [only] => only["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

/// Prometheus's HTTP API.
#[derive(Clone)]
struct PrometheusApi {
    url: String,
    client: reqwest::Client,
}

impl PrometheusApi {
    fn new(prometheus: &Prometheus) -> PrometheusApi {
        PrometheusApi {
            url: prometheus.url(),
            client: starling_checks::http_client()
                .build()
                .expect("a plain HTTP client"),
        }
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> serde_json::Value {
        self.client
            .get(format!("{}{path}", self.url))
            .query(query)
            .send()
            .await
            .expect("prometheus answers")
            .json()
            .await
            .expect("prometheus answers JSON")
    }

    async fn query(&self, expr: &str) -> serde_json::Value {
        self.get("/api/v1/query", &[("query", expr)]).await
    }

    /// Polls `done` until it gives `Some`, for at most `PATIENCE`.
    async fn until<F, Fut, T>(&self, what: &str, done: F) -> T
    where
        F: Fn(PrometheusApi) -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + agents::PATIENCE;
        loop {
            if let Some(found) = done(self.clone()).await {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not within {:?}: {what}",
                agents::PATIENCE
            );
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
}
