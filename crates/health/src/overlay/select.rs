//! Whom a node's probe pings. Small clusters: everyone. Large ones: each
//! node is pinged by the K probes that rank highest for it by rendezvous
//! hashing, so every node has K watchers (coverage is per target, which is
//! what telling "B's pod network is broken" needs), and a member joining
//! or leaving moves only the pairs it ranks into or out of.

use starling_gossip::rendezvous;
use starling_probe::ProbeTarget;

/// `candidates`: every alive member with a probe address, this node
/// included or not. Returns the targets for `me`, sorted by name.
pub fn targets(
    me: &str,
    candidates: &[ProbeTarget],
    all_pairs_up_to: usize,
    peers_per_node: usize,
) -> Vec<ProbeTarget> {
    let mut out: Vec<ProbeTarget> = if candidates.len() <= all_pairs_up_to {
        candidates
            .iter()
            .filter(|c| c.node != me)
            .cloned()
            .collect()
    } else {
        let my_scores: Vec<u64> = candidates
            .iter()
            .map(|target| rendezvous::score(&target.node, me))
            .collect();
        candidates
            .iter()
            .zip(my_scores)
            .filter(|(target, _)| target.node != me)
            .filter(|(target, mine)| {
                // We watch `target` when fewer than K others outrank us for it.
                let outranking = candidates
                    .iter()
                    .filter(|source| source.node != target.node && source.node != me)
                    .filter(|source| rendezvous::score(&target.node, &source.node) > *mine)
                    .take(peers_per_node)
                    .count();
                outranking < peers_per_node
            })
            .map(|(target, _)| target.clone())
            .collect()
    };
    out.sort_by(|a, b| a.node.cmp(&b.node));
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;

    use super::*;

    fn members(n: usize) -> Vec<ProbeTarget> {
        (0..n)
            .map(|i| ProbeTarget {
                node: format!("node-{i}"),
                addr: SocketAddr::from(([10, 244, (i / 250) as u8, (i % 250) as u8], 7949)),
            })
            .collect()
    }

    /// Who pings whom, as every node computes it for itself.
    fn watchers(all: &[ProbeTarget], up_to: usize, k: usize) -> HashMap<String, Vec<String>> {
        let mut by_target: HashMap<String, Vec<String>> = HashMap::new();
        for source in all {
            for target in targets(&source.node, all, up_to, k) {
                by_target
                    .entry(target.node)
                    .or_default()
                    .push(source.node.clone());
            }
        }
        by_target
    }

    #[test]
    fn up_to_the_limit_everyone_pings_everyone_else() {
        let all = members(5);
        let picked = targets("node-2", &all, 5, 1);
        assert_eq!(picked.len(), 4);
        assert!(picked.iter().all(|t| t.node != "node-2"));
    }

    #[test]
    fn above_the_limit_every_node_has_exactly_k_watchers() {
        let all = members(60);
        let k = 4;
        let by_target = watchers(&all, 20, k);
        assert_eq!(by_target.len(), 60, "every node is covered");
        for (target, sources) in &by_target {
            assert_eq!(sources.len(), k, "{target}: {sources:?}");
            assert!(!sources.contains(target));
        }
        // Load per source averages K.
        let total: usize = by_target.values().map(Vec::len).sum();
        assert_eq!(total, 60 * k);
    }

    #[test]
    fn a_member_leaving_moves_only_the_pairs_it_was_in() {
        let all = members(60);
        let before = watchers(&all, 20, 3);
        let gone = "node-17";
        let rest: Vec<ProbeTarget> = all.iter().filter(|m| m.node != gone).cloned().collect();
        let after = watchers(&rest, 20, 3);
        for (target, sources) in &after {
            let old = &before[target];
            // Surviving watchers keep watching; only the departed one's slot
            // goes to the next in rank.
            let kept = sources.iter().filter(|s| old.contains(s)).count();
            let lost_one = old.iter().any(|s| s == gone);
            assert_eq!(
                kept,
                3 - usize::from(lost_one),
                "{target}: {old:?} -> {sources:?}"
            );
        }
    }
}
