//! The cluster's overlay picture from every node's path results and the
//! gossip view: which paths are broken, whose pod network is broken, and
//! the matrix `/v1/overlay` serves. Pure, like the status roll-up it feeds.

use std::collections::{BTreeMap, BTreeSet};

use starling_model::{OverlayPath, OverlayResponse};

use super::judge::path_target;
use starling_gossip::MembershipView;
use starling_history::{CheckResult, Status};
use starling_probe::PeerReport;

/// At least this many probes must fail to reach a node (and at least half
/// of those with a judged path to it) before its own pod network is
/// blamed rather than the paths.
const POD_NETWORK_MIN_SOURCES: usize = 2;

/// The judgement the status roll-up folds in.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OverlayVerdicts {
    /// Broken paths between nodes whose pod networks are otherwise fine:
    /// cluster-level reasons, blaming neither node.
    pub broken_paths: Vec<String>,
    /// Nodes most probes cannot reach over the overlay, with the reason.
    pub broken_pod_networks: BTreeMap<String, String>,
}

impl OverlayVerdicts {
    pub fn sentences(&self) -> Vec<String> {
        self.broken_pod_networks
            .values()
            .chain(&self.broken_paths)
            .cloned()
            .collect()
    }
}

/// Nodes gossip sees alive, this one included. Paths touching any other
/// node (suspect, down, left, or never known) are not judged: a dead
/// node's pod network says nothing about the overlay.
fn alive(view: &MembershipView) -> BTreeSet<&str> {
    view.alive_names().collect()
}

/// Path results between alive nodes, newest per (from, to).
fn live_paths<'a>(
    view: &'a MembershipView,
    latest: &'a [CheckResult],
) -> impl Iterator<Item = (&'a str, &'a CheckResult)> {
    let alive = alive(view);
    latest.iter().filter_map(move |result| {
        let to = path_target(&result.check)?;
        (to != result.node && alive.contains(result.node.as_str()) && alive.contains(to))
            .then_some((to, result))
    })
}

pub fn verdicts(view: &MembershipView, latest: &[CheckResult]) -> OverlayVerdicts {
    // Per target: sources with a judged path, and those failing.
    let mut judged: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut failing: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut broken: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (to, result) in live_paths(view, latest) {
        match result.status {
            Status::Unknown => continue,
            Status::Critical => {
                failing.entry(to).or_default().push(&result.node);
                broken.insert((result.node.as_str(), to));
            }
            Status::Ok | Status::Warning => {}
        }
        judged.entry(to).or_default().push(&result.node);
    }
    let mut out = OverlayVerdicts::default();
    for (target, sources) in &failing {
        let of = judged.get(target).map_or(0, Vec::len);
        if sources.len() >= POD_NETWORK_MIN_SOURCES && sources.len() * 2 >= of {
            out.broken_pod_networks.insert(
                (*target).to_owned(),
                format!(
                    "{target}'s pod network is broken: {} of {of} probing nodes cannot reach it over the overlay ({})",
                    sources.len(),
                    sources.join(", ")
                ),
            );
        }
    }
    // Paths explained by a broken pod network at either end are not
    // reported again; the rest are, once per pair.
    let explained = |node: &str| out.broken_pod_networks.contains_key(node);
    let mut said: BTreeSet<(&str, &str)> = BTreeSet::new();
    for &(from, to) in &broken {
        if explained(from) || explained(to) {
            continue;
        }
        let pair = if from < to { (from, to) } else { (to, from) };
        if !said.insert(pair) {
            continue;
        }
        let both_ways = broken.contains(&(to, from));
        out.broken_paths.push(if both_ways {
            format!("overlay path {}↔{} broken", pair.0, pair.1)
        } else {
            format!("overlay path {from}→{to} broken")
        });
    }
    out
}

