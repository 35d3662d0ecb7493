//! The sans-IO gossip node: foca plus our scheduler, Lifeguard and member
//! table. No clock, no socket: the caller passes `now` (a monotonic
//! duration since an epoch of its choosing) and moves bytes. The tokio
//! driver and the deterministic simulation drive the very same code.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use foca::{Member, OwnedNotification, PostcardCodec, Runtime, State, Timer};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::broadcast::{Rumor, RumorHandler};
use super::config::GossipConfig;
use super::health::LocalHealth;
use super::identity::{NodeId, SERVICE_SLOTS};
use super::members::{MemberRecord, MemberState, MemberTable, MembershipEvent};
use super::scheduler::{Task, TimerQueue};
use super::suspicion::{Bounds, Suspicions, Verdict};

type Foca = foca::Foca<NodeId, PostcardCodec, StdRng, RumorHandler>;

/// Everything foca asked for during one call, drained right after it.
#[derive(Debug, Default)]
struct Effects {
    sends: Vec<(SocketAddr, Vec<u8>)>,
    /// foca's incarnation for our identity, as of the last datagram sent.
    own_incarnation: foca::Incarnation,
    timers: Vec<(Timer<NodeId>, Duration)>,
    notifications: Vec<OwnedNotification<NodeId>>,
}

impl Runtime<NodeId> for Effects {
    fn notify(&mut self, notification: foca::Notification<'_, NodeId>) {
        match notification {
            // foca keeps its own incarnation private; every header we send
            // carries it, and push-pull must advertise it (a refutation).
            foca::Notification::DataSent(header) => self.own_incarnation = header.src_incarnation,
            // Emitted for every datagram: far too hot to copy, and unused.
            foca::Notification::DataReceived(_) => {}
            other => self.notifications.push(other.to_owned()),
        }
    }

    fn send_to(&mut self, to: NodeId, data: &[u8]) {
        self.sends.push((to.addr, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<NodeId>, after: Duration) {
        self.timers.push((event, after));
    }
}

/// Counters the driver exports as metrics and the simulation asserts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub probes_failed: u64,
    /// Turns in which our own timers fired late enough to mean we stalled.
    pub stalls: u64,
    /// Down declarations this node made itself (not learned by gossip).
    pub declared_down: u64,
}

/// A state exchange the node asks its driver to make over TCP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushPull {
    pub peer: SocketAddr,
    /// What to push; the peer answers with its full state.
    pub state: Vec<Member<NodeId>>,
    /// Send the state's fingerprint first, and the state only if the
    /// peer's differs: the periodic exchange, O(1) while views agree.
    pub digest_first: bool,
}

/// Push-pulls decided during a turn, materialised on `take_push_pulls`.
#[derive(Debug)]
enum PendingPushPull {
    /// Our full membership: joins.
    Full(SocketAddr),
    /// The periodic anti-entropy: the fingerprint first.
    Periodic(SocketAddr),
    /// Only the peer's own suspect entry: Lifeguard's "buddy system".
    /// foca disseminates a suspicion to random members, and the suspect
    /// itself may be missed for longer than the suspicion lasts; told
    /// directly (and reliably, over TCP) it refutes at once.
    Notice(SocketAddr, Member<NodeId>),
}

/// Why a datagram was not accepted by foca.
pub type DatagramError = foca::Error;

#[derive(Debug)]
pub struct GossipNode {
    foca: Foca,
    effects: Effects,
    timers: TimerQueue,
    health: LocalHealth,
    suspicions: Suspicions,
    table: MemberTable,
    rumors: mpsc::Receiver<Rumor>,
    config: GossipConfig,
    /// The cluster size the current foca config was derived for.
    sized_for: usize,
    rng: StdRng,
    /// Push-pull starts fast and doubles up to the steady interval: after a
    /// mass cold start the first exchanges carry most of the roster.
    push_pull_delay: Duration,
    push_pulls: Vec<PendingPushPull>,
    stats: NodeStats,
    /// Set while a ProbeRandomMember timer is being handled, to tell a
    /// finished probe that succeeded from one that failed.
    probe_failed_in_turn: bool,
    /// We announced our departure; foca then reports itself defunct,
    /// which is expected rather than an error.
    leaving: bool,
    /// Upper layers' payloads received by gossip, until the driver takes
    /// them.
    payloads: Vec<Vec<u8>>,
}

