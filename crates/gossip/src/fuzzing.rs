//! Entry points for `starling-bench fuzz`, which feeds hostile bytes to
//! every decoder that takes them from the network. Each does exactly what
//! the gossip task does with a received datagram or push-pull stream, only
//! without the socket, so the fuzzer exercises the receivers' own code
//! rather than a copy of it. Not an API: hidden from the docs, and free to
//! change with the receivers.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use foca::Member;
use starling_seal::Keyring;

use super::driver;
use super::identity::NodeId;
use super::node::GossipNode;
use super::pushpull;

/// A datagram as the gossip task takes it from its UDP socket: refused if
/// oversize or if it does not open, else decoded and applied by foca.
/// `Err` is the reason the task counts it dropped under.
pub fn receive_datagram(
    node: &mut GossipNode,
    keyring: &Keyring,
    datagram: &mut [u8],
    now: Duration,
) -> Result<(), &'static str> {
    driver::receive_datagram(node, keyring, datagram, now)
}

/// A push-pull request as the responder reads and merges it: the
/// length-prefixed frame read from `stream`, opened, decoded, and applied
/// to `node` (what the task's `Command::Serve` does). Returns how many
/// members the peer sent.
pub fn serve_push_pull(
    node: &mut GossipNode,
    keyring: &Keyring,
    mut stream: &[u8],
    now: Duration,
) -> Result<usize, &'static str> {
    let (members, _, _) =
        ready(pushpull::read_state(&mut stream, keyring)).map_err(|error| error.reason())?;
    let count = members.len();
    node.apply_membership_state(members, now);
    Ok(count)
}

/// The stream an initiator writes for `members`: real frames to mutate.
pub fn push_pull_stream(keyring: &Keyring, members: &[Member<NodeId>]) -> Vec<u8> {
    let mut stream = Vec::new();
    ready(pushpull::write_state(&mut stream, keyring, members, None))
        .expect("a membership state fits a frame");
    stream
}

/// In-memory streams never wait, so one poll completes the future.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("reads and writes in memory are always ready"),
    }
}
