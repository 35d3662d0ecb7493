//! Lifeguard's dynamic suspicion: the more members independently suspect a
//! node, the sooner we declare it down.
//!
//! foca schedules `ChangeSuspectToDown` with a fixed delay, only on the
//! member whose probe failed. We give foca the *maximum* delay and fire
//! the timer ourselves at `started + timeout(witnesses)`, where witnesses
//! are other members whose own probes of the same identity failed (they
//! announce it with a rumor, see `broadcast.rs`). A lone suspicion — the
//! usual product of packet loss — waits the maximum and is refuted; a real
//! death is probed and confirmed by several members within a few periods.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use foca::{Incarnation, TimerToken};

use super::identity::NodeId;

/// The bounds the timeout moves between, for the current cluster size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    pub min: Duration,
    pub max: Duration,
    /// Witnesses needed to reach `min`.
    pub expected: usize,
}

impl Bounds {
    /// Lifeguard's formula: `max - (max - min) * log(C + 1) / log(K + 1)`.
    pub fn timeout(&self, witnesses: usize) -> Duration {
        if self.expected == 0 || witnesses >= self.expected {
            return self.min;
        }
        let fraction = ((witnesses + 1) as f64).ln() / ((self.expected + 1) as f64).ln();
        let span = self.max.saturating_sub(self.min);
        self.max
            .saturating_sub(span.mul_f64(fraction))
            .max(self.min)
    }
}

/// A `ChangeSuspectToDown` timer foca asked for and we hold back.
#[derive(Debug)]
struct Pending {
    started: Duration,
    token: TimerToken,
}

#[derive(Debug, Default)]
struct Witnesses {
    by: HashSet<SocketAddr>,
    last_seen: Duration,
}

/// What to do with a held suspicion timer now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Give it to foca, which declares the member down if the suspicion
    /// was not refuted meanwhile.
    Fire(TimerToken),
    /// Not yet; check again at this deadline.
    Later(Duration),
    /// Already fired through an earlier deadline.
    Gone,
}

#[derive(Debug, Default)]
pub(crate) struct Suspicions {
    pending: HashMap<(NodeId, Incarnation), Pending>,
    witnesses: HashMap<NodeId, Witnesses>,
}

impl Suspicions {
    /// foca started a suspicion timer; returns when it should fire.
    pub fn start(
        &mut self,
        subject: NodeId,
        incarnation: Incarnation,
        token: TimerToken,
        now: Duration,
        bounds: Bounds,
    ) -> Duration {
        let witnesses = self.witness_count(&subject);
        let started = self
            .pending
            .entry((subject, incarnation))
            .or_insert(Pending {
                started: now,
                token,
            })
            .started;
        started + bounds.timeout(witnesses)
    }

    /// Another member reports its probe of `subject` failed. Returns the
    /// new (earlier) deadlines of our pending timers for that subject.
    pub fn witness(
        &mut self,
        subject: &NodeId,
        by: SocketAddr,
        now: Duration,
        bounds: Bounds,
    ) -> Vec<(Incarnation, Duration)> {
        let entry = self.witnesses.entry(subject.clone()).or_default();
        entry.last_seen = now;
        if !entry.by.insert(by) {
            return Vec::new();
        }
        let count = entry.by.len();
        let mut deadlines: Vec<(Incarnation, Duration)> = self
            .pending
            .iter()
            .filter(|((id, _), _)| id == subject)
            .map(|((_, incarnation), pending)| {
                (*incarnation, pending.started + bounds.timeout(count))
            })
            .collect();
        // HashMap order is random per process; the simulation must not be.
        deadlines.sort_unstable();
        deadlines
    }

    pub fn verdict(
        &mut self,
        subject: &NodeId,
        incarnation: Incarnation,
        now: Duration,
        bounds: Bounds,
    ) -> Verdict {
        let key = (subject.clone(), incarnation);
        let Some(pending) = self.pending.get(&key) else {
            return Verdict::Gone;
        };
        let deadline = pending.started + bounds.timeout(self.witness_count(subject));
        if deadline > now {
            return Verdict::Later(deadline);
        }
        let token = pending.token;
        self.pending.remove(&key);
        Verdict::Fire(token)
    }

