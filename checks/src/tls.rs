//! HTTP clients over rustls with the ring provider, built explicitly so no
//! process-wide provider has to be installed (and aws-lc-rs never enters
//! the build). Certificates are read from PEM files as kubeadm lays them
//! out, at every call: kubeadm renews them in place.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Client-side TLS material. Without `ca`, https endpoints cannot be
/// verified and fail; without `cert`/`key`, no client certificate is sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {what} {}: {reason}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the {what} {} holds no PEM certificate", path.display())]
    Empty { what: &'static str, path: PathBuf },
    #[error("a client certificate needs both a certificate and a key file")]
    HalfAPair,
    #[error("the client certificate and key do not fit together: {0}")]
    Mismatch(String),
}

impl ClientTls {
    fn config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let mut roots = RootCertStore::empty();
        if let Some(ca) = &self.ca {
            for cert in certificates("CA file", ca)? {
                roots.add(cert).map_err(|e| TlsError::Read {
                    what: "CA file",
                    path: ca.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls' default protocol versions")
        .with_root_certificates(roots);
        match (&self.cert, &self.key) {
            (None, None) => Ok(builder.with_no_client_auth()),
            (Some(cert), Some(key)) => {
                let chain = certificates("client certificate", cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Read {
                    what: "client key",
                    path: key.clone(),
                    reason: e.to_string(),
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError::Mismatch(e.to_string()))
            }
            _ => Err(TlsError::HalfAPair),
        }
    }
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |reason: String| TlsError::Read {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// A client builder whose TLS is rustls with ring and `tls`'s material.
pub fn tls_client(tls: &ClientTls) -> Result<reqwest::ClientBuilder, TlsError> {
    Ok(reqwest::Client::builder().tls_backend_preconfigured(tls.config()?))
}

/// A client builder for plain HTTP (between agents, the CLI). Every client
/// in the workspace must come from here or [`tls_client`]: reqwest is
/// built without a default TLS provider, and its own default client
/// panics. An https URL through this one fails verification (no roots).
pub fn http_client() -> reqwest::ClientBuilder {
    tls_client(&ClientTls::default()).expect("TLS without certificate files cannot fail to load")
}
