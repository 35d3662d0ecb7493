//! `starling lab` as a newcomer uses it: it starts and stops cleanly,
//! shows checks, the overlay matrix and alerts, survives what is typed at
//! its prompt (each fault command), and the README's walkthrough runs as
//! written. Each lab has loopback addresses of its own (the third octet
//! steps by 3: agents, probes, etcd), so the tests run side by side.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use starling_model::{MembersResponse, OverlayResponse, Status, StatusResponse};

use crate::support::lab::STARLING;
use crate::support::starling;
const PATIENCE: Duration = Duration::from_secs(45);

/// A running `starling lab`: what it prints, read on a thread, and its
/// prompt. Dropped by a failed assertion, it is stopped as Ctrl-C would,
/// so that it takes its agents, etcd and nftables table with it.
struct RunningLab {
    process: Child,
    prompt: ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    transcript: Vec<String>,
}

impl RunningLab {
    fn start(args: &[&str]) -> RunningLab {
        let mut process = Command::new(STARLING)
            .arg("lab")
            .args(args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("lab starts");
        let stdout = process.stdout.take().expect("piped");
        let (lines_tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
        });
        RunningLab {
            prompt: process.stdin.take().expect("piped"),
            process,
            lines,
            transcript: Vec::new(),
        }
    }

    /// Type a line at the lab's prompt.
    fn say(&mut self, line: &str) {
        writeln!(self.prompt, "{line}").expect("the lab reads its prompt");
    }

    /// The first line from now on that contains `text`.
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            self.transcript.push(line.clone());
            if line.contains(text) {
                return line;
            }
        }
        panic!(
            "the lab never printed {text:?}:\n{}",
            self.transcript.join("\n")
        );
    }

    /// Lines from now on that contain each of `texts`, in any order (an
    /// alert and the lab's own status line race).
    fn wait_for_all(&mut self, texts: &[&str]) {
        let mut missing: Vec<&str> = texts.to_vec();
        let deadline = Instant::now() + PATIENCE;
        while !missing.is_empty() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            missing.retain(|text| !line.contains(text));
            self.transcript.push(line);
        }
        assert!(
            missing.is_empty(),
            "the lab never printed {missing:?}:\n{}",
            self.transcript.join("\n")
        );
    }

    /// SIGTERM (as Ctrl-C would), and every agent must stop cleanly.
    fn stop(mut self, agents: usize) {
        kill(Pid::from_raw(self.process.id() as i32), Signal::SIGTERM).expect("signal the lab");
        self.wait_for(&format!("stopped {agents} of {agents} agents cleanly"));
        self.wait_for("removed its directory");
        let status = self.process.wait().expect("the lab exits");
        assert!(status.success(), "lab exited with {status}");
    }
}