    /// Forget witnesses nobody repeated for `max_age`, so a member that
    /// refuted a suspicion long ago starts clean next time.
    pub fn prune(&mut self, now: Duration, max_age: Duration) {
        self.witnesses
            .retain(|_, witnesses| now.saturating_sub(witnesses.last_seen) <= max_age);
        // Pending timers older than twice the maximum were superseded by a
        // token change in foca and will never be asked about again.
        self.pending
            .retain(|_, pending| now.saturating_sub(pending.started) <= max_age * 2);
    }

    pub fn witness_count(&self, subject: &NodeId) -> usize {
        self.witnesses.get(subject).map_or(0, |w| w.by.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn bounds() -> Bounds {
        Bounds {
            min: s(1),
            max: s(6),
            expected: 3,
        }
    }

    fn subject() -> NodeId {
        NodeId::seed("127.0.0.9:7946".parse().expect("valid literal"))
    }

    fn witness_addr(n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, n], 7946))
    }

    #[test]
    fn timeout_shrinks_from_max_to_min_with_witnesses() {
        let b = bounds();
        assert_eq!(b.timeout(0), s(6));
        assert!(b.timeout(1) < s(6) && b.timeout(1) > b.timeout(2));
        assert_eq!(b.timeout(3), s(1));
        assert_eq!(b.timeout(30), s(1));
        let no_witness_possible = Bounds { expected: 0, ..b };
        assert_eq!(no_witness_possible.timeout(0), s(1));
    }

    #[test]
    fn lone_suspicion_waits_the_maximum() {
        let mut suspicions = Suspicions::default();
        let deadline = suspicions.start(subject(), 0, 7, s(10), bounds());
        assert_eq!(deadline, s(16));
        assert_eq!(
            suspicions.verdict(&subject(), 0, s(15), bounds()),
            Verdict::Later(s(16))
        );
        assert_eq!(
            suspicions.verdict(&subject(), 0, s(16), bounds()),
            Verdict::Fire(7)
        );
        assert_eq!(
            suspicions.verdict(&subject(), 0, s(17), bounds()),
            Verdict::Gone
        );
    }

    #[test]
    fn witnesses_pull_the_deadline_in_and_duplicates_do_not_count() {
        let mut suspicions = Suspicions::default();
        suspicions.start(subject(), 0, 1, s(10), bounds());
        let first = suspicions.witness(&subject(), witness_addr(1), s(10), bounds());
        assert_eq!(first.len(), 1);
        assert!(
            suspicions
                .witness(&subject(), witness_addr(1), s(10), bounds())
                .is_empty()
        );
        suspicions.witness(&subject(), witness_addr(2), s(11), bounds());
        let third = suspicions.witness(&subject(), witness_addr(3), s(11), bounds());
        assert_eq!(third, vec![(0, s(11))]);
        assert_eq!(
            suspicions.verdict(&subject(), 0, s(11), bounds()),
            Verdict::Fire(1)
        );
    }

    #[test]
    fn witnesses_heard_before_our_own_suspicion_count() {
        let mut suspicions = Suspicions::default();
        for n in 1..=3 {
            suspicions.witness(&subject(), witness_addr(n), s(9), bounds());
        }
        assert_eq!(suspicions.start(subject(), 0, 1, s(10), bounds()), s(11));
    }

    #[test]
    fn old_witnesses_are_forgotten() {
        let mut suspicions = Suspicions::default();
        suspicions.witness(&subject(), witness_addr(1), s(0), bounds());
        suspicions.prune(s(100), s(6));
        assert_eq!(suspicions.start(subject(), 1, 1, s(100), bounds()), s(106));
    }
}
