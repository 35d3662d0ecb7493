//! HTTP clients over rustls with the ring provider, built explicitly so no
//! process-wide provider has to be installed (and aws-lc-rs never enters
//! the build). Certificates are read from PEM files as kubeadm lays them
//! out, at every call: kubeadm renews them in place.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use starling_model::IDLE_CONNECTION_CLOSE;

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

pub(crate) fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
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

/// A client builder for requests to starling agents and aggregators: plain
/// HTTP, and a pooled connection is dropped after 4 s idle, a second
/// before the server closes it. Reused any later, a request could be
/// written into a connection the server is closing, and fail: the 5 s
/// health pull and the probe's reports come just about every
/// [`IDLE_CONNECTION_CLOSE`]. A new connection costs a handshake, not a
/// request.
pub fn agent_client() -> reqwest::ClientBuilder {
    http_client().pool_idle_timeout(IDLE_CONNECTION_CLOSE - Duration::from_secs(1))
}

/// A client for a loopback health endpoint served with a self-signed
/// certificate (kube-scheduler's :10259, kube-controller-manager's :10257):
/// the certificate is not verified, as the kubelet's own probes of these
/// ports do not. Only for 127.0.0.0/8 and ::1 — see [`is_loopback_url`].
pub fn loopback_unverified_client() -> reqwest::ClientBuilder {
    unverified_client()
}

/// A client that only reads the dates of the certificate a server
/// presents, wherever it is: it verifies nothing, so it must send nothing
/// (no credentials, no body) and believe nothing it is answered. The
/// verifying client's error for an expired certificate names no date.
pub(crate) fn certificate_reader() -> reqwest::ClientBuilder {
    unverified_client().tls_info(true)
}

fn unverified_client() -> reqwest::ClientBuilder {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls' default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    reqwest::Client::builder().tls_backend_preconfigured(config)
}

/// Whether `url` points at this machine (where no one else can answer).
pub fn is_loopback_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Accepts any certificate, still checking the handshake signatures (so
/// the connection is at least encrypted to whoever holds the key).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_count_as_loopback() {
        for url in [
            "https://127.0.0.1:10259/healthz",
            "https://localhost:10257/healthz",
            "https://[::1]:1/x",
            "http://127.8.0.1",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "https://10.0.0.1:10259/healthz",
            "https://example.com/",
            "127.0.0.1:1",
            "https://localhost.evil.com/",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }
}
