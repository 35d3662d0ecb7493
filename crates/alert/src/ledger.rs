//! What the cluster has told the receivers, kept in the replicated
//! history: a *queued* mark when a node takes an alert transition into
//! its outbox, a *delivered* mark per sink that accepted it, and a
//! *failed* note now and then while a sink refuses. Every node folds the
//! marks into one ledger per key, so whoever owns a key next knows what
//! was sent, and nothing is sent twice because a node restarted. A
//! resolution goes only to the sinks that heard the alert firing; when none
//! did, a *withheld* mark settles it without a notice.

use std::collections::{BTreeMap, HashMap};

use rusqlite::params;

use starling_history::{Event, EventKind, NewEvent, Store, StoreError};

use super::model::{AlertState, Notice};

/// Prefix of the dedupe key of every mark; the fields follow, `:`-separated:
/// step, generation, state, flapping, start, who (the sink a delivered mark
/// names; the queuing node for a queued one, so that a takeover's queued
/// mark is its own row in the log, not a hidden duplicate of the first),
/// and the alert key last (it may itself hold `:`).
const MARK_PREFIX: &str = "alert:";

/// What a mark says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Queued,
    Delivered,
    /// A resolution no sink needs: none heard the alert firing (its firing
    /// was queued by a node that could not deliver it, then overtaken).
    Withheld,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::Queued => "queued",
            Step::Delivered => "delivered",
            Step::Withheld => "withheld",
        }
    }
}

/// One mark, as read back from the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub step: Step,
    pub key: String,
    pub generation: u64,
    pub state: AlertState,
    pub flapping: bool,
    pub starts_at_unix_ms: u64,
    /// The sink a delivered mark names.
    pub sink: Option<String>,
    /// The node that wrote it.
    pub observer: String,
    pub at_unix_ms: u64,
}

/// The history event for `step` of `notice` (to `sink`, when delivered).
pub fn mark_event(step: Step, notice: &Notice, sink: Option<&str>, at_unix_ms: u64) -> NewEvent {
    let what = match (step, sink) {
        (Step::Delivered, Some(sink)) => format!("delivered to {sink}"),
        (Step::Withheld, _) => "withheld: no receiver heard it firing".to_owned(),
        _ => "queued".to_owned(),
    };
    let message = format!(
        "{} {}{} #{} {what}: {}",
        notice.kind.alertname(),
        notice.state.as_str(),
        if notice.flapping { " (flapping)" } else { "" },
        notice.generation,
        notice.message
    );
    let dedupe_key = format!(
        "{MARK_PREFIX}{}:{}:{}:{}:{}:{}:{}",
        step.as_str(),
        notice.generation,
        notice.state.as_str(),
        u8::from(notice.flapping),
        notice.starts_at_unix_ms,
        sink.unwrap_or(&notice.observer),
        notice.key
    );
    alert_event(notice, message, Some(dedupe_key), at_unix_ms)
}

/// A note that a sink refused or could not be reached; not a mark, and
/// without a dedupe key so each attempt noted shows.
pub fn failure_event(
    notice: &Notice,
    sink: &str,
    attempt: u32,
    error: &str,
    at_unix_ms: u64,
) -> NewEvent {
    let message = format!(
        "{} {} #{}: delivery to {sink} failed (attempt {attempt}): {error}",
        notice.kind.alertname(),
        notice.state.as_str(),
        notice.generation
    );
    alert_event(notice, message, None, at_unix_ms)
}

/// An alert event about `notice`: filed under its subject (or, for a
/// cluster-wide alert, the node that sent it) and its key as the check.
fn alert_event(
    notice: &Notice,
    message: String,
    dedupe_key: Option<String>,
    at_unix_ms: u64,
) -> NewEvent {
    NewEvent {
        at_unix_ms,
        kind: EventKind::Alert,
        node: notice
            .subject
            .clone()
            .unwrap_or_else(|| notice.observer.clone()),
        check: Some(notice.key.clone()),
        old_state: None,
        new_state: Some(notice.state.as_str().to_owned()),
        message,
        dedupe_key,
    }
}

