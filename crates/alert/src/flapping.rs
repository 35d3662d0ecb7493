//! The flapping source: a member declared down again and again within the
//! flap window, however short each outage (`node-down` waits for losses to
//! settle, and misses outages of a few seconds). Counted from the Downs in
//! the replicated history, so every node judges the same facts; a node cut
//! off from the cluster records no Downs of others (see the recorder).

use std::collections::HashMap;
use std::time::Duration;

use starling_gossip::{MemberState, MemberView};

use super::model::{AlertKind, Observation};
use super::sources::{Verdict, observation};

/// One member's Down records in the cluster's history lately.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Downs {
    pub count: usize,
    pub last_unix_ms: u64,
}

/// What the flapping source reads: Downs per member within `window`, from
/// the replicated history, so every node counts the same facts (a node
/// cut off records no Downs of others, see the recorder).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flaps {
    pub downs: HashMap<String, Downs>,
    pub window: Duration,
    /// Downs within the window that make a member flapping.
    pub at_least: usize,
}

/// Fires at `at_least` Downs within the window, each however short: the
/// node-down alert waits for losses to settle and misses outages of a few
/// seconds. Resolves only once a whole window passed without a Down.
pub(crate) fn node_flapping(
    member: &MemberView,
    flaps: &Flaps,
    now_unix_ms: u64,
) -> (Observation, Verdict) {
    let name = &member.id.name;
    let downs = flaps.downs.get(name).copied().unwrap_or_default();
    let window = humantime::format_duration(flaps.window);
    let (verdict, message) = match member.state {
        MemberState::Left => (Verdict::Clear, format!("{name} left the cluster")),
        _ if downs.count >= flaps.at_least.max(1) => {
            let ago = Duration::from_secs(now_unix_ms.saturating_sub(downs.last_unix_ms) / 1000);
            (
                Verdict::Firing,
                format!(
                    "{name} went down {} times in the last {window} (the last {} ago): \
                     its node or its network keeps failing and recovering",
                    downs.count,
                    humantime::format_duration(ago)
                ),
            )
        }
        _ if downs.count == 0 => (
            Verdict::Clear,
            format!("{name} has not gone down for {window}"),
        ),
        _ => (
            Verdict::Unsure,
            format!(
                "{name} went down {} times in the last {window}",
                downs.count
            ),
        ),
    };
    (
        observation(
            AlertKind::NodeFlapping,
            name,
            Some(name),
            None,
            message,
            None,
        ),
        verdict,
    )
}

#[cfg(test)]
mod tests {
    use starling_gossip::MembershipView;
    use starling_health::status::roll_up;

    use super::*;
    use crate::sources::{SourceConfig, observe};

    const SECOND: u64 = 1000;

    #[test]
    fn a_member_down_again_and_again_is_flapping_until_a_quiet_window() {
        use MemberState::*;
        let view = MembershipView::for_tests("a", &[("b", Alive), ("c", Alive)]);
        let now = 1_000 * SECOND;
        let flaps = |count: usize| Flaps {
            downs: [(
                "b".to_owned(),
                Downs {
                    count,
                    last_unix_ms: now - 3 * SECOND,
                },
            )]
            .into(),
            window: Duration::from_secs(60),
            at_least: 3,
        };
        let verdict = |count: usize| {
            let status = roll_up(&view, &[], false, now);
            observe(&view, &status, now, &SourceConfig::default(), &flaps(count))
                .into_iter()
                .find(|(o, _)| o.key == "node-flapping/b")
                .map(|(o, v)| (v, o.message))
                .expect("every member is observed")
        };
        let (firing, message) = verdict(5);
        assert_eq!(firing, Verdict::Firing);
        assert!(
            message.starts_with("b went down 5 times in the last 1m (the last 3s ago)"),
            "{message}"
        );
        assert_eq!(
            verdict(1).0,
            Verdict::Unsure,
            "a flapping alert holds until a quiet window"
        );
        assert_eq!(verdict(0).0, Verdict::Clear);
        let status = roll_up(&view, &[], false, now);
        let none = observe(
            &view,
            &status,
            now,
            &SourceConfig::default(),
            &Flaps::default(),
        );
        assert!(
            none.iter()
                .any(|(o, v)| o.key == "node-flapping/c" && *v == Verdict::Clear)
        );
    }
}
