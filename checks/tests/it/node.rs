//! The node checks against real files, filesystems, executables and a
//! local HTTP server the tests make: disk watermarks, the kubelet's
//! healthz, and exec plugins that pass, fail, hang and crash.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use starling_checks::{
    Checker, DiskCheck, DnsCheck, DnsSpec, HealthzCheck, Outcome, PluginCheck, PluginSpec, Scope,
    Status, Watermarks,
};
use starling_testkit::{DnsReply, DnsServer};

async fn run(check: &dyn Checker) -> Outcome {
    tokio::time::timeout(Duration::from_secs(20), check.check())
        .await
        .expect("a check ends within its own bounds")
}

// ---- disk -----------------------------------------------------------------

fn marks(warning: f64, critical: f64) -> Watermarks {
    Watermarks {
        warning_free_percent: warning,
        critical_free_percent: critical,
    }
}

#[tokio::test]
async fn disk_watermarks_decide_the_status_and_name_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let paths = vec![dir.path().to_owned()];
    // Any real filesystem has more than 0% free and less than 100.01%.
    let ok = run(&DiskCheck::new(paths.clone(), marks(0.0, 0.0))).await;
    assert_eq!(ok.status, Status::Ok, "{ok:?}");
    assert!(ok.message.contains("1 paths ok"), "{}", ok.message);
    let details = &ok.details["paths"][0];
    assert!(details["free_percent"].as_f64().expect("a number") > 0.0);
    assert!(details["free_bytes"].as_u64().expect("a number") > 0);

    let warning = run(&DiskCheck::new(paths.clone(), marks(100.01, 0.0))).await;
    assert_eq!(warning.status, Status::Warning, "{warning:?}");
    let critical = run(&DiskCheck::new(paths, marks(100.01, 100.01))).await;
    assert_eq!(critical.status, Status::Critical, "{critical:?}");
    assert!(
        critical.message.contains(&dir.path().display().to_string()),
        "{}",
        critical.message
    );
    assert!(critical.message.contains("critical below 100.01%"));
}

#[tokio::test]
async fn a_full_filesystem_is_critical_and_a_missing_path_is_unknown_naming_it() {
    // A real full filesystem: a tiny tmpfs filled to the last block, where
    // this machine lets us mount one (root in CI); else the watermark test
    // above stands for the arithmetic.
    let mount = tempfile::tempdir().expect("temp dir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,nr_inodes=64", "tmpfs"])
        .arg(mount.path())
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        let fill = mount.path().join("fill");
        let _ = std::fs::write(&fill, vec![0u8; 2 << 20]);
        let full = run(&DiskCheck::new(
            vec![mount.path().to_owned()],
            Watermarks::default(),
        ))
        .await;
        let _ = std::process::Command::new("umount")
            .arg(mount.path())
            .status();
        assert_eq!(full.status, Status::Critical, "{full:?}");
        assert!(full.message.contains("0.0% free"), "{}", full.message);
    } else {
        eprintln!("SKIPPED (part): cannot mount a tmpfs here; the full-disk case is untested");
    }

    let missing = PathBuf::from("/nonexistent/starling-disk-check");
    let outcome = run(&DiskCheck::new(
        vec![std::env::temp_dir(), missing.clone()],
        Watermarks::default(),
    ))
    .await;
    assert_eq!(outcome.status, Status::Unknown, "{outcome:?}");
    assert!(outcome.message.contains("/nonexistent/starling-disk-check"));
}

// ---- kubelet --------------------------------------------------------------

