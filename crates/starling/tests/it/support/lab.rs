//! A cluster of real `starling agent` processes, one per network namespace
//! of a testkit lab, for the netns test binaries (each uses a subset).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use starling_model::{
    HistoryEvent, HistoryResponse, MembersResponse, OverlayResponse, StatusResponse,
};

use starling_testkit::{LabProcess, NetLab, lab_or_skip, wait_until};

pub const STARLING: &str = env!("CARGO_BIN_EXE_starling");
pub const POLL: Duration = Duration::from_millis(300);

pub struct Cluster {
    pub lab: NetLab,
    dir: tempfile::TempDir,
    key: PathBuf,
    pub agents: Vec<Option<LabProcess>>,
    /// The `starling` executable each host runs: this tree's unless a
    /// test says otherwise (a rolling upgrade mixes releases).
    exes: Vec<PathBuf>,
    /// Flags every agent gets on top of the lab's own.
    extra: Vec<String>,
    /// Flags one host's agent gets on top of those (its role).
    host_extra: Vec<Vec<String>>,
}

impl Cluster {
    pub fn new(hosts: usize) -> Option<Cluster> {
        Cluster::with_args(hosts, |_| Vec::new())
    }

    /// A cluster whose agents also get `extra(&lab)` (flags that name lab
    /// addresses, such as an etcd endpoint).
    pub fn with_args(hosts: usize, extra: impl FnOnce(&NetLab) -> Vec<String>) -> Option<Cluster> {
        Cluster::with_spare_hosts(hosts, 0, extra)
    }

    /// `agents` agents on hosts 0.., and `spare` more hosts after them
    /// with no agent, for what the test runs there (a receiver).
    pub fn with_spare_hosts(
        agents: usize,
        spare: usize,
        extra: impl FnOnce(&NetLab) -> Vec<String>,
    ) -> Option<Cluster> {
        let hosts = agents + spare;
        let lab = lab_or_skip(hosts)?;
        let extra = extra(&lab);
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("gossip.key");
        let keygen = std::process::Command::new(STARLING)
            .arg("keygen")
            .output()
            .expect("keygen runs");
        std::fs::write(&key, keygen.stdout).expect("write key");
        let mut cluster = Cluster {
            lab,
            dir,
            key,
            agents: (0..hosts).map(|_| None).collect(),
            exes: vec![PathBuf::from(STARLING); hosts],
            extra,
            host_extra: vec![Vec::new(); hosts],
        };
        for host in 0..agents {
            cluster.start(host);
        }
        Some(cluster)
    }

    pub fn name(host: usize) -> String {
        format!("host-{host}")
    }

    /// Start `host`'s agent with `exe` from now on (restarts included).
    pub fn start_as(&mut self, host: usize, exe: &Path) {
        self.exes[host] = exe.to_owned();
        self.start(host);
    }

    /// Start `host`'s agent with `extra` flags from now on.
    pub fn start_with(&mut self, host: usize, extra: &[&str]) {
        self.host_extra[host] = extra.iter().map(|s| (*s).to_owned()).collect();
        self.start(host);
    }

    pub fn start(&mut self, host: usize) {
        let addr = self.lab.addr(host);
        let data = self.dir.path().join(Self::name(host));
        let mut args: Vec<String> = vec![
            "agent".into(),
            "--node-name".into(),
            Self::name(host),
            "--gossip-bind".into(),
            format!("{addr}:7946"),
            "--api-bind".into(),
            format!("{addr}:7947"),
            "--gossip-key-file".into(),
            path(&self.key),
            "--data-dir".into(),
            path(&data),
        ];
        if host != 0 {
            args.extend(["--join".into(), format!("{}:7946", self.lab.addr(0))]);
        }
        args.extend(self.extra.iter().cloned());
        args.extend(self.host_extra[host].iter().cloned());
        let process = self
            .lab
            .spawn(host, &self.exes[host], &args, &[])
            .expect("agent spawns in its namespace");
        self.agents[host] = Some(process);
    }

    pub fn process(&mut self, host: usize) -> &mut LabProcess {
        self.agents[host].as_mut().expect("agent was started")
    }

    /// `starling ARGS --addr <host's API>`, run inside `host`: its stdout
    /// if it succeeded.
    fn cli(&self, host: usize, args: &[&str]) -> Option<Vec<u8>> {
        let addr = format!("{}:7947", self.lab.addr(host));
        let mut all = args.to_vec();
        all.extend(["--addr", &addr]);
        Some(self.lab.run_in(host, STARLING, &all).ok()?.stdout)
    }

