//! A throwaway PKI laid out like kubeadm's `/etc/kubernetes/pki/etcd/`, for TLS tests
//! against a real etcd ([`super::Etcd::start`]) and for checks that read those files.
//!
//! Keys are ECDSA P-256 (rcgen's default with `ring`, which cannot generate RSA keys); etcd
//! 3.4, curl and rustls all accept them. Certificates use rcgen's default validity
//! (1975 to 4096), so a test never meets an expired certificate by accident; the
//! expired, expiring and not-yet-valid ones are separate files, named so.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// Certificates and keys in PEM files, in a temporary directory that lives as long as this
/// value.
///
/// `ca.crt` signed `server.crt` and `healthcheck-client.crt`; `rogue-ca.crt`, which etcd
/// is never told about, signed `rogue-client.crt`. An [`super::Etcd`] started with this PKI
/// re-reads the files at every TLS handshake, so keep the `Pki` alive at least as long as
/// the `Etcd`.
#[derive(Debug)]
pub struct Pki {
    /// `ca.crt`: the etcd CA. etcd trusts client certificates it signed
    /// (`--trusted-ca-file`), and clients verify etcd's server certificate with it.
    pub ca_cert: PathBuf,
    /// `server.crt`: etcd's serving certificate, for DNS `localhost` and IP `127.0.0.1`,
    /// usable for serverAuth and clientAuth (as kubeadm's `etcd/server.crt`).
    pub server_cert: PathBuf,
    /// `server.key`: the private key of [`Pki::server_cert`] (PKCS#8 PEM, mode 0600).
    pub server_key: PathBuf,
    /// `healthcheck-client.crt`: a clientAuth certificate signed by the etcd CA, which etcd
    /// accepts (as kubeadm's `etcd/healthcheck-client.crt`, CN `kube-etcd-healthcheck-client`).
    pub healthcheck_client_cert: PathBuf,
    /// `healthcheck-client.key`: the private key of [`Pki::healthcheck_client_cert`].
    pub healthcheck_client_key: PathBuf,
    /// `rogue-ca.crt`: a second CA that etcd does not trust. Its key is not kept.
    pub rogue_ca_cert: PathBuf,
    /// `rogue-client.crt`: a clientAuth certificate with the same subject as the health-check
    /// client but signed by the rogue CA, so that etcd must refuse it for its issuer alone.
    pub rogue_client_cert: PathBuf,
    /// `rogue-client.key`: the private key of [`Pki::rogue_client_cert`].
    pub rogue_client_key: PathBuf,
    /// `expired-client.crt`: the health-check client, signed by the etcd CA,
    /// valid only during 2020 (the classic kubeadm failure after a year).
    pub expired_client_cert: PathBuf,
    pub expired_client_key: PathBuf,
    /// `soon-client.crt`: the health-check client, valid for 10 more days.
    pub soon_client_cert: PathBuf,
    pub soon_client_key: PathBuf,
    /// `future-client.crt`: the health-check client, valid from 2090 only
    /// (as a node whose clock runs decades behind would see it).
    pub future_client_cert: PathBuf,
    pub future_client_key: PathBuf,
    dir: tempfile::TempDir,
}

/// The subject of both client certificates (kubeadm's health-check client).
const HEALTHCHECK_CN: &str = "kube-etcd-healthcheck-client";

impl Pki {
    /// Generates a fresh CA, server and client certificates and writes them to a new
    /// temporary directory.
    ///
    /// Panics if the temporary directory cannot be written (a test fixture has no better
    /// recourse); certificate generation itself cannot fail with these fixed parameters.
    pub fn generate() -> Pki {
        Pki::generate_with_server_days(None)
    }

    /// [`Pki::generate`], with etcd's server certificate valid for only
    /// `days` more days when given: a serving certificate about to expire,
    /// or one that expired `-days` days ago.
    pub fn generate_with_server_days(server_days: Option<i64>) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("starling-pki-")
            .tempdir()
            .expect("a temporary directory for the etcd PKI can be created");
        let path = |name: &str| dir.path().join(name);

        let ca = new_ca("etcd-ca");
        let ca_cert = path("ca.crt");
        write_file(&ca_cert, &ca.pem(), 0o644);

        let (server_cert, server_key) = (path("server.crt"), path("server.key"));
        // etcd's serving certificate is also its client certificate towards peers, hence
        // both usages, as kubeadm issues it.
        let now = time::OffsetDateTime::now_utc();
        let server_validity = server_days.map(|days| {
            let until = now + time::Duration::days(days);
            Validity {
                from: until - time::Duration::days(365),
                until,
            }
        });
        issue_leaf(
            &ca,
            "kube-etcd",
            &["localhost", "127.0.0.1"],
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            server_validity,
            &server_cert,
            &server_key,
        );

        let healthcheck_client_cert = path("healthcheck-client.crt");
        let healthcheck_client_key = path("healthcheck-client.key");
        issue_leaf(
            &ca,
            HEALTHCHECK_CN,
            &[],
            &[ExtendedKeyUsagePurpose::ClientAuth],
            None,
            &healthcheck_client_cert,
            &healthcheck_client_key,
        );

