//! The cluster key and the sealed envelope: every gossip datagram,
//! push-pull frame, sync request, annotation and probe report travels
//! sealed with the cluster's keyring, so a frame that fails to open is
//! dropped unparsed.
//!
//! [`Purpose`] is the one registry of channels: each is authenticated
//! into the header, so a frame sealed for one never opens on another, and
//! one enum keeps the bytes distinct.

mod envelope;
mod keyring;
mod replay;

use serde::Serialize;
use serde::de::DeserializeOwned;
use starling_model::unix_ms_now;

pub use envelope::{OVERHEAD, OpenError, Purpose, open, seal};
pub use keyring::{KEY_LEN, KeyId, Keyring, KeyringError};
pub use replay::{MEMORY, ReplayError, ReplayMemory, SKEW_WINDOW, STAMP_LEN, Stamp};

/// `value` as JSON, stamped and sealed for `purpose`: the body of every
/// sealed HTTP request and answer between agents, probes and the CLI.
pub fn seal_json(keyring: &Keyring, purpose: Purpose, value: &impl Serialize) -> Vec<u8> {
    let json =
        serde_json::to_vec(value).expect("wire types serialize: no maps with non-string keys");
    seal_stamped(keyring, purpose, Stamp::new(unix_ms_now()), &json)
}

/// `json` (any bytes) behind `stamp`, sealed for `purpose`: what
/// [`seal_json`] sends, for tests and fuzzing that need other bytes or
/// another time.
pub fn seal_stamped(keyring: &Keyring, purpose: Purpose, stamp: Stamp, json: &[u8]) -> Vec<u8> {
    let mut plain = Vec::with_capacity(STAMP_LEN + json.len());
    plain.extend_from_slice(&stamp.encode());
    plain.extend_from_slice(json);
    let mut sealed = Vec::with_capacity(plain.len() + OVERHEAD);
    seal(keyring, purpose, &plain, &mut sealed);
    sealed
}

/// Why a sealed JSON body was refused.
#[derive(Debug, thiserror::Error)]
pub enum SealedJsonError {
    #[error("not sealed with the cluster key: {0}")]
    Seal(#[from] OpenError),
    #[error("refused: {0}")]
    Replay(#[from] ReplayError),
    #[error("malformed body: {0}")]
    Json(#[from] serde_json::Error),
}

/// Opens a body [`seal_json`] sealed for `purpose`, now; nothing of it is
/// parsed unless it authenticates and its stamp is fresh and new.
pub fn open_json<T: DeserializeOwned>(
    keyring: &Keyring,
    purpose: Purpose,
    mut sealed: Vec<u8>,
) -> Result<T, SealedJsonError> {
    let plain = open(keyring, purpose, &mut sealed)?;
    let (stamp, json) = match Stamp::split(plain) {
        Some((stamp, json)) => (Some(stamp), json),
        None => (None, plain),
    };
    keyring.replays().take(purpose, stamp, unix_ms_now())?;
    Ok(serde_json::from_slice(json)?)
}
