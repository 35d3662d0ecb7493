//! `starling-bench aggregator`: what an N-node aggregated cluster costs
//! its aggregators, measured on real aggregator processes.
//!
//! N ordinary nodes cannot run here as processes, but what they send an
//! aggregator can: each virtual node streams its check transitions to the
//! aggregators that own it (the same rendezvous ranking, the same sealed
//! `StreamRequest`), asks each owner again after the idle interval, and
//! pulls the health table from its first-ranked aggregator every health
//! interval from where its last pull left off, and its window of the
//! newest events every few pulls. The aggregators are real
//! `starling agent --role aggregator` processes on loopback that gossip and
//! pull anti-entropy among themselves as in production; their CPU comes
//! from /proc, their storage from their SQLite files.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use starling_aggregator::{
    Aggregator, DEFAULT_HEALTH_INTERVAL, DEFAULT_STREAM_IDLE_INTERVAL, HealthRequest,
    StreamRequest, WINDOW_EVERY_HEALTH_PULLS, WindowRequest, ranked,
};
use starling_history::{Event, EventKind, SyncBatch};
use starling_replicate::sim::{check_change, mix};
use starling_seal::Keyring;
use tokio::process::Child;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::BenchError;
use super::history::{Agents, ms, percentile};
use super::measure::{clock_ticks, cpu_ticks, lo_tx_bytes, rss_kib};

#[derive(Clone, Debug, clap::Args)]
pub struct AggregatorBenchArgs {
    /// Ordinary nodes the load stands for.
    #[arg(long, default_value_t = 5000)]
    pub nodes: usize,

    /// Aggregator processes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    pub aggregators: u16,

    /// Aggregators that own each node's events (`--aggregation-replicas`).
    #[arg(long, default_value_t = 2)]
    pub replicas: usize,

    /// Check transitions per ordinary node per minute.
    #[arg(long, default_value_t = 1.0)]
    pub events_per_node_per_minute: f64,

    /// Events each node streams before the measurement, so the
    /// aggregators' databases are not empty while measured.
    #[arg(long, default_value_t = 20)]
    pub preload_events: u64,

    /// Seconds of load measured.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..))]
    pub duration: u64,

    /// Leave the health pulls (and the window asks that go with them) out,
    /// to measure the ingest alone.
    #[arg(long)]
    pub without_health_pulls: bool,

    /// Leave the window asks out, to see what the window costs.
    #[arg(long)]
    pub without_window: bool,

    /// First loopback address of the aggregators.
    #[arg(long, default_value = "127.0.110.1")]
    pub first_ip: Ipv4Addr,
}

/// Requests in flight at once: more than the aggregators answer per
/// round trip, fewer than would queue behind a slow disk unnoticed.
const IN_FLIGHT: usize = 256;
const PATIENCE: Duration = Duration::from_secs(120);

/// One ordinary node as the aggregators see it: its log and its cursor
/// into its first-ranked aggregator's health table.
struct VirtualNode {
    name: String,
    origin: String,
    seq: u64,
    /// Picks each transition's check and figures, as the simulation's
    /// rows vary (`check_change`).
    noise: u64,
    owners: Vec<SocketAddr>,
    health_from: SocketAddr,
}

#[derive(Default)]
struct Tally {
    stream_latency: Mutex<Vec<Duration>>,
    /// Per event, from its transition until the last of its owners
    /// acknowledged it.
    on_every_owner: Mutex<Vec<Duration>>,
    pull_latency: Mutex<Vec<Duration>>,
    failures: AtomicU64,
    rows_pulled: AtomicU64,
    window_events: AtomicU64,
}