/// `local`: the figures this node's probe last reported, by peer; `None`
/// when no probe reports here. `None` overall while no path is known
/// anywhere in the cluster.
pub fn response(
    view: &MembershipView,
    latest: &[CheckResult],
    local: Option<&BTreeMap<String, PeerReport>>,
    window_secs: u64,
    answered_at_unix_ms: u64,
) -> Option<OverlayResponse> {
    let paths: Vec<OverlayPath> = live_paths(view, latest)
        .map(|(to, result)| {
            let figures = local
                .filter(|_| result.node == view.me.name)
                .and_then(|figures| figures.get(to));
            OverlayPath {
                from: result.node.clone(),
                to: to.to_owned(),
                status: result.status,
                message: result.message.clone(),
                at_unix_ms: result.at_unix_ms,
                loss_ratio: figures.and_then(PeerReport::loss_ratio),
                rtt_p50_ms: figures.and_then(|f| f.rtt_p50_ms),
                rtt_p95_ms: figures.and_then(|f| f.rtt_p95_ms),
            }
        })
        .collect();
    if paths.is_empty() && local.is_none() {
        return None;
    }
    let mut probed_by: BTreeMap<String, usize> = BTreeMap::new();
    for path in paths.iter().filter(|p| p.status != Status::Unknown) {
        *probed_by.entry(path.to.clone()).or_default() += 1;
    }
    Some(OverlayResponse {
        answered_by: view.me.name.clone(),
        answered_at_unix_ms,
        window_secs,
        nodes: alive(view).into_iter().map(str::to_owned).collect(),
        paths,
        verdicts: verdicts(view, latest).sentences(),
        probed_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::judge::path_check;
    use starling_gossip::MemberState;

    fn path(from: &str, to: &str, status: Status) -> CheckResult {
        CheckResult {
            node: from.to_owned(),
            check: path_check(to),
            status,
            message: String::new(),
            details: serde_json::Value::Null,
            duration_ms: 0,
            at_unix_ms: 1,
        }
    }

    /// Every ordered pair among `nodes`, critical where `broken` says.
    fn mesh(nodes: &[&str], broken: &[(&str, &str)]) -> Vec<CheckResult> {
        let mut out = Vec::new();
        for from in nodes {
            for to in nodes.iter().filter(|to| *to != from) {
                let status = if broken.contains(&(from, to)) {
                    Status::Critical
                } else {
                    Status::Ok
                };
                out.push(path(from, to, status));
            }
        }
        out
    }

    const ALIVE: MemberState = MemberState::Alive;
    const FOUR: [&str; 4] = ["a", "b", "c", "d"];

    fn four(state_of_b: MemberState) -> MembershipView {
        MembershipView::for_tests("a", &[("b", state_of_b), ("c", ALIVE), ("d", ALIVE)])
    }

    #[test]
    fn a_path_broken_both_ways_is_one_verdict_blaming_neither_node() {
        let latest = mesh(&FOUR, &[("a", "b"), ("b", "a")]);
        let verdicts = verdicts(&four(ALIVE), &latest);
        assert_eq!(verdicts.broken_paths, ["overlay path a↔b broken"]);
        assert!(verdicts.broken_pod_networks.is_empty());
    }

    #[test]
    fn a_path_broken_one_way_says_which_way() {
        let latest = mesh(&FOUR, &[("c", "a")]);
        assert_eq!(
            verdicts(&four(ALIVE), &latest).broken_paths,
            ["overlay path c→a broken"]
        );
    }

    #[test]
    fn a_node_nobody_reaches_has_a_broken_pod_network_and_its_paths_are_not_repeated() {
        let broken: Vec<(&str, &str)> = FOUR
            .iter()
            .filter(|n| **n != "b")
            .flat_map(|n| [(*n, "b"), ("b", *n)])
            .collect();
        let latest = mesh(&FOUR, &broken);
        let verdicts = verdicts(&four(ALIVE), &latest);
        assert!(
            verdicts.broken_paths.is_empty(),
            "{:?}",
            verdicts.broken_paths
        );
        let reason = &verdicts.broken_pod_networks["b"];
        assert!(
            reason.starts_with("b's pod network is broken: 3 of 3"),
            "{reason}"
        );
    }

    #[test]
    fn a_node_gossip_calls_down_or_suspect_is_not_blamed_on_the_overlay() {
        let broken: Vec<(&str, &str)> = ["a", "c", "d"].iter().map(|n| (*n, "b")).collect();
        let latest = mesh(&FOUR, &broken);
        for state in [MemberState::Down, MemberState::Suspect, MemberState::Left] {
            assert_eq!(verdicts(&four(state), &latest), OverlayVerdicts::default());
            let matrix = response(&four(state), &latest, None, 120, 0).expect("paths known");
            assert!(
                matrix.paths.iter().all(|p| p.from != "b" && p.to != "b"),
                "{state:?}: b drops out of the matrix at once"
            );
            assert!(!matrix.nodes.contains(&"b".to_owned()));
        }
    }

    #[test]
    fn the_matrix_carries_local_figures_and_coverage() {
        let latest = mesh(&FOUR, &[]);
        let figures = BTreeMap::from([(
            "b".to_owned(),
            PeerReport {
                node: "b".into(),
                sent: 10,
                lost: 1,
                rtt_p50_ms: Some(0.5),
                rtt_p95_ms: Some(0.9),
                clock_offset_ms: None,
            },
        )]);
        let matrix = response(&four(ALIVE), &latest, Some(&figures), 120, 7).expect("known");
        assert_eq!(matrix.paths.len(), 12);
        let ab = matrix
            .paths
            .iter()
            .find(|p| p.from == "a" && p.to == "b")
            .expect("a→b");
        assert_eq!(ab.loss_ratio, Some(0.1));
        let cb = matrix
            .paths
            .iter()
            .find(|p| p.from == "c" && p.to == "b")
            .expect("c→b");
        assert_eq!(
            cb.loss_ratio, None,
            "only this node's figures are known here"
        );
        assert_eq!(matrix.probed_by["b"], 3);
        assert!(response(&four(ALIVE), &[], None, 120, 7).is_none());
    }
}
