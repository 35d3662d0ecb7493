//! Alerts into real Alertmanagers (Debian's 0.25): the routing example in
//! `docs/examples/alertmanager.yml` passes `amtool check-config` and runs;
//! three replicas, one behind basic auth and one behind mutual TLS, each
//! receive every alert; a killed node's alert reads back through
//! Alertmanager's API with the cluster label and a sentence for a summary,
//! a partition in another cluster does not inhibit it while one in its own
//! does, and it resolves when the node returns.

use std::time::Duration;

use serde_json::{Value, json};
use starling::settings::{Secret, SinkSpec};
use starling_alert::{
    AlertConfig, Backoff, DecideTiming, Severity, SinkAuth, SinkKind, SourceConfig,
};
use starling_seal::Keyring;
use starling_testkit::{Alertmanager, Pki, alertmanager_or_skip, amtool_check_config};

use crate::support::agents::{self, AgentProcess, PATIENCE};
use crate::support::manifests::repository;

/// A test credential, and its bcrypt hash for Alertmanager's web config.
const USER: &str = "starling";
const PASSWORD: &str = "starling-test";
const PASSWORD_BCRYPT: &str = "$2b$04$oaOSVzZlt1pjxCchY9MG.e0u5fRDHma2xpgnwVV4B0aGh5sHhnVtS";
const CLUSTER: &str = "lab-a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_gets_a_dead_nodes_alert_with_its_cluster_and_its_resolution() {
    let example = repository().join("docs/examples/alertmanager.yml");
    let checked = amtool_check_config(&example).unwrap_or_else(|e| panic!("{e}"));
    assert!(checked.contains("SUCCESS"), "{checked}");
    let config = std::fs::read_to_string(&example).expect("the example");
    let Some(open) = alertmanager_or_skip(&config, None) else {
        return;
    };
    let web = format!("basic_auth_users:\n  {USER}: {PASSWORD_BCRYPT}\n");
    let guarded = alertmanager_or_skip(&config, Some(&web)).expect("started like the first");
    // A third that takes only clients with a certificate its CA signed.
    let pki = Pki::generate();
    let mutual = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca_cert.display()
    );
    let mtls = alertmanager_or_skip(&config, Some(&mutual)).expect("started like the first");
    let replicas = [Replica::open(&open), Replica::guarded(&guarded)];
    // Basic auth is enforced: without it, the guarded replica refuses.
    let anonymous = starling_checks::http_client()
        .build()
        .expect("a client")
        .get(format!("{}/api/v2/alerts", guarded.url()))
        .send()
        .await
        .expect("it answers");
    assert_eq!(anonymous.status(), 401);

    let dir = tempfile::tempdir().expect("a temporary directory");
    let key = Keyring::generate_key();
    let keyring = Keyring::parse(&key).expect("a generated key parses");
    let alerting = alerting(&open, &guarded, &mtls, &pki);
    let (first, _first_data) =
        agents::agent_with("first", &keyring, None, |s| s.alert = alerting.clone()).await;
    let (second, _second_data) =
        agents::agent_with("second", &keyring, Some(first.gossip_addr), |s| {
            s.alert = alerting.clone()
        })
        .await;
    let mut doomed = AgentProcess::start("doomed", &key, first.gossip_addr, dir.path());
    agents::sees_alive(&first, 2).await;
    agents::sees_alive(&second, 2).await;

    let killed_at = starling_model::unix_ms_now();
    doomed.kill();
    for replica in &replicas {
        let alert = replica
            .until("the dead node's alert", |alerts| {
                alerts.into_iter().find(|a| a["labels"]["node"] == "doomed")
            })
            .await;
        assert_eq!(alert["labels"]["alertname"], "StarlingNodeDown");
        assert_eq!(alert["labels"]["cluster"], CLUSTER);
        assert_eq!(alert["labels"]["severity"], "critical");
        assert_eq!(alert["annotations"]["summary"], "Node doomed is down");
        assert_eq!(alert["status"]["state"], "active");
        assert_eq!(alert["receivers"][0]["name"], "pager", "routed by severity");
        let started = humantime::parse_rfc3339_weak(
            alert["startsAt"]
                .as_str()
                .expect("a start")
                .trim_end_matches('Z'),
        )
        .expect("RFC 3339");
        let started_ms = started
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64;
        // When gossip declared it down, not when the alert was sent after
        // the settling and grace periods.
        assert!(
            started_ms >= killed_at && started_ms < starling_model::unix_ms_now(),
            "{alert}"
        );
    }

    // The third replica, behind mutual TLS, took it too: the agents'
    // delivery count says so (the test has no client certificate to ask).
    let delivered_mtls = |agent: &starling_agent::daemon::RunningAgent| {
        let addr = agent.api_addr;
        async move {
            agents::metric_at(
                addr,
                "starling_alert_deliveries_total{sink=\"am-2\",result=\"delivered\"}",
            )
            .await
        }
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while delivered_mtls(&first).await + delivered_mtls(&second).await < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery over mutual TLS within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Inhibition keeps clusters apart: another cluster's partition leaves
    // this node-down alone, this cluster's own mutes it.
    let open_replica = &replicas[0];
    open_replica.post_partition("lab-b").await;
    let alerts = open_replica.alerts().await;
    let down = find_node(&alerts, "doomed");
    assert_eq!(down["status"]["state"], "active", "{down}");
    open_replica.post_partition(CLUSTER).await;
    let alerts = open_replica.alerts().await;
    let down = find_node(&alerts, "doomed");
    assert_eq!(down["status"]["state"], "suppressed", "{down}");

    // The node comes back: both replicas see the alert resolved.
    doomed.restart();
    for replica in &replicas {
        replica
            .until("the alert resolved", |alerts| {
                (!alerts.iter().any(|a| a["labels"]["node"] == "doomed")).then_some(())
            })
            .await;
    }
    second.shutdown().await.expect("clean shutdown");
    first.shutdown().await.expect("clean shutdown");
}

