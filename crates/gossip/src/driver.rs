//! The gossip task: one `select!` loop that owns the `GossipNode` and
//! feeds it datagrams, timers, push-pull results and shutdown.
//!
//! Every turn is short — a slow turn makes *us* look dead to others — so
//! anything that waits (TCP push-pull, DNS) runs in its own task and comes
//! back as a `Command`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::bootstrap::{self, JoinTargets};
use super::handle::{Command, GossipHandle};
use super::members::MemberState;
use super::metrics::GossipMetrics;
use super::node::{GossipNode, PushPull};
use super::pushpull::{self, Trailer};
use super::view::{MemberEvent, MemberView, MembershipView};
use starling_seal::Keyring;
use starling_seal::{self as envelope, Purpose};

/// Large enough for any UDP datagram, so an oversize one is seen (and
/// counted) rather than silently truncated.
const RECV_BUFFER: usize = 65_536;
/// Datagrams read per wake-up before timers run. Reading what is queued
/// first matters after a stall: the acks we waited for are in the buffer.
const DRAIN_BATCH: usize = 256;
/// Concurrent push-pull exchanges we start or serve; more are skipped.
const MAX_PUSH_PULLS: usize = 4;
/// The view is republished at least this often, so `since` ages and
/// liveness stay fresh even when nothing changes.
const REPUBLISH: Duration = Duration::from_secs(1);
/// Gossip rounds the leave rumor travels before our Down update follows:
/// enough for it to reach most members first (it spreads epidemically).
const LEAVE_HEAD_START_ROUNDS: usize = 3;
/// Buffered membership events per subscriber before the slowest lags.
const EVENT_BUFFER: usize = 1024;
/// Buffered payloads received by gossip before the slowest subscriber
/// lags; a lagging reader loses them (the layer above must repair that).
const PAYLOAD_BUFFER: usize = 4096;
/// Commands queued into the loop before senders wait.
const COMMAND_BUFFER: usize = 256;

/// The UDP socket and TCP listener, bound to the same address and port.
#[derive(Debug)]
pub struct GossipSockets {
    udp: UdpSocket,
    tcp: TcpListener,
}

impl GossipSockets {
    /// Port 0 picks a free port for UDP and binds TCP to the same one.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let mut last_error = None;
        for _ in 0..16 {
            let udp = UdpSocket::bind(addr).await?;
            let bound = udp.local_addr()?;
            match TcpListener::bind(bound).await {
                Ok(tcp) => return Ok(GossipSockets { udp, tcp }),
                // Only retry when the port was our pick, not the operator's.
                Err(error) if addr.port() == 0 => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.expect("the loop ran and failed at least once"))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// The address our outgoing push-pull connections come from: the one
    /// bound, unless it is the wildcard (then the kernel picks, as for UDP).
    fn source_ip(&self) -> Option<IpAddr> {
        self.local_addr()
            .ok()
            .map(|addr| addr.ip())
            .filter(|ip| !ip.is_unspecified())
    }
}

/// Monotonic time for the node, wall time for people.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
    wall_start: SystemTime,
}

