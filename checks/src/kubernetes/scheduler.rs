//! The scheduler, tested the way users depend on it: one node (the owner
//! of this cluster-scope check) creates a tiny probe pod with no node
//! name, measures how long until it is scheduled (and, optionally,
//! running), and deletes it. Leftovers of an earlier run that died before
//! its cleanup are deleted first.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;

use super::describe;
use crate::checker::{BoxFuture, Checker, Scope};
use crate::result::Outcome;

/// Between two reads of the probe pod while waiting.
const POLL: Duration = Duration::from_millis(200);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// The probe pods' own namespace (created when missing).
    pub namespace: String,
    /// A tiny image that starts and idles.
    pub image: String,
    /// The label (`key=value`) that marks probe pods, for cleanup.
    pub label: (String, String),
    /// Not scheduled within this is critical. Keep it well under the
    /// check's timeout, so the pod is deleted before the runner gives up.
    pub schedule_timeout: Duration,
    /// Also wait until the pod runs (pulls the image, starts it).
    pub wait_running: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            namespace: "starling-probe".to_owned(),
            image: "registry.k8s.io/pause:3.10".to_owned(),
            label: (
                "app.kubernetes.io/name".to_owned(),
                "starling-scheduler-probe".to_owned(),
            ),
            schedule_timeout: Duration::from_secs(30),
            wait_running: false,
        }
    }
}

pub struct SchedulerCheck {
    config: SchedulerConfig,
    kube: kube::Config,
}

impl std::fmt::Debug for SchedulerCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerCheck")
            .field("config", &self.config)
            .field("cluster_url", &self.kube.cluster_url.to_string())
            .finish()
    }
}

impl SchedulerCheck {
    pub fn new(config: SchedulerConfig, kube: kube::Config) -> Self {
        SchedulerCheck { config, kube }
    }
}

impl Checker for SchedulerCheck {
    fn name(&self) -> &str {
        crate::SCHEDULER
    }

    /// One probe pod for the whole cluster, not one per node.
    fn scope(&self) -> Scope {
        Scope::Cluster
    }

    fn check(&self) -> BoxFuture<'_, Outcome> {
        Box::pin(self.run())
    }
}

impl SchedulerCheck {
    async fn run(&self) -> Outcome {
        let client = match kube::Client::try_from(self.kube.clone()) {
            Ok(client) => client,
            Err(error) => {
                return Outcome::unknown(format!("cannot build a client: {}", describe(&error)));
            }
        };
        let ns = &self.config.namespace;
        if let Err(error) = ensure_namespace(&client, ns).await {
            return Outcome::unknown(format!(
                "cannot prepare namespace {ns}: {}",
                describe(&error)
            ));
        }
        let pods: kube::Api<Pod> = kube::Api::namespaced(client, ns);
        let (key, value) = &self.config.label;
        let selector = format!("{key}={value}");
        let leftovers = match clean_up(&pods, &selector).await {
            Ok(count) => count,
            Err(error) => {
                return Outcome::unknown(format!(
                    "cannot list earlier probe pods: {}",
                    describe(&error)
                ));
            }
        };
        let created = match pods.create(&PostParams::default(), &self.probe_pod()).await {
            Ok(pod) => pod,
            Err(error) => {
                return Outcome::critical(format!(
                    "cannot create the probe pod: {}",
                    describe(&error)
                ));
            }
        };
        let name = created.metadata.name.clone().unwrap_or_default();
        let started = Instant::now();
        let waited = self.wait(&pods, &name, started).await;
        // Always: a probe pod must never outlive its run.
        let deleted = pods.delete(&name, &DeleteParams::default()).await;
        let mut details = json!({
            "pod": name,
            "leftovers_deleted": leftovers,
        });
        let outcome = match waited {
            Ok((scheduled, running)) => {
                details["scheduled_ms"] = json!(scheduled.as_secs_f64() * 1000.0);
                details["running_ms"] = json!(running.map(|d| d.as_secs_f64() * 1000.0));
                let mut message = format!(
                    "probe pod scheduled in {:.0} ms",
                    scheduled.as_secs_f64() * 1000.0
                );
                if let Some(running) = running {
                    message.push_str(&format!(", running in {:.1} s", running.as_secs_f64()));
                }
                Outcome::ok(message)
            }
            Err(problem) => Outcome::critical(problem),
        };
        match deleted {
            Ok(_) => outcome.with_details(details),
            Err(error) => {
                details["delete_error"] = json!(describe(&error));
                let message = format!(
                    "{} (and the probe pod {name} could not be deleted: {})",
                    outcome.message,
                    describe(&error)
                );
                Outcome { message, ..outcome }.with_details(details)
            }
        }
    }