pub async fn run(args: AggregatorBenchArgs) -> Result<(), BenchError> {
    let dir = tempfile::tempdir().map_err(|e| fail(format!("temporary directory: {e}")))?;
    let agents = Agents::new(dir.path(), args.first_ip)?;
    let count = usize::from(args.aggregators);
    let mut children = Vec::new();
    for index in 0..count {
        children.push(agents.spawn_with("aggregators", index, &["--role", "aggregator"])?);
    }
    agents.converged(count).await?;
    let aggregators: Vec<Aggregator> = (0..count)
        .map(|index| Aggregator {
            name: format!("n{index}"),
            api: agents.api(index),
        })
        .collect();
    let keyring = Arc::new(agents.keyring().clone());
    let client = starling_aggregator::client();
    let mut nodes = virtual_nodes(&args, &aggregators);

    eprintln!(
        "aggregator: preloading {} events of {} nodes",
        args.preload_events * args.nodes as u64,
        args.nodes
    );
    preload(&client, &keyring, &mut nodes, args.preload_events).await?;
    let cursors = settle(&client, &keyring, &aggregators, args.nodes).await?;

    eprintln!("aggregator: {} s of load", args.duration);
    let pids: Vec<u32> = children.iter().filter_map(Child::id).collect();
    let ticks_before = ticks(&pids)?;
    let lo_before = lo_tx_bytes().map_err(|e| fail(format!("loopback counter: {e}")))?;
    let tally = Arc::new(Tally::default());
    let load = Load::new(&args);
    let issued = load
        .drive(&client, &keyring, nodes, cursors, Arc::clone(&tally))
        .await;
    let ticks_after = ticks(&pids)?;
    let lo_bytes = lo_tx_bytes().map_err(|e| fail(format!("loopback counter: {e}")))? - lo_before;
    let rss: Vec<u64> = pids.iter().filter_map(|&pid| rss_kib(pid).ok()).collect();
    for child in &mut children {
        stop(child).await;
    }
    let storage = storage(&agents, count)?;
    let (hz, _) = clock_ticks().await;
    let cpu: Vec<f64> = ticks_before
        .iter()
        .zip(&ticks_after)
        .map(|(before, after)| (after - before) as f64 / hz as f64 / args.duration as f64 * 100.0)
        .collect();
    println!(
        "{}",
        report(
            &args,
            &load,
            &issued,
            &tally,
            &Measured {
                cpu,
                rss_kib: rss,
                storage,
                lo_bytes
            }
        )
    );
    Ok(())
}

fn fail(message: String) -> BenchError {
    BenchError::Aggregator(message)
}

fn virtual_nodes(args: &AggregatorBenchArgs, aggregators: &[Aggregator]) -> Vec<VirtualNode> {
    (0..args.nodes)
        .map(|index| {
            let name = format!("node-{index:05}");
            let ranked = ranked(&name, aggregators);
            VirtualNode {
                origin: format!("{name}#{:016x}", rand::random::<u64>()),
                seq: 0,
                noise: rand::random(),
                owners: ranked.iter().take(args.replicas).map(|a| a.api).collect(),
                health_from: ranked[0].api,
                name,
            }
        })
        .collect()
}

/// The next check transition of `node`'s log, flipping between ok and
/// critical so that each one changes the health table.
fn transition(node: &mut VirtualNode) -> Event {
    node.seq += 1;
    let change = check_change(mix(node.noise, node.seq), node.seq);
    Event {
        origin: node.origin.clone(),
        seq: node.seq,
        observer: node.name.clone(),
        at_unix_ms: starling_model::unix_ms_now(),
        kind: EventKind::Check,
        node: node.name.clone(),
        check: Some(change.check.to_owned()),
        old_state: Some(change.old.to_owned()),
        new_state: Some(change.new.to_owned()),
        message: change.message,
        dedupe_key: None,
    }
}

/// A stream of `events` past `from`, vouching for the last of them.
fn stream_of(node: &VirtualNode, from: u64, events: Vec<Event>) -> StreamRequest {
    let through = events.last().map(|e| e.seq);
    StreamRequest {
        node: node.name.clone(),
        origin: node.origin.clone(),
        from,
        batch: SyncBatch {
            events,
            through: through
                .map(|seq| BTreeMap::from([(node.origin.clone(), seq)]))
                .unwrap_or_default(),
            more: false,
        },
    }
}

