//! `starling-bench scale`: the gossip layer at cluster sizes no machine
//! here can run as processes, in the deterministic simulation
//! (`starling_gossip::sim`): the real `GossipNode`s, their real datagrams
//! and push-pull states, virtual time.
//!
//! Per size: the cold start of every node (a DaemonSet rollout, all within
//! a second, through one seed) until each counts every other alive; the
//! traffic of each node over an idle window at steady state; and the time
//! until the last survivor marks a killed node down.

use std::time::Duration;

use starling_gossip::MemberState;
use starling_gossip::sim::{Sim, SimConfig, Traffic};

use super::BenchError;
use super::measure;
use super::results::median;

#[derive(Clone, Debug, clap::Args)]
pub struct ScaleBenchArgs {
    /// Cluster sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000")]
    pub nodes: Vec<usize>,

    /// Virtual seconds of the idle window each size is measured over.
    #[arg(long, default_value_t = 120)]
    pub idle_window: u64,

    /// Seed of the simulation: the same seed gives the same figures.
    #[arg(long, default_value_t = 16)]
    pub seed: u64,
}

/// One size's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleRow {
    pub nodes: usize,
    /// Virtual time from the first start to full views everywhere.
    pub cold_start: Duration,
    /// Per node over the idle window, bytes/s sent plus received: median
    /// and largest.
    pub traffic_median: f64,
    pub traffic_max: f64,
    /// Virtual time from the kill to the last survivor's Down.
    pub last_survivor_down: Duration,
    /// Real time the size took to simulate.
    pub wall: Duration,
    /// The simulating process's peak resident memory for this size, MiB:
    /// every node's whole state lives in it.
    pub peak_rss_mib: f64,
}

const STEP: Duration = Duration::from_millis(250);

pub fn run(args: ScaleBenchArgs) -> Result<(), BenchError> {
    let mut rows = Vec::new();
    for &nodes in &args.nodes {
        eprintln!("scale: {nodes} nodes");
        rows.push(measure(
            nodes,
            args.seed,
            Duration::from_secs(args.idle_window),
        )?);
    }
    println!("{}", report(&args, &rows));
    Ok(())
}

/// Cold start, idle window, one kill: `nodes` simulated nodes.
pub fn measure(nodes: usize, seed: u64, idle: Duration) -> Result<ScaleRow, BenchError> {
    let started = std::time::Instant::now();
    measure::reset_peak_rss();
    let mut sim = Sim::new(SimConfig::new(nodes, seed));
    sim.cold_start(Duration::from_secs(1));
    let limit = Duration::from_secs(300);
    let cold_start = sim
        .run_until(limit, STEP, Sim::all_count_everyone)
        .ok_or_else(|| {
            BenchError::Scale(format!("{nodes} nodes: no full views within {limit:?}"))
        })?;
    phase(nodes, "full views", started);
    // Past the first periodic push-pulls, which still carry the states
    // the cold start left different.
    sim.run_for(Duration::from_secs(60));
    sim.reset_traffic();
    sim.run_for(idle);
    let per_second: Vec<f64> = (0..nodes)
        .map(|node| {
            let Traffic { sent, received } = sim.traffic(node);
            (sent + received) as f64 / idle.as_secs_f64()
        })
        .collect();
    if !sim.downs().is_empty() {
        return Err(BenchError::Scale(format!(
            "{nodes} nodes: {} false Down while idle",
            sim.downs().len()
        )));
    }
    phase(nodes, "idle window", started);
    let victim = nodes / 2;
    sim.kill(victim);
    let killed_at = sim.now();
    let survivors: Vec<usize> = (0..nodes).filter(|&n| n != victim).collect();
    let all_down = sim
        .run_until(Duration::from_secs(60), Duration::from_millis(50), |sim| {
            survivors
                .iter()
                .all(|&s| sim.state(s, victim) == Some(MemberState::Down))
        })
        .ok_or_else(|| {
            BenchError::Scale(format!("{nodes} nodes: the kill was never seen by all"))
        })?;
    Ok(ScaleRow {
        nodes,
        cold_start,
        traffic_median: median(&per_second).unwrap_or(0.0),
        traffic_max: per_second.iter().copied().fold(0.0, f64::max),
        last_survivor_down: all_down - killed_at,
        wall: started.elapsed(),
        peak_rss_mib: measure::self_status_kib("VmHWM:").unwrap_or(0) as f64 / 1024.0,
    })
}

/// Progress on stderr: a 5,000-node size runs for many minutes.
fn phase(nodes: usize, done: &str, started: std::time::Instant) {
    let mib = |field| measure::self_status_kib(field).unwrap_or(0) / 1024;
    eprintln!(
        "scale: {nodes} nodes: {done} after {:.0} s, RSS {} MiB, peak {} MiB",
        started.elapsed().as_secs_f64(),
        mib("VmRSS:"),
        mib("VmHWM:")
    );
}

fn report(args: &ScaleBenchArgs, rows: &[ScaleRow]) -> String {
    let mut out = String::from("### Gossip at scale (simulation)\n\n");
    out.push_str(&format!(
        "- Command: `starling-bench scale --nodes {} --idle-window {} --seed {}`\n",
        args.nodes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        args.idle_window,
        args.seed
    ));
    out.push_str(
        "- The real `GossipNode`s in virtual time (`starling_gossip::sim`); latency 0.3–2.3 ms, \
         no loss; traffic per node is every sealed datagram and push-pull frame sent plus \
         received, with IPv4/UDP/TCP headers, over the idle window after convergence and 60 s\n\n",
    );
    out.push_str("| nodes | cold start to full views (s) | idle traffic per node, median (B/s) | largest (B/s) | vs the smallest size | last survivor marks a kill down (s) | simulated in (s) | peak memory of the simulation (MiB) |\n");
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    let base = rows.first().map_or(1.0, |r| r.traffic_median.max(1.0));
    for row in rows {
        out.push_str(&format!(
            "| {} | {:.1} | {:.0} | {:.0} | {:.2}× | {:.2} | {:.0} | {:.0} |\n",
            row.nodes,
            row.cold_start.as_secs_f64(),
            row.traffic_median,
            row.traffic_max,
            row.traffic_median / base,
            row.last_survivor_down.as_secs_f64(),
            row.wall.as_secs_f64(),
            row.peak_rss_mib
        ));
    }
    out
}
