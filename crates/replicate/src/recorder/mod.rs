//! Membership transitions into the cluster's event log, each recorded
//! once for the cluster rather than once per observer.
//!
//! - A node records its own join, its renewal after a false Down, and its
//!   graceful leave: only it knows the first two for sure, and it is the
//!   natural single writer of all three.
//! - A Down cannot be recorded by its subject. Every survivor ranks the
//!   alive members for the event (rendezvous hash); the first records at
//!   once, the k-th waits k grace periods and records only if the event has
//!   not reached its database by then (the first died with it, or sits on
//!   the other side of a partition). A leave gets the same fallback, one
//!   grace period later, in case the leaver's own record was lost with it.
//!
//! Views can disagree for a moment, so two nodes may both record the same
//! fact; rows carry a dedupe key and the history shows one of them.
//!
//! A view is not a fact when its node is cut off: on the minority side of
//! a split, or with its own probes failing (Lifeguard's local health). Such
//! a node would record every healthy member down, and after the heal those
//! rows would replicate everywhere. So a Down is judged after a short
//! settle, and a cut-off node records one event about itself instead ("n3
//! lost contact with 4 of 4 members"); the majority records the facts. A
//! Down this node only heard of (it did not see the member suspect long
//! enough to hear a refutation) is dropped
//! if the member is back by the time it is judged: after a heal, the
//! cut-off side's Downs of healthy members arrive by gossip, and their
//! subjects renew at once. A Down declared while cut off is dropped even
//! when judged after the heal. A Down heard of only whose subject stays
//! down is a loss all the same: on the minority side of a split, the first
//! node to declare the other side down tells its partners before their own
//! probes get there.

mod cut_off;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use starling_gossip::{
    GossipHandle, MemberEvent, MemberState, MembershipView, NodeId, RESTART_STEP, Transition,
};
use starling_gossip::{Role, rendezvous};
use starling_history::{EventKind, NewEvent};
use tokio::sync::watch;

use super::Scope;
use super::publisher::Publisher;

use cut_off::{LOSS_SPAN_MS, cut_off, cut_off_event, in_doubt};

/// How long the k-th ranked observer waits per rank for a better-ranked
/// one's record to arrive. Push delivers in well under a second; pull
/// within a few.
pub const DEFAULT_RECORD_GRACE: Duration = Duration::from_secs(3);
/// How long a Down waits before it is judged: long enough for the view to
/// show whether more losses follow (an isolated node loses its peers a
/// probe or two apart), short next to the grace periods.
const DOWN_SETTLE: Duration = Duration::from_secs(2);
/// How often the cut-off is judged again while Downs wait to be judged:
/// Downs heard of only become losses by age alone, with no event to wake
/// the recorder.
const REJUDGE: Duration = Duration::from_millis(250);
/// The longest a Down waits for a view in doubt to settle.
const MAX_HOLD: Duration = Duration::from_secs(10);

/// A record this node may have to make, unless someone else does first.
#[derive(Debug)]
struct Pending {
    due: Instant,
    event: NewEvent,
    /// A Down from this node's view: recorded only if the view is a fact.
    judged: bool,
    /// This node saw the member suspect before the Down
    /// (`MemberEvent::suspected_before_down`). A Down heard of only is
    /// still recorded, unless the member is back by the time it is judged:
    /// then it was another node's view (a cut-off side's Downs arrive by
    /// gossip at the heal, and their subjects renew at once).
    suspected: bool,
    /// Some other member also failed to reach it (a suspicion witness)
    /// when it was declared down: not this node's view alone.
    corroborated: bool,
    /// The identity declared down.
    member: NodeId,
    /// When this node learned of the transition.
    noticed: Instant,
}

impl Pending {
    /// A Down waits while the view is in doubt: the next losses, or the
    /// renewals, decide whether this node was cut off (see
    /// `cut_off::in_doubt`).
    fn held(&self, in_doubt: bool, now: Instant) -> bool {
        self.judged && in_doubt && now < self.noticed + MAX_HOLD
    }
}

