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
    /// How its requests say who sends them.
    pub auth: SinkAuth,
    /// Signs webhook bodies (webhooks only).
    pub hmac_key: Option<Secret>,
    /// Roots for an https sink; without it https cannot be verified.
    pub ca_file: Option<PathBuf>,
}

/// What a receiver behind a proxy or in a multi-tenant service (Mimir's,
/// Cortex's Alertmanager) wants besides the body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkAuth {
    /// Sent as `Authorization: Bearer …`.
    pub bearer_token: Option<Secret>,
    /// Sent as `Authorization: Basic …`: user name and password.
    pub basic_auth: Option<(String, Secret)>,
    /// Sent as they are, e.g. `X-Scope-OrgID: tenant-a`.
    pub headers: Vec<(String, String)>,
    /// A client certificate and its key (PEM files) for a receiver that
    /// requires mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}
