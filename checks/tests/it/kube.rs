//! The API checks through the real `kube` client against testkit's fake
//! API server: readiness, errors, latency, a dead server, the scheduler
//! probe pod (scheduled, not scheduled, leftovers), and leader leases.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use starling_checks::{
    ApiServerCheck, CheckResult, Checker, Everywhere, LeaseCheck, Runner, Schedule, SchedulerCheck,
    SchedulerConfig, Status,
};
use starling_testkit::FakeApiServer;
use tokio::sync::mpsc;

use crate::tls_server::tls_server;

fn config(api: &FakeApiServer) -> kube::Config {
    kube::Config::new(api.url().parse().expect("the fake's URL parses"))
}

/// The same server by a DNS name, as the cluster DNS name would reach it.
fn by_name(api: &FakeApiServer) -> http::Uri {
    api.url()
        .replace("127.0.0.1", "localhost")
        .parse()
        .expect("a URL")
}

/// One run through the runner, so its timeout applies.
async fn run_once(check: impl Checker, timeout: Duration) -> CheckResult {
    let mut runner = Runner::new(1);
    runner.add(
        check,
        Schedule {
            interval: Duration::from_secs(60),
            timeout,
            failures_before_critical: 1,
        },
    );
    let (sender, mut receiver) = mpsc::channel(4);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runner.run(Arc::new(Everywhere), sender, async {
        let _ = stopped.await;
    }));
    let result = tokio::time::timeout(timeout + Duration::from_secs(10), receiver.recv())
        .await
        .expect("one result within the first-run spread and the timeout")
        .expect("a result");
    let _ = stop.send(());
    task.await.expect("runner stops");
    result
}

#[tokio::test]
async fn the_kubeconfigs_client_certificate_and_ca_are_judged_by_their_dates() {
    use starling_testkit::Pki;
    let api = FakeApiServer::start().await.expect("fake starts");
    let pki = Pki::generate();
    let pem = |path: &std::path::Path| std::fs::read_to_string(path).expect("PEM");
    let base64 = |text: String| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    };
    // A kubeconfig as `kubeadm` writes it, with its client certificate
    // expired: the fake (plain HTTP) still answers, the dates decide.
    let mut expired = config(&api);
    expired.auth_info.client_certificate_data = Some(base64(pem(&pki.expired_client_cert)));
    expired.auth_info.client_key_data = Some(base64(pem(&pki.expired_client_key)).into());
    let outcome = ApiServerCheck::new(expired, None).check().await;
    assert_eq!(outcome.status, Status::Critical, "{outcome:?}");
    assert!(
        outcome.message.starts_with(
            "the kubeconfig's client certificate (CN=kube-etcd-healthcheck-client) expired on \
             2021-01-01T00:00:00Z; live and ready"
        ),
        "{}",
        outcome.message
    );

    let mut soon = config(&api);
    soon.root_cert_file = Some(pki.soon_client_cert.clone());
    let outcome = ApiServerCheck::new(soon, None).check().await;
    assert_eq!(outcome.status, Status::Warning, "{outcome:?}");
    assert!(
        outcome.message.starts_with(&format!(
            "the API server's CA {} (",
            pki.soon_client_cert.display()
        )),
        "{}",
        outcome.message
    );
}

/// A TLS server that answers "ok" to every GET plays the API server: the
/// kube client verifies it against the CA, and the dates decide.
#[tokio::test]
async fn the_api_servers_serving_certificate_is_judged_by_its_dates() {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    use starling_testkit::Pki;
    let served = |pki: Pki| async move {
        let url: http::Uri = tls_server(&pki, "200 OK", "ok")
            .await
            .parse()
            .expect("a URL");
        let mut config = kube::Config::new(url.clone());
        config.root_cert = Some(
            CertificateDer::pem_file_iter(&pki.ca_cert)
                .expect("the CA")
                .map(|der| der.expect("PEM").to_vec())
                .collect(),
        );
        (url, ApiServerCheck::new(config, None).check().await)
    };
    let (url, soon) = served(Pki::generate_with_server_days(Some(5))).await;
    assert_eq!(soon.status, Status::Warning, "{soon:?}");
    assert!(
        soon.message.starts_with(&format!(
            "the API server's serving certificate at {url} (CN=kube-etcd) expires on"
        )) && soon.message.contains(" days; live and ready"),
        "{}",
        soon.message
    );
    let (url, expired) = served(Pki::generate_with_server_days(Some(-2))).await;
    assert_eq!(expired.status, Status::Critical, "{expired:?}");
    assert!(
        expired.message.starts_with(&format!(
            "the API server's serving certificate at {url} (CN=kube-etcd) expired on"
        )),
        "{}",
        expired.message
    );
    eprintln!(
        "an expired API server certificate, as the operator sees it: {}",
        expired.message
    );
}