impl GossipNode {
    pub fn new(identity: NodeId, config: GossipConfig, seed: u64, now: Duration) -> Self {
        let (handler, rumors) = RumorHandler::new();
        let foca = Foca::with_custom_broadcast(
            identity,
            config.foca_config(1),
            StdRng::seed_from_u64(seed),
            PostcardCodec,
            handler,
        );
        let mut node = GossipNode {
            foca,
            effects: Effects::default(),
            timers: TimerQueue::default(),
            health: LocalHealth::new(config.max_local_health),
            suspicions: Suspicions::default(),
            // Half the floor: a Down follows a suspicion by at least the
            // floor where it is declared, and rumors of both travel alike.
            table: MemberTable::new(config.suspicion_floor / 2),
            rumors,
            sized_for: 1,
            rng: StdRng::seed_from_u64(seed.wrapping_add(1)),
            push_pull_delay: config.probe_period * 4,
            push_pulls: Vec::new(),
            stats: NodeStats::default(),
            probe_failed_in_turn: false,
            leaving: false,
            payloads: Vec::new(),
            config,
        };
        node.timers
            .schedule(now, node.config.probe_period, Task::Housekeeping);
        let first_push_pull = node.jittered(node.push_pull_delay);
        node.timers.schedule(now, first_push_pull, Task::PushPull);
        node
    }

    pub fn identity(&self) -> &NodeId {
        self.foca.identity()
    }

    pub fn config(&self) -> &GossipConfig {
        &self.config
    }

    /// Other members as we last saw them (not including ourselves).
    pub fn members(&self) -> impl Iterator<Item = &MemberRecord> {
        self.table.iter()
    }

    pub fn member(&self, addr: &SocketAddr) -> Option<&MemberRecord> {
        self.table.get(addr)
    }

    /// See `MemberView::witnesses`.
    pub fn suspicion_witnesses(&self, id: &NodeId) -> u32 {
        self.suspicions.witness_count(id) as u32
    }

    pub fn local_health(&self) -> u32 {
        self.health.score()
    }

    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// Ask a seed to let us in, and fetch its full view.
    pub fn join(&mut self, seed: SocketAddr, now: Duration) {
        if let Err(error) = self.foca.announce(NodeId::seed(seed), &mut self.effects) {
            tracing::debug!(%seed, %error, "announce failed");
        }
        self.push_pulls.push(PendingPushPull::Full(seed));
        self.settle(now);
    }

    pub fn handle_datagram(&mut self, data: &[u8], now: Duration) -> Result<(), DatagramError> {
        let result = self.foca.handle_data(data, &mut self.effects);
        // foca may have applied part of the packet before failing.
        self.settle(now);
        result
    }

    pub fn next_deadline(&self) -> Option<Duration> {
        self.timers.next_deadline()
    }

    /// Fire every timer due at `now`, in order.
    pub fn handle_timers(&mut self, now: Duration) {
        let stall_threshold = self.config.probe_rtt / 2;
        let mut stalled = false;
        while let Some(due) = self.timers.pop_due(now) {
            let late = now.saturating_sub(due.deadline);
            if late > stall_threshold && judges_others(&due.task) {
                // We were not running when this should have fired (CPU
                // starvation, a paused VM): whatever the peer did, it never
                // got a fair wait. Re-arm from now and count it against our
                // own health, so later timeouts stretch.
                if !stalled {
                    stalled = true;
                    self.stats.stalls += 1;
                    self.health.stalled();
                    tracing::warn!(
                        late_ms = late.as_millis() as u64,
                        local_health = self.health.score(),
                        "gossip timers fired late: this agent was starved (CPU, a pause); \
                         giving peers a fresh wait instead of suspecting them"
                    );
                }
                let delay = match due.task {
                    Task::SuspicionDue { .. } => self.config.probe_period,
                    _ => self.health.scale(due.delay),
                };
                self.timers.schedule(now, delay, due.task);
                continue;
            }
            self.fire(due.task, due.delay, now);
        }
    }

    /// The full membership state for a push-pull exchange, ourselves
    /// included so the peer learns of us even if no datagram got through.
    pub fn membership_state(&self) -> Vec<Member<NodeId>> {
        // With our current incarnation, so that the answer to a suspicion
        // notice is itself the refutation.
        let me = Member::new(
            self.identity().clone(),
            self.effects.own_incarnation,
            State::Alive,
        );
        std::iter::once(me)
            .chain(self.foca.iter_membership_state().cloned())
            .collect()
    }

