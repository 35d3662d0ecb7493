//! Our view of every other member, and the typed transitions between
//! states that the rest of the agent stores and alerts on.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::identity::NodeId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberState {
    Alive,
    /// A probe failed; the member has until its suspicion times out to
    /// refute.
    Suspect,
    /// Declared down by the cluster.
    Down,
    /// Announced its own departure (SIGTERM): not a failure.
    Left,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
            MemberState::Left => "left",
        }
    }

    pub fn is_active(self) -> bool {
        matches!(self, MemberState::Alive | MemberState::Suspect)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transition {
    /// First seen alive.
    Joined,
    Suspected,
    /// Refuted a suspicion.
    Recovered,
    /// Declared down.
    Failed,
    /// Left on purpose.
    Left,
    /// Came back with a new incarnation (restart, or renewal after a false
    /// Down).
    Rejoined,
}

impl Transition {
    pub const ALL: [Transition; 6] = [
        Transition::Joined,
        Transition::Suspected,
        Transition::Recovered,
        Transition::Failed,
        Transition::Left,
        Transition::Rejoined,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Joined => "joined",
            Transition::Suspected => "suspect",
            Transition::Recovered => "recovered",
            Transition::Failed => "down",
            Transition::Left => "left",
            Transition::Rejoined => "rejoined",
        }
    }
}

/// One membership transition as this node observed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipEvent {
    pub member: NodeId,
    pub transition: Transition,
    /// Monotonic time of the caller's clock when it was observed.
    pub at: Duration,
    /// For a Down: see `MemberRecord::suspected_before_down`.
    pub suspected_before_down: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    pub id: NodeId,
    pub state: MemberState,
    /// When `state` began, on the caller's monotonic clock.
    pub since: Duration,
    /// This node saw the member suspect for at least
    /// `MemberTable::checked_suspicion` before it went down: a Down it
    /// could check, since a reachable member refutes well within that. A
    /// Down heard of only (a rumor from a node that was cut off, a
    /// push-pull after a missed leave rumor) is someone else's view, and so
    /// is one whose suspicion arrived a moment before it: at a heal, the
    /// cut-off side's Suspect and Down of a healthy member arrive together.
    pub suspected_before_down: bool,
}

/// Bounded so a stream of leave rumors for members we never see go down
/// cannot grow without limit.
const REMEMBERED_LEAVERS: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct MemberTable {
    by_addr: HashMap<SocketAddr, MemberRecord>,
    leaving: HashSet<(SocketAddr, u64)>,
    events: Vec<MembershipEvent>,
    /// Records in state Suspect, kept by `set` (the only place a state
    /// changes): while there are none, the housekeeping pass needs no
    /// lookup for a member foca counts alive.
    suspects: usize,
    /// How long a suspicion must have lasted here for the Down that ends
    /// it to count as checked (see `MemberRecord::suspected_before_down`).
    checked_suspicion: Duration,
}

