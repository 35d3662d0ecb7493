//! Entry points for `starling-bench fuzz`, which feeds hostile bytes to
//! every decoder that takes them from the network. Each is the very
//! function the server, the puller or the push task runs on a body before
//! it touches the store, so the fuzzer exercises the receivers' own code
//! rather than a copy of it. Not an API: hidden from the docs, and free to
//! change with the receivers.

use bytes::Bytes;
use starling_history::digest::{Slices, VectorDigest, buckets_for};
use starling_history::{CheckResult, Event, SyncBatch, VersionVector};
use starling_model::ApiError;
use starling_seal::{Keyring, Purpose, seal_json};

use super::pull;
use super::serve::{self, SYNC_BATCH_ROWS};
use super::wire::{self, Fingerprint, SyncRequest, WireError};

/// What the server passes to `missing_for` (or `missing_in` when the
/// request names slices) after reading a sync request.
pub type RowsAsked = (VersionVector, usize, Option<Slices>);

/// `POST /v1/sync` as the server reads it: a fingerprint is compared with
/// `ours` here (`None`); a request for rows comes back as [`RowsAsked`].
pub fn read_sync_request(
    keyring: &Keyring,
    body: &[u8],
    ours: &VersionVector,
) -> Result<Option<RowsAsked>, ApiError> {
    let request = serve::read_sync_request(keyring, Bytes::copy_from_slice(body))?;
    if let Some(fingerprint) = request.fingerprint {
        serve::compare(ours, fingerprint);
        return Ok(None);
    }
    Ok(Some((request.vector, request.max_rows, request.only)))
}

/// The sync requests the puller seals for `vector`: the fingerprint, the
/// scoped second step (two slices of four), and the whole vector.
pub fn sync_request_bodies(keyring: &Keyring, vector: VersionVector) -> [Vec<u8>; 3] {
    let fingerprint = Fingerprint {
        whole: VectorDigest::whole(&vector),
        buckets: buckets_for(vector.len()),
    };
    let only = Slices::new(4, vec![0, 2]);
    [
        SyncRequest::fingerprint(fingerprint),
        SyncRequest::within(only.clone(), only.restrict(&vector)),
        SyncRequest::everything(vector, SYNC_BATCH_ROWS),
    ]
    .map(|request| seal_json(keyring, Purpose::SyncRequest, &request))
}

/// A sync answer as the puller reads it: the batch it then applies.
pub fn read_sync_reply(keyring: &Keyring, sealed: Vec<u8>) -> Result<SyncBatch, WireError> {
    Ok(pull::read_reply(keyring, sealed)?.batch)
}

/// `POST /v1/events` as the server reads it: the node the annotation is
/// about and its message, which it then records.
pub fn read_annotation(
    keyring: &Keyring,
    body: &[u8],
    own_node: &str,
) -> Result<(String, String), ApiError> {
    serve::read_annotation(keyring, Bytes::copy_from_slice(body), own_node)
}

/// A row as the publisher pushes it inside a gossip rumor.
pub fn encode_push(event: &Event) -> Vec<u8> {
    wire::encode_push(event)
}

/// A held result as the publisher sends it while its disk is full.
pub fn encode_held(result: &CheckResult) -> Vec<u8> {
    wire::encode_held(result)
}

/// A rumor's payload as the push task decodes it: a row to store, or a
/// held result (`None` here; the task keeps it in memory).
pub fn decode_pushed(payload: &[u8]) -> Result<Option<Event>, WireError> {
    match wire::decode_pushed(payload)? {
        wire::Pushed::Row(event) => Ok(Some(event)),
        wire::Pushed::Held(_) => Ok(None),
    }
}