    /// Merge a peer's full state from push-pull.
    pub fn apply_membership_state(&mut self, members: Vec<Member<NodeId>>, now: Duration) {
        if let Err(error) = self
            .foca
            .apply_many(members.into_iter(), true, &mut self.effects)
        {
            tracing::debug!(%error, "push-pull state partially applied");
        }
        self.settle(now);
    }

    /// First step of a graceful leave: tell the cluster we are about to
    /// go, before the Down update itself. A member that learns of our Down
    /// before this rumor would record a failure, so the rumor gets a head
    /// start (the driver waits a few gossip rounds before `leave`).
    pub fn announce_leave(&mut self, now: Duration) {
        self.leaving = true;
        self.spread(Rumor::Leaving {
            who: self.identity().clone(),
        });
        self.push_rumors(now);
    }

    /// Send pending rumors to a few members now.
    pub fn push_rumors(&mut self, now: Duration) {
        if let Err(error) = self.foca.broadcast(&mut self.effects) {
            tracing::debug!(%error, "rumor broadcast failed");
        }
        self.settle(now);
    }

    /// Spread an upper layer's payload to every member, starting now;
    /// (origin, seq) names it, so each member takes it once. Too large a
    /// payload is refused: it would not fit a datagram (the layer that
    /// spreads it has another way to deliver it).
    pub fn spread_payload(
        &mut self,
        origin: String,
        seq: u64,
        payload: Vec<u8>,
        now: Duration,
    ) -> Result<(), foca::Error> {
        let rumor = Rumor::Payload {
            origin,
            seq,
            payload,
        };
        self.foca.add_broadcast(&rumor.encode())?;
        self.push_rumors(now);
        Ok(())
    }

