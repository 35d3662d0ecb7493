//! `starling-bench http`: the API under load, from a second process.
//!
//! N real agents on loopback; the first holds 7 days of the N-node
//! cluster's events (one history database filled before it starts). Debian's
//! `wrk` loads `/v1/status` and `/v1/history?node=X&since=24h` on it, one
//! endpoint at a time, and reports latency percentiles and requests per
//! second. The other agents keep anti-entropy off during the run (their
//! first pull would copy the whole week and measure that instead).

use std::process::Stdio;
use std::time::Duration;

use super::BenchError;
use super::history::{Agents, fill_week, open};

#[derive(Clone, Debug, clap::Args)]
pub struct HttpBenchArgs {
    /// Agents in the cluster (the first is the one loaded).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(2..=250))]
    pub nodes: u16,

    /// Events per node per hour in the loaded agent's history (7 days).
    #[arg(long, default_value_t = 60)]
    pub events_per_node_hour: usize,

    /// Load per endpoint, after a 2 s warm-up.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Connections wrk keeps open, one run per value: with one, latency
    /// is the agent's own; with many, requests queue for the CPUs, so
    /// latency grows with them and throughput is the figure to read.
    #[arg(long, default_value = "1,16", value_delimiter = ',')]
    pub connections: Vec<u16>,

    /// The load generator (Debian package `wrk`).
    #[arg(long, default_value = "wrk")]
    pub wrk: String,

    /// First loopback address for the agents.
    #[arg(long, default_value = "127.0.100.1")]
    pub first_ip: std::net::Ipv4Addr,
}

const SCENARIO: &str = "http";

fn fail(message: String) -> BenchError {
    BenchError::Http(message)
}

pub async fn run(args: HttpBenchArgs) -> Result<(), BenchError> {
    let wrk_version = std::process::Command::new(&args.wrk)
        .arg("--version")
        .output()
        .map_err(|e| {
            fail(format!(
                "{}: {e} (install Debian's wrk: apt-get install wrk)",
                args.wrk
            ))
        })?;
    let dir = tempfile::Builder::new()
        .prefix("starling-bench-http-")
        .tempdir()
        .map_err(|e| fail(format!("temp dir: {e}")))?;
    let nodes = usize::from(args.nodes);
    let agents = Agents::new(dir.path(), args.first_ip)?;
    let names: Vec<String> = (0..nodes).map(|i| format!("n{i}")).collect();
    let per_node = args.events_per_node_hour * 24 * 7;
    eprintln!(
        "bench: filling n0's history with 7 days of {nodes} nodes ({} events)",
        per_node * nodes
    );
    let db = agents.db(SCENARIO, 0);
    let store = open(&db, "n0")?;
    fill_week(&store, &names, per_node, starling_model::unix_ms_now()).await?;
    store.close().await;
    let size = std::fs::metadata(&db).map_or(0, |m| m.len());

    eprintln!("bench: starting {nodes} agents");
    let mut children = Vec::with_capacity(nodes);
    for index in 0..nodes {
        let quiet: &[&str] = if index == 0 {
            &[]
        } else {
            &["--sync-interval", "1h"]
        };
        children.push(agents.spawn_with(SCENARIO, index, quiet)?);
    }
    agents.converged(nodes).await?;
    // Let the joins' own events settle before measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;

    println!("# starling-bench http\n");
    println!("Command: `{}`\n", super::command_line());
    println!(
        "Agent n0 of {nodes} on loopback holds 7 days of the {nodes}-node cluster: {} events \
         ({:.0} MiB). Load from `{}` (a second process), {:?} per endpoint and \
         connection count after a 2 s warm-up. {}\n",
        per_node * nodes,
        size as f64 / f64::from(1 << 20),
        String::from_utf8_lossy(&wrk_version.stdout)
            .lines()
            .next()
            .unwrap_or("wrk")
            .trim(),
        args.duration,
        machine("agents and wrk").await,
    );
    println!("| endpoint | connections | p50 | p99 | requests/s |\n|---|---:|---:|---:|---:|");
    let base = format!("http://{}", agents.api(0));
    let node = format!("n{}", nodes / 2);
    for path in [
        "/v1/status".to_owned(),
        format!("/v1/history?node={node}&since=24h"),
        format!("/v1/history?node={node}&since=24h&limit=1000"),
    ] {
        let url = format!("{base}{path}");
        for &connections in &args.connections {
            wrk(&args, &url, connections, Duration::from_secs(2)).await?;
            let load = wrk(&args, &url, connections, args.duration).await?;
            println!(
                "| `{path}` | {connections} | {:.2} ms | {:.2} ms | {:.0} |",
                load.p50_ms, load.p99_ms, load.requests_per_sec
            );
        }
    }
    println!();
    drop(children);
    Ok(())
}

/// The machine line of a report; `sharing` says who shares the CPUs.
pub(super) async fn machine(sharing: &str) -> String {
    let facts = super::measure::MachineFacts::collect(None).await;
    let build = if facts.release_build {
        "a release build"
    } else {
        "a DEBUG build (figures are not representative)"
    };
    format!(
        "Machine: {} CPUs, Linux {}, {build}; {sharing} share the CPUs.",
        facts.cpus, facts.kernel
    )
}

/// What wrk measured.
#[derive(Debug, PartialEq)]
struct Load {
    p50_ms: f64,
    p99_ms: f64,
    requests_per_sec: f64,
}

async fn wrk(
    args: &HttpBenchArgs,
    url: &str,
    connections: u16,
    duration: Duration,
) -> Result<Load, BenchError> {
    let output = tokio::process::Command::new(&args.wrk)
        .args(["--threads", "1"])
        .args(["--connections", &connections.max(1).to_string()])
        .args(["--duration", &format!("{}s", duration.as_secs().max(1))])
        .arg("--latency")
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| fail(format!("{}: {e}", args.wrk)))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(fail(format!(
            "wrk {url} failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    parse_wrk(&text).ok_or_else(|| fail(format!("wrk's report did not parse:\n{text}")))
}

/// Reads wrk's `--latency` report; `None` when a figure is missing or the
/// run saw non-2xx answers or socket errors (a broken endpoint must not
/// pass as a fast one).
fn parse_wrk(text: &str) -> Option<Load> {
    if text.contains("Non-2xx or 3xx responses") || text.contains("Socket errors") {
        return None;
    }
    let percentile = |label: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(label))
            .and_then(|value| duration_ms(value.trim()))
    };
    let requests_per_sec = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())?;
    Some(Load {
        p50_ms: percentile("50%")?,
        p99_ms: percentile("99%")?,
        requests_per_sec,
    })
}

/// wrk's `512.00us`, `2.31ms`, `1.05s`, in milliseconds.
fn duration_ms(value: &str) -> Option<f64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let number: f64 = value[..split].parse().ok()?;
    let factor = match &value[split..] {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        _ => return None,
    };
    Some(number * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_latency_reports() {
        let report = "Running 15s test @ http://127.0.100.1:7947/v1/status
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.31us  301.22us   9.87ms   88.12%
  Latency Distribution
     50%  751.00us
     75%  902.00us
     90%    1.10ms
     99%    2.31ms
  295071 requests in 15.00s, 1.02GB read
Requests/sec:  19671.28
Transfer/sec:     69.86MB
";
        assert_eq!(
            parse_wrk(report),
            Some(Load {
                p50_ms: 0.751,
                p99_ms: 2.31,
                requests_per_sec: 19671.28
            })
        );
        let broken = format!("{report}  Non-2xx or 3xx responses: 12\n");
        assert_eq!(parse_wrk(&broken), None);
    }
}
