//! The HTTP surface as operators meet it, on real agents in network
//! namespaces: the CLI asks the next node when the first is dead, and the
//! dashboard, loaded by a real browser (Debian's headless `chromium`),
//! shows the lab's nodes and then the one that was killed.
//!
//! Needs root (namespaces) and chromium; skips with a message elsewhere,
//! and fails instead of skipping when STARLING_REQUIRE_NETNS=1 (as in CI,
//! where `scripts/test` installs chromium).

use std::path::{Path, PathBuf};
use std::time::Duration;

use starling_model::StatusResponse;

use crate::support::lab;
use lab::{Cluster, STARLING};
use starling_testkit::skip_or_fail;

const BROWSER: &str = "chromium";

/// Where the screenshots are kept after the test, for people to look at.
fn artifact(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir.join(name)
}

/// Load the dashboard of `host`'s agent in headless chromium, run inside
/// `host`'s namespace, and return the DOM after its scripts ran.
fn dashboard_dom(cluster: &Cluster, host: usize, screenshot: &Path) -> String {
    let url = format!("http://{}:7947/", cluster.lab.addr(host));
    let profile = tempfile::tempdir().expect("browser profile dir");
    let profile_arg = format!("--user-data-dir={}", lab::path(profile.path()));
    let shot_arg = format!("--screenshot={}", lab::path(screenshot));
    let run = |mode: &str| {
        let args = [
            // `timeout`: a browser that hangs must not hang the test.
            "60",
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--window-size=1280,1400",
            // Long enough for the first refresh (every panel fetched).
            "--virtual-time-budget=4000",
            &profile_arg,
            mode,
            &url,
        ];
        let output = cluster
            .lab
            .run_in(host, "timeout", &args)
            .expect("chromium runs in the namespace");
        assert!(
            output.status.success(),
            "chromium {mode} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("the DOM is UTF-8")
    };
    run(&shot_arg);
    let size = std::fs::metadata(screenshot).map_or(0, |m| m.len());
    assert!(size > 10_000, "a real screenshot, not {size} bytes");
    run("--dump-dom")
}

fn row(node: usize, status: &str) -> String {
    format!(
        "data-node=\"{}\" data-status=\"{status}\"",
        Cluster::name(node)
    )
}

fn member(node: usize, state: &str) -> String {
    format!(
        "data-member=\"{}\" data-state=\"{state}\"",
        Cluster::name(node)
    )
}

#[test]
fn any_surviving_node_answers_and_the_dashboard_shows_who_is_gone() {
    let Some(mut cluster) = Cluster::new(3) else {
        return;
    };
    let browser = std::process::Command::new(BROWSER)
        .arg("--version")
        .output();
    if !browser.is_ok_and(|o| o.status.success()) {
        skip_or_fail("chromium is not installed (scripts/test installs it)");
        return;
    }
    let all = [0, 1, 2];
    cluster.expect("3 agents see 3 alive", Duration::from_secs(30), || {
        cluster.all_see(&all, &all, "alive")
    });

    let dom = dashboard_dom(&cluster, 1, &artifact("dashboard-healthy.png"));
    assert!(dom.contains("data-healthy=\"true\""), "{dom}");
    for host in all {
        assert!(dom.contains(&row(host, "healthy")), "{dom}");
        assert!(dom.contains(&member(host, "alive")), "{dom}");
    }

    // Kill the node the CLI asks first: the next one answers, for all.
    cluster.process(0).kill9().expect("kill -9");
    let addrs: Vec<String> = all
        .iter()
        .map(|&h| format!("{}:7947", cluster.lab.addr(h)))
        .collect();
    let addrs = addrs.join(",");
    let output = cluster
        .lab
        .run_in(
            2,
            STARLING,
            &["status", "--addr", &addrs, "--output", "json"],
        )
        .expect("the CLI runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status: StatusResponse = serde_json::from_slice(&output.stdout).expect("status JSON");
    assert_eq!(status.answered_by, Cluster::name(1));
    let names: Vec<&str> = status.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["host-0", "host-1", "host-2"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&cluster.lab.addr(0).to_string()),
        "the dead address is named: {stderr}"
    );

    // Every address dead: one clear error naming each.
    let output = cluster
        .lab
        .run_in(
            2,
            STARLING,
            &[
                "status",
                "--addr",
                &format!("{0}:7947,{0}:7948", cluster.lab.addr(0)),
            ],
        )
        .expect("the CLI runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no starling agent answered"), "{stderr}");

    cluster.expect(
        "the survivors mark host 0 down",
        Duration::from_secs(30),
        || cluster.all_see(&[1, 2], &[0], "down"),
    );
    let dom = dashboard_dom(&cluster, 1, &artifact("dashboard-node-killed.png"));
    assert!(dom.contains("data-healthy=\"false\""), "{dom}");
    assert!(dom.contains(&row(0, "unreachable")), "{dom}");
    assert!(dom.contains(&member(0, "down")), "{dom}");
    // Its checks are history now, not green lights.
    let dead_row = dom
        .split(&row(0, "unreachable"))
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .expect("the dead node's row");
    assert!(!dead_row.contains("badge s-ok"), "{dead_row}");
    // Where its last results are shown, they say so.
    if dead_row.contains("<td data-check=") && dead_row.contains("class=\"badge") {
        let cells = dead_row.split("<td data-check=").skip(1);
        for cell in cells.filter(|c| c.contains("class=\"badge")) {
            assert!(cell.contains("last known"), "{dead_row}");
        }
    }
    for host in [1, 2] {
        assert!(dom.contains(&row(host, "healthy")), "{dom}");
    }
}