impl Clock {
    fn new() -> Self {
        Clock {
            start: Instant::now(),
            wall_start: SystemTime::now(),
        }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn instant(&self, at: Duration) -> Instant {
        self.start + at
    }

    fn unix_ms(&self, at: Duration) -> u64 {
        (self.wall_start + at)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

#[derive(Debug)]
pub struct Gossip {
    sockets: GossipSockets,
    node: GossipNode,
    keyring: Arc<Keyring>,
    metrics: GossipMetrics,
    join: JoinTargets,
    view: watch::Sender<Arc<MembershipView>>,
    events: broadcast::Sender<MemberEvent>,
    payloads: broadcast::Sender<Arc<[u8]>>,
    commands: mpsc::Sender<Command>,
    inbox: mpsc::Receiver<Command>,
    push_pulls_in_flight: Arc<AtomicUsize>,
    seal_buffer: Vec<u8>,
    /// Started with the node, so every timestamp shares one origin.
    clock: Clock,
}

impl Gossip {
    pub fn new(
        sockets: GossipSockets,
        node: GossipNode,
        keyring: Arc<Keyring>,
        metrics: GossipMetrics,
        join: JoinTargets,
    ) -> (Gossip, GossipHandle) {
        let clock = Clock::new();
        let started_unix_ms = clock.unix_ms(Duration::ZERO);
        let initial = MembershipView {
            me: node.identity().clone(),
            members: Vec::new(),
            local_health: 0,
            connected: false,
            published_unix_ms: started_unix_ms,
            started_unix_ms,
        };
        let (view, view_rx) = watch::channel(Arc::new(initial));
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (payloads, _) = broadcast::channel(PAYLOAD_BUFFER);
        let (commands, inbox) = mpsc::channel(COMMAND_BUFFER);
        let handle = GossipHandle {
            view: view_rx,
            events: events.clone(),
            payloads: payloads.clone(),
            commands: commands.clone(),
        };
        let gossip = Gossip {
            sockets,
            node,
            keyring,
            metrics,
            join,
            view,
            events,
            payloads,
            commands,
            inbox,
            push_pulls_in_flight: Arc::new(AtomicUsize::new(0)),
            seal_buffer: Vec::with_capacity(RECV_BUFFER),
            clock,
        };
        (gossip, handle)
    }

    /// Run until `shutdown` completes, then leave the cluster gracefully.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let clock = self.clock;
        let commands = self.commands.clone();
        let me = self.node.identity().addr;
        let bootstrap = tokio::spawn(bootstrap::run(
            self.join.clone(),
            me,
            commands.clone(),
            self.view.subscribe(),
        ));
        let mut buffer = vec![0u8; RECV_BUFFER];
        let mut last_publish = Duration::ZERO;
        tokio::pin!(shutdown);
        loop {
            self.after_turn(&clock, &commands, &mut last_publish);
            let deadline = self.node.next_deadline().map(|at| clock.instant(at));
            let timer = async move {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                received = self.sockets.udp.recv_from(&mut buffer) => {
                    match received {
                        Ok((len, _from)) => self.on_datagram(&mut buffer[..len], clock.now()),
                        Err(error) => tracing::debug!(%error, "gossip recv failed"),
                    }
                    self.drain_socket(&mut buffer, &clock);
                }
                accepted = self.sockets.tcp.accept() => match accepted {
                    Ok((stream, peer)) => self.serve_push_pull(stream, peer, &commands),
                    Err(error) => tracing::warn!(%error, "push-pull accept failed"),
                },
                Some(command) = self.inbox.recv() => self.on_command(command, clock.now()),
                () = timer => self.drain_socket(&mut buffer, &clock),
            }
            self.node.handle_timers(clock.now());
        }
        bootstrap.abort();
        self.leave(&clock, &commands).await;
    }

    fn on_datagram(&mut self, datagram: &mut [u8], now: Duration) {
        self.metrics.bytes_received.inc_by(datagram.len() as u64);
        match receive_datagram(&mut self.node, &self.keyring, datagram, now) {
            Ok(()) => {
                self.metrics.datagrams_received.inc();
            }
            Err(reason) => self.metrics.dropped(reason),
        }
    }

    fn drain_socket(&mut self, buffer: &mut [u8], clock: &Clock) {
        for _ in 0..DRAIN_BATCH {
            match self.sockets.udp.try_recv_from(buffer) {
                Ok((len, _from)) => self.on_datagram(&mut buffer[..len], clock.now()),
                Err(_) => return,
            }
        }
    }

    fn on_command(&mut self, command: Command, now: Duration) {
        match command {
            Command::Join(seeds) => {
                for seed in seeds {
                    self.node.join(seed, now);
                }
            }
            Command::Serve { theirs, reply } => {
                self.node.apply_membership_state(theirs, now);
                // The peer may have hung up; nothing to do then.
                let _ = reply.send(self.node.membership_state());
            }
            Command::Merge(theirs) => self.node.apply_membership_state(theirs, now),
            Command::SetService { slot, addr } => {
                if self.node.set_service(slot, Some(addr), now) {
                    tracing::info!(slot, %addr, "published a service address");
                    // `me` changed: republish without waiting.
                    self.publish(&self.clock, now);
                }
            }
            Command::Spread {
                origin,
                seq,
                payload,
            } => {
                if let Err(error) = self.node.spread_payload(origin, seq, payload, now) {
                    tracing::debug!(%error, "payload not spread by gossip");
                }
            }
        }
    }

    /// Send what the node produced, start requested exchanges, publish.
    fn after_turn(
        &mut self,
        clock: &Clock,
        commands: &mpsc::Sender<Command>,
        last_publish: &mut Duration,
    ) {
        for (to, plain) in self.node.take_outgoing() {
            envelope::seal(
                &self.keyring,
                Purpose::Datagram,
                &plain,
                &mut self.seal_buffer,
            );
            // Never wait on a full socket buffer inside the loop: SWIM
            // tolerates a lost datagram, not a stalled member.
            match self.sockets.udp.try_send_to(&self.seal_buffer, to) {
                Ok(sent) => {
                    self.metrics.bytes_sent.inc_by(sent as u64);
                }
                Err(error) => tracing::debug!(%to, %error, "gossip send failed"),
            }
        }
        for payload in self.node.take_payloads() {
            // No subscriber: nothing above gossip listens (tests).
            let _ = self.payloads.send(payload.into());
        }
        for request in self.node.take_push_pulls() {
            self.start_push_pull(request, commands);
        }
        let events = self.node.take_events();
        for event in &events {
            let member = &event.member;
            tracing::info!(
                event = event.transition.as_str(),
                member = %member.name,
                addr = %member.addr,
                incarnation = member.incarnation,
                "membership"
            );
            self.metrics.transition(event.transition);
            // No subscriber is fine: nobody is listening yet.
            let _ = self.events.send(MemberEvent {
                member: member.clone(),
                transition: event.transition,
                at_unix_ms: clock.unix_ms(event.at),
                suspected_before_down: event.suspected_before_down,
            });
        }
        let now = clock.now();
        if !events.is_empty() || now.saturating_sub(*last_publish) >= REPUBLISH {
            *last_publish = now;
            self.publish(clock, now);
        }
    }

    fn publish(&self, clock: &Clock, now: Duration) {
        let members: Vec<MemberView> = self
            .node
            .members()
            .map(|record| MemberView {
                id: record.id.clone(),
                state: record.state,
                since_unix_ms: clock.unix_ms(record.since),
                witnesses: self.node.suspicion_witnesses(&record.id),
                suspected_before_down: record.suspected_before_down,
            })
            .collect();
        let mut counts = [
            (MemberState::Alive, 0),
            (MemberState::Suspect, 0),
            (MemberState::Down, 0),
            (MemberState::Left, 0),
        ];
        for member in &members {
            if let Some((_, count)) = counts.iter_mut().find(|(state, _)| *state == member.state) {
                *count += 1;
            }
        }
        self.metrics
            .observe(self.node.stats(), &counts, self.node.local_health());
        let connected = members.iter().any(|m| m.state.is_active());
        self.view.send_replace(Arc::new(MembershipView {
            me: self.node.identity().clone(),
            members,
            local_health: self.node.local_health(),
            connected,
            published_unix_ms: clock.unix_ms(now),
            started_unix_ms: clock.unix_ms(Duration::ZERO),
        }));
    }

    fn start_push_pull(&self, request: PushPull, commands: &mpsc::Sender<Command>) {
        let PushPull {
            peer,
            state: ours,
            digest_first,
        } = request;
        let Some(slot) = PushPullSlot::take(&self.push_pulls_in_flight) else {
            tracing::debug!(%peer, "push-pull skipped: too many in flight");
            return;
        };
        let keyring = Arc::clone(&self.keyring);
        let metrics = self.metrics.clone();
        let commands = commands.clone();
        let source = self.sockets.source_ip();
        tokio::spawn(async move {
            let _slot = slot;
            match pushpull::exchange(peer, source, &keyring, &ours, digest_first).await {
                Ok(exchanged) => {
                    metrics.bytes_sent.inc_by(exchanged.sent as u64);
                    metrics.bytes_received.inc_by(exchanged.received as u64);
                    metrics.push_pull(if exchanged.in_sync { "in_sync" } else { "ok" });
                    if !exchanged.theirs.is_empty() {
                        let _ = commands.send(Command::Merge(exchanged.theirs)).await;
                    }
                }
                Err(error) => {
                    metrics.push_pull("error");
                    tracing::debug!(%peer, %error, "push-pull failed");
                }
            }
        });
    }

    fn serve_push_pull(
        &self,
        mut stream: tokio::net::TcpStream,
        peer: SocketAddr,
        commands: &mpsc::Sender<Command>,
    ) {
        let Some(slot) = PushPullSlot::take(&self.push_pulls_in_flight) else {
            tracing::debug!(%peer, "push-pull refused: too many in flight");
            return;
        };
        let keyring = Arc::clone(&self.keyring);
        let metrics = self.metrics.clone();
        let commands = commands.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let (theirs, trailer) =
                match pushpull::timed(pushpull::read_state(&mut stream, &keyring)).await {
                    Ok(Ok((theirs, trailer, received))) => {
                        metrics.bytes_received.inc_by(received as u64);
                        (theirs, trailer)
                    }
                    Ok(Err(error)) => {
                        metrics.dropped(error.reason());
                        tracing::debug!(%peer, %error, "push-pull request refused");
                        return;
                    }
                    Err(error) => {
                        metrics.dropped(error.reason());
                        return;
                    }
                };
            let (reply, ours) = oneshot::channel();
            if commands
                .send(Command::Serve { theirs, reply })
                .await
                .is_err()
            {
                return;
            }
            let Ok(ours) = ours.await else { return };
            let answer = match trailer {
                Some(Trailer::Fingerprint(sum)) if sum == pushpull::fingerprint(&ours) => {
                    Some(Trailer::Same)
                }
                Some(Trailer::Fingerprint(_)) => Some(Trailer::SendYours),
                _ => None,
            };
            let ours = if answer == Some(Trailer::Same) {
                &[][..]
            } else {
                &ours[..]
            };
            let written =
                pushpull::timed(pushpull::write_state(&mut stream, &keyring, ours, answer)).await;
            match written {
                Ok(Ok(sent)) => {
                    metrics.bytes_sent.inc_by(sent as u64);
                }
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "push-pull reply failed");
                    return;
                }
                Err(error) => {
                    tracing::debug!(%peer, %error, "push-pull reply failed");
                    return;
                }
            }
            if answer != Some(Trailer::SendYours) {
                return;
            }
            match pushpull::timed(pushpull::read_state(&mut stream, &keyring)).await {
                Ok(Ok((theirs, _, received))) => {
                    metrics.bytes_received.inc_by(received as u64);
                    let _ = commands.send(Command::Merge(theirs)).await;
                }
                Ok(Err(error)) => {
                    metrics.dropped(error.reason());
                    tracing::debug!(%peer, %error, "push-pull state refused");
                }
                Err(error) => metrics.dropped(error.reason()),
            }
        });
    }

    /// Tell the cluster we are leaving (the rumor first, with a head start
    /// of a few gossip rounds, then the Down update), repeating each so it
    /// survives a lost datagram.
    async fn leave(&mut self, clock: &Clock, commands: &mpsc::Sender<Command>) {
        // Payloads queued before the stop (an upper layer's record of our leave)
        // ride the leave's gossip rounds; nobody can pull them from us later.
        while let Ok(command) = self.inbox.try_recv() {
            if let command @ Command::Spread { .. } = command {
                self.on_command(command, clock.now());
            }
        }
        let mut last_publish = clock.now();
        self.node.announce_leave(clock.now());
        self.after_turn(clock, commands, &mut last_publish);
        for _ in 0..LEAVE_HEAD_START_ROUNDS {
            tokio::time::sleep(self.node.config().gossip_interval).await;
            self.node.push_rumors(clock.now());
            self.after_turn(clock, commands, &mut last_publish);
        }
        self.node.leave(clock.now());
        self.after_turn(clock, commands, &mut last_publish);
        for _ in 0..2 {
            tokio::time::sleep(self.node.config().gossip_interval).await;
            self.node.gossip_now(clock.now());
            self.after_turn(clock, commands, &mut last_publish);
        }
        tracing::info!("left the cluster");
    }
}