/// Records membership transitions until `shutdown`, then records our own
/// leave (before gossip announces it, so the row rides the leave).
pub(crate) async fn run(
    publisher: Publisher,
    gossip: GossipHandle,
    scope: watch::Receiver<Scope>,
    grace: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut events = gossip.subscribe();
    let me = gossip.view.borrow().me.clone();
    record(
        &publisher,
        own_event(&me, Transition::Joined, starling_model::unix_ms_now()),
    )
    .await;
    let mut recorder = Recorder {
        publisher,
        scope,
        grace,
        pending: Vec::new(),
        cut_off: None,
    };
    tokio::pin!(shutdown);
    loop {
        let next_due = recorder.next_wake(Instant::now());
        let wait_due = async move {
            match next_due {
                Some(due) => tokio::time::sleep_until(due).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut shutdown => break,
            received = events.recv() => match received {
                Ok(event) => {
                    let view = Arc::clone(&gossip.view.borrow());
                    recorder.on_event(&view, event).await;
                    // After the event is pending: a Down declared while
                    // cut off is dropped at once, and the episode begins.
                    recorder.judge_cut_off(&view).await;
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "membership events missed by the history recorder");
                }
                Err(RecvError::Closed) => break,
            },
            () = wait_due => {
                let view = Arc::clone(&gossip.view.borrow());
                recorder.record_due(&view).await;
            }
        }
    }
    let me = gossip.view.borrow().me.clone();
    record(
        &recorder.publisher,
        own_event(&me, Transition::Left, starling_model::unix_ms_now()),
    )
    .await;
}

/// The recorder's own memory: nothing in it is shared.
#[derive(Debug)]
struct Recorder {
    publisher: Publisher,
    /// Who ranks to record other members' transitions: every alive member
    /// in full replication, the aggregators alone in an aggregated cluster
    /// (an ordinary node there never sees the others' records, so every
    /// fallback rank would fire).
    scope: watch::Receiver<Scope>,
    grace: Duration,
    pending: Vec<Pending>,
    /// The current or last episode of being cut off: (began, ended) in
    /// Unix ms, `ended` open while it lasts. A Down this node declared
    /// within it is its view, even when judged after the heal.
    cut_off: Option<(u64, Option<u64>)>,
}

