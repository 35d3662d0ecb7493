//! Whether this node's view of its lost members is the cluster's or its
//! own: a node cut off from the others (the small side of a split, its own
//! probes failing) records that it was cut off instead of their Downs.

use starling_gossip::{MemberState, MemberView, MembershipView};
use starling_history::{EventKind, NewEvent};

/// Losses this close together are one episode when judging a cut-off.
pub(super) const LOSS_SPAN_MS: u64 = 15_000;
/// A Down heard of only counts as a loss once its subject has stayed down
/// this long. At a heal, the subjects of the cut-off side's Downs learn of
/// them from the same traffic and renew within a round trip (60 to 160 ms
/// in the netns tests on a loaded machine); a member on the other side of
/// a split never does.
const HEARD_DOWN_STANDS_MS: u64 = 1_000;
/// While this node's view is in doubt, a Down waits to be judged, up to
/// `MAX_HOLD`. It is in doubt while its own probes fail (Lifeguard's score
/// at least this) and while a Down it only heard of is younger than
/// `HEARD_DOWN_STANDS_MS`. A node on the small side of a split loses the
/// other side one probe at a time, its failing probes stretch its
/// timeouts, and its partner's Downs reach it first: on a loaded machine,
/// five nodes split 2/3 took 5 s to lose the third member, while the
/// first Down's settle ended after 2 s, with the view still looking like
/// a majority's.
const HOLD_WHILE_FAILING: u32 = 2;
/// Lifeguard's score when this node's own probes keep failing: a lone dead
/// member raises it by one and the next good probe lowers it again, while
/// a node cut off from everyone saturates it (8) within a few seconds. Not
/// lower: a node on the majority side that is merely busy stalls its own
/// timers (+2 each) and must still record what it lost.
const FAILING_PROBES: u32 = 6;

/// Whether this node's view may yet turn out to be a cut-off one: its own
/// probes are failing, or a Down it only heard of has not yet stood or
/// been renewed (see `HOLD_WHILE_FAILING`).
pub(super) fn in_doubt(view: &MembershipView, now_unix_ms: u64) -> bool {
    view.local_health >= HOLD_WHILE_FAILING
        || view.members.iter().any(|m| heard_only(m, now_unix_ms))
}

/// A Down this node only heard of (never suspect here) is another node's
/// view until its subject has had the time to renew: at a heal, the
/// cut-off side's Downs of the majority arrive by gossip, and must not make
/// the majority look cut off.
fn heard_only(member: &MemberView, now_unix_ms: u64) -> bool {
    member.state == MemberState::Down
        && !member.suspected_before_down
        && now_unix_ms.saturating_sub(member.since_unix_ms) < HEARD_DOWN_STANDS_MS
}

/// The members this node lost lately, when its view of them is its own
/// rather than the cluster's: it lost two or more within one span and is
/// not on a majority side, or its own probes keep failing. `None` when its
/// view stands for the cluster's.
pub(super) fn cut_off(view: &MembershipView, now_unix_ms: u64) -> Option<Vec<String>> {
    let heard_only = |m: &&MemberView| heard_only(m, now_unix_ms);
    let known = 1 + view
        .members
        .iter()
        .filter(|m| m.state != MemberState::Left)
        .count();
    let alive = 1 + view
        .members
        .iter()
        .filter(|m| m.state == MemberState::Alive || heard_only(m))
        .count();
    let mut lost: Vec<String> = view
        .members
        .iter()
        .filter(|m| matches!(m.state, MemberState::Down | MemberState::Suspect))
        .filter(|m| !heard_only(m))
        .filter(|m| now_unix_ms.saturating_sub(m.since_unix_ms) <= LOSS_SPAN_MS)
        .map(|m| m.id.name.clone())
        .collect();
    let minority = lost.len() >= 2 && alive * 2 <= known;
    let failing = view.local_health >= FAILING_PROBES && !lost.is_empty();
    if !(minority || failing) {
        return None;
    }
    lost.sort();
    Some(lost)
}