        let rogue_ca = new_ca("rogue-etcd-ca");
        let rogue_ca_cert = path("rogue-ca.crt");
        write_file(&rogue_ca_cert, &rogue_ca.pem(), 0o644);
        let (rogue_client_cert, rogue_client_key) =
            (path("rogue-client.crt"), path("rogue-client.key"));
        issue_leaf(
            &rogue_ca,
            HEALTHCHECK_CN,
            &[],
            &[ExtendedKeyUsagePurpose::ClientAuth],
            None,
            &rogue_client_cert,
            &rogue_client_key,
        );

        let client_valid = |name: &str, validity: Validity| {
            let (cert, key) = (path(&format!("{name}.crt")), path(&format!("{name}.key")));
            issue_leaf(
                &ca,
                HEALTHCHECK_CN,
                &[],
                &[ExtendedKeyUsagePurpose::ClientAuth],
                Some(validity),
                &cert,
                &key,
            );
            (cert, key)
        };
        let (expired_client_cert, expired_client_key) = client_valid(
            "expired-client",
            Validity {
                from: rcgen::date_time_ymd(2020, 1, 1),
                until: rcgen::date_time_ymd(2021, 1, 1),
            },
        );
        let (soon_client_cert, soon_client_key) = client_valid(
            "soon-client",
            Validity {
                from: now - time::Duration::days(355),
                until: now + time::Duration::days(10),
            },
        );
        let (future_client_cert, future_client_key) = client_valid(
            "future-client",
            Validity {
                from: rcgen::date_time_ymd(2090, 1, 1),
                until: rcgen::date_time_ymd(2091, 1, 1),
            },
        );

        Pki {
            ca_cert,
            server_cert,
            server_key,
            healthcheck_client_cert,
            healthcheck_client_key,
            rogue_ca_cert,
            rogue_client_cert,
            rogue_client_key,
            expired_client_cert,
            expired_client_key,
            soon_client_cert,
            soon_client_key,
            future_client_cert,
            future_client_key,
            dir,
        }
    }

    /// The directory holding all files (removed when the `Pki` is dropped).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn subject(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// A self-signed CA that can sign leaves.
fn new_ca(cn: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("ring generates ECDSA P-256 keys");
    CertifiedIssuer::self_signed(params, key).expect("fixed CA parameters are valid")
}

/// A certificate's validity period, when not rcgen's 1975–4096.
#[derive(Clone, Copy)]
struct Validity {
    from: time::OffsetDateTime,
    until: time::OffsetDateTime,
}

/// Issues a leaf certificate for `sans` signed by `ca`, and writes it and its key.
fn issue_leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    sans: &[&str],
    usages: &[ExtendedKeyUsagePurpose],
    validity: Option<Validity>,
    cert_path: &Path,
    key_path: &Path,
) {
    // `new` turns "127.0.0.1" into an IP SAN and everything else into a DNS SAN.
    let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(sans).expect("fixed SANs are valid names");
    params.distinguished_name = subject(cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages.to_vec();
    if let Some(validity) = validity {
        params.not_before = validity.from;
        params.not_after = validity.until;
    }
    // Lets verifiers (and people running `openssl x509 -text`) match leaf to CA.
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().expect("ring generates ECDSA P-256 keys");
    let cert = params
        .signed_by(&key, ca)
        .expect("fixed leaf parameters are valid");
    write_file(cert_path, &cert.pem(), 0o644);
    write_file(key_path, &key.serialize_pem(), 0o600);
}

/// Writes `contents` to a new file with permissions `mode` (0600 for keys, as kubeadm
/// leaves them, so that tools which refuse world-readable keys accept them).
fn write_file(path: &Path, contents: &str, mode: u32) {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    file.write_all(contents.as_bytes())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_file_as_pem_inside_its_directory() {
        let pki = Pki::generate();
        for (path, kind) in [
            (&pki.ca_cert, "CERTIFICATE"),
            (&pki.server_cert, "CERTIFICATE"),
            (&pki.server_key, "PRIVATE KEY"),
            (&pki.healthcheck_client_cert, "CERTIFICATE"),
            (&pki.healthcheck_client_key, "PRIVATE KEY"),
            (&pki.rogue_ca_cert, "CERTIFICATE"),
            (&pki.rogue_client_cert, "CERTIFICATE"),
            (&pki.rogue_client_key, "PRIVATE KEY"),
        ] {
            assert_eq!(path.parent(), Some(pki.dir()));
            let text = std::fs::read_to_string(path).unwrap();
            assert!(
                text.starts_with(&format!("-----BEGIN {kind}-----")),
                "{}: {text}",
                path.display()
            );
        }
        let dir = pki.dir().to_owned();
        drop(pki);
        assert!(!dir.exists(), "the PKI directory outlived the Pki");
    }
}
