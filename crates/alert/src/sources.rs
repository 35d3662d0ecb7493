//! The alert sources, judged from one node's gossip view and status
//! roll-up: members down, suspect too long or lost together (a partition),
//! nodes degraded, cluster-scope checks critical. Pure: the caller passes
//! the time, so every rule is tested without a cluster or a clock.

use std::time::Duration;

use starling_model::{NodeHealth, Status, StatusResponse};

use starling_gossip::{MemberState, MemberView, MembershipView};

use super::flapping::{Flaps, node_flapping};
use super::model::{self, AlertKind, Observation};

/// At most this many lost members are named in a partition message; the
/// rest are counted. Keeps the message within the history's cap.
const NAMED_LOST_MEMBERS: usize = 10;

/// What the membership sources need to know beyond the view.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SourceConfig {
    /// A member suspect this long (without being declared down or
    /// refuting) raises a warning.
    pub suspect_after: Duration,
    /// Members declared down within this span of each other were lost
    /// "at once". A third of it is how long losses must pause before they
    /// are judged (see `losses_settled`).
    pub partition_window: Duration,
    /// A group lost at once is a partition when it is at least this share
    /// of the known members (and at least two).
    pub partition_fraction: f64,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            suspect_after: Duration::from_secs(10),
            partition_window: Duration::from_secs(15),
            partition_fraction: 0.3,
        }
    }
}

/// What a source concluded about one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Firing,
    Clear,
    /// Cannot tell from here (a check reported `unknown`, a member is
    /// counted in a partition alert): keep whatever was last sent.
    Unsure,
}

/// Members lost at once, as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// Sorted, so every node on the same side names it the same way.
    pub lost: Vec<String>,
    /// Members that are not gone, this node included.
    pub known: usize,
    /// This side holds more than half of the known members.
    pub majority: bool,
    /// When the first of the lost members went down, as seen here.
    pub began_at_unix_ms: Option<u64>,
}

/// Everything the sources see now. Keys that had fired and appear here no
/// more (a forgotten member, a healed partition) are resolved by the
/// caller with `unobserved`.
pub fn observe(
    view: &MembershipView,
    status: &StatusResponse,
    now_unix_ms: u64,
    settings: &SourceConfig,
    flaps: &Flaps,
) -> Vec<(Observation, Verdict)> {
    let partition = partition(view, settings);
    let settled = losses_settled(view, now_unix_ms, settings);
    let mut seen = Vec::new();
    for member in &view.members {
        // The minority side cannot tell who is really down; it reports
        // the partition and leaves the members in it to the majority.
        let in_minority_partition = partition
            .as_ref()
            .is_some_and(|p| !p.majority && p.lost.contains(&member.id.name));
        seen.push(node_down(member, in_minority_partition || !settled));
        seen.push(node_suspect(member, now_unix_ms, settings.suspect_after));
        seen.push(node_flapping(member, flaps, now_unix_ms));
    }
    match (&partition, settled) {
        (Some(partition), _) => {
            let (observation, verdict) = partition_observation(view, partition);
            let verdict = if settled { verdict } else { Verdict::Unsure };
            seen.push((observation, verdict));
        }
        // A partition that fired may be growing into a new shape: keep it.
        (None, false) => seen.push((
            observation(
                AlertKind::Partition,
                &side_of(view),
                None,
                None,
                "members are being lost; judged once the losses pause".to_owned(),
                None,
            ),
            Verdict::Unsure,
        )),
        (None, true) => {}
    }
    for node in &status.nodes {
        let verdict = match node.status {
            NodeHealth::Degraded => Verdict::Firing,
            NodeHealth::Healthy => Verdict::Clear,
            // Unreachable (and left) is the membership alerts' story;
            // unknown is no data.
            NodeHealth::Unreachable | NodeHealth::Left | NodeHealth::Unknown => Verdict::Unsure,
        };
        let message = match verdict {
            Verdict::Firing => format!("{} is degraded: {}", node.name, node.reasons.join("; ")),
            _ => format!("{} is {}", node.name, node.status),
        };
        seen.push((
            observation(
                AlertKind::NodeDegraded,
                &node.name,
                Some(&node.name),
                None,
                message,
                None,
            )
            .began_at(
                // Its earliest critical check is when it became degraded.
                node.checks
                    .iter()
                    .filter(|c| c.status == Status::Critical)
                    .map(|c| c.at_unix_ms)
                    .min(),
            ),
            verdict,
        ));
    }
    for check in &status.cluster_checks {
        let verdict = match check.status {
            Status::Critical => Verdict::Firing,
            Status::Ok | Status::Warning => Verdict::Clear,
            Status::Unknown => Verdict::Unsure,
        };
        let message = format!(
            "{} is {} (run on {}): {}",
            check.check, check.status, check.node, check.message
        );
        seen.push((
            observation(
                AlertKind::CheckCritical,
                &check.check,
                None,
                Some(&check.check),
                message,
                None,
            )
            .began_at(Some(check.at_unix_ms)),
            verdict,
        ));
    }
    seen
}

