//! The sealed envelope around every gossip datagram (UDP) and push-pull
//! frame (TCP).
//!
//! ```text
//! "STRL" | version u8 | purpose u8 | key id [u8; 4] | nonce [u8; 12] | ciphertext || tag [u8; 16]
//! ```
//!
//! The 10 header bytes before the nonce are the AEAD's associated data, so
//! none of them can be altered: in particular a datagram cannot be replayed
//! as a push-pull frame, nor relabelled with another key's id. An insecure
//! node (`--insecure-gossip`) writes key id 0 and the plaintext right after
//! the header, with no nonce or tag; keeping the header lets each side
//! refuse the other's frames with a precise reason instead of "garbage".
//!
//! A frame that fails to open is counted (by `OpenError::reason`) and
//! dropped; nothing of it is parsed.

use ring::aead::{Aad, NONCE_LEN, Nonce};
use ring::rand::{SecureRandom, SystemRandom};

use crate::keyring::{KeyId, Keyring};

const MAGIC: [u8; 4] = *b"STRL";
const VERSION: u8 = 1;
/// Magic, version, purpose and key id: the authenticated header.
const HEADER_LEN: usize = 4 + 1 + 1 + 4;
/// ChaCha20-Poly1305's tag; `ring` only exposes it at run time, the test
/// below pins it.
const TAG_LEN: usize = 16;

/// Bytes `seal` adds for a keyed ring: header, nonce and tag. An insecure
/// ring adds only the header, so this is also the upper bound for sizing
/// payloads under the MTU.
pub const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// Which channel a frame belongs to. It is authenticated, so a frame sealed
/// for one channel never opens on the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A SWIM datagram over UDP.
    Datagram,
    /// A frame of the membership push-pull exchange over TCP.
    PushPull,
    /// The body of a history sync request (`POST /v1/sync`).
    SyncRequest,
    /// The body of a sync answer. Distinct from the request, so a captured
    /// request cannot be reflected back as an answer.
    SyncReply,
    /// An operator's annotation (`POST /v1/events`).
    Annotation,
    /// An overlay probe's echo datagram.
    Echo,
    /// A probe's report to its agent (`POST /v1/overlay/report`).
    ProbeReport,
    /// The agent's answer to a report: whom to probe.
    ProbeAssignment,
    /// A node's own rows, streamed to an aggregator (`POST /v1/stream`).
    StreamRequest,
    /// An aggregator's acknowledgement of a stream.
    StreamReply,
    /// A node asking an aggregator for the cluster's health table
    /// (`POST /v1/health-table`).
    HealthRequest,
    /// The changed part of the health table.
    HealthReply,
    /// A node asking an aggregator for the newest events of the cluster
    /// log (`POST /v1/window`).
    WindowRequest,
    /// Those events.
    WindowReply,
}

impl Purpose {
    /// The channels whose bodies are sealed JSON over HTTP, stamped
    /// against replay (see `replay`).
    pub const SEALED_JSON: [Purpose; 11] = [
        Purpose::SyncRequest,
        Purpose::SyncReply,
        Purpose::Annotation,
        Purpose::ProbeReport,
        Purpose::ProbeAssignment,
        Purpose::StreamRequest,
        Purpose::StreamReply,
        Purpose::HealthRequest,
        Purpose::HealthReply,
        Purpose::WindowRequest,
        Purpose::WindowReply,
    ];

    /// Whether a sealed JSON body of this channel is deflated before it is
    /// sealed. Only the aggregators' answers that carry many rows: the
    /// health table's changes and the window, sent to every ordinary node
    /// every few seconds, where JSON's repeated keys make up most of the
    /// bytes (about 10× smaller deflated). Both came in the same release
    /// as their compression, so no older agent reads them; a channel that
    /// older agents read must stay as it is.
    pub fn compresses(self) -> bool {
        matches!(self, Purpose::HealthReply | Purpose::WindowReply)
    }

