//! The `starling` binary as an operator runs it: bad configuration fails
//! fast with one line naming the flag; addresses take the forms people
//! type; errors name what is wrong. The lab has its own module.

use starling_seal::Keyring;

use crate::support::starling;

/// Runs the agent with a loopback bind plus `extra`, expecting a failure
/// whose first stderr line mentions `flag`.
fn fails_naming(extra: &[&str], flag: &str) {
    let mut args = vec![
        "agent",
        "--node-name",
        "n1",
        "--gossip-bind",
        "127.0.0.1:0",
        "--api-bind",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let output = starling(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} succeeded");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: "), "{args:?}: {stderr}");
    assert!(
        first.contains(flag),
        "{args:?}: {first:?} does not name {flag}"
    );
}

#[test]
fn bad_configuration_exits_with_one_line_naming_the_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 temp path");
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a directory").expect("write");
    let under_file = blocker.join("data");
    let bad_key = dir.path().join("bad.key");
    std::fs::write(&bad_key, "not base64 at all\n").expect("write");
    let alert_config = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.to_str().expect("utf-8 temp path").to_owned()
    };
    let typo = alert_config(
        "typo.json",
        r#"{"sinks": [{"type": "webhook", "url": "http://x", "severity": ["critical"]}]}"#,
    );
    let https = alert_config(
        "https.json",
        r#"{"sinks": [{"type": "webhook", "url": "https://hooks.example"}]}"#,
    );
    let twice = alert_config(
        "twice.json",
        r#"{"sinks": [{"type": "webhook", "name": "a", "url": "http://x"},
                      {"type": "alertmanager", "name": "a", "url": "http://y"}]}"#,
    );
    let empty_token = alert_config("empty.token", "\n");
    let half_cert = alert_config(
        "half-cert.json",
        r#"{"sinks": [{"type": "alertmanager", "url": "http://x", "cert_file": "/c.pem"}]}"#,
    );
    let signed_alertmanager = alert_config(
        "signed.json",
        r#"{"sinks": [{"type": "alertmanager", "url": "http://x", "hmac_key_file": "/k"}]}"#,
    );
    let no_password = alert_config(
        "no-password.json",
        r#"{"sinks": [{"type": "alertmanager", "url": "http://x",
             "basic_auth": {"username": "u", "password_file": "/nonexistent/p"}}]}"#,
    );

    fails_naming(&["--gossip-bind", "nope"], "--gossip-bind");
    for (flags, named) in [
        (vec!["--plugin", "no-path"], "--plugin"),
        (vec!["--plugin", "bad name=/bin/true"], "--plugin"),
        (
            vec![
                "--plugin-warning",
                "x=/bin/true",
                "--plugin",
                "x=/bin/false",
            ],
            "--plugin",
        ),
        (vec!["--disk-warning-free", "150"], "--disk-warning-free"),
        (
            vec!["--disk-warning-free", "5", "--disk-critical-free", "10"],
            "--disk-critical-free",
        ),
        (
            vec!["--kubelet-healthz-url", "http://10.0.0.1:10248/healthz"],
            "--kubelet-healthz-url",
        ),
        (vec!["--node-check-failures", "0"], "--node-check-failures"),
        (
            vec!["--alertmanager", "alertmanager:9093"],
            "--alertmanager",
        ),
        (vec!["--alert-webhook", "ftp://x"], "--alert-webhook"),
        (vec!["--alert-min-severity", "page"], "--alert-min-severity"),
        (
            vec!["--alert-config", "/nonexistent.json"],
            "--alert-config",
        ),
        (vec!["--alert-config", typo.as_str()], "--alert-config"),
        (vec!["--alert-config", https.as_str()], "--alert-config"),
        (vec!["--alert-config", twice.as_str()], "--alert-config"),
        (vec!["--alert-config", half_cert.as_str()], "--alert-config"),
        (
            vec!["--alert-config", signed_alertmanager.as_str()],
            "--alert-config",
        ),
        (
            vec!["--alert-config", no_password.as_str()],
            "--alert-config",
        ),
        (vec!["--alert-label", "cluster"], "--alert-label"),
        (vec!["--alert-label", "alertname=x"], "--alert-label"),
        (vec!["--alert-label", "9lives=x"], "--alert-label"),
        (
            vec!["--alert-label", "cluster=a,cluster=b"],
            "--alert-label",
        ),
        (
            vec!["--alert-runbook-url", "wiki/starling"],
            "--alert-runbook-url",
        ),
        (
            vec![
                "--alert-webhook",
                "http://x",
                "--alert-webhook-token-file",
                empty_token.as_str(),
            ],
            "--alert-webhook-token-file",
        ),
        (
            vec!["--alert-partition-percent", "0"],
            "--alert-partition-percent",
        ),
    ] {
        let mut args = vec!["--insecure-gossip", "--data-dir", data];
        args.extend(flags);
        fails_naming(&args, named);
    }
    fails_naming(&["--api-bind", "300.1.1.1:1"], "--api-bind");
    fails_naming(&["--data-dir", data], "--gossip-key-file");
    fails_naming(
        &["--data-dir", data, "--gossip-key-file", "/nonexistent/key"],
        "--gossip-key-file",
    );
    fails_naming(
        &[
            "--data-dir",
            data,
            "--gossip-key-file",
            bad_key.to_str().expect("utf-8"),
        ],
        "--gossip-key-file",
    );
    fails_naming(
        &[
            "--insecure-gossip",
            "--data-dir",
            under_file.to_str().expect("utf-8"),
        ],
        "--data-dir",
    );
    fails_naming(
        &["--insecure-gossip", "--data-dir", data, "--join", "seed:x"],
        "--join",
    );
    fails_naming(
        &["--insecure-gossip", "--data-dir", data, "--role", "boss"],
        "--role",
    );
    fails_naming(
        &[
            "--insecure-gossip",
            "--data-dir",
            data,
            "--history-retention",
            "5s",
        ],
        "--history-retention",
    );
    fails_naming(
        &[
            "--insecure-gossip",
            "--data-dir",
            data,
            "--history-max-mib",
            "0",
        ],
        "--history-max-mib",
    );
    fails_naming(
        &[
            "--insecure-gossip",
            "--data-dir",
            data,
            "--sync-interval",
            "soon",
        ],
        "--sync-interval",
    );

    fails_naming(
        &[
            "--insecure-gossip",
            "--data-dir",
            data,
            "--etcd-endpoint",
            "10.0.0.1:2379",
        ],
        "--etcd-endpoint",
    );
    fails_naming(
        &[
            "--insecure-gossip",
            "--data-dir",
            data,
            "--etcd-endpoint",
            "https://10.0.0.1:2379",
        ],
        "--etcd-ca",
    );

    fails_naming(
        &[
            "--insecure-gossip",
            "--data-dir",
            data,
            "--scheduler-healthz-url",
            "https://10.0.0.1:10259/healthz",
        ],
        "--scheduler-healthz-url",
    );

    // A history that is not a database stops the agent, naming the file.
    let corrupt = dir.path().join("corrupt");
    std::fs::create_dir_all(&corrupt).expect("mkdir");
    let history = corrupt.join("history.db");
    std::fs::write(&history, vec![0x5a; 8192]).expect("write");
    fails_naming(
        &[
            "--insecure-gossip",
            "--data-dir",
            corrupt.to_str().expect("utf-8"),
        ],
        history.to_str().expect("utf-8"),
    );

    // A wildcard bind needs the address to advertise.
    let output = starling(&[
        "agent",
        "--node-name",
        "n1",
        "--insecure-gossip",
        "--data-dir",
        data,
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--host-ip (HOST_IP)"), "{stderr}");
}

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    let output = starling(&["agent", "--help"]);
    let help = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "--node-name",
        "NODE_NAME",
        "--host-ip",
        "HOST_IP",
        "--gossip-bind",
        "--api-bind",
        "--join ",
        "--join-dns",
        "--gossip-key-file",
        "--insecure-gossip",
        "--data-dir",
        "--history-retention",
        "STARLING_HISTORY_RETENTION",
        "--results-retention",
        "--history-max-mib",
        "--sync-interval",
        "--etcd-endpoint",
        "STARLING_ETCD_ENDPOINTS",
        "--etcd-ca",
        "--etcd-cert",
        "--etcd-key",
        "--etcd-failures",
        "--role",
        "STARLING_GOSSIP_KEY_FILE",
        "--alertmanager",
        "STARLING_ALERTMANAGERS",
        "--alert-webhook ",
        "--alert-config",
        "--alert-label",
        "STARLING_ALERT_LABELS",
        "--alert-runbook-url",
        "--alert-flap-window",
        "--alert-resend-interval",
    ] {
        assert!(help.contains(expected), "--help lacks {expected}:\n{help}");
    }
}

