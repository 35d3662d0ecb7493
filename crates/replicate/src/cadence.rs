//! When the pull loop pulls, and from whom. Sans-IO: the loop tells it what
//! happened and asks how long to wait and which peer is next.
//!
//! In a quiet cluster push delivers every row and a pull is only the check
//! that it did, so pulls that find the peer in sync slow down, doubling up
//! to the idle interval. But one peer in sync says nothing of the others:
//! after news (a row past a gap, a join, a restart, a healed partition)
//! the missing rows may be on any member. So news brings back the base
//! pace for the next few pulls, each from a peer not pulled from lately,
//! and only then may in-sync answers slow the pace again.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

/// Pulls at the base pace after news, each from a different peer: enough
/// to cover a small cluster whole, and in a large one to start an epidemic
/// that carries the rows on from those peers.
pub(crate) const FAST_PULLS: usize = 4;

/// What a pull found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing we lacked: the peer's vector was ours, or it was behind.
    NothingNew,
    /// Rows came.
    Fetched,
    /// The peer did not answer, or answered something unusable.
    Failed,
}

#[derive(Debug)]
pub(crate) struct Cadence {
    interval: Duration,
    idle_interval: Duration,
    pause: Duration,
    /// Pulls still to make at the base pace before in-sync answers may
    /// slow it.
    fast_left: usize,
    /// The last peers pulled from, oldest first, at most `FAST_PULLS`.
    recent: VecDeque<SocketAddr>,
}

impl Cadence {
    pub fn new(interval: Duration, idle_interval: Duration) -> Self {
        Cadence {
            interval,
            idle_interval: idle_interval.max(interval),
            pause: interval,
            fast_left: FAST_PULLS,
            recent: VecDeque::with_capacity(FAST_PULLS),
        }
    }

    /// How long to wait before the next pull (before jitter).
    pub fn pause(&self) -> Duration {
        self.pause
    }

    /// Something suggests push missed rows: pull at the base pace again.
    /// True when that is sooner than the pace was, so the caller shortens
    /// the wait it is in.
    pub fn news(&mut self) -> bool {
        let slower = self.pause > self.interval;
        self.pause = self.interval;
        self.fast_left = FAST_PULLS;
        slower
    }

    pub fn after(&mut self, peer: SocketAddr, outcome: Outcome) {
        if self.recent.len() == FAST_PULLS {
            self.recent.pop_front();
        }
        self.recent.push_back(peer);
        match outcome {
            Outcome::NothingNew if self.fast_left == 0 => {
                self.pause = (self.pause * 2).min(self.idle_interval);
            }
            Outcome::NothingNew => {
                self.fast_left -= 1;
                self.pause = self.interval;
            }
            // Rows came: others may lack them too, and more may follow.
            Outcome::Fetched => {
                self.fast_left = FAST_PULLS;
                self.pause = self.interval;
            }
            Outcome::Failed => self.pause = self.interval,
        }
    }

    /// The next peer out of `candidates`, drawn with `draw(len)` (an index
    /// below len) among those not pulled from lately when there are any.
    pub fn pick(
        &self,
        candidates: &[SocketAddr],
        draw: impl FnOnce(usize) -> usize,
    ) -> Option<SocketAddr> {
        let fresh: Vec<SocketAddr> = candidates
            .iter()
            .filter(|peer| !self.recent.contains(peer))
            .copied()
            .collect();
        let pool = if fresh.is_empty() {
            candidates
        } else {
            &fresh[..]
        };
        if pool.is_empty() {
            return None;
        }
        Some(pool[draw(pool.len()).min(pool.len() - 1)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(2);
    const IDLE: Duration = Duration::from_secs(30);

    fn peers(n: u8) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 7947)))
            .collect()
    }

    #[test]
    fn after_news_the_next_pulls_go_to_different_peers_at_the_base_pace() {
        let all = peers(5);
        let mut cadence = Cadence::new(BASE, IDLE);
        let mut asked = Vec::new();
        for _ in 0..FAST_PULLS {
            assert_eq!(cadence.pause(), BASE);
            let peer = cadence.pick(&all, |_| 0).expect("a peer");
            assert!(!asked.contains(&peer), "{peer} twice in {asked:?}");
            asked.push(peer);
            cadence.after(peer, Outcome::NothingNew);
        }
        // Every peer but one asked, all in sync: now the pace slows.
        let mut pauses = Vec::new();
        for _ in 0..6 {
            let peer = cadence.pick(&all, |_| 0).expect("a peer");
            cadence.after(peer, Outcome::NothingNew);
            pauses.push(cadence.pause().as_secs());
        }
        assert_eq!(pauses, [4, 8, 16, 30, 30, 30]);
        assert!(cadence.news(), "news is sooner than 30 s");
        assert_eq!(cadence.pause(), BASE);
        assert!(!cadence.news(), "already at the base pace");
    }

    #[test]
    fn a_pull_that_moved_rows_keeps_the_pace_and_a_failure_does_not_count_as_sync() {
        let all = peers(3);
        let mut cadence = Cadence::new(BASE, IDLE);
        for _ in 0..10 {
            cadence.after(all[0], Outcome::NothingNew);
        }
        assert_eq!(cadence.pause(), IDLE);
        cadence.after(all[1], Outcome::Failed);
        assert_eq!(cadence.pause(), BASE);
        cadence.after(all[1], Outcome::Fetched);
        for _ in 0..FAST_PULLS {
            assert_eq!(cadence.pause(), BASE);
            cadence.after(all[2], Outcome::NothingNew);
        }
        cadence.after(all[2], Outcome::NothingNew);
        assert_eq!(cadence.pause(), BASE * 2);
    }

    #[test]
    fn a_lone_peer_is_picked_again_and_no_peer_is_none() {
        let one = peers(1);
        let mut cadence = Cadence::new(BASE, IDLE);
        cadence.after(one[0], Outcome::NothingNew);
        assert_eq!(cadence.pick(&one, |_| 0), Some(one[0]));
        assert_eq!(cadence.pick(&[], |_| 0), None);
    }
}
