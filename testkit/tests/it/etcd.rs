//! The etcd fixture, tested against a real etcd. Skips without an `etcd` binary (fails
//! instead with STARLING_REQUIRE_ETCD=1). HTTP is spoken over bare sockets, and TLS through
//! `curl` and `openssl` where installed; every wait is bounded.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use starling_testkit::{Etcd, EtcdError, Pki, etcd_or_skip};

const TIMEOUT: Duration = Duration::from_secs(5);

/// The port of a `scheme://127.0.0.1:port` URL.
fn port(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// Sends one HTTP/1.0 request to `127.0.0.1:port` and returns (status code, body).
fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    Ok((code, body.to_owned()))
}

/// Runs `program args`, or `None` after saying what goes unchecked if it is not installed.
fn run_if_installed(program: &str, args: &[&str], unchecked: &str) -> Option<Output> {
    match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED (partly): {program} is not installed; {unchecked} unchecked");
            None
        }
        Err(e) => panic!("running {program}: {e}"),
    }
}

/// `curl` GET of `<client_url>/health` presenting `cert`/`key`, trusting only the etcd CA.
fn curl_health(etcd: &Etcd, pki: &Pki, cert: &Path, key: &Path) -> Option<Output> {
    let url = format!("{}/health", etcd.client_url());
    let args = [
        "--silent",
        "--show-error",
        "--max-time",
        "10",
        "--cacert",
        pki.ca_cert.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        url.as_str(),
    ];
    run_if_installed("curl", &args, "the TLS client-certificate check")
}

#[test]
fn plain_etcd_is_healthy_on_its_metrics_url() {
    let Some(etcd) = etcd_or_skip(None) else {
        return;
    };
    assert!(etcd.client_url().starts_with("http://127.0.0.1:"));
    assert!(etcd.metrics_url().starts_with("http://127.0.0.1:"));
    assert_ne!(port(&etcd.client_url()), port(&etcd.metrics_url()));

    let (code, body) = http(port(&etcd.metrics_url()), "GET", "/health", "").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with(r#"{"health":"true""#), "{body}");
    assert!(etcd.is_healthy());
    assert!(etcd.log().contains("# starling-testkit: etcd --name="));
}

#[test]
fn stop_makes_it_unreachable_and_restart_keeps_url_and_data() {
    let Some(mut etcd) = etcd_or_skip(None) else {
        return;
    };
    let url = etcd.client_url();
    let client = port(&url);
    // Key "starling/probe", value "kept", base64 as the JSON gateway wants them.
    let put = r#"{"key":"c3RhcmxpbmcvcHJvYmU=","value":"a2VwdA=="}"#;
    let (code, body) = http(client, "POST", "/v3/kv/put", put).unwrap();
    assert_eq!(code, 200, "{body}");

    etcd.stop();
    assert!(!etcd.is_healthy());
    assert!(
        TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, client)), TIMEOUT)
            .is_err()
    );
    etcd.stop(); // a second stop is a no-op

    etcd.restart().unwrap();
    assert_eq!(etcd.client_url(), url);
    assert!(etcd.is_healthy());
    let (code, body) = http(
        client,
        "POST",
        "/v3/kv/range",
        r#"{"key":"c3RhcmxpbmcvcHJvYmU="}"#,
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(r#""value":"a2VwdA==""#),
        "data dir not kept: {body}"
    );
    assert!(etcd.log().contains("# starling-testkit: etcd stopped"));
}

#[test]
fn drop_kills_etcd_and_removes_its_directory() {
    let Some(etcd) = etcd_or_skip(None) else {
        return;
    };
    let dir = etcd.dir().to_owned();
    let metrics = port(&etcd.metrics_url());
    drop(etcd);
    assert!(!dir.exists(), "{} left behind", dir.display());
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, metrics));
    assert!(TcpStream::connect_timeout(&addr, TIMEOUT).is_err());
}