    fn probe_pod(&self) -> Pod {
        let (key, value) = &self.config.label;
        Pod {
            metadata: ObjectMeta {
                generate_name: Some("starling-probe-".to_owned()),
                labels: Some(BTreeMap::from([(key.clone(), value.clone())])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "probe".to_owned(),
                    image: Some(self.config.image.clone()),
                    ..Container::default()
                }],
                restart_policy: Some("Never".to_owned()),
                termination_grace_period_seconds: Some(0),
                automount_service_account_token: Some(false),
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    /// Time to scheduled (and to running, if asked), or why not.
    async fn wait(
        &self,
        pods: &kube::Api<Pod>,
        name: &str,
        started: Instant,
    ) -> Result<(Duration, Option<Duration>), String> {
        let deadline = started + self.config.schedule_timeout;
        let mut scheduled = None;
        let mut last_reason;
        loop {
            match pods.get(name).await {
                Ok(pod) => {
                    if scheduled.is_none() && is_scheduled(&pod) {
                        scheduled = Some(started.elapsed());
                        if !self.config.wait_running {
                            return Ok((started.elapsed(), None));
                        }
                    }
                    if let Some(scheduled) = scheduled
                        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    {
                        return Ok((scheduled, Some(started.elapsed())));
                    }
                    last_reason = unscheduled_reason(&pod).unwrap_or_default();
                }
                Err(error) => last_reason = describe(&error),
            }
            if Instant::now() >= deadline {
                let what = if scheduled.is_some() {
                    "running"
                } else {
                    "scheduled"
                };
                let why = if last_reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({last_reason})")
                };
                return Err(format!(
                    "probe pod not {what} after {:?}{why}",
                    self.config.schedule_timeout
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<(), kube::Error> {
    let namespaces: kube::Api<Namespace> = kube::Api::all(client.clone());
    match namespaces.get(name).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            let namespace = Namespace {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            };
            match namespaces.create(&PostParams::default(), &namespace).await {
                // Another owner made it in between: fine.
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
                other => other.map(|_| ()),
            }
        }
        Err(error) => Err(error),
    }
}

/// Deletes earlier runs' probe pods (an agent killed mid-run leaves one).
async fn clean_up(pods: &kube::Api<Pod>, selector: &str) -> Result<usize, kube::Error> {
    let leftovers = pods.list(&ListParams::default().labels(selector)).await?;
    let mut deleted = 0;
    for pod in leftovers.items {
        let Some(name) = pod.metadata.name else {
            continue;
        };
        match pods.delete(&name, &DeleteParams::default()).await {
            Ok(_) => deleted += 1,
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error),
        }
    }
    if deleted > 0 {
        tracing::info!(deleted, "deleted probe pods left by an earlier run");
    }
    Ok(deleted)
}

fn is_scheduled(pod: &Pod) -> bool {
    let bound = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
    let condition = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "PodScheduled" && c.status == "True")
        });
    bound || condition
}

/// "Unschedulable: 0/3 nodes are available: …" from the PodScheduled
/// condition, when the scheduler said why.
fn unscheduled_reason(pod: &Pod) -> Option<String> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    let reason = condition.reason.clone().unwrap_or_default();
    let message = condition.message.clone().unwrap_or_default();
    Some(
        format!("{reason}: {message}")
            .trim_matches([' ', ':'])
            .to_owned(),
    )
}
