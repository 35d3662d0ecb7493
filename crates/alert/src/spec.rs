//! A sink as the operator configured it, checked by the binary's
//! settings before alerting starts.

use std::fmt;
use std::path::PathBuf;

use crate::{Severity, SinkKind};

/// A secret read from a file; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One sink, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkSpec {
    pub name: String,
    pub kind: SinkKind,
    pub url: String,
    pub severities: Vec<Severity>,
    pub bearer_token: Option<Secret>,
    pub hmac_key: Option<Secret>,
    /// Roots for an https sink; without it https cannot be verified.
    pub ca_file: Option<PathBuf>,
}
