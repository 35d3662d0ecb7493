//! A leader-election lease's freshness: the active kube-scheduler and
//! kube-controller-manager renew theirs every few seconds, so an old
//! renew time means no leader is doing the work (nothing gets scheduled,
//! no controller reconciles) even if every process looks alive.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::Lease;
use serde_json::json;

use super::describe;
use crate::checker::{BoxFuture, Checker, Scope};
use crate::result::Outcome;

pub struct LeaseCheck {
    name: String,
    namespace: String,
    lease: String,
    /// An older renew time is critical. The default lease duration is
    /// 15 s, renewed every 2 s; a minute means leadership is gone.
    max_age: Duration,
    config: kube::Config,
}

impl std::fmt::Debug for LeaseCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseCheck")
            .field("name", &self.name)
            .field("lease", &format!("{}/{}", self.namespace, self.lease))
            .field("max_age", &self.max_age)
            .finish()
    }
}

impl LeaseCheck {
    /// `name` is the check's name (`scheduler-lease`); the lease is
    /// `namespace/lease` (`kube-system/kube-scheduler`).
    pub fn new(
        name: &str,
        namespace: &str,
        lease: &str,
        max_age: Duration,
        config: kube::Config,
    ) -> Self {
        LeaseCheck {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            lease: lease.to_owned(),
            max_age,
            config,
        }
    }
}

impl Checker for LeaseCheck {
    fn name(&self) -> &str {
        &self.name
    }

    /// One node reads it for the cluster: every node would read the same.
    fn scope(&self) -> Scope {
        Scope::Cluster
    }

    fn check(&self) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            let what = format!("lease {}/{}", self.namespace, self.lease);
            let client = match kube::Client::try_from(self.config.clone()) {
                Ok(client) => client,
                Err(error) => {
                    return Outcome::unknown(format!(
                        "cannot build a client: {}",
                        describe(&error)
                    ));
                }
            };
            let leases: kube::Api<Lease> = kube::Api::namespaced(client, &self.namespace);
            let lease = match leases.get(&self.lease).await {
                Ok(lease) => lease,
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    return Outcome::critical(format!(
                        "{what} does not exist: no leader was ever elected"
                    ));
                }
                Err(error) => return Outcome::critical(format!("{what}: {}", describe(&error))),
            };
            let spec = lease.spec.unwrap_or_default();
            let holder = spec.holder_identity.unwrap_or_else(|| "nobody".to_owned());
            let Some(renewed) = spec.renew_time else {
                return Outcome::critical(format!(
                    "{what} has never been renewed (holder {holder})"
                ));
            };
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let age = Duration::from_millis(
                now_ms.saturating_sub(renewed.0.as_millisecond()).max(0) as u64,
            );
            let details = json!({
                "holder": holder,
                "renew_age_s": age.as_secs_f64(),
                "max_age_s": self.max_age.as_secs_f64(),
            });
            if age > self.max_age {
                Outcome::critical(format!(
                    "{what} not renewed for {} s (holder {holder}): no active leader",
                    age.as_secs()
                ))
                .with_details(details)
            } else {
                Outcome::ok(format!(
                    "{what} renewed {:.1} s ago by {holder}",
                    age.as_secs_f64()
                ))
                .with_details(details)
            }
        })
    }
}
