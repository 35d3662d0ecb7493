//! Replay protection for sealed HTTP bodies (sync requests and answers,
//! annotations, probe reports and assignments).
//!
//! The envelope proves who sealed a body, not when or how often it may be
//! used: a captured annotation sent again would be recorded again, and a
//! captured probe report would keep a dead probe's paths "ok". So every
//! sealed body carries a stamp inside the ciphertext:
//!
//! ```text
//! sealed at (unix ms, u64 BE) | random id (u64) | JSON
//! ```
//!
//! and the receiver takes a stamp once, and only while it is fresh:
//! - within [`SKEW_WINDOW`] of the receiver's clock, either way;
//! - never seen before: ids are remembered for as long as their stamp is
//!   fresh, at most [`MEMORY`] of them;
//! - sealed after the receiver started (the memory is not kept across
//!   restarts, so the start is where it begins), and after any stamp it had
//!   to forget to stay within [`MEMORY`].
//!
//! Why these bounds: honest nodes' clocks may differ; the clock-drift
//! check calls 1 s critical by default, so a 60 s window refuses no node
//! that the cluster has not already named, while a capture is useless a
//! minute later. A sender whose clock is S behind the receiver's sees its
//! requests refused for S after the receiver restarts, then works again.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use ring::rand::{SecureRandom, SystemRandom};

use crate::envelope::Purpose;

/// How far a stamp may be from the receiver's clock, either way.
pub const SKEW_WINDOW: Duration = Duration::from_secs(60);
/// Stamps remembered at most: an agent opens a few sealed bodies a second
/// (a pull from each peer every few seconds on average, a probe report,
/// rare annotations), so this is minutes of traffic even at 5,000 nodes,
/// and about 1 MiB at worst.
pub const MEMORY: usize = 32_768;
/// Bytes the stamp adds before the JSON.
pub const STAMP_LEN: usize = 16;

/// The first bytes of a sealed body's plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    pub sealed_at_unix_ms: u64,
    /// Random, so two bodies sealed in the same millisecond differ.
    pub id: u64,
}

impl Stamp {
    /// A new stamp for a body sealed now.
    ///
    /// # Panics
    /// If the operating system's random number generator fails, as sealing
    /// itself does.
    pub fn new(sealed_at_unix_ms: u64) -> Stamp {
        let mut id = [0u8; 8];
        SystemRandom::new()
            .fill(&mut id)
            .expect("the operating system's random number generator failed");
        Stamp {
            sealed_at_unix_ms,
            id: u64::from_be_bytes(id),
        }
    }

    pub fn encode(&self) -> [u8; STAMP_LEN] {
        let mut bytes = [0u8; STAMP_LEN];
        bytes[..8].copy_from_slice(&self.sealed_at_unix_ms.to_be_bytes());
        bytes[8..].copy_from_slice(&self.id.to_be_bytes());
        bytes
    }

    /// The stamp and the JSON after it, or `None` for a plaintext that
    /// carries none: too short, or JSON from a release before the stamp.
    /// A stamp's first byte is the top byte of a Unix time in ms, 0 for
    /// the next two million years; JSON's is `{`.
    pub fn split(plain: &[u8]) -> Option<(Stamp, &[u8])> {
        if plain.first() != Some(&0) {
            return None;
        }
        let (at, rest) = plain.split_first_chunk::<8>()?;
        let (id, json) = rest.split_first_chunk::<8>()?;
        Some((
            Stamp {
                sealed_at_unix_ms: u64::from_be_bytes(*at),
                id: u64::from_be_bytes(*id),
            },
            json,
        ))
    }
}

/// Why a sealed body that opened was still refused.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    #[error("the body carries no stamp (sealed by an older release?)")]
    Unstamped,
    #[error(
        "this exact request was already received (a replay, or a retry of a request that arrived)"
    )]
    Replayed,
    #[error(
        "sealed {}, more than {}s from this agent's clock: a replay, or clocks that differ too much",
        age(*.age_ms), SKEW_WINDOW.as_secs()
    )]
    Stale { age_ms: i64 },
    #[error(
        "sealed before this agent started (or before the oldest request it still remembers): \
         a replay, or the sender's clock is behind"
    )]
    BeforeMemory,
}

