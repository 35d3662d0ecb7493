//! The cluster key ring that seals gossip (see `envelope`).
//!
//! The operator's key file holds one standard-base64 key of 32 bytes per
//! line; `#` comments and blank lines are ignored. The first key seals, every
//! key opens, so keys rotate without a flag day as in memberlist/Serf: add the
//! new key second and roll out, move it first and roll out, remove the old key
//! and roll out.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{CHACHA20_POLY1305, LessSafeKey, UnboundKey};
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

use crate::replay::ReplayMemory;

/// Length of a raw key: what ChaCha20-Poly1305 takes.
pub const KEY_LEN: usize = 32;

/// What a key is called on the wire and in logs: the first 4 bytes of the
/// SHA-256 of the raw key. Short because it rides in every datagram; a hash
/// so that it reveals nothing useful about the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 4]);

impl KeyId {
    /// Marks plaintext frames from an insecure node on the wire.
    pub(crate) const INSECURE: KeyId = KeyId([0; 4]);

    fn of(raw: &[u8; KEY_LEN]) -> KeyId {
        let hash = digest::digest(&digest::SHA256, raw);
        let mut id = [0; 4];
        id.copy_from_slice(&hash.as_ref()[..4]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// One usable key. The raw bytes are not kept: ring holds the expanded key,
/// and nothing else needs the material after the id is computed.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) id: KeyId,
    pub(crate) aead: LessSafeKey,
}

#[derive(Clone)]
enum Keys {
    Insecure,
    /// Never empty; the first key is the primary.
    Keyed(Vec<Key>),
}

/// The keys this node seals and opens gossip with, or the insecure marker;
/// and what this process has opened with them. A sealed request is good
/// once, so whatever opens one must remember it: keeping that memory with
/// the keys means no opener can forget to ask. Clones share it.
#[derive(Clone)]
pub struct Keyring {
    keys: Keys,
    replays: Arc<ReplayMemory>,
}

/// Why a key file was refused. Messages name the file or line, never key
/// material: they end up in logs and in pod events.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("cannot read gossip key file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: no gossip key (every line is blank or a comment)")]
    Empty { origin: String },
    #[error("{origin} line {line}: not a standard base64 key")]
    BadBase64 { origin: String, line: usize },
    #[error("{origin} line {line}: key is {len} bytes, expected {KEY_LEN}")]
    WrongLength {
        origin: String,
        line: usize,
        len: usize,
    },
    #[error("{origin} line {line}: same key as an earlier line")]
    DuplicateKey { origin: String, line: usize },
}

/// How errors from `Keyring::parse` name their source.
const TEXT_ORIGIN: &str = "<text>";

impl Keyring {
    /// Reads the operator's key file (`--gossip-key-file`).
    pub fn load(path: &Path) -> Result<Keyring, KeyringError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyringError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_from(&text, &path.display().to_string())
    }

    /// Parses key-file text; errors name the 1-based line.
    pub fn parse(text: &str) -> Result<Keyring, KeyringError> {
        Self::parse_from(text, TEXT_ORIGIN)
    }

