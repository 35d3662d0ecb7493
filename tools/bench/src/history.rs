//! `starling-bench history`: the history store and its replication,
//! measured with real SQLite files and real agent processes on loopback.
//!
//! 1. Store: batched insert throughput (the push and pull paths) and one
//!    commit per event (this node's own events), then the latency of "the
//!    last 24 h of one node" on a database holding 7 days of a 100-node
//!    cluster.
//! 2. Replication at N agents: from an event's creation until it is in
//!    every node's database, read from each database's `received_ms`.
//! 3. Catch-up: a fresh node joining a node that holds 100,000 events it
//!    never saw, until all are in its database.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::RngExt;
use tokio::process::Child;

use super::BenchError;
use starling_history::{Event, EventFilter, EventKind, HistoryMetrics, Store, StoreConfig};
use starling_model::AnnotationRequest;
use starling_seal::Keyring;

#[derive(Clone, Debug, clap::Args)]
pub struct HistoryBenchArgs {
    /// Agents for the replication measurement.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(2..=250))]
    pub nodes: u16,

    /// Events created (one per second, on random agents) for the
    /// replication measurement.
    #[arg(long, default_value_t = 30)]
    pub samples: usize,

    /// Events the catching-up node misses.
    #[arg(long, default_value_t = 100_000)]
    pub catch_up: usize,

    /// Cluster size simulated in the query database.
    #[arg(long, default_value_t = 100)]
    pub query_nodes: usize,

    /// Events per node per hour in the query database (7 days of them).
    #[arg(long, default_value_t = 60)]
    pub events_per_node_hour: usize,

    /// First loopback address for the agents.
    #[arg(long, default_value = "127.0.100.1")]
    pub first_ip: Ipv4Addr,
}

pub(super) const HOUR_MS: u64 = 3_600_000;
/// Bounds every wait for the cluster.
const PATIENCE: Duration = Duration::from_secs(120);

pub async fn run(args: HistoryBenchArgs) -> Result<(), BenchError> {
    let dir = tempfile::Builder::new()
        .prefix("starling-bench-history-")
        .tempdir()
        .map_err(|e| fail(format!("temp dir: {e}")))?;
    println!("# starling-bench history\n");
    println!("Command: `{}`\n", super::command_line());
    store_throughput(dir.path()).await?;
    query_latency(dir.path(), &args).await?;
    let agents = Agents::new(dir.path(), args.first_ip)?;
    replication_latency(&agents, &args).await?;
    catch_up(&agents, &args).await?;
    Ok(())
}

fn fail(message: String) -> BenchError {
    BenchError::History(message)
}

pub(super) fn open(path: &Path, name: &str) -> Result<Store, BenchError> {
    Store::open(
        path,
        name,
        StoreConfig::default(),
        HistoryMetrics::default(),
    )
    .map_err(|e| fail(e.to_string()))
}

/// `count` events of a synthetic origin per node, spread over `span_ms`
/// ending at `end_ms`.
pub(super) fn synthetic(
    node: &str,
    origin: &str,
    count: usize,
    end_ms: u64,
    span_ms: u64,
) -> Vec<Event> {
    (0..count)
        .map(|i| Event {
            origin: origin.to_owned(),
            seq: i as u64 + 1,
            observer: node.to_owned(),
            at_unix_ms: end_ms - span_ms + span_ms * i as u64 / count.max(1) as u64,
            kind: EventKind::Check,
            node: node.to_owned(),
            check: Some("etcd".to_owned()),
            old_state: Some("ok".to_owned()),
            new_state: Some("critical".to_owned()),
            message: format!("etcd: /health timed out after 5s (event {i} of {node})"),
            dedupe_key: None,
        })
        .collect()
}

async fn store_throughput(dir: &Path) -> Result<(), BenchError> {
    let store = open(&dir.join("throughput.db"), "bench")?;
    let rows = synthetic(
        "peer",
        "peer#00000000000000aa",
        200_000,
        starling_model::unix_ms_now(),
        HOUR_MS,
    );
    let started = Instant::now();
    for batch in rows.chunks(500) {
        store
            .insert_replicated(batch.to_vec())
            .await
            .map_err(|e| fail(e.to_string()))?;
    }
    let batched = rows.len() as f64 / started.elapsed().as_secs_f64();
    let own = 5_000;
    let started = Instant::now();
    for i in 0..own {
        store
            .record(starling_history::NewEvent {
                at_unix_ms: starling_model::unix_ms_now(),
                kind: EventKind::Annotation,
                node: "bench".to_owned(),
                check: None,
                old_state: None,
                new_state: None,
                message: format!("own event {i}"),
                dedupe_key: None,
            })
            .await
            .map_err(|e| fail(e.to_string()))?;
    }
    let single = f64::from(own) / started.elapsed().as_secs_f64();
    println!("## Store writes\n");
    println!("| path | events | events/s |\n|---|---:|---:|");
    println!(
        "| replicated rows, batches of 500 (push/pull) | {} | {batched:.0} |",
        rows.len()
    );
    println!("| own events, one awaited commit each | {own} | {single:.0} |\n");
    Ok(())
}

