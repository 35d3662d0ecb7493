//! The server side: answering anti-entropy and accepting annotations.
//! Both require the cluster key; a refused request touches nothing.

use bytes::Bytes;
use starling_model::{AnnotationAck, ApiError};

use starling_history::digest::{MAX_BUCKETS, Slices, VectorDigest};
use starling_history::{EventKind, NewEvent, Store, SyncBatch, VersionVector, valid_node_name};
use starling_seal::{Keyring, Purpose};

use super::metrics::ReplicationMetrics;
use super::publisher::Publisher;
use super::wire::{self, Comparison, Fingerprint, SyncReply, SyncRequest, WireError};
use starling_model::AnnotationRequest;
use starling_seal::seal_json;

/// Rows in one sync answer: ~1 MiB of JSON, milliseconds of SQLite, and
/// 20 round trips for a node that missed 100,000 events.
pub const SYNC_BATCH_ROWS: usize = 5000;
/// Origins one version vector may name: one per node that ever recorded,
/// with generous room for restarts that wiped a data dir.
const MAX_ORIGINS: usize = 100_000;
/// The longest annotation: a rumor must fit one datagram.
pub const MAX_ANNOTATION_BYTES: usize = 512;

pub async fn answer_sync(
    store: &Store,
    keyring: &Keyring,
    metrics: &ReplicationMetrics,
    body: Bytes,
) -> Result<Vec<u8>, ApiError> {
    let result = sync_reply(store, keyring, body).await;
    metrics.served(if result.is_ok() { "ok" } else { "refused" });
    if let Err(refusal) = &result {
        tracing::debug!(%refusal, "sync request refused");
    }
    result
}

async fn sync_reply(store: &Store, keyring: &Keyring, body: Bytes) -> Result<Vec<u8>, ApiError> {
    let request = read_sync_request(keyring, body)?;
    let ours = store.version_vector().await.map_err(unavailable)?;
    let reply = match request.fingerprint {
        Some(fingerprint) => SyncReply {
            batch: SyncBatch::default(),
            unknown_origins: Vec::new(),
            comparison: Some(compare(&ours, fingerprint)),
        },
        None => {
            let unknown_origins = request
                .vector
                .keys()
                .filter(|origin| !ours.contains_key(*origin))
                .cloned()
                .collect();
            let batch = store
                .missing_for(request.vector, request.max_rows, request.only)
                .await
                .map_err(unavailable)?;
            SyncReply {
                batch,
                unknown_origins,
                comparison: None,
            }
        }
    };
    Ok(seal_json(keyring, Purpose::SyncReply, &reply))
}

/// Our answer to an asker's fingerprint: the same vector, or ours in the
/// slices it asked for.
pub(crate) fn compare(ours: &VersionVector, theirs: Fingerprint) -> Comparison {
    if VectorDigest::whole(ours) == theirs.whole {
        Comparison::Same
    } else {
        Comparison::Differs(VectorDigest::sliced(ours, theirs.buckets))
    }
}

/// A sync request opened and checked, its row limit capped: nothing of
/// the store is read for a request that fails here.
pub(crate) fn read_sync_request(keyring: &Keyring, body: Bytes) -> Result<SyncRequest, ApiError> {
    let mut request: SyncRequest =
        wire::open_json(keyring, Purpose::SyncRequest, body.to_vec()).map_err(refusal("sync"))?;
    if request.vector.len() > MAX_ORIGINS {
        return Err(ApiError::BadRequest(format!(
            "sync: the version vector names {} origins, more than {MAX_ORIGINS}",
            request.vector.len()
        )));
    }
    wire::check_origins(request.vector.keys()).map_err(refusal("sync"))?;
    let buckets = request
        .fingerprint
        .map(|f| f.buckets)
        .into_iter()
        .chain(request.only.as_ref().map(|only| only.buckets));
    for buckets in buckets {
        if !(1..=MAX_BUCKETS).contains(&buckets) {
            return Err(ApiError::BadRequest(format!(
                "sync: {buckets} slices; a vector is cut in 1 to {MAX_BUCKETS}"
            )));
        }
    }
    if let Some(only) = &request.only
        && only.slices.iter().any(|&slice| slice >= only.buckets)
    {
        return Err(ApiError::BadRequest(format!(
            "sync: a slice past the last of {}",
            only.buckets
        )));
    }
    // Sorted and without repeats, as `Slices::contains` expects.
    request.only = request
        .only
        .map(|only| Slices::new(only.buckets, only.slices));
    request.max_rows = request.max_rows.clamp(1, SYNC_BATCH_ROWS);
    Ok(request)
}

pub async fn accept_annotation(
    publisher: &Publisher,
    keyring: &Keyring,
    body: Bytes,
) -> Result<AnnotationAck, ApiError> {
    let store = publisher.store();
    let (node, message) = read_annotation(keyring, body, store.node_name())?;
    // A note about a node that never was would sit in every history.
    if !publisher.knows_node(&node).await.map_err(unavailable)? {
        return Err(ApiError::NotFound(format!(
            "annotation: no node named {node:?} in gossip or the history"
        )));
    }
    let event = publisher
        .record(NewEvent {
            at_unix_ms: starling_model::unix_ms_now(),
            kind: EventKind::Annotation,
            node,
            check: None,
            old_state: None,
            new_state: None,
            message,
            dedupe_key: None,
        })
        .await
        .map_err(unavailable)?;
    Ok(AnnotationAck {
        origin: event.origin,
        seq: event.seq,
    })
}

/// An annotation opened and checked: the node it is about (`own_node`
/// when it names none) and its trimmed message.
pub(crate) fn read_annotation(
    keyring: &Keyring,
    body: Bytes,
    own_node: &str,
) -> Result<(String, String), ApiError> {
    let request: AnnotationRequest = wire::open_json(keyring, Purpose::Annotation, body.to_vec())
        .map_err(refusal("annotation"))?;
    let message = request.message.trim();
    if message.is_empty() || message.len() > MAX_ANNOTATION_BYTES {
        return Err(ApiError::BadRequest(format!(
            "annotation: the message must be 1 to {MAX_ANNOTATION_BYTES} bytes"
        )));
    }
    let node = match request.node.map(|n| n.trim().to_owned()) {
        Some(node) if valid_node_name(&node) => node,
        Some(node) if !node.is_empty() => {
            return Err(ApiError::BadRequest(format!(
                "annotation: node {node:?} is not a node name (letters, digits, '.', '_', '-')"
            )));
        }
        _ => own_node.to_owned(),
    };
    Ok((node, message.to_owned()))
}

/// A sealed body that did not open or parse, as the answer to its sender.
pub fn refusal<E: Into<WireError>>(what: &'static str) -> impl Fn(E) -> ApiError {
    move |error| match error.into() {
        WireError::Seal(error) => ApiError::Unauthorized(format!(
            "{what}: the request must be sealed with the cluster key ({error})"
        )),
        WireError::Replay(error) => ApiError::Replayed(format!("{what}: {error}")),
        other => ApiError::BadRequest(format!("{what}: {other}")),
    }
}

fn unavailable(error: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("history: {error}"))
}
