//! `starling-bench scale`: gossip and full replication at cluster sizes no
//! machine here can run as processes, in the deterministic simulation
//! (`starling_replicate::sim` over `starling_gossip::sim`): the real
//! `GossipNode`s, their real datagrams and push-pull states, rows pushed
//! and pulled by the real replication paths, virtual time.
//!
//! Per size: the cold start of every node (a DaemonSet rollout, all within
//! a second, through one seed) until each counts every other alive; the
//! traffic of each node over an idle window at steady state, gossip and
//! anti-entropy; the time for a row a node records to reach 99.9% of nodes
//! (push, and pull for what push missed); and the time until the last
//! survivor marks a killed node down.

mod aggregated;
mod heads;

use std::time::Duration;

use starling_gossip::MemberState;
use starling_gossip::sim::{Sim, SimConfig, Traffic, VirtualTime};
use starling_replicate::sim::{HttpHeads, ReplicaSim};
use starling_seal::Keyring;

use super::BenchError;
use super::measure;
use super::results::median;

#[derive(Clone, Debug, clap::Args)]
pub struct ScaleBenchArgs {
    /// Cluster sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000")]
    pub nodes: Vec<usize>,

    /// Virtual seconds of the window each size's traffic is measured over:
    /// idle in full mode, with `--transitions-per-minute` in aggregated
    /// mode.
    #[arg(long, default_value_t = 120)]
    pub idle_window: u64,

    /// Seed of the simulation: the same seed gives the same figures.
    #[arg(long, default_value_t = 16)]
    pub seed: u64,

    /// Which replication to simulate at each size.
    #[arg(long, value_enum, default_value_t = Modes::Both)]
    pub mode: Modes,

    /// Aggregators in aggregated mode.
    #[arg(long, default_value_t = 3)]
    pub aggregators: usize,

    /// Rows each ordinary node records a minute in aggregated mode (check
    /// transitions).
    #[arg(long, default_value_t = 1.0)]
    pub transitions_per_minute: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Modes {
    /// Full replication, then aggregated.
    Both,
    /// Every node holds the whole log (no aggregator).
    Full,
    /// `--aggregators` aggregators hold it; ordinary nodes stream theirs.
    Aggregated,
}

/// One size's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleRow {
    pub nodes: usize,
    /// Virtual time from the first start to full views everywhere.
    pub cold_start: Duration,
    /// Per node over the idle window, bytes/s sent plus received, gossip
    /// and anti-entropy: median and largest.
    pub traffic_median: f64,
    pub traffic_max: f64,
    /// Of that, the median node's anti-entropy pulls, asked and answered.
    pub anti_entropy_median: f64,
    /// Virtual time from a row recorded by one node until 99.9% of the
    /// others hold it, by push or pull.
    pub event_to_999: Duration,
    /// Bytes one recorded row costs each node, sent plus received, over its
    /// whole spread (retransmissions and the pulls it set off included)
    /// above the idle traffic: a full-mode node's traffic is this times the
    /// cluster's event rate.
    pub row_bytes_per_node: f64,
    /// Virtual time from the kill to the last survivor's Down.
    pub last_survivor_down: Duration,
    /// Real time the size took to simulate.
    pub wall: Duration,
    /// The simulating process's peak resident memory for this size, MiB:
    /// every node's whole state lives in it.
    pub peak_rss_mib: f64,
}

pub(super) const STEP: Duration = Duration::from_millis(250);

pub fn run(args: ScaleBenchArgs) -> Result<(), BenchError> {
    let heads = measure_heads()?;
    let window = Duration::from_secs(args.idle_window);
    let (mut full, mut aggregated) = (Vec::new(), Vec::new());
    for &nodes in &args.nodes {
        eprintln!("scale: {nodes} nodes");
        if args.mode != Modes::Aggregated {
            full.push(measure(nodes, args.seed, window, heads)?);
        }
        if args.mode != Modes::Full {
            aggregated.push(aggregated::measure(
                nodes,
                args.aggregators,
                args.seed,
                window,
                heads,
                args.transitions_per_minute,
            )?);
        }
    }
    if !full.is_empty() {
        println!("{}", report(heads, &full));
    }
    if !aggregated.is_empty() {
        println!(
            "{}",
            aggregated::report(args.transitions_per_minute, &aggregated)
        );
    }
    Ok(())
}

/// One real sync on loopback, on a runtime of its own: the simulation
/// runs on this thread, outside any.
fn measure_heads() -> Result<HttpHeads, BenchError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| BenchError::Io {
            what: "starting a runtime for the HTTP heads".to_owned(),
            source,
        })?
        .block_on(heads::measure())
}

