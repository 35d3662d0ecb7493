//! `starling lab`: a small cluster of real agent processes on loopback
//! addresses, so a newcomer sees starling work with one command. It
//! survives its agents: one that dies is reported and the lab goes on, so
//! the others can be watched declaring it down; faults are typed at the
//! lab's prompt ([`control`]).

mod control;
mod etcd;
mod faults;
mod receiver;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use starling_seal::Keyring;

/// How long agents get to leave gracefully before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often the lab prints the cluster's state when it changed.
const STATUS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("--first-ip {first} with --nodes {nodes}: every address must be in 127.0.0.0/8")]
    NotLoopback { first: Ipv4Addr, nodes: u8 },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// The lab's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabConfig {
    /// How many agents to start.
    pub nodes: u8,
    /// Loopback address of the first agent; the others count up from it.
    pub first_ip: Ipv4Addr,
    /// Keep the lab's directory (keys, data, logs) after it stops.
    pub keep: bool,
    /// Start a real etcd for the agents to check, when one is installed.
    pub etcd: bool,
    /// A real cluster's kubeconfig for the API server and scheduler checks.
    pub kubeconfig: Option<PathBuf>,
}

/// The third octet steps from the agents' addresses to their probes', and
/// on to etcd's: every process of the lab has a loopback address of its own.
const PROBE_OFFSET: u32 = 256;
const ETCD_OFFSET: u32 = 512;

/// The overlay's judging window in the lab: shorter than production's, so
/// a cut path shows within half a minute.
const LAB_OVERLAY_WINDOW: Duration = Duration::from_secs(20);

#[derive(Debug)]
struct LabAgent {
    name: String,
    ip: Ipv4Addr,
    log: PathBuf,
    /// `None` once it exited (killed, stopped, crashed) until started again.
    child: Option<Child>,
    /// Its overlay probe, on an address of its own: started and killed
    /// with the agent, as on a node.
    probe: Option<Child>,
    /// Start it again once its exit is seen (`restart NAME`).
    restart: bool,
}

impl LabAgent {
    fn api(&self) -> SocketAddr {
        SocketAddr::from((self.ip, 7947))
    }

    fn probe_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.ip) + PROBE_OFFSET)
    }
}

