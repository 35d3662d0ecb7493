//! The manifests in `deploy/` against the agent itself: every document
//! decodes strictly into its Kubernetes type; the DaemonSets run where and
//! as a node agent must; every flag and environment variable is accepted
//! by the agent's own parser and settings; the RBAC is exactly what
//! docs/operations.md documents; every metric the rules and the dashboard
//! use exists in a running agent's `/metrics`; the Dockerfile has the
//! documented shape. (That the metrics the rules and the dashboard use
//! exist is shown against running agents in `metrics_exposition.rs`.)

use std::collections::{BTreeMap, BTreeSet};

use clap::{ArgAction, CommandFactory, Parser};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Container, Namespace, PodSpec, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::support::manifests;
use manifests::{
    Document, PodMonitor, PrometheusRule, all_of, deploy, environment, referenced, render,
};
use starling::cli::{Cli, Command};
use starling_gossip::Role as NodeRole;

use starling_seal::Keyring;

const AGENT_DAEMONSETS: [&str; 2] = ["starling-agent", "starling-agent-control-plane"];
const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";

fn base() -> Vec<Document> {
    render(&deploy("base"))
}

fn prometheus_overlay() -> Vec<Document> {
    render(&deploy("overlays/prometheus"))
}

fn daemonset(documents: &[Document], name: &str) -> DaemonSet {
    all_of::<DaemonSet>(documents, "DaemonSet")
        .into_iter()
        .find(|d| d.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no DaemonSet {name}"))
}

fn pod(daemonset: &DaemonSet) -> PodSpec {
    daemonset
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("a DaemonSet has a pod spec")
}

fn only_container(pod: &PodSpec) -> Container {
    assert_eq!(pod.containers.len(), 1);
    pod.containers[0].clone()
}

/// The default of `--long` of `starling SUBCOMMAND`, as clap has it.
fn default_of(subcommand: &str, long: &str) -> String {
    let command = Cli::command();
    let sub = command
        .find_subcommand(subcommand)
        .expect("the subcommand exists");
    let arg = sub
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .unwrap_or_else(|| panic!("no --{long}"));
    arg.get_default_values()[0]
        .to_str()
        .expect("UTF-8 default")
        .to_owned()
}

fn port_of(address: &str) -> i32 {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .expect("host:port")
}

#[test]
fn every_document_decodes_strictly_into_its_type() {
    let mut kinds = BTreeSet::new();
    for document in base().iter().chain(&prometheus_overlay()) {
        let (api_version, kind) = document.kind();
        match (api_version, kind) {
            ("v1", "Namespace") => drop(document.strict::<Namespace>()),
            ("v1", "ServiceAccount") => drop(document.strict::<ServiceAccount>()),
            ("v1", "Service") => drop(document.strict::<Service>()),
            ("apps/v1", "DaemonSet") => drop(document.strict::<DaemonSet>()),
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
                drop(document.strict::<ClusterRole>())
            }
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                drop(document.strict::<ClusterRoleBinding>())
            }
            ("rbac.authorization.k8s.io/v1", "Role") => drop(document.strict::<Role>()),
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
                drop(document.strict::<RoleBinding>())
            }
            ("monitoring.coreos.com/v1", "PodMonitor") => drop(document.strict::<PodMonitor>()),
            ("monitoring.coreos.com/v1", "PrometheusRule") => {
                drop(document.strict::<PrometheusRule>())
            }
            other => panic!("{}: no type known for {other:?}", document.file),
        }
        // Kustomize's `namespace:` is deliberately unused: each namespaced
        // object names its own.
        let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"];
        assert_eq!(
            document.value["metadata"]["namespace"].is_string(),
            !cluster_scoped.contains(&kind),
            "{}: {kind} {}",
            document.file,
            document.name()
        );
        kinds.insert(kind.to_owned());
    }
    assert_eq!(
        kinds.len(),
        10,
        "every kind the deployment needs: {kinds:?}"
    );
}

