//! `deploy/components`: the opt-in pieces an operator adds to the base or
//! an overlay. The node-conditions component grants exactly what
//! docs/operations.md documents, to the agents' account only, switches on
//! a setting the agent knows, and renders onto both agent DaemonSets with
//! the real `kubectl kustomize` where kubectl is installed.

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding, Subject};
use serde_json::Value;

use crate::support::manifests::{self, all_of, deploy, documents_in};
use crate::support::starling;

const SWITCH: &str = "STARLING_KUBE_NODE_CONDITIONS";

#[test]
fn the_node_conditions_component_grants_what_is_documented_and_switches_them_on() {
    let dir = deploy("components/node-conditions");
    let kustomization = &documents_in(&dir.join("kustomization.yaml"))[0];
    assert_eq!(
        kustomization.kind(),
        ("kustomize.config.k8s.io/v1alpha1", "Component")
    );
    let rbac = documents_in(&dir.join("rbac.yaml"));
    let mut granted = Vec::new();
    for role in all_of::<ClusterRole>(&rbac, "ClusterRole") {
        granted.extend(manifests::grants(&role.rules.unwrap_or_default(), ""));
    }
    for role in all_of::<Role>(&rbac, "Role") {
        let namespace = role.metadata.namespace.clone().expect("namespaced");
        granted.extend(manifests::grants(
            &role.rules.unwrap_or_default(),
            &namespace,
        ));
    }
    granted.sort();
    let mut documented = manifests::documented_grants("node-conditions-rbac-table");
    documented.sort();
    assert_eq!(granted, documented, "rbac.yaml vs docs/operations.md");
    let agent = |subjects: Option<Vec<Subject>>| {
        let subjects = subjects.unwrap_or_default();
        subjects.len() == 1
            && subjects[0].name == "starling-agent"
            && subjects[0].namespace.as_deref() == Some("starling")
    };
    assert!(
        all_of::<ClusterRoleBinding>(&rbac, "ClusterRoleBinding")
            .into_iter()
            .all(|b| agent(b.subjects))
    );
    assert!(
        all_of::<RoleBinding>(&rbac, "RoleBinding")
            .into_iter()
            .all(|b| agent(b.subjects))
    );

    // The patch sets the agent's own switch.
    let patch = std::fs::read_to_string(dir.join("agent-env.yaml")).expect("the patch");
    assert!(patch.contains(SWITCH), "{patch}");
    let help = String::from_utf8_lossy(&starling(&["agent", "--help"]).stdout).into_owned();
    assert!(help.contains(SWITCH), "the agent reads {SWITCH}");

    // And kustomize puts it on both agent DaemonSets.
    let Some(documents) = rendered_with("node-conditions") else {
        return;
    };
    let switched: Vec<&str> = documents
        .iter()
        .filter(|d| d["kind"] == "DaemonSet")
        .filter(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .is_some_and(|env| {
                    env.iter()
                        .any(|e| e["name"] == SWITCH && e["value"] == "true")
                })
        })
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        switched,
        ["starling-agent", "starling-agent-control-plane"],
        "the switch on both agent DaemonSets"
    );
}

#[test]
fn the_aggregators_component_renders_a_statefulset_of_aggregators_the_agent_understands() {
    let Some(documents) = rendered_with("aggregators") else {
        return;
    };
    let of_kind =
        |kind: &str| -> Vec<&Value> { documents.iter().filter(|d| d["kind"] == kind).collect() };
    let sets = of_kind("StatefulSet");
    assert_eq!(sets.len(), 1, "one StatefulSet of aggregators");
    let spec = &sets[0]["spec"];
    let pod = &spec["template"]["spec"];
    let env = pod["containers"][0]["env"]
        .as_array()
        .expect("an environment");
    assert!(
        env.iter()
            .any(|e| e["name"] == "STARLING_ROLE" && e["value"] == "aggregator")
    );
    // Every setting it passes is one the agent reads.
    let help = String::from_utf8_lossy(&starling(&["agent", "--help"]).stdout).into_owned();
    for name in env.iter().filter_map(|e| e["name"].as_str()) {
        assert!(help.contains(name), "the agent reads {name}");
    }
    assert!(
        !spec["volumeClaimTemplates"]
            .as_array()
            .expect("a volume per aggregator")
            .is_empty()
    );
    assert!(
        pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            .is_array(),
        "one aggregator per node"
    );
    let labels = &spec["selector"]["matchLabels"];
    let budgets = of_kind("PodDisruptionBudget");
    assert_eq!(budgets.len(), 1);
    assert_eq!(budgets[0]["spec"]["maxUnavailable"], 1);
    assert_eq!(&budgets[0]["spec"]["selector"]["matchLabels"], labels);
}

/// The base with `component`, rendered by the real `kubectl kustomize` as
/// operations.md shows it: a kustomization of the operator's own, next to
/// a copy of starling (kustomize takes relative paths only). `None`,
/// having said so, where kubectl is not installed.
fn rendered_with(component: &str) -> Option<Vec<Value>> {
    let kubectl = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output();
    if !kubectl.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: kubectl is not installed; the component's rendering is untested here");
        return None;
    }
    let work = tempfile::tempdir().expect("a temporary directory");
    let mine = work.path().join("mine");
    std::fs::create_dir(&mine).expect("a kustomization directory");
    std::os::unix::fs::symlink(manifests::repository(), work.path().join("starling"))
        .expect("links starling");
    std::fs::write(
        mine.join("kustomization.yaml"),
        format!(
            "resources: [../starling/deploy/base]\n\
             components: [../starling/deploy/components/{component}]\n"
        ),
    )
    .expect("writes the kustomization");
    let rendered = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(&mine)
        .output()
        .expect("kubectl runs");
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    Some(serde_saphyr::from_multiple(&String::from_utf8_lossy(&rendered.stdout)).expect("YAML"))
}