impl Drop for RunningLab {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // SIGTERM, not SIGKILL: the lab then stops its agents and etcd.
        let _ = kill(Pid::from_raw(self.process.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && matches!(self.process.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.process.kill();
    }
}

/// `starling CMD -o json --addr ADDR`, parsed, once it answers.
fn json_of<T: serde::de::DeserializeOwned>(command: &str, addr: &str) -> Option<T> {
    let output = starling(&[command, "-o", "json", "--addr", addr]);
    if !matches!(output.status.code(), Some(0 | 3)) {
        return None;
    }
    serde_json::from_slice(&output.stdout).ok()
}

fn poll<T>(what: &str, within: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    poll_explained(what, within, || probe().ok_or_else(String::new))
}

/// [`poll`] for a probe that says what it saw instead, so a timeout shows
/// the last observation rather than only that something did not happen.
fn poll_explained<T>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let seen = match probe() {
            Ok(found) => return found,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}; last seen: {seen}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The state `observer` gives `member`, once `observer` answers.
fn state_of(observer: &str, member: &str) -> Option<String> {
    let members: MembersResponse = json_of("members", observer)?;
    members
        .members
        .into_iter()
        .find(|m| m.name == member)
        .map(|m| m.state)
}

fn all_alive(observer: &str, count: usize) -> Option<()> {
    let members: MembersResponse = json_of("members", observer)?;
    (members.counts.alive == count).then_some(())
}

#[test]
fn lab_starts_a_cluster_and_stops_it_cleanly() {
    let mut lab = RunningLab::start(&["--nodes", "3", "--first-ip", "127.0.40.1"]);
    lab.wait_for("3 alive, 0 suspect, 0 down");
    let members = starling(&["members", "--addr", "127.0.40.2:7947"]);
    assert!(members.status.success());
    assert!(String::from_utf8_lossy(&members.stdout).contains("lab-3"));
    lab.stop(3);
    // Every agent is gone: nothing answers on their API ports any more.
    let after = starling(&["members", "--addr", "127.0.40.1:7947"]);
    assert!(!after.status.success());
}

#[test]
fn the_lab_survives_a_killed_agent_and_brings_it_back() {
    let mut lab = RunningLab::start(&["--nodes", "3", "--first-ip", "127.0.43.1"]);
    let banner = lab.wait_for("lab-3 ");
    assert!(
        banner.contains("pid "),
        "the banner names each pid: {banner}"
    );
    lab.wait_for("3 alive, 0 suspect, 0 down");

    lab.say("kill lab-3");
    lab.wait_for("sent SIGKILL to lab-3");
    let exit = lab.wait_for("lab-3 exited");
    assert!(exit.contains("killed by SIGKILL"), "{exit}");
    let log = exit
        .split("(log ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the exit names the log")
        .to_owned();
    assert!(
        std::path::Path::new(&log).is_file(),
        "the log it names exists: {log}"
    );
    // The lab's own receiver prints the alert one survivor sent.
    lab.wait_for_all(&["2 alive, 0 suspect, 1 down", "ALERT firing node-down lab-3"]);
    // The lab is still up: the survivors answer, and call lab-3 down.
    assert_eq!(state_of("127.0.43.2", "lab-3").as_deref(), Some("down"));

    lab.say("start lab-3");
    lab.wait_for("started lab-3 again");
    lab.wait_for_all(&[
        "3 alive, 0 suspect, 0 down",
        "ALERT resolved node-down lab-3",
    ]);

    // A graceful stop: the others record a leave, not a death.
    lab.say("stop lab-3");
    lab.wait_for("sent SIGTERM to lab-3");
    lab.wait_for("lab-3 exited: exited cleanly");
    poll("lab-3 is marked left", PATIENCE, || {
        (state_of("127.0.43.1", "lab-3")? == "left").then_some(())
    });
    lab.say("start lab-3");
    lab.wait_for("started lab-3 again");

    // A graceful restart: it leaves, and comes back on its own.
    let before = incarnation("127.0.43.1", "lab-3");
    lab.say("restart lab-3");
    lab.wait_for("restarting lab-3");
    lab.wait_for("started lab-3 again");
    poll("lab-3 rejoins after its restart", PATIENCE, || {
        (incarnation("127.0.43.1", "lab-3") > before).then_some(())?;
        all_alive("127.0.43.1", 3)
    });

    // A hung process: suspected while frozen, alive again after.
    lab.say("pause lab-2 6");
    lab.wait_for("froze lab-2");
    poll("the others suspect the frozen lab-2", PATIENCE, || {
        let state = state_of("127.0.43.1", "lab-2")?;
        (state == "suspect" || state == "down").then_some(())
    });
    lab.wait_for("lab-2 goes on (SIGCONT)");
    poll("lab-2 is alive again", PATIENCE, || {
        all_alive("127.0.43.1", 3)
    });

    lab.say("explode");
    lab.wait_for("not a lab command");
    lab.stop(3);
    assert!(
        !std::path::Path::new(&log).exists(),
        "nothing is left behind"
    );
}

fn incarnation(observer: &str, member: &str) -> u64 {
    json_of::<MembersResponse>("members", observer)
        .and_then(|m| m.members.into_iter().find(|m| m.name == member))
        .map_or(0, |m| m.incarnation)
}

#[test]
fn the_lab_shows_checks_the_overlay_matrix_and_an_etcd_fault() {
    let mut lab = RunningLab::start(&["--nodes", "3", "--first-ip", "127.0.46.1"]);
    let first = lab.wait_for("starling lab: ");
    let etcd = first.contains("etcd at");
    if std::env::var("STARLING_REQUIRE_ETCD").is_ok_and(|v| v == "1") {
        assert!(
            etcd,
            "etcd is required here, and the lab did not start one: {first}"
        );
    }
    lab.wait_for("3 alive, 0 suspect, 0 down");
    let mut wanted = vec!["clock-drift", "disk"];
    if etcd {
        wanted.push("etcd");
    }
    // Ok or Warning: a warning here is the machine's own truth (a shared
    // CI disk can make etcd's fsyncs slow), and the point is that every
    // check runs and reaches every node; only a critical one is wrong.
    poll_explained("every node reports its checks", PATIENCE, || {
        let status: StatusResponse =
            json_of("status", "127.0.46.1").ok_or("no answer from 127.0.46.1")?;
        let seen: Vec<String> = status
            .nodes
            .iter()
            .flat_map(|node| {
                node.checks.iter().map(move |c| {
                    format!("{}/{}={:?}: {}", node.name, c.check, c.status, c.message)
                })
            })
            .collect();
        let all = status.nodes.len() == 3
            && status.nodes.iter().all(|node| {
                wanted.iter().all(|check| {
                    node.checks.iter().any(|c| {
                        c.check == *check && matches!(c.status, Status::Ok | Status::Warning)
                    })
                })
            });
        if all { Ok(()) } else { Err(seen.join("; ")) }
    });
    poll("the overlay matrix fills", PATIENCE, || {
        let overlay: OverlayResponse = json_of("overlay", "127.0.46.2")?;
        (overlay.paths.len() == 6 && overlay.paths.iter().all(|p| p.status == Status::Ok))
            .then_some(())
    });
    if etcd {
        lab.say("stop etcd");
        lab.wait_for("stopping etcd");
        lab.wait_for("ALERT firing node-degraded");
        let status: StatusResponse = poll("etcd goes critical", PATIENCE, || {
            json_of::<StatusResponse>("status", "127.0.46.3").filter(|s| !s.healthy)
        });
        assert!(
            status.reasons.iter().any(|r| r.contains("etcd")),
            "{:?}",
            status.reasons
        );
        lab.say("start etcd");
        lab.wait_for("ALERT resolved node-degraded");
    }
    lab.stop(3);
}

/// The status of the path `from` → `to` as `from` judges it (it holds the
/// figures: its probe reports to it).
fn path_status(from_addr: &str, from: &str, to: &str) -> Option<Status> {
    let overlay: OverlayResponse = json_of("overlay", from_addr)?;
    overlay
        .paths
        .into_iter()
        .find(|p| p.from == from && p.to == to)
        .map(|p| p.status)
}

#[test]
fn network_faults_typed_at_the_lab_are_diagnosed_and_healed() {
    let missing = if !nix::unistd::geteuid().is_root() {
        Some("root")
    } else if Command::new("nft").arg("--version").output().is_err() {
        Some("nft (Debian: nftables; scripts/test installs it)")
    } else {
        None
    };
    if let Some(missing) = missing {
        let required = std::env::var("STARLING_REQUIRE_NETNS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "the lab's network faults need {missing}, and this run requires them"
        );
        eprintln!("skipped: the lab's network faults need {missing}");
        return;
    }
    let mut lab = RunningLab::start(&["--nodes", "3", "--first-ip", "127.0.49.1", "--no-etcd"]);
    lab.wait_for("3 alive, 0 suspect, 0 down");
    poll("the overlay matrix fills", PATIENCE, || {
        let overlay: OverlayResponse = json_of("overlay", "127.0.49.1")?;
        (overlay.paths.len() == 6 && overlay.paths.iter().all(|p| p.status == Status::Ok))
            .then_some(())
    });

    // A cut and a lossy path at once: each is judged on its own, and the
    // nodes stay alive (the gossip addresses are untouched).
    lab.say("cut lab-1 lab-2");
    lab.wait_for("cut the overlay path lab-1 <-> lab-2");
    lab.say("degrade lab-2 lab-3 60");
    lab.wait_for("lab-2 <-> lab-3 loses 60%");
    lab.say("cut lab-1 lab-9");
    lab.wait_for("no agent named \"lab-9\"");
    let window = Duration::from_secs(20);
    poll("the cut path is judged critical", PATIENCE + window, || {
        (path_status("127.0.49.1", "lab-1", "lab-2")? == Status::Critical).then_some(())
    });
    poll(
        "the lossy path is judged critical",
        PATIENCE + window,
        || (path_status("127.0.49.2", "lab-2", "lab-3")? == Status::Critical).then_some(()),
    );
    assert_eq!(
        path_status("127.0.49.1", "lab-1", "lab-3"),
        Some(Status::Ok),
        "a path with no fault stays healthy"
    );
    poll("the cut path is named in the verdicts", PATIENCE, || {
        let overlay: OverlayResponse = json_of("overlay", "127.0.49.3")?;
        overlay
            .verdicts
            .iter()
            .any(|v| v.contains("lab-1") && v.contains("lab-2"))
            .then_some(())
    });
    all_alive("127.0.49.3", 3).expect("overlay faults leave gossip alone");

    lab.say("heal");
    lab.wait_for("removed every network fault");
    poll("the paths recover", PATIENCE + window, || {
        let ok = path_status("127.0.49.1", "lab-1", "lab-2")? == Status::Ok
            && path_status("127.0.49.2", "lab-2", "lab-3")? == Status::Ok;
        ok.then_some(())
    });

    // A gossip partition: each side calls the other down, then they merge.
    lab.say("partition lab-3");
    lab.wait_for("partitioned the gossip of lab-3 from lab-1, lab-2");
    poll("the majority calls lab-3 down", PATIENCE, || {
        (state_of("127.0.49.1", "lab-3")? == "down").then_some(())
    });
    poll("lab-3 calls the others down", PATIENCE, || {
        (state_of("127.0.49.3", "lab-1")? == "down").then_some(())
    });
    lab.say("heal");
    lab.wait_for("removed every network fault");
    poll("the sides merge", PATIENCE, || {
        all_alive("127.0.49.1", 3)?;
        all_alive("127.0.49.3", 3)
    });

    let pid = lab.process.id();
    lab.stop(3);
    let tables = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft runs");
    let tables = String::from_utf8_lossy(&tables.stdout);
    assert!(
        !tables.contains(&format!("starling_lab_{pid}")),
        "the lab removed its nftables table: {tables}"
    );
}

/// One fenced block of the README's quick start.
struct Block {
    language: String,
    lines: Vec<String>,
}

/// The fenced blocks between `## Quick start` and the next `## ` heading.
fn quick_start_blocks(readme: &str) -> Vec<Block> {
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Quick start"))
        .expect("the README has a Quick start section");
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for line in section.lines() {
        match (line.strip_prefix("```"), open.take()) {
            (Some(language), None) => {
                open = Some(Block {
                    language: language.trim().to_owned(),
                    lines: Vec::new(),
                })
            }
            (Some(_), Some(block)) => blocks.push(block),
            (None, Some(mut block)) => {
                block.lines.push(line.to_owned());
                open = Some(block);
            }
            (None, None) => {}
        }
    }
    blocks
}

/// The README's quick start, run as written: the lab on its default
/// addresses; each `sh` line with `target/release/starling` meaning this
/// build; each `text` line typed at the lab's prompt. After `kill NAME`,
/// each command must come to show NAME down; after `start NAME`, the
/// whole cluster is alive again.
#[test]
fn the_readme_walkthrough_runs_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md is readable");
    let blocks = quick_start_blocks(&readme);
    let setup = blocks.first().expect("a set-up block");
    assert_eq!(
        setup.lines.len(),
        2,
        "the quick start has exactly two set-up commands"
    );
    assert!(setup.lines[0].starts_with("cargo run --release --bin starling -- lab "));
    assert!(setup.lines[1].starts_with("scripts/test "));
    let typed: Vec<&str> = blocks
        .iter()
        .filter(|b| b.language == "text")
        .flat_map(|b| b.lines.iter().map(String::as_str))
        .collect();
    assert_eq!(
        typed,
        ["kill lab-4", "start lab-4"],
        "the walkthrough crashes an agent and brings it back"
    );

    let mut lab = RunningLab::start(&[]);
    lab.wait_for("5 alive, 0 suspect, 0 down");
    // Down, once `kill NAME` was typed: what each command must show next.
    let mut killed: Option<String> = None;
    for block in &blocks[1..] {
        for line in &block.lines {
            match block.language.as_str() {
                "sh" => run_readme_line(line, killed.as_deref()),
                "text" => {
                    lab.say(line);
                    let (verb, name) = line.split_once(' ').expect("VERB NAME");
                    match verb {
                        "kill" => {
                            lab.wait_for_all(&[
                                &format!("{name} exited: killed by SIGKILL"),
                                &format!("ALERT firing node-down {name}"),
                            ]);
                            killed = Some(name.to_owned());
                        }
                        "start" => {
                            lab.wait_for(&format!("started {name} again"));
                            lab.wait_for_all(&[
                                "5 alive, 0 suspect, 0 down",
                                &format!("ALERT resolved node-down {name}"),
                            ]);
                            killed = None;
                        }
                        other => {
                            panic!("the walkthrough types {other:?}, which this test does not know")
                        }
                    }
                }
                other => panic!("a {other:?} block in the quick start"),
            }
        }
    }
    lab.stop(5);
}

/// Runs one README command line under `sh`, until it succeeds (the lab's
/// checks may still be settling) and, if an agent was killed, shows it
/// down on one line of its output.
fn run_readme_line(line: &str, down: Option<&str>) {
    let command = line.replace("target/release/starling", STARLING);
    poll(line, PATIENCE, || {
        let output = Command::new("sh")
            .args(["-c", &command])
            .output()
            .expect("sh runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || stdout.trim().is_empty() {
            return None;
        }
        match down {
            None => Some(()),
            Some(name) => stdout
                .lines()
                .any(|l| l.contains(name) && l.contains("down"))
                .then_some(()),
        }
    });
}