    fn parse_from(text: &str, origin: &str) -> Result<Keyring, KeyringError> {
        // Editors on some platforms write a byte-order mark; it is not
        // whitespace to `trim`, and would make line 1 look like bad base64.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let origin = || origin.to_owned();
        let mut keys: Vec<Key> = Vec::new();
        // Raw keys only live here, to find duplicates by content rather than
        // by id (two distinct keys may share an id).
        let mut seen: Vec<[u8; KEY_LEN]> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // The decode error is dropped on purpose: some variants quote the
            // offending symbol, which is key material.
            let mut decoded = STANDARD.decode(line).map_err(|_| KeyringError::BadBase64 {
                origin: origin(),
                line: line_no,
            })?;
            let raw: Result<[u8; KEY_LEN], _> = decoded.as_slice().try_into();
            let len = decoded.len();
            decoded.fill(0);
            let Ok(raw) = raw else {
                return Err(KeyringError::WrongLength {
                    origin: origin(),
                    line: line_no,
                    len,
                });
            };
            if seen.contains(&raw) {
                return Err(KeyringError::DuplicateKey {
                    origin: origin(),
                    line: line_no,
                });
            }
            keys.push(Key::new(&raw));
            seen.push(raw);
        }
        for raw in &mut seen {
            raw.fill(0);
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty { origin: origin() });
        }
        Ok(Keyring::with(Keys::Keyed(keys)))
    }

    /// No encryption: only with `--insecure-gossip`, for labs and tests.
    pub fn insecure() -> Keyring {
        Keyring::with(Keys::Insecure)
    }

    /// The replay memory starts now: nothing sealed before this process
    /// loaded its keys is taken (see `replay`).
    fn with(keys: Keys) -> Keyring {
        Keyring {
            keys,
            replays: Arc::new(ReplayMemory::new(starling_model::unix_ms_now())),
        }
    }

    /// What this process has opened, to refuse replays.
    pub fn replays(&self) -> &ReplayMemory {
        &self.replays
    }

    pub fn is_insecure(&self) -> bool {
        matches!(self.keys, Keys::Insecure)
    }

    /// A fresh key, as a line for the key file.
    pub fn generate_key() -> String {
        let mut raw = [0u8; KEY_LEN];
        // Without the OS RNG there is no safe key to hand out; this only
        // runs from the CLI helper, where failing loudly is the right outcome.
        SystemRandom::new()
            .fill(&mut raw)
            .expect("the operating system's random number generator failed");
        let line = STANDARD.encode(raw);
        raw.fill(0);
        line
    }

    /// Ids of the loaded keys, primary first; empty when insecure.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.keys().iter().map(|k| k.id).collect()
    }

    /// The key that seals, if any.
    pub(crate) fn primary(&self) -> Option<&Key> {
        self.keys().first()
    }

    /// Every key that opens.
    pub(crate) fn keys(&self) -> &[Key] {
        match &self.keys {
            Keys::Insecure => &[],
            Keys::Keyed(keys) => keys,
        }
    }
}

