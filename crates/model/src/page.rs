//! Pages of the node list: at 5,000 nodes `/v1/status` must still be a
//! summary a person can read and an answer of bounded size, so the nodes
//! come in pages by name, filtered by verdict or by name, after counts of
//! every verdict.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::api::{Member, MembersResponse, NodeStatus, NodesResponse, StatusResponse};
use crate::{NodeHealth, ParseEnumError};

/// Nodes in one answer unless the request says otherwise: every node of a
/// cluster that small, a readable page of a large one (about 600 kB of
/// JSON with eight checks a node).
pub const DEFAULT_NODE_LIMIT: usize = 500;
/// The most nodes one request may ask for.
pub const MAX_NODE_LIMIT: usize = 1000;
/// Reason lines in one answer; past them `reasons_omitted` says how many
/// more there are (`?status=unhealthy` pages through them all).
pub const MAX_REASONS: usize = 100;

/// Nodes per verdict, counted before any filter or page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCounts {
    pub healthy: usize,
    pub degraded: usize,
    pub unreachable: usize,
    pub unknown: usize,
}

impl NodeCounts {
    pub fn of<'a>(nodes: impl IntoIterator<Item = &'a NodeStatus>) -> Self {
        let mut counts = NodeCounts::default();
        for node in nodes {
            match node.status {
                NodeHealth::Healthy => counts.healthy += 1,
                NodeHealth::Degraded => counts.degraded += 1,
                NodeHealth::Unreachable => counts.unreachable += 1,
                // The roll-up leaves nodes that left out; counted as
                // unknown should one ever be passed in.
                NodeHealth::Unknown | NodeHealth::Left => counts.unknown += 1,
            }
        }
        counts
    }
}

/// Which verdicts a page shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthFilter {
    Is(NodeHealth),
    /// Every verdict but healthy.
    Unhealthy,
}

impl HealthFilter {
    pub fn admits(self, health: NodeHealth) -> bool {
        match self {
            HealthFilter::Is(wanted) => health == wanted,
            HealthFilter::Unhealthy => health != NodeHealth::Healthy,
        }
    }
}

impl FromStr for HealthFilter {
    type Err = ParseEnumError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value == "unhealthy" {
            return Ok(HealthFilter::Unhealthy);
        }
        value.parse().map(HealthFilter::Is).map_err(|mut error| {
            error.expected.push("unhealthy");
            error
        })
    }
}

/// One page of the node list, as `?status=&node=&cursor=&limit=` ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePage {
    pub status: Option<HealthFilter>,
    /// Only nodes whose name contains this.
    pub node: Option<String>,
    /// Only nodes whose name sorts after this: the previous page's
    /// `next_cursor`.
    pub cursor: Option<String>,
    pub limit: usize,
}

impl Default for NodePage {
    fn default() -> Self {
        NodePage {
            status: None,
            node: None,
            cursor: None,
            limit: DEFAULT_NODE_LIMIT,
        }
    }
}

impl NodePage {
    fn admits(&self, node: &NodeStatus) -> bool {
        self.status.is_none_or(|filter| filter.admits(node.status))
            && self
                .node
                .as_deref()
                .is_none_or(|part| node.name.contains(part))
    }

    /// Cut a full answer to this page: the counts of every verdict first,
    /// then the nodes that match, sorted by name, at most `limit` of them,
    /// and at most [`MAX_REASONS`] reason lines.
    pub fn apply(&self, status: &mut StatusResponse) {
        status.node_counts = NodeCounts::of(&status.nodes);
        let nodes = std::mem::take(&mut status.nodes);
        let (page, matched, next_cursor) = self.cut(nodes);
        status.nodes = page;
        status.nodes_matched = matched;
        status.next_cursor = next_cursor;
        if status.reasons.len() > MAX_REASONS {
            status.reasons_omitted = status.reasons.len() - MAX_REASONS;
            status.reasons.truncate(MAX_REASONS);
        }
    }

    /// `apply`, for `/v1/nodes`.
    pub fn nodes(&self, mut status: StatusResponse) -> NodesResponse {
        self.apply(&mut status);
        NodesResponse {
            answered_by: status.answered_by,
            answered_at_unix_ms: status.answered_at_unix_ms,
            node_counts: status.node_counts,
            nodes_matched: status.nodes_matched,
            next_cursor: status.next_cursor,
            nodes: status.nodes,
        }
    }

    fn cut(&self, nodes: Vec<NodeStatus>) -> (Vec<NodeStatus>, usize, Option<String>) {
        cut(
            nodes,
            |node| node.name.as_str(),
            |node| self.admits(node),
            self.cursor.as_deref(),
            self.limit,
        )
    }
}

