//! Who a gossip member is: the identity foca disseminates in every update.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The part a node plays in the cluster. Later checks and the aggregator
/// select members by role, so it travels with the identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    ControlPlane,
    Worker,
    Aggregator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
            Role::Aggregator => "aggregator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "control-plane" => Ok(Role::ControlPlane),
            "worker" => Ok(Role::Worker),
            "aggregator" => Ok(Role::Aggregator),
            other => Err(format!(
                "unknown role {other:?} (expected control-plane, worker or aggregator)"
            )),
        }
    }
}

/// How many addresses a member advertises besides its gossip address.
pub const SERVICE_SLOTS: usize = 2;

/// Metadata other members need to reach this node's other surfaces.
///
/// It lives inside the identity because foca has no separate metadata
/// channel: changing it means a new identity (a higher incarnation), which
/// foca disseminates like any rejoin.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeMeta {
    pub role: Role,
    /// Where the node's other services answer, by slot. Gossip carries
    /// them and never reads them: the layers above assign the slots
    /// (`starling_model::Service`), as memberlist keeps a delegate's
    /// metadata opaque. A fixed array: postcard writes it exactly as the
    /// two optional addresses earlier versions wrote as named fields, so
    /// old and new agents read each other's identities.
    pub services: [Option<SocketAddr>; SERVICE_SLOTS],
}

impl NodeMeta {
    /// The address advertised in `slot`, if any.
    pub fn service(&self, slot: impl Into<usize>) -> Option<SocketAddr> {
        self.services.get(slot.into()).copied().flatten()
    }
}

/// A gossip member's identity.
///
/// Two identities with the same `addr` are the same node at different
/// incarnations; the higher incarnation wins, which is how a restarted or
/// falsely-declared-down node replaces its old self without waiting for the
/// cluster to forget it.
///
/// One shared allocation: foca's member list, our member table, every
/// event and view hold clones of the same identity, so a member costs a
/// node one copy of its fields, not one per holder. At 5,000 members that
/// is what keeps a node's membership a few MiB (and the 5,000-node
/// simulation, which holds every node's, inside one machine). It reads as
/// its fields ([`NodeIdentity`]) and is written, on the wire and in JSON,
/// exactly as they are.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NodeId(Arc<NodeIdentity>);

/// The fields of a [`NodeId`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The Kubernetes node name: what operators recognise.
    pub name: String,
    /// Advertised gossip address (UDP for SWIM, TCP for push-pull).
    pub addr: SocketAddr,
    /// Process incarnation: strictly increasing across restarts (persisted
    /// in the data dir) and bumped by `renew` after a false Down.
    ///
    /// Not foca's own `Incarnation`, which only counts refuted suspicions
    /// within one identity.
    pub incarnation: u64,
    pub meta: NodeMeta,
}

impl From<NodeIdentity> for NodeId {
    fn from(fields: NodeIdentity) -> Self {
        NodeId(Arc::new(fields))
    }
}

impl std::ops::Deref for NodeId {
    type Target = NodeIdentity;

    fn deref(&self) -> &NodeIdentity {
        &self.0
    }
}

impl NodeId {
    /// The fields to change, copied first if another holder shares them:
    /// a changed identity is a new one, never an edit seen by the others.
    pub fn make_mut(&mut self) -> &mut NodeIdentity {
        Arc::make_mut(&mut self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        NodeIdentity::deserialize(deserializer).map(NodeId::from)
    }
}

impl NodeId {
    /// A stand-in for a peer we know only by address (a `--join` seed).
    ///
    /// foca needs an identity to announce to; the real member answers with
    /// its own identity, which wins the address conflict because any real
    /// incarnation is above zero.
    pub fn seed(addr: SocketAddr) -> Self {
        NodeIdentity::seed(addr).into()
    }
}

impl NodeIdentity {
    /// The fields of [`NodeId::seed`]: a base to build other identities
    /// from (`NodeIdentity { name, ..NodeIdentity::seed(addr) }`).
    pub fn seed(addr: SocketAddr) -> Self {
        NodeIdentity {
            name: String::new(),
            addr,
            incarnation: 0,
            meta: NodeMeta {
                role: Role::Worker,
                services: [None; SERVICE_SLOTS],
            },
        }
    }
}

impl NodeId {
    /// `self` is the same running process as `older`, which changed its
    /// metadata or renewed itself since; a restart steps the incarnation by
    /// at least [`crate::incarnation::RESTART_STEP`].
    pub fn same_process_as(&self, older: &NodeId) -> bool {
        self.name == older.name
            && self.incarnation > older.incarnation
            && self.incarnation - older.incarnation < crate::incarnation::RESTART_STEP
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.name, self.addr, self.incarnation)
    }
}

impl foca::Identity for NodeId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        let mut renewed = self.clone();
        renewed.make_mut().incarnation += 1;
        Some(renewed)
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.incarnation > adversary.incarnation
    }
}

#[cfg(test)]
mod tests {
    use foca::Identity;

    use super::*;

    fn node(incarnation: u64) -> NodeId {
        NodeIdentity {
            incarnation,
            name: "n1".into(),
            ..NodeIdentity::seed("127.0.0.1:7946".parse().expect("valid literal"))
        }
        .into()
    }

    #[test]
    fn renewed_identity_wins_over_the_old_one() {
        let old = node(5);
        let new = old.renew().expect("starling identities always renew");
        assert_eq!(new.addr(), old.addr());
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }

    #[test]
    fn any_real_identity_wins_over_a_seed_placeholder() {
        let seed = NodeId::seed(node(1).addr);
        assert!(node(1).win_addr_conflict(&seed));
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in [Role::ControlPlane, Role::Worker, Role::Aggregator] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("master".parse::<Role>().is_err());
    }

    /// The metadata as agents before the service slots wrote it; the
    /// bytes must not change, or a rolling upgrade splits the cluster.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct NamedMeta {
        role: Role,
        api_addr: Option<SocketAddr>,
        probe_addr: Option<SocketAddr>,
    }

    #[test]
    fn service_slots_are_the_named_fields_of_earlier_agents_on_the_wire() {
        let api: SocketAddr = "10.0.0.5:7947".parse().expect("literal");
        let probe: SocketAddr = "10.244.1.7:7949".parse().expect("literal");
        for (api, probe) in [(Some(api), Some(probe)), (Some(api), None), (None, None)] {
            let slotted = NodeMeta {
                role: Role::ControlPlane,
                services: [api, probe],
            };
            let named = NamedMeta {
                role: Role::ControlPlane,
                api_addr: api,
                probe_addr: probe,
            };
            let bytes = postcard::to_stdvec(&slotted).expect("serializes");
            assert_eq!(bytes, postcard::to_stdvec(&named).expect("serializes"));
            let read: NamedMeta = postcard::from_bytes(&bytes).expect("an old agent reads it");
            assert_eq!(read, named);
            let back: NodeMeta = postcard::from_bytes(&bytes).expect("round trip");
            assert_eq!(back, slotted);
        }
    }
}
