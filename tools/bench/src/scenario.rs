//! The measurement sequence, identical for both systems: converge, idle,
//! graceful leaves, kills. Each phase writes into the `SystemResult` as it
//! finishes, so an error later keeps what was already measured.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::time::Instant;

use super::BenchError;
use super::cluster::{Cluster, Expect, Membership};
use super::measure;
use super::results::{Idle, RunTiming, SystemResult, median};
use super::system::Seen;

/// Bound on full convergence after start.
const CONVERGE_LIMIT: Duration = Duration::from_secs(120);
/// Bound on one leave or one detection run.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// Bound on a restarted agent and the others seeing each other again.
const REJOIN_LIMIT: Duration = Duration::from_secs(60);
/// Quiet time after a rejoin, so the next victim's news does not compete
/// with the rejoin's for piggyback space.
const BETWEEN_RUNS: Duration = Duration::from_secs(5);
/// How often RSS is sampled in the idle window.
const RSS_EVERY: Duration = Duration::from_secs(5);
/// Bound on one /metrics scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub runs: usize,
    pub settle: Duration,
    pub idle_window: Duration,
    pub clock_ticks: u64,
}

pub async fn measure(
    cluster: &mut Cluster,
    plan: &Plan,
    result: &mut SystemResult,
) -> Result<(), BenchError> {
    let label = cluster.label();
    let n = cluster.len();

    eprintln!("bench: {label}: starting {n} agents");
    let (converged, slowest) = converge(cluster).await?;
    result.convergence = Some(converged);
    eprintln!(
        "bench: {label}: converged in {:.2} s (last: {slowest}); settling {} s",
        converged.as_secs_f64(),
        plan.settle.as_secs()
    );

    let settle_start = Instant::now();
    let settled = cluster.watch_until(settle_start + plan.settle).await?;
    result
        .idle_surprises
        .extend(describe(cluster, &settled, "settle", settle_start));
    eprintln!(
        "bench: {label}: idle window of {} s",
        plan.idle_window.as_secs()
    );
    let (idle, surprises) = idle(cluster, plan).await?;
    result.idle = Some(idle);
    result.idle_surprises.extend(surprises);

    for run in 0..plan.runs {
        // Never the seed: restarted agents rejoin through it.
        let victim = 1 + run % (n - 1);
        let timing = leave_run(cluster, victim).await?;
        eprintln!(
            "bench: {label}: leave run {}: {}",
            run + 1,
            summary(&timing)
        );
        result.leaves.push(timing);
        rejoin(cluster, victim).await?;
    }
    for run in 0..plan.runs {
        let victim = n - 1 - run % (n - 1);
        let timing = kill_run(cluster, victim).await?;
        eprintln!("bench: {label}: kill run {}: {}", run + 1, summary(&timing));
        result.failures.push(timing);
        rejoin(cluster, victim).await?;
    }
    Ok(())
}

/// Time to full convergence, and which line came last (for the curious).
async fn converge(cluster: &mut Cluster) -> Result<(Duration, String), BenchError> {
    let n = cluster.len();
    let expected: HashSet<Expect> = (0..n)
        .flat_map(|observer| (0..n).map(move |member| (observer, member)))
        .filter(|(observer, member)| observer != member)
        .map(|(observer, member)| (observer, Seen::Joined, cluster.name(member).to_owned()))
        .collect();
    let started = cluster.start().await?;
    let met = cluster
        .wait_for(expected.clone(), started, started + CONVERGE_LIMIT)
        .await?;
    if met.len() < expected.len() {
        return Err(cluster.timeout("full convergence", CONVERGE_LIMIT, missing(&expected, &met)));
    }
    let Some(((observer, _, member), last)) = met.into_iter().max_by_key(|(_, at)| *at) else {
        return Ok((Duration::ZERO, "nothing to see".to_owned()));
    };
    let slowest = format!("{} saw {member} join", cluster.name(observer));
    Ok((last - started, slowest))
}

