//! The captured inputs every mutation starts from: each one produced by
//! the real encoder it stands for (a foca exchange between real gossip
//! nodes, frames from `write_state`, a sync answer from `answer_sync` over
//! a real store, a report from a real prober), so a mutation starts where
//! real traffic is and every decoder accepts the unmutated seeds.

use std::net::SocketAddr;
use std::time::Duration;

use rusqlite::Connection;
use starling_gossip::{
    GossipConfig, GossipNode, NodeId, NodeIdentity, NodeMeta, Role, SERVICE_SLOTS,
};
use starling_history::{Event, EventFilter, EventKind, NewEvent, VersionVector, db};
use starling_model::{AnnotationRequest, HistoryCursor};
use starling_probe::{ProbeAssignment, ProbeTarget, Prober, WindowTiming};
use starling_replicate::fuzzing as replicate;
use starling_seal::{Keyring, Purpose, Stamp, open, seal};

use super::FuzzError;

/// Two keys: a rotation in progress, as an operator may run for days.
pub const KEYS: &str = "# fuzz\nERERERERERERERERERERERERERERERERERERERERERE=\nIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI=\n";
/// The node every receiver is.
pub const ME: &str = "node-a";
/// Gossip nodes of the captured exchange; the first is the receiver.
const NODES: usize = 4;

pub fn keyring() -> Keyring {
    Keyring::parse(KEYS).expect("the fuzz keys parse")
}

/// Every seed, by the decoder it feeds. Sealed bodies are kept as the
/// plaintext after the stamp (the JSON), which the targets stamp and seal
/// afresh for every input.
#[derive(Debug, Default)]
pub struct Seeds {
    /// Whole sealed frames of every purpose.
    pub envelopes: Vec<Vec<u8>>,
    /// foca packets addressed to the receiver, as sealed by the driver.
    pub datagrams: Vec<Vec<u8>>,
    /// Push-pull plaintexts (postcard `Vec<Member<NodeId>>`).
    pub push_pulls: Vec<Vec<u8>>,
    pub pushed_rows: Vec<Vec<u8>>,
    pub sync_requests: Vec<Vec<u8>>,
    pub sync_replies: Vec<Vec<u8>>,
    pub annotations: Vec<Vec<u8>>,
    pub echoes: Vec<Vec<u8>>,
    pub reports: Vec<Vec<u8>>,
    pub assignments: Vec<Vec<u8>>,
    pub queries: Vec<Vec<u8>>,
    /// Rows of three origins, for the databases the targets answer from.
    pub events: Vec<Event>,
}

impl Seeds {
    pub fn capture() -> Result<Seeds, FuzzError> {
        let keyring = keyring();
        let mut seeds = Seeds {
            events: events()?,
            ..Seeds::default()
        };
        seeds.pushed_rows = seeds.events.iter().map(replicate::encode_push).collect();
        // A held result, as a node whose disk is full sends it.
        seeds
            .pushed_rows
            .push(replicate::encode_held(&starling_history::CheckResult {
                node: "node-1".to_owned(),
                check: "disk".to_owned(),
                status: starling_model::Status::Critical,
                message: "/var/lib/starling: 0.0% free".to_owned(),
                details: serde_json::Value::Null,
                duration_ms: 2,
                at_unix_ms: 1_800_000_000_000,
            }));
        gossip(&keyring, &mut seeds);
        probe(&keyring, &mut seeds);
        sync(&keyring, &mut seeds)?;
        for request in [
            AnnotationRequest {
                node: None,
                message: "draining node-a for a kernel upgrade".to_owned(),
            },
            AnnotationRequest {
                node: Some("node-b".to_owned()),
                message: "etcd disk replaced".to_owned(),
            },
        ] {
            let sealed = starling_seal::seal_json(&keyring, Purpose::Annotation, &request);
            seeds
                .annotations
                .push(json_of(&keyring, Purpose::Annotation, sealed));
        }
        seeds.queries = queries();
        Ok(seeds)
    }
}

