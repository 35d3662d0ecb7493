//! The decoders that take bytes from the network, each driven through the
//! receiver's own entry point (the crates' hidden `fuzzing` modules, or
//! the public function the agent calls), with the state a long-running
//! receiver keeps: a gossip node, a prober, a judge, a database.
//!
//! Sealed inputs are mutated inside the envelope (a key holder, or an
//! `--insecure-gossip` cluster, can send any plaintext) and stamped and
//! sealed afresh, since a mutated ciphertext never gets past the tag; one
//! input in sixteen is then mutated as a frame as well.

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use rand::rngs::StdRng;
use rusqlite::Connection;
use starling_gossip::{GossipConfig, GossipNode};
use starling_history::{VersionVector, db};
use starling_model::unix_ms_now;
use starling_probe::Prober;
use starling_replicate::fuzzing as replicate;
use starling_seal::{Keyring, Purpose, STAMP_LEN, Stamp, open, seal};

use super::seeds::{self, Seeds};
use super::{FuzzError, Target, mutate};

/// How the plaintext of a sealed input is mutated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Postcard,
    Json,
}

/// A seed, mutated (one input in sixteen is left whole, so every run
/// shows the receiver still takes real traffic), stamped if the channel
/// is stamped, and sealed.
#[derive(Debug)]
struct Sealer {
    keyring: Keyring,
    purpose: Purpose,
    format: Format,
    seeds: Vec<Vec<u8>>,
    last_stamp: [u8; STAMP_LEN],
}

/// The most a receiver reads for each channel: the UDP maximum, the
/// push-pull frame limit, the HTTP body limits of the routes (1 MiB for
/// sync, health tables and windows, 4 MiB for streams, 16 KiB for annotations, 256 KiB for reports); the puller and the
/// probe read answers whole, capped here at the push-pull limit.
fn transport_limit(purpose: Purpose) -> usize {
    match purpose {
        Purpose::Datagram | Purpose::Echo => 65_507,
        Purpose::SyncRequest | Purpose::HealthRequest | Purpose::WindowRequest => 1 << 20,
        Purpose::StreamRequest => 4 << 20,
        Purpose::Annotation => 16 << 10,
        Purpose::ProbeReport => 256 << 10,
        Purpose::PushPull
        | Purpose::SyncReply
        | Purpose::ProbeAssignment
        | Purpose::StreamReply
        | Purpose::HealthReply
        | Purpose::WindowReply => 16 << 20,
    }
}

impl Sealer {
    fn new(purpose: Purpose, format: Format, seeds: &[Vec<u8>]) -> Self {
        Sealer {
            keyring: seeds::keyring(),
            purpose,
            format,
            seeds: seeds.to_vec(),
            last_stamp: [0; STAMP_LEN],
        }
    }

    fn plaintext(&mut self, rng: &mut StdRng) -> Vec<u8> {
        let mut plain = self.seeds[rng.random_range(0..self.seeds.len())].clone();
        if !rng.random_ratio(1, 16) {
            match self.format {
                Format::Postcard => mutate::bytes(rng, &mut plain, &self.seeds),
                Format::Json => mutate::json(rng, &mut plain, &self.seeds),
            }
        }
        if !Purpose::SEALED_JSON.contains(&self.purpose) {
            return plain;
        }
        let mut stamp = Stamp {
            sealed_at_unix_ms: unix_ms_now(),
            id: rng.random(),
        }
        .encode()
        .to_vec();
        match rng.random_range(0..64) {
            // A replay of the previous body's stamp.
            0 => stamp = self.last_stamp.to_vec(),
            // Stale, future, short, missing: the stamp's own edits.
            1..=4 => mutate::bytes(rng, &mut stamp, &[]),
            _ => {}
        }
        if let Ok(whole) = <[u8; STAMP_LEN]>::try_from(stamp.as_slice()) {
            self.last_stamp = whole;
        }
        stamp.extend_from_slice(&plain);
        stamp
    }

