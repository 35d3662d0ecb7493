//! The checks this agent runs, assembled from its settings.

use std::time::Duration;

use starling_checks::{
    ApiServerCheck, CONTROLLER_MANAGER_LEASE, DiskCheck, DnsCheck, EtcdCheck, HealthzCheck,
    LeaseCheck, PluginCheck, Runner, RuntimeCheck, SCHEDULER_LEASE, Schedule, SchedulerCheck,
};

use crate::config::{AgentConfig, KubeChecksConfig, KubeSource};
use starling_gossip::Role;

/// A leader lease older than this means no active leader: leases last
/// 15 s by default and are renewed every 2 s.
const LEASE_MAX_AGE: Duration = Duration::from_secs(60);
/// The probe pod's run may take its schedule timeout plus this (create,
/// delete, cleanup of leftovers) before the runner gives up on it.
const PROBE_MARGIN: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ChecksError {
    #[error("--kubeconfig {}: {reason}", path.display())]
    Kubeconfig {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("in-cluster Kubernetes credentials: {0} (pass --kubeconfig, or --no-kube-checks)")]
    InCluster(String),
}

/// Whether this node runs checks of its own (not only cluster-scope ones
/// it may come to own): until they report, its status is unknown.
pub(crate) fn node_checks_here(settings: &AgentConfig) -> bool {
    settings.etcd.is_some()
        || settings.kube.is_some()
        || settings.node.any()
        || (settings.role == Role::ControlPlane && !settings.healthz.is_empty())
}

pub(crate) async fn runner(settings: &AgentConfig) -> Result<Runner, ChecksError> {
    let mut runner = Runner::new(settings.max_concurrent_checks);
    if let Some((config, schedule)) = settings.etcd.clone() {
        runner.add(EtcdCheck::new(config), schedule);
    }
    for (spec, schedule) in &settings.healthz {
        let check = HealthzCheck::new(spec.name, &spec.url)
            .expect("settings accept only loopback healthz URLs")
            .with_cert_warning(spec.cert_warning);
        runner.add(check, *schedule);
    }
    if let Some(kube) = &settings.kube {
        add_kube_checks(&mut runner, kube, kube_config(&kube.source).await?);
    }
    let node = &settings.node;
    if !node.disk_paths.is_empty() {
        runner.add(
            DiskCheck::new(node.disk_paths.clone(), node.disk_marks),
            node.schedule,
        );
    }
    if let Some(url) = &node.kubelet_url {
        let check = HealthzCheck::new("kubelet", url)
            .expect("settings accept only loopback kubelet URLs")
            .on_every_node();
        runner.add(check, node.schedule);
    }
    if let Some(socket) = &node.cri_socket {
        let mut check = RuntimeCheck::new(socket.clone());
        if node.cri_start_sandbox {
            check = check.with_sandbox(settings.node_name.clone());
        }
        runner.add(check, node.schedule);
    }
    if let Some(dns) = &node.dns {
        runner.add(DnsCheck::new(dns.clone()), node.schedule);
    }
    for plugin in &node.plugins {
        runner.add(PluginCheck::new(plugin.clone()), node.schedule);
    }
    Ok(runner)
}

pub(crate) async fn kube_config(source: &KubeSource) -> Result<kube::Config, ChecksError> {
    match source {
        KubeSource::Kubeconfig(path) => {
            let fail = |reason: String| ChecksError::Kubeconfig {
                path: path.clone(),
                reason,
            };
            let file =
                kube::config::Kubeconfig::read_from(path).map_err(|e| fail(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| fail(e.to_string()))
        }
        KubeSource::InCluster => {
            kube::Config::incluster().map_err(|e| ChecksError::InCluster(e.to_string()))
        }
    }
}

fn add_kube_checks(runner: &mut Runner, kube: &KubeChecksConfig, config: kube::Config) {
    let schedule = Schedule {
        interval: kube.interval,
        timeout: kube.interval.min(Duration::from_secs(10)),
        failures_before_critical: kube.failures,
    };
    runner.add(
        ApiServerCheck::new(config.clone(), kube.dns_url.clone())
            .with_cert_warning(kube.cert_warning),
        schedule,
    );
    runner.add(
        LeaseCheck::new(
            SCHEDULER_LEASE,
            "kube-system",
            "kube-scheduler",
            LEASE_MAX_AGE,
            config.clone(),
        ),
        schedule,
    );
    runner.add(
        LeaseCheck::new(
            CONTROLLER_MANAGER_LEASE,
            "kube-system",
            "kube-controller-manager",
            LEASE_MAX_AGE,
            config.clone(),
        ),
        schedule,
    );
    let probe_timeout = kube.scheduler.schedule_timeout;
    runner.add(
        SchedulerCheck::new(kube.scheduler.clone(), config),
        Schedule {
            interval: (probe_timeout + PROBE_MARGIN).max(kube.interval * 2),
            timeout: probe_timeout + PROBE_MARGIN,
            // One probe pod not scheduled in time is already telling.
            failures_before_critical: kube.failures.min(2),
        },
    );
}
