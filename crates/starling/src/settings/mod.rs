//! Validated agent settings: every mistake in the flags is caught here and
//! reported as one line naming the flag.

mod alert;
mod node;
mod overlay;
mod probe;

pub use probe::probe;

pub use starling_agent::{
    AgentConfig, HealthzCheckSpec, KubeChecksConfig, KubeSource, NodeChecksConfig,
};
pub use starling_alert::{Secret, SinkSpec};
pub use starling_health::overlay::OverlayConfig;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use starling_checks::{ClientTls, DiskLimits, EtcdConfig, Schedule, SchedulerConfig};

use crate::cli::{AgentArgs, EtcdArgs, KubeArgs, LabArgs};
use starling_aggregator::{AggregationConfig, ModeRule};
use starling_client::lab::LabConfig;
use starling_gossip::{DEFAULT_GOSSIP_PORT, GossipConfig, JoinTargets, Role};
use starling_history::{Retention, StoreConfig};
use starling_replicate::ReplicationConfig;
use starling_seal::KeyringError;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--node-name (NODE_NAME) must not be empty")]
    EmptyNodeName,
    #[error(
        "--host-ip (HOST_IP) is required when --gossip-bind {0} is a wildcard address: \
         other nodes need an address to reach this one"
    )]
    NoAdvertiseIp(SocketAddr),
    #[error("--join {0:?}: expected host or host:port")]
    BadJoin(String),
    #[error("--join-dns {0:?}: expected name or name:port")]
    BadJoinDns(String),
    #[error("--gossip-key-file: {0}")]
    Key(#[from] KeyringError),
    #[error("{flag} must be at least {min:?}")]
    TooSmall {
        flag: &'static str,
        min: std::time::Duration,
    },
    #[error("{flag}: {reason}")]
    Invalid { flag: &'static str, reason: String },
    #[error("--history-max-mib must be at least 1")]
    NoHistorySpace,
    #[error("--etcd-endpoint {0:?}: expected an http:// or https:// URL")]
    BadEtcdEndpoint(String),
    #[error("--etcd-endpoint {0}: an https endpoint needs --etcd-ca to verify etcd's certificate")]
    EtcdNeedsCa(String),
    #[error("--etcd-timeout must be shorter than --etcd-interval")]
    EtcdTimeoutTooLong,
    #[error("--apiserver-dns-url {0:?}: expected an https:// or http:// URL")]
    BadApiServerUrl(String),
    #[error("--probe-timeout must be shorter than --kube-interval")]
    ProbeTimeoutTooLong,
    #[error("--{flag} {source}")]
    NotLoopback {
        flag: &'static str,
        #[source]
        source: starling_checks::NotLoopback,
    },
    #[error(
        "no gossip key: pass --gossip-key-file (create one with `starling keygen`), \
         or --insecure-gossip to run without encryption"
    )]
    NoKey,
}