    fn input(&mut self, rng: &mut StdRng, out: &mut Vec<u8>) {
        let mut plain = self.plaintext(rng);
        // What a receiver would never read in full is cut as its transport
        // cuts it.
        plain.truncate(transport_limit(self.purpose) - starling_seal::OVERHEAD);
        seal(&self.keyring, self.purpose, &plain, out);
        if rng.random_ratio(1, 16) {
            mutate::bytes(rng, out, &[]);
        }
    }
}

/// Every network decoder, in the report's order.
pub fn all(seeds: &Seeds) -> Result<Vec<Box<dyn Target>>, FuzzError> {
    Ok(vec![
        Box::new(Envelope::new(seeds)),
        Box::new(GossipDatagram::new(seeds)),
        Box::new(PushPull::new(seeds)),
        Box::new(PushedRow::new(seeds)?),
        Box::new(SyncRequest::new(seeds)?),
        Box::new(SyncReply::new(seeds)?),
        Box::new(Annotation(Sealer::new(
            Purpose::Annotation,
            Format::Json,
            &seeds.annotations,
        ))),
        Box::new(EchoDatagram::new(seeds)),
        Box::new(ProbeReport::new(seeds)),
        Box::new(ProbeAssignment::new(seeds)),
        Box::new(super::query::HistoryQueryString::new(seeds)?),
    ])
}

/// `starling_seal::open` on whole frames of every channel, under a keyed
/// ring (each purpose tried) and an insecure one.
struct Envelope {
    keyed: Keyring,
    insecure: Keyring,
    seeds: Vec<Vec<u8>>,
    scratch: Vec<u8>,
}

const PURPOSES: [Purpose; 8] = [
    Purpose::Datagram,
    Purpose::PushPull,
    Purpose::SyncRequest,
    Purpose::SyncReply,
    Purpose::Annotation,
    Purpose::Echo,
    Purpose::ProbeReport,
    Purpose::ProbeAssignment,
];

impl Envelope {
    fn new(seeds: &Seeds) -> Self {
        Envelope {
            keyed: seeds::keyring(),
            insecure: Keyring::insecure(),
            seeds: seeds.envelopes.clone(),
            scratch: Vec::new(),
        }
    }
}

impl Target for Envelope {
    fn name(&self) -> &'static str {
        "envelope"
    }

    fn input(&mut self, rng: &mut StdRng, out: &mut Vec<u8>) {
        out.clone_from(&self.seeds[rng.random_range(0..self.seeds.len())]);
        if !rng.random_ratio(1, 16) {
            mutate::bytes(rng, out, &self.seeds);
        }
    }

    fn feed(&mut self, input: &[u8]) -> bool {
        let mut opened = false;
        for purpose in PURPOSES {
            self.scratch.clear();
            self.scratch.extend_from_slice(input);
            opened |= open(&self.keyed, purpose, &mut self.scratch).is_ok();
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(input);
        let _ = open(&self.insecure, Purpose::Datagram, &mut self.scratch);
        opened
    }
}

/// A fresh receiving node every this many inputs: hostile members pile up
/// in foca's table, which a real node would probe and expire.
const NODE_LIFETIME: u64 = 4096;

fn receiver() -> GossipNode {
    GossipNode::new(
        seeds::node_id(0),
        GossipConfig::default(),
        0,
        Duration::ZERO,
    )
}

/// What the driver does after each turn: timers, then every output taken
/// (pushed rows from payload rumors go to their own decoder, as the push
/// task would).
fn settle(node: &mut GossipNode, now: Duration) {
    node.handle_timers(now);
    node.take_outgoing();
    node.take_events();
    node.take_push_pulls();
    for payload in node.take_payloads() {
        let _ = replicate::decode_pushed(&payload);
    }
}

