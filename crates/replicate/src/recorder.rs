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

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use starling_gossip::rendezvous;
use starling_gossip::{GossipHandle, MemberEvent, MemberState, NodeId, Transition};
use starling_history::{EventKind, NewEvent};

use super::publisher::Publisher;

/// How long the k-th ranked observer waits per rank for a better-ranked
/// one's record to arrive. Push delivers in well under a second; pull
/// within a few.
pub const DEFAULT_RECORD_GRACE: Duration = Duration::from_secs(3);

/// A record this node may have to make, unless someone else does first.
#[derive(Debug)]
struct Pending {
    due: Instant,
    event: NewEvent,
}

/// Records membership transitions until `shutdown`, then records our own
/// leave (before gossip announces it, so the row rides the leave).
pub(crate) async fn run(
    publisher: Publisher,
    gossip: GossipHandle,
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
    let mut pending: Vec<Pending> = Vec::new();
    tokio::pin!(shutdown);
    loop {
        let next_due = pending.iter().map(|p| p.due).min();
        let wait_due = async move {
            match next_due {
                Some(due) => tokio::time::sleep_until(due).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut shutdown => break,
            received = events.recv() => match received {
                Ok(event) => on_event(&publisher, &gossip, grace, event, &mut pending).await,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "membership events missed by the history recorder");
                }
                Err(RecvError::Closed) => break,
            },
            () = wait_due => {
                let now = Instant::now();
                let (due, later): (Vec<_>, Vec<_>) =
                    pending.drain(..).partition(|p| p.due <= now);
                pending = later;
                for Pending { event, .. } in due {
                    record_unless_known(&publisher, event).await;
                }
            }
        }
    }
    let me = gossip.view.borrow().me.clone();
    record(
        &publisher,
        own_event(&me, Transition::Left, starling_model::unix_ms_now()),
    )
    .await;
}

async fn on_event(
    publisher: &Publisher,
    gossip: &GossipHandle,
    grace: Duration,
    event: MemberEvent,
    pending: &mut Vec<Pending>,
) {
    let view = Arc::clone(&gossip.view.borrow());
    let is_me = event.member.name == view.me.name && event.member.addr == view.me.addr;
    if is_me {
        if event.transition == Transition::Rejoined {
            record(
                publisher,
                own_event(&event.member, Transition::Rejoined, event.at_unix_ms),
            )
            .await;
        }
        return;
    }
    // Joins and renewals are recorded by their subject; suspicion and its
    // refutation are per-observer judgements, too many and too local for
    // a cluster-wide log (alerting watches them live instead).
    let head_start = match event.transition {
        Transition::Failed => 0,
        Transition::Left => 1,
        _ => return,
    };
    let new = observed_event(&event);
    let key = new
        .dedupe_key
        .clone()
        .expect("observed events carry a dedupe key");
    let eligible = std::iter::once(view.me.name.as_str()).chain(
        view.members
            .iter()
            .filter(|m| m.state == MemberState::Alive && m.id.name != event.member.name)
            .map(|m| m.id.name.as_str()),
    );
    let rank = rendezvous::rank(&key, eligible)
        .iter()
        .position(|name| *name == view.me.name)
        .expect("this node is among the candidates it ranked");
    let waits = head_start + rank as u32;
    if waits == 0 {
        record_unless_known(publisher, new).await;
    } else {
        pending.push(Pending {
            due: Instant::now() + grace * waits,
            event: new,
        });
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