/// Past the cold start: its last joins set the pull loops back to their
/// base pace, and the first periodic push-pulls still carry the states
/// the cold start left different. Pulls slow to the idle pace within
/// about 40 s of the last news.
pub(super) const SETTLE: Duration = Duration::from_secs(90);

/// The longest a cold start may take before a run gives up.
const FULL_VIEWS_LIMIT: Duration = Duration::from_secs(300);

/// Run a started simulation until every node of `gossip(sim)` counts
/// every other alive: the virtual time it took.
pub(super) fn until_full_views<S: VirtualTime>(
    sim: &mut S,
    gossip: fn(&S) -> &Sim,
) -> Result<Duration, String> {
    sim.run_until(FULL_VIEWS_LIMIT, STEP, |sim| {
        gossip(sim).all_count_everyone()
    })
    .ok_or_else(|| format!("no full views within {FULL_VIEWS_LIMIT:?}"))
}

/// A new cluster key for a run: sealed sizes are those of a keyed cluster.
pub(super) fn fresh_keyring() -> Keyring {
    Keyring::parse(&Keyring::generate_key()).expect("a freshly generated key parses")
}

/// This process's peak resident memory, MiB: every simulated node's whole
/// state lives in it.
pub(super) fn peak_rss_mib() -> f64 {
    measure::self_status_kib("VmHWM:").unwrap_or(0) as f64 / 1024.0
}

/// Cold start, idle window, one row, one kill: `nodes` simulated nodes.
pub fn measure(
    nodes: usize,
    seed: u64,
    idle: Duration,
    heads: HttpHeads,
) -> Result<ScaleRow, BenchError> {
    let started = std::time::Instant::now();
    measure::reset_peak_rss();
    let mut sim = ReplicaSim::new(SimConfig::new(nodes, seed), fresh_keyring(), heads);
    sim.cold_start(Duration::from_secs(1));
    let cold_start = until_full_views(&mut sim, |sim| &sim.gossip)
        .map_err(|what| BenchError::Scale(format!("{nodes} nodes: {what}")))?;
    phase(nodes, "full views", started);
    sim.run_for(SETTLE);
    sim.reset_traffic();
    sim.run_for(idle);
    let rate = |Traffic { sent, received }: Traffic| (sent + received) as f64 / idle.as_secs_f64();
    let anti_entropy: Vec<f64> = (0..nodes).map(|node| rate(sim.traffic(node))).collect();
    let per_second: Vec<f64> = (0..nodes)
        .map(|node| rate(sim.gossip.traffic(node)) + anti_entropy[node])
        .collect();
    if !sim.gossip.downs().is_empty() {
        return Err(BenchError::Scale(format!(
            "{nodes} nodes: {} false Down while idle",
            sim.gossip.downs().len()
        )));
    }
    phase(nodes, "idle window", started);
    let idle_per_node = per_second.iter().sum::<f64>() / nodes as f64;
    let (event_to_999, row_bytes_per_node) = disseminate(&mut sim, idle_per_node)?;
    let victim = nodes / 2;
    sim.gossip.kill(victim);
    let killed_at = sim.now();
    let survivors: Vec<usize> = (0..nodes).filter(|&n| n != victim).collect();
    let all_down = sim
        .run_until(Duration::from_secs(60), Duration::from_millis(50), |sim| {
            survivors
                .iter()
                .all(|&s| sim.gossip.state(s, victim) == Some(MemberState::Down))
        })
        .ok_or_else(|| {
            BenchError::Scale(format!("{nodes} nodes: the kill was never seen by all"))
        })?;
    Ok(ScaleRow {
        nodes,
        cold_start,
        traffic_median: median(&per_second).unwrap_or(0.0),
        traffic_max: per_second.iter().copied().fold(0.0, f64::max),
        anti_entropy_median: median(&anti_entropy).unwrap_or(0.0),
        event_to_999,
        row_bytes_per_node,
        last_survivor_down: all_down - killed_at,
        wall: started.elapsed(),
        peak_rss_mib: peak_rss_mib(),
    })
}

/// Long enough after a row reached 99.9% for its last retransmissions.
const SPREAD_TAIL: Duration = Duration::from_secs(5);

