//! The API server as a client sees it: `/livez`, `/readyz?verbose` (each
//! failing sub-check named), and the latency of a small GET that reads
//! from etcd — through the service address the client was configured with,
//! and through the cluster DNS name, since pods reach it both ways.

use std::time::{Duration, Instant};

use serde_json::json;

use base64::Engine;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::{describe, get_text};
use crate::certs::{self, CertFinding};
use crate::checker::{BoxFuture, Checker};
use crate::errors::failing_sub_checks;
use crate::result::Outcome;

/// A GET slower than this is a warning.
const SLOW_GET: Duration = Duration::from_millis(1000);
/// Bounds the extra connection that reads the serving certificate.
const CERT_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One way of reaching the API server.
#[derive(Clone)]
struct Target {
    /// "service" or "dns": how the message names it.
    label: &'static str,
    config: kube::Config,
}

pub struct ApiServerCheck {
    targets: Vec<Target>,
    /// A certificate (the CA, our client certificate) ending sooner than
    /// this is a warning.
    cert_warning: Duration,
}

impl std::fmt::Debug for ApiServerCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self
            .targets
            .iter()
            .map(|t| format!("{} {}", t.label, t.config.cluster_url))
            .collect();
        f.debug_struct("ApiServerCheck")
            .field("targets", &urls)
            .finish()
    }
}

impl ApiServerCheck {
    /// `config` reaches the API server by its service address (in-cluster
    /// config or a kubeconfig); `dns_url`, if given, is the same server by
    /// its cluster DNS name (`https://kubernetes.default.svc`), with the
    /// same credentials.
    pub fn new(config: kube::Config, dns_url: Option<http::Uri>) -> Self {
        let mut targets = vec![Target {
            label: "service",
            config: config.clone(),
        }];
        if let Some(url) = dns_url {
            let mut dns = config;
            dns.cluster_url = url;
            targets.push(Target {
                label: "dns",
                config: dns,
            });
        }
        ApiServerCheck {
            targets,
            cert_warning: certs::DEFAULT_CERT_WARNING,
        }
    }

    /// How long before its end a certificate is a warning.
    pub fn with_cert_warning(mut self, cert_warning: Duration) -> Self {
        self.cert_warning = cert_warning;
        self
    }

    /// The CA the client trusts and the client certificate it presents, by
    /// their dates: a kubeconfig's client certificate expiring after a year
    /// is kubeadm's classic, and the API server then says only 401.
    fn certificate_findings(&self) -> Vec<CertFinding> {
        let Some(target) = self.targets.first() else {
            return Vec::new();
        };
        let (config, warn) = (&target.config, self.cert_warning);
        let now = certs::unix_now();
        let mut found = Vec::new();
        for der in config.root_cert.iter().flatten() {
            found.extend(certs::judge_der("the API server's CA", der, now, warn));
        }
        let auth = &config.auth_info;
        if let Some(data) = &auth.client_certificate_data {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .unwrap_or_else(|_| data.as_bytes().to_vec());
            for der in CertificateDer::pem_slice_iter(&pem).flatten() {
                let what = "the kubeconfig's client certificate";
                found.extend(certs::judge_der(what, &der, now, warn));
            }
        }
        if let Some(file) = &config.root_cert_file {
            found.extend(certs::judge_file("the API server's CA", file, warn));
        }
        if let Some(file) = &auth.client_certificate {
            found.extend(certs::judge_file(
                "the API client certificate",
                std::path::Path::new(file),
                warn,
            ));
        }
        found
    }

    /// The dates of the certificate the API server serves at its service
    /// address (the DNS name reaches the same server). Read on a connection
    /// of its own, since the kube client's "invalid peer certificate:
    /// Expired" names no date; nothing if the server is not over https or
    /// does not answer (the probe says why).
    async fn serving_certificate_finding(&self) -> Option<CertFinding> {
        let url = &self.targets.first()?.config.cluster_url;
        if url.scheme_str() != Some("https") {
            return None;
        }
        let client = crate::tls::certificate_reader()
            .timeout(CERT_READ_TIMEOUT)
            .build()
            .ok()?;
        let livez = format!("{}/livez", url.to_string().trim_end_matches('/'));
        let response = client.get(livez).send().await.ok()?;
        let cert = certs::served_certificate(&response)?;
        let what = format!("the API server's serving certificate at {url}");
        certs::judge_validity(&what, &cert, certs::unix_now(), self.cert_warning)
    }
}

impl Checker for ApiServerCheck {
    fn name(&self) -> &str {
        "apiserver"
    }

    fn check(&self) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            let mut problems = Vec::new();
            let mut slow = Vec::new();
            let mut details = Vec::new();
            for target in &self.targets {
                let (problem, latency) = probe(target).await;
                details.push(json!({
                    "via": target.label,
                    "url": target.config.cluster_url.to_string(),
                    "problem": problem,
                    "get_ms": latency.map(|d| d.as_secs_f64() * 1000.0),
                }));
                let name = format!(
                    "apiserver via {} {}",
                    target.label, target.config.cluster_url
                );
                match (problem, latency) {
                    (Some(problem), _) => problems.push(format!("{name}: {problem}")),
                    (None, Some(latency)) if latency > SLOW_GET => slow.push(format!(
                        "{name}: a GET took {:.0} ms",
                        latency.as_secs_f64() * 1000.0
                    )),
                    _ => {}
                }
            }
            let details = json!({ "targets": details });
            let mut findings = self.certificate_findings();
            findings.extend(self.serving_certificate_finding().await);
            let outcome = if !problems.is_empty() {
                Outcome::critical(problems.join("; ")).with_details(details)
            } else if !slow.is_empty() {
                Outcome::warning(slow.join("; ")).with_details(details)
            } else {
                let summary: Vec<String> = self
                    .targets
                    .iter()
                    .zip(details["targets"].as_array().into_iter().flatten())
                    .map(|(t, d)| {
                        format!("{} {:.1} ms", t.label, d["get_ms"].as_f64().unwrap_or(0.0))
                    })
                    .collect();
                Outcome::ok(format!("live and ready; GET {}", summary.join(", ")))
                    .with_details(details)
            };
            certs::with_findings(outcome, &findings)
        })
    }
}

/// What is wrong through this target, if anything, and the GET latency.
async fn probe(target: &Target) -> (Option<String>, Option<Duration>) {
    let client = match kube::Client::try_from(target.config.clone()) {
        Ok(client) => client,
        Err(error) => {
            return (
                Some(format!("cannot build a client: {}", describe(&error))),
                None,
            );
        }
    };
    match get_text(&client, "/livez").await {
        Ok(text) if text.trim() == "ok" => {}
        Ok(text) => return (Some(format!("/livez answered {:?}", text.trim())), None),
        Err(error) => return (Some(format!("/livez: {}", describe(&error))), None),
    }
    match get_text(&client, "/readyz?verbose").await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) => {
            let failing = failing_sub_checks(&status.message);
            let what = if failing.is_empty() {
                describe(&kube::Error::Api(status))
            } else {
                format!("failing {}", failing.join(", "))
            };
            return (Some(format!("not ready: {what}")), None);
        }
        Err(error) => return (Some(format!("/readyz: {}", describe(&error))), None),
    }
    // Reads the object from etcd (no cached resourceVersion): the path
    // every real request takes.
    let started = Instant::now();
    match get_text(&client, "/api/v1/namespaces/default").await {
        Ok(_) => (None, Some(started.elapsed())),
        Err(error) => (
            Some(format!("GET namespace default: {}", describe(&error))),
            None,
        ),
    }
}