/// The mark a recorded event is, if it is one.
pub fn mark_of(event: &Event) -> Option<Mark> {
    parse_mark(
        event.dedupe_key.as_deref()?,
        &event.observer,
        event.at_unix_ms,
    )
}

/// Reads a mark back; `None` for other alert events (failure notes).
pub fn parse_mark(dedupe_key: &str, observer: &str, at_unix_ms: u64) -> Option<Mark> {
    let rest = dedupe_key.strip_prefix(MARK_PREFIX)?;
    let mut fields = rest.splitn(7, ':');
    let step = match fields.next()? {
        "queued" => Step::Queued,
        "delivered" => Step::Delivered,
        "withheld" => Step::Withheld,
        _ => return None,
    };
    let generation = fields.next()?.parse().ok()?;
    let state = fields.next()?.parse().ok()?;
    let flapping = match fields.next()? {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    let starts_at_unix_ms = fields.next()?.parse().ok()?;
    let who = fields.next()?;
    let key = fields.next()?.to_owned();
    Some(Mark {
        step,
        key,
        generation,
        state,
        flapping,
        starts_at_unix_ms,
        sink: (step == Step::Delivered).then(|| who.to_owned()),
        observer: observer.to_owned(),
        at_unix_ms,
    })
}

/// The cluster's record of one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    /// The newest transition's number; 0 before the first.
    pub generation: u64,
    pub state: Option<AlertState>,
    pub flapping: bool,
    pub starts_at_unix_ms: u64,
    /// Who queued the newest transition, and when; a second claim of the
    /// same generation (a takeover) replaces the first.
    pub claimed_by: Option<(String, u64)>,
    /// Some sink accepted the newest transition, or none needed it.
    pub delivered: bool,
    /// Start of every firing transition, by generation: flap counting.
    pub fired: BTreeMap<u64, u64>,
    /// Per sink, the newest transition it accepted: a resolution is owed
    /// only to a sink that last heard the alert firing.
    pub heard: BTreeMap<String, Heard>,
}

/// The newest transition one sink accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heard {
    pub generation: u64,
    pub state: AlertState,
    /// When it was delivered (the delivering node's clock).
    pub at_unix_ms: u64,
}

impl Ledger {
    /// What the receivers last heard: resolved when nothing was sent.
    pub fn sent(&self) -> AlertState {
        self.state.unwrap_or(AlertState::Resolved)
    }

    /// The newest transition was queued at least `after` ago and no sink
    /// has taken it yet: its node may only be unable to reach the sinks.
    pub fn claim_expired(&self, now_unix_ms: u64, after: std::time::Duration) -> bool {
        !self.delivered
            && self
                .claimed_by
                .as_ref()
                .is_some_and(|(_, at)| now_unix_ms.saturating_sub(*at) >= after.as_millis() as u64)
    }

    /// Sinks whose last word on this key was "firing" while the cluster's
    /// is "resolved" (or is about to be): each is owed a resolution.
    pub fn heard_firing(&self) -> impl Iterator<Item = &str> {
        self.heard
            .iter()
            .filter(|(_, heard)| heard.state == AlertState::Firing)
            .map(|(sink, _)| sink.as_str())
    }

    /// Sinks that heard the alert firing after the newest claim was queued:
    /// that claim did not count them (a node cut off from the cluster
    /// delivered its firing late), so they are owed the resolution again.
    pub fn heard_firing_late(&self) -> impl Iterator<Item = &str> {
        let claimed_at = self.claimed_by.as_ref().map_or(0, |(_, at)| *at);
        self.heard
            .iter()
            .filter(move |(_, heard)| {
                heard.state == AlertState::Firing && heard.at_unix_ms > claimed_at
            })
            .map(|(sink, _)| sink.as_str())
    }