    /// A short label, used as a Prometheus label value; keep them stable.
    pub fn label(self) -> &'static str {
        match self {
            Purpose::Datagram => "datagram",
            Purpose::PushPull => "push_pull",
            Purpose::SyncRequest => "sync_request",
            Purpose::SyncReply => "sync_reply",
            Purpose::Annotation => "annotation",
            Purpose::Echo => "echo",
            Purpose::ProbeReport => "probe_report",
            Purpose::ProbeAssignment => "probe_assignment",
            Purpose::StreamRequest => "stream_request",
            Purpose::StreamReply => "stream_reply",
            Purpose::HealthRequest => "health_request",
            Purpose::HealthReply => "health_reply",
            Purpose::WindowRequest => "window_request",
            Purpose::WindowReply => "window_reply",
        }
    }

    fn byte(self) -> u8 {
        match self {
            Purpose::Datagram => 1,
            Purpose::PushPull => 2,
            Purpose::SyncRequest => 3,
            Purpose::SyncReply => 4,
            Purpose::Annotation => 5,
            Purpose::Echo => 6,
            Purpose::ProbeReport => 7,
            Purpose::ProbeAssignment => 8,
            Purpose::StreamRequest => 9,
            Purpose::StreamReply => 10,
            Purpose::HealthRequest => 11,
            Purpose::HealthReply => 12,
            Purpose::WindowRequest => 13,
            Purpose::WindowReply => 14,
        }
    }
}

/// Why a frame was dropped.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    #[error("frame too short for its envelope")]
    TooShort,
    #[error("not a starling frame (bad magic)")]
    BadMagic,
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    #[error("frame sealed for another channel")]
    WrongPurpose,
    #[error("frame sealed with a key not in our keyring")]
    UnknownKey,
    #[error("frame failed authentication")]
    Unauthentic,
    #[error("plaintext frame from an insecure node refused: this node requires encrypted gossip")]
    PlaintextRejected,
    #[error("encrypted frame refused: this node runs with --insecure-gossip and has no keys")]
    SealedRejected,
}

impl OpenError {
    /// One of each, so layers that count drops can export every reason
    /// from the start.
    pub const ALL: [OpenError; 8] = [
        OpenError::TooShort,
        OpenError::BadMagic,
        OpenError::UnsupportedVersion(0),
        OpenError::WrongPurpose,
        OpenError::UnknownKey,
        OpenError::Unauthentic,
        OpenError::PlaintextRejected,
        OpenError::SealedRejected,
    ];

    /// A short label, used as a Prometheus label value; keep them stable.
    pub fn reason(&self) -> &'static str {
        match self {
            OpenError::TooShort => "too_short",
            OpenError::BadMagic => "bad_magic",
            OpenError::UnsupportedVersion(_) => "unsupported_version",
            OpenError::WrongPurpose => "wrong_purpose",
            OpenError::UnknownKey => "unknown_key",
            OpenError::Unauthentic => "unauthentic",
            OpenError::PlaintextRejected => "plaintext_rejected",
            OpenError::SealedRejected => "sealed_rejected",
        }
    }
}

fn header(purpose: Purpose, id: KeyId) -> [u8; HEADER_LEN] {
    let mut h = [0; HEADER_LEN];
    h[..4].copy_from_slice(&MAGIC);
    h[4] = VERSION;
    h[5] = purpose.byte();
    h[6..].copy_from_slice(&id.0);
    h
}

/// Seals `plaintext` with the keyring's primary key into `out` (cleared
/// first, so one buffer can be reused for every send).
///
/// # Panics
/// If the operating system's random number generator fails: sending with a
/// nonce that may repeat would be worse than stopping.
pub fn seal(keyring: &Keyring, purpose: Purpose, plaintext: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let Some(key) = keyring.primary() else {
        out.reserve(HEADER_LEN + plaintext.len());
        out.extend_from_slice(&header(purpose, KeyId::INSECURE));
        out.extend_from_slice(plaintext);
        return;
    };
    let header = header(purpose, key.id);

    // Random 96-bit nonces, because every agent seals under the same cluster
    // key and restarts at will: a counter would need state shared across
    // thousands of senders and restarts, and a random per-agent prefix plus
    // counter is worse (thousands of short prefixes collide). The chance of
    // any repeat after n seals under one key is about n^2 / 2^97. An agent
    // seals ~20 frames/s (probe, ack, 3-way gossip every 200 ms), so a
    // 5,000-node cluster seals ~2^41.5 frames a year: ~6e-5 chance of one
    // repeat per key-year (100 nodes: ~3e-8). A repeat would let someone who
    // captured both frames XOR their plaintexts and forge under that one
    // nonce; rotating the key resets n, so very large clusters should rotate
    // at least yearly.
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .expect("the operating system's random number generator failed");

    out.reserve(OVERHEAD + plaintext.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = key
        .aead
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(header),
            &mut out[HEADER_LEN + NONCE_LEN..],
        )
        .expect("ChaCha20-Poly1305 only refuses inputs of hundreds of GiB");
    out.extend_from_slice(tag.as_ref());
}