fn alerting(
    open: &Alertmanager,
    guarded: &Alertmanager,
    mtls: &Alertmanager,
    pki: &Pki,
) -> AlertConfig {
    let sink = |name: &str, url: String, auth: SinkAuth| SinkSpec {
        name: name.to_owned(),
        kind: SinkKind::Alertmanager,
        ca_file: url.starts_with("https://").then(|| pki.ca_cert.clone()),
        url,
        severities: vec![Severity::Warning, Severity::Critical],
        auth,
        hmac_key: None,
    };
    AlertConfig {
        // HA done right: every replica is a sink of its own.
        sinks: vec![
            sink("am-0", open.url(), SinkAuth::default()),
            sink(
                "am-1",
                guarded.url(),
                SinkAuth {
                    basic_auth: Some((USER.to_owned(), Secret(PASSWORD.as_bytes().to_vec()))),
                    ..SinkAuth::default()
                },
            ),
            sink(
                "am-2",
                mtls.url().replace("http://", "https://"),
                SinkAuth {
                    client_cert: Some((
                        pki.healthcheck_client_cert.clone(),
                        pki.healthcheck_client_key.clone(),
                    )),
                    ..SinkAuth::default()
                },
            ),
        ],
        labels: [("cluster".to_owned(), CLUSTER.to_owned())].into(),
        sources: SourceConfig {
            partition_window: Duration::from_secs(3),
            ..SourceConfig::default()
        },
        timing: DecideTiming {
            grace: Duration::from_secs(1),
            ..DecideTiming::default()
        },
        evaluate_every: Duration::from_millis(200),
        backoff: Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(1),
        },
        ..AlertConfig::default()
    }
}

fn find_node<'a>(alerts: &'a [Value], node: &str) -> &'a Value {
    alerts
        .iter()
        .find(|a| a["labels"]["node"] == node)
        .unwrap_or_else(|| panic!("no alert about {node}: {alerts:?}"))
}

/// One replica's v2 API, as the test reads it.
struct Replica {
    url: String,
    basic_auth: Option<(&'static str, &'static str)>,
    client: reqwest::Client,
}

impl Replica {
    fn open(alertmanager: &Alertmanager) -> Replica {
        Replica::new(alertmanager, None)
    }

    fn guarded(alertmanager: &Alertmanager) -> Replica {
        Replica::new(alertmanager, Some((USER, PASSWORD)))
    }

    fn new(
        alertmanager: &Alertmanager,
        basic_auth: Option<(&'static str, &'static str)>,
    ) -> Replica {
        Replica {
            url: alertmanager.url(),
            basic_auth,
            client: starling_checks::http_client().build().expect("a client"),
        }
    }

    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let request = self
            .client
            .request(method, format!("{}/api/v2/alerts", self.url));
        match self.basic_auth {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    /// starling's alerts there now (resolved ones are not listed).
    async fn alerts(&self) -> Vec<Value> {
        let answer: Value = self
            .request(reqwest::Method::GET)
            .query(&[("filter", "source=\"starling\"")])
            .send()
            .await
            .expect("alertmanager answers")
            .json()
            .await
            .expect("alertmanager answers JSON");
        answer.as_array().cloned().unwrap_or_default()
    }

    /// A partition alert as an agent of `cluster` would post it.
    async fn post_partition(&self, cluster: &str) {
        let alert = json!([{
            "labels": {
                "alertname": "StarlingPartition",
                "severity": "critical",
                "source": "starling",
                "alert_key": "partition/from-x",
                "cluster": cluster,
            },
            "annotations": {"summary": "The cluster is partitioned"},
        }]);
        let posted = self
            .request(reqwest::Method::POST)
            .json(&alert)
            .send()
            .await
            .expect("alertmanager answers");
        assert!(posted.status().is_success(), "{posted:?}");
    }

    /// Polls the alerts until `found` gives `Some`, for at most `PATIENCE`.
    async fn until<T>(&self, what: &str, found: impl Fn(Vec<Value>) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let alerts = self.alerts().await;
            let seen = format!("{alerts:?}");
            if let Some(found) = found(alerts) {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: not within {PATIENCE:?}: {what}; it holds {seen}",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
