//! Certificates, before they bite: the validity of each certificate a
//! check uses (its CA, its client certificate) or is served (the server's
//! leaf), named with its file or endpoint and its dates. An expired client
//! certificate otherwise shows only as the server's "BadCertificate"
//! alert, which names nothing; kubeadm's certificates expire after a year.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Status;
use crate::result::Outcome;
use crate::tls::certificates;

/// How long before its end a certificate is a warning, unless configured:
/// a month leaves time for a change window.
pub const DEFAULT_CERT_WARNING: Duration = Duration::from_secs(30 * 86_400);

/// The dates of one certificate, and whose it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertValidity {
    /// The subject, e.g. `CN=kube-etcd-healthcheck-client`.
    pub subject: String,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
}

/// One certificate that is, or soon will be, refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFinding {
    /// Critical when refused now, warning when it expires soon.
    pub status: Status,
    pub message: String,
}

/// The dates of a DER certificate.
pub fn validity(der: &[u8]) -> Result<CertValidity, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|error| format!("not an X.509 certificate: {error}"))?;
    let validity = cert.validity();
    Ok(CertValidity {
        subject: cert.subject().to_string(),
        not_before_unix: validity.not_before.timestamp(),
        not_after_unix: validity.not_after.timestamp(),
    })
}

/// What `cert`'s dates mean at `now_unix`: `None` while it is valid for
/// longer than `warn_within`. `what` names it ("etcd client certificate
/// /etc/kubernetes/pki/etcd/healthcheck-client.crt").
pub fn judge_validity(
    what: &str,
    cert: &CertValidity,
    now_unix: i64,
    warn_within: Duration,
) -> Option<CertFinding> {
    let named = format!("{what} ({})", cert.subject);
    if now_unix >= cert.not_after_unix {
        return Some(CertFinding {
            status: Status::Critical,
            message: format!("{named} expired on {}", date(cert.not_after_unix)),
        });
    }
    if now_unix < cert.not_before_unix {
        return Some(CertFinding {
            status: Status::Critical,
            message: format!(
                "{named} is not valid before {} (is this node's clock right?)",
                date(cert.not_before_unix)
            ),
        });
    }
    let left = cert.not_after_unix - now_unix;
    let warn = i64::try_from(warn_within.as_secs()).unwrap_or(i64::MAX);
    (left < warn).then(|| CertFinding {
        status: Status::Warning,
        message: format!(
            "{named} expires on {}, in {}",
            date(cert.not_after_unix),
            in_days(left)
        ),
    })
}

/// A DER certificate judged by its dates; one that does not parse is a
/// critical finding of its own.
pub fn judge_der(
    what: &str,
    der: &[u8],
    now_unix: i64,
    warn_within: Duration,
) -> Option<CertFinding> {
    match validity(der) {
        Ok(cert) => judge_validity(what, &cert, now_unix, warn_within),
        Err(error) => Some(CertFinding {
            status: Status::Critical,
            message: format!("{what}: {error}"),
        }),
    }
}

/// Every certificate in a PEM file, judged; nothing if the file cannot be
/// read (the TLS setup reports that, in its own words).
pub fn judge_file(what: &str, path: &Path, warn_within: Duration) -> Vec<CertFinding> {
    let what = format!("{what} {}", path.display());
    let Ok(chain) = certificates("certificate", path) else {
        return Vec::new();
    };
    let now = unix_now();
    chain
        .iter()
        .filter_map(|der| judge_der(&what, der, now, warn_within))
        .collect()
}

/// The dates of the leaf certificate a server presented, when the client
/// was built with `tls_info(true)` and the exchange was over TLS.
pub fn served_certificate(response: &reqwest::Response) -> Option<CertValidity> {
    let info = response.extensions().get::<reqwest::tls::TlsInfo>()?;
    validity(info.peer_certificate()?).ok()
}

/// `outcome` with the certificate findings in front: a refused certificate
/// makes it critical and comes first (it is the cause of what follows); one
/// expiring soon makes a healthy outcome a warning.
pub fn with_findings(outcome: Outcome, findings: &[CertFinding]) -> Outcome {
    if findings.is_empty() {
        return outcome;
    }
    let said: Vec<&str> = findings.iter().map(|f| f.message.as_str()).collect();
    let refused = findings.iter().any(|f| f.status == Status::Critical);
    let status = match outcome.status {
        _ if refused => Status::Critical,
        Status::Ok => Status::Warning,
        worse => worse,
    };
    let details = outcome.details;
    Outcome::new(status, format!("{}; {}", said.join("; "), outcome.message)).with_details(details)
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `2026-12-13T06:10:00Z`.
fn date(unix: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

fn in_days(seconds: i64) -> String {
    match seconds / 86_400 {
        0 => format!("{} hours", seconds / 3_600),
        1 => "1 day".to_owned(),
        days => format!("{days} days"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn cert(not_before_unix: i64, not_after_unix: i64) -> CertValidity {
        CertValidity {
            subject: "CN=client".to_owned(),
            not_before_unix,
            not_after_unix,
        }
    }

    #[test]
    fn dates_are_named_expired_not_yet_valid_or_expiring_soon() {
        let now = 1_796_000_000;
        let warn = DEFAULT_CERT_WARNING;
        let expired = judge_validity("the cert a.crt", &cert(0, now - DAY), now, warn)
            .expect("expired is a finding");
        assert_eq!(expired.status, Status::Critical);
        assert_eq!(
            expired.message,
            "the cert a.crt (CN=client) expired on 2026-11-29T00:53:20Z"
        );
        let early = judge_validity("x", &cert(now + DAY, now + 400 * DAY), now, warn)
            .expect("not yet valid is a finding");
        assert_eq!(early.status, Status::Critical);
        assert!(
            early.message.contains("not valid before"),
            "{}",
            early.message
        );
        let soon = judge_validity("x", &cert(0, now + 10 * DAY + 5), now, warn)
            .expect("expiring within 30 days is a finding");
        assert_eq!(soon.status, Status::Warning);
        assert!(soon.message.contains("in 10 days"), "{}", soon.message);
        assert_eq!(
            judge_validity("x", &cert(0, now + 31 * DAY), now, warn),
            None
        );
    }

    #[test]
    fn a_refused_certificate_leads_and_a_soon_one_demotes_ok() {
        let critical = CertFinding {
            status: Status::Critical,
            message: "client expired".to_owned(),
        };
        let soon = CertFinding {
            status: Status::Warning,
            message: "CA expires soon".to_owned(),
        };
        let failed = with_findings(Outcome::critical("BadCertificate"), &[critical]);
        assert_eq!(failed.status, Status::Critical);
        assert_eq!(failed.message, "client expired; BadCertificate");
        let fine = with_findings(Outcome::ok("healthy"), std::slice::from_ref(&soon));
        assert_eq!(fine.status, Status::Warning);
        let down = with_findings(Outcome::critical("refused"), &[soon]);
        assert_eq!(down.status, Status::Critical);
        assert_eq!(with_findings(Outcome::ok("fine"), &[]).message, "fine");
    }
}