/// One node records a row, as replication does for each new event: the
/// virtual time until 99.9% of the others hold it, and the bytes it cost
/// each node above `idle_per_node` (B/s, sent plus received).
fn disseminate(sim: &mut ReplicaSim, idle_per_node: f64) -> Result<(Duration, f64), BenchError> {
    let nodes = sim.gossip.nodes();
    sim.reset_traffic();
    let recorded_at = sim.now();
    let (origin, seq) = sim
        .record(0)
        .map_err(|error| BenchError::Scale(format!("{nodes} nodes: spread refused: {error}")))?;
    let others = nodes - 1;
    // The origin holds its own row; 99.9% of the others, rounded up.
    let wanted = 1 + (others * 999).div_ceil(1000);
    let reached = sim
        .run_until(Duration::from_secs(60), Duration::from_millis(10), |sim| {
            sim.holders(origin, seq) >= wanted
        })
        .ok_or_else(|| {
            BenchError::Scale(format!("{nodes} nodes: a recorded row never reached 99.9%"))
        })?;
    sim.run_for(SPREAD_TAIL);
    let window = (sim.now() - recorded_at).as_secs_f64();
    let total: u64 = (0..nodes)
        .map(|node| {
            let gossip = sim.gossip.traffic(node);
            let pulls = sim.traffic(node);
            gossip.sent + gossip.received + pulls.sent + pulls.received
        })
        .sum();
    let per_node = total as f64 / nodes as f64 - idle_per_node * window;
    Ok((reached - recorded_at, per_node.max(0.0)))
}

/// Progress on stderr: a 5,000-node size runs for many minutes.
pub(super) fn phase(nodes: usize, done: &str, started: std::time::Instant) {
    let mib = |field| measure::self_status_kib(field).unwrap_or(0) / 1024;
    eprintln!(
        "scale: {nodes} nodes: {done} after {:.0} s, RSS {} MiB, peak {} MiB",
        started.elapsed().as_secs_f64(),
        mib("VmRSS:"),
        mib("VmHWM:")
    );
}

fn report(heads: HttpHeads, rows: &[ScaleRow]) -> String {
    let mut out = String::from("### Gossip and full replication at scale (simulation)\n\n");
    out.push_str(&format!("- Command: `{}`\n", super::command_line()));
    out.push_str(
        "- The real `GossipNode`s and replication paths in virtual time (`starling_replicate::sim`); \
         latency 0.3–2.3 ms, no loss; traffic per node is every sealed datagram, push-pull frame \
         and anti-entropy exchange sent plus received, with IPv4/UDP/TCP headers, over the idle \
         window, which starts 90 s after full views\n",
    );
    out.push_str(&format!(
        "- HTTP heads of a sync, measured on the real client and server: {} B asked, {} B answered\n\n",
        heads.request, heads.response
    ));
    out.push_str("| nodes | cold start to full views (s) | idle traffic per node, median (B/s) | of which anti-entropy (B/s) | largest (B/s) | vs the smallest size | a recorded row on 99.9% of nodes (s) | bytes a row costs each node | last survivor marks a kill down (s) | simulated in (s) | peak memory of the simulation (MiB) |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    let base = rows.first().map_or(1.0, |r| r.traffic_median.max(1.0));
    for row in rows {
        out.push_str(&format!(
            "| {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.2}× | {:.2} | {:.0} | {:.2} | {:.0} | {:.0} |\n",
            row.nodes,
            row.cold_start.as_secs_f64(),
            row.traffic_median,
            row.anti_entropy_median,
            row.traffic_max,
            row.traffic_median / base,
            row.event_to_999.as_secs_f64(),
            row.row_bytes_per_node,
            row.last_survivor_down.as_secs_f64(),
            row.wall.as_secs_f64(),
            row.peak_rss_mib
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark's short version: every phase at 50 nodes, with the
    /// HTTP heads measured on the real stack. The goals are the issue's
    /// for 1,000 nodes and more, so at 50 they hold with room.
    #[test]
    fn fifty_nodes_converge_spread_a_row_and_see_a_kill() {
        let heads = measure_heads().expect("a sync on loopback");
        // A request line, a host, a type, a length: heads of a few
        // hundred bytes at most.
        assert!((60..400).contains(&heads.request), "{heads:?}");
        assert!((60..400).contains(&heads.response), "{heads:?}");
        let row = measure(50, 16, Duration::from_secs(30), heads).expect("every phase completes");
        assert!(row.cold_start < Duration::from_secs(10), "{row:?}");
        assert!(row.anti_entropy_median > 0.0, "{row:?}");
        assert!(row.traffic_median > row.anti_entropy_median, "{row:?}");
        assert!(row.event_to_999 < Duration::from_secs(2), "{row:?}");
        // At least an encoded row in and out once each.
        assert!(row.row_bytes_per_node > 200.0, "{row:?}");
        assert!(row.last_survivor_down < Duration::from_secs(5), "{row:?}");
        let aggregated = aggregated::measure(50, 3, 16, Duration::from_secs(30), heads, 6.0)
            .expect("every aggregated phase completes");
        assert!(aggregated.node_median > 0.0, "{aggregated:?}");
        assert!(
            aggregated.aggregator_rows_per_second > 0.0,
            "{aggregated:?}"
        );
        // The stream interval (1 s) and a round trip.
        assert!(
            aggregated.row_on_two <= Duration::from_millis(1100),
            "{aggregated:?}"
        );
    }
}
