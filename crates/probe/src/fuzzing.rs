//! Entry points for `starling-bench fuzz`, which feeds hostile bytes to
//! every decoder that takes them from the network. Each is the very code
//! the probe's loop and reporter run on what they receive, only without
//! the socket, so the fuzzer exercises the probe itself rather than a copy
//! of it. Not an API: hidden from the docs, and free to change with the
//! probe.

use std::time::Duration;

use starling_seal::Keyring;

use super::probe::{self, ECHO_BUFFER};
use super::prober::Prober;
use super::wire::{Echo, ProbeAssignment};

/// An echo datagram as the loop receives it: cut to the receive buffer as
/// the socket would, opened, decoded and handed to `prober`. Returns the
/// answer the loop would send back.
pub fn receive_echo(
    keyring: &Keyring,
    prober: &mut Prober,
    datagram: &mut [u8],
    now: Duration,
    wall_unix_ms: u64,
) -> Result<Option<Echo>, String> {
    let len = datagram.len().min(ECHO_BUFFER);
    probe::receive_echo(keyring, prober, &mut datagram[..len], now, wall_unix_ms)
}

/// The agent's answer to a report as the reporter reads it.
pub fn read_assignment(keyring: &Keyring, sealed: Vec<u8>) -> Result<ProbeAssignment, String> {
    probe::read_assignment(keyring, sealed)
}
