//! A component's own health endpoint on this node: kube-scheduler on
//! `https://127.0.0.1:10259/healthz`, kube-controller-manager on `:10257`
//! (control-plane nodes), the kubelet on `http://127.0.0.1:10248/healthz`
//! (every node). The control plane's are served with self-signed
//! certificates and readable without credentials (kubeadm allows
//! `/healthz` anonymously), so the certificate is not verified — which is
//! why only loopback URLs are accepted.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::certs;
use crate::checker::{BoxFuture, Checker, Scope};
use crate::errors::{failing_sub_checks, innermost_cause};
use crate::result::Outcome;
use crate::tls::{is_loopback_url, loopback_unverified_client};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct HealthzCheck {
    name: String,
    url: String,
    scope: Scope,
    /// A serving certificate ending sooner than this is a warning.
    cert_warning: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "{0}: only loopback URLs (127.0.0.0/8, ::1, localhost): their certificates are not verified"
)]
pub struct NotLoopback(pub String);

impl HealthzCheck {
    pub fn new(name: &str, url: &str) -> Result<Self, NotLoopback> {
        if !is_loopback_url(url) {
            return Err(NotLoopback(url.to_owned()));
        }
        Ok(HealthzCheck {
            name: name.to_owned(),
            url: url.to_owned(),
            scope: Scope::ControlPlane,
            cert_warning: certs::DEFAULT_CERT_WARNING,
        })
    }

    /// How long before its end the served certificate is a warning.
    pub fn with_cert_warning(mut self, cert_warning: Duration) -> Self {
        self.cert_warning = cert_warning;
        self
    }

    /// For a component every node runs (the kubelet); the default is
    /// control-plane nodes only.
    pub fn on_every_node(mut self) -> Self {
        self.scope = Scope::EveryNode;
        self
    }
}

impl Checker for HealthzCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn scope(&self) -> Scope {
        self.scope
    }

    fn check(&self) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            let client = match loopback_unverified_client()
                .timeout(REQUEST_TIMEOUT)
                .tls_info(true)
                .build()
            {
                Ok(client) => client,
                Err(error) => {
                    return Outcome::unknown(format!("cannot build an HTTP client: {error}"));
                }
            };
            let started = Instant::now();
            let response = match client.get(&self.url).send().await {
                Ok(response) => response,
                Err(error) => {
                    return Outcome::critical(format!("{}: {}", self.url, innermost_cause(&error)));
                }
            };
            // Not verified (self-signed), but its dates still matter: anything
            // that does verify it (Prometheus) refuses it once it ends.
            let findings: Vec<certs::CertFinding> = certs::served_certificate(&response)
                .and_then(|cert| {
                    let what = format!("the serving certificate of {}", self.url);
                    certs::judge_validity(&what, &cert, certs::unix_now(), self.cert_warning)
                })
                .into_iter()
                .collect();
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let elapsed = started.elapsed();
            let details = json!({"url": self.url, "http_status": status.as_u16(), "ms": elapsed.as_secs_f64() * 1000.0});
            let outcome = if status.is_success() && body.trim() == "ok" {
                Outcome::ok(format!(
                    "{} ok in {:.1} ms",
                    self.url,
                    elapsed.as_secs_f64() * 1000.0
                ))
                .with_details(details)
            } else {
                let failing = failing_sub_checks(&body);
                let why = if failing.is_empty() {
                    body.split_whitespace().collect::<Vec<_>>().join(" ")
                } else {
                    format!("failing {}", failing.join(", "))
                };
                Outcome::critical(format!("{}: HTTP {status}: {why}", self.url))
                    .with_details(details)
            };
            certs::with_findings(outcome, &findings)
        })
    }
}