/// Start the agents, report, and stop them all when `shutdown` completes.
pub async fn run(args: &LabConfig, shutdown: impl Future<Output = ()>) -> Result<(), LabError> {
    let first = args.first_ip;
    let last = u32::from(first).checked_add(u32::from(args.nodes) - 1 + ETCD_OFFSET);
    if !first.is_loopback() || !last.is_some_and(|last| Ipv4Addr::from(last).is_loopback()) {
        return Err(LabError::NotLoopback {
            first,
            nodes: args.nodes,
        });
    }
    let dir = tempfile::Builder::new()
        .prefix("starling-lab-")
        .tempdir()
        .map_err(|source| io("cannot create the lab directory", source))?;
    let key = dir.path().join("gossip.key");
    std::fs::write(&key, format!("{}\n", Keyring::generate_key()))
        .map_err(|source| io("cannot write the lab's gossip key", source))?;
    let exe = std::env::current_exe()
        .map_err(|source| io("cannot find the starling executable", source))?;
    let alerts = receiver::start()
        .await
        .map_err(|source| io("cannot start the lab's alert receiver", source))?;
    let mut extra = vec!["--alert-webhook".to_owned(), alerts];
    extra.extend([
        "--overlay-window".to_owned(),
        format!("{}s", LAB_OVERLAY_WINDOW.as_secs()),
        "--overlay-report-interval".to_owned(),
        "2s".to_owned(),
    ]);
    if let Some(kubeconfig) = &args.kubeconfig {
        extra.extend(["--kubeconfig".to_owned(), kubeconfig.display().to_string()]);
    }
    let etcd_ip = Ipv4Addr::from(u32::from(first) + ETCD_OFFSET);
    let etcd = if args.etcd {
        etcd::start(dir.path(), etcd_ip).await
    } else {
        println!("starling lab: --no-etcd: the agents check no etcd");
        None
    };
    if let Some(etcd) = &etcd {
        extra.extend(["--etcd-endpoint".to_owned(), etcd.endpoint()]);
        // Checked every 3 s, critical after 2 failures: a stopped etcd
        // (connection refused, no timeout to wait for) shows within
        // seconds, not the production minute and a half. The 2 s timeout
        // leaves a loaded laptop or CI machine room for the six requests
        // of one run, so a busy disk is not reported as an etcd outage.
        extra.extend(
            [
                "--etcd-interval",
                "3s",
                "--etcd-timeout",
                "2s",
                "--etcd-failures",
                "2",
            ]
            .map(String::from),
        );
    }

    let mut agents = Vec::new();
    for index in 0..args.nodes {
        let ip = Ipv4Addr::from(u32::from(first) + u32::from(index));
        let mut agent = LabAgent {
            name: format!("lab-{}", index + 1),
            ip,
            log: dir.path().join(format!("lab-{}.log", index + 1)),
            child: None,
            probe: None,
            restart: false,
        };
        let join = (ip != first).then_some(first);
        if let Err(error) = agent.start(&exe, dir.path(), &key, join, &extra) {
            stop_all(&mut agents).await;
            return Err(error);
        }
        agents.push(agent);
    }
    print_banner(&exe, &agents, dir.path());

    let mut lab = Lab {
        exe,
        dir: dir.path().to_owned(),
        key,
        agents,
        extra,
        etcd,
        faults: faults::NetFaults::new(),
    };
    if let Some(reason) = lab.faults.unavailable() {
        println!("starling lab: cut, degrade and partition are off: {reason}");
    }
    watch(&mut lab, read_commands(), shutdown).await;
    let running = lab.agents.iter().filter(|a| a.child.is_some()).count();
    let clean = stop_all(&mut lab.agents).await;
    if let Some(etcd) = lab.etcd.as_mut() {
        etcd.stop().await;
    }
    println!("starling lab: stopped {clean} of {running} agents cleanly");
    if args.keep {
        let kept = dir.keep();
        println!("starling lab: kept {}", kept.display());
    } else {
        drop(dir);
        println!("starling lab: removed its directory (keys, data, logs); --keep keeps it");
    }
    Ok(())
}

/// The running lab: what `start` needs to bring an agent back.
#[derive(Debug)]
struct Lab {
    exe: PathBuf,
    dir: PathBuf,
    key: PathBuf,
    agents: Vec<LabAgent>,
    /// Flags every agent gets besides its own: the alert receiver, etcd,
    /// a kubeconfig, the overlay timing.
    extra: Vec<String>,
    etcd: Option<etcd::LabEtcd>,
    /// The network faults set at the prompt; removed when the lab ends.
    faults: faults::NetFaults,
}

impl LabAgent {
    /// Start (or start again) with the same name, address and data dir;
    /// the log is appended to, so an agent's whole story stays in one file.
    fn start(
        &mut self,
        exe: &Path,
        dir: &Path,
        key: &Path,
        join: Option<Ipv4Addr>,
        extra: &[String],
    ) -> Result<(), LabError> {
        let data = dir.join(&self.name);
        let mut command = agent_command(exe, key, dir, &self.name, self.ip, join);
        command.args(extra).arg("--disk-path").arg(&data);
        self.child = Some(spawn_logged(command, &self.log, &self.name)?);
        let probe_ip = self.probe_ip();
        let mut probe = Command::new(exe);
        probe
            .arg("probe")
            .args(["--node-name", &self.name])
            .args(["--listen", &format!("{probe_ip}:7949")])
            .args(["--agent", &format!("http://{}", self.api())])
            .arg("--gossip-key-file")
            .arg(key);
        let probe_log = dir.join(format!("{}-probe.log", self.name));
        self.probe = Some(spawn_logged(
            probe,
            &probe_log,
            &format!("{}'s probe", self.name),
        )?);
        Ok(())
    }

