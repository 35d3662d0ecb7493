//! `starling-bench overlay`: the probe's cost at N peers (everyone probes
//! everyone), and the time from cutting one overlay path until every agent
//! reports it.
//!
//! N real agents and N real `starling probe` processes on loopback. As
//! root, the benchmark re-runs itself inside a network namespace it
//! creates (`ip netns`), so that the cut (an nft drop between two probe
//! addresses) touches only that namespace's own loopback and table; the
//! namespace is deleted afterwards. Without root the cut is skipped.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::BenchError;
use super::history::{Agents, ms};
use super::measure::cpu_ticks;

#[derive(Clone, Debug, clap::Args)]
pub struct OverlayBenchArgs {
    /// Nodes, each with an agent and a probe.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(3..=200))]
    pub nodes: u16,

    /// How long the steady-state cost is measured.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub measure: Duration,

    /// The agents' --overlay-window (the break is reported after about
    /// one window).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub window: Duration,

    /// The agents' --overlay-interval.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,

    /// First loopback address for the agents.
    #[arg(long, default_value = "127.0.110.1")]
    pub first_ip: Ipv4Addr,

    /// First loopback address for the probes.
    #[arg(long, default_value = "127.0.120.1")]
    pub first_probe_ip: Ipv4Addr,

    /// Set when the benchmark re-runs itself in its namespace.
    #[arg(long, hide = true)]
    pub in_netns: bool,
}

const SCENARIO: &str = "overlay";
const PATIENCE: Duration = Duration::from_secs(180);
/// The table the cut lives in, inside the benchmark's own namespace.
const NFT_TABLE: &str = "inet starling_bench";

fn fail(message: String) -> BenchError {
    BenchError::Overlay(message)
}

pub async fn run(args: OverlayBenchArgs) -> Result<(), BenchError> {
    if !args.in_netns && effective_uid() == Some(0) {
        return in_own_namespace().await;
    }
    measure(&args).await
}

/// Create a namespace, run this benchmark again inside it, delete it.
async fn in_own_namespace() -> Result<(), BenchError> {
    let namespace = format!("starling-bench-{}", std::process::id());
    let ip = |argv: &[&str]| {
        let namespace = namespace.clone();
        let argv: Vec<String> = argv.iter().map(|a| a.replace("{ns}", &namespace)).collect();
        async move {
            let output = Command::new("ip").args(&argv).output().await;
            match output {
                Ok(out) if out.status.success() => Ok(()),
                Ok(out) => Err(fail(format!(
                    "ip {}: {}",
                    argv.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))),
                Err(e) => Err(fail(format!("ip (Debian's iproute2): {e}"))),
            }
        }
    };
    ip(&["netns", "add", "{ns}"]).await?;
    let result = async {
        ip(&["-n", "{ns}", "link", "set", "lo", "up"]).await?;
        let exe = std::env::current_exe().map_err(|e| fail(format!("executable: {e}")))?;
        let mut argv: Vec<String> = std::env::args().skip(1).collect();
        argv.push("--in-netns".to_owned());
        let status = Command::new("ip")
            .args(["netns", "exec", &namespace])
            .arg(exe)
            .args(argv)
            .kill_on_drop(true)
            .status()
            .await
            .map_err(|e| fail(format!("ip netns exec: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(fail(format!(
                "the run in namespace {namespace} failed ({status})"
            )))
        }
    }
    .await;
    let deleted = ip(&["netns", "del", "{ns}"]).await;
    result.and(deleted)
}