async fn leave_run(cluster: &mut Cluster, victim: usize) -> Result<RunTiming, BenchError> {
    cluster.discard_pending();
    let expected = everyone_sees(cluster, victim, Seen::Left);
    let (at, helper) = cluster.leave(victim)?;
    let met = cluster.wait_for(expected, at, at + RUN_LIMIT).await?;
    cluster.reap(victim, helper).await;
    let times = met.values().map(|seen| *seen - at).collect();
    Ok(RunTiming::new(
        cluster.name(victim).to_owned(),
        cluster.len() - 1,
        times,
    ))
}

async fn kill_run(cluster: &mut Cluster, victim: usize) -> Result<RunTiming, BenchError> {
    cluster.discard_pending();
    let expected = everyone_sees(cluster, victim, Seen::Down);
    let at = cluster.kill(victim);
    let met = cluster.wait_for(expected, at, at + RUN_LIMIT).await?;
    cluster.reap(victim, None).await;
    let times = met.values().map(|seen| *seen - at).collect();
    Ok(RunTiming::new(
        cluster.name(victim).to_owned(),
        cluster.len() - 1,
        times,
    ))
}

/// Restart `victim` and wait until it and the others see each other, so
/// the next run starts from a whole cluster.
async fn rejoin(cluster: &mut Cluster, victim: usize) -> Result<(), BenchError> {
    cluster.discard_pending();
    let name = cluster.name(victim).to_owned();
    let mut expected = everyone_sees(cluster, victim, Seen::Joined);
    expected.extend(
        (0..cluster.len())
            .filter(|other| *other != victim)
            .map(|other| (victim, Seen::Joined, cluster.name(other).to_owned())),
    );
    let at = Instant::now();
    cluster.spawn(victim)?;
    let met = cluster
        .wait_for(expected.clone(), at, at + REJOIN_LIMIT)
        .await?;
    if met.len() < expected.len() {
        let what = format!("the restarted {name} and the others seeing each other");
        return Err(cluster.timeout(&what, REJOIN_LIMIT, missing(&expected, &met)));
    }
    let rejoined = Instant::now();
    let surprises = cluster.watch_until(rejoined + BETWEEN_RUNS).await?;
    for line in describe(cluster, &surprises, "after the rejoin", rejoined) {
        eprintln!("bench: {}: after rejoining {name}: {line}", cluster.label());
    }
    Ok(())
}

/// Every agent but `member` logging `seen` about it.
fn everyone_sees(cluster: &Cluster, member: usize, seen: Seen) -> HashSet<Expect> {
    let name = cluster.name(member);
    (0..cluster.len())
        .filter(|observer| *observer != member)
        .map(|observer| (observer, seen, name.to_owned()))
        .collect()
}

