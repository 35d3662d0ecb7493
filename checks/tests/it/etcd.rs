//! The etcd check against a real etcd (Debian's etcd-server, started by
//! testkit on loopback): healthy, stopped, restarted, TLS with the right
//! and the wrong certificates, a quota alarm, and a throttled disk.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use starling_checks::{
    CheckResult, Checker, ClientTls, DiskLimits, EtcdCheck, EtcdConfig, Everywhere, Runner,
    Schedule, Status,
};
use starling_testkit::{
    Etcd, Pki, etcd_installed_or_skip, etcd_or_skip, etcd_with_or_skip, slow_disk_or_skip,
};
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

/// Writes `count` small keys: each is one WAL fsync.
async fn write_keys(url: &str, count: usize) {
    let client = starling_checks::http_client()
        .build()
        .expect("a plain HTTP client");
    for i in 0..count {
        let key = base64::engine::general_purpose::STANDARD.encode(format!("/load/{i}"));
        let response = client
            .post(format!("{url}/v3/kv/put"))
            .json(&serde_json::json!({"key": key, "value": "eA=="}))
            .send()
            .await
            .expect("etcd answers");
        assert!(response.status().is_success());
    }
}

#[tokio::test]
async fn etcds_own_disk_figures_are_read_over_the_last_interval_and_judged() {
    let Some(etcd) = etcd_or_skip(None) else {
        return;
    };
    // The guidance set below any disk's fsync, so this runs without root:
    // the interval arithmetic on figures scraped from the real, loaded
    // etcd. The next test makes the disk itself slow.
    let strict = EtcdCheck::new(EtcdConfig {
        endpoints: vec![etcd.client_url()],
        disk: DiskLimits {
            wal_fsync_p99: Duration::from_nanos(1),
            backend_commit_p99: Duration::from_nanos(1),
        },
        ..EtcdConfig::default()
    });
    let first = strict.check().await;
    assert_eq!(
        first.status,
        Status::Ok,
        "an idle etcd: too few fsyncs to judge: {first:?}"
    );
    write_keys(&etcd.client_url(), 60).await;
    let loaded = strict.check().await;
    let endpoint = &loaded.details["endpoints"][0];
    assert!(
        endpoint["wal_fsyncs"].as_u64().is_some_and(|n| n >= 60),
        "the interval's fsyncs are counted: {endpoint}"
    );
    assert!(
        endpoint["wal_fsync_p99_ms"]
            .as_f64()
            .is_some_and(|p| p > 0.0)
    );
    assert_eq!(loaded.status, Status::Critical, "{loaded:?}");
    assert!(
        loaded
            .message
            .starts_with("etcd's disk is slow: WAL fsync p99 "),
        "{}",
        loaded.message
    );
    // The next interval is idle again: nothing to judge, back to ok.
    let idle = strict.check().await;
    assert_eq!(idle.status, Status::Ok, "{idle:?}");
    assert!(
        idle.details["endpoints"][0]["db_size_bytes"]
            .as_u64()
            .is_some(),
        "{}",
        idle.details
    );
}

/// The article's incident for real: etcd's data on a disk whose writes are
/// throttled to 10 a second, judged against the default guidance (WAL
/// fsync p99 under 10 ms).
#[tokio::test]
async fn etcd_on_a_throttled_disk_is_named_slow_with_its_fsync_p99() {
    let Some(disk) = slow_disk_or_skip() else {
        return;
    };
    if !etcd_installed_or_skip() {
        return;
    }
    let etcd = Etcd::start_inside(None, &[], &disk.mount_point()).expect("etcd starts");
    disk.admit(etcd.pid().expect("etcd runs"))
        .expect("etcd joins the throttled cgroup");
    let check = check(vec![etcd.client_url()], ClientTls::default());
    let baseline = check.check().await;
    assert_ne!(baseline.status, Status::Critical, "{baseline:?}");
    let _throttled = disk
        .throttle_writes(10)
        .expect("the cgroup takes a write limit");
    write_keys(&etcd.client_url(), 30).await;
    let slow = check.check().await;
    let endpoint = &slow.details["endpoints"][0];
    assert!(
        endpoint["wal_fsync_p99_ms"]
            .as_f64()
            .is_some_and(|p99| p99 > 10.0),
        "{endpoint}"
    );
    assert!(
        matches!(slow.status, Status::Warning | Status::Critical),
        "{slow:?}"
    );
    assert!(
        slow.message.contains("etcd's disk is slow: WAL fsync p99 "),
        "{}",
        slow.message
    );
    eprintln!(
        "a throttled disk, as the operator sees it: {}",
        slow.message
    );
}