/// The agent's flags, checked, as the agent's config.
pub fn agent(args: &AgentArgs) -> Result<AgentConfig, ConfigError> {
    let node_name = args.node_name.trim().to_owned();
    if node_name.is_empty() {
        return Err(ConfigError::EmptyNodeName);
    }
    let advertise_ip = match args.host_ip {
        Some(ip) => ip,
        None if !args.gossip_bind.ip().is_unspecified() => args.gossip_bind.ip(),
        None => return Err(ConfigError::NoAdvertiseIp(args.gossip_bind)),
    };
    let mut targets = Vec::new();
    for seed in &args.join {
        targets.push(with_default_port(seed).ok_or_else(|| ConfigError::BadJoin(seed.clone()))?);
    }
    if let Some(name) = &args.join_dns {
        targets.push(with_default_port(name).ok_or_else(|| ConfigError::BadJoinDns(name.clone()))?);
    }
    let keyring = args.key.load()?.ok_or(ConfigError::NoKey)?;
    let at_least = |flag, value: Duration, min: Duration| {
        if value < min {
            Err(ConfigError::TooSmall { flag, min })
        } else {
            Ok(value)
        }
    };
    let minute = Duration::from_secs(60);
    let retention = Retention {
        events_max_age: at_least("--history-retention", args.history_retention, minute)?,
        results_max_age: at_least("--results-retention", args.results_retention, minute)?,
        max_size_bytes: match args.history_max_mib {
            0 => return Err(ConfigError::NoHistorySpace),
            mib => mib.saturating_mul(1 << 20),
        },
    };
    let replication = ReplicationConfig {
        pull_interval: at_least(
            "--sync-interval",
            args.sync_interval,
            Duration::from_millis(100),
        )?,
        pull_idle_interval: args.sync_idle_interval.max(args.sync_interval),
        ..ReplicationConfig::default()
    };
    if args.aggregation_replicas == 0 {
        return Err(ConfigError::Invalid {
            flag: "--aggregation-replicas",
            reason: "must be at least 1".to_owned(),
        });
    }
    let aggregation = AggregationConfig {
        rule: ModeRule {
            aggregate_above: args.aggregate_above,
        },
        replicas: args.aggregation_replicas,
        ..AggregationConfig::default()
    };
    let etcd = etcd_check(&args.etcd)?;
    let mut kube = kube_checks(&args.kube, args.etcd.cert_warning)?;
    let mut healthz = healthz_checks(&args.kube, args.etcd.cert_warning)?;
    let in_pod = args.kube.kubernetes_service_host.is_some();
    let mut node = node::node_checks(&args.node, &args.data_dir, in_pod)?;
    if args.role == Role::Aggregator {
        // An aggregator is not a node whose health the cluster reports:
        // its checks would show as a node's, and cluster-scope checks are
        // never placed on it.
        if etcd.is_some() {
            return Err(ConfigError::Invalid {
                flag: "--etcd-endpoints",
                reason: "an aggregator runs no checks; drop it or the role".to_owned(),
            });
        }
        kube = None;
        healthz.clear();
        node = NodeChecksConfig::default();
    }
    Ok(AgentConfig {
        node_name,
        gossip_bind: args.gossip_bind,
        advertise_ip,
        api_bind: args.api_bind,
        role: args.role,
        join: JoinTargets { targets },
        keyring,
        data_dir: args.data_dir.clone(),
        gossip: GossipConfig::default(),
        history: StoreConfig {
            retention,
            ..StoreConfig::default()
        },
        replication,
        aggregation,
        etcd,
        kube,
        healthz,
        node,
        overlay: overlay::overlay(&args.overlay)?,
        alert: alert::alert(&args.alert)?,
        max_concurrent_checks: args.max_concurrent_checks.max(1),
    })
}

fn healthz_checks(
    args: &KubeArgs,
    cert_warning: Duration,
) -> Result<Vec<(HealthzCheckSpec, Schedule)>, ConfigError> {
    let schedule = Schedule {
        interval: args.kube_interval,
        timeout: args.kube_interval.min(Duration::from_secs(10)),
        failures_before_critical: args.kube_failures,
    };
    let mut checks = Vec::new();
    for (flag, name, url) in [
        (
            "scheduler-healthz-url",
            "scheduler-healthz",
            &args.scheduler_healthz_url,
        ),
        (
            "controller-manager-healthz-url",
            "controller-manager-healthz",
            &args.controller_manager_healthz_url,
        ),
    ] {
        if url.trim().is_empty() {
            continue;
        }
        // Validated here so a bad URL stops the agent at start.
        starling_checks::HealthzCheck::new(name, url)
            .map_err(|source| ConfigError::NotLoopback { flag, source })?;
        checks.push((
            HealthzCheckSpec {
                name,
                url: url.clone(),
                cert_warning,
            },
            schedule,
        ));
    }
    Ok(checks)
}

fn kube_checks(
    args: &KubeArgs,
    cert_warning: Duration,
) -> Result<Option<KubeChecksConfig>, ConfigError> {
    let in_cluster = args.kubernetes_service_host.is_some();
    let source = match (&args.kubeconfig, in_cluster) {
        _ if args.no_kube_checks => None,
        (Some(path), _) => Some(KubeSource::Kubeconfig(path.clone())),
        (None, true) => Some(KubeSource::InCluster),
        (None, false) => None,
    };
    let Some(source) = source else {
        if args.kube_node_conditions {
            return Err(ConfigError::Invalid {
                flag: "--kube-node-conditions",
                reason: "needs Kubernetes access: --kubeconfig, or run in a pod (and not \
                         --no-kube-checks)"
                    .to_owned(),
            });
        }
        return Ok(None);
    };
    let dns_url = match (&args.apiserver_dns_url, &source) {
        (Some(url), _) => Some(url.as_str()),
        (None, KubeSource::InCluster) => Some("https://kubernetes.default.svc"),
        (None, KubeSource::Kubeconfig(_)) => None,
    };
    let dns_url = match dns_url {
        Some(url) => {
            let parsed: http::Uri = url
                .parse()
                .map_err(|_| ConfigError::BadApiServerUrl(url.to_owned()))?;
            if !matches!(parsed.scheme_str(), Some("https" | "http")) || parsed.host().is_none() {
                return Err(ConfigError::BadApiServerUrl(url.to_owned()));
            }
            Some(parsed)
        }
        None => None,
    };
    if args.probe_timeout >= args.kube_interval {
        return Err(ConfigError::ProbeTimeoutTooLong);
    }
    Ok(Some(KubeChecksConfig {
        source,
        dns_url,
        scheduler: SchedulerConfig {
            namespace: args.probe_namespace.clone(),
            image: args.probe_image.clone(),
            schedule_timeout: args.probe_timeout,
            wait_running: args.probe_wait_running,
            ..SchedulerConfig::default()
        },
        interval: args.kube_interval,
        failures: args.kube_failures,
        cert_warning,
        node_conditions: args
            .kube_node_conditions
            .then_some(starling_agent::NODE_CONDITIONS_EVERY),
    }))
}