/// Opens a frame in place and returns its plaintext, a sub-slice of
/// `datagram`. On error the buffer's contents are unspecified (ring zeroes
/// what it decrypted when the tag does not match).
pub fn open<'a>(
    keyring: &Keyring,
    purpose: Purpose,
    datagram: &'a mut [u8],
) -> Result<&'a [u8], OpenError> {
    let Some((header, body)) = datagram.split_first_chunk_mut::<HEADER_LEN>() else {
        return Err(OpenError::TooShort);
    };
    let header: [u8; HEADER_LEN] = *header;
    if header[..4] != MAGIC {
        return Err(OpenError::BadMagic);
    }
    if header[4] != VERSION {
        return Err(OpenError::UnsupportedVersion(header[4]));
    }
    if header[5] != purpose.byte() {
        return Err(OpenError::WrongPurpose);
    }
    let id = KeyId([header[6], header[7], header[8], header[9]]);

    if keyring.is_insecure() {
        return if id == KeyId::INSECURE {
            Ok(body)
        } else {
            Err(OpenError::SealedRejected)
        };
    }

    // Id 0 also marks an insecure node's plaintext. A real key has id 0 with
    // probability 2^-32; such a key still works, but any failure on id 0 is
    // reported as what it almost surely is: a plaintext frame.
    let claims_plaintext = id == KeyId::INSECURE;
    let fail = |err| {
        if claims_plaintext {
            OpenError::PlaintextRejected
        } else {
            err
        }
    };

    // Length before key: a frame too short to be sealed by anyone is
    // "too short", whatever id its header happens to carry.
    if body.len() < NONCE_LEN + TAG_LEN {
        return Err(fail(OpenError::TooShort));
    }
    let keys = keyring.keys();
    let candidates = keys.iter().filter(|k| k.id == id).count();
    if candidates == 0 {
        return Err(fail(OpenError::UnknownKey));
    }
    let Some((nonce, sealed)) = body.split_first_chunk_mut::<NONCE_LEN>() else {
        return Err(fail(OpenError::TooShort));
    };
    let nonce: [u8; NONCE_LEN] = *nonce;
    let Some(plaintext_len) = sealed.len().checked_sub(TAG_LEN) else {
        return Err(fail(OpenError::TooShort));
    };

    // Two distinct keys share an id with probability ~2^-32 per pair, but it
    // must not make a key unusable. ring zeroes the buffer when the tag does
    // not match, so a second try needs the original ciphertext: copied only
    // in that case, keeping the common path free of allocation.
    let original = (candidates > 1).then(|| sealed.to_vec());
    let mut opened = false;
    for (attempt, key) in keys.iter().filter(|k| k.id == id).enumerate() {
        if attempt > 0
            && let Some(original) = &original
        {
            sealed.copy_from_slice(original);
        }
        let result = key.aead.open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(header),
            sealed,
        );
        if result.is_ok() {
            opened = true;
            break;
        }
    }
    if !opened {
        return Err(fail(OpenError::Unauthentic));
    }
    let sealed: &'a [u8] = sealed;
    Ok(&sealed[..plaintext_len])
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;
    use ring::aead::CHACHA20_POLY1305;

    use super::*;

    fn ring_of(raws: &[[u8; 32]]) -> Keyring {
        let text: String = raws.iter().map(|r| STANDARD.encode(r) + "\n").collect();
        Keyring::parse(&text).unwrap()
    }

    fn sealed(ring: &Keyring, purpose: Purpose, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        seal(ring, purpose, plaintext, &mut out);
        out
    }

    const OLD: [u8; 32] = [0x11; 32];
    const NEW: [u8; 32] = [0x22; 32];

    #[test]
    fn tag_len_matches_ring() {
        assert_eq!(CHACHA20_POLY1305.tag_len(), TAG_LEN);
        assert_eq!(OVERHEAD, 38);
    }

    #[test]
    fn round_trips_both_purposes() {
        let ring = ring_of(&[OLD]);
        for purpose in [Purpose::Datagram, Purpose::PushPull] {
            for plaintext in [&b""[..], b"ping", &[0xa5; 1400], &vec![7; 70_000]] {
                let mut frame = sealed(&ring, purpose, plaintext);
                assert_eq!(frame.len(), OVERHEAD + plaintext.len());
                assert_eq!(&frame[..4], b"STRL");
                assert_eq!(frame[4], 1);
                assert_eq!(frame[5], purpose.byte());
                assert_eq!(&frame[6..10], &ring.key_ids()[0].0);
                if plaintext.len() >= 4 {
                    assert!(!frame.windows(plaintext.len()).any(|w| w == plaintext));
                }
                assert_eq!(open(&ring, purpose, &mut frame), Ok(plaintext));
            }
        }
    }

    #[test]
    fn seal_reuses_buffer_and_nonces_differ() {
        let ring = ring_of(&[OLD]);
        let mut out = vec![0xff; 5000];
        seal(&ring, Purpose::Datagram, b"same", &mut out);
        let first = out.clone();
        seal(&ring, Purpose::Datagram, b"same", &mut out);
        assert_eq!(out.len(), OVERHEAD + 4);
        assert_ne!(first[10..22], out[10..22], "nonce repeated");
        assert_ne!(first, out);
    }

    #[test]
    fn different_key_is_unknown() {
        let mut frame = sealed(&ring_of(&[NEW]), Purpose::Datagram, b"hello");
        assert_eq!(
            open(&ring_of(&[OLD]), Purpose::Datagram, &mut frame),
            Err(OpenError::UnknownKey)
        );
    }

    #[test]
    fn every_single_bit_flip_is_refused_with_the_right_reason() {
        let ring = ring_of(&[OLD]);
        let frame = sealed(&ring, Purpose::Datagram, b"membership update");
        for i in 0..frame.len() {
            for bit in 0..8 {
                let mut bad = frame.clone();
                bad[i] ^= 1 << bit;
                let err = open(&ring, Purpose::Datagram, &mut bad).unwrap_err();
                match i {
                    0..4 => assert_eq!(err, OpenError::BadMagic),
                    4 => assert_eq!(err, OpenError::UnsupportedVersion(1 ^ (1 << bit))),
                    5 => assert_eq!(err, OpenError::WrongPurpose),
                    6..10 => assert!(
                        matches!(err, OpenError::UnknownKey | OpenError::PlaintextRejected),
                        "byte {i}: {err:?}"
                    ),
                    _ => assert_eq!(err, OpenError::Unauthentic, "byte {i}"),
                }
            }
        }
    }

    #[test]
    fn header_is_authenticated() {
        // Relabel a datagram as a push-pull frame: the header is valid for the
        // receiving channel, only the AAD can tell.
        let ring = ring_of(&[OLD]);
        let mut frame = sealed(&ring, Purpose::Datagram, b"x");
        frame[5] = Purpose::PushPull.byte();
        assert_eq!(
            open(&ring, Purpose::PushPull, &mut frame),
            Err(OpenError::Unauthentic)
        );

        // Relabel with the id of another key we do hold.
        let both = ring_of(&[OLD, NEW]);
        let mut frame = sealed(&both, Purpose::Datagram, b"x");
        frame[6..10].copy_from_slice(&both.key_ids()[1].0);
        assert_eq!(
            open(&both, Purpose::Datagram, &mut frame),
            Err(OpenError::Unauthentic)
        );
    }

    #[test]
    fn rotation() {
        let old = ring_of(&[OLD]);
        let new = ring_of(&[NEW]);
        let transition = ring_of(&[NEW, OLD]);
        for (sealer, opener, ok) in [
            (&old, &transition, true),
            (&new, &transition, true),
            (&transition, &old, false),
            (&transition, &new, true),
            (&old, &old, true),
        ] {
            let mut frame = sealed(sealer, Purpose::PushPull, b"roster");
            let got = open(opener, Purpose::PushPull, &mut frame);
            if ok {
                assert_eq!(got, Ok(&b"roster"[..]), "{sealer:?} -> {opener:?}");
            } else {
                assert_eq!(got, Err(OpenError::UnknownKey), "{sealer:?} -> {opener:?}");
            }
        }
    }

    #[test]
    fn wrong_purpose_is_refused() {
        for ring in [ring_of(&[OLD]), Keyring::insecure()] {
            let mut frame = sealed(&ring, Purpose::Datagram, b"x");
            assert_eq!(
                open(&ring, Purpose::PushPull, &mut frame),
                Err(OpenError::WrongPurpose)
            );
            let mut frame = sealed(&ring, Purpose::PushPull, b"x");
            assert_eq!(
                open(&ring, Purpose::Datagram, &mut frame),
                Err(OpenError::WrongPurpose)
            );
        }
    }

    #[test]
    fn unknown_version_and_magic() {
        let ring = ring_of(&[OLD]);
        let mut frame = sealed(&ring, Purpose::Datagram, b"x");
        frame[4] = 2;
        assert_eq!(
            open(&ring, Purpose::Datagram, &mut frame),
            Err(OpenError::UnsupportedVersion(2))
        );
        let mut junk = *b"GET / HTTP/1.1\r\n";
        assert_eq!(
            open(&ring, Purpose::Datagram, &mut junk),
            Err(OpenError::BadMagic)
        );
    }

    #[test]
    fn insecure_round_trip_and_layout() {
        let ring = Keyring::insecure();
        let mut frame = sealed(&ring, Purpose::Datagram, b"plain");
        assert_eq!(frame, b"STRL\x01\x01\0\0\0\0plain");
        assert_eq!(
            open(&ring, Purpose::Datagram, &mut frame),
            Ok(&b"plain"[..])
        );
        let mut empty = sealed(&ring, Purpose::PushPull, b"");
        assert_eq!(open(&ring, Purpose::PushPull, &mut empty), Ok(&b""[..]));
    }

    #[test]
    fn insecure_and_keyed_refuse_each_other() {
        let keyed = ring_of(&[OLD]);
        let insecure = Keyring::insecure();
        for plaintext in [&b""[..], b"x", &[0; 100]] {
            let mut frame = sealed(&insecure, Purpose::Datagram, plaintext);
            assert_eq!(
                open(&keyed, Purpose::Datagram, &mut frame),
                Err(OpenError::PlaintextRejected)
            );
            let mut frame = sealed(&keyed, Purpose::Datagram, plaintext);
            assert_eq!(
                open(&insecure, Purpose::Datagram, &mut frame),
                Err(OpenError::SealedRejected)
            );
        }
    }

    #[test]
    fn every_truncation_is_refused() {
        let ring = ring_of(&[OLD]);
        let frame = sealed(&ring, Purpose::Datagram, b"a short payload");
        for len in 0..frame.len() {
            let mut cut = frame[..len].to_vec();
            let err = open(&ring, Purpose::Datagram, &mut cut).unwrap_err();
            let expected = if len < HEADER_LEN + NONCE_LEN + TAG_LEN {
                OpenError::TooShort
            } else {
                OpenError::Unauthentic
            };
            assert_eq!(err, expected, "len {len}");
        }
        // A bare header with an id no one has: too short, not an unknown key.
        let mut header_only = frame[..HEADER_LEN].to_vec();
        header_only[6..10].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(
            open(&ring, Purpose::Datagram, &mut header_only),
            Err(OpenError::TooShort)
        );
        let insecure = Keyring::insecure();
        let frame = sealed(&insecure, Purpose::Datagram, b"p");
        for len in 0..HEADER_LEN {
            let mut cut = frame[..len].to_vec();
            assert_eq!(
                open(&insecure, Purpose::Datagram, &mut cut),
                Err(OpenError::TooShort)
            );
        }
    }

    #[test]
    fn reasons_are_distinct_snake_case() {
        let reasons: Vec<&str> = OpenError::ALL.iter().map(OpenError::reason).collect();
        assert_eq!(
            reasons,
            [
                "too_short",
                "bad_magic",
                "unsupported_version",
                "wrong_purpose",
                "unknown_key",
                "unauthentic",
                "plaintext_rejected",
                "sealed_rejected"
            ]
        );
    }

    /// Two distinct keys whose ids collide, found by a birthday search
    /// (~2^16 hashes, deterministic).
    fn colliding_keys() -> ([u8; 32], [u8; 32]) {
        let mut seen: HashMap<[u8; 4], [u8; 32]> = HashMap::new();
        for i in 0u64.. {
            let mut raw = [0u8; 32];
            raw[..8].copy_from_slice(&i.to_le_bytes());
            let hash = ring::digest::digest(&ring::digest::SHA256, &raw);
            let id: [u8; 4] = hash.as_ref()[..4].try_into().unwrap();
            if let Some(other) = seen.insert(id, raw) {
                return (other, raw);
            }
        }
        unreachable!()
    }

    #[test]
    fn keys_sharing_an_id_both_open() {
        let (a, b) = colliding_keys();
        let both = ring_of(&[a, b]);
        let ids = both.key_ids();
        assert_eq!(ids[0], ids[1]);
        for sealer in [ring_of(&[a]), ring_of(&[b])] {
            let frame = sealed(&sealer, Purpose::Datagram, b"collision");
            let mut copy = frame.clone();
            assert_eq!(
                open(&both, Purpose::Datagram, &mut copy),
                Ok(&b"collision"[..])
            );
            let mut bad = frame.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert_eq!(
                open(&both, Purpose::Datagram, &mut bad),
                Err(OpenError::Unauthentic)
            );
        }
    }

    /// Arbitrary bytes, half of them behind a well-formed header so that the
    /// fuzzing reaches the AEAD rather than stopping at the magic.
    fn frames() -> impl Strategy<Value = Vec<u8>> {
        let id = ring_of(&[OLD]).key_ids()[0];
        (
            any::<bool>(),
            prop_oneof![Just(1u8), Just(2u8), any::<u8>()],
            proptest::collection::vec(any::<u8>(), 0..2000),
        )
            .prop_map(move |(with_header, purpose, tail)| {
                if with_header {
                    let mut f = b"STRL\x01".to_vec();
                    f.push(purpose);
                    f.extend_from_slice(&id.0);
                    f.extend_from_slice(&tail);
                    f
                } else {
                    tail
                }
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_open_on_a_keyed_ring(mut bytes in frames()) {
            let keyed = ring_of(&[OLD]);
            for purpose in [Purpose::Datagram, Purpose::PushPull] {
                let mut copy = bytes.clone();
                prop_assert!(open(&keyed, purpose, &mut copy).is_err());
            }
            // The insecure path only has to not panic.
            let _ = open(&Keyring::insecure(), Purpose::Datagram, &mut bytes);
        }

        #[test]
        fn tampered_frames_never_open(
            plaintext in proptest::collection::vec(any::<u8>(), 0..300),
            truncate_to in proptest::option::of(any::<prop::sample::Index>()),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..4),
        ) {
            let ring = ring_of(&[NEW, OLD]);
            let frame = sealed(&ring, Purpose::PushPull, &plaintext);
            let mut bad = frame.clone();
            if let Some(at) = truncate_to {
                bad.truncate(at.index(frame.len()));
            }
            if !bad.is_empty() {
                for (at, bit) in &flips {
                    let i = at.index(bad.len());
                    bad[i] ^= 1 << bit;
                }
            }
            let untouched = bad == frame;
            let got = open(&ring, Purpose::PushPull, &mut bad);
            if untouched {
                prop_assert_eq!(got, Ok(&plaintext[..]));
            } else {
                prop_assert!(got.is_err(), "tampered frame opened");
            }
        }
    }
}
