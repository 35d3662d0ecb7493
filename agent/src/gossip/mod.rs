//! SWIM gossip membership.
