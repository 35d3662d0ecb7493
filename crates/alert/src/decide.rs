//! Whether this node sends an alert transition now. Pure: the ledger, the
//! node's rank for the key, when it first noticed and the time are all
//! passed in.
//!
//! Every node that sees a key's verdict differ from what the receivers
//! last heard ranks the alive members for the key (rendezvous hash,
//! the subject excluded). The first sends at once; the k-th waits k grace
//! periods and sends only if no queued mark reached its history by then.
//! A queued mark whose node is no longer alive, or that stays undelivered
//! past the takeover time, is sent again under the same generation, so
//! receivers see the same idempotency key. A resolution whose claim is
//! settled is sent again, under its generation, only to a sink that heard
//! the alert firing after it was queued.

use std::time::Duration;

use super::ledger::Ledger;
use super::model::AlertState;
use super::sources::Verdict;

/// The timing rules; the defaults suit production, tests shorten them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecideTiming {
    /// Per rank, how long a fallback waits for a better-ranked node's
    /// queued mark. Push delivers a mark in well under a second.
    pub grace: Duration,
    /// A transition queued by a live node but not delivered this long is
    /// taken over by the next in rank (its sinks may be out of reach from
    /// there only).
    pub takeover_after: Duration,
    /// The span over which fires are counted for flap damping.
    pub flap_window: Duration,
    /// This many fires within the window make an alert flapping: it is
    /// sent once marked so and held firing until it stays clear for a
    /// whole window.
    pub flap_fires: usize,
}

impl Default for DecideTiming {
    fn default() -> Self {
        DecideTiming {
            grace: Duration::from_secs(5),
            takeover_after: Duration::from_secs(300),
            flap_window: Duration::from_secs(600),
            flap_fires: 3,
        }
    }
}

/// What the receivers should hear about a key, as this node judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub state: AlertState,
    /// Only differs from the ledger's when `state` changed or a takeover
    /// re-sends.
    pub generation: u64,
    pub flapping: bool,
    pub starts_at_unix_ms: u64,
}

/// What to do about a key now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The receivers know what they should; or someone else's turn.
    Nothing,
    /// Not yet: a better-ranked node may still act. Look again then.
    WaitUntil(u64),
    /// Queue this transition (or re-queue it, on a takeover).
    Send(Wanted),
}

/// The facts about one key at one evaluation.
#[derive(Clone, Copy, Debug)]
pub struct Situation<'a> {
    pub verdict: Verdict,
    pub ledger: Option<&'a Ledger>,
    /// This node's place among the eligible members for the key: 0 sends
    /// at once. For a takeover, the stale claimant is not counted.
    pub rank: usize,
    /// When this node first saw the current discrepancy.
    pub noticed_at_unix_ms: u64,
    /// Since when the verdict has been clear without a break.
    pub clear_since_unix_ms: Option<u64>,
    /// The node that queued the newest transition is alive (or is us).
    pub claimant_alive: bool,
    /// The newest transition is a resolution, and some sink this node
    /// serves heard the firing only after it was queued.
    pub resolution_owed: bool,
    /// When the condition began as this node knows it (the member went
    /// down, the check turned critical): a firing's start, so receivers
    /// show when it happened, not when it was sent.
    pub began_at_unix_ms: Option<u64>,
    pub now_unix_ms: u64,
}

