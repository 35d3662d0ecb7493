//! The etcd check against a real etcd (Debian's etcd-server, started by
//! testkit on loopback): healthy, stopped, restarted, TLS with the right
//! and the wrong certificates.

use std::sync::Arc;
use std::time::Duration;

use starling_checks::{
    CheckResult, Checker, ClientTls, EtcdCheck, EtcdConfig, Everywhere, Runner, Schedule, Status,
};
use starling_testkit::{Pki, etcd_or_skip};
use tokio::sync::mpsc;

fn check(endpoints: Vec<String>, tls: ClientTls) -> EtcdCheck {
    EtcdCheck::new(EtcdConfig {
        endpoints,
        tls,
        ..EtcdConfig::default()
    })
}

fn kubeadm_like(pki: &Pki) -> ClientTls {
    ClientTls {
        ca: Some(pki.ca_cert.clone()),
        cert: Some(pki.healthcheck_client_cert.clone()),
        key: Some(pki.healthcheck_client_key.clone()),
    }
}

#[tokio::test]
async fn a_healthy_etcd_is_ok_with_its_leader_and_read_latency() {
    let Some(etcd) = etcd_or_skip(None) else {
        return;
    };
    let outcome = check(vec![etcd.client_url()], ClientTls::default())
        .check()
        .await;
    assert_eq!(outcome.status, Status::Ok, "{outcome:?}");
    assert!(outcome.message.contains("leader"), "{}", outcome.message);
    let read_ms = outcome.details["endpoints"][0]["read_ms"]
        .as_f64()
        .expect("the read latency is in the details");
    assert!(read_ms > 0.0);

    // kubeadm's plain metrics port: /health only, no certificates.
    let health_only = check(vec![etcd.metrics_url()], ClientTls::default())
        .check()
        .await;
    assert_eq!(health_only.status, Status::Ok, "{health_only:?}");
    assert!(health_only.message.contains("/health only"));
}

/// Runs the etcd check every 200 ms for `how_long`.
async fn run_for(check: EtcdCheck, how_long: Duration) -> Vec<CheckResult> {
    let mut runner = Runner::new(1);
    runner.add(
        check,
        Schedule {
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(2),
            failures_before_critical: 2,
        },
    );
    let (sender, mut receiver) = mpsc::channel(64);
    let task = tokio::spawn(runner.run(Arc::new(Everywhere), sender, tokio::time::sleep(how_long)));
    let mut results = Vec::new();
    while let Some(result) = receiver.recv().await {
        results.push(result);
    }
    task.await.expect("runner stops");
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_etcd_turns_critical_after_the_threshold_and_recovers_on_restart() {
    let Some(mut etcd) = etcd_or_skip(None) else {
        return;
    };
    let url = etcd.client_url();
    etcd.stop();
    let down = run_for(
        check(vec![url.clone()], ClientTls::default()),
        Duration::from_secs(1),
    )
    .await;
    assert!(down.len() >= 3, "{down:?}");
    assert_eq!(
        down[0].status,
        Status::Warning,
        "one failure is not yet critical"
    );
    assert_eq!(down[1].status, Status::Critical, "two in a row are");
    assert!(
        down[1].message.contains(&url) && down[1].message.to_lowercase().contains("refused"),
        "the message names the endpoint and the cause: {}",
        down[1].message
    );
    etcd.restart().expect("etcd restarts");
    let up = run_for(
        check(vec![url], ClientTls::default()),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(up[0].status, Status::Ok, "one pass recovers: {:?}", up[0]);
}

#[tokio::test]
async fn tls_with_kubeadms_certificates_is_ok_and_wrong_ones_are_critical_and_clear() {
    let pki = Pki::generate();
    let Some(etcd) = etcd_or_skip(Some(&pki)) else {
        return;
    };
    let url = etcd.client_url();
    assert!(url.starts_with("https://"));

    let good = check(vec![url.clone()], kubeadm_like(&pki)).check().await;
    assert_eq!(good.status, Status::Ok, "{good:?}");

    let rogue_client = ClientTls {
        cert: Some(pki.rogue_client_cert.clone()),
        key: Some(pki.rogue_client_key.clone()),
        ..kubeadm_like(&pki)
    };
    let refused = check(vec![url.clone()], rogue_client).check().await;
    assert_eq!(refused.status, Status::Critical, "{refused:?}");
    assert!(refused.message.contains(&url), "{}", refused.message);

    let no_client_cert = ClientTls {
        cert: None,
        key: None,
        ..kubeadm_like(&pki)
    };
    let anonymous = check(vec![url.clone()], no_client_cert).check().await;
    assert_eq!(anonymous.status, Status::Critical, "{anonymous:?}");

    let wrong_ca = ClientTls {
        ca: Some(pki.rogue_ca_cert.clone()),
        ..kubeadm_like(&pki)
    };
    let untrusted = check(vec![url.clone()], wrong_ca).check().await;
    assert_eq!(untrusted.status, Status::Critical, "{untrusted:?}");
    assert!(
        untrusted.message.contains("UnknownIssuer") || untrusted.message.contains("certificate"),
        "says the server certificate is not trusted: {}",
        untrusted.message
    );

    let missing = ClientTls {
        cert: Some(pki.dir().join("no-such.crt")),
        ..kubeadm_like(&pki)
    };
    let cannot = check(vec![url], missing).check().await;
    assert_eq!(cannot.status, Status::Unknown, "{cannot:?}");
    assert!(cannot.message.contains("no-such.crt"), "{}", cannot.message);
}

#[tokio::test]
async fn no_endpoint_is_unknown_not_silence() {
    let outcome = check(Vec::new(), ClientTls::default()).check().await;
    assert_eq!(outcome.status, Status::Unknown);
    assert!(outcome.message.contains("--etcd-endpoint"));
}