/// The JSON a sealed body carries, after its stamp.
fn json_of(keyring: &Keyring, purpose: Purpose, mut sealed: Vec<u8>) -> Vec<u8> {
    let plain = open(keyring, purpose, &mut sealed).expect("our own seal opens");
    let (_, json) = Stamp::split(plain).expect("seal_json stamps");
    json.to_vec()
}

/// Events recorded by three real origins (`record_local`, as the agent
/// records), read back as the log holds them.
fn events() -> Result<Vec<Event>, FuzzError> {
    let mut all = Vec::new();
    for (i, name) in ["node-b", "node-c", "node-d"].into_iter().enumerate() {
        let (mut conn, origin) = db::open_in_memory(name).map_err(fail)?;
        let tx = conn.transaction().map_err(fail)?;
        for seq in 0..6u64 {
            let at = 1_796_000_000_000 + i as u64 * 1000 + seq * 7;
            let new = match seq % 3 {
                0 => NewEvent {
                    at_unix_ms: at,
                    kind: EventKind::Check,
                    node: name.to_owned(),
                    check: Some("etcd".to_owned()),
                    old_state: Some("ok".to_owned()),
                    new_state: Some("critical".to_owned()),
                    message: "etcd: /health timed out after 5s".to_owned(),
                    dedupe_key: None,
                },
                1 => NewEvent {
                    at_unix_ms: at,
                    kind: EventKind::Membership,
                    node: "node-d".to_owned(),
                    check: None,
                    old_state: Some("alive".to_owned()),
                    new_state: Some("down".to_owned()),
                    message: "node-d failed (3 suspicion confirmations)".to_owned(),
                    dedupe_key: Some(format!("membership:node-d:{seq}")),
                },
                _ => NewEvent {
                    at_unix_ms: at,
                    kind: EventKind::Annotation,
                    node: name.to_owned(),
                    check: None,
                    old_state: None,
                    new_state: None,
                    message: "rebooted for a kernel upgrade".to_owned(),
                    dedupe_key: None,
                },
            };
            db::record_local(&tx, &origin, name, &new, at).map_err(fail)?;
        }
        tx.commit().map_err(fail)?;
        let filter = EventFilter {
            limit: 100,
            ..EventFilter::default()
        };
        all.extend(db::query_events(&conn, &filter).map_err(fail)?);
    }
    Ok(all)
}

/// A database holding `events`, as a replica that took them by push.
pub fn database(events: &[Event]) -> Result<Connection, FuzzError> {
    let (mut conn, _) = db::open_in_memory(ME).map_err(fail)?;
    let tx = conn.transaction().map_err(fail)?;
    db::insert_replicated(&tx, events, 1_796_000_000_000).map_err(fail)?;
    tx.commit().map_err(fail)?;
    Ok(conn)
}

fn fail(error: impl std::fmt::Display) -> FuzzError {
    FuzzError::Seeds(error.to_string())
}

pub fn node_id(index: usize) -> NodeId {
    let ip = [127, 0, 90, 1 + index as u8];
    let mut services = [None; SERVICE_SLOTS];
    services[0] = Some(SocketAddr::from((ip, 7947)));
    services[1] = Some(SocketAddr::from(([10, 244, index as u8, 9], 7949)));
    NodeId::from(NodeIdentity {
        name: format!("node-{}", char::from(b'a' + index as u8)),
        addr: SocketAddr::from((ip, 7946)),
        incarnation: 1_796_000_000,
        meta: NodeMeta {
            role: if index == 0 {
                Role::ControlPlane
            } else {
                Role::Worker
            },
            services,
        },
    })
}

