//! What travels between agents: sync requests and answers (JSON sealed
//! with the cluster key, over HTTP) and pushed rows (postcard, inside a
//! gossip rumor that is itself sealed).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use starling_history::digest::{Slices, VectorDigest};
use starling_history::{
    CheckResult, Event, SyncBatch, VersionVector, valid_node_name, valid_origin,
};
use starling_model::Status;

use super::serve::SYNC_BATCH_ROWS;
use starling_seal::{Keyring, OpenError, Purpose, ReplayError, SealedJsonError};

/// `POST /v1/sync` body, once opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SyncRequest {
    /// What the requester holds: origin → every seq up to this.
    pub vector: VersionVector,
    /// The most rows wanted in one answer; the server caps it too.
    pub max_rows: usize,
    /// First step of a sync: "is your vector this one?". The answer is a
    /// [`Comparison`] and no rows; `vector` is left empty. Releases before
    /// fingerprints refuse the field (400), and the asker falls back to
    /// sending its whole vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    /// Second step: rows only of the origins in these slices, the ones
    /// whose fingerprints differed; `vector` holds only those origins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<Slices>,
}

impl SyncRequest {
    /// The whole-vector request every release understands.
    pub fn everything(vector: VersionVector, max_rows: usize) -> Self {
        SyncRequest {
            vector,
            max_rows,
            fingerprint: None,
            only: None,
        }
    }

    /// The first step: our fingerprint, no vector.
    pub fn fingerprint(fingerprint: Fingerprint) -> Self {
        SyncRequest {
            fingerprint: Some(fingerprint),
            ..SyncRequest::everything(VersionVector::new(), SYNC_BATCH_ROWS)
        }
    }

    /// The second step: rows of the origins in `only`, of which we hold
    /// `vector` (already restricted to them).
    pub fn within(only: Slices, vector: VersionVector) -> Self {
        SyncRequest {
            only: Some(only),
            ..SyncRequest::everything(vector, SYNC_BATCH_ROWS)
        }
    }
}

/// The asker's whole vector in 8 bytes, and how finely it would like a
/// difference described.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Fingerprint {
    pub whole: u64,
    pub buckets: u16,
}

/// The answer to a [`Fingerprint`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Comparison {
    /// Both vectors are the same: nothing to pull.
    Same,
    /// They differ; here are the answerer's fingerprints per slice.
    Differs(VectorDigest),
}

/// The answer to a sync request, before sealing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SyncReply {
    pub batch: SyncBatch,
    /// Origins the requester named that we have never heard of. Not an
    /// error: after a partition the requester may simply be ahead of us.
    pub unknown_origins: Vec<String>,
    /// Set, with an empty batch, when the request was a fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
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
            SealedJsonError::Inflate => WireError::Invalid(format!(
                "not deflate data, or more than {} bytes inflated",
                starling_seal::MAX_INFLATED
            )),
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

/// Marks a gossip payload as a held result, not a row: rows are postcard
/// events, whose first bytes are an origin's length and name and can never
/// spell this (an origin is `NODE#HEX`, and no node name starts with `TRLHELD`
/// after a length byte of 83).
const HELD_MAGIC: &[u8; 8] = b"STRLHELD";
/// The longest message a held result carries: it must fit one datagram.
const HELD_MESSAGE_BYTES: usize = 512;

/// A check result that its node could not write (its disk is full), sent
/// by gossip so the cluster's roll-up does not wait for the disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Held {
    node: String,
    check: String,
    status: Status,
    message: String,
    at_unix_ms: u64,
}

/// What a gossip payload of ours carries.
#[derive(Debug)]
pub(crate) enum Pushed {
    Row(Event),
    Held(CheckResult),
}

pub(crate) fn encode_held(result: &CheckResult) -> Vec<u8> {
    let mut message = result.message.clone();
    if message.len() > HELD_MESSAGE_BYTES {
        let mut end = HELD_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    let held = Held {
        node: result.node.clone(),
        check: result.check.clone(),
        status: result.status,
        message,
        at_unix_ms: result.at_unix_ms,
    };
    let mut payload = HELD_MAGIC.to_vec();
    payload.extend(postcard::to_stdvec(&held).expect("held results serialize: plain data"));
    payload
}

/// A pushed row, or a held result.
pub(crate) fn decode_pushed(payload: &[u8]) -> Result<Pushed, WireError> {
    let Some(held) = payload.strip_prefix(HELD_MAGIC) else {
        return decode_push(payload).map(Pushed::Row);
    };
    let held: Held = postcard::from_bytes(held)
        .map_err(|error| WireError::Invalid(format!("held result: {error}")))?;
    if !valid_node_name(&held.node)
        || held.check.is_empty()
        || held.message.len() > HELD_MESSAGE_BYTES
    {
        return Err(WireError::Invalid(
            "held result: bad node, check or message".to_owned(),
        ));
    }
    Ok(Pushed::Held(CheckResult {
        node: held.node,
        check: held.check,
        status: held.status,
        message: held.message,
        details: serde_json::Value::Null,
        duration_ms: 0,
        at_unix_ms: held.at_unix_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(message: &str) -> CheckResult {
        CheckResult {
            node: "n1".to_owned(),
            check: "disk".to_owned(),
            status: Status::Critical,
            message: message.to_owned(),
            details: serde_json::json!({"free": 0}),
            duration_ms: 3,
            at_unix_ms: 42,
        }
    }

    #[test]
    fn a_held_result_round_trips_without_its_details_and_with_a_bounded_message() {
        let Pushed::Held(back) = decode_pushed(&encode_held(&result("full"))).expect("decodes")
        else {
            panic!("a held result");
        };
        assert_eq!(
            (back.status, back.message.as_str(), back.at_unix_ms),
            (Status::Critical, "full", 42)
        );
        assert_eq!(back.details, serde_json::Value::Null);
        let long = "é".repeat(600);
        let Pushed::Held(back) = decode_pushed(&encode_held(&result(&long))).expect("decodes")
        else {
            panic!("a held result");
        };
        assert!(back.message.len() <= HELD_MESSAGE_BYTES);
        assert!(decode_pushed(b"STRLHELD\x02").is_err());
    }
}
