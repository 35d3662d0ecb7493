//! `starling-bench`: benchmarks against the systems starling replaces,
//! run on this machine with real processes on loopback addresses.
//!
//! `starling-bench gossip` compares starling's gossip with HashiCorp Serf
//! (LAN profile): convergence, idle cost, leave dissemination and failure
//! detection, measured the same way for both in the same run. The report
//! (Markdown) goes to stdout, progress to stderr.

mod aggregator;
mod cluster;
mod fleet;
mod fuzz;
mod history;
mod http;
mod measure;
mod overlay;
mod report;
mod results;
mod scale;
mod scenario;
mod stand_in;
mod system;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use cluster::Cluster;
use report::{QUIET_LO_BYTES_PER_SEC, Report};
use results::SystemResult;
use starling_gossip::GossipConfig;
use starling_seal::Keyring;
use system::System;

/// How long loopback is watched for background traffic before each system.
const QUIET_CHECK: Duration = Duration::from_secs(5);
/// Serf's addresses are this far above starling's (one step in the third
/// octet), so the two clusters never share an address.
const SERF_OFFSET: u32 = 256;

/// Benchmark starling against the systems it replaces, on this machine.
/// Build with `cargo build --release -p starling -p starling-bench` first.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "starling-bench", version)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

fn main() -> std::process::ExitCode {
    use clap::Parser;
    let args = BenchArgs::parse();
    // The fuzzer and the simulation run on this thread, some of the
    // fuzzer's receivers with a runtime of their own: none may be started
    // inside another.
    let result = match args.command {
        BenchCommand::Fuzz(args) => fuzz::run(args),
        BenchCommand::Scale(args) => scale::run(args),
        command => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("starting the async runtime")
            .block_on(run(command)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[derive(Clone, Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Compare starling's gossip with HashiCorp Serf (LAN profile): N agents
    /// of each as separate processes on loopback. Prints a Markdown report.
    ///
    /// Build with `cargo build --release -p starling -p starling-bench` before measuring:
    /// a debug build makes starling look slower and bigger than it is. The
    /// default run (50 nodes, 5 runs) takes about 15 minutes.
    Gossip(GossipBenchArgs),
    /// Measure the history store (write throughput, query latency) and
    /// its replication between real agents on loopback (latency at N
    /// nodes, catch-up of a node that missed 100,000 events). Prints a
    /// Markdown report. Build with --release first.
    History(history::HistoryBenchArgs),
    /// Load the HTTP API (`/v1/status`, `/v1/history`) of one of N real
    /// agents on loopback, holding 7 days of the cluster's history, with
    /// Debian's `wrk` from a second process: latency p50/p99 and
    /// requests/s. Prints a Markdown report. Build with --release first.
    Http(http::HttpBenchArgs),
    /// The overlay probe at N peers, everyone probing everyone: CPU and
    /// bytes per second per node, and (as root, in a network namespace the
    /// benchmark creates) the time from cutting one overlay path until
    /// every agent reports it. Prints a Markdown report. Build with
    /// --release first.
    Overlay(overlay::OverlayBenchArgs),
    /// Fuzz every decoder of network and disk bytes with mutations of
    /// captured real inputs: N inputs per decoder (default 10,000,000;
    /// `history-file` opens SQLite per input and defaults to 20,000, see
    /// --file-inputs). Prints a Markdown table; fails if any input
    /// panicked. Build with --release for the rates.
    Fuzz(fuzz::FuzzArgs),
    /// Gossip, full replication and aggregated mode at 100, 1,000 and 5,000
    /// nodes in the deterministic simulation (the real gossip,
    /// replication and aggregation code, virtual time): cold start to full
    /// views, traffic per node, a row's way to 99.9% of nodes or to two
    /// aggregators, an aggregator's kill, and the time until the last
    /// survivor marks a killed node down. Prints a Markdown report. Build
    /// with --release: 1,000 nodes take minutes, 5,000 take hours and
    /// 10 GiB.
    Scale(scale::ScaleBenchArgs),
    /// What an N-node aggregated cluster (default 5,000, one check
    /// transition per node per minute) costs real aggregator processes on
    /// loopback: their CPU, memory and storage, and how fast they
    /// acknowledge streams and answer health pulls. The ordinary nodes are
    /// virtual: the same sealed streams and pulls at the rates N nodes
    /// send them. Prints a Markdown report. Build with --release first.
    Aggregator(aggregator::AggregatorBenchArgs),
    /// As many real agents as the machine holds (default 250) plus
    /// aggregators (default 3) on loopback: convergence, a 10-minute idle
    /// window (false Downs, RSS, CPU, traffic per agent), then annotations
    /// while one aggregator is killed with SIGKILL, and whether every node
    /// answers for every acknowledged event. Prints a Markdown report.
    /// Build with --release first.
    Fleet(fleet::FleetBenchArgs),
}

#[derive(Clone, Debug, clap::Args)]
pub struct GossipBenchArgs {
    /// Agents per system.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(3..=250))]
    pub nodes: u16,

    /// Leave runs and kill runs per system.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub runs: u16,

    /// The serf executable (Debian: `apt-get install serf`).
    #[arg(long, default_value = "serf")]
    pub serf: PathBuf,

    /// Measure starling alone.
    #[arg(long)]
    pub skip_serf: bool,

    /// Seconds to wait after convergence before the idle window. The
    /// default lets Serf's first periodic push-pull (60–90 s after start
    /// past 32 members) fall inside the window.
    #[arg(long, default_value_t = 100)]
    pub settle: u64,

    /// Seconds of idle measurement (memory, CPU, traffic).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_window: u64,

    /// First loopback address for starling's agents; Serf's start one
    /// step higher in the third octet (127.0.100.1 → 127.0.101.1).
    #[arg(long, default_value = "127.0.100.1")]
    pub first_ip: Ipv4Addr,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(
        "serf not found ({}): install it with `apt-get install serf`, pass --serf PATH, or use --skip-serf",
        path.display()
    )]
    SerfMissing { path: PathBuf },
    #[error(
        "--first-ip {first_ip}: {system}'s addresses {first}–{last} must all be in 127.0.0.0/8"
    )]
    NotLoopback {
        first_ip: Ipv4Addr,
        system: &'static str,
        first: Ipv4Addr,
        last: Ipv4Addr,
    },
    #[error("{addr} is taken (is a serf.service or another benchmark running?): {source}")]
    AddressTaken {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{system} agent {name} exited unexpectedly with {status}; its last lines:\n{tail}")]
    AgentExited {
        system: &'static str,
        name: String,
        status: ExitStatus,
        tail: String,
    },
    #[error("{system}: {what} did not happen within {limit:?}{detail}")]
    Timeout {
        system: &'static str,
        what: String,
        limit: Duration,
        detail: String,
    },
    #[error("history benchmark: {0}")]
    History(String),
    #[error("HTTP benchmark: {0}")]
    Http(String),
    #[error("overlay benchmark: {0}")]
    Overlay(String),
    #[error("aggregator benchmark: {0}")]
    Aggregator(String),
    #[error("scale simulation: {0}")]
    Scale(String),
    #[error("fuzz: {0}")]
    Fuzz(#[from] fuzz::FuzzError),
    #[error("interrupted; every agent started was stopped")]
    Interrupted,
    #[error("the benchmark of {0} did not finish; the report says where it stopped")]
    Incomplete(String),
}

pub async fn run(command: BenchCommand) -> Result<(), BenchError> {
    match command {
        BenchCommand::Gossip(args) => {
            // Dropping the benchmark drops its clusters, and every child is
            // kill_on_drop: Ctrl-C leaves no agent behind.
            tokio::select! {
                result = gossip(args) => result,
                () = starling_agent_signal() => Err(BenchError::Interrupted),
            }
        }
        BenchCommand::History(args) => tokio::select! {
            result = history::run(args) => result,
            () = starling_agent_signal() => Err(BenchError::Interrupted),
        },
        BenchCommand::Http(args) => tokio::select! {
            result = http::run(args) => result,
            () = starling_agent_signal() => Err(BenchError::Interrupted),
        },
        BenchCommand::Overlay(args) => tokio::select! {
            result = overlay::run(args) => result,
            () = starling_agent_signal() => Err(BenchError::Interrupted),
        },
        BenchCommand::Aggregator(args) => tokio::select! {
            result = aggregator::run(args) => result,
            () = starling_agent_signal() => Err(BenchError::Interrupted),
        },
        BenchCommand::Fleet(args) => tokio::select! {
            result = fleet::run(args) => result,
            () = starling_agent_signal() => Err(BenchError::Interrupted),
        },
        BenchCommand::Fuzz(args) => fuzz::run(args),
        BenchCommand::Scale(args) => scale::run(args),
    }
}

async fn gossip(args: GossipBenchArgs) -> Result<(), BenchError> {
    let nodes = usize::from(args.nodes);
    let starling_first = args.first_ip;
    let serf_first = Ipv4Addr::from(u32::from(starling_first).wrapping_add(SERF_OFFSET));
    check_loopback(&args, "starling", starling_first)?;
    let serf = if args.skip_serf {
        None
    } else {
        check_loopback(&args, "serf", serf_first)?;
        Some(find_executable(&args.serf).ok_or(BenchError::SerfMissing {
            path: args.serf.clone(),
        })?)
    };
    check_free(starling_first, nodes, &[7946, 7947])?;
    if serf.is_some() {
        check_free(serf_first, nodes, &[7946, 7373])?;
    }

    let facts = measure::MachineFacts::collect(serf.as_deref()).await;
    if !facts.release_build {
        eprintln!(
            "bench: WARNING: this is a debug build; measure with `cargo build --release -p starling -p starling-bench`"
        );
    }
    let clock_ticks = measure::clock_ticks().await;
    let dir = tempfile::Builder::new()
        .prefix("starling-bench-")
        .tempdir()
        .map_err(|source| io("cannot create the benchmark directory", source))?;
    let key_file = dir.path().join("gossip.key");
    std::fs::write(&key_file, format!("{}\n", Keyring::generate_key()))
        .map_err(|source| io("cannot write the gossip key", source))?;
    let exe = starling_exe()?;

    let mut systems = vec![(
        System::Starling {
            exe,
            key_file,
            data_dir: dir.path().to_owned(),
        },
        starling_first,
    )];
    if let Some(serf) = serf {
        // Serf takes the same kind of key: 32 random bytes, standard base64.
        systems.push((
            System::Serf {
                exe: serf,
                key: Keyring::generate_key(),
            },
            serf_first,
        ));
    }

    let plan = scenario::Plan {
        runs: usize::from(args.runs),
        settle: Duration::from_secs(args.settle),
        idle_window: Duration::from_secs(args.idle_window),
        clock_ticks: clock_ticks.0,
    };
    let mut results = Vec::new();
    for (system, first) in systems {
        let last = Ipv4Addr::from(u32::from(first) + u32::from(args.nodes) - 1);
        let mut result = SystemResult::new(system.label(), format!("{first}–{last}"));
        eprintln!(
            "bench: {}: checking that loopback is quiet for {} s",
            system.label(),
            QUIET_CHECK.as_secs()
        );
        result.lo_background = measure::lo_background_rate(QUIET_CHECK).await.ok();
        if let Some(rate) = result
            .lo_background
            .filter(|rate| *rate > QUIET_LO_BYTES_PER_SEC)
        {
            eprintln!(
                "bench: WARNING: loopback carried {rate:.0} B/s with no agent running; traffic numbers include it"
            );
        }
        let mut cluster = Cluster::new(system, first, nodes);
        let outcome = scenario::measure(&mut cluster, &plan, &mut result).await;
        eprintln!("bench: {}: stopping the agents", result.system);
        cluster.shutdown().await;
        if let Err(error) = outcome {
            eprintln!("bench: {} failed: {error}", result.system);
            // The report gets one line; an agent's log tail stays on stderr.
            let text = error.to_string();
            let mut lines = text.lines();
            let first = lines.next().unwrap_or_default().trim_end_matches(':');
            let more = if lines.next().is_some() {
                " (details on stderr)"
            } else {
                ""
            };
            result.error = Some(format!("{first}{more}"));
        }
        results.push(result);
    }

    let report = Report {
        command_line: command_line(),
        nodes,
        runs: plan.runs,
        settle: plan.settle,
        idle_window: plan.idle_window,
        facts,
        clock_ticks,
        starling_timing: starling_timing(nodes),
        systems: results,
    };
    println!("{}", report::render(&report));
    let failed: Vec<&str> = report
        .systems
        .iter()
        .filter(|s| s.error.is_some())
        .map(|s| s.system)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(BenchError::Incomplete(failed.join(" and ")))
    }
}

fn check_loopback(
    args: &GossipBenchArgs,
    system: &'static str,
    first: Ipv4Addr,
) -> Result<(), BenchError> {
    let last = u32::from(first)
        .checked_add(u32::from(args.nodes) - 1)
        .map(Ipv4Addr::from);
    match last {
        Some(last) if first.is_loopback() && last.is_loopback() => Ok(()),
        _ => Err(BenchError::NotLoopback {
            first_ip: args.first_ip,
            system,
            first,
            last: last.unwrap_or(Ipv4Addr::BROADCAST),
        }),
    }
}

/// Fail early, with a clear message, if anything (a Debian `serf.service`
/// on 0.0.0.0:7946, a previous benchmark) holds one of our ports.
fn check_free(first: Ipv4Addr, nodes: usize, ports: &[u16]) -> Result<(), BenchError> {
    for index in 0..nodes {
        let ip = Ipv4Addr::from(u32::from(first) + index as u32);
        for port in ports {
            let addr = SocketAddr::from((ip, *port));
            TcpListener::bind(addr).map_err(|source| BenchError::AddressTaken { addr, source })?;
            UdpSocket::bind(addr).map_err(|source| BenchError::AddressTaken { addr, source })?;
        }
    }
    Ok(())
}

/// `path` itself if it names a file, else the first match on PATH.
fn find_executable(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let runnable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if path.components().count() > 1 {
        return runnable(path).then(|| path.to_owned());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(path))
        .find(|candidate| runnable(candidate))
}

fn starling_timing(nodes: usize) -> String {
    let config = GossipConfig::default();
    let (min, max) = config.suspicion_bounds(nodes);
    format!(
        "probe period {} ms, probe RTT {} ms, suspicion timeout at N = {nodes} from {:.2} s ({} confirmations) to {:.2} s (none), push-pull every {} s, gossip every {} ms to {} members (`GossipConfig::default()`)",
        config.probe_period.as_millis(),
        config.probe_rtt.as_millis(),
        min.as_secs_f64(),
        config.expected_confirmations(nodes),
        max.as_secs_f64(),
        config.push_pull_interval(nodes).as_secs(),
        config.gossip_interval.as_millis(),
        config.gossip_fanout,
    )
}

/// The command line as typed, quoted where a shell would need it.
fn command_line() -> String {
    std::env::args()
        .map(|arg| {
            if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c))
            {
                format!("'{}'", arg.replace('\'', r"'\''"))
            } else {
                arg
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn io(what: &str, source: std::io::Error) -> BenchError {
    BenchError::Io {
        what: what.to_owned(),
        source,
    }
}

/// The `starling` executable the benchmarks run: `$STARLING_BIN`, or the
/// one Cargo built beside this binary (same profile, same target dir).
pub fn starling_exe() -> Result<PathBuf, BenchError> {
    if let Some(path) = std::env::var_os("STARLING_BIN") {
        return Ok(PathBuf::from(path));
    }
    let me = std::env::current_exe()
        .map_err(|source| io("cannot find the starling-bench executable", source))?;
    let beside = me.with_file_name("starling");
    if beside.is_file() {
        Ok(beside)
    } else {
        Err(io(
            &format!(
                "no starling executable beside {} (build both with \
                 `cargo build --release -p starling -p starling-bench`, or set STARLING_BIN)",
                me.display()
            ),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ))
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C): the benchmark then drops its
/// clusters, and every child is kill_on_drop.
async fn starling_agent_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}
