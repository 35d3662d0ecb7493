//! One ordered queue for every timer of a gossip node.
//!
//! A task per timer lets two timers due at the same instant run in either
//! order; foca's probe cycle breaks when `ProbeRandomMember` overtakes the
//! `SendIndirectProbe` of the same cycle (foca issue #26). A single heap
//! ordered by (deadline, foca's own timer order, insertion) cannot.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

use foca::Timer;

use super::identity::NodeId;

/// What a timer does when it fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Task {
    /// Hand back to foca.
    Foca(Timer<NodeId>),
    /// Ask the suspicion tracker whether a held `ChangeSuspectToDown` is
    /// due; its deadline moves as confirmations arrive.
    SuspicionDue {
        subject: NodeId,
        incarnation: foca::Incarnation,
    },
    /// Our own periodic work: suspect polling, config resizing.
    Housekeeping,
    /// Start a full-state exchange with a random member.
    PushPull,
}

impl Task {
    fn cmp_same_deadline(&self, other: &Self) -> Ordering {
        match (self, other) {
            // foca's Ord puts SendIndirectProbe before ProbeRandomMember.
            (Task::Foca(a), Task::Foca(b)) => a.cmp(b),
            (Task::Foca(_), _) => Ordering::Less,
            (_, Task::Foca(_)) => Ordering::Greater,
            _ => Ordering::Equal,
        }
    }
}

/// A timer that came due.
#[derive(Debug)]
pub(crate) struct Due {
    pub task: Task,
    /// When it should have fired; `now - deadline` is how late we are.
    pub deadline: Duration,
    /// The delay it was scheduled with, to re-arm it after a stall.
    pub delay: Duration,
}

#[derive(Debug)]
struct Entry {
    deadline: Duration,
    seq: u64,
    delay: Duration,
    task: Task,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest first.
        other
            .deadline
            .cmp(&self.deadline)
            .then_with(|| other.task.cmp_same_deadline(&self.task))
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Entry>,
    next_seq: u64,
}

impl TimerQueue {
    pub fn schedule(&mut self, now: Duration, delay: Duration, task: Task) {
        self.schedule_at(now + delay, delay, task);
    }

    pub fn schedule_at(&mut self, deadline: Duration, delay: Duration, task: Task) {
        self.next_seq += 1;
        self.heap.push(Entry {
            deadline,
            seq: self.next_seq,
            delay,
            task,
        });
    }

    pub fn next_deadline(&self) -> Option<Duration> {
        self.heap.peek().map(|entry| entry.deadline)
    }

    /// The earliest timer whose deadline is at or before `now`.
    pub fn pop_due(&mut self, now: Duration) -> Option<Due> {
        if self.heap.peek()?.deadline > now {
            return None;
        }
        let entry = self.heap.pop().expect("peeked just above");
        Some(Due {
            task: entry.task,
            deadline: entry.deadline,
            delay: entry.delay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fires_in_deadline_order_then_insertion_order() {
        let mut queue = TimerQueue::default();
        queue.schedule(ms(0), ms(30), Task::PushPull);
        queue.schedule(ms(0), ms(10), Task::Housekeeping);
        queue.schedule(ms(0), ms(30), Task::Housekeeping);
        assert_eq!(queue.next_deadline(), Some(ms(10)));
        assert!(queue.pop_due(ms(9)).is_none());
        let order: Vec<Task> = std::iter::from_fn(|| queue.pop_due(ms(100)))
            .map(|due| due.task)
            .collect();
        assert_eq!(
            order,
            vec![Task::Housekeeping, Task::PushPull, Task::Housekeeping]
        );
        assert!(queue.next_deadline().is_none());
    }

    #[test]
    fn indirect_probe_runs_before_next_probe_when_both_are_due() {
        // The exact situation of foca issue #26: the runtime fell behind and
        // both timers of one probe cycle are due in the same turn.
        let mut queue = TimerQueue::default();
        queue.schedule(ms(0), ms(500), Task::Foca(Timer::ProbeRandomMember(0)));
        queue.schedule(
            ms(0),
            ms(200),
            Task::Foca(Timer::SendIndirectProbe {
                probed_id: NodeId::seed("127.0.0.1:1".parse().expect("valid literal")),
                token: 0,
            }),
        );
        let first = queue.pop_due(ms(10_000)).expect("both are due");
        assert!(matches!(
            first.task,
            Task::Foca(Timer::SendIndirectProbe { .. })
        ));
        assert_eq!(first.delay, ms(200));
    }

    #[test]
    fn same_deadline_foca_order_wins_over_insertion_order() {
        let mut queue = TimerQueue::default();
        queue.schedule_at(ms(5), ms(5), Task::Foca(Timer::ProbeRandomMember(0)));
        queue.schedule_at(
            ms(5),
            ms(5),
            Task::Foca(Timer::SendIndirectProbe {
                probed_id: NodeId::seed("127.0.0.1:1".parse().expect("valid literal")),
                token: 0,
            }),
        );
        let first = queue.pop_due(ms(5)).expect("due");
        assert!(matches!(
            first.task,
            Task::Foca(Timer::SendIndirectProbe { .. })
        ));
    }
}
