//! The lab itself, tested with real namespaces. Needs root; skips otherwise (fails instead
//! with STARLING_REQUIRE_NETNS=1). Reachability is checked with the crate's own UDP probe
//! binary, so no `ping`/`nc` is needed, and every wait is bounded.

use std::os::unix::process::ExitStatusExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{RwLock, RwLockReadGuard};
use std::time::Duration;

use starling_testkit::{LabError, NetLab, lab_or_skip, skip_unsupported, wait_until};

/// Lab tests run in parallel; the stale-namespace test takes this exclusively because any
/// lab's `new` would also (correctly) remove the fake leftover it plants.
static LABS: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    LABS.read().unwrap_or_else(|e| e.into_inner())
}

const SECS_5: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

fn probe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stl-lab-probe"))
}

static NEXT_PORT: AtomicU16 = AtomicU16::new(20_000);

/// Whether UDP datagrams sent by `from` arrive at `to`, checked in that direction only.
fn udp_delivered(lab: &NetLab, from: usize, to: usize) -> bool {
    let port = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
    let target = format!("{}:{port}", lab.addr(to));
    let listener = lab
        .spawn(to, probe(), &["listen", &target, "15"], &[])
        .unwrap();
    assert!(
        wait_until(SECS_5, POLL, || listener.log().contains("listening")),
        "listener did not start: {}",
        listener.log()
    );
    let token = format!("token-{from}-to-{to}-{port}");
    let mut sender = lab
        .spawn(from, probe(), &["send", &target, &token, "10"], &[])
        .unwrap();
    let status = sender
        .wait_timeout(SECS_5)
        .unwrap()
        .expect("sender finishes in ~0.5 s");
    assert!(status.success(), "sender failed: {}", sender.log());
    // Everything was sent over 0.5 s; what can still arrive arrives well within a second.
    wait_until(Duration::from_secs(1), POLL, || {
        listener.log().contains(&token)
    })
}

/// How many of `count` UDP datagrams sent by `from`, 2 ms apart, arrive at `to`.
fn udp_received(lab: &NetLab, from: usize, to: usize, count: usize) -> usize {
    let port = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
    let target = format!("{}:{port}", lab.addr(to));
    let listener = lab
        .spawn(to, probe(), &["listen", &target, "60"], &[])
        .unwrap();
    assert!(
        wait_until(SECS_5, POLL, || listener.log().contains("listening")),
        "listener did not start: {}",
        listener.log()
    );
    let token = format!("burst-{from}-to-{to}-{port}");
    let received = || listener.log().matches(token.as_str()).count();
    let mut sender = lab
        .spawn(
            from,
            probe(),
            &["send", &target, &token, &count.to_string(), "2"],
            &[],
        )
        .unwrap();
    let status = sender
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("sender finishes (~2 ms per datagram)");
    assert!(status.success(), "sender failed: {}", sender.log());
    // Everything has been sent; what can still arrive arrives well within a second.
    wait_until(Duration::from_secs(1), POLL, || received() >= count);
    received()
}