/// One received datagram into the node: refused unparsed if oversize or
/// if it does not open, else handed to foca. `Err` is the reason label of
/// the dropped-datagram metric. A free function so that the fuzzer
/// (`crate::fuzzing`) drives exactly this, without a socket.
pub(crate) fn receive_datagram(
    node: &mut GossipNode,
    keyring: &Keyring,
    datagram: &mut [u8],
    now: Duration,
) -> Result<(), &'static str> {
    if datagram.len() > node.config().max_packet_size + envelope::OVERHEAD {
        return Err("oversize");
    }
    let plain = match envelope::open(keyring, Purpose::Datagram, datagram) {
        Ok(plain) => plain,
        Err(error) => {
            // Never parsed: a datagram that does not open is noise or
            // an attack, and either way not ours to interpret.
            tracing::trace!(%error, "dropped gossip datagram");
            return Err(error.reason());
        }
    };
    match node.handle_datagram(plain, now) {
        Ok(()) => Ok(()),
        Err(error) => {
            tracing::debug!(%error, "foca rejected a sealed datagram");
            Err("rejected")
        }
    }
}

/// A counted slot for one push-pull exchange, released on drop.
#[derive(Debug)]
struct PushPullSlot(Arc<AtomicUsize>);

impl PushPullSlot {
    fn take(in_flight: &Arc<AtomicUsize>) -> Option<Self> {
        let previous = in_flight.fetch_add(1, Ordering::AcqRel);
        if previous >= MAX_PUSH_PULLS {
            in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(PushPullSlot(Arc::clone(in_flight)))
    }
}

impl Drop for PushPullSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