    /// `starling members --output json`, run inside the observer's host.
    pub fn members(&self, observer: usize) -> Option<MembersResponse> {
        serde_json::from_slice(&self.cli(observer, &["members", "--output", "json"])?).ok()
    }

    /// `starling history --output json` (the whole log, up to 1000 rows),
    /// run inside the observer's host.
    pub fn history(&self, observer: usize) -> Option<Vec<HistoryEvent>> {
        Some(self.history_page(observer)?.events)
    }

    /// `starling history --output json` as it answered, run inside the
    /// observer's host.
    pub fn history_page(&self, observer: usize) -> Option<HistoryResponse> {
        let args = ["history", "--output", "json", "--limit", "1000"];
        serde_json::from_slice(&self.cli(observer, &args)?).ok()
    }

    /// Whether `host`'s history holds every (origin, seq) in `wanted`.
    pub fn holds(&self, host: usize, wanted: &[(String, u64)]) -> bool {
        self.history(host).is_some_and(|events| {
            let held = keys(&events);
            wanted.iter().all(|k| held.contains(k))
        })
    }

    /// `starling annotate` through `host`'s agent: (origin, seq) once the
    /// agent acknowledged it.
    /// `starling annotate` with the host's own binary, as `kubectl exec`
    /// into its pod would: sealed bodies do not cross releases.
    pub fn annotate(&self, host: usize, message: &str) -> Option<(String, u64)> {
        let key = path(&self.key);
        let addr = format!("{}:7947", self.lab.addr(host));
        let args = [
            "annotate",
            "--gossip-key-file",
            &key,
            message,
            "--addr",
            &addr,
        ];
        let exe = self.exes[host].to_string_lossy();
        let output = self.lab.run_in(host, &exe, &args).ok()?;
        parse_ack(&String::from_utf8_lossy(&output.stdout))
    }

    /// `starling status --output json`, run inside the observer's host.
    pub fn status(&self, observer: usize) -> Option<StatusResponse> {
        serde_json::from_slice(&self.cli(observer, &["status", "--output", "json"])?).ok()
    }

    /// `starling overlay --output json`, run inside the observer's host.
    pub fn overlay(&self, observer: usize) -> Option<OverlayResponse> {
        serde_json::from_slice(&self.cli(observer, &["overlay", "--output", "json"])?).ok()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn key(&self) -> &Path {
        &self.key
    }

    /// (state, incarnation) of `subject` as `observer` sees it.
    pub fn view(&self, observer: usize, subject: usize) -> Option<(String, u64)> {
        let name = Self::name(subject);
        self.members(observer)?
            .members
            .into_iter()
            .find(|m| m.name == name)
            .map(|m| (m.state, m.incarnation))
    }

    pub fn all_see(&self, observers: &[usize], subjects: &[usize], state: &str) -> bool {
        observers.iter().all(|&o| {
            subjects
                .iter()
                .all(|&s| self.view(o, s).is_some_and(|(st, _)| st == state))
        })
    }

    pub fn expect(&self, what: &str, timeout: Duration, check: impl FnMut() -> bool) {
        if !wait_until(timeout, POLL, check) {
            let logs: Vec<String> = self
                .agents
                .iter()
                .flatten()
                .map(|p| format!("--- host {} ---\n{}", p.host(), p.log()))
                .collect();
            panic!(
                "{what} did not happen within {timeout:?}\n{}",
                logs.join("\n")
            );
        }
    }
}

/// A testkit binary (`stl-…`), built next to this test by `cargo test
/// --workspace` (it is another package's binary); `None` after skipping.
pub fn testkit_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let path = exe.parent()?.parent()?.join(name);
    if path.exists() {
        return Some(path);
    }
    starling_testkit::skip_or_fail(&format!(
        "{} is not built: run the tests with `cargo test --workspace` (scripts/test does)",
        path.display()
    ));
    None
}

/// The (origin, seq) names of `events`.
pub fn keys(events: &[HistoryEvent]) -> BTreeSet<(String, u64)> {
    events.iter().map(|e| (e.origin.clone(), e.seq)).collect()
}

pub fn path(path: &Path) -> String {
    path.to_str().expect("temp paths are UTF-8").to_owned()
}

/// "recorded as ORIGIN #SEQ" → (origin, seq).
pub fn parse_ack(line: &str) -> Option<(String, u64)> {
    let rest = line.trim().strip_prefix("recorded as ")?;
    let (origin, seq) = rest.split_once(" #")?;
    Some((origin.to_owned(), seq.parse().ok()?))
}
