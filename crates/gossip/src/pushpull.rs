//! memberlist-style push-pull: the full membership state exchanged with one
//! peer over TCP, on join and periodically.
//!
//! A DaemonSet rollout starts every agent at once; a joiner learns only one
//! Feed packet of members from SWIM, so full views would take minutes at
//! hundreds of nodes. One exchange gives the joiner everything its peer
//! knows, and periodic exchanges with random peers converge epidemically.
//!
//! Wire: a 4-byte big-endian length, then one envelope (purpose
//! `PushPull`) sealing the postcard-encoded `Vec<Member<NodeId>>`. The
//! initiator writes its state first; the responder merges it and answers
//! with its own.

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

/// Our side of one exchange as the initiator, connecting from `source`
/// (our gossip address) when given. Returns the peer's state and the
/// bytes (sent, received).
pub(crate) async fn exchange(
    peer: SocketAddr,
    source: Option<IpAddr>,
    keyring: &Keyring,
    ours: &[Member<NodeId>],
) -> Result<(Vec<Member<NodeId>>, usize, usize), PushPullError> {
    let mut stream = timed(connect(peer, source)).await??;
    let sent = timed(write_state(&mut stream, keyring, ours)).await??;
    let (theirs, received) = timed(read_state(&mut stream, keyring)).await??;
    Ok((theirs, sent, received))
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
pub(crate) async fn write_state(
    stream: &mut (impl AsyncWrite + Unpin),
    keyring: &Keyring,
    members: &[Member<NodeId>],
) -> Result<usize, PushPullError> {
    let plain = postcard::to_stdvec(members)?;
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

pub(crate) async fn read_state(
    stream: &mut (impl AsyncRead + Unpin),
    keyring: &Keyring,
) -> Result<(Vec<Member<NodeId>>, usize), PushPullError> {
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
    let members = postcard::from_bytes(plain)?;
    Ok((members, len + 4))
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