pub fn decide(situation: &Situation<'_>, timing: &DecideTiming) -> Decision {
    let Situation {
        verdict,
        ledger,
        rank,
        noticed_at_unix_ms,
        clear_since_unix_ms,
        claimant_alive,
        resolution_owed,
        began_at_unix_ms,
        now_unix_ms,
    } = *situation;
    let empty = Ledger::default();
    let ledger = ledger.unwrap_or(&empty);
    let sent = ledger.sent();
    let window = timing.flap_window.as_millis() as u64;
    let mut want = match verdict {
        Verdict::Firing => AlertState::Firing,
        Verdict::Clear => AlertState::Resolved,
        Verdict::Unsure => sent,
    };
    // When the discrepancy became actionable: the fallbacks' grace counts
    // from there, so they do not all act the moment a hold ends.
    let mut actionable_at = noticed_at_unix_ms;
    // A flapping alert stays firing until clear for a whole window.
    if sent == AlertState::Firing && ledger.flapping && want == AlertState::Resolved {
        match clear_since_unix_ms.map(|since| since + window) {
            Some(quiet_at) if now_unix_ms >= quiet_at => {
                actionable_at = actionable_at.max(quiet_at);
            }
            _ => want = AlertState::Firing,
        }
    }
    let due = actionable_at + timing.grace.as_millis() as u64 * rank as u64;
    if want != sent {
        if now_unix_ms < due {
            return Decision::WaitUntil(due);
        }
        let (flapping, starts_at_unix_ms) = match want {
            AlertState::Firing => {
                let fires = ledger.fired_since(now_unix_ms.saturating_sub(window)) + 1;
                let began = began_at_unix_ms.map_or(now_unix_ms, |at| at.min(now_unix_ms));
                (fires >= timing.flap_fires, began)
            }
            AlertState::Resolved => (false, ledger.starts_at_unix_ms),
        };
        return Decision::Send(Wanted {
            state: want,
            generation: ledger.generation + 1,
            flapping,
            starts_at_unix_ms,
        });
    }
    let stale_claim = match &ledger.claimed_by {
        _ if ledger.generation == 0 => false,
        _ if ledger.delivered => resolution_owed && sent == AlertState::Resolved,
        None => true,
        Some(_) => !claimant_alive || ledger.claim_expired(now_unix_ms, timing.takeover_after),
    };
    if !stale_claim {
        return Decision::Nothing;
    }
    if now_unix_ms < due {
        return Decision::WaitUntil(due);
    }
    Decision::Send(Wanted {
        state: sent,
        generation: ledger.generation,
        flapping: ledger.flapping,
        starts_at_unix_ms: ledger.starts_at_unix_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Mark, Step};

    const S: u64 = 1000;

    fn timing() -> DecideTiming {
        DecideTiming {
            grace: Duration::from_secs(5),
            takeover_after: Duration::from_secs(60),
            flap_window: Duration::from_secs(100),
            flap_fires: 3,
        }
    }

    fn at(verdict: Verdict, ledger: Option<&Ledger>, rank: usize, now: u64) -> Situation<'_> {
        Situation {
            verdict,
            ledger,
            rank,
            noticed_at_unix_ms: 0,
            clear_since_unix_ms: None,
            claimant_alive: true,
            resolution_owed: false,
            began_at_unix_ms: None,
            now_unix_ms: now,
        }
    }

    fn ledger_after(transitions: &[(AlertState, u64)]) -> Ledger {
        let mut ledger = Ledger::default();
        for (i, (state, at)) in transitions.iter().enumerate() {
            for step in [Step::Queued, Step::Delivered] {
                ledger.apply(&Mark {
                    step,
                    key: "k".to_owned(),
                    generation: i as u64 + 1,
                    state: *state,
                    flapping: false,
                    starts_at_unix_ms: *at,
                    sink: Some("hook".to_owned()),
                    observer: "a".to_owned(),
                    at_unix_ms: *at,
                });
            }
        }
        ledger
    }

    #[test]
    fn the_owner_sends_at_once_and_the_kth_after_k_graces() {
        let first = decide(&at(Verdict::Firing, None, 0, 0), &timing());
        assert_eq!(
            first,
            Decision::Send(Wanted {
                state: AlertState::Firing,
                generation: 1,
                flapping: false,
                starts_at_unix_ms: 0
            })
        );
        assert_eq!(
            decide(&at(Verdict::Firing, None, 2, 9 * S), &timing()),
            Decision::WaitUntil(10 * S)
        );
        assert!(matches!(
            decide(&at(Verdict::Firing, None, 2, 10 * S), &timing()),
            Decision::Send(_)
        ));
        // Nothing to say, and nothing when the receivers already know.
        assert_eq!(
            decide(&at(Verdict::Clear, None, 0, 0), &timing()),
            Decision::Nothing
        );
        let fired = ledger_after(&[(AlertState::Firing, 0)]);
        assert_eq!(
            decide(&at(Verdict::Firing, Some(&fired), 0, S), &timing()),
            Decision::Nothing
        );
        assert_eq!(
            decide(&at(Verdict::Unsure, Some(&fired), 0, S), &timing()),
            Decision::Nothing
        );
    }

    #[test]
    fn a_resolution_keeps_the_firing_start_and_counts_on() {
        let fired = ledger_after(&[(AlertState::Firing, 7 * S)]);
        assert_eq!(
            decide(&at(Verdict::Clear, Some(&fired), 0, 20 * S), &timing()),
            Decision::Send(Wanted {
                state: AlertState::Resolved,
                generation: 2,
                flapping: false,
                starts_at_unix_ms: 7 * S
            })
        );
    }

    #[test]
    fn an_undelivered_claim_of_a_dead_or_slow_node_is_sent_again_under_its_generation() {
        let mut claimed = Ledger::default();
        claimed.apply(&Mark {
            step: Step::Queued,
            key: "k".to_owned(),
            generation: 4,
            state: AlertState::Firing,
            flapping: false,
            starts_at_unix_ms: 0,
            sink: None,
            observer: "a".to_owned(),
            at_unix_ms: 0,
        });
        let alive = at(Verdict::Firing, Some(&claimed), 0, 10 * S);
        assert_eq!(decide(&alive, &timing()), Decision::Nothing);
        let dead = Situation {
            claimant_alive: false,
            began_at_unix_ms: None,
            ..alive
        };
        let again = Decision::Send(Wanted {
            state: AlertState::Firing,
            generation: 4,
            flapping: false,
            starts_at_unix_ms: 0,
        });
        assert_eq!(decide(&dead, &timing()), again);
        let slow = Situation {
            now_unix_ms: 60 * S,
            ..alive
        };
        assert_eq!(decide(&slow, &timing()), again);
        let delivered = ledger_after(&[(AlertState::Firing, 0)]);
        let done = Situation {
            ledger: Some(&delivered),
            ..dead
        };
        assert_eq!(decide(&done, &timing()), Decision::Nothing);
    }

    #[test]
    fn the_third_fire_in_a_window_is_flapping_and_held_until_quiet() {
        use AlertState::*;
        let ledger = ledger_after(&[
            (Firing, 0),
            (Resolved, 10 * S),
            (Firing, 20 * S),
            (Resolved, 30 * S),
        ]);
        let Decision::Send(third) =
            decide(&at(Verdict::Firing, Some(&ledger), 0, 40 * S), &timing())
        else {
            panic!("the third fire is sent");
        };
        assert!(third.flapping);
        let mut flapping = ledger.clone();
        flapping.apply(&Mark {
            step: Step::Delivered,
            key: "k".to_owned(),
            generation: third.generation,
            state: Firing,
            flapping: true,
            starts_at_unix_ms: 40 * S,
            sink: Some("hook".to_owned()),
            observer: "a".to_owned(),
            at_unix_ms: 40 * S,
        });
        let clear = |since: u64, now: u64| Situation {
            clear_since_unix_ms: Some(since),
            ..at(Verdict::Clear, Some(&flapping), 0, now)
        };
        assert_eq!(
            decide(&clear(50 * S, 149 * S), &timing()),
            Decision::Nothing
        );
        assert!(matches!(
            decide(&clear(50 * S, 150 * S), &timing()),
            Decision::Send(Wanted {
                state: Resolved,
                ..
            })
        ));
        // The fallback's grace counts from the end of the hold, not from
        // when it first saw the alert clear.
        let fallback = Situation {
            rank: 1,
            ..clear(50 * S, 150 * S)
        };
        assert_eq!(decide(&fallback, &timing()), Decision::WaitUntil(155 * S));
        // Fires outside the window do not count.
        let old = ledger_after(&[
            (Firing, 0),
            (Resolved, S),
            (Firing, 2 * S),
            (Resolved, 3 * S),
        ]);
        let Decision::Send(later) = decide(&at(Verdict::Firing, Some(&old), 0, 200 * S), &timing())
        else {
            panic!("sent");
        };
        assert!(!later.flapping);
    }

    #[test]
    fn a_firing_starts_when_the_condition_began_never_in_the_future() {
        let began = |began_at: Option<u64>| {
            let mut situation = at(Verdict::Firing, None, 0, 50 * S);
            situation.began_at_unix_ms = began_at;
            match decide(&situation, &timing()) {
                Decision::Send(wanted) => wanted.starts_at_unix_ms,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(began(Some(38 * S)), 38 * S, "the node went down at 38 s");
        assert_eq!(began(None), 50 * S, "unknown: when it was decided");
        assert_eq!(began(Some(70 * S)), 50 * S, "a clock ahead is capped");
    }

    #[test]
    fn a_settled_resolution_is_sent_again_only_when_owed() {
        let resolved = ledger_after(&[(AlertState::Firing, 0), (AlertState::Resolved, 10 * S)]);
        let settled = at(Verdict::Clear, Some(&resolved), 0, 20 * S);
        assert_eq!(decide(&settled, &timing()), Decision::Nothing);
        let owed = Situation {
            resolution_owed: true,
            ..settled
        };
        assert_eq!(
            decide(&owed, &timing()),
            Decision::Send(Wanted {
                state: AlertState::Resolved,
                generation: 2,
                flapping: false,
                starts_at_unix_ms: 10 * S,
            })
        );
        // Owed means nothing while the alert fires again.
        let fired = ledger_after(&[(AlertState::Firing, 0)]);
        let firing = Situation {
            resolution_owed: true,
            ..at(Verdict::Firing, Some(&fired), 0, 20 * S)
        };
        assert_eq!(decide(&firing, &timing()), Decision::Nothing);
    }
}