    /// Publish `addr` in service slot `slot` of this node's identity.
    ///
    /// foca has no metadata channel, so this is a new identity one
    /// incarnation up: members apply it as a rename of the same address
    /// (`MemberTable::renamed` tells it from a restart) and nobody sees the
    /// node go down. Returns whether the identity changed: `false` when the
    /// address is already published, the slot does not exist, or foca
    /// refused the change).
    pub fn set_service(&mut self, slot: usize, addr: Option<SocketAddr>, now: Duration) -> bool {
        let current = self.identity();
        if slot >= SERVICE_SLOTS || current.meta.services[slot] == addr {
            return false;
        }
        let mut next = current.clone();
        let fields = next.make_mut();
        fields.incarnation += 1;
        fields.meta.services[slot] = addr;
        let changed = match self.foca.change_identity(next, &mut self.effects) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, slot, "could not publish a service address");
                false
            }
        };
        self.settle(now);
        changed
    }

    /// Declare ourselves down (`announce_leave` first); the caller flushes
    /// the sends.
    pub fn leave(&mut self, now: Duration) {
        self.leaving = true;
        if let Err(error) = self.foca.leave_cluster(&mut self.effects) {
            tracing::debug!(%error, "leave announcement failed");
        }
        self.settle(now);
    }

    /// Push pending updates to a few members now (used after `leave`).
    pub fn gossip_now(&mut self, now: Duration) {
        if let Err(error) = self.foca.gossip(&mut self.effects) {
            tracing::debug!(%error, "gossip failed");
        }
        self.settle(now);
    }

    /// Datagrams to send: (destination, plaintext foca packet).
    pub fn take_outgoing(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.effects.sends)
    }

    /// Payloads members spread (our own included: foca hands every
    /// broadcast to its handler once).
    pub fn take_payloads(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.payloads)
    }

    pub fn take_events(&mut self) -> Vec<MembershipEvent> {
        self.table.take_events()
    }

    /// The exchanges the node wants made; merge each answer with
    /// `apply_membership_state`.
    pub fn take_push_pulls(&mut self) -> Vec<PushPull> {
        let pending = std::mem::take(&mut self.push_pulls);
        let mut full = None;
        pending
            .into_iter()
            .map(|request| match request {
                PendingPushPull::Full(peer) | PendingPushPull::Periodic(peer) => PushPull {
                    peer,
                    state: full.get_or_insert_with(|| self.membership_state()).clone(),
                    digest_first: matches!(request, PendingPushPull::Periodic(_)),
                },
                PendingPushPull::Notice(peer, entry) => PushPull {
                    peer,
                    state: vec![entry],
                    digest_first: false,
                },
            })
            .collect()
    }

    fn fire(&mut self, task: Task, delay: Duration, now: Duration) {
        match task {
            Task::Foca(timer) => {
                let is_probe_tick = matches!(timer, Timer::ProbeRandomMember(_));
                self.probe_failed_in_turn = false;
                if let Err(error) = self.foca.handle_timer(timer, &mut self.effects) {
                    tracing::debug!(%error, "foca timer failed");
                }
                self.settle(now);
                if is_probe_tick && !self.probe_failed_in_turn {
                    self.health.probe_succeeded();
                }
            }
            Task::SuspicionDue {
                subject,
                incarnation,
            } => match self
                .suspicions
                .verdict(&subject, incarnation, now, self.bounds())
            {
                Verdict::Fire(token) => {
                    // foca answers this timer with a TurnUndead to the member
                    // even when the suspicion was refuted meanwhile, and the
                    // healthy member then renews its identity. Only hand it
                    // over while the suspicion still stands.
                    let still_suspect = self.foca.iter_membership_state().any(|m| {
                        m.id() == &subject
                            && m.state() == State::Suspect
                            && m.incarnation() == incarnation
                    });
                    if !still_suspect {
                        return;
                    }
                    let addr = subject.addr;
                    let timer = Timer::ChangeSuspectToDown {
                        member_id: subject,
                        incarnation,
                        token,
                    };
                    if let Err(error) = self.foca.handle_timer(timer, &mut self.effects) {
                        tracing::debug!(%error, "suspicion timer failed");
                    }
                    self.settle(now);
                    if self
                        .table
                        .get(&addr)
                        .is_some_and(|record| record.state == MemberState::Down)
                    {
                        self.stats.declared_down += 1;
                    }
                }
                Verdict::Later(deadline) => self.timers.schedule_at(
                    deadline,
                    delay,
                    Task::SuspicionDue {
                        subject,
                        incarnation,
                    },
                ),
                Verdict::Gone => {}
            },
            Task::Housekeeping => {
                self.housekeeping(now);
                self.timers
                    .schedule(now, self.config.probe_period, Task::Housekeeping);
            }
            Task::PushPull => {
                let active: Vec<SocketAddr> =
                    self.foca.iter_members().map(|m| m.id().addr).collect();
                if !active.is_empty() {
                    let pick = active[self.rng.random_range(0..active.len())];
                    self.push_pulls.push(PendingPushPull::Periodic(pick));
                }
                let steady = self.config.push_pull_interval(self.cluster_size());
                self.push_pull_delay = (self.push_pull_delay * 2).min(steady);
                let next = self.jittered(self.push_pull_delay);
                self.timers.schedule(now, next, Task::PushPull);
            }
        }
    }

    /// Drain what foca produced: rumors into Lifeguard, notifications into
    /// the member table, timers into our queue (stretched or held back).
    fn settle(&mut self, now: Duration) {
        // Rumors first: a leaver's Down update and its Leaving rumor ride
        // the same packet, and the rumor decides how the Down is reported.
        while let Ok(rumor) = self.rumors.try_recv() {
            self.on_rumor(rumor, now);
        }
        loop {
            let notifications = std::mem::take(&mut self.effects.notifications);
            let timers = std::mem::take(&mut self.effects.timers);
            if notifications.is_empty() && timers.is_empty() {
                break;
            }
            for notification in notifications {
                self.on_notification(notification, now);
            }
            for (timer, after) in timers {
                self.on_timer_request(timer, after, now);
            }
        }
        while let Ok(rumor) = self.rumors.try_recv() {
            self.on_rumor(rumor, now);
        }
    }

    fn on_notification(&mut self, notification: OwnedNotification<NodeId>, now: Duration) {
        match notification {
            OwnedNotification::MemberUp(id) => self.table.up(&id, now),
            OwnedNotification::MemberDown(id) => self.table.down(&id, now),
            OwnedNotification::Rename(_, new) => self.table.renamed(&new, now),
            OwnedNotification::ProbeFailed(_, id) => {
                self.probe_failed_in_turn = true;
                self.stats.probes_failed += 1;
                self.health.probe_failed();
                self.table.observe(&id, true, now);
                let by = self.identity().addr;
                let entry = self
                    .foca
                    .iter_membership_state()
                    .find(|m| m.id() == &id && m.state() == State::Suspect)
                    .cloned();
                if let Some(entry) = entry {
                    self.push_pulls
                        .push(PendingPushPull::Notice(id.addr, entry));
                }
                self.spread(Rumor::Suspects { subject: id, by });
            }
            OwnedNotification::Active => tracing::info!("connected to the cluster"),
            OwnedNotification::Idle => tracing::info!("no other active member is known"),
            OwnedNotification::Rejoin(id) => {
                tracing::warn!(
                    incarnation = id.incarnation,
                    "the cluster declared us down; rejoined with a new incarnation"
                );
                self.table.renewed_self(&id, now);
            }
            OwnedNotification::Defunct if self.leaving => {}
            OwnedNotification::Defunct => {
                tracing::error!("declared down and unable to renew identity")
            }
            OwnedNotification::DataReceived(_) | OwnedNotification::DataSent(_) => {}
        }
    }

    fn on_timer_request(&mut self, timer: Timer<NodeId>, after: Duration, now: Duration) {
        match timer {
            Timer::ChangeSuspectToDown {
                member_id,
                incarnation,
                token,
            } => {
                let bounds = self.bounds();
                let deadline =
                    self.suspicions
                        .start(member_id.clone(), incarnation, token, now, bounds);
                self.timers.schedule_at(
                    deadline,
                    after,
                    Task::SuspicionDue {
                        subject: member_id,
                        incarnation,
                    },
                );
            }
            Timer::SendIndirectProbe { .. } | Timer::ProbeRandomMember(_) => {
                let stretched = self.health.scale(after);
                self.timers.schedule(now, stretched, Task::Foca(timer));
            }
            other => self.timers.schedule(now, after, Task::Foca(other)),
        }
    }

    fn on_rumor(&mut self, rumor: Rumor, now: Duration) {
        match rumor {
            Rumor::Suspects { subject, by } => {
                if by == self.identity().addr || subject == *self.identity() {
                    return;
                }
                let bounds = self.bounds();
                for (incarnation, deadline) in self.suspicions.witness(&subject, by, now, bounds) {
                    self.timers.schedule_at(
                        deadline,
                        Duration::ZERO,
                        Task::SuspicionDue {
                            subject: subject.clone(),
                            incarnation,
                        },
                    );
                }
            }
            Rumor::Leaving { who } => self.table.mark_leaving(&who, now),
            Rumor::Payload { payload, .. } => self.payloads.push(payload),
        }
    }

    fn housekeeping(&mut self, now: Duration) {
        // foca does not notify Alive ⇄ Suspect; read it off its state.
        // Every probe period over every member, by reference. A member
        // needs a lookup only when foca suspects it or when ours may (we
        // suspected someone before this pass): at idle the pass is a scan,
        // which is what lets the simulation run 5,000 nodes.
        let table = &mut self.table;
        let ours = table.has_suspects();
        for member in self
            .foca
            .iter_membership_state()
            .filter(|m| m.state() != State::Down)
        {
            let suspect = member.state() == State::Suspect;
            if suspect || ours {
                table.observe(member.id(), suspect, now);
            }
        }
        // foca forgets long-down members (`remove_down_after`); follow it.
        if self.foca.iter_membership_state().len() < self.table.len() {
            let known: std::collections::HashSet<SocketAddr> = self
                .foca
                .iter_membership_state()
                .map(|m| m.id().addr)
                .collect();
            self.table.retain(|addr| known.contains(addr));
        }

        let size = self.cluster_size();
        // Resize on a 25% change: config only moves with log(n).
        if size * 4 > self.sized_for * 5 || size * 5 < self.sized_for * 4 {
            match self.foca.set_config(self.config.foca_config(size)) {
                Ok(()) => self.sized_for = size,
                Err(error) => tracing::warn!(%error, "could not resize gossip config"),
            }
        }
        let (_, max) = self.config.suspicion_bounds(size);
        self.suspicions.prune(now, max);
    }

    fn spread(&mut self, rumor: Rumor) {
        if let Err(error) = self.foca.add_broadcast(&rumor.encode()) {
            tracing::debug!(%error, "could not queue rumor");
        }
    }

    fn bounds(&self) -> Bounds {
        let size = self.cluster_size();
        let (min, max) = self.config.suspicion_bounds(size);
        Bounds {
            min,
            max,
            expected: self.config.expected_confirmations(size),
        }
    }

    fn cluster_size(&self) -> usize {
        self.foca.num_members() + 1
    }

    /// ±25% so that members started together do not push-pull in lockstep.
    fn jittered(&mut self, interval: Duration) -> Duration {
        interval.mul_f64(self.rng.random_range(0.75..1.25))
    }
}

/// Timers whose firing can make us suspect or condemn another member.
fn judges_others(task: &Task) -> bool {
    matches!(
        task,
        Task::Foca(Timer::SendIndirectProbe { .. } | Timer::ProbeRandomMember(_))
            | Task::SuspicionDue { .. }
    )
}