#[tokio::test]
async fn a_healthy_apiserver_is_ok_through_both_addresses() {
    let api = FakeApiServer::start().await.expect("fake starts");
    let outcome = ApiServerCheck::new(config(&api), Some(by_name(&api)))
        .check()
        .await;
    assert_eq!(outcome.status, Status::Ok, "{outcome:?}");
    assert!(
        outcome.message.contains("service") && outcome.message.contains("dns"),
        "{}",
        outcome.message
    );
    assert_eq!(outcome.details["targets"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_failing_readyz_sub_check_is_named() {
    let api = FakeApiServer::start().await.expect("fake starts");
    api.fail_readyz_check(Some("etcd"));
    let outcome = ApiServerCheck::new(config(&api), None).check().await;
    assert_eq!(outcome.status, Status::Critical, "{outcome:?}");
    assert!(
        outcome.message.contains("not ready: failing etcd"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn server_errors_are_critical_with_the_status() {
    let api = FakeApiServer::start().await.expect("fake starts");
    api.set_errors(true);
    let outcome = ApiServerCheck::new(config(&api), None).check().await;
    assert_eq!(outcome.status, Status::Critical, "{outcome:?}");
    assert!(outcome.message.contains("HTTP 500"), "{}", outcome.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_past_the_timeout_is_critical_and_bounded() {
    let api = FakeApiServer::start().await.expect("fake starts");
    api.set_latency(Duration::from_secs(5));
    let result = run_once(
        ApiServerCheck::new(config(&api), None),
        Duration::from_millis(800),
    )
    .await;
    assert_eq!(result.status, Status::Critical, "{result:?}");
    assert_eq!(result.message, "no answer within 800ms");
    assert!(result.duration_ms < 2000, "{result:?}");
}

#[tokio::test]
async fn a_dead_apiserver_is_critical_naming_the_cause() {
    let api = FakeApiServer::start().await.expect("fake starts");
    let config = config(&api);
    drop(api);
    let outcome = ApiServerCheck::new(config, None).check().await;
    assert_eq!(outcome.status, Status::Critical, "{outcome:?}");
    assert!(
        outcome.message.to_lowercase().contains("refused"),
        "{}",
        outcome.message
    );
}

fn probe_config(schedule_timeout: Duration) -> SchedulerConfig {
    SchedulerConfig {
        schedule_timeout,
        ..SchedulerConfig::default()
    }
}

#[tokio::test]
async fn the_probe_pod_is_scheduled_measured_and_deleted() {
    let api = FakeApiServer::start().await.expect("fake starts");
    let check = SchedulerCheck::new(probe_config(Duration::from_secs(5)), config(&api));
    let outcome = check.check().await;
    assert_eq!(outcome.status, Status::Ok, "{outcome:?}");
    assert!(
        outcome.message.starts_with("probe pod scheduled in"),
        "{}",
        outcome.message
    );
    let scheduled_ms = outcome.details["scheduled_ms"].as_f64().expect("measured");
    assert!(
        scheduled_ms >= 150.0,
        "the fake binds after 200 ms: {scheduled_ms}"
    );
    assert!(
        api.pods("starling-probe").is_empty(),
        "the probe pod was deleted"
    );
}

#[tokio::test]
async fn an_unscheduled_probe_pod_is_critical_with_the_reason_and_still_deleted() {
    let api = FakeApiServer::start().await.expect("fake starts");
    api.set_scheduling(false);
    let check = SchedulerCheck::new(probe_config(Duration::from_secs(1)), config(&api));
    let outcome = check.check().await;
    assert_eq!(outcome.status, Status::Critical, "{outcome:?}");
    assert!(
        outcome
            .message
            .starts_with("probe pod not scheduled after 1s (Unschedulable"),
        "{}",
        outcome.message
    );
    assert!(
        api.pods("starling-probe").is_empty(),
        "deleted even though it failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_short_leaves_a_pod_that_the_next_run_deletes() {
    let api = FakeApiServer::start().await.expect("fake starts");
    api.set_scheduling(false);
    // The runner's timeout cuts the run before the check's own deadline:
    // the pod is left behind, as when an agent dies mid-run.
    let cut = run_once(
        SchedulerCheck::new(probe_config(Duration::from_secs(30)), config(&api)),
        Duration::from_millis(700),
    )
    .await;
    assert_eq!(cut.status, Status::Critical);
    // An older leftover too, from some crashed run long ago.
    api.insert_pod(Pod {
        metadata: ObjectMeta {
            name: Some("starling-probe-crashed".to_owned()),
            namespace: Some("starling-probe".to_owned()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_owned(),
                "starling-scheduler-probe".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        ..Pod::default()
    });
    assert_eq!(api.pods("starling-probe").len(), 2);
    api.set_scheduling(true);
    let outcome = SchedulerCheck::new(probe_config(Duration::from_secs(5)), config(&api))
        .check()
        .await;
    assert_eq!(outcome.status, Status::Ok, "{outcome:?}");
    assert_eq!(outcome.details["leftovers_deleted"], 2);
    assert!(api.pods("starling-probe").is_empty());
}

#[tokio::test]
async fn leader_leases_must_be_fresh() {
    let api = FakeApiServer::start().await.expect("fake starts");
    let check = || {
        LeaseCheck::new(
            "scheduler-lease",
            "kube-system",
            "kube-scheduler",
            Duration::from_secs(60),
            config(&api),
        )
    };
    let missing = check().check().await;
    assert_eq!(missing.status, Status::Critical);
    assert!(
        missing.message.contains("does not exist"),
        "{}",
        missing.message
    );

    api.set_lease(
        "kube-system",
        "kube-scheduler",
        "cp-1_abc",
        SystemTime::now(),
    );
    let fresh = check().check().await;
    assert_eq!(fresh.status, Status::Ok, "{fresh:?}");
    assert!(fresh.message.contains("cp-1_abc"));

    let stale = SystemTime::now() - Duration::from_secs(300);
    api.set_lease("kube-system", "kube-scheduler", "cp-1_abc", stale);
    let old = check().check().await;
    assert_eq!(old.status, Status::Critical, "{old:?}");
    assert!(
        old.message.contains("not renewed for 300 s"),
        "{}",
        old.message
    );
}
