//! memberlist-style push-pull: the full membership state exchanged with one
//! peer over TCP, on join and periodically.
//!
//! A DaemonSet rollout starts every agent at once; a joiner learns only one
//! Feed packet of members from SWIM, so full views would take minutes at
//! hundreds of nodes. One exchange gives the joiner everything its peer
//! knows, and periodic exchanges with random peers converge epidemically.
//!
//! Wire: a 4-byte big-endian length, then one envelope (purpose
//! `PushPull`) sealing the postcard-encoded `Vec<Member<NodeId>>`, and
//! optionally a [`Trailer`]. The initiator writes its state first; the
//! responder merges it and answers with its own.
//!
//! The periodic exchange is digest-first: the initiator writes an empty
//! list with its state's fingerprint in the trailer. A responder whose
//! state has the same fingerprint answers with an empty list and `Same`,
//! and the exchange is a few dozen bytes at any cluster size. Otherwise it
//! answers with its state and `SendYours`, and the initiator writes its
//! state in a second frame. A release before trailers reads the first
//! frame as an empty list (postcard ignores trailing bytes), merges
//! nothing, and answers with its whole state as it always did.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use foca::Member;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::identity::NodeId;
use starling_seal::Keyring;
use starling_seal::{self as envelope, OpenError, Purpose};

/// Bounds memory per connection. A member encodes to well under 512 bytes,
/// so this fits tens of thousands of members.
const MAX_FRAME: usize = 16 << 20;

/// Bounds how long a slow or silent peer can hold a connection.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub(crate) enum PushPullError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out after {IO_TIMEOUT:?}")]
    Timeout,
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("frame did not open: {0}")]
    Open(OpenError),
    #[error("undecodable membership state: {0}")]
    Decode(#[from] postcard::Error),
}

impl PushPullError {
    /// A short label for the dropped-datagram metric.
    pub fn reason(&self) -> &'static str {
        match self {
            PushPullError::Io(_) | PushPullError::Timeout => "push_pull_io",
            PushPullError::TooLarge(_) => "oversize",
            PushPullError::Open(error) => error.reason(),
            PushPullError::Decode(_) => "malformed",
        }
    }
}

/// What may follow the member list in a frame, after [`TRAILER_MARK`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trailer {
    /// The initiator's state, as [`fingerprint`]; its list is empty.
    Fingerprint(u64),
    /// The responder's state has the same fingerprint; its list is empty.
    Same,
    /// The responder's list is its state; the initiator's follows.
    SendYours,
}

/// Starts a trailer: bytes no postcard member list ends with by chance
/// matter only to a reader that looks for them.
const TRAILER_MARK: [u8; 8] = *b"STRLDGST";

impl Trailer {
    fn encode(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&TRAILER_MARK);
        match self {
            Trailer::Fingerprint(sum) => {
                out.push(1);
                out.extend_from_slice(&sum.to_le_bytes());
            }
            Trailer::Same => out.push(2),
            Trailer::SendYours => out.push(3),
        }
    }

    /// The trailer in what follows a member list; anything else there is
    /// ignored, as releases before trailers ignored it.
    fn decode(rest: &[u8]) -> Option<Trailer> {
        let rest = rest.strip_prefix(&TRAILER_MARK)?;
        match rest.split_first()? {
            (1, sum) => Some(Trailer::Fingerprint(u64::from_le_bytes(
                sum.get(..8)?.try_into().ok()?,
            ))),
            (2, _) => Some(Trailer::Same),
            (3, _) => Some(Trailer::SendYours),
            _ => None,
        }
    }
}

/// A membership state's fingerprint: the wrapping sum of each member's
/// SHA-256 (first 8 bytes), so the order foca lists them in does not
/// matter and every build computes the same.
pub(crate) fn fingerprint(members: &[Member<NodeId>]) -> u64 {
    members.iter().fold(0u64, |sum, member| {
        let encoded = postcard::to_stdvec(member).expect("a member always encodes");
        let digest = ring::digest::digest(&ring::digest::SHA256, &encoded);
        let first: [u8; 8] = digest.as_ref()[..8]
            .try_into()
            .expect("SHA-256 is 32 bytes");
        sum.wrapping_add(u64::from_le_bytes(first))
    })
}