/// Every node streams `per_node` events to its owners, checking each
/// acknowledgement.
async fn preload(
    client: &reqwest::Client,
    keyring: &Arc<Keyring>,
    nodes: &mut [VirtualNode],
    per_node: u64,
) -> Result<(), BenchError> {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for node in nodes.iter_mut() {
        let events: Vec<Event> = (0..per_node).map(|_| transition(node)).collect();
        let request = Arc::new(stream_of(node, 0, events));
        for &owner in &node.owners {
            let permit = Arc::clone(&permits).acquire_owned().await;
            let (client, keyring, request) = (client.clone(), Arc::clone(keyring), request.clone());
            tasks.spawn(async move {
                let _permit = permit;
                let reply =
                    starling_aggregator::send_stream(&client, &keyring, owner, &request).await;
                match reply {
                    Ok(reply) if reply.through == request.from + per_node => Ok(()),
                    Ok(reply) => Err(format!("{owner} acknowledged {}", reply.through)),
                    Err(error) => Err(error.to_string()),
                }
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(format!("preload: {e}")))?;
    }
    Ok(())
}

/// Waits until every aggregator's health table has a row for each node
/// (anti-entropy brought the rows it does not own); returns each
/// aggregator's (epoch, newest revision), where every node's puller
/// starts.
async fn settle(
    client: &reqwest::Client,
    keyring: &Keyring,
    aggregators: &[Aggregator],
    nodes: usize,
) -> Result<BTreeMap<SocketAddr, (String, u64)>, BenchError> {
    let deadline = Instant::now() + PATIENCE;
    let mut cursors = BTreeMap::new();
    for aggregator in aggregators {
        loop {
            let (epoch, held, newest) = whole_table(client, keyring, aggregator.api).await?;
            if held >= nodes {
                cursors.insert(aggregator.api, (epoch, newest));
                break;
            }
            if Instant::now() > deadline {
                return Err(fail(format!(
                    "{}: {held} of {nodes} nodes in its health table after {PATIENCE:?}",
                    aggregator.name
                )));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Ok(cursors)
}

/// (epoch, nodes with a row, newest revision) of one aggregator's whole
/// table, page by page.
async fn whole_table(
    client: &reqwest::Client,
    keyring: &Keyring,
    api: SocketAddr,
) -> Result<(String, usize, u64), BenchError> {
    let (mut nodes, mut epoch, mut after) = (BTreeSet::new(), None, 0);
    loop {
        // Past the first page, the place is in this aggregator's table.
        let request = HealthRequest {
            epoch: epoch.clone(),
            after,
        };
        let reply = starling_aggregator::pull_health(client, keyring, api, &request)
            .await
            .map_err(|e| fail(format!("health table: {e}")))?;
        nodes.extend(reply.changed.into_iter().map(|result| result.node));
        after = reply.through;
        if !reply.more {
            return Ok((reply.epoch, nodes.len(), after));
        }
        epoch = Some(reply.epoch);
    }
}

/// The steady load of N nodes, as rates per second.
struct Load {
    duration: Duration,
    /// Streams carrying one transition, per second (each to every owner).
    events: f64,
    /// Empty streams of owners asked again after the idle interval.
    idle_asks: f64,
    health_pulls: f64,
    window_pulls: f64,
}

/// What was sent over the measurement.
#[derive(Default)]
struct Issued {
    events: u64,
    streams: u64,
    idle_asks: u64,
    health_pulls: u64,
    window_pulls: u64,
}

impl Load {
    fn new(args: &AggregatorBenchArgs) -> Self {
        let nodes = args.nodes as f64;
        let per_node = args.events_per_node_per_minute / 60.0;
        let idle = 1.0 / DEFAULT_STREAM_IDLE_INTERVAL.as_secs_f64();
        let health_pulls = if args.without_health_pulls {
            0.0
        } else {
            nodes / DEFAULT_HEALTH_INTERVAL.as_secs_f64()
        };
        Load {
            duration: Duration::from_secs(args.duration),
            events: nodes * per_node,
            // An owner that got a stream is asked again after the idle
            // interval only if no event came in between.
            idle_asks: nodes * args.replicas as f64 * (idle - per_node).max(0.0),
            health_pulls,
            window_pulls: if args.without_window {
                0.0
            } else {
                health_pulls / WINDOW_EVERY_HEALTH_PULLS as f64
            },
        }
    }

    /// Send the load for `duration`, every request in its own task under
    /// the in-flight bound, then wait for the last answers.
    async fn drive(
        &self,
        client: &reqwest::Client,
        keyring: &Arc<Keyring>,
        mut nodes: Vec<VirtualNode>,
        cursors: BTreeMap<SocketAddr, (String, u64)>,
        tally: Arc<Tally>,
    ) -> Issued {
        let cursors: Arc<Vec<Mutex<(String, u64)>>> = Arc::new(
            nodes
                .iter()
                .map(|n| Mutex::new(cursors[&n.health_from].clone()))
                .collect(),
        );
        let permits = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut tasks = tokio::task::JoinSet::new();
        let mut issued = Issued::default();
        // Each node's window starts where its aggregator's log stands.
        let windows: Arc<Vec<Mutex<(String, u64)>>> = Arc::new(
            cursors
                .iter()
                .map(|health| Mutex::new((lock(health).0.clone(), 0)))
                .collect(),
        );
        let (mut next_event, mut next_idle, mut next_pull, mut next_window) = (0, 0, 0, 0);
        let started = Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_millis(10));
        while started.elapsed() < self.duration {
            ticker.tick().await;
            let elapsed = started.elapsed().as_secs_f64();
            while (issued.events as f64) < self.events * elapsed {
                let count = nodes.len();
                let node = &mut nodes[next_event % count];
                next_event += 1;
                let from = node.seq;
                let event = transition(node);
                let request = Arc::new(stream_of(node, from, vec![event]));
                let acks = Arc::new(Acks {
                    since: Instant::now(),
                    waiting: AtomicUsize::new(node.owners.len()),
                });
                for &owner in &node.owners {
                    let permit = Arc::clone(&permits).acquire_owned().await;
                    let (client, keyring) = (client.clone(), Arc::clone(keyring));
                    let (request, tally) = (Arc::clone(&request), Arc::clone(&tally));
                    let acks = Some(Arc::clone(&acks));
                    tasks.spawn(async move {
                        let _permit = permit;
                        stream(&client, &keyring, owner, &request, &tally, acks).await;
                    });
                    issued.streams += 1;
                }
                issued.events += 1;
            }
            while (issued.idle_asks as f64) < self.idle_asks * elapsed {
                let node = &nodes[next_idle % nodes.len()];
                let owner = node.owners[(next_idle / nodes.len()) % node.owners.len()];
                next_idle += 1;
                let request = stream_of(node, node.seq, Vec::new());
                let permit = Arc::clone(&permits).acquire_owned().await;
                let (client, keyring, tally) =
                    (client.clone(), Arc::clone(keyring), Arc::clone(&tally));
                tasks.spawn(async move {
                    let _permit = permit;
                    stream(&client, &keyring, owner, &request, &tally, None).await;
                });
                issued.idle_asks += 1;
            }
            while (issued.health_pulls as f64) < self.health_pulls * elapsed {
                let index = next_pull % nodes.len();
                let from = nodes[index].health_from;
                next_pull += 1;
                let permit = Arc::clone(&permits).acquire_owned().await;
                let (client, keyring) = (client.clone(), Arc::clone(keyring));
                let (cursors, tally) = (Arc::clone(&cursors), Arc::clone(&tally));
                tasks.spawn(async move {
                    let _permit = permit;
                    pull(&client, &keyring, from, &cursors[index], &tally).await;
                });
                issued.health_pulls += 1;
            }
            while (issued.window_pulls as f64) < self.window_pulls * elapsed {
                let index = next_window % nodes.len();
                let from = nodes[index].health_from;
                next_window += 1;
                let permit = Arc::clone(&permits).acquire_owned().await;
                let (client, keyring) = (client.clone(), Arc::clone(keyring));
                let (windows, tally) = (Arc::clone(&windows), Arc::clone(&tally));
                tasks.spawn(async move {
                    let _permit = permit;
                    pull_window(&client, &keyring, from, &windows[index], &tally).await;
                });
                issued.window_pulls += 1;
            }
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        issued
    }
}

/// One event's owners still to acknowledge it.
struct Acks {
    since: Instant,
    waiting: AtomicUsize,
}

async fn stream(
    client: &reqwest::Client,
    keyring: &Keyring,
    owner: SocketAddr,
    request: &StreamRequest,
    tally: &Tally,
    event: Option<Arc<Acks>>,
) {
    let sent = Instant::now();
    let expected = request.batch.through.values().next().copied();
    match starling_aggregator::send_stream(client, keyring, owner, request).await {
        Ok(reply) if expected.is_none_or(|seq| reply.through >= seq) => {
            lock(&tally.stream_latency).push(sent.elapsed());
            if let Some(acks) = event
                && acks.waiting.fetch_sub(1, Ordering::AcqRel) == 1
            {
                lock(&tally.on_every_owner).push(acks.since.elapsed());
            }
        }
        Ok(_) | Err(_) => {
            tally.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One node's pull: what changed since its last one, every page of it.
async fn pull(
    client: &reqwest::Client,
    keyring: &Keyring,
    from: SocketAddr,
    cursor: &Mutex<(String, u64)>,
    tally: &Tally,
) {
    let sent = Instant::now();
    loop {
        let (epoch, after) = lock(cursor).clone();
        let request = HealthRequest {
            epoch: Some(epoch),
            after,
        };
        match starling_aggregator::pull_health(client, keyring, from, &request).await {
            Ok(reply) => {
                tally
                    .rows_pulled
                    .fetch_add(reply.changed.len() as u64, Ordering::Relaxed);
                lock(cursor).1 = reply.through;
                if !reply.more {
                    lock(&tally.pull_latency).push(sent.elapsed());
                    return;
                }
            }
            Err(_) => {
                tally.failures.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// One node's window ask: the newest events since its last ask. The first
/// ask of each node takes the newest batch, as a node's first ask after a
/// start does.
async fn pull_window(
    client: &reqwest::Client,
    keyring: &Keyring,
    from: SocketAddr,
    cursor: &Mutex<(String, u64)>,
    tally: &Tally,
) {
    let (epoch, after) = lock(cursor).clone();
    let request = WindowRequest {
        epoch: Some(epoch),
        after,
    };
    match starling_aggregator::pull_window(client, keyring, from, &request).await {
        Ok(reply) => {
            tally
                .window_events
                .fetch_add(reply.events.len() as u64, Ordering::Relaxed);
            lock(cursor).1 = reply.through;
        }
        Err(_) => {
            tally.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .expect("no task panics while holding a benchmark tally")
}

fn ticks(pids: &[u32]) -> Result<Vec<u64>, BenchError> {
    pids.iter()
        .map(|&pid| cpu_ticks(pid).map_err(|e| fail(format!("CPU of aggregator {pid}: {e}"))))
        .collect()
}

async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// Per aggregator, after a clean stop: events held, and bytes of its
/// database files.
struct Storage {
    events: u64,
    bytes: u64,
}

fn storage(agents: &Agents, count: usize) -> Result<Vec<Storage>, BenchError> {
    (0..count)
        .map(|index| {
            let db = agents.db("aggregators", index);
            let bytes = ["", "-wal"]
                .iter()
                .filter_map(|suffix| {
                    let mut path = db.clone().into_os_string();
                    path.push(suffix);
                    std::fs::metadata(path).ok().map(|m| m.len())
                })
                .sum();
            let conn = rusqlite::Connection::open_with_flags(
                &db,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .map_err(|e| fail(format!("{}: {e}", db.display())))?;
            let events: i64 = conn
                .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
                .map_err(|e| fail(format!("{}: {e}", db.display())))?;
            Ok(Storage {
                events: events.unsigned_abs(),
                bytes,
            })
        })
        .collect()
}

/// What the kernel and the databases say about the aggregators.
struct Measured {
    /// Per aggregator, % of one core over the load.
    cpu: Vec<f64>,
    rss_kib: Vec<u64>,
    storage: Vec<Storage>,
    /// Loopback bytes over the load, every packet once.
    lo_bytes: u64,
}

fn report(
    args: &AggregatorBenchArgs,
    load: &Load,
    issued: &Issued,
    tally: &Tally,
    measured: &Measured,
) -> String {
    let Measured {
        cpu,
        rss_kib,
        storage,
        lo_bytes,
    } = measured;
    let secs = args.duration as f64;
    let mut streams = lock(&tally.stream_latency).clone();
    let mut pulls = lock(&tally.pull_latency).clone();
    let mut on_owners = lock(&tally.on_every_owner).clone();
    streams.sort();
    pulls.sort();
    on_owners.sort();
    let quantiles = |sorted: &[Duration]| {
        if sorted.is_empty() {
            "none".to_owned()
        } else {
            format!(
                "p50 {:.1} ms, p99 {:.1} ms",
                ms(percentile(sorted, 50)),
                ms(percentile(sorted, 99))
            )
        }
    };
    let bytes_per_event = storage
        .iter()
        .map(|s| s.bytes as f64 / s.events.max(1) as f64)
        .fold(0.0, f64::max);
    let per_day = |events_per_second: f64| events_per_second * 86_400.0 * bytes_per_event;
    let cluster_rate = load.events;
    let node_rate = args.events_per_node_per_minute / 60.0;
    let mut out = String::from("### Aggregator ingest (real aggregator processes)\n\n");
    out.push_str(&format!("- Command: `{}`\n", super::command_line()));
    out.push_str(&format!(
        "- Load of {} nodes over {} s: {:.1} transitions/s to {} owners each ({} streams), \
         {:.1} idle asks/s ({} sent), {:.1} health pulls/s ({} sent, {} rows returned), \
         {:.1} window asks/s ({} sent, {} events returned); {} requests failed\n",
        args.nodes,
        args.duration,
        issued.events as f64 / secs,
        args.replicas,
        issued.streams,
        issued.idle_asks as f64 / secs,
        issued.idle_asks,
        issued.health_pulls as f64 / secs,
        issued.health_pulls,
        tally.rows_pulled.load(Ordering::Relaxed),
        issued.window_pulls as f64 / secs,
        issued.window_pulls,
        tally.window_events.load(Ordering::Relaxed),
        tally.failures.load(Ordering::Relaxed),
    ));
    out.push_str(&format!(
        "- Acknowledgement of a stream: {}; a health pull: {}\n",
        quantiles(&streams),
        quantiles(&pulls)
    ));
    out.push_str(&format!(
        "- An event on all {} of its owners, from its transition to the last acknowledgement: {} \
         (a node's streamer sends at most {:?} after the transition, its stream interval)\n",
        args.replicas,
        quantiles(&on_owners),
        starling_aggregator::DEFAULT_STREAM_INTERVAL,
    ));
    out.push_str(&format!(
        "- Loopback traffic (every packet once, the aggregators' gossip and anti-entropy \
         included) per ordinary node: {:.0} B/s\n\n",
        *lo_bytes as f64 / secs / args.nodes as f64
    ));
    out.push_str(
        "| aggregator | CPU (% of one core) | RSS (MiB) | events held | database (MiB) |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|\n");
    for (index, s) in storage.iter().enumerate() {
        out.push_str(&format!(
            "| n{index} | {:.1} | {:.1} | {} | {:.1} |\n",
            cpu.get(index).copied().unwrap_or_default(),
            rss_kib.get(index).copied().unwrap_or_default() as f64 / 1024.0,
            s.events,
            s.bytes as f64 / 1_048_576.0
        ));
    }
    out.push_str(&format!(
        "\nStorage at {bytes_per_event:.0} B per event (the largest database over its events), \
         per day: an aggregator {:.1} GiB; an ordinary node in aggregated mode {:.2} MiB of its \
         own events, plus its health table (one row per node and check); an ordinary node in \
         full mode {:.1} GiB.\n",
        per_day(cluster_rate) / 1_073_741_824.0,
        per_day(node_rate) / 1_048_576.0,
        per_day(cluster_rate) / 1_073_741_824.0,
    ));
    out
}