    fn pid(&self) -> Option<Pid> {
        pid_of(self.child.as_ref()?)
    }
}

/// A running child's pid, as nix signals it; `None` once it was reaped.
fn pid_of(child: &Child) -> Option<Pid> {
    Some(Pid::from_raw(i32::try_from(child.id()?).ok()?))
}

/// `starling agent` named `name` on a loopback `ip` (gossip :7946, API
/// :7947), with the cluster `key` and a data directory under `dir`, joining
/// `seed` if given. Shared by `lab` and `bench`, so both run the agent the
/// way an operator would and neither sees the operator's own settings.
pub fn agent_command(
    exe: &Path,
    key: &Path,
    dir: &Path,
    name: &str,
    ip: Ipv4Addr,
    seed: Option<Ipv4Addr>,
) -> Command {
    let mut command = Command::new(exe);
    command
        .arg("agent")
        .args(["--node-name", name])
        .args(["--gossip-bind", &format!("{ip}:7946")])
        .args(["--api-bind", &format!("{ip}:7947")])
        .arg("--gossip-key-file")
        .arg(key)
        .arg("--data-dir")
        .arg(dir.join(name));
    if let Some(seed) = seed {
        command.args(["--join", &format!("{seed}:7946")]);
    }
    for (variable, _) in std::env::vars_os() {
        let variable = variable.to_string_lossy().into_owned();
        if variable.starts_with("STARLING_") || variable == "NODE_NAME" || variable == "HOST_IP" {
            command.env_remove(variable);
        }
    }
    command
}

fn print_banner(exe: &Path, agents: &[LabAgent], dir: &Path) {
    println!("starling lab: {} agents on loopback", agents.len());
    for agent in agents {
        let pid = agent
            .pid()
            .map_or_else(String::new, |pid| format!("  pid {pid}"));
        println!(
            "  {:<8} gossip {}:7946  api http://{}{pid}",
            agent.name,
            agent.ip,
            agent.api()
        );
    }
    let first = agents[0].api();
    let second = agents.get(1).map_or(first, LabAgent::api);
    println!("try:");
    println!("  open http://{first}/ in a browser (the dashboard)");
    println!("  {} status --addr {first},{second}", exe.display());
    println!("  {} members --addr {first}", exe.display());
    println!("  curl -s http://{first}/metrics | grep '^starling_gossip'");
    println!("  {} history --addr {first}", exe.display());
    println!(
        "  {} annotate --addr {first} --gossip-key-file {} 'hello from the lab'",
        exe.display(),
        dir.join("gossip.key").display()
    );
    println!(
        "keys, data and logs: {} (removed when the lab stops)",
        dir.display()
    );
    let last = &agents[agents.len() - 1].name;
    println!("type `kill {last}` here to crash an agent, `help` for more; Ctrl-C stops the lab");
}

/// Lines typed at the lab, read on a thread of their own: a read that
/// never returns (nobody types) must not hold up the lab's exit. The
/// channel closes at the end of input (none at all under a test or nohup).
fn read_commands() -> mpsc::Receiver<String> {
    let (lines, inbox) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if lines.blocking_send(line).is_err() {
                return;
            }
        }
    });
    inbox
}

/// Until shutdown: report each agent that exits (and keep going), take
/// commands, and print the cluster as the first running agent sees it
/// whenever that changes.
async fn watch(
    lab: &mut Lab,
    mut commands: mpsc::Receiver<String>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + STATUS_EVERY, STATUS_EVERY);
    let mut last_status = String::new();
    let mut reading = true;
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            line = commands.recv(), if reading => match line {
                Some(line) => lab.obey(&line),
                None => reading = false,
            },
            _ = ticker.tick() => {
                lab.report_exits();
                let status = lab.cluster_line().await;
                if status != last_status {
                    println!("starling lab: {status}");
                    last_status = status;
                }
            }
        }
    }
}