/// What one exchange brought: the peer's state (empty when it matched
/// ours) and the bytes each way.
pub(crate) struct Exchanged {
    pub theirs: Vec<Member<NodeId>>,
    pub in_sync: bool,
    pub sent: usize,
    pub received: usize,
}

/// Our side of one exchange as the initiator, connecting from `source`
/// (our gossip address) when given; `digest_first` for the periodic
/// exchange (see the module's doc), not for a join or a notice.
pub(crate) async fn exchange(
    peer: SocketAddr,
    source: Option<IpAddr>,
    keyring: &Keyring,
    ours: &[Member<NodeId>],
    digest_first: bool,
) -> Result<Exchanged, PushPullError> {
    let mut stream = timed(connect(peer, source)).await??;
    let (first, trailer) = if digest_first {
        (&[][..], Some(Trailer::Fingerprint(fingerprint(ours))))
    } else {
        (ours, None)
    };
    let mut sent = timed(write_state(&mut stream, keyring, first, trailer)).await??;
    let (theirs, answer, received) = timed(read_state(&mut stream, keyring)).await??;
    if digest_first && answer == Some(Trailer::SendYours) {
        sent += timed(write_state(&mut stream, keyring, ours, None)).await??;
    }
    Ok(Exchanged {
        in_sync: digest_first && answer == Some(Trailer::Same),
        theirs,
        sent,
        received,
    })
}

/// Connects from our gossip address, not one the kernel picks: a peer, a
/// firewall or a NetworkPolicy sees this node where gossip says it is, and
/// a partition that drops our gossip address's packets drops these too.
/// (On one host with many loopback addresses, as in `starling lab`, the
/// kernel would otherwise pick 127.0.0.1.)
async fn connect(peer: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = match source {
        Some(IpAddr::V4(ip)) if peer.is_ipv4() => {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((ip, 0)))?;
            socket
        }
        Some(IpAddr::V6(ip)) if peer.is_ipv6() => {
            let socket = TcpSocket::new_v6()?;
            socket.bind(SocketAddr::from((ip, 0)))?;
            socket
        }
        _ => return TcpStream::connect(peer).await,
    };
    socket.connect(peer).await
}

/// Generic over the stream so that the fuzzer (`crate::fuzzing`) writes
/// and reads frames in memory through this very code.
/// The bytes `write_state` writes for these: the length prefix and the
/// sealed frame.
pub(crate) fn frame_len(members: &[Member<NodeId>], trailer: Option<Trailer>) -> usize {
    let mut plain = postcard::to_stdvec(members).expect("a member list always encodes");
    if let Some(trailer) = trailer {
        trailer.encode(&mut plain);
    }
    4 + envelope::OVERHEAD + plain.len()
}

pub(crate) async fn write_state(
    stream: &mut (impl AsyncWrite + Unpin),
    keyring: &Keyring,
    members: &[Member<NodeId>],
    trailer: Option<Trailer>,
) -> Result<usize, PushPullError> {
    let mut plain = postcard::to_stdvec(members)?;
    if let Some(trailer) = trailer {
        trailer.encode(&mut plain);
    }
    let mut frame = Vec::with_capacity(plain.len() + envelope::OVERHEAD + 4);
    envelope::seal(keyring, Purpose::PushPull, &plain, &mut frame);
    if frame.len() > MAX_FRAME {
        return Err(PushPullError::TooLarge(frame.len()));
    }
    let len = u32::try_from(frame.len()).expect("bounded by MAX_FRAME");
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(&frame).await?;
    stream.flush().await?;
    Ok(frame.len() + 4)
}

/// A frame's member list, its trailer if any, and its size on the wire.
pub(crate) type Frame = (Vec<Member<NodeId>>, Option<Trailer>, usize);

