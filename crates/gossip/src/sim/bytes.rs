//! What the simulation counts on the wire: IP, UDP and TCP headers around
//! what the protocols write, as Linux sends them on a LAN.

use foca::Member;

use crate::NodeId;
use crate::pushpull::{self, Trailer};

/// IPv4 and UDP headers around each datagram.
const UDP_HEADERS: u64 = 20 + 8;
/// IPv4 and TCP headers (with the timestamp option Linux sends) around
/// each TCP segment.
pub const TCP_HEADERS: u64 = 20 + 32;
/// Segments of a short TCP connection besides its data: the handshake
/// (SYN, SYN-ACK, ACK) and the close (FIN, ACK both ways), by side.
const TCP_SETUP_SEGMENTS: (u64, u64) = (4, 3);

/// Bytes a node put on the wire and took off it, headers included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub sent: u64,
    pub received: u64,
}

/// What one short TCP connection carrying a request and its answer puts on
/// the wire, by side (asker, answerer): each side's payload (what the
/// application writes) in one segment and the peer's ACK of it, plus the
/// handshake and the close, with IP and TCP headers. Counted as push-pull's
/// frames are.
pub fn tcp_exchange_bytes(request: u64, answer: u64) -> (u64, u64) {
    let (setup_asker, setup_answerer) = connection_bytes();
    (
        request + 2 * TCP_HEADERS + setup_asker,
        answer + 2 * TCP_HEADERS + setup_answerer,
    )
}

/// A short TCP connection's handshake and close, by side (opener, peer).
pub(super) fn connection_bytes() -> (u64, u64) {
    let (opener, peer) = TCP_SETUP_SEGMENTS;
    (opener * TCP_HEADERS, peer * TCP_HEADERS)
}

/// A datagram on the wire: foca's bytes sealed, in IP and UDP.
pub(super) fn datagram_bytes(data: &[u8]) -> u64 {
    (data.len() + starling_seal::OVERHEAD) as u64 + UDP_HEADERS
}

/// A push-pull frame on the wire, as `pushpull::write_state` writes it, in
/// one TCP segment and the peer's ACK of it.
pub(super) fn frame_bytes(members: &[Member<NodeId>], trailer: Option<Trailer>) -> u64 {
    pushpull::frame_len(members, trailer) as u64 + 2 * TCP_HEADERS
}
