//! Node and cluster status from the gossip view and the latest check
//! results. Pure: the same inputs give the same verdict on every node.

use std::collections::BTreeMap;

use starling_model::{
    CheckSummary, NodeCounts, NodeHealth, NodeStatus, StateCounts, StatusResponse,
};

use crate::overlay;
use crate::overlay::path_target;
use starling_checks::is_cluster_check;
use starling_gossip::{MemberState, MembershipView};

use starling_history::{CheckResult, Status};

/// `checks_here`: this node runs checks, so until its first result it
/// cannot call itself healthy.
pub fn roll_up(
    view: &MembershipView,
    latest: &[CheckResult],
    checks_here: bool,
    answered_at_unix_ms: u64,
) -> StatusResponse {
    let mut by_node: BTreeMap<&str, Vec<&CheckResult>> = BTreeMap::new();
    // Per cluster-scope check, the newest result: the owner may have changed.
    let mut cluster: BTreeMap<&str, &CheckResult> = BTreeMap::new();
    for result in latest {
        // Paths are judged across nodes below, never against one node.
        if path_target(&result.check).is_some() {
            continue;
        }
        if is_cluster_check(&result.check) {
            let newest = cluster.entry(result.check.as_str()).or_insert(result);
            if result.at_unix_ms > newest.at_unix_ms {
                *newest = result;
            }
        } else {
            by_node
                .entry(result.node.as_str())
                .or_default()
                .push(result);
        }
    }
    let counts = state_counts(view);
    let mut nodes = vec![node_status(
        &view.me.name,
        MemberState::Alive,
        by_node.get(view.me.name.as_str()),
        checks_here,
    )];
    // A member that left on purpose is not part of the cluster any more.
    for member in view.members.iter().filter(|m| m.state != MemberState::Left) {
        nodes.push(node_status(
            &member.id.name,
            member.state,
            by_node.get(member.id.name.as_str()),
            false,
        ));
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let overlay = overlay::verdicts(view, latest);
    for node in &mut nodes {
        if let Some(reason) = overlay.broken_pod_networks.get(&node.name)
            && node.status != NodeHealth::Unreachable
        {
            node.status = NodeHealth::Degraded;
            node.reasons.push(reason.clone());
        }
    }
    let cluster_checks: Vec<CheckSummary> = cluster.values().map(|r| summary(r)).collect();
    let reasons: Vec<String> = cluster
        .values()
        .filter(|r| r.status == Status::Critical)
        .map(|r| format!("{}: {}", r.check, r.message))
        .chain(
            nodes
                .iter()
                .filter(|n| n.status != NodeHealth::Healthy)
                .flat_map(|n| n.reasons.iter().map(move |r| format!("{}: {r}", n.name))),
        )
        .chain(overlay.broken_paths)
        .collect();
    let known = counts.alive + counts.suspect + counts.down;
    StatusResponse {
        answered_by: view.me.name.clone(),
        answered_at_unix_ms,
        healthy: reasons.is_empty(),
        reasons,
        reasons_omitted: 0,
        majority: counts.alive * 2 > known,
        counts,
        cluster_checks,
        node_counts: NodeCounts::of(&nodes),
        nodes_matched: nodes.len(),
        next_cursor: None,
        nodes,
    }
}

/// Members per gossip state, the answering node (alive to itself) included.
pub fn state_counts(view: &MembershipView) -> StateCounts {
    let mut counts = StateCounts {
        alive: 1,
        ..StateCounts::default()
    };
    for member in &view.members {
        match member.state {
            MemberState::Alive => counts.alive += 1,
            MemberState::Suspect => counts.suspect += 1,
            MemberState::Down => counts.down += 1,
            MemberState::Left => counts.left += 1,
        }
    }
    counts
}

fn node_status(
    name: &str,
    state: MemberState,
    results: Option<&Vec<&CheckResult>>,
    checks_here: bool,
) -> NodeStatus {
    let results = results.map(Vec::as_slice).unwrap_or_default();
    let checks: Vec<CheckSummary> = results.iter().map(|r| summary(r)).collect();
    let (status, reasons) = if !state.is_active() || state == MemberState::Suspect {
        (
            NodeHealth::Unreachable,
            vec![format!("gossip: {}", state.as_str())],
        )
    } else {
        let failing: Vec<String> = results
            .iter()
            .filter(|r| r.status == Status::Critical)
            .map(|r| format!("{}: {}", r.check, r.message))
            .collect();
        if !failing.is_empty() {
            (NodeHealth::Degraded, failing)
        } else if checks_here && results.is_empty() {
            (
                NodeHealth::Unknown,
                vec!["no check has reported yet".to_owned()],
            )
        } else {
            (NodeHealth::Healthy, Vec::new())
        }
    };
    NodeStatus {
        name: name.to_owned(),
        status,
        reasons,
        checks,
    }
}

fn summary(result: &CheckResult) -> CheckSummary {
    CheckSummary {
        check: result.check.clone(),
        node: result.node.clone(),
        status: result.status,
        message: result.message.clone(),
        at_unix_ms: result.at_unix_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn view(others: &[(&str, MemberState)]) -> MembershipView {
        MembershipView::for_tests("a", others)
    }

    fn result(node: &str, check: &str, status: Status) -> CheckResult {
        CheckResult {
            node: node.to_owned(),
            check: check.to_owned(),
            status,
            message: format!("{check} says {}", status.as_str()),
            details: serde_json::Value::Null,
            duration_ms: 1,
            at_unix_ms: 1,
        }
    }

    #[test]
    fn healthy_when_every_node_is_alive_and_nothing_is_critical() {
        let status = roll_up(
            &view(&[("b", MemberState::Alive), ("c", MemberState::Left)]),
            &[
                result("a", "etcd", Status::Ok),
                result("b", "etcd", Status::Warning),
            ],
            true,
            5,
        );
        assert!(status.healthy, "{status:#?}");
        assert_eq!(
            status.nodes.len(),
            2,
            "a node that left is not part of the verdict"
        );
        assert!(status.majority);
    }

    #[test]
    fn a_critical_check_degrades_its_node_and_the_cluster_naming_it() {
        let status = roll_up(
            &view(&[("b", MemberState::Alive)]),
            &[result("b", "etcd", Status::Critical)],
            false,
            5,
        );
        assert!(!status.healthy);
        assert_eq!(status.reasons, ["b: etcd: etcd says critical"]);
        let b = status
            .nodes
            .iter()
            .find(|n| n.name == "b")
            .expect("b listed");
        assert_eq!(b.status, NodeHealth::Degraded);
    }

    #[test]
    fn a_cluster_check_speaks_for_the_cluster_not_for_the_node_that_ran_it() {
        let mut old = result("b", "scheduler", Status::Ok);
        old.at_unix_ms = 1;
        let mut new = result("a", "scheduler", Status::Critical);
        new.at_unix_ms = 2;
        let status = roll_up(&view(&[("b", MemberState::Alive)]), &[old, new], false, 5);
        assert!(!status.healthy);
        assert_eq!(status.reasons, ["scheduler: scheduler says critical"]);
        assert!(
            status.nodes.iter().all(|n| n.status == NodeHealth::Healthy),
            "{status:#?}"
        );
        assert_eq!(status.cluster_checks.len(), 1);
        assert_eq!(status.cluster_checks[0].node, "a", "the newest result wins");
    }

    #[test]
    fn gossip_trouble_is_unreachable_and_a_minority_says_so() {
        let status = roll_up(
            &view(&[("b", MemberState::Down), ("c", MemberState::Suspect)]),
            &[],
            false,
            5,
        );
        let states: Vec<&str> = status.nodes.iter().map(|n| n.status.as_str()).collect();
        assert_eq!(states, ["healthy", "unreachable", "unreachable"]);
        assert!(!status.majority);
        assert!(!status.healthy);
    }

    #[test]
    fn overlay_paths_are_cluster_reasons_and_a_broken_pod_network_degrades_its_node() {
        let alive = [("b", MemberState::Alive), ("c", MemberState::Alive)];
        let path = |from: &str, to: &str| result(from, &format!("overlay/{to}"), Status::Critical);
        let status = roll_up(&view(&alive), &[path("a", "b"), path("b", "a")], false, 5);
        assert_eq!(status.reasons, ["overlay path a↔b broken"]);
        assert!(
            status
                .nodes
                .iter()
                .all(|n| n.status == NodeHealth::Healthy && n.checks.is_empty())
        );
        let status = roll_up(&view(&alive), &[path("a", "b"), path("c", "b")], false, 5);
        let b = status
            .nodes
            .iter()
            .find(|n| n.name == "b")
            .expect("b listed");
        assert_eq!(b.status, NodeHealth::Degraded);
        assert!(
            b.reasons[0].starts_with("b's pod network is broken"),
            "{:?}",
            b.reasons
        );
        assert_eq!(status.reasons.len(), 1, "{:?}", status.reasons);
    }

    #[test]
    fn a_node_that_runs_checks_is_unknown_until_its_first_result() {
        let status = roll_up(&view(&[]), &[], true, 5);
        assert_eq!(status.nodes[0].status, NodeHealth::Unknown);
        assert!(!status.healthy);
    }
}
