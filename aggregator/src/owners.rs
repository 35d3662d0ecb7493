//! Which aggregators own a node's events: rendezvous hashing over the
//! alive aggregators, so every node agrees without talking, and an
//! aggregator dying moves only the nodes it owned.

use std::net::SocketAddr;

use starling_gossip::{MemberState, MembershipView, Role, rendezvous};
use starling_model::Service;

/// How many aggregators hold each node's events from the start: one more
/// than can die at once without a moment where a row lives on one disk.
pub const DEFAULT_REPLICAS: usize = 2;

/// An aggregator as a node reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aggregator {
    pub name: String,
    /// Its HTTP API, where streams, health tables and history are served.
    pub api: SocketAddr,
}

/// The alive aggregators in `view` (this node included when it is one),
/// each with an API address.
pub fn alive_aggregators(view: &MembershipView) -> Vec<Aggregator> {
    let me = (view.me.meta.role == Role::Aggregator).then_some(&view.me);
    let others = view
        .members
        .iter()
        .filter(|m| m.state == MemberState::Alive && m.id.meta.role == Role::Aggregator)
        .map(|m| &m.id);
    me.into_iter()
        .chain(others)
        .filter_map(|id| {
            Some(Aggregator {
                name: id.name.clone(),
                api: id.meta.service(Service::Api)?,
            })
        })
        .collect()
}

/// `aggregators` ranked for `node`, best first, cut to `replicas`: the
/// owners its events stream to, and where its history is asked first.
pub fn owners(node: &str, aggregators: &[Aggregator], replicas: usize) -> Vec<Aggregator> {
    ranked(node, aggregators)
        .into_iter()
        .take(replicas)
        .collect()
}

/// Every one of `aggregators`, ranked for `node`: owners first, then the
/// ones to try when the owners do not answer.
pub fn ranked(node: &str, aggregators: &[Aggregator]) -> Vec<Aggregator> {
    rendezvous::rank(node, aggregators.iter().map(|a| a.name.as_str()))
        .into_iter()
        .filter_map(|name| aggregators.iter().find(|a| a.name == name).cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aggregators(names: &[&str]) -> Vec<Aggregator> {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| Aggregator {
                name: (*name).to_owned(),
                api: SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16)),
            })
            .collect()
    }

    #[test]
    fn an_aggregator_leaving_moves_only_the_nodes_it_owned() {
        let all = aggregators(&["a1", "a2", "a3", "a4"]);
        let nodes: Vec<String> = (0..500).map(|i| format!("node-{i}")).collect();
        let gone = "a2";
        let rest: Vec<Aggregator> = all.iter().filter(|a| a.name != gone).cloned().collect();
        let mut moved = 0;
        for node in &nodes {
            let before = owners(node, &all, 2);
            let after = owners(node, &rest, 2);
            let kept: Vec<_> = before.iter().filter(|a| a.name != gone).collect();
            // Every owner that survived is still an owner.
            assert!(kept.iter().all(|a| after.contains(a)), "{node}");
            if before.iter().any(|a| a.name == gone) {
                moved += 1;
            } else {
                assert_eq!(before, after, "{node} was not a2's and must not move");
            }
        }
        // Two of four owners: about half the nodes had a2.
        assert!((150..350).contains(&moved), "{moved} nodes moved");
    }

    #[test]
    fn fewer_aggregators_than_replicas_gives_all_of_them() {
        let one = aggregators(&["a1"]);
        assert_eq!(owners("n1", &one, 2), one);
        assert!(owners("n1", &[], 2).is_empty());
    }
}