/// The gossip task's receive path: size check, envelope, foca's decode of
/// the packet and its rumors, and the node's reaction.
struct GossipDatagram {
    sealer: Sealer,
    node: GossipNode,
    inputs: u64,
}

impl GossipDatagram {
    fn new(seeds: &Seeds) -> Self {
        GossipDatagram {
            sealer: Sealer::new(Purpose::Datagram, Format::Postcard, &seeds.datagrams),
            node: receiver(),
            inputs: 0,
        }
    }
}

impl Target for GossipDatagram {
    fn name(&self) -> &'static str {
        "gossip-datagram"
    }

    fn input(&mut self, rng: &mut StdRng, out: &mut Vec<u8>) {
        self.sealer.input(rng, out);
    }

    fn feed(&mut self, input: &[u8]) -> bool {
        self.inputs += 1;
        if self.inputs.is_multiple_of(NODE_LIFETIME) {
            self.reset();
        }
        let now = Duration::from_millis(5 * (self.inputs % NODE_LIFETIME));
        let mut datagram = input.to_vec();
        let fed = starling_gossip::fuzzing::receive_datagram(
            &mut self.node,
            &self.sealer.keyring,
            &mut datagram,
            now,
        );
        settle(&mut self.node, now);
        fed.is_ok()
    }

    fn reset(&mut self) {
        self.node = receiver();
    }
}

/// The push-pull responder: the length-prefixed stream read, opened and
/// decoded, and the state merged into the node.
struct PushPull {
    sealer: Sealer,
    node: GossipNode,
    inputs: u64,
}

impl PushPull {
    fn new(seeds: &Seeds) -> Self {
        PushPull {
            sealer: Sealer::new(Purpose::PushPull, Format::Postcard, &seeds.push_pulls),
            node: receiver(),
            inputs: 0,
        }
    }
}

impl Target for PushPull {
    fn name(&self) -> &'static str {
        "push-pull"
    }

    fn input(&mut self, rng: &mut StdRng, out: &mut Vec<u8>) {
        let mut frame = Vec::new();
        self.sealer.input(rng, &mut frame);
        out.clear();
        out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        out.extend_from_slice(&frame);
        if rng.random_ratio(1, 8) {
            mutate::bytes(rng, out, &[]);
        }
    }

    fn feed(&mut self, input: &[u8]) -> bool {
        self.inputs += 1;
        if self.inputs.is_multiple_of(NODE_LIFETIME / 4) {
            self.reset();
        }
        let now = Duration::from_millis(20 * (self.inputs % NODE_LIFETIME));
        let fed = starling_gossip::fuzzing::serve_push_pull(
            &mut self.node,
            &self.sealer.keyring,
            input,
            now,
        );
        settle(&mut self.node, now);
        fed.is_ok()
    }

    fn reset(&mut self) {
        self.node = receiver();
    }
}

/// A fresh database every this many inputs, so hostile rows do not
/// accumulate for millions of inputs.
const DATABASE_LIFETIME: u64 = 4096;

/// A pushed row as the push task takes it from a rumor: decoded, then
/// stored with `insert_replicated`.
struct PushedRow {
    seeds: Vec<Vec<u8>>,
    conn: Connection,
    inputs: u64,
}

impl PushedRow {
    fn new(seeds: &Seeds) -> Result<Self, FuzzError> {
        Ok(PushedRow {
            seeds: seeds.pushed_rows.clone(),
            conn: seeds::database(&[])?,
            inputs: 0,
        })
    }
}

