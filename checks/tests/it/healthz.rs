//! The loopback healthz check against a real TLS server with a
//! certificate the client cannot verify (as kube-scheduler's :10259).

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use starling_checks::{Checker, HealthzCheck, Scope, Status};
use starling_testkit::Pki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves `status` and `body` to every request over TLS, with a server
/// certificate from a CA the client has never seen.
async fn tls_server(pki: &Pki, status: &'static str, body: &'static str) -> String {
    let chain = CertificateDer::pem_file_iter(&pki.server_cert)
        .expect("server cert")
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM");
    let key = PrivateKeyDer::from_pem_file(&pki.server_key).expect("server key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("cert and key fit");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "https://127.0.0.1:{}/healthz",
        listener.local_addr().expect("bound").port()
    );
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buffer = [0u8; 4096];
                let _ = tls.read(&mut buffer).await;
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    url
}

#[tokio::test]
async fn a_healthy_component_behind_a_self_signed_certificate_is_ok() {
    let pki = Pki::generate();
    let url = tls_server(&pki, "200 OK", "ok").await;
    let check = HealthzCheck::new("scheduler-healthz", &url).expect("loopback");
    assert_eq!(check.scope(), Scope::ControlPlane);
    let outcome = check.check().await;
    assert_eq!(outcome.status, Status::Ok, "{outcome:?}");
}

#[tokio::test]
async fn a_serving_certificate_ending_soon_is_a_warning_naming_it() {
    let pki = Pki::generate_with_server_days(Some(5));
    let url = tls_server(&pki, "200 OK", "ok").await;
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