#[test]
fn the_agents_run_on_every_node_on_its_network_with_probes_and_no_cpu_limit() {
    let documents = base();
    let gossip_port = port_of(&default_of("agent", "gossip-bind"));
    let api_port = port_of(&default_of("agent", "api-bind"));
    for name in AGENT_DAEMONSETS {
        let pod = pod(&daemonset(&documents, name));
        assert_eq!(pod.host_network, Some(true), "{name}");
        assert_eq!(
            pod.dns_policy.as_deref(),
            Some("ClusterFirstWithHostNet"),
            "{name}"
        );
        assert_eq!(
            pod.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        assert_eq!(pod.service_account_name.as_deref(), Some("starling-agent"));
        // Every taint tolerated, control-plane ones included.
        assert!(
            pod.tolerations.iter().flatten().any(|t| t.key.is_none()
                && t.operator.as_deref() == Some("Exists")
                && t.effect.is_none()),
            "{name} tolerates every taint"
        );
        let grace = pod.termination_grace_period_seconds.expect("set");
        let probe_timeout = humantime::parse_duration(&default_of("agent", "probe-timeout"))
            .expect("a duration")
            .as_secs() as i64;
        assert!(
            grace > probe_timeout + 5,
            "{name}: a check in flight can finish"
        );

        let container = only_container(&pod);
        let ports: BTreeMap<String, (i32, String)> = container
            .ports
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.name.clone().expect("named ports"),
                    (p.container_port, p.protocol.clone().expect("protocol")),
                )
            })
            .collect();
        assert_eq!(ports["gossip-udp"], (gossip_port, "UDP".to_owned()));
        assert_eq!(ports["gossip-tcp"], (gossip_port, "TCP".to_owned()));
        assert_eq!(ports["http"], (api_port, "TCP".to_owned()));
        for (probe, path) in [
            (&container.liveness_probe, "/livez"),
            (&container.readiness_probe, "/readyz"),
        ] {
            let get = probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .unwrap_or_else(|| panic!("{name}: an HTTP probe on {path}"));
            assert_eq!(get.path.as_deref(), Some(path));
            assert_eq!(get.port, IntOrString::String("http".to_owned()));
        }
        let resources = container.resources.as_ref().expect("resources");
        assert!(
            resources
                .requests
                .as_ref()
                .is_some_and(|r| r.contains_key("cpu") && r.contains_key("memory"))
        );
        assert!(
            !resources
                .limits
                .as_ref()
                .is_some_and(|l| l.contains_key("cpu")),
            "{name}: no CPU limit, so gossip acks are not throttled"
        );
        let security = container.security_context.as_ref().expect("set");
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(
            security.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_owned()])
        );

        // The data dir is the hostPath, the key file is in the Secret.
        let env: BTreeMap<String, String> = environment(&container).into_iter().collect();
        let mounted = |volume: &str| -> String {
            container
                .volume_mounts
                .iter()
                .flatten()
                .find(|m| m.name == volume)
                .map(|m| m.mount_path.clone())
                .unwrap_or_else(|| panic!("{name}: {volume} mounted"))
        };
        let volumes = pod.volumes.clone().unwrap_or_default();
        let volume = |name: &str| volumes.iter().find(|v| v.name == name).cloned();
        assert_eq!(mounted("data"), env["STARLING_DATA_DIR"]);
        let host_path = volume("data").and_then(|v| v.host_path).expect("hostPath");
        assert_eq!(host_path.path, env["STARLING_DATA_DIR"]);
        assert!(
            env["STARLING_GOSSIP_KEY_FILE"].starts_with(&format!("{}/", mounted("gossip-key")))
        );
        let secret = volume("gossip-key")
            .and_then(|v| v.secret)
            .expect("a Secret");
        assert_eq!(secret.secret_name.as_deref(), Some("starling-gossip-key"));
        assert_eq!(env["NODE_NAME"], manifests::NODE_NAME);
        assert_eq!(env["HOST_IP"], manifests::HOST_IP);
    }

    // Together the two cover every node, and no node twice.
    let workers = pod(&daemonset(&documents, "starling-agent"));
    let terms = workers
        .affinity
        .and_then(|a| a.node_affinity)
        .and_then(|n| n.required_during_scheduling_ignored_during_execution)
        .expect("workers keep off control-plane nodes")
        .node_selector_terms;
    let excluded: Vec<_> = terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .map(|e| (e.key.as_str(), e.operator.as_str()))
        .collect();
    assert_eq!(excluded, [(CONTROL_PLANE_LABEL, "DoesNotExist")]);
    let control_plane = pod(&daemonset(&documents, "starling-agent-control-plane"));
    assert!(
        control_plane
            .node_selector
            .is_some_and(|s| s.contains_key(CONTROL_PLANE_LABEL))
    );
}

#[test]
fn the_probe_runs_on_the_pod_network_as_non_root_and_reports_to_its_node() {
    let documents = base();
    let pod = pod(&daemonset(&documents, "starling-probe"));
    assert_ne!(pod.host_network, Some(true));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let security = pod.security_context.as_ref().expect("set");
    assert_eq!(security.run_as_non_root, Some(true));
    assert!(security.run_as_user.is_some_and(|uid| uid != 0));
    let container = only_container(&pod);
    let echo = container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("echo"))
        .expect("the echo port");
    assert_eq!(
        (echo.container_port, echo.protocol.as_deref()),
        (port_of(&default_of("probe", "listen")), Some("UDP"))
    );
    let env: BTreeMap<String, String> = environment(&container).into_iter().collect();
    assert_eq!(env["POD_IP"], manifests::POD_IP);
    assert_eq!(
        env["STARLING_AGENT_URL"],
        format!(
            "http://{}:{}",
            manifests::HOST_IP,
            port_of(&default_of("agent", "api-bind"))
        )
    );
}