async fn query_latency(dir: &Path, args: &HistoryBenchArgs) -> Result<(), BenchError> {
    let store = open(&dir.join("query.db"), "bench")?;
    let now = starling_model::unix_ms_now();
    let per_node = args.events_per_node_hour * 24 * 7;
    eprintln!(
        "bench: filling a database with 7 days of {} nodes ({} events)",
        args.query_nodes,
        per_node * args.query_nodes
    );
    let names: Vec<String> = (0..args.query_nodes)
        .map(|n| format!("node-{n:03}"))
        .collect();
    fill_week(&store, &names, per_node, now).await?;
    let size = std::fs::metadata(store.path()).map_or(0, |m| m.len());
    let mut latencies = Vec::new();
    let mut returned = 0;
    for _ in 0..500 {
        let node = format!("node-{:03}", rand::rng().random_range(0..args.query_nodes));
        let started = Instant::now();
        let events = store
            .events(EventFilter {
                node: Some(node),
                since_unix_ms: Some(now - 24 * HOUR_MS),
                limit: starling_model::MAX_HISTORY_LIMIT,
                ..EventFilter::default()
            })
            .await
            .map_err(|e| fail(e.to_string()))?;
        latencies.push(started.elapsed());
        returned = events.len();
    }
    latencies.sort();
    println!("## Query: the last 24 h of one node\n");
    println!(
        "Database: {} nodes × 7 days × {} events/node/hour = {} events, {:.0} MiB. \
         Query through the store's read pool (the API's path), limit {} (the API's maximum), \
         {returned} rows returned; 500 queries on random nodes.\n",
        args.query_nodes,
        args.events_per_node_hour,
        per_node * args.query_nodes,
        size as f64 / f64::from(1 << 20),
        starling_model::MAX_HISTORY_LIMIT
    );
    println!(
        "| p50 | p99 |\n|---:|---:|\n| {:.2} ms | {:.2} ms |\n",
        ms(percentile(&latencies, 50)),
        ms(percentile(&latencies, 99))
    );
    Ok(())
}

/// 7 days up to `now` of the nodes named, `per_node` events each, as if
/// replicated from them (each node's check transitions, so every node also
/// has a latest result).
pub(super) async fn fill_week(
    store: &Store,
    names: &[String],
    per_node: usize,
    now: u64,
) -> Result<(), BenchError> {
    for (n, node) in names.iter().enumerate() {
        let origin = format!("{node}#{n:016x}");
        for batch in synthetic(node, &origin, per_node, now, 7 * 24 * HOUR_MS).chunks(5000) {
            store
                .insert_replicated(batch.to_vec())
                .await
                .map_err(|e| fail(e.to_string()))?;
        }
    }
    Ok(())
}

pub(super) fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Real agent processes on loopback, for the cluster measurements.
pub(super) struct Agents {
    exe: PathBuf,
    key_file: PathBuf,
    keyring: Keyring,
    dir: PathBuf,
    first_ip: Ipv4Addr,
}

impl Agents {
    pub(super) fn new(dir: &Path, first_ip: Ipv4Addr) -> Result<Self, BenchError> {
        let key = Keyring::generate_key();
        let key_file = dir.join("gossip.key");
        std::fs::write(&key_file, format!("{key}\n")).map_err(|e| fail(format!("key: {e}")))?;
        Ok(Agents {
            exe: crate::starling_exe()?,
            keyring: Keyring::parse(&key).map_err(|e| fail(e.to_string()))?,
            key_file,
            dir: dir.to_owned(),
            first_ip,
        })
    }

    fn ip(&self, index: usize) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.first_ip) + index as u32)
    }

    pub(super) fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub(super) fn key_file(&self) -> &Path {
        &self.key_file
    }

    pub(super) fn api(&self, index: usize) -> SocketAddr {
        SocketAddr::new(self.ip(index).into(), 7947)
    }

    pub(super) fn db(&self, scenario: &str, index: usize) -> PathBuf {
        self.dir
            .join(scenario)
            .join(format!("n{index}"))
            .join(starling_history::HISTORY_FILE)
    }

    fn spawn(&self, scenario: &str, index: usize) -> Result<Child, BenchError> {
        self.spawn_with(scenario, index, &[])
    }

    /// `spawn`, with more flags for the agent.
    pub(super) fn spawn_with(
        &self,
        scenario: &str,
        index: usize,
        extra: &[&str],
    ) -> Result<Child, BenchError> {
        let seed = (index != 0).then(|| self.ip(0));
        let mut command = starling_client::lab::agent_command(
            &self.exe,
            &self.key_file,
            &self.dir.join(scenario),
            &format!("n{index}"),
            self.ip(index),
            seed,
        );
        command
            .args(["--log", "warn"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        command
            .spawn()
            .map_err(|e| fail(format!("spawn agent n{index}: {e}")))
    }

    /// Waits until agent 0 sees `n` members alive.
    pub(super) async fn converged(&self, n: usize) -> Result<(), BenchError> {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(members) = starling_client::members(&[self.api(0).to_string()]).await
                && members.counts.alive == n
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(fail(format!(
            "{n} agents did not converge within {PATIENCE:?}"
        )))
    }
}

/// When (Unix ms) `db` stored (origin, seq), if it has.
fn received_at(db: &Path, origin: &str, seq: u64) -> Option<u64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    conn.query_row(
        "SELECT received_ms FROM events WHERE origin = ?1 AND seq = ?2",
        rusqlite::params![origin, seq as i64],
        |row| row.get::<_, i64>(0),
    )
    .ok()
    .map(|ms| ms as u64)
}

