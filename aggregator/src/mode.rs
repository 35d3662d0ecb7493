//! When a cluster is aggregated: a decision every node makes alone from
//! its membership view, with hysteresis, so the cluster does not switch
//! back and forth around the threshold or while an aggregator restarts.

use starling_gossip::{MemberState, MembershipView, Role};
use starling_replicate::Scope;

/// How a node replicates the cluster's log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Every node holds the whole log, as without aggregators.
    #[default]
    Full,
    /// Aggregators hold the whole log; ordinary nodes their own, the
    /// cluster's health table, and they forward history queries.
    Aggregated,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Aggregated => "aggregated",
        }
    }

    /// What replication does in this mode on a node of `role`.
    pub fn scope(self, role: Role) -> Scope {
        match (self, role) {
            (Mode::Full, _) => Scope::Everyone,
            (Mode::Aggregated, Role::Aggregator) => Scope::Aggregators,
            (Mode::Aggregated, _) => Scope::OwnLog,
        }
    }
}

/// When to aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModeRule {
    /// Aggregate once this many members (this node included) are alive or
    /// suspect and an aggregator is a member; 0 aggregates whenever one
    /// is. Below 90% of it the cluster goes back to full replication.
    pub aggregate_above: usize,
}

impl ModeRule {
    /// The mode after `current`, for a cluster of `members` active members
    /// of which `aggregators` are aggregators not known to have left.
    ///
    /// An aggregator that is down still counts: its rows are on the other
    /// aggregators, and a cluster of thousands must not start replicating
    /// everything everywhere because its aggregators restart. Only when
    /// none is a member any more (they left, or gossip forgot them) do
    /// nodes go back to full replication, which rebuilds the whole log on
    /// every node from the nodes' own logs.
    pub fn next(&self, current: Mode, members: usize, aggregators: usize) -> Mode {
        if aggregators == 0 {
            return Mode::Full;
        }
        let enter = self.aggregate_above;
        let leave = enter - enter / 10;
        match current {
            Mode::Full if members >= enter => Mode::Aggregated,
            Mode::Aggregated if members < leave => Mode::Full,
            unchanged => unchanged,
        }
    }

    /// `next`, counting from a membership view.
    pub fn next_for(&self, current: Mode, view: &MembershipView) -> Mode {
        let me_aggregator = usize::from(view.me.meta.role == Role::Aggregator);
        let members = 1 + view.members.iter().filter(|m| m.state.is_active()).count();
        let aggregators = me_aggregator
            + view
                .members
                .iter()
                .filter(|m| m.id.meta.role == Role::Aggregator && m.state != MemberState::Left)
                .count();
        self.next(current, members, aggregators)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_aggregator_means_full_replication_at_any_size() {
        let rule = ModeRule { aggregate_above: 0 };
        assert_eq!(rule.next(Mode::Full, 5000, 0), Mode::Full);
        assert_eq!(rule.next(Mode::Aggregated, 5000, 0), Mode::Full);
        assert_eq!(rule.next(Mode::Full, 3, 1), Mode::Aggregated);
    }

    #[test]
    fn the_threshold_has_hysteresis() {
        let rule = ModeRule {
            aggregate_above: 200,
        };
        assert_eq!(rule.next(Mode::Full, 199, 2), Mode::Full);
        assert_eq!(rule.next(Mode::Full, 200, 2), Mode::Aggregated);
        // Losing a few nodes does not switch back...
        assert_eq!(rule.next(Mode::Aggregated, 181, 2), Mode::Aggregated);
        assert_eq!(rule.next(Mode::Aggregated, 180, 2), Mode::Aggregated);
        // ...losing a tenth does.
        assert_eq!(rule.next(Mode::Aggregated, 179, 2), Mode::Full);
    }

    #[test]
    fn each_role_replicates_as_its_mode_says() {
        assert_eq!(Mode::Full.scope(Role::Aggregator), Scope::Everyone);
        assert_eq!(Mode::Aggregated.scope(Role::Aggregator), Scope::Aggregators);
        assert_eq!(Mode::Aggregated.scope(Role::Worker), Scope::OwnLog);
        assert_eq!(Mode::Aggregated.scope(Role::ControlPlane), Scope::OwnLog);
    }
}