fn etcd_check(args: &EtcdArgs) -> Result<Option<(EtcdConfig, Schedule)>, ConfigError> {
    if args.endpoints.is_empty() {
        return Ok(None);
    }
    let mut endpoints = Vec::new();
    for endpoint in &args.endpoints {
        let endpoint = endpoint.trim().trim_end_matches('/').to_owned();
        let https = endpoint.starts_with("https://");
        if !https && !endpoint.starts_with("http://") || endpoint.contains(char::is_whitespace) {
            return Err(ConfigError::BadEtcdEndpoint(endpoint));
        }
        if https && args.etcd_ca.is_none() {
            return Err(ConfigError::EtcdNeedsCa(endpoint));
        }
        endpoints.push(endpoint);
    }
    if args.etcd_timeout >= args.etcd_interval {
        return Err(ConfigError::EtcdTimeoutTooLong);
    }
    let config = EtcdConfig {
        endpoints,
        tls: ClientTls {
            ca: args.etcd_ca.clone(),
            cert: args.etcd_cert.clone(),
            key: args.etcd_key.clone(),
        },
        cert_warning: args.cert_warning,
        disk: DiskLimits {
            wal_fsync_p99: args.etcd_wal_fsync_p99,
            backend_commit_p99: args.etcd_backend_commit_p99,
        },
        ..EtcdConfig::default()
    };
    let schedule = Schedule {
        interval: args.etcd_interval,
        timeout: args.etcd_timeout,
        failures_before_critical: args.etcd_failures,
    };
    Ok(Some((config, schedule)))
}

/// `host`, `host:port`, `ip`, `ip:port` or `[ipv6]:port` → `host:port`.
fn with_default_port(target: &str) -> Option<String> {
    let target = target.trim();
    if target.is_empty() {
        return None;
    }
    if target.parse::<SocketAddr>().is_ok() {
        return Some(target.to_owned());
    }
    if let Ok(ip) = target.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, DEFAULT_GOSSIP_PORT).to_string());
    }
    match target.rsplit_once(':') {
        Some((host, port)) => {
            let valid = !host.is_empty() && !host.contains(':') && port.parse::<u16>().is_ok();
            valid.then(|| target.to_owned())
        }
        None => Some(format!("{target}:{DEFAULT_GOSSIP_PORT}")),
    }
}

/// The lab's flags: nothing to check beyond clap's ranges.
pub fn lab(args: &LabArgs) -> LabConfig {
    LabConfig {
        nodes: args.nodes,
        first_ip: args.first_ip,
        keep: args.keep,
        etcd: !args.no_etcd,
        kubeconfig: args.kubeconfig.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_targets_get_the_default_port() {
        assert_eq!(with_default_port("seed").as_deref(), Some("seed:7946"));
        assert_eq!(with_default_port("seed:1").as_deref(), Some("seed:1"));
        assert_eq!(
            with_default_port("10.0.0.1").as_deref(),
            Some("10.0.0.1:7946")
        );
        assert_eq!(with_default_port("::1").as_deref(), Some("[::1]:7946"));
        assert_eq!(with_default_port("[::1]:9").as_deref(), Some("[::1]:9"));
        assert_eq!(with_default_port("seed:x"), None);
        assert_eq!(with_default_port(":7946"), None);
        assert_eq!(with_default_port(" "), None);
    }
}