impl MemberTable {
    pub fn new(checked_suspicion: Duration) -> Self {
        MemberTable {
            checked_suspicion,
            ..MemberTable::default()
        }
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<&MemberRecord> {
        self.by_addr.get(addr)
    }

    pub fn iter(&self) -> impl Iterator<Item = &MemberRecord> {
        self.by_addr.values()
    }

    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    /// Whether any member is suspect here.
    pub fn has_suspects(&self) -> bool {
        self.suspects > 0
    }

    pub fn take_events(&mut self) -> Vec<MembershipEvent> {
        std::mem::take(&mut self.events)
    }

    /// foca's `MemberUp`.
    pub fn up(&mut self, id: &NodeId, now: Duration) {
        let transition = match self.by_addr.get(&id.addr) {
            None => Transition::Joined,
            Some(record) if !record.state.is_active() => Transition::Rejoined,
            Some(_) => {
                self.set(id, MemberState::Alive, now, None);
                return;
            }
        };
        self.set(id, MemberState::Alive, now, Some(transition));
    }

    /// foca's `MemberDown`.
    pub fn down(&mut self, id: &NodeId, now: Duration) {
        let (state, transition) = if self.leaving.remove(&(id.addr, id.incarnation)) {
            (MemberState::Left, Transition::Left)
        } else {
            (MemberState::Down, Transition::Failed)
        };
        let suspected = self.by_addr.get(&id.addr).is_some_and(|r| {
            r.id == *id
                && r.state == MemberState::Suspect
                && now.saturating_sub(r.since) >= self.checked_suspicion
        });
        self.set(id, state, now, None);
        if let Some(record) = self.by_addr.get_mut(&id.addr) {
            record.suspected_before_down = suspected;
        }
        self.events.push(MembershipEvent {
            member: id.clone(),
            transition,
            at: now,
            suspected_before_down: suspected,
        });
    }

    /// foca's `Rename`: a newer incarnation replaced an older one at the
    /// same address. When the old one was still active this is a restart
    /// faster than failure detection, unless the same process only changed
    /// its metadata; otherwise the `MemberUp` that follows reports the
    /// rejoin.
    pub fn renamed(&mut self, new: &NodeId, now: Duration) {
        let Some(record) = self.by_addr.get_mut(&new.addr) else {
            return;
        };
        let same_process = new.same_process_as(&record.id);
        record.id = new.clone();
        // A live process publishing new metadata is no event at all.
        if record.state.is_active() && !same_process {
            self.set(new, MemberState::Alive, now, Some(Transition::Rejoined));
        }
    }

    /// We renewed our own identity after the cluster declared us down:
    /// reported like another member's rejoin, so that the layers above record
    /// it (only we know it happened to us).
    pub fn renewed_self(&mut self, id: &NodeId, now: Duration) {
        self.events.push(MembershipEvent {
            member: id.clone(),
            transition: Transition::Rejoined,
            at: now,
            suspected_before_down: false,
        });
    }

    /// A state read from foca's full membership, to catch the
    /// Alive ⇄ Suspect changes foca does not notify.
    pub fn observe(&mut self, id: &NodeId, suspect: bool, now: Duration) {
        let Some(record) = self.by_addr.get(&id.addr) else {
            return;
        };
        if record.id != *id {
            return;
        }
        match (record.state, suspect) {
            (MemberState::Alive, true) => {
                self.set(id, MemberState::Suspect, now, Some(Transition::Suspected))
            }
            (MemberState::Suspect, false) => {
                self.set(id, MemberState::Alive, now, Some(Transition::Recovered))
            }
            _ => {}
        }
    }

    pub fn mark_leaving(&mut self, who: &NodeId, now: Duration) {
        // The leave's Down update can overtake its rumor (a member busy or
        // unlucky in gossip order hears of the Down first): a Down of this
        // very identity was the leave, and is corrected to it.
        if self
            .by_addr
            .get(&who.addr)
            .is_some_and(|r| r.id == *who && r.state == MemberState::Down)
        {
            self.set(who, MemberState::Left, now, Some(Transition::Left));
            return;
        }
        if self.leaving.len() >= REMEMBERED_LEAVERS {
            self.leaving.clear();
        }
        self.leaving.insert((who.addr, who.incarnation));
    }

    /// foca forgot a long-down member (`remove_down_after`).
    pub fn retain(&mut self, mut keep: impl FnMut(&SocketAddr) -> bool) {
        self.by_addr
            .retain(|addr, record| record.state.is_active() || keep(addr));
    }

    fn set(
        &mut self,
        id: &NodeId,
        state: MemberState,
        now: Duration,
        transition: Option<Transition>,
    ) {
        let was_suspect = self
            .by_addr
            .get(&id.addr)
            .is_some_and(|r| r.state == MemberState::Suspect);
        self.suspects -= usize::from(was_suspect);
        self.suspects += usize::from(state == MemberState::Suspect);
        let record = self.by_addr.entry(id.addr).or_insert_with(|| MemberRecord {
            id: id.clone(),
            state,
            since: now,
            suspected_before_down: false,
        });
        if record.state != state || record.id != *id {
            record.since = now;
        }
        record.id = id.clone();
        record.state = state;
        if let Some(transition) = transition {
            self.events.push(MembershipEvent {
                member: id.clone(),
                transition,
                at: now,
                suspected_before_down: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use foca::Identity;

    use super::*;
    use crate::identity::NodeIdentity;

    fn id(n: u8, incarnation: u64) -> NodeId {
        NodeIdentity {
            name: format!("n{n}"),
            incarnation,
            ..NodeIdentity::seed(SocketAddr::from(([127, 0, 0, n], 7946)))
        }
        .into()
    }

    fn transitions(table: &mut MemberTable) -> Vec<Transition> {
        table
            .take_events()
            .into_iter()
            .map(|e| e.transition)
            .collect()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// The count the housekeeping pass relies on follows every way a
    /// member enters and leaves suspicion.
    #[test]
    fn suspects_are_counted_through_every_change() {
        let mut table = MemberTable::default();
        let count = |t: &MemberTable| {
            let counted = t.iter().filter(|r| r.state == MemberState::Suspect).count();
            assert_eq!(t.has_suspects(), counted > 0);
            counted
        };
        table.up(&id(2, 1), secs(0));
        table.up(&id(3, 1), secs(0));
        assert_eq!(count(&table), 0);
        table.observe(&id(2, 1), true, secs(1));
        table.observe(&id(3, 1), true, secs(1));
        table.observe(&id(3, 1), true, secs(2));
        assert_eq!(count(&table), 2);
        table.observe(&id(3, 1), false, secs(3));
        assert_eq!(count(&table), 1);
        table.down(&id(2, 1), secs(4));
        assert_eq!(count(&table), 0);
        table.observe(&id(3, 1), true, secs(5));
        let restarted = id(3, 1).renew().expect("renews");
        table.renamed(&restarted, secs(6));
        count(&table);
        table.up(&restarted, secs(7));
        table.down(&restarted, secs(8));
        table.retain(|_| false);
        assert_eq!(count(&table), 0);
        assert_eq!(table.len(), 0, "only the down are forgotten, and all are");
    }

    #[test]
    fn failure_and_rejoin_after_restart() {
        let mut table = MemberTable::default();
        table.up(&id(2, 1), secs(0));
        table.observe(&id(2, 1), true, secs(1));
        table.down(&id(2, 1), secs(2));
        let restarted = id(2, 1).renew().expect("renews");
        table.renamed(&restarted, secs(3));
        table.up(&restarted, secs(3));
        assert_eq!(
            transitions(&mut table),
            vec![
                Transition::Joined,
                Transition::Suspected,
                Transition::Failed,
                Transition::Rejoined
            ]
        );
        let record = table.get(&restarted.addr).expect("known");
        assert_eq!(record.state, MemberState::Alive);
        assert_eq!(record.id.incarnation, 2);
        assert_eq!(record.since, secs(3));
    }

    #[test]
    fn refuted_suspicion_is_a_recovery() {
        let mut table = MemberTable::default();
        table.up(&id(2, 1), secs(0));
        table.observe(&id(2, 1), true, secs(1));
        table.observe(&id(2, 1), true, secs(1));
        table.observe(&id(2, 1), false, secs(2));
        assert_eq!(
            transitions(&mut table),
            vec![
                Transition::Joined,
                Transition::Suspected,
                Transition::Recovered
            ]
        );
    }

    #[test]
    fn announced_departure_is_a_leave_not_a_failure() {
        let mut table = MemberTable::default();
        table.up(&id(3, 1), secs(0));
        table.mark_leaving(&id(3, 1), secs(1));
        table.down(&id(3, 1), secs(1));
        assert_eq!(
            transitions(&mut table),
            vec![Transition::Joined, Transition::Left]
        );
        assert_eq!(
            table.get(&id(3, 1).addr).map(|r| r.state),
            Some(MemberState::Left)
        );
    }

    #[test]
    fn a_down_is_checked_here_only_when_it_was_suspect_here_first() {
        let mut table = MemberTable::default();
        table.up(&id(3, 1), secs(0));
        table.observe(&id(3, 1), true, secs(1));
        table.down(&id(3, 1), secs(2));
        assert_eq!(
            table.get(&id(3, 1).addr).map(|r| r.suspected_before_down),
            Some(true)
        );
        table.up(&id(4, 1), secs(0));
        table.down(&id(4, 1), secs(2));
        assert_eq!(
            table.get(&id(4, 1).addr).map(|r| r.suspected_before_down),
            Some(false)
        );
    }

    /// Issue: at a heal, a majority node heard the cut-off side's Suspect
    /// and Down of a healthy member a moment apart, took the Down for one
    /// it had checked, and recorded the member down in every history.
    #[test]
    fn a_suspicion_that_arrived_just_before_the_down_was_not_checked_here() {
        let mut table = MemberTable::new(Duration::from_secs(1));
        table.up(&id(3, 1), secs(0));
        table.observe(&id(3, 1), true, secs(10));
        table.down(&id(3, 1), secs(10) + Duration::from_millis(50));
        table.up(&id(4, 1), secs(0));
        table.observe(&id(4, 1), true, secs(10));
        table.down(&id(4, 1), secs(12));
        let checked =
            |table: &MemberTable, n| table.get(&id(n, 1).addr).map(|r| r.suspected_before_down);
        assert_eq!(checked(&table, 3), Some(false));
        assert_eq!(checked(&table, 4), Some(true));
        let downs: Vec<(String, bool)> = table
            .take_events()
            .into_iter()
            .filter(|e| e.transition == Transition::Failed)
            .map(|e| (e.member.name.clone(), e.suspected_before_down))
            .collect();
        assert_eq!(downs, vec![("n3".into(), false), ("n4".into(), true)]);
    }

    /// Issue: one agent of 49 logged *down* for a graceful leave, under
    /// load: the Down update overtook the leave rumor there.
    #[test]
    fn a_leave_rumor_after_the_down_turns_it_into_a_leave() {
        let mut table = MemberTable::default();
        table.up(&id(3, 1), secs(0));
        table.down(&id(3, 1), secs(1));
        table.mark_leaving(&id(3, 1), secs(2));
        assert_eq!(
            transitions(&mut table),
            vec![Transition::Joined, Transition::Failed, Transition::Left]
        );
        assert_eq!(
            table.get(&id(3, 1).addr).map(|r| r.state),
            Some(MemberState::Left)
        );
        // Another identity at that address (a restart) is not corrected.
        table.up(&id(5, 1), secs(3));
        table.down(&id(5, 1), secs(4));
        table.mark_leaving(&id(5, 2), secs(5));
        assert_eq!(
            table.get(&id(5, 1).addr).map(|r| r.state),
            Some(MemberState::Down)
        );
    }

    #[test]
    fn restart_faster_than_detection_is_a_rejoin() {
        let mut table = MemberTable::default();
        table.up(&id(4, 1), secs(0));
        table.renamed(&id(4, 1 + crate::incarnation::RESTART_STEP), secs(1));
        assert_eq!(
            transitions(&mut table),
            vec![Transition::Joined, Transition::Rejoined]
        );
    }

    #[test]
    fn new_metadata_from_the_same_process_is_no_event() {
        let mut table = MemberTable::default();
        table.up(&id(4, 1), secs(0));
        let mut next = id(4, 2);
        next.make_mut().meta.services[1] = Some("10.244.0.9:7949".parse().expect("literal"));
        table.renamed(&next, secs(1));
        assert_eq!(transitions(&mut table), vec![Transition::Joined]);
        assert_eq!(table.get(&next.addr).map(|r| &r.id), Some(&next));
    }
}
