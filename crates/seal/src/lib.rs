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

use std::borrow::Cow;

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

/// Deflate's level for [`Purpose::compresses`]: the fastest. An aggregator
/// compresses every node's health answer every few seconds; at 5,000
/// nodes level 1 cost each of 3 aggregators about 5% of a core more than
/// no compression and level 3 about 15% more, for 5% fewer bytes
/// (BENCHMARKS.md, "Large clusters", step 10).
const DEFLATE_LEVEL: u8 = 1;

/// The most a compressed body may inflate to: a health answer's 5,000
/// rows with the longest messages are about 6 MiB. A body that would
/// inflate past it is refused, so a small sealed body cannot make the
/// receiver allocate without bound.
pub const MAX_INFLATED: usize = 16 << 20;

/// `json` (any bytes) behind `stamp`, sealed for `purpose` (deflated
/// first when the purpose [compresses](Purpose::compresses)): what
/// [`seal_json`] sends, for tests and fuzzing that need other bytes or
/// another time.
pub fn seal_stamped(keyring: &Keyring, purpose: Purpose, stamp: Stamp, json: &[u8]) -> Vec<u8> {
    let json = if purpose.compresses() {
        Cow::Owned(miniz_oxide::deflate::compress_to_vec(json, DEFLATE_LEVEL))
    } else {
        Cow::Borrowed(json)
    };
    let mut plain = Vec::with_capacity(STAMP_LEN + json.len());
    plain.extend_from_slice(&stamp.encode());
    plain.extend_from_slice(&json);
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
    #[error("malformed body: not deflate data, or more than {MAX_INFLATED} bytes inflated")]
    Inflate,
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
    let json = if purpose.compresses() {
        Cow::Owned(
            miniz_oxide::inflate::decompress_to_vec_with_limit(json, MAX_INFLATED)
                .map_err(|_| SealedJsonError::Inflate)?,
        )
    } else {
        Cow::Borrowed(json)
    };
    Ok(serde_json::from_slice(&json)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keyring whose replay memory started before anything the test
    /// seals (it refuses stamps from its own first millisecond).
    fn keyring() -> Keyring {
        let keyring = Keyring::parse(&Keyring::generate_key()).expect("a fresh key parses");
        std::thread::sleep(std::time::Duration::from_millis(2));
        keyring
    }

    /// Rows of the same shape, as a health answer carries them.
    fn rows(count: usize) -> Vec<serde_json::Value> {
        (0..count)
            .map(|i| {
                serde_json::json!({
                    "revision": 1000 + i,
                    "result": {"node": format!("node-{i}"), "check": "etcd", "status": "ok",
                               "message": "etcd: 3 of 3 members answered", "duration_ms": 4}
                })
            })
            .collect()
    }

    #[test]
    fn compressed_answers_open_to_what_was_sealed_and_are_smaller() {
        let keyring = keyring();
        let value = rows(400);
        let json = serde_json::to_vec(&value).expect("serializes");
        let sealed = seal_json(&keyring, Purpose::HealthReply, &value);
        assert!(
            sealed.len() * 5 < json.len(),
            "{} of {}",
            sealed.len(),
            json.len()
        );
        let opened: Vec<serde_json::Value> =
            open_json(&keyring, Purpose::HealthReply, sealed).expect("opens");
        assert_eq!(opened, value);
    }

    /// A channel older agents read carries its JSON as it always did.
    #[test]
    fn other_channels_are_not_compressed() {
        let keyring = keyring();
        let value = rows(3);
        let mut sealed = seal_json(&keyring, Purpose::SyncReply, &value);
        let plain = open(&keyring, Purpose::SyncReply, &mut sealed).expect("opens");
        let (_, json) = Stamp::split(plain).expect("stamped");
        assert_eq!(json, serde_json::to_vec(&value).expect("serializes"));
    }

    /// A small body that would inflate past the bound, or that is not
    /// deflate data at all, is refused before anything is parsed.
    #[test]
    fn a_body_inflating_past_the_bound_or_not_deflated_is_refused() {
        let keyring = keyring();
        let now = Stamp::new(unix_ms_now());
        let bomb = seal_stamped(
            &keyring,
            Purpose::WindowReply,
            now,
            &vec![b' '; MAX_INFLATED + 1],
        );
        assert!(bomb.len() < MAX_INFLATED / 100, "{} bytes", bomb.len());
        let opened = open_json::<serde_json::Value>(&keyring, Purpose::WindowReply, bomb);
        assert!(
            matches!(opened, Err(SealedJsonError::Inflate)),
            "{opened:?}"
        );

        let mut plain = Stamp::new(unix_ms_now()).encode().to_vec();
        plain.extend_from_slice(b"{\"not\": \"deflated\"}");
        let mut garbage = Vec::new();
        seal(&keyring, Purpose::WindowReply, &plain, &mut garbage);
        let opened = open_json::<serde_json::Value>(&keyring, Purpose::WindowReply, garbage);
        assert!(
            matches!(opened, Err(SealedJsonError::Inflate)),
            "{opened:?}"
        );
    }
}
