//! The fake cluster's canned objects and texts, shaped like a kubeadm v1.34 cluster's so
//! that code tested against them meets the same fields in production.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Namespace, NamespaceSpec, NamespaceStatus, Node, NodeAddress, NodeCondition, NodeStatus,
    NodeSystemInfo, PodCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::version::Info;

use super::state::now;

/// The version the fake claims, matching the workspace's k8s-openapi feature `v1_34`.
pub(super) const GIT_VERSION: &str = "v1.34.0";
/// The sub-checks of `/readyz?verbose`, in the order kube-apiserver lists them (abridged:
/// the real list has some forty `poststarthook/...` entries).
const READYZ_CHECKS: [&str; 6] = [
    "ping",
    "log",
    "etcd",
    "informer-sync",
    "poststarthook/start-apiextensions-controllers",
    "shutdown",
];

/// A namespace as the API server stores it: spec finalizer `kubernetes`, phase `Active`.
pub(super) fn active_namespace(mut meta: ObjectMeta) -> Namespace {
    let name = meta.name.clone().unwrap_or_default();
    // Real namespaces carry this label since 1.21; selectors on it are common.
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert("kubernetes.io/metadata.name".to_owned(), name);
    Namespace {
        metadata: meta,
        spec: Some(NamespaceSpec {
            finalizers: Some(vec!["kubernetes".to_owned()]),
        }),
        status: Some(NamespaceStatus {
            phase: Some("Active".to_owned()),
            ..NamespaceStatus::default()
        }),
    }
}

/// A node whose kubelet reports `Ready=True`, on loopback.
pub(super) fn ready_node(mut meta: ObjectMeta) -> Node {
    let name = meta.name.clone().unwrap_or_default();
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert("kubernetes.io/hostname".to_owned(), name.clone());
    labels.insert("kubernetes.io/os".to_owned(), "linux".to_owned());
    let now = Time(now());
    Node {
        metadata: meta,
        spec: None,
        status: Some(NodeStatus {
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".to_owned(),
                    address: "127.0.0.1".to_owned(),
                },
                NodeAddress {
                    type_: "Hostname".to_owned(),
                    address: name,
                },
            ]),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".to_owned(),
                status: "True".to_owned(),
                reason: Some("KubeletReady".to_owned()),
                message: Some("kubelet is posting ready status".to_owned()),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: Some(now),
            }]),
            node_info: Some(NodeSystemInfo {
                architecture: "amd64".to_owned(),
                kubelet_version: GIT_VERSION.to_owned(),
                operating_system: "linux".to_owned(),
                os_image: "starling fake node".to_owned(),
                container_runtime_version: "containerd://2.0.0".to_owned(),
                ..NodeSystemInfo::default()
            }),
            ..NodeStatus::default()
        }),
    }
}

/// A pod condition of `type_` that changed now.
pub(super) fn pod_condition(
    type_: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<&str>,
) -> PodCondition {
    PodCondition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.map(str::to_owned),
        message: message.map(str::to_owned),
        last_transition_time: Some(Time(now())),
        ..PodCondition::default()
    }
}

/// What `GET /version` answers.
pub(super) fn version_info() -> Info {
    Info {
        major: "1".to_owned(),
        minor: "34".to_owned(),
        git_version: GIT_VERSION.to_owned(),
        git_commit: "0000000000000000000000000000000000000000".to_owned(),
        git_tree_state: "clean".to_owned(),
        build_date: "2025-08-27T00:00:00Z".to_owned(),
        go_version: "go1.24.6".to_owned(),
        compiler: "gc".to_owned(),
        platform: "linux/amd64".to_owned(),
        emulation_major: Some("1".to_owned()),
        emulation_minor: Some("34".to_owned()),
        min_compatibility_major: Some("1".to_owned()),
        min_compatibility_minor: Some("33".to_owned()),
    }
}

/// The body of `/readyz`, and whether it passed. Like kube-apiserver: a passing plain
/// `/readyz` says just `ok`; `?verbose`, and any failure, list every sub-check. A failing
/// name that is not one of the listed checks is added at the end of the list.
pub(super) fn readyz(verbose: bool, failing: Option<&str>) -> (bool, String) {
    if failing.is_none() && !verbose {
        return (true, "ok".to_owned());
    }
    let mut names: Vec<&str> = READYZ_CHECKS.to_vec();
    if let Some(failing) = failing.filter(|f| !names.contains(f)) {
        names.push(failing);
    }
    let mut body = String::new();
    for name in names {
        if Some(name) == failing {
            body.push_str(&format!("[-]{name} failed: reason withheld\n"));
        } else {
            body.push_str(&format!("[+]{name} ok\n"));
        }
    }
    let passed = failing.is_none();
    body.push_str(if passed {
        "readyz check passed\n"
    } else {
        "readyz check failed\n"
    });
    (passed, body)
}

/// A kubeconfig for `url` with one cluster, one user with a static bearer token and one
/// current context. Written as JSON, which every kubeconfig reader (YAML) accepts, so no
/// quoting rules can break it.
pub(super) fn kubeconfig(url: &str, token: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "fake", "cluster": { "server": url } }],
        "users": [{ "name": "fake-admin", "user": { "token": token } }],
        "contexts": [{
            "name": "fake",
            "context": { "cluster": "fake", "user": "fake-admin", "namespace": "default" }
        }],
        "current-context": "fake",
        "preferences": {}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_lists_checks_like_the_real_server() {
        assert_eq!(readyz(false, None), (true, "ok".to_owned()));
        let (passed, body) = readyz(true, None);
        assert!(passed);
        assert!(
            body.starts_with("[+]ping ok\n[+]log ok\n[+]etcd ok\n"),
            "{body}"
        );
        assert!(
            body.ends_with("[+]shutdown ok\nreadyz check passed\n"),
            "{body}"
        );

        let (passed, body) = readyz(false, Some("etcd"));
        assert!(!passed);
        assert!(
            body.contains("[+]log ok\n[-]etcd failed: reason withheld\n"),
            "{body}"
        );
        assert!(body.ends_with("readyz check failed\n"), "{body}");

        let (_, body) = readyz(true, Some("poststarthook/rbac/bootstrap-roles"));
        assert!(
            body.contains("[+]shutdown ok\n[-]poststarthook/rbac/bootstrap-roles failed"),
            "{body}"
        );
    }
}