/// One event for the episode, filed under this node: what it lost, and
/// that those members' downs are its view, not recorded as facts.
pub(super) fn cut_off_event(view: &MembershipView, lost: &[String], at_unix_ms: u64) -> NewEvent {
    let me = &view.me;
    let others = view
        .members
        .iter()
        .filter(|m| m.state != MemberState::Left)
        .count();
    const NAMED: usize = 10;
    let mut names = lost[..lost.len().min(NAMED)].join(", ");
    if lost.len() > NAMED {
        names.push_str(&format!(" and {} more", lost.len() - NAMED));
    }
    NewEvent {
        at_unix_ms,
        kind: EventKind::Membership,
        node: me.name.clone(),
        check: None,
        old_state: Some("alive".to_owned()),
        new_state: Some("isolated".to_owned()),
        message: format!(
            "{} lost contact with {} of {others} members ({names}): it was cut off, or its \
             own probes were failing; their downs are not recorded from its view",
            me.name,
            lost.len()
        ),
        dedupe_key: Some(format!(
            "membership:{}:{}:isolated:{at_unix_ms}",
            me.name, me.incarnation
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    fn view(me: &str, others: &[(&str, MemberState)], local_health: u32) -> MembershipView {
        let mut view = MembershipView::for_tests(me, others);
        for member in &mut view.members {
            member.since_unix_ms = NOW - 1_000;
        }
        view.local_health = local_health;
        view
    }

    /// Marks `name`'s Down as heard of only, `age_ms` old.
    fn heard_of_only(view: &mut MembershipView, name: &str, age_ms: u64) {
        let member = view
            .members
            .iter_mut()
            .find(|m| m.id.name == name)
            .expect("the view names the member");
        member.suspected_before_down = false;
        member.since_unix_ms = NOW - age_ms;
    }

    #[test]
    fn a_lone_node_that_lost_everyone_is_cut_off_and_the_majority_is_not() {
        use MemberState::{Alive, Down, Suspect};
        let isolated = view(
            "n3",
            &[("n1", Down), ("n2", Down), ("n4", Suspect), ("n5", Down)],
            0,
        );
        assert_eq!(
            cut_off(&isolated, NOW),
            Some(vec!["n1".into(), "n2".into(), "n4".into(), "n5".into()])
        );
        let majority = view(
            "n1",
            &[("n2", Alive), ("n3", Down), ("n4", Alive), ("n5", Alive)],
            0,
        );
        assert_eq!(cut_off(&majority, NOW), None);
    }

    #[test]
    fn one_loss_is_a_fact_even_in_a_pair_unless_our_probes_fail() {
        use MemberState::{Alive, Down};
        // Two nodes, one crashed: the survivor cannot tell, and records it.
        assert_eq!(cut_off(&view("a", &[("b", Down)], 0), NOW), None);
        assert_eq!(cut_off(&view("a", &[("b", Down)], 1), NOW), None);
        // Its own probes failing: its losses say more about it.
        let failing = view(
            "a",
            &[("b", Down), ("c", Alive), ("d", Alive)],
            FAILING_PROBES,
        );
        assert_eq!(cut_off(&failing, NOW), Some(vec!["b".into()]));
    }

    #[test]
    fn old_losses_and_left_members_do_not_make_a_cut_off() {
        use MemberState::{Alive, Down, Left};
        let mut old = view("a", &[("b", Down), ("c", Down), ("d", Alive)], 0);
        for member in &mut old.members {
            member.since_unix_ms = NOW - LOSS_SPAN_MS - 1;
        }
        assert_eq!(
            cut_off(&old, NOW),
            None,
            "losses from long ago were judged then"
        );
        let left = view(
            "a",
            &[("b", Left), ("c", Left), ("d", Alive), ("e", Down)],
            0,
        );
        assert_eq!(cut_off(&left, NOW), None);
    }

    #[test]
    fn downs_heard_of_only_do_not_make_the_majority_look_cut_off() {
        use MemberState::Down;
        // At a heal, the minority's Downs of n2 and n4 reach n3 by gossip.
        let mut healing = view(
            "n3",
            &[("n0", Down), ("n1", Down), ("n2", Down), ("n4", Down)],
            0,
        );
        heard_of_only(&mut healing, "n2", 100);
        heard_of_only(&mut healing, "n4", 100);
        assert_eq!(cut_off(&healing, NOW), None);
    }

    /// Issue: on the small side of a 2/3 split, n0 declared n2 down before
    /// n1's own probes got to it; n1 heard of that Down only, counted n2
    /// as alive, never saw itself cut off, and recorded n2 down from its
    /// view (or recorded nothing of the episode).
    #[test]
    fn downs_heard_of_only_that_stand_make_the_minority_cut_off() {
        use MemberState::{Alive, Down};
        let mut small_side = view(
            "n1",
            &[("n0", Alive), ("n2", Down), ("n3", Down), ("n4", Down)],
            0,
        );
        heard_of_only(&mut small_side, "n2", HEARD_DOWN_STANDS_MS);
        assert_eq!(
            cut_off(&small_side, NOW),
            Some(vec!["n2".into(), "n3".into(), "n4".into()]),
            "n2 has stayed down for 1 s"
        );
        heard_of_only(&mut small_side, "n2", HEARD_DOWN_STANDS_MS - 1);
        assert_eq!(
            cut_off(&small_side, NOW),
            None,
            "a Down heard of a moment ago may be the heal's"
        );
    }

    #[test]
    fn failing_probes_and_fresh_downs_heard_of_only_put_the_view_in_doubt() {
        use MemberState::{Alive, Down};
        let mut small_side = view("n1", &[("n0", Alive), ("n4", Down)], 0);
        heard_of_only(&mut small_side, "n4", 100);
        assert!(in_doubt(&small_side, NOW), "n4 may renew yet");
        heard_of_only(&mut small_side, "n4", HEARD_DOWN_STANDS_MS);
        assert!(!in_doubt(&small_side, NOW), "n4 stayed down: a loss");
        small_side.local_health = HOLD_WHILE_FAILING;
        assert!(in_doubt(&small_side, NOW));
    }

    #[test]
    fn the_cut_off_event_names_the_node_and_what_it_lost() {
        use MemberState::Down;
        let isolated = view("n3", &[("n1", Down), ("n2", Down)], 0);
        let lost = cut_off(&isolated, NOW).expect("cut off");
        let event = cut_off_event(&isolated, &lost, NOW);
        assert_eq!(event.node, "n3");
        assert_eq!(event.new_state.as_deref(), Some("isolated"));
        assert!(
            event
                .message
                .starts_with("n3 lost contact with 2 of 2 members (n1, n2)"),
            "{}",
            event.message
        );
    }
}