async fn serve(status: u16, body: &'static str, delay: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback bind");
    let addr = listener.local_addr().expect("bound");
    let app = axum::Router::new().route(
        "/healthz",
        axum::routing::get(move || async move {
            tokio::time::sleep(delay).await;
            (
                axum::http::StatusCode::from_u16(status).expect("a status"),
                body,
            )
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/healthz")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_healthz_ok_failing_hanging_and_absent() {
    let kubelet = |url: &str| {
        HealthzCheck::new("kubelet", url)
            .expect("a loopback URL")
            .on_every_node()
    };
    let ok = kubelet(&serve(200, "ok", Duration::ZERO).await);
    assert_eq!(ok.scope(), Scope::EveryNode);
    assert_eq!(run(&ok).await.status, Status::Ok);

    let failing = run(&kubelet(
        &serve(500, "[-]syncloop failed", Duration::ZERO).await,
    ))
    .await;
    assert_eq!(failing.status, Status::Critical);
    assert!(failing.message.contains("500"), "{}", failing.message);

    let started = Instant::now();
    let hanging = run(&kubelet(&serve(200, "ok", Duration::from_secs(60)).await)).await;
    assert_eq!(hanging.status, Status::Critical, "{hanging:?}");
    assert!(started.elapsed() < Duration::from_secs(15));

    let absent = run(&kubelet("http://127.0.0.1:1/healthz")).await;
    assert_eq!(absent.status, Status::Critical);
    assert!(
        absent.message.to_lowercase().contains("refused"),
        "{}",
        absent.message
    );

    assert!(HealthzCheck::new("kubelet", "http://10.0.0.1:10248/healthz").is_err());
}

// ---- exec plugins ---------------------------------------------------------

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn plugin(path: PathBuf, timeout: Duration, problem: Status) -> PluginCheck {
    PluginCheck::new(PluginSpec {
        name: "custom".to_owned(),
        path,
        args: Vec::new(),
        timeout,
        problem,
    })
}

#[tokio::test]
async fn plugin_exit_codes_follow_node_problem_detectors_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    let long = "x".repeat(1000);
    for (body, problem, status, message) in [
        (
            "echo 'ntp synced'; exit 0",
            Status::Critical,
            Status::Ok,
            "ntp synced",
        ),
        (
            "echo 'conntrack table 97% full'; echo second line; exit 1",
            Status::Critical,
            Status::Critical,
            "conntrack table 97% full",
        ),
        (
            "echo 'conntrack table 81% full'; exit 1",
            Status::Warning,
            Status::Warning,
            "conntrack table 81% full",
        ),
        (
            "echo 'no data yet'; exit 2",
            Status::Critical,
            Status::Unknown,
            "no data yet",
        ),
        ("exit 7", Status::Critical, Status::Unknown, "exit status 7"),
        (
            "exit 1",
            Status::Critical,
            Status::Critical,
            "reported a problem",
        ),
        (
            &format!("echo {long}; exit 1"),
            Status::Critical,
            Status::Critical,
            "xxx",
        ),
    ] {
        let path = script(dir.path(), "plugin.sh", body);
        let outcome = run(&plugin(path, Duration::from_secs(5), problem)).await;
        assert_eq!(outcome.status, status, "{body}: {outcome:?}");
        assert!(
            outcome.message.contains(message),
            "{body}: {}",
            outcome.message
        );
        assert!(
            outcome.message.chars().count() <= starling_checks::MAX_MESSAGE_CHARS,
            "messages are truncated"
        );
    }
}

#[tokio::test]
async fn a_hanging_plugin_is_killed_with_its_children_and_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("child-pid");
    // The shell starts a child that would outlive it; both must die.
    let path = script(
        dir.path(),
        "hang.sh",
        &format!("sleep 300 & echo $! > {}; wait", marker.display()),
    );
    let started = Instant::now();
    let outcome = run(&plugin(path, Duration::from_millis(500), Status::Critical)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(outcome.status, Status::Critical, "{outcome:?}");
    assert!(outcome.message.contains("killed"), "{}", outcome.message);
    let child: i32 = std::fs::read_to_string(&marker)
        .expect("the child started")
        .trim()
        .parse()
        .expect("a pid");
    // Killed with the group: gone (or a zombie about to be reaped by init).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        let alive = state
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|s| s != "Z");
        if !alive {
            break;
        }
        assert!(Instant::now() < deadline, "the plugin's child outlived it");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn crashing_missing_and_unrunnable_plugins_are_unknown_naming_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let crash = script(dir.path(), "crash.sh", "kill -SEGV $$");
    let outcome = run(&plugin(crash, Duration::from_secs(5), Status::Critical)).await;
    assert_eq!(outcome.status, Status::Unknown, "{outcome:?}");
    assert!(outcome.message.contains("signal 11"), "{}", outcome.message);

    let missing = dir.path().join("missing.sh");
    let outcome = run(&plugin(missing, Duration::from_secs(5), Status::Critical)).await;
    assert_eq!(outcome.status, Status::Unknown);
    assert!(
        outcome.message.contains("missing.sh"),
        "{}",
        outcome.message
    );

    let not_executable = dir.path().join("plain.txt");
    std::fs::write(&not_executable, "echo hi").expect("write");
    let outcome = run(&plugin(
        not_executable,
        Duration::from_secs(5),
        Status::Critical,
    ))
    .await;
    assert_eq!(outcome.status, Status::Unknown);
    assert!(outcome.message.contains("plain.txt"), "{}", outcome.message);
}

// ---- dns --------------------------------------------------------------------

fn dns(server: std::net::SocketAddr, names: &[&str]) -> DnsCheck {
    DnsCheck::new(DnsSpec {
        server,
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        query_timeout: Duration::from_millis(500),
    })
}

#[tokio::test]
async fn dns_tells_resolved_from_nxdomain_from_servfail_from_silence() {
    let server = DnsServer::start(&[
        (
            "kubernetes.default.svc.cluster.local",
            DnsReply::Address([10, 96, 0, 1].into()),
        ),
        ("broken.example", DnsReply::ServFail),
        ("slow.example", DnsReply::Silent),
    ])
    .expect("a DNS server on loopback");
    let ok = run(&dns(
        server.addr(),
        &["kubernetes.default.svc.cluster.local."],
    ))
    .await;
    assert_eq!(ok.status, Status::Ok, "{ok:?}");
    assert!(ok.message.contains("1 name(s) resolved"), "{}", ok.message);
    assert!(ok.details["names"][0]["latency_ms"].as_f64().is_some());

    let cases = [
        ("missing.example", "NXDOMAIN"),
        ("broken.example", "SERVFAIL"),
        ("slow.example", "no answer within 500.0 ms"),
    ];
    for (name, says) in cases {
        let started = Instant::now();
        let outcome = run(&dns(
            server.addr(),
            &["kubernetes.default.svc.cluster.local", name],
        ))
        .await;
        assert_eq!(outcome.status, Status::Critical, "{name}: {outcome:?}");
        assert!(
            outcome.message.contains(says),
            "{name}: {}",
            outcome.message
        );
        assert!(
            outcome.message.starts_with(name),
            "only the failing name: {}",
            outcome.message
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[tokio::test]
async fn dns_with_no_server_listening_says_so() {
    // A port nobody listens on: bound, then closed.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind");
    let outcome = run(&dns(port, &["kubernetes.default.svc.cluster.local"])).await;
    assert_eq!(outcome.status, Status::Critical, "{outcome:?}");
    assert!(
        outcome.message.contains("no DNS server listens there")
            || outcome.message.contains("no answer"),
        "{}",
        outcome.message
    );
}