impl Target for PushedRow {
    fn name(&self) -> &'static str {
        "pushed-row"
    }

    fn input(&mut self, rng: &mut StdRng, out: &mut Vec<u8>) {
        out.clone_from(&self.seeds[rng.random_range(0..self.seeds.len())]);
        if !rng.random_ratio(1, 16) {
            mutate::bytes(rng, out, &self.seeds);
        }
    }

    fn feed(&mut self, input: &[u8]) -> bool {
        self.inputs += 1;
        if self.inputs.is_multiple_of(DATABASE_LIFETIME) {
            self.reset();
        }
        let Ok(pushed) = replicate::decode_pushed(input) else {
            return false;
        };
        let Some(event) = pushed else {
            // A held result: the push task keeps it in memory, no store.
            return true;
        };
        if let Ok(tx) = self.conn.transaction() {
            let _ = starling_history::db::insert_replicated(&tx, &[event], unix_ms_now());
            let _ = tx.commit();
        }
        true
    }

    fn reset(&mut self) {
        if let Ok(conn) = seeds::database(&[]) {
            self.conn = conn;
        }
    }
}

/// `POST /v1/sync` on the server: the request read, then `missing_for`
/// answered from a database of three origins.
struct SyncRequest {
    sealer: Sealer,
    conn: Connection,
    /// The database's vector, which fingerprints are compared with.
    ours: VersionVector,
}

impl SyncRequest {
    fn new(seeds: &Seeds) -> Result<Self, FuzzError> {
        let conn = seeds::database(&seeds.events)?;
        Ok(SyncRequest {
            sealer: Sealer::new(Purpose::SyncRequest, Format::Json, &seeds.sync_requests),
            ours: db::version_vector(&conn).map_err(|e| FuzzError::Seeds(e.to_string()))?,
            conn,
        })
    }
}

impl Target for SyncRequest {
    fn name(&self) -> &'static str {
        "sync-request"
    }

    fn input(&mut self, rng: &mut StdRng, out: &mut Vec<u8>) {
        self.sealer.input(rng, out);
    }

    fn feed(&mut self, input: &[u8]) -> bool {
        match replicate::read_sync_request(&self.sealer.keyring, input, &self.ours) {
            Ok(Some((vector, max_rows, only))) => {
                let _ = match &only {
                    Some(only) => db::missing_in(&self.conn, &vector, max_rows, only),
                    None => db::missing_for(&self.conn, &vector, max_rows),
                };
                true
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }
}

/// The puller's side: a sync answer read, then applied with `apply_batch`.
struct SyncReply {
    sealer: Sealer,
    conn: Connection,
    inputs: u64,
}

impl SyncReply {
    fn new(seeds: &Seeds) -> Result<Self, FuzzError> {
        Ok(SyncReply {
            sealer: Sealer::new(Purpose::SyncReply, Format::Json, &seeds.sync_replies),
            conn: seeds::database(&[])?,
            inputs: 0,
        })
    }
}

impl Target for SyncReply {
    fn name(&self) -> &'static str {
        "sync-reply"
    }

    fn input(&mut self, rng: &mut StdRng, out: &mut Vec<u8>) {
        self.sealer.input(rng, out);
    }

    fn feed(&mut self, input: &[u8]) -> bool {
        self.inputs += 1;
        if self.inputs.is_multiple_of(DATABASE_LIFETIME) {
            self.reset();
        }
        let Ok(batch) = replicate::read_sync_reply(&self.sealer.keyring, input.to_vec()) else {
            return false;
        };
        if let Ok(tx) = self.conn.transaction() {
            let _ = starling_history::db::apply_batch(&tx, &batch, unix_ms_now());
            let _ = tx.commit();
        }
        true
    }

    fn reset(&mut self) {
        if let Ok(conn) = seeds::database(&[]) {
            self.conn = conn;
        }
    }
}

/// `POST /v1/events`: the annotation read, up to the record.
struct Annotation(Sealer);

impl Target for Annotation {
    fn name(&self) -> &'static str {
        "annotation"
    }

    fn input(&mut self, rng: &mut StdRng, out: &mut Vec<u8>) {
        self.0.input(rng, out);
    }

    fn feed(&mut self, input: &[u8]) -> bool {
        replicate::read_annotation(&self.0.keyring, input, seeds::ME).is_ok()
    }
}