impl Lab {
    /// Each agent that exited since the last look: who, how, its log.
    fn report_exits(&mut self) {
        let mut restarts = Vec::new();
        if let Some(etcd) = self.etcd.as_mut()
            && etcd.reap()
        {
            println!("starling lab: etcd exited; `start etcd` brings it back");
        }
        for agent in &mut self.agents {
            if let Some(probe) = agent.probe.as_mut()
                && matches!(probe.try_wait(), Ok(Some(_)))
            {
                agent.probe = None;
            }
            let Some(child) = agent.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                agent.child = None;
                if std::mem::take(&mut agent.restart) {
                    restarts.push(agent.name.clone());
                    continue;
                }
                println!(
                    "starling lab: {} exited: {} (log {}); the lab goes on: `start {}` brings it back",
                    agent.name,
                    describe(status),
                    agent.log.display(),
                    agent.name
                );
            }
        }
        for name in restarts {
            self.start(&name);
        }
    }

    /// The cluster as the first running agent sees it.
    async fn cluster_line(&self) -> String {
        let Some(observer) = self.agents.iter().find(|a| a.child.is_some()) else {
            return "no agent is running (type start NAME)".to_owned();
        };
        match crate::members(&[observer.api().to_string()]).await {
            Ok(view) => {
                let c = view.counts;
                format!(
                    "cluster as {} sees it: {} alive, {} suspect, {} down, {} left",
                    view.answered_by, c.alive, c.suspect, c.down, c.left
                )
            }
            Err(error) => format!("waiting for {}: {error}", observer.name),
        }
    }
}

/// "killed by SIGKILL", "exited with status 1", "exited cleanly".
fn describe(status: ExitStatus) -> String {
    if let Some(signal) = status.signal() {
        return match Signal::try_from(signal) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("killed by signal {signal}"),
        };
    }
    match status.code() {
        Some(0) => "exited cleanly".to_owned(),
        Some(code) => format!("exited with status {code}"),
        None => status.to_string(),
    }
}

/// SIGTERM everyone (they leave the cluster), wait, then kill stragglers.
/// Returns how many exited cleanly.
async fn stop_all(agents: &mut [LabAgent]) -> usize {
    for agent in agents.iter() {
        if let Some(pid) = agent.pid() {
            // Already gone is fine: that is what we want. A paused agent
            // must run again to leave.
            let _ = kill(pid, Signal::SIGTERM);
            let _ = kill(pid, Signal::SIGCONT);
        }
    }
    let mut clean = 0;
    for agent in agents.iter_mut() {
        let Some(child) = agent.child.as_mut() else {
            continue;
        };
        if let Some(probe) = agent.probe.as_mut() {
            let _ = probe.start_kill();
        }
        match tokio::time::timeout(STOP_GRACE, child.wait()).await {
            Ok(Ok(status)) if status.success() => clean += 1,
            Ok(Ok(status)) => eprintln!("starling lab: {} exited with {status}", agent.name),
            Ok(Err(error)) => eprintln!("starling lab: waiting for {}: {error}", agent.name),
            Err(_) => {
                eprintln!(
                    "starling lab: {} did not stop in time; killing it",
                    agent.name
                );
                let _ = child.kill().await;
            }
        }
    }
    clean
}

/// Spawn `command` with its output appended to `log`, so a restarted
/// process's whole story stays in one file.
fn spawn_logged(mut command: Command, log: &Path, what: &str) -> Result<Child, LabError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|source| io(&format!("cannot open {}", log.display()), source))?;
    let stderr = file
        .try_clone()
        .map_err(|source| io("cannot share the log file", source))?;
    command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .kill_on_drop(true);
    command
        .spawn()
        .map_err(|source| io(&format!("cannot start {what}"), source))
}

/// An executable on `PATH` (or in /usr/bin, /usr/sbin, which a user's
/// `PATH` may lack), such as `etcd` or `nft`.
fn find(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain(["/usr/bin".into(), "/usr/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn io(what: &str, source: std::io::Error) -> LabError {
    LabError::Io {
        what: what.to_owned(),
        source,
    }
}
