//! The node checks' settings: disk watermarks and paths, the kubelet's
//! health URL, exec plugins.

use std::path::{Path, PathBuf};

use starling_checks::{KUBELET_HEALTHZ_URL, PluginSpec, Schedule, Status, Watermarks};

use super::ConfigError;
use crate::cli::NodeCheckArgs;

#[derive(Debug, Clone)]
pub struct NodeCheckSettings {
    /// Filesystems to watch (the data dir first); empty turns the check off.
    pub disk_paths: Vec<PathBuf>,
    pub disk_marks: Watermarks,
    /// The kubelet's health endpoint; `None` turns the check off.
    pub kubelet_url: Option<String>,
    pub plugins: Vec<PluginSpec>,
    pub schedule: Schedule,
}

/// No node checks (the defaults outside a pod without flags).
impl Default for NodeCheckSettings {
    fn default() -> Self {
        NodeCheckSettings {
            disk_paths: Vec::new(),
            disk_marks: Watermarks::default(),
            kubelet_url: None,
            plugins: Vec::new(),
            schedule: Schedule {
                interval: std::time::Duration::from_secs(30),
                timeout: std::time::Duration::from_secs(30),
                failures_before_critical: 2,
            },
        }
    }
}

impl NodeCheckSettings {
    /// Whether any node check runs: then this node's status is unknown
    /// until they report.
    pub fn any(&self) -> bool {
        !self.disk_paths.is_empty() || self.kubelet_url.is_some() || !self.plugins.is_empty()
    }
}

/// `in_pod`: the agent runs in a pod, where a kubelet and a data dir worth
/// watching exist, so the disk and kubelet checks are on by default.
pub(super) fn node_checks(
    args: &NodeCheckArgs,
    data_dir: &Path,
    in_pod: bool,
) -> Result<NodeCheckSettings, ConfigError> {
    let marks = Watermarks {
        warning_free_percent: args.disk_warning_free,
        critical_free_percent: args.disk_critical_free,
    };
    let percent = |flag, value: f64| {
        if (0.0..=100.0).contains(&value) {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                flag,
                reason: format!("{value} is not a percentage from 0 to 100"),
            })
        }
    };
    percent("--disk-warning-free", marks.warning_free_percent)?;
    percent("--disk-critical-free", marks.critical_free_percent)?;
    if marks.critical_free_percent > marks.warning_free_percent {
        return Err(ConfigError::Invalid {
            flag: "--disk-critical-free",
            reason: "is above --disk-warning-free".to_owned(),
        });
    }
    let disk_paths = if in_pod || !args.disk_paths.is_empty() {
        std::iter::once(data_dir.to_owned())
            .chain(args.disk_paths.iter().cloned())
            .collect()
    } else {
        Vec::new()
    };
    let kubelet_url = match args.kubelet_healthz_url.as_deref() {
        Some("") => None,
        Some(url) => Some(url.to_owned()),
        None => in_pod.then(|| KUBELET_HEALTHZ_URL.to_owned()),
    };
    if let Some(url) = &kubelet_url
        && let Err(error) = starling_checks::HealthzCheck::new("kubelet", url)
    {
        return Err(ConfigError::Invalid {
            flag: "--kubelet-healthz-url",
            reason: error.to_string(),
        });
    }
    let mut plugins = Vec::new();
    for (flag, specs, problem) in [
        ("--plugin", &args.plugins, Status::Critical),
        ("--plugin-warning", &args.warning_plugins, Status::Warning),
    ] {
        for spec in specs {
            let (name, path) = spec
                .split_once('=')
                .filter(|(name, path)| valid_name(name) && !path.is_empty())
                .ok_or_else(|| ConfigError::Invalid {
                    flag,
                    reason: format!("{spec:?} is not NAME=PATH (a name of letters, digits and -)"),
                })?;
            if plugins.iter().any(|p: &PluginSpec| p.name == name) {
                return Err(ConfigError::Invalid {
                    flag,
                    reason: format!("two plugins named {name:?}"),
                });
            }
            plugins.push(PluginSpec {
                name: name.to_owned(),
                path: PathBuf::from(path),
                args: Vec::new(),
                timeout: args.plugin_timeout,
                problem,
            });
        }
    }
    let interval = args.node_check_interval;
    Ok(NodeCheckSettings {
        disk_paths,
        disk_marks: marks,
        kubelet_url,
        plugins,
        schedule: Schedule {
            interval,
            // A plugin has its own timeout; the runner's is a backstop.
            timeout: interval.max(args.plugin_timeout + std::time::Duration::from_secs(5)),
            failures_before_critical: args.node_check_failures,
        },
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