async fn measure(args: &OverlayBenchArgs) -> Result<(), BenchError> {
    let n = usize::from(args.nodes);
    let dir = tempfile::Builder::new()
        .prefix("starling-bench-overlay-")
        .tempdir()
        .map_err(|e| fail(format!("temp dir: {e}")))?;
    let agents = Agents::new(dir.path(), args.first_ip)?;
    let flags = [
        "--overlay-interval".to_owned(),
        humantime::format_duration(args.interval).to_string(),
        "--overlay-window".to_owned(),
        humantime::format_duration(args.window).to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    eprintln!("bench: starting {n} agents");
    let mut children: Vec<Child> = Vec::new();
    for index in 0..n {
        children.push(agents.spawn_with(SCENARIO, index, &flags)?);
    }
    agents.converged(n).await?;
    eprintln!("bench: starting {n} probes");
    let probe_ip = |i: usize| Ipv4Addr::from(u32::from(args.first_probe_ip) + i as u32);
    let mut probes = Vec::new();
    for index in 0..n {
        probes.push(spawn_probe(&agents, index, probe_ip(index))?);
    }
    let everything_ok = wait(&format!("all {} paths ok", n * (n - 1)), || async {
        starling_client::members(&[agents.api(0).to_string()])
            .await
            .is_ok()
            && overlay_paths_ok(agents.api(0), n * (n - 1)).await
    })
    .await?;
    eprintln!(
        "bench: matrix complete after {everything_ok:?}; measuring for {:?}",
        args.measure
    );

    let pids: Vec<u32> = probes.iter().filter_map(Child::id).collect();
    let agent_pids: Vec<u32> = children.iter().filter_map(Child::id).collect();
    let ticks_before = ticks(&pids)?;
    let agent_ticks_before = ticks(&agent_pids)?;
    let bytes_before = probe_bytes(&agents, n).await?;
    let started = Instant::now();
    tokio::time::sleep(args.measure).await;
    let elapsed = started.elapsed().as_secs_f64();
    let ticks_after = ticks(&pids)?;
    let agent_ticks_after = ticks(&agent_pids)?;
    let bytes_after = probe_bytes(&agents, n).await?;
    let tick_hz = super::measure::clock_ticks().await.0 as f64;
    let cpu_percent = |before: &[u64], after: &[u64]| -> Vec<f64> {
        let mut out: Vec<f64> = before
            .iter()
            .zip(after)
            .map(|(b, a)| (a - b) as f64 / tick_hz / elapsed * 100.0)
            .collect();
        out.sort_by(f64::total_cmp);
        out
    };
    let probe_cpu = cpu_percent(&ticks_before, &ticks_after);
    let agent_cpu = cpu_percent(&agent_ticks_before, &agent_ticks_after);
    let mut rates: Vec<f64> = bytes_before
        .iter()
        .zip(&bytes_after)
        .map(|(b, a)| (a - b) / elapsed)
        .collect();
    rates.sort_by(f64::total_cmp);

    println!("## Overlay probe\n");
    println!("{}\n", super::http::machine("agents and probes").await);
    println!(
        "{n} nodes, each an agent and a probe on loopback; everyone probes everyone: {} pings/s sent per probe (--overlay-interval {}), window {}.\n",
        ((n - 1) as f64 / args.interval.as_secs_f64()).round(),
        humantime::format_duration(args.interval),
        humantime::format_duration(args.window)
    );
    println!("| per node, over {:.0} s | median | max |", elapsed);
    println!("|---|---:|---:|");
    println!(
        "| probe CPU (% of one core) | {:.2} | {:.2} |",
        median(&probe_cpu),
        probe_cpu.last().copied().unwrap_or_default()
    );
    println!(
        "| probe echo traffic, sent + received (bytes/s) | {:.0} | {:.0} |",
        median(&rates),
        rates.last().copied().unwrap_or_default()
    );
    println!(
        "| agent CPU, everything included (% of one core) | {:.2} | {:.2} |",
        median(&agent_cpu),
        agent_cpu.last().copied().unwrap_or_default()
    );
    println!();

    if args.in_netns {
        let took = time_to_report(&agents, n, probe_ip(0), probe_ip(1)).await?;
        println!(
            "Cutting the path n0↔n1 (nft drop between the two probe addresses, both ways): every one of the {n} agents reported `overlay path n0↔n1 broken` after {:.1} s, {:.2} windows.\n",
            took.as_secs_f64(),
            took.as_secs_f64() / args.window.as_secs_f64()
        );
    } else {
        println!(
            "Time to report a cut path: not measured (run as root: the benchmark then cuts a path in a network namespace of its own).\n"
        );
    }
    drop(probes);
    drop(children);
    Ok(())
}

/// The effective user id, from /proc (no unsafe libc call for it).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn spawn_probe(agents: &Agents, index: usize, ip: Ipv4Addr) -> Result<Child, BenchError> {
    let exe = crate::starling_exe()?;
    Command::new(exe)
        .arg("probe")
        .args(["--node-name", &format!("n{index}")])
        .args(["--listen", &format!("{ip}:7949")])
        .args(["--agent", &format!("http://{}", agents.api(index))])
        .arg("--gossip-key-file")
        .arg(agents.key_file())
        .args(["--log", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("spawn probe n{index}: {e}")))
}