impl Recorder {
    /// The next record due, or sooner the next judgement of the cut-off
    /// while any Down waits to be judged.
    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let due = self.pending.iter().map(|p| p.due).min();
        let rejudge = self
            .pending
            .iter()
            .any(|p| p.judged)
            .then_some(now + REJUDGE);
        due.into_iter().chain(rejudge).min()
    }

    async fn on_event(&mut self, view: &MembershipView, event: MemberEvent) {
        let is_me = event.member.name == view.me.name && event.member.addr == view.me.addr;
        if is_me {
            if event.transition == Transition::Rejoined {
                let own = own_event(&event.member, Transition::Rejoined, event.at_unix_ms);
                record(&self.publisher, own).await;
            }
            return;
        }
        // Joins and renewals are recorded by their subject; suspicion and
        // its refutation are per-observer judgements, too many and too
        // local for a cluster-wide log (alerting watches them live).
        let head_start = match event.transition {
            Transition::Failed => 0,
            Transition::Left => {
                // A Down of the same identity waiting to be judged was the
                // leave, its rumor late: the leave is recorded, not a failure.
                let down = Some(dedupe_key(&event.member, Transition::Failed));
                self.pending.retain(|p| p.event.dedupe_key != down);
                1
            }
            _ => return,
        };
        let scope = *self.scope.borrow();
        if scope == Scope::OwnLog {
            return;
        }
        let new = observed_event(&event);
        let key = new
            .dedupe_key
            .clone()
            .expect("observed events carry a dedupe key");
        let eligible = std::iter::once(view.me.name.as_str()).chain(
            view.members
                .iter()
                .filter(|m| m.state == MemberState::Alive && m.id.name != event.member.name)
                .filter(|m| scope == Scope::Everyone || m.id.meta.role == Role::Aggregator)
                .map(|m| m.id.name.as_str()),
        );
        let rank = rendezvous::rank(&key, eligible)
            .iter()
            .position(|name| *name == view.me.name)
            .expect("this node is among the candidates it ranked");
        let judged = event.transition == Transition::Failed;
        let settle = if judged { DOWN_SETTLE } else { Duration::ZERO };
        let corroborated = view
            .members
            .iter()
            .any(|m| m.id.name == event.member.name && m.witnesses > 0);
        let now = Instant::now();
        self.pending.push(Pending {
            due: now + settle + self.grace * (head_start + rank as u32),
            event: new,
            judged,
            suspected: event.suspected_before_down,
            corroborated,
            member: event.member.clone(),
            noticed: now,
        });
    }

    async fn record_due(&mut self, view: &MembershipView) {
        self.judge_cut_off(view).await;
        let now = Instant::now();
        let in_doubt = in_doubt(view, starling_model::unix_ms_now());
        for pending in &mut self.pending {
            if pending.due <= now && pending.held(in_doubt, now) {
                pending.due = now + REJUDGE;
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|p| p.due <= now);
        self.pending = later;
        for pending in due {
            if pending.judged && !self.is_fact(&pending, view) {
                tracing::info!(node = %pending.event.node, "not recorded down: a view, not a fact");
                continue;
            }
            if pending.judged && self.left_instead(&pending).await {
                tracing::info!(node = %pending.event.node, "not recorded down: it left");
                continue;
            }
            record_unless_known(&self.publisher, pending.event).await;
        }
    }

    /// The member's own record of its leave reached us: the Down was the
    /// leave, its rumor missed here (a push-pull told us of the Down).
    async fn left_instead(&self, pending: &Pending) -> bool {
        self.publisher
            .store()
            .has_dedupe_key(dedupe_key(&pending.member, Transition::Left))
            .await
            .unwrap_or(false)
    }

    /// A Down stands unless this node declared it while cut off, or only
    /// heard of it and the member is already back under a new identity.
    fn is_fact(&self, pending: &Pending, view: &MembershipView) -> bool {
        let at = pending.event.at_unix_ms;
        if let Some((began, ended)) = self.cut_off
            && at + LOSS_SPAN_MS >= began
            && ended.is_none_or(|ended| at <= ended)
        {
            return false;
        }
        // Back under a new identity by now; by the same process (a
        // renewal, one step up) means it was never dead.
        let back = view.members.iter().find(|m| {
            m.id.name == pending.event.node
                && m.state.is_active()
                && m.id.incarnation > pending.member.incarnation
        });
        let renewed =
            back.is_some_and(|m| m.id.incarnation - pending.member.incarnation < RESTART_STEP);
        if renewed && !pending.corroborated {
            // Nobody else failed to reach it, and it refuted: this node
            // alone lost it (its own link, at the edge of a cut).
            return false;
        }
        pending.suspected || back.is_none()
    }

    /// When this node is cut off, the Downs it is waiting to judge are its
    /// view: dropped, and the episode recorded once in their place.
    async fn judge_cut_off(&mut self, view: &MembershipView) {
        let now_ms = starling_model::unix_ms_now();
        let Some(lost) = cut_off(view, now_ms) else {
            if let Some((_, ended @ None)) = &mut self.cut_off {
                *ended = Some(now_ms);
            }
            return;
        };
        let before = self.pending.len();
        self.pending.retain(|p| !p.judged);
        let dropped = before - self.pending.len();
        if dropped == 0 {
            // Nothing was about to be recorded from the view (a starved
            // node with a suspicion or two): nothing to set straight.
            return;
        }
        tracing::info!(
            dropped,
            "not recording Downs: this node is cut off from the cluster"
        );
        if !matches!(self.cut_off, Some((_, None))) {
            self.cut_off = Some((now_ms, None));
            record(&self.publisher, cut_off_event(view, &lost, now_ms)).await;
        }
    }
}