    /// Firing transitions that started at or after `since`.
    pub fn fired_since(&self, since_unix_ms: u64) -> usize {
        self.fired
            .values()
            .filter(|&&at| at >= since_unix_ms)
            .count()
    }

    pub fn apply(&mut self, mark: &Mark) {
        // A newer generation replaces the record; so does a later claim of
        // the same generation with another state (two nodes raced while
        // their views disagreed). "Later" is by (time, node name), which
        // every node compares alike, so all ledgers settle on one winner
        // whatever order the marks arrive in.
        let replaces = mark.generation > self.generation
            || (mark.generation == self.generation
                && mark.step == Step::Queued
                && Some(mark.state) != self.state
                && self.is_later_claim(mark));
        if replaces {
            *self = Ledger {
                generation: mark.generation,
                state: Some(mark.state),
                flapping: mark.flapping,
                starts_at_unix_ms: mark.starts_at_unix_ms,
                claimed_by: None,
                delivered: false,
                fired: std::mem::take(&mut self.fired),
                heard: std::mem::take(&mut self.heard),
            };
            // A firing claim that lost its generation's race did not fire.
            self.fired.remove(&mark.generation);
        }
        // What a sink heard counts whichever generation is current: a sink
        // that took a firing late, after its resolution, is owed another.
        if let (Step::Delivered, Some(sink)) = (mark.step, &mark.sink) {
            let newest = self
                .heard
                .get(sink)
                .is_none_or(|heard| mark.generation >= heard.generation);
            if newest {
                let heard = Heard {
                    generation: mark.generation,
                    state: mark.state,
                    at_unix_ms: mark.at_unix_ms,
                };
                self.heard.insert(sink.clone(), heard);
            }
        }
        let current = mark.generation == self.generation && Some(mark.state) == self.state;
        // Older generations count too: replicated marks may arrive out of order.
        if mark.state == AlertState::Firing && (current || mark.generation < self.generation) {
            self.fired.insert(mark.generation, mark.starts_at_unix_ms);
        }
        if !current {
            return;
        }
        match mark.step {
            Step::Queued => {
                if self.is_later_claim(mark) {
                    // A new claim of the same transition (a takeover, or a
                    // resolution re-sent to a sink that heard a late firing)
                    // is undelivered until its own delivery.
                    if self.claimed_by.is_some() {
                        self.delivered = false;
                    }
                    self.claimed_by = Some((mark.observer.clone(), mark.at_unix_ms));
                }
            }
            Step::Delivered => self.delivered = true,
            Step::Withheld => {
                if self.claimed_by.as_ref().map(|(name, _)| name) == Some(&mark.observer) {
                    self.delivered = true;
                }
            }
        }
    }

    /// `mark` was queued after the standing claim: a takeover, or the
    /// winner of a race. Ties in time go to the greater node name.
    fn is_later_claim(&self, mark: &Mark) -> bool {
        self.claimed_by.as_ref().is_none_or(|(name, at)| {
            (mark.at_unix_ms, mark.observer.as_str()) >= (*at, name.as_str())
        })
    }

    /// Whether another node than `me` holds the newest claim: this node's
    /// undelivered notices of the key are then someone else's to send.
    pub fn claimed_by_other(&self, me: &str) -> bool {
        self.claimed_by.as_ref().is_some_and(|(name, _)| name != me)
    }

    /// Forget firing starts older than `before`: the flap window is all
    /// that needs them.
    pub fn prune(&mut self, before_unix_ms: u64) {
        self.fired.retain(|_, at| *at >= before_unix_ms);
    }
}

/// Every key's ledger, fed incrementally from the history.
#[derive(Debug, Default)]
pub struct Ledgers {
    by_key: HashMap<String, Ledger>,
    /// The highest history rowid folded in: the next read starts after it,
    /// whenever the rows were written or replicated.
    read_through: i64,
}

impl Ledgers {
    pub fn get(&self, key: &str) -> Option<&Ledger> {
        self.by_key.get(key)
    }

