//! The aggregated half of `starling-bench scale`: the same cluster sizes
//! with aggregators (`starling_aggregator::sim`), every check transition a
//! row that streams to its two owners.
//!
//! Per size: cold start to full views; over the window, with each
//! ordinary node recording `--transitions-per-minute` rows, the traffic of
//! each ordinary node (gossip, its streams, its health-table and window
//! pulls) and of each aggregator, and the rows each aggregator takes in;
//! the time for one row to be on two aggregators; and after an aggregator
//! is killed, the time until every row of every ordinary node is on two
//! running aggregators again.

use std::time::Duration;

use starling_aggregator::sim::AggregatedSim;
use starling_gossip::sim::{SimConfig, Traffic, VirtualTime};
use starling_replicate::sim::HttpHeads;
use starling_seal::Purpose;

use super::{SETTLE, fresh_keyring, peak_rss_mib, phase, until_full_views};
use crate::BenchError;
use crate::results::median;

/// One size's figures in aggregated mode.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregatedRow {
    pub nodes: usize,
    pub aggregators: usize,
    pub cold_start: Duration,
    /// Per ordinary node over the window, bytes/s sent plus received,
    /// every layer: median and largest.
    pub node_median: f64,
    pub node_max: f64,
    /// Of an ordinary node's traffic, the mean per node of each channel:
    /// health-table pulls, window pulls, and streams of its own rows.
    pub health_per_node: f64,
    pub window_per_node: f64,
    pub stream_per_node: f64,
    /// Per aggregator over the window, bytes/s sent plus received: median.
    pub aggregator_median: f64,
    /// Rows each aggregator took in per second (streamed or pulled):
    /// median.
    pub aggregator_rows_per_second: f64,
    /// From a row's recording until two aggregators hold it.
    pub row_on_two: Duration,
    /// From an aggregator's kill until every ordinary node's row is on two
    /// running aggregators again.
    pub whole_after_kill: Duration,
    pub wall: Duration,
    pub peak_rss_mib: f64,
}

pub fn measure(
    nodes: usize,
    aggregators: usize,
    seed: u64,
    window: Duration,
    heads: HttpHeads,
    per_minute: f64,
) -> Result<AggregatedRow, BenchError> {
    let started = std::time::Instant::now();
    crate::measure::reset_peak_rss();
    let fail = |what: String| BenchError::Scale(format!("{nodes} nodes, aggregated: {what}"));
    let mut config = SimConfig::new(nodes, seed);
    config.aggregators = aggregators;
    let mut sim = AggregatedSim::new(config, fresh_keyring(), heads, per_minute);
    sim.cold_start(Duration::from_secs(1));
    let cold_start = until_full_views(&mut sim, |sim| &sim.replicas.gossip).map_err(fail)?;
    phase(nodes, "aggregated: full views", started);
    sim.run_for(SETTLE);
    sim.replicas.reset_traffic();
    let taken_before: Vec<usize> = sim
        .aggregators()
        .map(|a| sim.replicas.arrivals(a).len())
        .collect();
    sim.run_for(window);
    let secs = window.as_secs_f64();
    let rate = |Traffic { sent, received }: Traffic| (sent + received) as f64 / secs;
    let ordinary: Vec<f64> = (aggregators..nodes)
        .map(|node| rate(sim.traffic(node)))
        .collect();
    let [health, window_pulls, streams] = [
        Purpose::HealthRequest,
        Purpose::WindowRequest,
        Purpose::StreamRequest,
    ]
    .map(|request| {
        sim.replicas.channel_bytes(request) as f64 / secs / (nodes - aggregators).max(1) as f64
    });
    let per_aggregator: Vec<f64> = sim.aggregators().map(|a| rate(sim.traffic(a))).collect();
    let taken: Vec<f64> = sim
        .aggregators()
        .map(|a| (sim.replicas.arrivals(a).len() - taken_before[a]) as f64 / secs)
        .collect();
    if !sim.replicas.gossip.downs().is_empty() {
        return Err(fail(format!(
            "{} false Down in the window",
            sim.replicas.gossip.downs().len()
        )));
    }
    phase(nodes, "aggregated: window", started);
    let (origin, seq) = sim
        .replicas
        .record(nodes - 1)
        .map_err(|error| fail(error.to_string()))?;
    let recorded = sim.now();
    let on_two = sim
        .run_until(Duration::from_secs(30), Duration::from_millis(10), |sim| {
            sim.on_aggregators(origin, seq) >= 2
        })
        .ok_or_else(|| fail("a row never reached two aggregators".to_owned()))?;
    sim.replicas.gossip.kill(0);
    let killed = sim.now();
    let whole = sim
        .run_until(Duration::from_secs(120), Duration::from_secs(1), |sim| {
            sim.rows_on_fewer_than(2) == 0
        })
        .ok_or_else(|| {
            fail(format!(
                "{} rows still on fewer than two running aggregators 120 s after the kill",
                sim.rows_on_fewer_than(2)
            ))
        })?;
    Ok(AggregatedRow {
        nodes,
        aggregators,
        cold_start,
        node_median: median(&ordinary).unwrap_or(0.0),
        node_max: ordinary.iter().copied().fold(0.0, f64::max),
        health_per_node: health,
        window_per_node: window_pulls,
        stream_per_node: streams,
        aggregator_median: median(&per_aggregator).unwrap_or(0.0),
        aggregator_rows_per_second: median(&taken).unwrap_or(0.0),
        row_on_two: on_two - recorded,
        whole_after_kill: whole - killed,
        wall: started.elapsed(),
        peak_rss_mib: peak_rss_mib(),
    })
}

pub fn report(per_minute: f64, rows: &[AggregatedRow]) -> String {
    let mut out = String::from("\n### Aggregated mode at scale (simulation)\n\n");
    out.push_str(&format!(
        "- The same engine with aggregators (`starling_aggregator::sim`); each ordinary node \
         records a row at each check transition, {per_minute} a minute, streamed to its 2 owners; \
         traffic over the window, which starts 90 s after full views; then one row's way to 2 \
         aggregators, then aggregator n0 killed\n\n"
    ));
    out.push_str("| nodes | aggregators | cold start (s) | per ordinary node, median (B/s) | largest (B/s) | vs the smallest size | of which health table, window, own streams (B/s, mean) | per aggregator, median (B/s) | rows each aggregator takes (per s) | a row on 2 aggregators (s) | after a kill, every row on 2 running aggregators (s) | simulated in (s) | peak memory (MiB) |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let base = rows.first().map_or(1.0, |r| r.node_median.max(1.0));
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {:.1} | {:.0} | {:.0} | {:.2}× | {:.0}, {:.0}, {:.0} | {:.0} | {:.1} | {:.2} | {:.0} | {:.0} | {:.0} |\n",
            row.nodes,
            row.aggregators,
            row.cold_start.as_secs_f64(),
            row.node_median,
            row.node_max,
            row.node_median / base,
            row.health_per_node,
            row.window_per_node,
            row.stream_per_node,
            row.aggregator_median,
            row.aggregator_rows_per_second,
            row.row_on_two.as_secs_f64(),
            row.whole_after_kill.as_secs_f64(),
            row.wall.as_secs_f64(),
            row.peak_rss_mib
        ));
    }
    out
}
