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

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use envelope::{OVERHEAD, OpenError, Purpose, open, seal};
pub use keyring::{KEY_LEN, KeyId, Keyring, KeyringError};

/// `value` as JSON, sealed for `purpose`: the body of every sealed HTTP
/// request between agents, probes and the CLI.
pub fn seal_json(keyring: &Keyring, purpose: Purpose, value: &impl Serialize) -> Vec<u8> {
    let plain =
        serde_json::to_vec(value).expect("wire types serialize: no maps with non-string keys");
    let mut sealed = Vec::with_capacity(plain.len() + OVERHEAD);
    seal(keyring, purpose, &plain, &mut sealed);
    sealed
}

/// Why a sealed JSON body was refused.
#[derive(Debug, thiserror::Error)]
pub enum SealedJsonError {
    #[error("not sealed with the cluster key: {0}")]
    Seal(#[from] OpenError),
    #[error("malformed body: {0}")]
    Json(#[from] serde_json::Error),
}

/// Opens a body [`seal_json`] sealed for `purpose`; nothing of it is
/// parsed unless it authenticates.
pub fn open_json<T: DeserializeOwned>(
    keyring: &Keyring,
    purpose: Purpose,
    mut sealed: Vec<u8>,
) -> Result<T, SealedJsonError> {
    let plain = open(keyring, purpose, &mut sealed)?;
    Ok(serde_json::from_slice(plain)?)
}