/// The resolution of a key that fired and that no source reports now.
pub fn unobserved(key: &str, kind: AlertKind, observer: &str) -> Observation {
    let what = key.split_once('/').map_or(key, |(_, what)| what);
    let (subject, check, message) = match kind {
        AlertKind::Partition => (None, None, "the partition healed".to_owned()),
        AlertKind::CheckCritical => (
            None,
            Some(what.to_owned()),
            format!("{what} is no longer reported by any node {observer} sees"),
        ),
        _ => (
            Some(what.to_owned()),
            None,
            format!("{what} is no longer a member {observer} knows of"),
        ),
    };
    Observation {
        key: key.to_owned(),
        kind,
        subject,
        check,
        message,
        agreeing: None,
        began_at_unix_ms: None,
    }
}

/// No member was declared down in the last third of the partition window.
/// Until then, losses may still be unfolding (failure detection takes
/// longer under load): a partition judged early would be judged twice,
/// once per shape, and a minority could still believe it is the majority
/// and report the members it is cut off from as down.
fn losses_settled(view: &MembershipView, now_unix_ms: u64, settings: &SourceConfig) -> bool {
    let settle = (settings.partition_window / 3).as_millis() as u64;
    view.members
        .iter()
        .filter(|m| m.state == MemberState::Down)
        .map(|m| m.since_unix_ms)
        .max()
        .is_none_or(|latest| now_unix_ms.saturating_sub(latest) >= settle)
}

/// A side of a partition, as the key of its alert: its first member by
/// name. Every node on the side names it alike, and it stays the same
/// while the side loses more of the others, so a partition that unfolds
/// over a few seconds is still one alert.
fn side_of(view: &MembershipView) -> String {
    format!("from-{}", first_on_side(view))
}

fn first_on_side(view: &MembershipView) -> &str {
    view.members
        .iter()
        .filter(|m| m.state.is_active())
        .map(|m| m.id.name.as_str())
        .chain([view.me.name.as_str()])
        .min()
        .expect("the chain holds this node")
}