    /// Keys whose newest transition is firing: they need a resolution
    /// even if no source reports them any more.
    pub fn firing(&self) -> impl Iterator<Item = (&str, &Ledger)> {
        self.by_key
            .iter()
            .filter(|(_, l)| l.state == Some(AlertState::Firing))
            .map(|(k, l)| (k.as_str(), l))
    }

    pub fn apply(&mut self, mark: &Mark) {
        self.by_key.entry(mark.key.clone()).or_default().apply(mark);
    }

    /// Fold in the marks the history gained since the last call (ours and
    /// replicated ones alike).
    pub async fn catch_up(&mut self, store: &Store) -> Result<usize, StoreError> {
        let after = self.read_through;
        let (marks, through) = store
            .read(move |conn| {
                // The bound first: rows committed after it get higher rowids
                // (one writer), so the next read finds them.
                let through: Option<i64> =
                    conn.query_row("SELECT MAX(rowid) FROM events", [], |row| row.get(0))?;
                let through = through.unwrap_or(after).max(after);
                let mut statement = conn.prepare_cached(
                    "SELECT observer, at_ms, dedupe_key FROM events
                     WHERE rowid > ?1 AND rowid <= ?2 AND kind = 'alert'
                       AND dedupe_key IS NOT NULL
                     ORDER BY rowid",
                )?;
                let mut marks = Vec::new();
                let mut rows = statement.query(params![after, through])?;
                while let Some(row) = rows.next()? {
                    let observer: String = row.get(0)?;
                    let at: i64 = row.get(1)?;
                    let key: String = row.get(2)?;
                    if let Some(mark) = parse_mark(&key, &observer, at.max(0) as u64) {
                        marks.push(mark);
                    }
                }
                Ok((marks, through))
            })
            .await?;
        for mark in &marks {
            self.apply(mark);
        }
        self.read_through = through;
        Ok(marks.len())
    }