fn ticks(pids: &[u32]) -> Result<Vec<u64>, BenchError> {
    pids.iter()
        .map(|&pid| cpu_ticks(pid).map_err(|e| fail(format!("/proc/{pid}/stat: {e}"))))
        .collect()
}

/// Per node, the probe's echo bytes sent + received so far (its agent's
/// counter).
async fn probe_bytes(agents: &Agents, n: usize) -> Result<Vec<f64>, BenchError> {
    let client = client();
    let mut out = Vec::with_capacity(n);
    for index in 0..n {
        let url = format!("http://{}/metrics", agents.api(index));
        let text = client
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| fail(format!("{url}: {e}")))?
            .text()
            .await
            .map_err(|e| fail(format!("{url}: {e}")))?;
        let total: f64 = text
            .lines()
            .filter(|l| l.starts_with("starling_overlay_probe_bytes_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        out.push(total);
    }
    Ok(out)
}

async fn overlay_paths_ok(api: SocketAddr, expected: usize) -> bool {
    starling_client::overlay(&[api.to_string()])
        .await
        .is_ok_and(|o| {
            o.paths.len() == expected
                && o.paths
                    .iter()
                    .all(|p| p.status == starling_model::Status::Ok)
        })
}

async fn time_to_report(
    agents: &Agents,
    n: usize,
    a: Ipv4Addr,
    b: Ipv4Addr,
) -> Result<Duration, BenchError> {
    let script = format!(
        "add table {NFT_TABLE}; add chain {NFT_TABLE} input {{ type filter hook input priority 0; policy accept; }}; \
         add rule {NFT_TABLE} input ip saddr {a} ip daddr {b} drop; \
         add rule {NFT_TABLE} input ip saddr {b} ip daddr {a} drop"
    );
    nft(&script).await?;
    let cut = Instant::now();
    let everyone = wait("every agent reports the cut", || async {
        for index in 0..n {
            match starling_client::status(&[agents.api(index).to_string()]).await {
                Ok(status)
                    if status
                        .reasons
                        .iter()
                        .any(|r| r == "overlay path n0↔n1 broken") => {}
                _ => return false,
            }
        }
        true
    })
    .await;
    let took = cut.elapsed();
    nft(&format!("delete table {NFT_TABLE}")).await?;
    everyone?;
    eprintln!("bench: cut reported everywhere after {} ms", ms(took));
    Ok(took)
}

async fn nft(script: &str) -> Result<(), BenchError> {
    let out = Command::new("nft")
        .arg(script)
        .output()
        .await
        .map_err(|e| fail(format!("nft (Debian's nftables): {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

async fn wait<F, Fut>(what: &str, mut done: F) -> Result<Duration, BenchError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < PATIENCE {
        if done().await {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(fail(format!("{what}: not within {PATIENCE:?}")))
}

fn client() -> reqwest::Client {
    starling_checks::http_client()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a plain-HTTP client with a preconfigured TLS backend always builds")
}

fn median(sorted: &[f64]) -> f64 {
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}
