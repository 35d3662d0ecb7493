//! The node checks' settings: disk watermarks and paths, the kubelet's
//! health URL, the container runtime's socket, exec plugins.

use std::path::{Path, PathBuf};

use std::net::{IpAddr, SocketAddr};

use starling_checks::{
    DnsSpec, KUBELET_HEALTHZ_URL, KUBERNETES_SERVICE_NAME, PluginSpec, Schedule, Status,
    Watermarks, resolv_conf_server,
};

use super::ConfigError;
use crate::cli::NodeCheckArgs;
use starling_agent::NodeChecksConfig;

/// `in_pod`: the agent runs in a pod, where a kubelet and a data dir worth
/// watching exist, so the disk and kubelet checks are on by default.
pub(super) fn node_checks(
    args: &NodeCheckArgs,
    data_dir: &Path,
    in_pod: bool,
) -> Result<NodeChecksConfig, ConfigError> {
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
    let cri_socket = args
        .cri_socket
        .clone()
        .filter(|path| !path.as_os_str().is_empty());
    if args.cri_start_sandbox && cri_socket.is_none() {
        return Err(ConfigError::Invalid {
            flag: "--cri-start-sandbox",
            reason: "needs --cri-socket: the runtime to start the sandbox in".to_owned(),
        });
    }
    let interval = args.node_check_interval;
    Ok(NodeChecksConfig {
        disk_paths,
        disk_marks: marks,
        kubelet_url,
        cri_socket,
        cri_start_sandbox: args.cri_start_sandbox,
        plugins,
        dns: dns_check(args, in_pod, Path::new(RESOLV_CONF))?,
        schedule: Schedule {
            interval,
            // A plugin has its own timeout; the runner's is a backstop.
            timeout: interval.max(args.plugin_timeout + std::time::Duration::from_secs(5)),
            failures_before_critical: args.node_check_failures,
        },
    })
}

const RESOLV_CONF: &str = "/etc/resolv.conf";

fn dns_check(
    args: &NodeCheckArgs,
    in_pod: bool,
    resolv_conf: &Path,
) -> Result<Option<DnsSpec>, ConfigError> {
    let invalid = |flag, reason: String| ConfigError::Invalid { flag, reason };
    let names: Vec<String> = if !args.dns_names.is_empty() {
        args.dns_names.clone()
    } else if in_pod {
        vec![KUBERNETES_SERVICE_NAME.to_owned()]
    } else {
        Vec::new()
    };
    if args.no_dns_check || names.is_empty() {
        return Ok(None);
    }
    for name in &names {
        starling_checks::encode_dns_query(0, name)
            .map_err(|reason| invalid("--dns-name", reason))?;
    }
    let server = match &args.dns_server {
        Some(text) => text
            .parse::<SocketAddr>()
            .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .map_err(|_| invalid("--dns-server", format!("{text:?} is not an IP or IP:port")))?,
        None => {
            let text = std::fs::read_to_string(resolv_conf).map_err(|error| {
                invalid(
                    "--dns-server",
                    format!(
                        "none given, and {} is unreadable: {error}",
                        resolv_conf.display()
                    ),
                )
            })?;
            resolv_conf_server(&text).ok_or_else(|| {
                invalid(
                    "--dns-server",
                    format!(
                        "none given, and {} names no nameserver",
                        resolv_conf.display()
                    ),
                )
            })?
        }
    };
    Ok(Some(DnsSpec {
        server,
        names,
        query_timeout: args.dns_timeout,
    }))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn args(extra: &[&str]) -> NodeCheckArgs {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            node: NodeCheckArgs,
        }
        let argv = std::iter::once("starling").chain(extra.iter().copied());
        Only::try_parse_from(argv).expect("flags parse").node
    }

    #[test]
    fn dns_is_on_in_a_pod_through_the_nodes_resolver_and_off_outside_unless_asked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, "search svc.cluster.local\nnameserver 10.96.0.10\n")
            .expect("write");
        let spec = dns_check(&args(&[]), true, &resolv)
            .expect("valid")
            .expect("on in a pod");
        assert_eq!(spec.server, "10.96.0.10:53".parse().expect("literal"));
        assert_eq!(spec.names, [KUBERNETES_SERVICE_NAME]);
        assert_eq!(dns_check(&args(&[]), false, &resolv).expect("valid"), None);
        assert_eq!(
            dns_check(&args(&["--no-dns-check"]), true, &resolv).expect("valid"),
            None
        );
        let given = args(&[
            "--dns-name",
            "a.example,b.example",
            "--dns-server",
            "127.0.0.1:5353",
        ]);
        let spec = dns_check(&given, false, &resolv)
            .expect("valid")
            .expect("asked for");
        assert_eq!(spec.names, ["a.example", "b.example"]);
        assert_eq!(spec.server, "127.0.0.1:5353".parse().expect("literal"));
    }

    #[test]
    fn dns_mistakes_name_the_flag() {
        let dir = tempfile::tempdir().expect("temp dir");
        let empty = dir.path().join("resolv.conf");
        std::fs::write(&empty, "options ndots:5\n").expect("write");
        let cases = [
            (
                args(&[]),
                "--dns-server: none given, and",
                "names no nameserver",
            ),
            (
                args(&["--dns-server", "dns.local"]),
                "--dns-server",
                "is not an IP",
            ),
            (
                args(&["--dns-name", "a..b", "--dns-server", "1.1.1.1"]),
                "--dns-name",
                "label",
            ),
        ];
        for (args, flag, reason) in cases {
            let error = dns_check(&args, true, &empty)
                .expect_err("refused")
                .to_string();
            assert!(error.starts_with(flag) && error.contains(reason), "{error}");
        }
        let missing = dir.path().join("nope");
        let error = dns_check(&args(&[]), true, &missing)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("unreadable"), "{error}");
    }

    #[test]
    fn starting_a_sandbox_needs_a_runtime_socket() {
        let data = Path::new("/var/lib/starling");
        let error = node_checks(&args(&["--cri-start-sandbox"]), data, false)
            .expect_err("refused")
            .to_string();
        assert!(
            error.starts_with("--cri-start-sandbox") && error.contains("needs --cri-socket"),
            "{error}"
        );
        let config = node_checks(
            &args(&[
                "--cri-start-sandbox",
                "--cri-socket",
                "/run/containerd/containerd.sock",
            ]),
            data,
            false,
        )
        .expect("valid");
        assert!(config.cri_start_sandbox);
    }
}