#[test]
fn benchmarks_are_not_in_the_product_binary() {
    let output = starling(&["bench", "gossip"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unrecognized subcommand 'bench'"),
        "{stderr}"
    );
    let help = String::from_utf8_lossy(&starling(&["--help"]).stdout).into_owned();
    assert!(!help.contains("bench"), "{help}");
}

#[test]
fn keygen_prints_a_key_the_agent_accepts() {
    let output = starling(&["keygen"]);
    assert!(output.status.success());
    let key = String::from_utf8(output.stdout).expect("utf-8");
    let keyring = Keyring::parse(&key).expect("keygen output is a valid keyring");
    assert_eq!(keyring.key_ids().len(), 1);
}

#[test]
fn members_of_an_unreachable_agent_is_a_clear_error() {
    // Port 1 on loopback: nothing listens there.
    let output = starling(&["members", "--addr", "127.0.0.1:1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.starts_with("error: cannot reach a starling agent at 127.0.0.1:1"),
        "{stderr}"
    );
}

#[test]
fn addresses_take_the_forms_people_type_and_name_what_is_wrong() {
    // No port: the API's own, 7947 (nothing listens on 127.0.0.9).
    for addr in ["127.0.0.9", "http://127.0.0.9", "http://127.0.0.9:7947/"] {
        let output = starling(&["members", "-o", "json", "--addr", addr]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{addr}: {stderr}");
        assert!(
            stderr.starts_with("error: cannot reach a starling agent at 127.0.0.9:7947"),
            "{addr}: {stderr}"
        );
    }
    for bad in ["ftp://127.0.0.9", "127.0.0.9:http", "http://127.0.0.9/v1"] {
        let output = starling(&["status", "--addr", bad]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{bad}: usage error: {stderr}"
        );
        assert!(stderr.contains("--addr"), "{bad}: {stderr}");
        assert!(stderr.contains(&format!("{bad:?}")), "{bad}: {stderr}");
    }
}

#[test]
fn when_no_listed_agent_answers_each_is_named_once() {
    for command in ["status", "nodes", "members", "history"] {
        let output = starling(&[command, "--addr", "127.0.0.1:1,127.0.0.1:2"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{command}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: no starling agent answered")
                && last.contains("127.0.0.1:1")
                && last.contains("127.0.0.1:2"),
            "{command}: {stderr}"
        );
    }
}

#[test]
fn history_and_annotate_fail_clearly_without_an_agent_or_a_key() {
    let output = starling(&["history", "--addr", "127.0.0.1:1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("cannot reach a starling agent at 127.0.0.1:1"),
        "{stderr}"
    );
    let output = starling(&["history", "--since", "last tuesday"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--since"), "{stderr}");
    let output = starling(&["annotate", "--addr", "127.0.0.1:1", "a note"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("requires the cluster key"), "{stderr}");
}