pub(crate) async fn read_state(
    stream: &mut (impl AsyncRead + Unpin),
    keyring: &Keyring,
) -> Result<Frame, PushPullError> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        // Refuse before allocating: the length is attacker-controlled.
        return Err(PushPullError::TooLarge(len));
    }
    let mut frame = vec![0u8; len];
    stream.read_exact(&mut frame).await?;
    let plain =
        envelope::open(keyring, Purpose::PushPull, &mut frame).map_err(PushPullError::Open)?;
    let (members, rest) = postcard::take_from_bytes(plain)?;
    Ok((members, Trailer::decode(rest), len + 4))
}

pub(crate) async fn timed<F: std::future::Future>(future: F) -> Result<F::Output, PushPullError> {
    tokio::time::timeout(IO_TIMEOUT, future)
        .await
        .map_err(|_| PushPullError::Timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn member(name: &str, incarnation: u64) -> Member<NodeId> {
        let addr: SocketAddr = "127.0.61.9:7946".parse().expect("an address");
        let id = NodeId::from(crate::identity::NodeIdentity {
            name: name.to_owned(),
            incarnation,
            ..crate::identity::NodeIdentity::seed(addr)
        });
        Member::new(id, foca::Incarnation::default(), foca::State::Alive)
    }

    #[tokio::test]
    async fn a_fingerprint_frame_is_an_empty_list_to_a_release_before_trailers() {
        let keyring = Keyring::parse(&Keyring::generate_key()).expect("a generated key parses");
        let mut stream = Vec::new();
        write_state(&mut stream, &keyring, &[], Some(Trailer::Fingerprint(7)))
            .await
            .expect("writes");
        let (members, trailer, _) = read_state(&mut &stream[..], &keyring).await.expect("reads");
        assert_eq!((members.len(), trailer), (0, Some(Trailer::Fingerprint(7))));
        // What an older release does with the same frame: postcard's
        // `from_bytes` takes the list and ignores what follows.
        let mut frame = stream[4..].to_vec();
        let plain = envelope::open(&keyring, Purpose::PushPull, &mut frame).expect("opens");
        let old: Vec<Member<NodeId>> = postcard::from_bytes(plain).expect("an older reader");
        assert!(old.is_empty());
        // And a frame without a trailer reads as before.
        let mut stream = Vec::new();
        let ours = [member("a", 1)];
        write_state(&mut stream, &keyring, &ours, None)
            .await
            .expect("writes");
        let (members, trailer, _) = read_state(&mut &stream[..], &keyring).await.expect("reads");
        assert_eq!((members, trailer), (ours.to_vec(), None));
    }

    #[test]
    fn the_fingerprint_ignores_order_and_sees_any_change() {
        let a = [member("a", 1), member("b", 2)];
        let swapped = [member("b", 2), member("a", 1)];
        let renewed = [member("a", 1), member("b", 3)];
        assert_eq!(fingerprint(&a), fingerprint(&swapped));
        assert_ne!(fingerprint(&a), fingerprint(&renewed));
        assert_ne!(fingerprint(&a), fingerprint(&a[..1]));
        for trailer in [
            Trailer::Fingerprint(u64::MAX),
            Trailer::Same,
            Trailer::SendYours,
        ] {
            let mut out = Vec::new();
            trailer.encode(&mut out);
            assert_eq!(Trailer::decode(&out), Some(trailer));
            assert_eq!(Trailer::decode(&out[..out.len() - 1]), None, "cut short");
        }
    }

    #[tokio::test]
    async fn an_exchange_comes_from_our_gossip_address() {
        let listener = TcpListener::bind("127.0.61.2:0").await.expect("bind");
        let peer = listener.local_addr().expect("bound");
        let ours: IpAddr = "127.0.61.1".parse().expect("an address");
        let (_stream, from) = tokio::join!(connect(peer, Some(ours)), listener.accept());
        let (_, from) = from.expect("accepted");
        assert_eq!(from.ip(), ours, "not the address the kernel would pick");
        // Without one (a wildcard bind), the kernel picks.
        let (_stream, from) = tokio::join!(connect(peer, None), listener.accept());
        assert_eq!(from.expect("accepted").1.ip(), IpAddr::from([127, 0, 0, 1]));
    }
}