async fn record_unless_known(publisher: &Publisher, event: NewEvent) {
    let key = event
        .dedupe_key
        .clone()
        .expect("fallback records carry a dedupe key");
    match publisher.store().has_dedupe_key(key).await {
        Ok(true) => {}
        Ok(false) => record(publisher, event).await,
        Err(error) => tracing::warn!(%error, "cannot check the history; recording anyway"),
    }
}

async fn record(publisher: &Publisher, event: NewEvent) {
    if let Err(error) = publisher.record(event).await {
        tracing::error!(%error, "membership event not recorded");
    }
}

fn dedupe_key(member: &NodeId, transition: Transition) -> String {
    format!(
        "membership:{}:{}:{}",
        member.name,
        member.incarnation,
        transition.as_str()
    )
}

fn own_event(me: &NodeId, transition: Transition, at_unix_ms: u64) -> NewEvent {
    let (old, new, message) = match transition {
        Transition::Joined => (
            None,
            "alive",
            format!(
                "{} joined the cluster (gossip {}, incarnation {})",
                me.name, me.addr, me.incarnation
            ),
        ),
        Transition::Rejoined => (
            Some("down"),
            "alive",
            format!(
                "{} rejoined after the cluster declared it down (incarnation {})",
                me.name, me.incarnation
            ),
        ),
        _ => (
            Some("alive"),
            "left",
            format!("{} left the cluster", me.name),
        ),
    };
    NewEvent {
        at_unix_ms,
        kind: EventKind::Membership,
        node: me.name.clone(),
        check: None,
        old_state: old.map(str::to_owned),
        new_state: Some(new.to_owned()),
        message,
        dedupe_key: Some(dedupe_key(me, transition)),
    }
}

fn observed_event(event: &MemberEvent) -> NewEvent {
    let member = &event.member;
    let (new, message) = match event.transition {
        Transition::Left => ("left", format!("{} left the cluster", member.name)),
        _ => (
            "down",
            format!("{} ({}) was declared down", member.name, member.addr),
        ),
    };
    NewEvent {
        at_unix_ms: event.at_unix_ms,
        kind: EventKind::Membership,
        node: member.name.clone(),
        check: None,
        old_state: Some("alive".to_owned()),
        new_state: Some(new.to_owned()),
        message,
        dedupe_key: Some(dedupe_key(member, event.transition)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    /// Issue: on the small side of a 2/3 split, on a loaded machine, a
    /// node judged its first Down after the 2 s settle, before its
    /// stretched probes had lost the third member of the other side, and
    /// recorded a healthy node down.
    #[test]
    fn a_down_waits_while_our_own_probes_fail_but_not_forever() {
        let view = MembershipView::for_tests("n1", &[("n2", MemberState::Down)]);
        let down = MemberEvent {
            member: view.members[0].id.clone(),
            transition: Transition::Failed,
            at_unix_ms: NOW,
            suspected_before_down: true,
        };
        let noticed = Instant::now();
        let pending = |judged| Pending {
            due: noticed + DOWN_SETTLE,
            event: observed_event(&down),
            judged,
            suspected: true,
            corroborated: true,
            member: down.member.clone(),
            noticed,
        };
        let after_settle = noticed + DOWN_SETTLE;
        assert!(pending(true).held(true, after_settle));
        assert!(!pending(true).held(false, after_settle));
        assert!(!pending(true).held(true, noticed + MAX_HOLD));
        assert!(
            !pending(false).held(true, after_settle),
            "a leave is no view"
        );
    }
}
