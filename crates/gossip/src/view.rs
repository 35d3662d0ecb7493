//! What the rest of the agent reads of gossip: the membership snapshot
//! the loop republishes, and the typed transitions it broadcasts.

use super::identity::NodeId;
use super::members::{MemberState, Transition};

/// One member as the rest of the agent sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub id: NodeId,
    pub state: MemberState,
    pub since_unix_ms: u64,
    /// Other members whose own probes of this one failed lately (the
    /// Lifeguard suspicion witnesses): how many agree it is in trouble.
    pub witnesses: u32,
    /// Down, and this node saw it suspect first: a Down it could check,
    /// not one it only heard of (see `MemberRecord`).
    pub suspected_before_down: bool,
}

/// A snapshot of membership, republished by the loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipView {
    pub me: NodeId,
    /// Every other member we know of, including down and left ones.
    pub members: Vec<MemberView>,
    pub local_health: u32,
    /// At least one other member is alive in our view.
    pub connected: bool,
    /// When the loop last published: proves the loop is turning.
    pub published_unix_ms: u64,
    /// When this agent's gossip started.
    pub started_unix_ms: u64,
}

impl MembershipView {
    /// This node and the members alive in its view: the candidates for
    /// anything ranked by rendezvous over "who is up".
    pub fn alive_names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.me.name.as_str()).chain(
            self.members
                .iter()
                .filter(|m| m.state == MemberState::Alive)
                .map(|m| m.id.name.as_str()),
        )
    }
}

#[cfg(any(test, feature = "test-util"))]
impl MembershipView {
    /// `me` and other members in the given states, on made-up loopback
    /// addresses: for the pure functions that read a view (here and in
    /// the layers above, through the `test-util` feature).
    pub fn for_tests(me: &str, others: &[(&str, MemberState)]) -> Self {
        let id = |name: &str, port: u16| {
            NodeId::from(crate::identity::NodeIdentity {
                name: name.to_owned(),
                ..crate::identity::NodeIdentity::seed(std::net::SocketAddr::from((
                    [127, 0, 0, 1],
                    port,
                )))
            })
        };
        MembershipView {
            me: id(me, 1),
            members: others
                .iter()
                .enumerate()
                .map(|(i, (name, state))| MemberView {
                    id: id(name, 2 + i as u16),
                    state: *state,
                    since_unix_ms: 0,
                    witnesses: 0,
                    suspected_before_down: *state == MemberState::Down,
                })
                .collect(),
            local_health: 0,
            connected: true,
            published_unix_ms: 0,
            started_unix_ms: 0,
        }
    }
}

/// A membership transition, stamped with wall-clock time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberEvent {
    pub member: NodeId,
    pub transition: Transition,
    pub at_unix_ms: u64,
    /// For a Down: this node saw the member suspect long enough to have
    /// heard a refutation (see `MemberView::suspected_before_down`).
    pub suspected_before_down: bool,
}