/// The probe's echo socket: opened, decoded, answered by a prober that
/// pings two peers and reports now and then.
struct EchoDatagram {
    sealer: Sealer,
    prober: Prober,
    inputs: u64,
}

impl EchoDatagram {
    fn new(seeds: &Seeds) -> Self {
        EchoDatagram {
            sealer: Sealer::new(Purpose::Echo, Format::Postcard, &seeds.echoes),
            prober: seeds::probers().0,
            inputs: 0,
        }
    }
}

impl Target for EchoDatagram {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn input(&mut self, rng: &mut StdRng, out: &mut Vec<u8>) {
        self.sealer.input(rng, out);
    }

    fn feed(&mut self, input: &[u8]) -> bool {
        self.inputs += 1;
        let now = Duration::from_millis(self.inputs);
        let wall = 1_796_000_000_000 + self.inputs;
        if self.inputs.is_multiple_of(64) {
            self.prober.tick(now, wall);
        }
        if self.inputs.is_multiple_of(4096) {
            self.prober.report(now);
        }
        let mut datagram = input.to_vec();
        starling_probe::fuzzing::receive_echo(
            &self.sealer.keyring,
            &mut self.prober,
            &mut datagram,
            now,
            wall,
        )
        .is_ok()
    }

    fn reset(&mut self) {
        self.prober = seeds::probers().0;
    }
}

/// `POST /v1/overlay/report`: the report read, judged, and its metrics
/// set, up to the first write.
struct ProbeReport {
    sealer: Sealer,
    reader: starling_health::fuzzing::ReportReader,
}

impl ProbeReport {
    fn new(seeds: &Seeds) -> Self {
        ProbeReport {
            sealer: Sealer::new(Purpose::ProbeReport, Format::Json, &seeds.reports),
            reader: reader(),
        }
    }
}

fn reader() -> starling_health::fuzzing::ReportReader {
    starling_health::fuzzing::ReportReader::new(
        starling_health::overlay::OverlayConfig::default(),
        Arc::new(seeds::keyring()),
        seeds::ME.to_owned(),
    )
}

impl Target for ProbeReport {
    fn name(&self) -> &'static str {
        "probe-report"
    }

    fn input(&mut self, rng: &mut StdRng, out: &mut Vec<u8>) {
        self.sealer.input(rng, out);
    }

    fn feed(&mut self, input: &[u8]) -> bool {
        self.reader.read(input, unix_ms_now()).is_ok()
    }

    fn reset(&mut self) {
        self.reader = reader();
    }
}

/// The probe's reporter reading the agent's answer, and the prober taking
/// its targets.
struct ProbeAssignment {
    sealer: Sealer,
    prober: Prober,
}

impl ProbeAssignment {
    fn new(seeds: &Seeds) -> Self {
        ProbeAssignment {
            sealer: Sealer::new(Purpose::ProbeAssignment, Format::Json, &seeds.assignments),
            prober: seeds::probers().0,
        }
    }
}

impl Target for ProbeAssignment {
    fn name(&self) -> &'static str {
        "probe-assignment"
    }

    fn input(&mut self, rng: &mut StdRng, out: &mut Vec<u8>) {
        self.sealer.input(rng, out);
    }

    fn feed(&mut self, input: &[u8]) -> bool {
        match starling_probe::fuzzing::read_assignment(&self.sealer.keyring, input.to_vec()) {
            Ok(assignment) => {
                self.prober.set_targets(&assignment.targets);
                true
            }
            Err(_) => false,
        }
    }

    fn reset(&mut self) {
        self.prober = seeds::probers().0;
    }
}

/// Every decoder's name, for `--decoder`.
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = vec![
        "envelope",
        "gossip-datagram",
        "push-pull",
        "pushed-row",
        "sync-request",
        "sync-reply",
        "annotation",
        "echo",
        "probe-report",
        "probe-assignment",
        "history-query",
    ];
    names.push(super::history_file::NAME);
    names
}