/// `starling ARGS` as the container would run it: the image's entrypoint
/// is the binary, `args` the subcommand, and each environment variable
/// becomes the flag that reads it. A variable no flag reads fails, unless
/// another variable's value uses it. The key file is swapped for a real
/// one, and the pod's `KUBERNETES_SERVICE_HOST` added.
fn command_line(container: &Container, key_file: &str) -> Vec<String> {
    let subcommand = container.args.clone().expect("args name the subcommand");
    assert!(
        container.command.is_none(),
        "the image's entrypoint is used"
    );
    let cli = Cli::command();
    let sub = cli
        .find_subcommand(&subcommand[0])
        .expect("a starling subcommand");
    let mut argv: Vec<String> = std::iter::once("starling".to_owned())
        .chain(subcommand.iter().cloned())
        .collect();
    for (name, value) in environment(container) {
        let Some(arg) = sub
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == name.as_str()))
        else {
            assert!(
                referenced(container, &name),
                "{name}: no flag of `starling {}` reads it",
                subcommand[0]
            );
            continue;
        };
        let long = arg.get_long().expect("env flags have long names");
        let value = if name == "STARLING_GOSSIP_KEY_FILE" {
            key_file.to_owned()
        } else {
            value
        };
        match arg.get_action() {
            ArgAction::SetTrue => {
                if value == "true" {
                    argv.push(format!("--{long}"));
                }
            }
            _ => {
                // Comma-separated lists, as clap splits the variable.
                match arg.get_value_delimiter() {
                    Some(delimiter) => argv.extend(
                        value
                            .split(delimiter)
                            .map(|item| format!("--{long}={item}")),
                    ),
                    None => argv.push(format!("--{long}={value}")),
                }
            }
        }
    }
    if subcommand[0] == "agent" {
        argv.push("--kubernetes-service-host=10.96.0.1".to_owned());
    }
    argv
}

#[test]
fn every_flag_and_variable_in_the_manifests_is_accepted_by_the_agent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("gossip.key");
    std::fs::write(&key_file, Keyring::generate_key()).expect("write a key");
    let key_file = key_file.to_str().expect("UTF-8").to_owned();
    let documents = base();
    for name in AGENT_DAEMONSETS {
        let container = only_container(&pod(&daemonset(&documents, name)));
        let argv = command_line(&container, &key_file);
        let Command::Agent(args) = Cli::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("{name}: {argv:?}\n{e}"))
            .command
        else {
            panic!("{name}: not `starling agent`");
        };
        let settings =
            starling::settings::agent(&args).unwrap_or_else(|e| panic!("{name}: {argv:?}: {e}"));
        assert_eq!(settings.node_name, manifests::NODE_NAME);
        assert_eq!(settings.advertise_ip.to_string(), manifests::HOST_IP);
        assert!(
            settings.kube.is_some(),
            "{name}: the API checks run in a pod"
        );
        assert!(settings.node.dns.is_some(), "{name}: and the DNS check");
        let control_plane = name.ends_with("control-plane");
        assert_eq!(settings.etcd.is_some(), control_plane, "{name}: etcd");
        let role = if control_plane {
            NodeRole::ControlPlane
        } else {
            NodeRole::Worker
        };
        assert_eq!(settings.role, role, "{name}");
    }
    let container = only_container(&pod(&daemonset(&documents, "starling-probe")));
    let argv = command_line(&container, &key_file);
    let Command::Probe(args) = Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("probe: {argv:?}\n{e}"))
        .command
    else {
        panic!("not `starling probe`");
    };
    let flags = starling::settings::probe(&args).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert_eq!(flags.ip.to_string(), manifests::POD_IP);
    assert_eq!(flags.node, manifests::NODE_NAME);
}