/// The idle window: RSS samples, CPU ticks, loopback bytes and (for
/// starling) the agents' own counters. Scrapes happen outside the loopback
/// window so their HTTP traffic is not counted as gossip.
async fn idle(cluster: &mut Cluster, plan: &Plan) -> Result<(Idle, Vec<String>), BenchError> {
    let pids: Vec<u32> = cluster.pids().into_iter().flatten().collect();
    let ips = cluster.ips();
    let scrape = cluster.label() == "starling";
    let http = starling_checks::http_client()
        .timeout(SCRAPE_TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|error| io("cannot build the HTTP client", std::io::Error::other(error)))?;

    let counters_before = if scrape {
        Some(scrape_all(&http, &ips).await)
    } else {
        None
    };
    let lo_before = measure::lo_tx_bytes().map_err(|e| io("cannot read loopback counters", e))?;
    let cpu_before = cpu_all(&pids)?;
    let started = Instant::now();
    let end = started + plan.idle_window;

    let mut rss_samples: Vec<Vec<f64>> = vec![Vec::new(); pids.len()];
    let mut surprises = Vec::new();
    loop {
        for (samples, pid) in rss_samples.iter_mut().zip(&pids) {
            let kib = measure::rss_kib(*pid).map_err(|e| io("cannot read VmRSS", e))?;
            samples.push(kib as f64);
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        let seen = cluster.watch_until((now + RSS_EVERY).min(end)).await?;
        surprises.extend(describe(cluster, &seen, "idle window", started));
    }

    let elapsed = started.elapsed().as_secs_f64();
    let lo_after = measure::lo_tx_bytes().map_err(|e| io("cannot read loopback counters", e))?;
    let cpu_after = cpu_all(&pids)?;
    let n = pids.len() as f64;
    let counter_bytes_per_sec = match counters_before {
        Some((before_at, before)) => {
            let (after_at, after) = scrape_all(&http, &ips).await;
            let span = (after_at - before_at).as_secs_f64();
            let deltas: Vec<u64> = before
                .iter()
                .zip(&after)
                .filter_map(|(b, a)| Some(a.as_ref()?.saturating_sub(*b.as_ref()?)))
                .collect();
            let answered = deltas.len();
            (answered > 0).then(|| {
                (
                    deltas.iter().sum::<u64>() as f64 / span / answered as f64,
                    answered,
                )
            })
        }
        None => None,
    };
    let idle = Idle {
        rss_kib: rss_samples
            .iter()
            .filter_map(|samples| median(samples))
            .collect(),
        cpu_percent: cpu_before
            .iter()
            .zip(&cpu_after)
            .map(|(b, a)| a.saturating_sub(*b) as f64 / plan.clock_ticks as f64 / elapsed * 100.0)
            .collect(),
        lo_bytes_per_sec: lo_after.saturating_sub(lo_before) as f64 / elapsed / n,
        counter_bytes_per_sec,
    };
    Ok((idle, surprises))
}

fn cpu_all(pids: &[u32]) -> Result<Vec<u64>, BenchError> {
    pids.iter()
        .map(|pid| measure::cpu_ticks(*pid).map_err(|e| io("cannot read /proc/PID/stat", e)))
        .collect()
}

/// Each agent's sent-bytes counter, and the middle of the scrape.
async fn scrape_all(http: &reqwest::Client, ips: &[Ipv4Addr]) -> (Instant, Vec<Option<u64>>) {
    let started = Instant::now();
    let mut values = Vec::with_capacity(ips.len());
    for ip in ips {
        values.push(measure::starling_sent_bytes(http, *ip).await);
    }
    (started + started.elapsed() / 2, values)
}

/// Suspect/down/left lines, in words (joins are expected after restarts).
fn describe(cluster: &Cluster, lines: &[Membership], phase: &str, since: Instant) -> Vec<String> {
    lines
        .iter()
        .filter(|line| line.seen != Seen::Joined)
        .map(|line| {
            format!(
                "{phase} +{:.1} s: {} logged {} {:?}",
                line.at.saturating_duration_since(since).as_secs_f64(),
                cluster.name(line.observer),
                line.member,
                line.seen
            )
        })
        .collect()
}

fn missing(expected: &HashSet<Expect>, met: &std::collections::HashMap<Expect, Instant>) -> String {
    let mut absent: Vec<String> = expected
        .iter()
        .filter(|key| !met.contains_key(*key))
        .map(|(observer, seen, member)| format!("n{observer} never logged {member} {seen:?}"))
        .collect();
    absent.sort();
    let count = absent.len();
    absent.truncate(5);
    format!(
        " ({count} of {} lines missing, e.g. {})",
        expected.len(),
        absent.join("; ")
    )
}

fn summary(run: &RunTiming) -> String {
    let fmt = |d: Option<std::time::Duration>| {
        d.map_or("timeout".to_owned(), |d| {
            format!("{:.3} s", d.as_secs_f64())
        })
    };
    format!(
        "{}: first {}, median {}, last {} ({}/{} agents)",
        run.victim,
        fmt(run.first()),
        fmt(run.median()),
        fmt(run.last()),
        run.times.len(),
        run.receivers
    )
}

fn io(what: &str, source: std::io::Error) -> BenchError {
    BenchError::Io {
        what: what.to_owned(),
        source,
    }
}