fn age(age_ms: i64) -> String {
    let secs = age_ms.unsigned_abs() / 1000;
    if age_ms >= 0 {
        format!("{secs}s ago")
    } else {
        format!("{secs}s in the future")
    }
}

impl ReplayError {
    /// One of each, so layers that count refusals export every reason from
    /// the start.
    pub const ALL: [ReplayError; 4] = [
        ReplayError::Unstamped,
        ReplayError::Replayed,
        ReplayError::Stale { age_ms: 0 },
        ReplayError::BeforeMemory,
    ];

    /// A short label, used as a Prometheus label value; keep them stable.
    pub fn reason(&self) -> &'static str {
        match self {
            ReplayError::Unstamped => "unstamped",
            ReplayError::Replayed => "replayed",
            ReplayError::Stale { .. } => "stale",
            ReplayError::BeforeMemory => "before_memory",
        }
    }
}

/// What this process has taken: sans clock, the caller says when "now" is.
#[derive(Debug)]
pub struct ReplayMemory {
    state: Mutex<Seen>,
    /// Refusals by channel and reason, exported by the agent.
    refused: Family<RefusalLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    channel: &'static str,
    reason: &'static str,
}

#[derive(Debug)]
struct Seen {
    /// Stamps at or before this are refused: the start, then the newest
    /// stamp ever forgotten for room.
    floor_ms: u64,
    /// Ordered by time, so the oldest go first.
    taken: BTreeSet<Stamp>,
}

impl ReplayMemory {
    pub fn new(started_unix_ms: u64) -> ReplayMemory {
        let refused = Family::<RefusalLabels, Counter>::default();
        // Every series from the start, so `increase` over them sees 0.
        for purpose in Purpose::SEALED_JSON {
            for error in ReplayError::ALL {
                let _ = refused.get_or_create(&RefusalLabels {
                    channel: purpose.label(),
                    reason: error.reason(),
                });
            }
        }
        ReplayMemory {
            state: Mutex::new(Seen {
                floor_ms: started_unix_ms,
                taken: BTreeSet::new(),
            }),
            refused,
        }
    }