/// The lab's nft ruleset in `host`, for failure messages.
fn ruleset(lab: &NetLab, host: usize) -> String {
    let out = lab.run_in(host, "nft", &["list", "ruleset"]).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn lab_namespaces(lab: &NetLab) -> Vec<String> {
    let mut names: Vec<String> = (0..lab.hosts()).map(|h| lab.netns(h).to_owned()).collect();
    names.push(lab.switch_netns().to_owned());
    names
}

/// Alive and not a zombie (a killed child we have not reaped still has a /proc entry).
fn process_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

#[test]
fn hosts_on_the_switch_reach_each_other() {
    let _g = shared();
    let Some(lab) = lab_or_skip(3) else { return };
    assert_eq!(lab.hosts(), 3);
    let (net, len) = lab.subnet();
    assert_eq!((net.octets()[..2].to_vec(), len), (vec![10, 213], 24));
    assert_eq!(lab.addr(2).octets()[3], 3);
    assert!(udp_delivered(&lab, 0, 1));
    assert!(udp_delivered(&lab, 1, 0));
    assert!(udp_delivered(&lab, 2, 0));
}

#[test]
fn hosts_see_only_their_own_cable_and_subnet() {
    let _g = shared();
    // Interface names in the root namespace (only read: the lab must never add any there).
    let root_links = || {
        let out = Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        out.lines()
            .filter_map(|l| l.split(": ").nth(1).map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let before = root_links();
    let Some(lab) = lab_or_skip(2) else { return };
    assert_eq!(root_links(), before);

    let links = lab.run_in(0, "ip", &["-o", "link", "show"]).unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    let names: Vec<&str> = links.lines().filter_map(|l| l.split(": ").nth(1)).collect();
    assert_eq!(names.len(), 2, "{links}");
    assert_eq!(names[0], "lo");
    assert!(names[1].starts_with("eth0@"), "{links}");

    // A single on-link route and no default route: lab traffic cannot leave the lab.
    let routes = lab.run_in(0, "ip", &["route", "show"]).unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout);
    let (net, _) = lab.subnet();
    assert_eq!(routes.lines().count(), 1, "{routes}");
    assert!(
        routes.starts_with(&format!("{net}/24 dev eth0")),
        "{routes}"
    );
}

#[test]
fn partition_cuts_both_directions_and_heal_restores() {
    let _g = shared();
    let Some(lab) = lab_or_skip(3) else { return };
    lab.partition(&[0], &[1]).unwrap();
    assert!(!udp_delivered(&lab, 0, 1));
    assert!(!udp_delivered(&lab, 1, 0));
    assert!(udp_delivered(&lab, 0, 2));
    assert!(udp_delivered(&lab, 2, 1));

    lab.heal().unwrap();
    assert!(udp_delivered(&lab, 0, 1));
    assert!(udp_delivered(&lab, 1, 0));
    // Healing twice (or without partitions) is fine.
    lab.heal().unwrap();
}

#[test]
fn one_way_partition_blocks_exactly_one_direction() {
    let _g = shared();
    let Some(lab) = lab_or_skip(3) else { return };
    lab.partition_one_way(&[0], &[1, 2]).unwrap();
    assert!(!udp_delivered(&lab, 0, 1));
    assert!(!udp_delivered(&lab, 0, 2));
    assert!(udp_delivered(&lab, 1, 0));
    assert!(udp_delivered(&lab, 2, 0));
    assert!(udp_delivered(&lab, 1, 2));
    lab.heal().unwrap();
    assert!(udp_delivered(&lab, 0, 1));
}

#[test]
fn netem_is_applied_replaced_and_cleared() {
    let _g = shared();
    let Some(lab) = lab_or_skip(2) else { return };
    let qdisc = || {
        let out = lab
            .run_in(1, "tc", &["qdisc", "show", "dev", "eth0"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // tc parses the spec before asking the kernel, so this holds on any kernel.
    assert!(matches!(
        lab.netem(1, "no-such-option 5"),
        Err(LabError::Command { .. })
    ));
    // Also with STARLING_REQUIRE_NETNS=1: CI's kernel has no sch_netem and cannot get one.
    match lab.netem(1, "delay 20ms 5ms loss 5%") {
        Err(LabError::Unsupported(detail)) => {
            assert!(detail.contains("sch_netem"), "{detail}");
            lab.clear_netem(1).unwrap(); // a no-op without netem, not an error
            return skip_unsupported("kernel has no sch_netem; delay injection untested here");
        }
        r => r.unwrap(),
    }
    let shown = qdisc();
    assert!(
        shown.contains("netem") && shown.contains("delay 20ms"),
        "{shown}"
    );
    lab.netem(1, "loss 10%").unwrap();
    let shown = qdisc();
    assert!(
        shown.contains("loss 10%") && !shown.contains("delay"),
        "{shown}"
    );
    assert!(
        !qdisc_of(&lab, 0).contains("netem"),
        "other hosts untouched"
    );

    lab.clear_netem(1).unwrap();
    assert!(!qdisc().contains("netem"));
    lab.clear_netem(1).unwrap();
}

fn qdisc_of(lab: &NetLab, host: usize) -> String {
    let out = lab
        .run_in(host, "tc", &["qdisc", "show", "dev", "eth0"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn loss_drops_about_that_share_of_arriving_packets() {
    let _g = shared();
    let Some(lab) = lab_or_skip(2) else { return };
    const SENT: usize = 400;
    lab.loss(1, 30).unwrap();
    let lost = SENT - udp_received(&lab, 0, 1, SENT);
    eprintln!("lost {lost} of {SENT} datagrams at 30% loss");
    // Binomial(400, 0.3): mean 120, sd 9.2; 80..=160 is more than 4 sd either way.
    assert!(
        (80..=160).contains(&lost),
        "lost {lost} of {SENT} at 30% loss\n{}",
        ruleset(&lab, 1)
    );
    // Loss is on ingress only: what host 1 sends is not affected.
    let back = udp_received(&lab, 1, 0, SENT);
    assert!(
        back >= SENT - 4,
        "{back} of {SENT} arrived from the lossy host"
    );

    lab.clear_loss(1).unwrap();
    let lost = SENT - udp_received(&lab, 0, 1, SENT);
    assert!(lost <= 4, "lost {lost} of {SENT} after clear_loss");
    // Clearing twice (or without loss) is fine, and so is loss 0.
    lab.clear_loss(1).unwrap();
    lab.loss(0, 0).unwrap();
}

#[test]
fn loss_and_partitions_are_independent() {
    let _g = shared();
    let Some(lab) = lab_or_skip(3) else { return };
    // 100% loss makes the outcome deterministic.
    lab.loss(1, 100).unwrap();
    lab.partition(&[0], &[2]).unwrap();
    assert!(!udp_delivered(&lab, 0, 1));
    assert!(udp_delivered(&lab, 1, 0), "loss is ingress only");
    assert!(!udp_delivered(&lab, 0, 2));

    lab.heal().unwrap();
    assert!(udp_delivered(&lab, 0, 2), "healed");
    assert!(!udp_delivered(&lab, 0, 1), "heal leaves loss in place");

    lab.partition(&[0], &[2]).unwrap();
    lab.clear_loss(1).unwrap();
    assert!(udp_delivered(&lab, 0, 1), "loss cleared");
    assert!(
        !udp_delivered(&lab, 0, 2),
        "clear_loss leaves partitions in place"
    );

    // Setting loss again replaces the rule instead of adding a second one.
    lab.loss(1, 100).unwrap();
    lab.loss(1, 50).unwrap();
    let rules = ruleset(&lab, 1);
    assert_eq!(rules.matches("numgen random").count(), 1, "{rules}");
    assert!(rules.contains("< 50"), "{rules}");
}

#[test]
fn kill9_kills_the_program_itself() {
    let _g = shared();
    let Some(lab) = lab_or_skip(1) else { return };
    let mut p = lab.spawn(0, probe(), &["sleep", "30"], &[]).unwrap();
    let pid = p.pid();
    // `ip netns exec` execs in place: the pid we hold becomes the program, not a wrapper.
    let exe = std::fs::canonicalize(probe()).unwrap();
    let is_probe = || std::fs::read_link(format!("/proc/{pid}/exe")).ok() == Some(exe.clone());
    assert!(
        wait_until(SECS_5, POLL, is_probe),
        "pid {pid} never became the probe"
    );
    assert_eq!(p.wait_timeout(Duration::from_millis(100)).unwrap(), None);

    p.kill9().unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "killed and reaped"
    );
    p.kill9().unwrap(); // already gone: a no-op
    assert!(p.log().starts_with("# lab host 0"), "{}", p.log());
}

#[test]
fn terminate_sends_sigterm_and_env_reaches_the_program() {
    let _g = shared();
    let Some(lab) = lab_or_skip(1) else { return };
    let env = PathBuf::from("/usr/bin/env");
    let mut e = lab
        .spawn(0, &env, &[] as &[&str], &[("STARLING_LAB_MARK", "x42")])
        .unwrap();
    e.wait_timeout(SECS_5).unwrap().expect("env exits");
    assert!(e.log().contains("STARLING_LAB_MARK=x42"), "{}", e.log());

    let mut p = lab.spawn(0, probe(), &["sleep", "30"], &[]).unwrap();
    assert!(wait_until(SECS_5, POLL, || std::fs::read_link(format!(
        "/proc/{}/exe",
        p.pid()
    ))
    .is_ok_and(|x| x.ends_with("stl-lab-probe"))));
    p.terminate().unwrap();
    let status = p.wait_timeout(SECS_5).unwrap().expect("exits on SIGTERM");
    assert_eq!(status.signal(), Some(15));
    p.terminate().unwrap(); // already reaped: a no-op
}

#[test]
fn drop_kills_processes_and_removes_every_namespace() {
    let _g = shared();
    let Some(lab) = lab_or_skip(3) else { return };
    let names = lab_namespaces(&lab);
    let dir = lab.log_dir().to_owned();
    let listed = namespaces();
    assert!(
        names.iter().all(|n| listed.contains(n)),
        "{names:?} in {listed:?}"
    );
    let p = lab.spawn(2, probe(), &["sleep", "30"], &[]).unwrap();
    let pid = p.pid();
    // Leak the handle: only the lab's own teardown can stop the process now.
    std::mem::forget(p);

    drop(lab);
    let listed = namespaces();
    assert!(
        names.iter().all(|n| !listed.contains(n)),
        "{names:?} left in {listed:?}"
    );
    assert!(!process_running(pid), "lab process {pid} survived teardown");
    assert!(!dir.exists(), "log dir removed with a passing lab");
}

#[test]
fn a_panicking_test_still_tears_the_lab_down() {
    let _g = shared();
    let Some(lab) = lab_or_skip(2) else { return };
    let names = lab_namespaces(&lab);
    let dir = lab.log_dir().to_owned();
    let mut pid = 0;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let lab = lab;
        let p = lab.spawn(1, probe(), &["sleep", "30"], &[]).unwrap();
        pid = p.pid();
        panic!("simulated test failure (expected in this test)");
    }));
    assert!(result.is_err());
    let listed = namespaces();
    assert!(
        names.iter().all(|n| !listed.contains(n)),
        "{names:?} left in {listed:?}"
    );
    assert!(pid != 0 && !process_running(pid));
    // Logs of a failed test are kept for reading; this failure was on purpose.
    assert!(dir.exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn leftovers_of_dead_test_processes_are_removed() {
    let _g = LABS.write().unwrap_or_else(|e| e.into_inner());
    let Some(lab) = lab_or_skip(1) else { return };
    drop(lab);
    // A pid above pid_max can never be alive: this plays a test run that was SIGKILLed.
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // (Our pid in the lab-number field keeps parallel runs of this test apart.)
    let stale = format!("stl-{}-{}-h0", pid_max + 1, std::process::id());
    let in_ns = |pid: u32| {
        let out = Command::new("ip")
            .args(["netns", "pids", &stale])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&pid.to_string())
    };
    // ...with an orphaned agent still running inside it. A lab built meanwhile by another
    // test process may remove the leftover before the orphan is in (which is the behaviour
    // under test, done by someone else); plant it again then.
    let mut orphan = None;
    for _ in 0..5 {
        let added = Command::new("ip")
            .args(["netns", "add", &stale])
            .status()
            .unwrap();
        if !added.success() {
            // Still there from the last attempt, with another process busy deleting it.
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let mut child = Command::new("ip")
            .args(["netns", "exec", &stale])
            .arg(probe())
            .args(["sleep", "30"])
            .spawn()
            .unwrap();
        if wait_until(SECS_5, POLL, || in_ns(child.id())) {
            orphan = Some(child);
            break;
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = Command::new("ip").args(["netns", "del", &stale]).status();
    }
    let mut orphan = orphan.expect("could not plant a leftover namespace with a process in it");

    let lab = NetLab::new(1).unwrap();
    assert!(!namespaces().contains(&stale), "stale namespace removed");
    assert!(
        wait_until(SECS_5, POLL, || orphan.try_wait().unwrap().is_some()),
        "orphan killed"
    );
    // Namespaces of live processes (this one) are left alone.
    assert!(namespaces().contains(&lab.netns(0).to_owned()));
}

#[test]
fn namespaces_of_live_processes_are_never_treated_as_leftovers() {
    let _g = LABS.write().unwrap_or_else(|e| e.into_inner());
    let Some(lab) = lab_or_skip(1) else { return };
    drop(lab);
    // A live process other than this one plays a parallel test binary that owns a lab.
    let mut owner = Command::new(probe()).args(["sleep", "30"]).spawn().unwrap();
    let planted = format!("stl-{}-0-h0", owner.id());
    let ok = Command::new("ip")
        .args(["netns", "add", &planted])
        .status()
        .unwrap();
    assert!(ok.success());

    let lab = NetLab::new(1).unwrap();
    let kept = namespaces().contains(&planted);
    // Its owner exits: now it is a leftover, and the next lab removes it.
    owner.kill().unwrap();
    owner.wait().unwrap();
    drop(lab);
    let _lab = NetLab::new(1).unwrap();
    let removed = !namespaces().contains(&planted);
    if !removed {
        let _ = Command::new("ip").args(["netns", "del", &planted]).status();
    }
    assert!(kept, "namespace of a live process was removed");
    assert!(removed, "namespace of an exited process was left behind");
}
