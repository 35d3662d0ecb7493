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

use std::net::SocketAddr;
use std::time::Duration;

use foca::Member;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::envelope::{self, OpenError, Purpose};
use super::identity::NodeId;
use super::keyring::Keyring;

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

/// Our side of one exchange as the initiator. Returns the peer's state and
/// the bytes (sent, received).
pub(crate) async fn exchange(
    peer: SocketAddr,
    keyring: &Keyring,
    ours: &[Member<NodeId>],
) -> Result<(Vec<Member<NodeId>>, usize, usize), PushPullError> {
    let mut stream = timed(TcpStream::connect(peer)).await??;
    let sent = timed(write_state(&mut stream, keyring, ours)).await??;
    let (theirs, received) = timed(read_state(&mut stream, keyring)).await??;
    Ok((theirs, sent, received))
}

pub(crate) async fn write_state(
    stream: &mut TcpStream,
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
    stream: &mut TcpStream,
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