#[test]
fn the_rbac_is_exactly_the_documented_verbs_bound_to_the_agents_account() {
    let documents = base();
    let mut granted = Vec::new();
    for role in all_of::<ClusterRole>(&documents, "ClusterRole") {
        granted.extend(manifests::grants(&role.rules.unwrap_or_default(), ""));
    }
    for role in all_of::<Role>(&documents, "Role") {
        let namespace = role.metadata.namespace.clone().expect("namespaced");
        granted.extend(manifests::grants(
            &role.rules.unwrap_or_default(),
            &namespace,
        ));
    }
    granted.sort();
    let mut documented = manifests::documented_grants("rbac-table");
    documented.sort();
    assert_eq!(
        granted, documented,
        "deploy/base/rbac.yaml vs docs/operations.md"
    );
    assert!(
        granted.iter().all(|g| g
            .3
            .iter()
            .all(|verb| ["get", "list", "create", "delete"].contains(&verb.as_str()))),
        "no watch, patch, update or wildcard: {granted:?}"
    );

    let account = |subjects: Option<Vec<k8s_openapi::api::rbac::v1::Subject>>| {
        let subjects = subjects.unwrap_or_default();
        assert_eq!(subjects.len(), 1);
        (subjects[0].name.clone(), subjects[0].namespace.clone())
    };
    let agent = ("starling-agent".to_owned(), Some("starling".to_owned()));
    let roles: BTreeSet<String> = documents
        .iter()
        .filter(|d| matches!(d.kind().1, "Role" | "ClusterRole"))
        .map(|d| d.name().to_owned())
        .collect();
    let mut bound = BTreeSet::new();
    for binding in all_of::<RoleBinding>(&documents, "RoleBinding") {
        assert_eq!(account(binding.subjects), agent);
        bound.insert(binding.role_ref.name);
    }
    for binding in all_of::<ClusterRoleBinding>(&documents, "ClusterRoleBinding") {
        assert_eq!(account(binding.subjects), agent);
        bound.insert(binding.role_ref.name);
    }
    assert_eq!(bound, roles, "every role bound, to the agents only");
}

#[test]
fn the_services_find_the_agents_and_the_seed_name_is_the_headless_one() {
    let documents = base();
    let services: BTreeMap<String, Service> = all_of::<Service>(&documents, "Service")
        .into_iter()
        .map(|s| (s.metadata.name.clone().expect("named"), s))
        .collect();
    let labels = daemonset(&documents, "starling-agent")
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.labels)
        .expect("pod labels");
    for service in services.values() {
        let selector = service.spec.as_ref().and_then(|s| s.selector.clone());
        assert!(
            selector
                .expect("a selector")
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v)),
            "selects the agents"
        );
    }
    let gossip = services["starling-gossip"].spec.clone().expect("spec");
    assert_eq!(gossip.cluster_ip.as_deref(), Some("None"));
    assert_eq!(
        gossip.publish_not_ready_addresses,
        Some(true),
        "an agent is ready only after joining: a fresh cluster must see every address"
    );
    let container = only_container(&pod(&daemonset(&documents, "starling-agent")));
    let env: BTreeMap<String, String> = environment(&container).into_iter().collect();
    let gossip_port = port_of(&default_of("agent", "gossip-bind"));
    assert_eq!(
        env["STARLING_JOIN_DNS"],
        format!("starling-gossip.starling.svc:{gossip_port}")
    );
    assert!(gossip.ports.iter().flatten().all(|p| p.port == gossip_port));
    let http = services["starling"].spec.clone().expect("spec");
    assert_eq!(
        http.ports.expect("ports")[0].port,
        port_of(&default_of("agent", "api-bind"))
    );
}

#[test]
fn the_image_is_multi_stage_distroless_non_root_and_tagged_with_the_version() {
    let path = manifests::repository().join("Dockerfile");
    let dockerfile = std::fs::read_to_string(&path).expect("Dockerfile");
    let instructions: Vec<(&str, &str)> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .collect();
    let from: Vec<&str> = instructions
        .iter()
        .filter(|(op, _)| *op == "FROM")
        .map(|(_, arg)| *arg)
        .collect();
    assert!(from.len() >= 2, "multi-stage: {from:?}");
    assert!(from.last().is_some_and(|base| base.contains("distroless")));
    let user = instructions
        .iter()
        .rev()
        .find(|(op, _)| *op == "USER")
        .expect("a USER")
        .1;
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "{user}"
    );
    let entrypoint = instructions
        .iter()
        .find(|(op, _)| *op == "ENTRYPOINT")
        .expect("an ENTRYPOINT")
        .1;
    assert_eq!(entrypoint, r#"["/usr/local/bin/starling"]"#);
    assert!(dockerfile.contains("cargo build --release --locked"));
    // Only the binary's crate: the benchmarks (starling-bench) stay out.
    assert!(
        dockerfile.contains("-p starling --bin starling"),
        "{dockerfile}"
    );
    assert!(!dockerfile.contains("starling-bench"), "{dockerfile}");

    let image = format!("starling:{}", env!("CARGO_PKG_VERSION"));
    for document in base() {
        if document.kind().1 == "DaemonSet" {
            let set: DaemonSet = document.strict();
            assert_eq!(
                only_container(&pod(&set)).image.as_deref(),
                Some(image.as_str())
            );
        }
    }
}