    /// Drop the firing starts the flap window no longer needs. Ledgers
    /// themselves stay (one small entry per key ever alerted on): a key's
    /// generation must never start again at 1, or a new notice would reuse
    /// an old one's idempotency key.
    pub fn prune(&mut self, before_unix_ms: u64) {
        for ledger in self.by_key.values_mut() {
            ledger.prune(before_unix_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(generation: u64, state: AlertState) -> Notice {
        Notice::for_tests("check-critical/etcd:health", generation, state)
    }

    fn mark(step: Step, notice: &Notice, observer: &str, at: u64) -> Mark {
        let event = mark_event(step, notice, Some("webhook"), at);
        parse_mark(
            event.dedupe_key.as_deref().expect("marks have keys"),
            observer,
            at,
        )
        .expect("a mark parses back")
    }

    #[test]
    fn marks_round_trip_keys_holding_colons() {
        let notice = notice(7, AlertState::Resolved);
        let back = mark(Step::Delivered, &notice, "b", 5);
        assert_eq!(back.key, notice.key);
        assert_eq!(
            (back.generation, back.state, back.step),
            (7, AlertState::Resolved, Step::Delivered)
        );
        assert_eq!(parse_mark("membership:x:1:down", "b", 0), None);
        assert_eq!(parse_mark("alert:sent:1:firing:0:0:-:k", "b", 0), None);
    }

    #[test]
    fn the_newest_generation_wins_and_a_takeover_replaces_the_claim() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.sent(), AlertState::Resolved);
        let firing = notice(1, AlertState::Firing);
        ledger.apply(&mark(Step::Queued, &firing, "a", 10));
        assert_eq!(ledger.claimed_by, Some(("a".to_owned(), 10)));
        assert!(!ledger.delivered);
        ledger.apply(&mark(Step::Queued, &firing, "c", 20));
        assert_eq!(ledger.claimed_by, Some(("c".to_owned(), 20)));
        ledger.apply(&mark(Step::Delivered, &firing, "c", 21));
        assert!(ledger.delivered);
        // A late mark of an older generation changes nothing.
        let resolved = notice(2, AlertState::Resolved);
        ledger.apply(&mark(Step::Queued, &resolved, "a", 30));
        ledger.apply(&mark(Step::Queued, &firing, "b", 40));
        assert_eq!(
            (ledger.generation, ledger.sent()),
            (2, AlertState::Resolved)
        );
        assert_eq!(ledger.claimed_by, Some(("a".to_owned(), 30)));
        assert_eq!(ledger.fired_since(0), 1);
    }

    #[test]
    fn a_race_for_one_generation_settles_on_the_later_claim_in_any_order() {
        let firing = mark(Step::Queued, &notice(3, AlertState::Firing), "a", 100);
        let resolved = mark(Step::Queued, &notice(3, AlertState::Resolved), "b", 101);
        let tied = mark(Step::Queued, &notice(3, AlertState::Firing), "c", 101);
        let orders = [
            [&firing, &resolved, &tied],
            [&tied, &resolved, &firing],
            [&resolved, &firing, &tied],
        ];
        for order in orders {
            let mut ledger = Ledger::default();
            for m in order {
                ledger.apply(m);
            }
            assert_eq!(ledger.state, Some(AlertState::Firing), "{order:?}");
            assert_eq!(ledger.claimed_by, Some(("c".to_owned(), 101)), "{order:?}");
            assert!(ledger.claimed_by_other("a") && !ledger.claimed_by_other("c"));
            assert_eq!(ledger.fired_since(0), 1, "{order:?}");
        }
        let mut ledger = Ledger::default();
        ledger.apply(&firing);
        ledger.apply(&resolved);
        assert_eq!(
            ledger.fired_since(0),
            0,
            "the losing firing claim did not fire"
        );
    }

    #[test]
    fn a_resolution_is_owed_only_to_sinks_that_heard_the_firing() {
        let firing = notice(1, AlertState::Firing);
        let resolved = notice(2, AlertState::Resolved);
        let delivered_to = |notice: &Notice, sink: &str, at: u64| {
            let event = mark_event(Step::Delivered, notice, Some(sink), at);
            parse_mark(event.dedupe_key.as_deref().expect("a key"), "a", at).expect("a mark")
        };
        // The isolated node queued the firing; no sink heard it; another
        // node's resolution is withheld and settles the key.
        let mut ledger = Ledger::default();
        ledger.apply(&mark(Step::Queued, &firing, "isolated", 10));
        assert_eq!(ledger.heard_firing().count(), 0);
        ledger.apply(&mark(Step::Queued, &resolved, "b", 20));
        ledger.apply(&mark(Step::Withheld, &resolved, "b", 20));
        assert!(ledger.delivered, "a withheld resolution is settled");
        assert_eq!(ledger.heard_firing_late().count(), 0);
        // A withheld mark from another node than the claimant settles nothing.
        let mut other = Ledger::default();
        other.apply(&mark(Step::Queued, &resolved, "b", 20));
        other.apply(&mark(Step::Withheld, &resolved, "c", 21));
        assert!(!other.delivered);

        // The isolated node's firing reaches one sink late, after the heal:
        // that sink, and only it, is owed the resolution.
        ledger.apply(&delivered_to(&firing, "hook", 30));
        assert_eq!(ledger.heard_firing().collect::<Vec<_>>(), ["hook"]);
        assert_eq!(ledger.heard_firing_late().collect::<Vec<_>>(), ["hook"]);
        assert_eq!(
            (ledger.generation, ledger.sent()),
            (2, AlertState::Resolved)
        );
        // Re-sent under its generation: undelivered until delivered.
        ledger.apply(&mark(Step::Queued, &resolved, "b", 31));
        assert!(!ledger.delivered);
        assert_eq!(
            ledger.heard_firing_late().count(),
            0,
            "the new claim covers it"
        );
        ledger.apply(&delivered_to(&resolved, "hook", 32));
        assert!(ledger.delivered);
        assert_eq!(ledger.heard_firing().count(), 0);
    }
}
