//! SWIM gossip membership: foca over sealed UDP datagrams, Lifeguard-style
//! local health and dynamic suspicion, and TCP push-pull.
//!
//! `GossipNode` is the sans-IO core (no clock, no socket); `Gossip` runs it
//! in one tokio task over real sockets.

mod bootstrap;
mod broadcast;
mod config;
mod driver;
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod health;
mod identity;
mod incarnation;
mod members;
mod metrics;
mod node;
mod pushpull;
pub mod rendezvous;
mod scheduler;
#[doc(hidden)]
pub mod sim;
mod suspicion;
mod view;

pub use bootstrap::{DEFAULT_GOSSIP_PORT, JoinTargets};
pub use config::GossipConfig;
pub use driver::{Gossip, GossipSockets};
pub use handle::GossipHandle;
pub use identity::{NodeId, NodeIdentity, NodeMeta, Role, SERVICE_SLOTS};
pub use incarnation::{DataDirError, RESTART_STEP, next as next_incarnation};
pub use members::{MemberRecord, MemberState, MembershipEvent, Transition};
pub use metrics::GossipMetrics;
pub use node::{DatagramError, GossipNode, NodeStats, PushPull};
pub use view::{MemberEvent, MemberView, MembershipView};