/// Four real gossip nodes join, gossip, spread pushed rows, suspect and
/// leave, in memory; every datagram to the receiver and every push-pull
/// state is kept, as the driver would seal it.
fn gossip(keyring: &Keyring, seeds: &mut Seeds) {
    let config = GossipConfig::default();
    let mut nodes: Vec<GossipNode> = (0..NODES)
        .map(|i| GossipNode::new(node_id(i), config.clone(), i as u64, Duration::ZERO))
        .collect();
    let receiver = nodes[0].identity().addr;
    for node in &mut nodes[1..] {
        node.join(receiver, Duration::ZERO);
    }
    let mut frame = Vec::new();
    for step in 0..600u64 {
        let now = Duration::from_millis(step * 50);
        if step % 40 == 5 {
            let origin = step as usize / 40 % seeds.events.len();
            let row = replicate::encode_push(&seeds.events[origin]);
            let _ = nodes[1 + step as usize % (NODES - 1)].spread_payload(
                format!("fuzz#{step}"),
                step,
                row,
                now,
            );
        }
        if step == 400 {
            nodes[NODES - 1].announce_leave(now);
        }
        if step == 430 {
            nodes[NODES - 1].leave(now);
        }
        for i in 0..NODES {
            nodes[i].handle_timers(now);
            for (to, plain) in nodes[i].take_outgoing() {
                if to == receiver && seeds.datagrams.len() < 400 {
                    seeds.datagrams.push(plain.clone());
                    seal(keyring, Purpose::Datagram, &plain, &mut frame);
                    if seeds.envelopes.len() < 64 {
                        seeds.envelopes.push(frame.clone());
                    }
                }
                // The leaver's packets go nowhere once it is gone.
                if (step < 430 || i != NODES - 1)
                    && let Some(peer) = nodes.iter_mut().find(|n| n.identity().addr == to)
                {
                    let _ = peer.handle_datagram(&plain, now);
                }
            }
            for request in nodes[i].take_push_pulls() {
                let stream = starling_gossip::fuzzing::push_pull_stream(keyring, &request.state);
                let mut sealed = stream[4..].to_vec();
                if let Ok(plain) = open(keyring, Purpose::PushPull, &mut sealed)
                    && seeds.push_pulls.len() < 100
                {
                    seeds.push_pulls.push(plain.to_vec());
                }
                if let Some(peer) = nodes.iter_mut().find(|n| n.identity().addr == request.peer) {
                    peer.apply_membership_state(request.state, now);
                    let answer = peer.membership_state();
                    nodes[i].apply_membership_state(answer, now);
                }
            }
            nodes[i].take_payloads();
            nodes[i].take_events();
        }
    }
}

/// Two real probers ping each other; their echoes, the report one of them
/// makes and the assignment an agent would answer with.
fn probe(keyring: &Keyring, seeds: &mut Seeds) {
    let (mut a, mut b) = probers();
    let mut frame = Vec::new();
    for step in 0..40u64 {
        let now = Duration::from_millis(step * 250);
        let wall = 1_796_000_000_000 + step * 250;
        for (_, ping) in b.tick(now, wall + 3) {
            seeds.echoes.push(ping.encode());
            if let Some(pong) = a.receive(ping, now, wall) {
                b.receive(pong, now + Duration::from_millis(2), wall + 3);
            }
        }
        for (_, ping) in a.tick(now, wall) {
            if let Some(pong) = b.receive(ping, now, wall + 3) {
                seeds.echoes.push(pong.encode());
                a.receive(pong, now + Duration::from_millis(1), wall);
            }
        }
        if step % 10 == 9 {
            let report = a.report(now);
            let sealed = starling_seal::seal_json(keyring, Purpose::ProbeReport, &report);
            seeds
                .reports
                .push(json_of(keyring, Purpose::ProbeReport, sealed));
        }
    }
    seeds.echoes.truncate(200);
    seal(keyring, Purpose::Echo, &seeds.echoes[0], &mut frame);
    seeds.envelopes.push(frame.clone());
    let candidates: Vec<ProbeTarget> = (0..6).map(target).collect();
    for (all_pairs, peers) in [(100, 10), (2, 2)] {
        let assignment = ProbeAssignment {
            targets: starling_health::overlay::targets(ME, &candidates, all_pairs, peers),
            interval_ms: 1000,
            window_ms: 120_000,
            report_interval_ms: 5000,
        };
        let sealed = starling_seal::seal_json(keyring, Purpose::ProbeAssignment, &assignment);
        seeds.envelopes.push(sealed.clone());
        seeds
            .assignments
            .push(json_of(keyring, Purpose::ProbeAssignment, sealed));
    }
}