/// Writes 200 kB values until etcd refuses one: with a 1 MiB quota that
/// raises a real NOSPACE alarm.
async fn fill_until_nospace(url: &str) {
    let client = starling_checks::http_client()
        .build()
        .expect("a plain HTTP client");
    let value = base64::engine::general_purpose::STANDARD.encode(vec![b'x'; 200_000]);
    for i in 0..200 {
        let key = base64::engine::general_purpose::STANDARD.encode(format!("/fill/{i}"));
        let response = client
            .post(format!("{url}/v3/kv/put"))
            .json(&serde_json::json!({"key": key, "value": value}))
            .send()
            .await
            .expect("etcd answers");
        if !response.status().is_success() {
            let body = response.text().await.unwrap_or_default();
            assert!(body.contains("database space exceeded"), "{body}");
            return;
        }
    }
    panic!("etcd took 40 MB under a 1 MiB quota");
}

#[tokio::test]
async fn a_nospace_alarm_is_named_with_what_to_do_though_health_answers_503() {
    let Some(etcd) = etcd_with_or_skip(None, &["--quota-backend-bytes=1048576"]) else {
        return;
    };
    fill_until_nospace(&etcd.client_url()).await;
    // The client port answers /health with 503 {"health":"false"} now:
    // the alarm must still be looked up and named.
    let outcome = check(vec![etcd.client_url()], ClientTls::default())
        .check()
        .await;
    assert_eq!(outcome.status, Status::Critical, "{outcome:?}");
    assert!(
        outcome.message.contains("alarm NOSPACE on member")
            && outcome.message.contains("etcdctl alarm disarm"),
        "{}",
        outcome.message
    );
    assert!(!outcome.message.contains("HTTP 503"), "{}", outcome.message);
    eprintln!(
        "a NOSPACE alarm, as the operator sees it: {}",
        outcome.message
    );
    assert_eq!(
        outcome.details["endpoints"][0]["alarms"][0]
            .as_str()
            .map(|a| a.starts_with("NOSPACE")),
        Some(true),
        "{}",
        outcome.details
    );
}

#[tokio::test]
async fn certificates_are_named_when_expired_not_yet_valid_or_expiring_soon() {
    // etcd's own server certificate ends in 5 days.
    let pki = Pki::generate_with_server_days(Some(5));
    let Some(etcd) = etcd_or_skip(Some(&pki)) else {
        return;
    };
    let url = etcd.client_url();
    let with_client = |cert: &std::path::Path, key: &std::path::Path| ClientTls {
        cert: Some(cert.to_owned()),
        key: Some(key.to_owned()),
        ..kubeadm_like(&pki)
    };

    // etcd refuses it with only "BadCertificate": the check says why.
    let expired = check(
        vec![url.clone()],
        with_client(&pki.expired_client_cert, &pki.expired_client_key),
    )
    .check()
    .await;
    assert_eq!(expired.status, Status::Critical, "{expired:?}");
    let named = format!(
        "etcd client certificate {} (CN=kube-etcd-healthcheck-client) expired on 2021-01-01T00:00:00Z",
        pki.expired_client_cert.display()
    );
    assert!(expired.message.starts_with(&named), "{}", expired.message);
    eprintln!(
        "an expired client certificate, as the operator sees it: {}",
        expired.message
    );

    let early = check(
        vec![url.clone()],
        with_client(&pki.future_client_cert, &pki.future_client_key),
    )
    .check()
    .await;
    assert_eq!(early.status, Status::Critical, "{early:?}");
    assert!(
        early
            .message
            .contains("is not valid before 2090-01-01T00:00:00Z"),
        "{}",
        early.message
    );

    // Accepted today, but both ours and etcd's end within 30 days.
    let soon = check(
        vec![url.clone()],
        with_client(&pki.soon_client_cert, &pki.soon_client_key),
    )
    .check()
    .await;
    assert_eq!(soon.status, Status::Warning, "{soon:?}");
    assert!(
        soon.message.contains(&format!(
            "etcd client certificate {}",
            pki.soon_client_cert.display()
        )) && (soon.message.contains("in 9 days") || soon.message.contains("in 10 days")),
        "{}",
        soon.message
    );
    assert!(
        soon.message.contains(&format!(
            "etcd's server certificate at {url} (CN=kube-etcd) expires on"
        )) && (soon.message.contains("in 4 days") || soon.message.contains("in 5 days")),
        "{}",
        soon.message
    );
    assert!(
        soon.message.contains("leader"),
        "the probe still ran: {}",
        soon.message
    );
    eprintln!(
        "certificates ending soon, as the operator sees it: {}",
        soon.message
    );
}

#[tokio::test]
async fn no_endpoint_is_unknown_not_silence() {
    let outcome = check(Vec::new(), ClientTls::default()).check().await;
    assert_eq!(outcome.status, Status::Unknown);
    assert!(outcome.message.contains("--etcd-endpoint"));
}
