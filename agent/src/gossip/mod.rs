//! SWIM gossip membership: foca over sealed UDP datagrams, Lifeguard-style
//! local health and dynamic suspicion, and TCP push-pull.
//!
//! `GossipNode` is the sans-IO core (no clock, no socket); `Gossip` runs it
//! in one tokio task over real sockets.

mod bootstrap;
mod broadcast;
mod config;
mod driver;
mod envelope;
mod health;
mod identity;
mod keyring;
mod members;
mod metrics;
mod node;
mod pushpull;
mod scheduler;
mod suspicion;

pub use bootstrap::{DEFAULT_GOSSIP_PORT, JoinTargets};
pub use config::GossipConfig;
pub use driver::{Gossip, GossipHandle, GossipSockets, MemberEvent, MemberView, MembershipView};
pub use envelope::{OVERHEAD, OpenError, Purpose, open, seal};
pub use identity::{NodeId, NodeMeta, Role};
pub use keyring::{KeyId, Keyring, KeyringError};
pub use members::{MemberRecord, MemberState, MembershipEvent, Transition};
pub use metrics::GossipMetrics;
pub use node::{DatagramError, GossipNode, NodeStats, PushPull};
