//! `starling-bench fleet`: as many real agents as this machine holds,
//! plus aggregators, on loopback. Convergence; an idle window with its
//! false Downs, per-agent memory, CPU and traffic; then events annotated
//! on ordinary nodes while one aggregator is killed with SIGKILL, and a
//! count that every acknowledged event is queryable from every node.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use starling_model::AnnotationRequest;
use starling_model::{EventKind, HistoryQuery};
use tokio::process::Child;
use tokio::time::Instant;

use super::BenchError;
use super::history::Agents;
use super::measure::{clock_ticks, cpu_ticks, lo_tx_bytes, rss_kib};
use super::results::median;

#[derive(Clone, Debug, clap::Args)]
pub struct FleetBenchArgs {
    /// Ordinary agents.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u16).range(3..=1000))]
    pub nodes: u16,

    /// Aggregators (`--role aggregator`), started after the ordinary
    /// agents; 0 measures full replication.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(0..=9))]
    pub aggregators: u16,

    /// Seconds of the idle window (no event, nothing killed).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(10..))]
    pub idle_window: u64,

    /// Annotations per second while an aggregator is killed.
    #[arg(long, default_value_t = 5)]
    pub events_per_second: u32,

    /// Seconds of annotations; the kill comes halfway.
    #[arg(long, default_value_t = 30)]
    pub events_for: u64,

    /// First loopback address.
    #[arg(long, default_value = "127.0.120.1")]
    pub first_ip: Ipv4Addr,
}

/// Bounds convergence, and the wait for every node to answer for every
/// event.
const PATIENCE: Duration = Duration::from_secs(300);
const SCENARIO: &str = "fleet";

pub async fn run(args: FleetBenchArgs) -> Result<(), BenchError> {
    let dir = tempfile::Builder::new()
        .prefix("starling-bench-fleet-")
        .tempdir()
        .map_err(|e| fail(format!("temporary directory: {e}")))?;
    let agents = Agents::new(dir.path(), args.first_ip)?;
    let nodes = usize::from(args.nodes);
    let total = nodes + usize::from(args.aggregators);
    println!("### Real agents with aggregators\n");
    println!("- Command: `{}`", super::command_line());

    let started = Instant::now();
    let mut children = Vec::new();
    for index in 0..total {
        let role: &[&str] = if index >= nodes {
            &["--role", "aggregator"]
        } else {
            &[]
        };
        children.push(agents.spawn_with(SCENARIO, index, role)?);
    }
    converge(&agents, total).await?;
    println!(
        "- Convergence: every one of {total} agents sees {total} alive {:.1} s after the first start",
        started.elapsed().as_secs_f64()
    );

    let idle = idle(&args, &agents, &children, total).await?;
    println!("{idle}");

    let (acked, killed) = events_and_kill(&args, &agents, &mut children, nodes).await?;
    let answered = every_node_answers(&agents, nodes, &acked).await;
    println!(
        "- Events: {} annotations acknowledged by ordinary nodes over {} s; aggregator n{killed} \
         killed with SIGKILL halfway",
        acked.len(),
        args.events_for
    );
    match answered {
        Ok(after) => println!(
            "- Every one of {nodes} ordinary nodes answered every acknowledged event {:.1} s \
             after the last one",
            after.as_secs_f64()
        ),
        Err(missing) => {
            println!("- NOT every node answers for every acknowledged event: {missing}");
            return Err(fail(missing));
        }
    }
    Ok(())
}

fn fail(message: String) -> BenchError {
    BenchError::Aggregator(message)
}