fn target(index: usize) -> ProbeTarget {
    let id = node_id(index);
    ProbeTarget {
        node: id.name.clone(),
        addr: id.meta.services[1].expect("every fuzz node has a probe"),
    }
}

pub const TIMING: WindowTiming = WindowTiming {
    window: Duration::from_secs(120),
    timeout: Duration::from_secs(1),
    max_offset_rtt: Duration::from_millis(100),
};

/// The receiver's prober (node-a) and its peer's (node-b), each targeting
/// the other and a third.
pub fn probers() -> (Prober, Prober) {
    let mut a = Prober::new(ME.to_owned(), target(0).addr, TIMING);
    a.set_targets(&[target(1), target(2)]);
    let mut b = Prober::new("node-b".to_owned(), target(1).addr, TIMING);
    b.set_targets(&[target(0), target(2)]);
    (a, b)
}

/// Sync requests as the puller makes them, and the answers a real store
/// gives through `answer_sync`.
fn sync(keyring: &Keyring, seeds: &mut Seeds) -> Result<(), FuzzError> {
    let conn = database(&seeds.events)?;
    let full = db::version_vector(&conn).map_err(fail)?;
    let mut vectors = vec![VersionVector::new(), full.clone()];
    let mut partial = full.clone();
    for through in partial.values_mut() {
        *through /= 2;
    }
    vectors.push(partial);
    for vector in &vectors {
        for sealed in replicate::sync_request_bodies(keyring, vector.clone()) {
            seeds.envelopes.push(sealed.clone());
            seeds
                .sync_requests
                .push(json_of(keyring, Purpose::SyncRequest, sealed));
        }
    }

    let dir = tempfile::tempdir().map_err(fail)?;
    let runtime = runtime()?;
    let replies: Result<Vec<Vec<u8>>, FuzzError> = runtime.block_on(async {
        let store = crate::history::open(&dir.path().join("seeds.db"), ME).map_err(fail)?;
        store
            .insert_replicated(seeds.events.clone())
            .await
            .map_err(fail)?;
        let metrics = starling_replicate::ReplicationMetrics::default();
        let mut replies = Vec::new();
        for vector in &vectors {
            for body in replicate::sync_request_bodies(keyring, vector.clone()) {
                let reply = starling_replicate::answer_sync(&store, keyring, &metrics, body.into())
                    .await
                    .map_err(fail)?;
                replies.push(reply);
            }
        }
        store.close().await;
        Ok(replies)
    });
    for sealed in replies? {
        seeds.envelopes.push(sealed.clone());
        seeds
            .sync_replies
            .push(json_of(keyring, Purpose::SyncReply, sealed));
    }
    Ok(())
}

/// `/v1/history` query strings as the CLI, the dashboard and people write
/// them.
fn queries() -> Vec<Vec<u8>> {
    let cursor = HistoryCursor {
        at_unix_ms: 1_796_000_003_000,
        origin: "node-b#0123456789abcdef".to_owned(),
        seq: 42,
    };
    [
        String::new(),
        "node=node-a".to_owned(),
        "kind=check&limit=50".to_owned(),
        "since=24h".to_owned(),
        "since=2026-11-23T10:00:00Z&until=1800000000000".to_owned(),
        "node=node-b&check=etcd&since=30m&limit=1000".to_owned(),
        format!("cursor={}", cursor.to_string().replace('#', "%23")),
        "kind=membership&until=7d".to_owned(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

/// A runtime on this thread, for the async parts of the receivers.
pub fn runtime() -> Result<tokio::runtime::Runtime, FuzzError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(fail)
}
