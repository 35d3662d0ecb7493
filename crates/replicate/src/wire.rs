//! What travels between agents: sync requests and answers (JSON sealed
//! with the cluster key, over HTTP) and pushed rows (postcard, inside a
//! gossip rumor that is itself sealed).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use starling_history::{Event, SyncBatch, VersionVector, valid_origin};
use starling_seal::{Keyring, OpenError, Purpose, ReplayError, SealedJsonError};

/// `POST /v1/sync` body, once opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SyncRequest {
    /// What the requester holds: origin → every seq up to this.
    pub vector: VersionVector,
    /// The most rows wanted in one answer; the server caps it too.
    pub max_rows: usize,
}

/// The answer to a sync request, before sealing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SyncReply {
    pub batch: SyncBatch,
    /// Origins the requester named that we have never heard of. Not an
    /// error: after a partition the requester may simply be ahead of us.
    pub unknown_origins: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("not sealed with the cluster key: {0}")]
    Seal(#[from] OpenError),
    #[error("refused: {0}")]
    Replay(#[from] ReplayError),
    #[error("malformed body: {0}")]
    Json(#[from] serde_json::Error),
    #[error("malformed body: {0}")]
    Invalid(String),
}

impl From<SealedJsonError> for WireError {
    fn from(error: SealedJsonError) -> Self {
        match error {
            SealedJsonError::Seal(error) => WireError::Seal(error),
            SealedJsonError::Replay(error) => WireError::Replay(error),
            SealedJsonError::Json(error) => WireError::Json(error),
        }
    }
}

/// [`starling_seal::open_json`], refused as a [`WireError`].
pub(crate) fn open_json<T: DeserializeOwned>(
    keyring: &Keyring,
    purpose: Purpose,
    sealed: Vec<u8>,
) -> Result<T, WireError> {
    Ok(starling_seal::open_json(keyring, purpose, sealed)?)
}

/// Every origin named must have the shape we create, so a bad peer or a
/// fuzzer cannot plant rows under names no agent would ever use.
pub(crate) fn check_origins<'a>(
    origins: impl IntoIterator<Item = &'a String>,
) -> Result<(), WireError> {
    for origin in origins {
        if !valid_origin(origin) {
            return Err(WireError::Invalid(format!(
                "origin {origin:?} is not NODE#16-HEX-DIGITS"
            )));
        }
    }
    Ok(())
}

/// A row as pushed by gossip.
pub(crate) fn encode_push(event: &Event) -> Vec<u8> {
    postcard::to_stdvec(event).expect("events serialize: plain data, no maps")
}

pub(crate) fn decode_push(payload: &[u8]) -> Result<Event, WireError> {
    let event: Event = postcard::from_bytes(payload)
        .map_err(|error| WireError::Invalid(format!("pushed row: {error}")))?;
    check_origins([&event.origin])?;
    Ok(event)
}