async fn replication_latency(agents: &Agents, args: &HistoryBenchArgs) -> Result<(), BenchError> {
    let n = usize::from(args.nodes);
    eprintln!("bench: starting {n} agents");
    let mut children = Vec::new();
    for index in 0..n {
        children.push(agents.spawn("replication", index)?);
        if index == 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    agents.converged(n).await?;
    let mut samples = Vec::new();
    for i in 0..args.samples {
        let at = rand::rng().random_range(0..n);
        let request = AnnotationRequest {
            node: None,
            message: format!("replication sample {i}"),
        };
        let ack =
            starling_client::annotate(&[agents.api(at).to_string()], &agents.keyring, &request)
                .await
                .map_err(|e| fail(e.to_string()))?;
        samples.push((at, ack.origin, ack.seq));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut last_node = Vec::new();
    let mut every_node = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    for (at, origin, seq) in &samples {
        let created = loop {
            if let Some(ms) = received_at(&agents.db("replication", *at), origin, *seq) {
                break ms;
            }
            if Instant::now() > deadline {
                return Err(fail(format!("{origin} #{seq} not in its own database")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut worst = 0;
        for index in (0..n).filter(|i| i != at) {
            let received = loop {
                if let Some(ms) = received_at(&agents.db("replication", index), origin, *seq) {
                    break ms;
                }
                if Instant::now() > deadline {
                    return Err(fail(format!("{origin} #{seq} never reached n{index}")));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let latency = received.saturating_sub(created);
            every_node.push(Duration::from_millis(latency));
            worst = worst.max(latency);
        }
        last_node.push(Duration::from_millis(worst));
    }
    drop(children);
    last_node.sort();
    every_node.sort();
    println!("## Replication latency at N = {n} (loopback)\n");
    println!(
        "{} events created one per second on random agents (`POST /v1/events`); latency = the \
         receiving database's `received_ms` − the origin's own `received_ms` (one clock: same machine).\n",
        samples.len()
    );
    println!("| | median | p99 | max |\n|---|---:|---:|---:|");
    for (what, sorted) in [
        ("until the last of the {n} nodes has it", &last_node),
        ("per receiving node", &every_node),
    ] {
        println!(
            "| {} | {:.0} ms | {:.0} ms | {:.0} ms |",
            what.replace("{n}", &n.to_string()),
            ms(percentile(sorted, 50)),
            ms(percentile(sorted, 99)),
            ms(*sorted.last().expect("samples"))
        );
    }
    println!();
    Ok(())
}

async fn catch_up(agents: &Agents, args: &HistoryBenchArgs) -> Result<(), BenchError> {
    let source = agents.db("catch-up", 0);
    std::fs::create_dir_all(source.parent().expect("a file in a directory"))
        .map_err(|e| fail(format!("data dir: {e}")))?;
    {
        eprintln!(
            "bench: giving n0 {} events the newcomer never saw",
            args.catch_up
        );
        let store = open(&source, "n0")?;
        let rows = synthetic(
            "n9",
            "n9#0000000000000099",
            args.catch_up,
            starling_model::unix_ms_now(),
            HOUR_MS,
        );
        for batch in rows.chunks(5000) {
            store
                .insert_replicated(batch.to_vec())
                .await
                .map_err(|e| fail(e.to_string()))?;
        }
        store.close().await;
    }
    let _seed = agents.spawn("catch-up", 0)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = starling_model::unix_ms_now();
    let _newcomer = agents.spawn("catch-up", 1)?;
    let target = agents.db("catch-up", 1);
    let deadline = Instant::now() + PATIENCE;
    let done = loop {
        if let Some(ms) = received_at(&target, "n9#0000000000000099", args.catch_up as u64) {
            let count = rusqlite::Connection::open(&target)
                .and_then(|c| {
                    c.query_row(
                        "SELECT count(*), max(received_ms) FROM events WHERE origin = 'n9#0000000000000099'",
                        [],
                        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                    )
                })
                .map_err(|e| fail(e.to_string()))?;
            if count.0 as usize == args.catch_up {
                break (count.1 as u64).max(ms);
            }
        }
        if Instant::now() > deadline {
            return Err(fail(format!(
                "the newcomer did not catch up within {PATIENCE:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("## Catch-up\n");
    println!(
        "A new agent joins an agent holding {} events it never saw: {:.2} s from its process \
         start (join and pulls included) until the last of them is in its database.\n",
        args.catch_up,
        done.saturating_sub(started) as f64 / 1000.0
    );
    Ok(())
}