async fn converge(agents: &Agents, total: usize) -> Result<(), BenchError> {
    let deadline = Instant::now() + PATIENCE;
    let mut pending: BTreeSet<usize> = (0..total).collect();
    while !pending.is_empty() {
        if Instant::now() > deadline {
            return Err(fail(format!(
                "{} agents do not see {total} alive after {PATIENCE:?}",
                pending.len()
            )));
        }
        let mut still = BTreeSet::new();
        for &index in &pending {
            let seen = starling_client::members(&[agents.api(index).to_string()]).await;
            if !seen.is_ok_and(|m| m.counts.alive == total) {
                still.insert(index);
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// The idle window: per-agent CPU, RSS at its end, loopback bytes per
/// agent, and every Down the aggregators recorded (all false: nothing
/// failed).
async fn idle(
    args: &FleetBenchArgs,
    agents: &Agents,
    children: &[Child],
    total: usize,
) -> Result<String, BenchError> {
    let pids: Vec<u32> = children.iter().filter_map(Child::id).collect();
    let window = Duration::from_secs(args.idle_window);
    let since = starling_model::unix_ms_now();
    let io = |e: std::io::Error| fail(format!("/proc: {e}"));
    let ticks_before: Vec<u64> = pids
        .iter()
        .map(|&p| cpu_ticks(p))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    let lo_before = lo_tx_bytes().map_err(io)?;
    tokio::time::sleep(window).await;
    let ticks_after: Vec<u64> = pids
        .iter()
        .map(|&p| cpu_ticks(p))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    let lo = lo_tx_bytes().map_err(io)? - lo_before;
    let rss: Vec<f64> = pids
        .iter()
        .map(|&p| rss_kib(p).map(|kib| kib as f64 / 1024.0))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    let (hz, _) = clock_ticks().await;
    let cpu: Vec<f64> = ticks_before
        .iter()
        .zip(&ticks_after)
        .map(|(b, a)| (a - b) as f64 / hz as f64 / window.as_secs_f64() * 100.0)
        .collect();
    let downs = downs_since(agents, args, since).await?;
    let nodes = usize::from(args.nodes);
    let (ordinary, aggregators) = (0..nodes, nodes..total);
    let med =
        |values: &[f64], range: std::ops::Range<usize>| median(&values[range]).unwrap_or_default();
    Ok(format!(
        "- Idle window of {} s: {downs} Down recorded (nothing failed, so any would be false)\n\
         - Per ordinary agent, median: RSS {:.1} MiB, CPU {:.2}% of one core; per aggregator, \
         median: RSS {:.1} MiB, CPU {:.2}%\n\
         - Loopback traffic, every packet once, per agent: {:.0} B/s",
        window.as_secs(),
        med(&rss, ordinary.clone()),
        med(&cpu, ordinary),
        if aggregators.is_empty() {
            0.0
        } else {
            med(&rss, aggregators.clone())
        },
        if aggregators.is_empty() {
            0.0
        } else {
            med(&cpu, aggregators)
        },
        lo as f64 / window.as_secs_f64() / total as f64,
    ))
}

/// Membership events saying a member went down, recorded since `since`,
/// as an aggregator's history (or with none, agent 0's) holds them.
async fn downs_since(
    agents: &Agents,
    args: &FleetBenchArgs,
    since: u64,
) -> Result<usize, BenchError> {
    let asked = usize::from(args.nodes); // the first aggregator, or the first node
    let filter = HistoryQuery {
        kind: Some(EventKind::Membership),
        since_unix_ms: Some(since),
        limit: 1000,
        ..HistoryQuery::default()
    };
    let index = if args.aggregators > 0 { asked } else { 0 };
    let page = starling_client::history(&[agents.api(index).to_string()], &filter)
        .await
        .map_err(|e| fail(format!("history of n{index}: {e}")))?;
    Ok(page
        .events
        .iter()
        .filter(|e| e.new_state.as_deref() == Some("down"))
        .count())
}

/// Annotations on ordinary nodes in turn, at the asked rate; the first
/// aggregator is killed halfway. Returns the acknowledged (origin, seq)
/// and the index of the killed one.
async fn events_and_kill(
    args: &FleetBenchArgs,
    agents: &Agents,
    children: &mut [Child],
    nodes: usize,
) -> Result<(BTreeSet<(String, u64)>, usize), BenchError> {
    let mut acked = BTreeSet::new();
    let count = u64::from(args.events_per_second) * args.events_for;
    let every = Duration::from_secs_f64(1.0 / f64::from(args.events_per_second.max(1)));
    let victim = (args.aggregators > 0).then_some(nodes);
    let mut ticker = tokio::time::interval(every);
    for sent in 0..count {
        ticker.tick().await;
        if sent == count / 2
            && let Some(victim) = victim
        {
            children[victim]
                .start_kill()
                .map_err(|e| fail(format!("kill -9 n{victim}: {e}")))?;
        }
        let at = (sent as usize * 7919) % nodes;
        let request = AnnotationRequest {
            node: None,
            message: format!("fleet event {sent}"),
        };
        if let Ok(ack) =
            starling_client::annotate(&[agents.api(at).to_string()], agents.keyring(), &request)
                .await
        {
            acked.insert((ack.origin, ack.seq));
        }
    }
    Ok((acked, victim.unwrap_or(0)))
}

/// Waits until every ordinary node's history answer holds every `acked`
/// event; the time that took, or what is still missing.
async fn every_node_answers(
    agents: &Agents,
    nodes: usize,
    acked: &BTreeSet<(String, u64)>,
) -> Result<Duration, String> {
    let started = Instant::now();
    let mut pending: BTreeSet<usize> = (0..nodes).collect();
    let filter = HistoryQuery {
        kind: Some(EventKind::Annotation),
        limit: 1000,
        ..HistoryQuery::default()
    };
    while Instant::now() < started + PATIENCE {
        let mut still = BTreeSet::new();
        for &index in &pending {
            let page = starling_client::history(&[agents.api(index).to_string()], &filter).await;
            let holds = page.is_ok_and(|page| {
                let keys: BTreeSet<(String, u64)> =
                    page.events.into_iter().map(|e| (e.origin, e.seq)).collect();
                page.incomplete.is_none() && acked.is_subset(&keys)
            });
            if !holds {
                still.insert(index);
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(format!(
        "{} of {nodes} nodes still lack events after {PATIENCE:?} (first: n{})",
        pending.len(),
        pending.first().copied().unwrap_or_default()
    ))
}