impl Key {
    fn new(raw: &[u8; KEY_LEN]) -> Key {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, raw)
            .expect("a 32-byte key is always valid for ChaCha20-Poly1305");
        Key {
            id: KeyId::of(raw),
            aead: LessSafeKey::new(unbound),
        }
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.keys {
            Keys::Insecure => f.write_str("Keyring(insecure)"),
            Keys::Keyed(keys) => {
                let ids: Vec<String> = keys.iter().map(|k| k.id.to_string()).collect();
                f.debug_struct("Keyring")
                    .field("primary", &ids.first().map_or("", String::as_str))
                    .field("keys", &ids)
                    .finish()
            }
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_line(fill: u8) -> String {
        STANDARD.encode([fill; KEY_LEN])
    }

    #[test]
    fn parses_comments_blank_lines_and_whitespace() {
        let text = format!(
            "# cluster gossip keys\n\n   {}  \n\t# old key, remove after rollout\n{}\r\n\n",
            key_line(1),
            key_line(2)
        );
        let ring = Keyring::parse(&text).unwrap();
        assert!(!ring.is_insecure());
        assert_eq!(
            ring.key_ids(),
            vec![KeyId::of(&[1; KEY_LEN]), KeyId::of(&[2; KEY_LEN])]
        );
    }

    #[test]
    fn first_key_is_primary() {
        let text = format!("{}\n{}\n", key_line(7), key_line(3));
        let ring = Keyring::parse(&text).unwrap();
        assert_eq!(ring.primary().unwrap().id, KeyId::of(&[7; KEY_LEN]));
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let text = format!("\u{feff}{}\n", key_line(1));
        assert_eq!(Keyring::parse(&text).unwrap().key_ids().len(), 1);
    }

    #[test]
    fn bad_base64_names_line_not_material() {
        let text = format!("# c\n{}\nsecret!material$$\n", key_line(1));
        let err = Keyring::parse(&text).unwrap_err();
        assert!(
            matches!(err, KeyringError::BadBase64 { line: 3, .. }),
            "{err:?}"
        );
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("line 3"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn unpadded_base64_is_refused() {
        let line = key_line(1);
        let err = Keyring::parse(line.trim_end_matches('=')).unwrap_err();
        assert!(
            matches!(err, KeyringError::BadBase64 { line: 1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn wrong_length_names_line_and_length() {
        let text = format!("{}\n\n{}\n", key_line(1), STANDARD.encode([9u8; 16]));
        let err = Keyring::parse(&text).unwrap_err();
        assert!(
            matches!(
                err,
                KeyringError::WrongLength {
                    line: 3,
                    len: 16,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("16 bytes"), "{err}");
        let err = Keyring::parse(&STANDARD.encode([9u8; 33])).unwrap_err();
        assert!(
            matches!(
                err,
                KeyringError::WrongLength {
                    line: 1,
                    len: 33,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn empty_text_is_refused() {
        for text in ["", "\n\n", "# only a comment\n   \n"] {
            let err = Keyring::parse(text).unwrap_err();
            assert!(
                matches!(&err, KeyringError::Empty { origin } if origin == "<text>"),
                "{err:?}"
            );
        }
    }

    #[test]
    fn duplicate_key_names_second_line() {
        let text = format!("{}\n{}\n# x\n{}\n", key_line(1), key_line(2), key_line(1));
        let err = Keyring::parse(&text).unwrap_err();
        assert!(
            matches!(err, KeyringError::DuplicateKey { line: 4, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn load_reads_file_and_names_path_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gossip.keys");
        std::fs::write(&path, format!("{}\n", key_line(5))).unwrap();
        let ring = Keyring::load(&path).unwrap();
        assert_eq!(ring.key_ids(), vec![KeyId::of(&[5; KEY_LEN])]);

        std::fs::write(&path, "nope\n").unwrap();
        let err = Keyring::load(&path).unwrap_err();
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");

        std::fs::write(&path, "# nothing\n").unwrap();
        let err = Keyring::load(&path).unwrap_err();
        assert!(matches!(err, KeyringError::Empty { .. }), "{err:?}");
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    }

    #[test]
    fn load_missing_file_names_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.keys");
        let err = Keyring::load(&path).unwrap_err();
        assert!(
            matches!(&err, KeyringError::Io { path: p, .. } if *p == path),
            "{err:?}"
        );
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    }

    #[test]
    fn debug_shows_ids_never_material() {
        let (a, b) = (Keyring::generate_key(), Keyring::generate_key());
        let ring = Keyring::parse(&format!("{a}\n{b}\n")).unwrap();
        let shown = format!("{ring:?} {ring:#?} {:?}", ring.keys());
        assert!(!shown.contains(&a) && !shown.contains(&b), "{shown}");
        // Even a fragment would be a leak.
        assert!(
            !shown.contains(&a[..12]) && !shown.contains(&b[..12]),
            "{shown}"
        );
        for id in ring.key_ids() {
            assert!(shown.contains(&id.to_string()), "{shown}");
        }
        assert_eq!(format!("{:?}", Keyring::insecure()), "Keyring(insecure)");
    }

    #[test]
    fn generated_keys_parse_and_differ() {
        let (a, b) = (Keyring::generate_key(), Keyring::generate_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 44);
        assert_eq!(Keyring::parse(&a).unwrap().key_ids().len(), 1);
    }

    #[test]
    fn key_id_displays_as_eight_hex_chars() {
        assert_eq!(KeyId([0x01, 0xab, 0x00, 0xff]).to_string(), "01ab00ff");
        // SHA-256 of 32 zero bytes starts 66687aad.
        assert_eq!(KeyId::of(&[0; KEY_LEN]).to_string(), "66687aad");
    }

    #[test]
    fn insecure_has_no_keys() {
        let ring = Keyring::insecure();
        assert!(ring.is_insecure());
        assert!(ring.key_ids().is_empty());
        assert!(ring.primary().is_none());
    }
}
