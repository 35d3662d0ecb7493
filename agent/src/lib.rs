//! The starling agent.
pub mod gossip;