    /// `starling_sealed_refused_total{channel, reason}`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "sealed_refused",
            "Sealed requests and answers that opened but were refused as replays, by channel and reason",
            self.refused.clone(),
        );
    }

    /// Takes `stamp`, sealed for `purpose`, if it is fresh and new; once
    /// taken, never again. Refusals are counted.
    pub fn take(
        &self,
        purpose: Purpose,
        stamp: Option<Stamp>,
        now_unix_ms: u64,
    ) -> Result<(), ReplayError> {
        let result = stamp
            .ok_or(ReplayError::Unstamped)
            .and_then(|stamp| self.take_stamp(stamp, now_unix_ms));
        if let Err(error) = &result {
            self.refused
                .get_or_create(&RefusalLabels {
                    channel: purpose.label(),
                    reason: error.reason(),
                })
                .inc();
        }
        result
    }

    fn take_stamp(&self, stamp: Stamp, now_unix_ms: u64) -> Result<(), ReplayError> {
        let age_ms = i128::from(now_unix_ms) - i128::from(stamp.sealed_at_unix_ms);
        let window = i128::try_from(SKEW_WINDOW.as_millis()).expect("a minute fits");
        if age_ms.abs() > window {
            return Err(ReplayError::Stale {
                age_ms: i64::try_from(age_ms).unwrap_or(i64::MAX),
            });
        }
        // A poisoned lock only means another opener panicked mid-insert;
        // the set is still a valid set.
        let mut seen = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if stamp.sealed_at_unix_ms <= seen.floor_ms {
            return Err(ReplayError::BeforeMemory);
        }
        if seen.taken.contains(&stamp) {
            return Err(ReplayError::Replayed);
        }
        // Stamps older than the window are refused as stale anyway.
        let expired = now_unix_ms.saturating_sub(window as u64);
        while seen
            .taken
            .first()
            .is_some_and(|oldest| oldest.sealed_at_unix_ms < expired)
        {
            seen.taken.pop_first();
        }
        while seen.taken.len() >= MEMORY {
            let forgotten = seen.taken.pop_first().expect("the set is not empty");
            seen.floor_ms = seen.floor_ms.max(forgotten.sealed_at_unix_ms);
        }
        if stamp.sealed_at_unix_ms <= seen.floor_ms {
            return Err(ReplayError::BeforeMemory);
        }
        seen.taken.insert(stamp);
        Ok(())
    }

    /// Stamps remembered now.
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .taken
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: u64 = 1_800_000_000_000;
    const WINDOW_MS: u64 = 60_000;

    fn stamp(at: u64, id: u64) -> Stamp {
        Stamp {
            sealed_at_unix_ms: at,
            id,
        }
    }

    #[test]
    fn a_stamp_is_taken_once() {
        let memory = ReplayMemory::new(START);
        assert_eq!(memory.take_stamp(stamp(START + 5, 1), START + 10), Ok(()));
        assert_eq!(
            memory.take_stamp(stamp(START + 5, 1), START + 11),
            Err(ReplayError::Replayed)
        );
        assert_eq!(memory.take_stamp(stamp(START + 5, 2), START + 11), Ok(()));
    }

    #[test]
    fn stamps_outside_the_window_are_stale_either_way() {
        let memory = ReplayMemory::new(START);
        let now = START + 10 * WINDOW_MS;
        assert_eq!(memory.take_stamp(stamp(now - WINDOW_MS, 1), now), Ok(()));
        assert_eq!(memory.take_stamp(stamp(now + WINDOW_MS, 2), now), Ok(()));
        assert!(matches!(
            memory.take_stamp(stamp(now - WINDOW_MS - 1, 3), now),
            Err(ReplayError::Stale { age_ms: 60_001 })
        ));
        assert!(matches!(
            memory.take_stamp(stamp(now + WINDOW_MS + 1, 4), now),
            Err(ReplayError::Stale { age_ms: -60_001 })
        ));
    }

    #[test]
    fn a_replay_after_the_window_is_stale() {
        let memory = ReplayMemory::new(START);
        let taken = stamp(START + 1, 7);
        memory.take_stamp(taken, START + 2).unwrap();
        assert!(matches!(
            memory.take_stamp(taken, START + 2 + WINDOW_MS),
            Err(ReplayError::Stale { .. })
        ));
        // Expired stamps are forgotten: memory is bounded by the window.
        memory
            .take_stamp(stamp(START + 3 + WINDOW_MS, 8), START + 3 + WINDOW_MS)
            .unwrap();
        assert_eq!(memory.len(), 1);
    }

    #[test]
    fn after_a_restart_nothing_sealed_before_it_is_taken() {
        let before = ReplayMemory::new(START);
        let captured = stamp(START + 100, 9);
        before.take_stamp(captured, START + 100).unwrap();
        let restarted = ReplayMemory::new(START + 200);
        assert_eq!(
            restarted.take_stamp(captured, START + 300),
            Err(ReplayError::BeforeMemory)
        );
        assert_eq!(
            restarted.take_stamp(stamp(START + 250, 10), START + 300),
            Ok(())
        );
    }

    #[test]
    fn a_full_memory_forgets_the_oldest_and_refuses_what_it_forgot() {
        let memory = ReplayMemory::new(START);
        let now = START + 1_000;
        for id in 0..MEMORY as u64 {
            memory
                .take_stamp(stamp(START + 1 + id % 500, id), now)
                .unwrap();
        }
        assert_eq!(memory.len(), MEMORY);
        // One more forgets the oldest; a replay of it is then refused by
        // the floor, not taken again.
        memory
            .take_stamp(stamp(START + 900, u64::MAX), now)
            .unwrap();
        assert_eq!(memory.len(), MEMORY);
        assert_eq!(
            memory.take_stamp(stamp(START + 1, 0), now),
            Err(ReplayError::BeforeMemory)
        );
    }
}