/// Members declared down close together, if they are enough of the
/// cluster to call it a partition. The newest qualifying group wins: it
/// is the one still unfolding.
pub fn partition(view: &MembershipView, settings: &SourceConfig) -> Option<Partition> {
    let known = 1 + view
        .members
        .iter()
        .filter(|m| m.state != MemberState::Left)
        .count();
    let mut down: Vec<&MemberView> = view
        .members
        .iter()
        .filter(|m| m.state == MemberState::Down)
        .collect();
    down.sort_by_key(|m| m.since_unix_ms);
    let window = settings.partition_window.as_millis() as u64;
    let mut best: Option<&[&MemberView]> = None;
    for start in 0..down.len() {
        let first = down[start].since_unix_ms;
        let end = down[start..]
            .iter()
            .take_while(|m| m.since_unix_ms - first <= window)
            .count();
        let group = &down[start..start + end];
        if best.is_none_or(|b| group.len() >= b.len()) {
            best = Some(group);
        }
    }
    let group = best?;
    if group.len() < 2 || (group.len() as f64) < settings.partition_fraction * known as f64 {
        return None;
    }
    let mut lost: Vec<String> = group.iter().map(|m| m.id.name.clone()).collect();
    lost.sort();
    let alive = 1 + view.members.iter().filter(|m| m.state.is_active()).count();
    Some(Partition {
        lost,
        began_at_unix_ms: group.iter().map(|m| m.since_unix_ms).min(),
        known,
        majority: alive * 2 > known,
    })
}

/// `hold`: the member is down but not to be reported (yet) from here.
fn node_down(member: &MemberView, hold: bool) -> (Observation, Verdict) {
    let name = &member.id.name;
    let (verdict, message) = match member.state {
        // A Down heard of only (a missed leave rumor, a cut-off node's
        // view arriving after a heal) is left to the nodes that saw the
        // member fail; the alert's fallbacks cover for this one.
        MemberState::Down => (
            if hold || !member.suspected_before_down {
                Verdict::Unsure
            } else {
                Verdict::Firing
            },
            format!(
                "{name} ({}) is down: gossip declared it failed",
                member.id.addr
            ),
        ),
        MemberState::Left => (Verdict::Clear, format!("{name} left the cluster")),
        MemberState::Alive | MemberState::Suspect => (
            Verdict::Clear,
            format!("{name} is alive (incarnation {})", member.id.incarnation),
        ),
    };
    let agreeing = (verdict == Verdict::Firing).then_some(member.witnesses);
    (
        observation(
            AlertKind::NodeDown,
            name,
            Some(name),
            None,
            message,
            agreeing,
        )
        .began_at(Some(member.since_unix_ms)),
        verdict,
    )
}

fn node_suspect(member: &MemberView, now_unix_ms: u64, after: Duration) -> (Observation, Verdict) {
    let name = &member.id.name;
    let for_how_long = Duration::from_millis(now_unix_ms.saturating_sub(member.since_unix_ms));
    let (verdict, message) = match member.state {
        MemberState::Suspect if for_how_long >= after => (
            Verdict::Firing,
            format!(
                "{name} has been suspect for {}: probes fail but it is not declared down",
                humantime::format_duration(Duration::from_secs(for_how_long.as_secs()))
            ),
        ),
        MemberState::Suspect | MemberState::Alive => {
            (Verdict::Clear, format!("{name} answers probes again"))
        }
        MemberState::Down => (Verdict::Clear, format!("{name} was declared down")),
        MemberState::Left => (Verdict::Clear, format!("{name} left the cluster")),
    };
    let agreeing = (verdict == Verdict::Firing).then_some(member.witnesses);
    (
        observation(
            AlertKind::NodeSuspect,
            name,
            Some(name),
            None,
            message,
            agreeing,
        )
        .began_at(Some(member.since_unix_ms)),
        verdict,
    )
}

fn partition_observation(view: &MembershipView, partition: &Partition) -> (Observation, Verdict) {
    let lost = &partition.lost;
    let mut named = lost
        .iter()
        .take(NAMED_LOST_MEMBERS)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if lost.len() > NAMED_LOST_MEMBERS {
        named.push_str(&format!(" and {} more", lost.len() - NAMED_LOST_MEMBERS));
    }
    let side = partition.known - lost.len();
    let message = format!(
        "partition: {} of {} members lost at once, seen from {}'s side ({side} members, {}): {named}",
        lost.len(),
        partition.known,
        first_on_side(view),
        if partition.majority {
            "the majority"
        } else {
            "a minority"
        },
    );
    let agreeing = u32::try_from(side.saturating_sub(1)).ok();
    (
        observation(
            AlertKind::Partition,
            &side_of(view),
            None,
            None,
            message,
            agreeing,
        )
        .began_at(partition.began_at_unix_ms),
        Verdict::Firing,
    )
}

