//! Test-only fixtures for starling.
//!
//! The network-namespace lab ([`NetLab`]) runs real `starling` processes as separate "hosts"
//! joined by a private bridge, and injects faults (partitions with `nft`, loss and delay with
//! `tc netem`). Everything it creates lives inside namespaces it owns, so a test never touches
//! the machine's own interfaces, routes or firewall, and `Drop` removes all of it again.
//!
//! This crate is a dev-dependency only; it never ships in the product path.

mod netlab;
mod wait;

pub use netlab::{LabError, LabProcess, NetLab, lab_or_skip, skip_or_fail};
pub use wait::wait_until;