#[test]
fn json_gateway_serves_status_alarms_and_range() {
    let Some(etcd) = etcd_or_skip(None) else {
        return;
    };
    let client = port(&etcd.client_url());
    let (code, status) = http(client, "POST", "/v3/maintenance/status", "{}").unwrap();
    assert_eq!(code, 200, "{status}");
    assert!(
        status.contains(r#""version":"3."#) && status.contains(r#""leader":"#),
        "{status}"
    );
    // etcd 3.4 answers an alarm list with no alarms as a bare `{}` (no header).
    let (code, alarms) = http(
        client,
        "POST",
        "/v3/maintenance/alarm",
        r#"{"action":"GET"}"#,
    )
    .unwrap();
    assert_eq!(code, 200, "{alarms}");
    assert!(
        !alarms.contains("alarm\""),
        "a fresh etcd has no alarms: {alarms}"
    );
    let (code, range) = http(
        client,
        "POST",
        "/v3/kv/range",
        r#"{"key":"AA==","range_end":"AA==","count_only":true}"#,
    )
    .unwrap();
    assert_eq!(code, 200, "{range}");
    assert!(range.contains(r#""revision":"#), "{range}");
}

#[test]
fn tls_etcd_accepts_the_healthcheck_client_and_refuses_a_rogue_one() {
    let pki = Pki::generate();
    let Some(etcd) = etcd_or_skip(Some(&pki)) else {
        return;
    };
    assert!(etcd.client_url().starts_with("https://127.0.0.1:"));
    // The metrics URL stays plain HTTP, as kubeadm's 127.0.0.1:2381.
    assert!(etcd.metrics_url().starts_with("http://"));
    assert!(etcd.is_healthy());
    // Plain HTTP on the TLS port gets no health answer.
    if let Ok((_, body)) = http(port(&etcd.client_url()), "GET", "/health", "") {
        assert!(!body.contains("health"), "{body}");
    }

    let Some(good) = curl_health(
        &etcd,
        &pki,
        &pki.healthcheck_client_cert,
        &pki.healthcheck_client_key,
    ) else {
        return;
    };
    let out = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success() && out.starts_with(r#"{"health":"true""#),
        "healthcheck-client refused ({}): {out} {}",
        good.status,
        String::from_utf8_lossy(&good.stderr)
    );

    let rogue = curl_health(&etcd, &pki, &pki.rogue_client_cert, &pki.rogue_client_key).unwrap();
    assert!(
        !rogue.status.success() && !String::from_utf8_lossy(&rogue.stdout).contains("health"),
        "rogue-client accepted: {}",
        String::from_utf8_lossy(&rogue.stdout)
    );
    assert!(
        etcd.log()
            .contains("certificate signed by unknown authority"),
        "etcd did not log the refusal:\n{}",
        etcd.log()
    );
}

#[test]
fn an_etcd_that_exits_is_reported_at_once_with_its_log() {
    let pki = Pki::generate();
    std::fs::remove_file(&pki.server_key).unwrap();
    match Etcd::start(Some(&pki)) {
        Err(EtcdError::NotReady { waited, log_tail }) => {
            assert!(
                waited < Duration::from_secs(10),
                "waited {waited:?} for a dead etcd"
            );
            assert!(
                log_tail.contains("server.key") && log_tail.contains("etcd exited"),
                "{log_tail}"
            );
        }
        Err(EtcdError::Missing) => {
            let required = std::env::var("STARLING_REQUIRE_ETCD").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "STARLING_REQUIRE_ETCD=1 but etcd is not installed"
            );
            eprintln!("SKIPPED: etcd is not installed");
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
}

#[test]
fn pki_chains_as_kubeadm_lays_it_out() {
    let pki = Pki::generate();
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let verify = |ca: &Path, purpose: &str, cert: &Path| {
        let args = [
            "verify",
            "-CAfile",
            &path(ca),
            "-purpose",
            purpose,
            &path(cert),
        ];
        run_if_installed("openssl", &args, "certificate chains").map(|o| o.status.success())
    };
    let Some(ok) = verify(&pki.ca_cert, "sslserver", &pki.server_cert) else {
        return;
    };
    assert!(ok, "server.crt does not chain to ca.crt for serverAuth");
    assert_eq!(
        verify(&pki.ca_cert, "sslclient", &pki.server_cert),
        Some(true)
    );
    assert_eq!(
        verify(&pki.ca_cert, "sslclient", &pki.healthcheck_client_cert),
        Some(true)
    );
    assert_eq!(
        verify(&pki.ca_cert, "sslclient", &pki.rogue_client_cert),
        Some(false)
    );
    assert_eq!(
        verify(&pki.rogue_ca_cert, "sslclient", &pki.rogue_client_cert),
        Some(true)
    );

    let sans = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            &path(&pki.server_cert),
        ])
        .output()
        .unwrap();
    let sans = String::from_utf8_lossy(&sans.stdout);
    assert!(
        sans.contains("DNS:localhost") && sans.contains("IP Address:127.0.0.1"),
        "{sans}"
    );
}