pub(crate) fn observation(
    kind: AlertKind,
    what: &str,
    subject: Option<&str>,
    check: Option<&str>,
    message: String,
    agreeing: Option<u32>,
) -> Observation {
    Observation {
        key: model::key(kind, what),
        kind,
        subject: subject.map(str::to_owned),
        check: check.map(str::to_owned),
        message,
        agreeing,
        began_at_unix_ms: None,
    }
}

impl Observation {
    fn began_at(mut self, at: Option<u64>) -> Observation {
        self.began_at_unix_ms = at;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_health::status::roll_up;

    const SECOND: u64 = 1000;

    fn view(me: &str, others: &[(&str, MemberState, u64)]) -> MembershipView {
        let states: Vec<(&str, MemberState)> = others.iter().map(|(n, s, _)| (*n, *s)).collect();
        let mut view = MembershipView::for_tests(me, &states);
        for (member, (_, _, since)) in view.members.iter_mut().zip(others) {
            member.since_unix_ms = *since;
        }
        view
    }

    fn verdicts(view: &MembershipView, now: u64) -> Vec<(String, Verdict)> {
        let status = roll_up(view, &[], false, now);
        observe(
            view,
            &status,
            now,
            &SourceConfig::default(),
            &Flaps::default(),
        )
        .into_iter()
        .filter(|(_, v)| *v != Verdict::Clear)
        .map(|(o, v)| (o.key, v))
        .collect()
    }

    #[test]
    fn one_member_down_is_a_node_down_alert_not_a_partition() {
        use MemberState::*;
        let view = view(
            "a",
            &[
                ("b", Alive, 0),
                ("c", Down, 5 * SECOND),
                ("d", Alive, 0),
                ("e", Alive, 0),
            ],
        );
        assert_eq!(
            verdicts(&view, 10 * SECOND),
            [
                ("node-down/c".to_owned(), Verdict::Firing),
                ("node-degraded/c".to_owned(), Verdict::Unsure),
            ]
        );
        assert_eq!(partition(&view, &SourceConfig::default()), None);
        // Heard of only (never suspect here: a missed leave rumor, a
        // cut-off node's view after a heal): left to those who saw it.
        let mut heard = view.clone();
        heard.members[1].suspected_before_down = false;
        assert_eq!(
            verdicts(&heard, 10 * SECOND),
            [
                ("node-down/c".to_owned(), Verdict::Unsure),
                ("node-degraded/c".to_owned(), Verdict::Unsure),
            ]
        );
    }

    #[test]
    fn two_of_five_lost_together_is_a_partition_seen_from_both_sides() {
        use MemberState::*;
        let settings = SourceConfig::default();
        let majority = view(
            "a",
            &[
                ("b", Alive, 0),
                ("c", Alive, 0),
                ("d", Down, 10 * SECOND),
                ("e", Down, 14 * SECOND),
            ],
        );
        let seen = partition(&majority, &settings).expect("2 of 5 at once");
        assert_eq!(seen.lost, ["d", "e"]);
        assert!(seen.majority);
        let minority = view(
            "d",
            &[
                ("a", Down, 11 * SECOND),
                ("b", Down, 12 * SECOND),
                ("c", Down, 13 * SECOND),
                ("e", Alive, 0),
            ],
        );
        let seen = partition(&minority, &settings).expect("3 of 5 at once");
        assert_eq!(seen.lost, ["a", "b", "c"]);
        assert!(!seen.majority);
        // The minority names the partition and leaves node-down to the others.
        let firing: Vec<_> = verdicts(&minority, 20 * SECOND)
            .into_iter()
            .filter(|(_, v)| *v == Verdict::Firing)
            .collect();
        assert_eq!(firing.len(), 1, "{firing:?}");
        assert!(firing[0].0.starts_with("partition/"));
        // The majority sends node-down for each lost member, and the partition.
        let firing = verdicts(&majority, 20 * SECOND)
            .into_iter()
            .filter(|(_, v)| *v == Verdict::Firing)
            .count();
        assert_eq!(firing, 3);
    }

    #[test]
    fn losses_spread_over_more_than_the_window_are_separate_failures() {
        use MemberState::*;
        let view = view(
            "a",
            &[
                ("b", Alive, 0),
                ("c", Alive, 0),
                ("d", Down, 0),
                ("e", Down, 60 * SECOND),
            ],
        );
        assert_eq!(partition(&view, &SourceConfig::default()), None);
    }

    #[test]
    fn the_partition_key_is_the_same_for_every_node_on_one_side() {
        use MemberState::*;
        let from_a = view("a", &[("b", Alive, 0), ("c", Down, 1), ("d", Down, 2)]);
        let from_b = view("b", &[("a", Alive, 0), ("d", Down, 5), ("c", Down, 9)]);
        let key = |v: &MembershipView| {
            partition_observation(v, &partition(v, &SourceConfig::default()).expect("2 of 4"))
                .0
                .key
        };
        assert_eq!(key(&from_a), key(&from_b));
    }

    #[test]
    fn losses_are_judged_once_they_pause_and_a_growing_partition_keeps_its_key() {
        use MemberState::*;
        // a's side of a split from c, d and e, whose losses gossip
        // reports 4 s apart.
        let early = view(
            "a",
            &[
                ("b", Alive, 0),
                ("c", Alive, 0),
                ("d", Down, 10 * SECOND),
                ("e", Down, 10 * SECOND),
            ],
        );
        let held = verdicts(&early, 12 * SECOND);
        assert!(held.iter().all(|(_, v)| *v != Verdict::Firing), "{held:?}");
        assert!(held.contains(&("node-down/d".to_owned(), Verdict::Unsure)));
        // Had the losses paused there, a (as the majority) would have fired.
        let judged = verdicts(&early, 15 * SECOND);
        assert!(judged.contains(&("partition/from-a".to_owned(), Verdict::Firing)));
        assert!(judged.contains(&("node-down/d".to_owned(), Verdict::Firing)));

        let later = view(
            "a",
            &[
                ("b", Alive, 0),
                ("c", Down, 14 * SECOND),
                ("d", Down, 10 * SECOND),
                ("e", Down, 10 * SECOND),
            ],
        );
        assert!(
            verdicts(&later, 16 * SECOND)
                .contains(&("partition/from-a".to_owned(), Verdict::Unsure))
        );
        // Settled: the same key, now as a minority that leaves node-down
        // to the other side.
        let firing: Vec<String> = verdicts(&later, 19 * SECOND)
            .into_iter()
            .filter(|(_, v)| *v == Verdict::Firing)
            .map(|(key, _)| key)
            .collect();
        assert_eq!(firing, ["partition/from-a"]);
    }

    #[test]
    fn a_suspect_member_alerts_only_after_the_threshold() {
        use MemberState::*;
        let view = view("a", &[("b", Suspect, 0), ("c", Alive, 0)]);
        assert!(
            !verdicts(&view, 9 * SECOND)
                .iter()
                .any(|(k, _)| k == "node-suspect/b")
        );
        assert!(
            verdicts(&view, 10 * SECOND).contains(&("node-suspect/b".to_owned(), Verdict::Firing))
        );
    }

    #[test]
    fn unobserved_keys_resolve_with_a_reason() {
        let gone = unobserved("node-down/b", AlertKind::NodeDown, "a");
        assert_eq!(gone.subject.as_deref(), Some("b"));
        assert_eq!(gone.message, "b is no longer a member a knows of");
        assert_eq!(
            unobserved("partition/from-a", AlertKind::Partition, "a").message,
            "the partition healed"
        );
    }
}