/// One page of the member list, as `?state=&node=&cursor=&limit=` ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberPage {
    /// Only members in this gossip state (`alive`, `suspect`, `down`,
    /// `left`), or `unhealthy` for all but alive.
    pub state: Option<String>,
    /// Only members whose name contains this.
    pub node: Option<String>,
    pub cursor: Option<String>,
    pub limit: usize,
}

impl Default for MemberPage {
    fn default() -> Self {
        MemberPage {
            state: None,
            node: None,
            cursor: None,
            limit: DEFAULT_NODE_LIMIT,
        }
    }
}

/// The member states `?state=` takes.
pub const MEMBER_STATES: [&str; 5] = ["alive", "suspect", "down", "left", "unhealthy"];

impl MemberPage {
    fn admits(&self, member: &Member) -> bool {
        let state = match self.state.as_deref() {
            None => true,
            Some("unhealthy") => member.state != "alive",
            Some(state) => member.state == state,
        };
        state
            && self
                .node
                .as_deref()
                .is_none_or(|part| member.name.contains(part))
    }

    /// Cut a full member list to this page; the counts stay whole.
    pub fn apply(&self, members: &mut MembersResponse) {
        let all = std::mem::take(&mut members.members);
        let (page, matched, next_cursor) = cut(
            all,
            |member| member.name.as_str(),
            |member| self.admits(member),
            self.cursor.as_deref(),
            self.limit,
        );
        members.members = page;
        members.members_matched = matched;
        members.next_cursor = next_cursor;
    }
}

/// The items `admits` keeps, sorted by `name`, those after `cursor`, at
/// most `limit`: the page, how many matched in all, and the cursor of the
/// next page if there is one.
fn cut<T>(
    mut items: Vec<T>,
    name: impl Fn(&T) -> &str,
    admits: impl Fn(&T) -> bool,
    cursor: Option<&str>,
    limit: usize,
) -> (Vec<T>, usize, Option<String>) {
    items.retain(|item| admits(item));
    items.sort_by(|a, b| name(a).cmp(name(b)));
    let matched = items.len();
    let start = cursor.map_or(0, |after| items.partition_point(|item| name(item) <= after));
    let mut end = start.saturating_add(limit).min(items.len());
    // A page never ends inside a run of equal names (a member's old and
    // renewed identities), or the cursor would skip the rest of the run.
    while end > start && end < items.len() && name(&items[end]) == name(&items[end - 1]) {
        end += 1;
    }
    let next_cursor = (end < items.len())
        .then(|| items.get(end.saturating_sub(1)))
        .flatten()
        .map(|last| name(last).to_owned());
    items.truncate(end);
    items.drain(..start);
    (items, matched, next_cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, status: NodeHealth) -> NodeStatus {
        NodeStatus {
            name: name.to_owned(),
            status,
            reasons: Vec::new(),
            checks: Vec::new(),
        }
    }

    fn cluster(n: usize) -> Vec<NodeStatus> {
        (0..n)
            .map(|i| {
                let status = if i % 100 == 7 {
                    NodeHealth::Degraded
                } else {
                    NodeHealth::Healthy
                };
                node(&format!("node-{i:04}"), status)
            })
            .collect()
    }

    #[test]
    fn pages_by_name_visit_every_matching_node_once() {
        let all = cluster(5000);
        let mut page = NodePage {
            limit: 700,
            ..NodePage::default()
        };
        let mut seen = Vec::new();
        loop {
            let (nodes, matched, next) = page.cut(all.clone());
            assert_eq!(matched, 5000);
            assert!(nodes.len() <= 700);
            seen.extend(nodes.into_iter().map(|n| n.name));
            match next {
                Some(cursor) => page.cursor = Some(cursor),
                None => break,
            }
        }
        let mut expected: Vec<String> = all.into_iter().map(|n| n.name).collect();
        expected.sort();
        assert_eq!(seen, expected);
    }

    #[test]
    fn filters_combine_and_the_counts_cover_everything() {
        let page = NodePage {
            status: Some("unhealthy".parse().expect("a filter")),
            node: Some("node-1".into()),
            ..NodePage::default()
        };
        let (nodes, matched, next) = page.cut(cluster(5000));
        // node-1007, node-1107, … node-1907.
        assert_eq!(matched, 10);
        assert_eq!(next, None);
        assert!(nodes.iter().all(|n| n.status == NodeHealth::Degraded));
        let counts = NodeCounts::of(&cluster(5000));
        assert_eq!((counts.healthy, counts.degraded), (4950, 50));
    }

    #[test]
    fn an_unknown_verdict_names_the_ones_there_are() {
        let error = "broken".parse::<HealthFilter>().unwrap_err().to_string();
        assert!(
            error.contains("unhealthy") && error.contains("degraded"),
            "{error}"
        );
        assert_eq!(
            "degraded".parse::<HealthFilter>().expect("a verdict"),
            HealthFilter::Is(NodeHealth::Degraded)
        );
    }
}
