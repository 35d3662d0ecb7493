//! The `starling` binary as an operator runs it: bad configuration fails
//! fast with one line naming the flag; `lab` starts and stops cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use starling_agent::gossip::Keyring;

const STARLING: &str = env!("CARGO_BIN_EXE_starling");

fn starling(args: &[&str]) -> Output {
    Command::new(STARLING)
        .args(args)
        .env_clear()
        .output()
        .expect("the starling binary runs")
}

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
        "--alert-flap-window",
        "--alert-resend-interval",
    ] {
        assert!(help.contains(expected), "--help lacks {expected}:\n{help}");
    }
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
fn lab_starts_a_cluster_and_stops_it_cleanly() {
    let mut lab = Command::new(STARLING)
        .args(["lab", "--nodes", "3", "--first-ip", "127.0.77.1"])
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("lab starts");
    let stdout = lab.stdout.take().expect("piped");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut transcript = Vec::new();
    let converged = loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break false;
        };
        match lines.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains("3 alive, 0 suspect, 0 down");
                transcript.push(line);
                if done {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    if !converged {
        let _ = lab.kill();
        panic!(
            "the lab never reported 3 alive agents:\n{}",
            transcript.join("\n")
        );
    }
    let members = starling(&["members", "--addr", "127.0.77.2:7947"]);
    assert!(members.status.success());
    assert!(String::from_utf8_lossy(&members.stdout).contains("lab-3"));

    kill(Pid::from_raw(lab.id() as i32), Signal::SIGTERM).expect("signal the lab");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = lab.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the lab did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "lab exited with {status}");
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("stopped 3 of 3 agents cleanly")),
        "{rest:?}"
    );
    // Every agent is gone: nothing answers on their API ports any more.
    let after = starling(&["members", "--addr", "127.0.77.1:7947"]);
    assert!(!after.status.success());
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
