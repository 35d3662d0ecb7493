//! `starling lab`: a small cluster of real agent processes on loopback
//! addresses, so a newcomer sees starling work with one command.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::cli::LabArgs;
use crate::client;
use crate::gossip::Keyring;

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
    #[error("agent {name} exited with {status} (log {}):\n{tail}", log.display())]
    AgentExited {
        name: String,
        status: ExitStatus,
        log: PathBuf,
        tail: String,
    },
}

#[derive(Debug)]
struct LabAgent {
    name: String,
    ip: Ipv4Addr,
    log: PathBuf,
    child: Child,
}

impl LabAgent {
    fn api(&self) -> SocketAddr {
        SocketAddr::from((self.ip, 7947))
    }
}

/// Start the agents, report, and stop them all when `shutdown` completes.
pub async fn run(args: &LabArgs, shutdown: impl Future<Output = ()>) -> Result<(), LabError> {
    let first = args.first_ip;
    let last = u32::from(first).checked_add(u32::from(args.nodes) - 1);
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

    let mut agents = Vec::new();
    for index in 0..args.nodes {
        let ip = Ipv4Addr::from(u32::from(first) + u32::from(index));
        match spawn_agent(&exe, dir.path(), &key, index, ip, first) {
            Ok(agent) => agents.push(agent),
            Err(error) => {
                stop_all(&mut agents).await;
                return Err(error);
            }
        }
    }
    print_banner(&exe, &agents, dir.path());

    let outcome = watch(&mut agents, shutdown).await;
    let clean = stop_all(&mut agents).await;
    println!(
        "starling lab: stopped {clean} of {} agents cleanly",
        agents.len()
    );
    if args.keep {
        let kept = dir.keep();
        println!("starling lab: kept {}", kept.display());
    }
    outcome
}

fn spawn_agent(
    exe: &Path,
    dir: &Path,
    key: &Path,
    index: u8,
    ip: Ipv4Addr,
    seed: Ipv4Addr,
) -> Result<LabAgent, LabError> {
    let name = format!("lab-{}", index + 1);
    let log = dir.join(format!("{name}.log"));
    let log_file = std::fs::File::create(&log)
        .map_err(|source| io(&format!("cannot create {}", log.display()), source))?;
    let stderr = log_file
        .try_clone()
        .map_err(|source| io("cannot share the log file", source))?;
    let join = (ip != seed).then_some(seed);
    let mut command = agent_command(exe, key, dir, &name, ip, join);
    command
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(stderr)
        .kill_on_drop(true);
    let child = command
        .spawn()
        .map_err(|source| io(&format!("cannot start {name}"), source))?;
    Ok(LabAgent {
        name,
        ip,
        log,
        child,
    })
}

/// `starling agent` named `name` on a loopback `ip` (gossip :7946, API
/// :7947), with the cluster `key` and a data directory under `dir`, joining
/// `seed` if given. Shared by `lab` and `bench`, so both run the agent the
/// way an operator would and neither sees the operator's own settings.
pub(crate) fn agent_command(
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
        println!(
            "  {:<8} gossip {}:7946  api http://{}",
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
    println!("keys, data and logs: {}", dir.display());
    println!("press Ctrl-C to stop");
}

/// Report the cluster as the first agent sees it, until shutdown or until
/// an agent dies on its own.
async fn watch(
    agents: &mut [LabAgent],
    shutdown: impl Future<Output = ()>,
) -> Result<(), LabError> {
    tokio::pin!(shutdown);
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + STATUS_EVERY, STATUS_EVERY);
    let mut last_status = String::new();
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            _ = ticker.tick() => {
                for agent in agents.iter_mut() {
                    if let Ok(Some(status)) = agent.child.try_wait() {
                        return Err(LabError::AgentExited {
                            name: agent.name.clone(),
                            status,
                            tail: tail(&agent.log),
                            log: agent.log.clone(),
                        });
                    }
                }
                let status = match client::members(&[agents[0].api().to_string()]).await {
                    Ok(view) => {
                        let c = view.counts;
                        format!(
                            "cluster as {} sees it: {} alive, {} suspect, {} down, {} left",
                            view.answered_by, c.alive, c.suspect, c.down, c.left
                        )
                    }
                    Err(error) => format!("waiting for {}: {error}", agents[0].name),
                };
                if status != last_status {
                    println!("starling lab: {status}");
                    last_status = status;
                }
            }
        }
    }
}

/// SIGTERM everyone (they leave the cluster), wait, then kill stragglers.
/// Returns how many exited cleanly.
async fn stop_all(agents: &mut [LabAgent]) -> usize {
    for agent in agents.iter() {
        if let Some(pid) = agent.child.id() {
            // Already gone is fine: that is what we want.
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    let mut clean = 0;
    for agent in agents.iter_mut() {
        match tokio::time::timeout(STOP_GRACE, agent.child.wait()).await {
            Ok(Ok(status)) if status.success() => clean += 1,
            Ok(Ok(status)) => eprintln!("starling lab: {} exited with {status}", agent.name),
            Ok(Err(error)) => eprintln!("starling lab: waiting for {}: {error}", agent.name),
            Err(_) => {
                eprintln!(
                    "starling lab: {} did not stop in time; killing it",
                    agent.name
                );
                let _ = agent.child.kill().await;
            }
        }
    }
    clean
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

fn io(what: &str, source: std::io::Error) -> LabError {
    LabError::Io {
        what: what.to_owned(),
        source,
    }
}
