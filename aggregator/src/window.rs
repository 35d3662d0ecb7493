//! An ordinary node's window of the cluster log: the newest events the
//! aggregators took in, kept in memory and bounded, so that with every
//! aggregator down the node still answers what happened lately and not
//! only its own rows.
//!
//! In memory, not in the history database: rows there count towards the
//! node's replication state, and a window is not a replica. It is a
//! sample of the newest (at most `WINDOW_BATCH_ROWS` per ask), refilled
//! from the aggregators within one ask after a restart.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use starling_history::{Event, EventFilter, sort_newest_first};

use crate::cursor::Cursor;
use crate::wire::WindowReply;

/// Events the window holds: about 300 bytes each in memory, so a few
/// hundred kilobytes. At one transition per node per minute that is the
/// last 10 minutes of a 100-node cluster, the last minute of a 1,000-node
/// one.
pub const WINDOW_ROWS: usize = 1_000;

/// The newest events of the cluster log this node has seen, shared by the
/// puller that fills it and the history fallback that reads it.
#[derive(Clone, Debug, Default)]
pub struct RecentWindow {
    inner: Arc<Mutex<Held>>,
}

#[derive(Debug, Default)]
struct Held {
    /// Oldest arrival first.
    events: VecDeque<Event>,
    /// (origin, seq) of every event held: an event arrives once however
    /// many aggregators send it.
    keys: HashSet<(String, u64)>,
    /// Where the next ask starts, in the arrival order of the aggregator
    /// that answered last.
    cursor: Cursor,
}

impl RecentWindow {
    /// The events matching `filter`, in its order, at most its limit.
    pub fn page(&self, filter: &EventFilter) -> Vec<Event> {
        let held = self.held();
        let mut picked: Vec<Event> = held
            .events
            .iter()
            .filter(|e| filter.matches(e))
            .cloned()
            .collect();
        sort_newest_first(&mut picked);
        picked.truncate(filter.limit);
        picked
    }

    /// When the oldest event held happened, if any is: the window says
    /// nothing of the time before.
    pub fn oldest_at(&self) -> Option<u64> {
        self.held().events.iter().map(|e| e.at_unix_ms).min()
    }

    pub fn len(&self) -> usize {
        self.held().events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn cursor(&self) -> Cursor {
        self.held().cursor.clone()
    }

    /// Takes an aggregator's answer: new events in, the oldest out past
    /// [`WINDOW_ROWS`], and the place to ask after next.
    pub(crate) fn take(&self, reply: WindowReply) {
        let mut held = self.held();
        for event in reply.events {
            if held.keys.insert((event.origin.clone(), event.seq)) {
                held.events.push_back(event);
            }
        }
        while held.events.len() > WINDOW_ROWS {
            if let Some(oldest) = held.events.pop_front() {
                held.keys.remove(&(oldest.origin, oldest.seq));
            }
        }
        held.cursor = Cursor {
            epoch: Some(reply.epoch),
            after: reply.through,
        };
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // Every holder only pushes, pops and clones under the lock; a panic
        // there leaves the window consistent, so a poisoned lock is usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_history::EventKind;

    fn event(origin: &str, seq: u64, at_unix_ms: u64, node: &str) -> Event {
        Event {
            origin: origin.to_owned(),
            seq,
            observer: node.to_owned(),
            at_unix_ms,
            kind: EventKind::Check,
            node: node.to_owned(),
            check: Some("dns".to_owned()),
            old_state: Some("ok".to_owned()),
            new_state: Some("critical".to_owned()),
            message: format!("{origin} {seq}"),
            dedupe_key: None,
        }
    }

    fn reply(events: Vec<Event>, through: u64) -> WindowReply {
        WindowReply {
            aggregator: "agg-0".to_owned(),
            epoch: "agg-0#01".to_owned(),
            events,
            through,
        }
    }

    #[test]
    fn holds_the_newest_arrivals_once_each_up_to_its_bound() {
        let window = RecentWindow::default();
        let first: Vec<Event> = (1..=WINDOW_ROWS as u64)
            .map(|seq| event("w1#01", seq, seq, "w1"))
            .collect();
        window.take(reply(first.clone(), 7));
        // Another aggregator sends some of the same, and three new.
        let mut again = first[..10].to_vec();
        again.extend((1..=3).map(|seq| event("w2#01", seq, 5_000 + seq, "w2")));
        window.take(reply(again, 9));

        assert_eq!(window.len(), WINDOW_ROWS);
        assert_eq!(
            window.oldest_at(),
            Some(4),
            "the three oldest arrivals went"
        );
        assert_eq!(
            window.cursor(),
            Cursor {
                epoch: Some("agg-0#01".to_owned()),
                after: 9
            }
        );
    }

    #[test]
    fn pages_filter_and_order_as_the_history_does() {
        let window = RecentWindow::default();
        window.take(reply(
            vec![
                event("w1#01", 1, 100, "w1"),
                event("w2#01", 1, 300, "w2"),
                event("w1#01", 2, 200, "w1"),
            ],
            3,
        ));
        let w1 = EventFilter {
            node: Some("w1".to_owned()),
            ..EventFilter::default()
        };
        let seqs: Vec<u64> = window.page(&w1).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [2, 1], "newest first, w1's only");
        let newest = EventFilter {
            limit: 1,
            ..EventFilter::default()
        };
        assert_eq!(window.page(&newest)[0].origin, "w2#01");
    }
}
