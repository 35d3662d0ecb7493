//! The loopback healthz check against a real TLS server with a
//! certificate the client cannot verify (as kube-scheduler's :10259).

use starling_checks::{Checker, HealthzCheck, Scope, Status};
use starling_testkit::Pki;

use crate::tls_server::tls_server;

#[tokio::test]
async fn a_healthy_component_behind_a_self_signed_certificate_is_ok() {
    let pki = Pki::generate();
    let url = format!("{}/healthz", tls_server(&pki, "200 OK", "ok").await);
    let check = HealthzCheck::new("scheduler-healthz", &url).expect("loopback");
    assert_eq!(check.scope(), Scope::ControlPlane);
    let outcome = check.check().await;
    assert_eq!(outcome.status, Status::Ok, "{outcome:?}");
}

#[tokio::test]
async fn a_serving_certificate_ending_soon_is_a_warning_naming_it() {
    let pki = Pki::generate_with_server_days(Some(5));
    let url = format!("{}/healthz", tls_server(&pki, "200 OK", "ok").await);
    let outcome = HealthzCheck::new("kube-scheduler", &url)
        .expect("loopback")
        .check()
        .await;
    assert_eq!(outcome.status, Status::Warning, "{outcome:?}");
    assert!(
        outcome.message.starts_with(&format!(
            "the serving certificate of {url} (CN=kube-etcd) expires on"
        )) && outcome.message.contains(&format!("; {url} ok in ")),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn a_failing_component_is_critical_naming_what_fails() {
    let pki = Pki::generate();
    let url = tls_server(
        &pki,
        "500 Internal Server Error",
        "[+]ping ok\n[-]leaderElection failed: reason withheld\nhealthz check failed",
    )
    .await;
    let outcome = HealthzCheck::new("scheduler-healthz", &url)
        .expect("loopback")
        .check()
        .await;
    assert_eq!(outcome.status, Status::Critical, "{outcome:?}");
    assert!(
        outcome.message.contains("failing leaderElection"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn nothing_listening_is_critical_and_remote_urls_are_refused() {
    let outcome = HealthzCheck::new("scheduler-healthz", "https://127.0.0.1:1/healthz")
        .expect("loopback")
        .check()
        .await;
    assert_eq!(outcome.status, Status::Critical);
    assert!(
        outcome.message.to_lowercase().contains("refused"),
        "{}",
        outcome.message
    );
    assert!(HealthzCheck::new("x", "https://10.0.0.1:10259/healthz").is_err());
}
