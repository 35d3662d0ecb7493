//! Reading `deploy/`: the files a kustomization lists (recursively), each
//! YAML document as JSON, decoded strictly into its Kubernetes type; and
//! the kubelet's view of a container's environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, EnvVar};
use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the downward API gives a pod in these tests.
pub const NODE_NAME: &str = "node-1";
pub const HOST_IP: &str = "10.0.0.5";
pub const POD_IP: &str = "10.244.1.7";

pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the binary's crate sits in crates/ of the workspace")
        .to_owned()
}

pub fn deploy(path: &str) -> PathBuf {
    repository().join("deploy").join(path)
}

/// One YAML document of a manifest file.
#[derive(Clone, Debug)]
pub struct Document {
    pub file: String,
    pub value: Value,
}

impl Document {
    pub fn kind(&self) -> (&str, &str) {
        let field = |name: &str| self.value[name].as_str().unwrap_or_default();
        (field("apiVersion"), field("kind"))
    }

    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// Decoded into `T`, and nothing lost on the way: encoding it again
    /// gives the document back, so a misspelled or unknown field (which
    /// serde would skip) fails here as it would in `kubectl apply
    /// --validate=strict`.
    pub fn strict<T: DeserializeOwned + Serialize>(&self) -> T {
        let typed: T = serde_json::from_value(self.value.clone())
            .unwrap_or_else(|e| panic!("{} ({}): {e}", self.file, self.name()));
        let again = serde_json::to_value(&typed).expect("a decoded object encodes");
        assert_eq!(
            again,
            self.value,
            "{} ({}): fields were lost decoding it: unknown or misspelled",
            self.file,
            self.name()
        );
        typed
    }
}

/// `kustomization.yaml`: the fields the manifests use, and no others.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(
    dead_code,
    reason = "decoded to refuse unknown fields; not all are read"
)]
struct Kustomization {
    api_version: String,
    kind: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    labels: Vec<Value>,
    #[serde(default)]
    config_map_generator: Vec<Generator>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "decoded to refuse unknown fields; not all are read"
)]
struct Generator {
    name: String,
    namespace: String,
    files: Vec<String>,
    options: Value,
}

/// Every document of every file the kustomization in `dir` lists,
/// following directories that are kustomizations themselves. Generated
/// ConfigMaps are not rendered; their files must exist.
pub fn render(dir: &Path) -> Vec<Document> {
    let path = dir.join("kustomization.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let kustomization: Kustomization =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        (
            kustomization.api_version.as_str(),
            kustomization.kind.as_str()
        ),
        ("kustomize.config.k8s.io/v1beta1", "Kustomization")
    );
    for generator in &kustomization.config_map_generator {
        for file in &generator.files {
            assert!(
                dir.join(file).is_file(),
                "{}: {} lists missing {file}",
                path.display(),
                generator.name
            );
        }
    }
    let mut documents = Vec::new();
    for resource in &kustomization.resources {
        let target = dir.join(resource);
        if target.is_dir() {
            documents.extend(render(&target));
            continue;
        }
        assert!(
            target.is_file(),
            "{} lists {resource}, which is missing",
            path.display()
        );
        documents.extend(documents_in(&target));
    }
    documents
}

/// Every document of one YAML file.
pub fn documents_in(target: &Path) -> Vec<Document> {
    let text =
        std::fs::read_to_string(target).unwrap_or_else(|e| panic!("{}: {e}", target.display()));
    let values: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", target.display()));
    let file = target
        .strip_prefix(repository())
        .unwrap_or(target)
        .display()
        .to_string();
    values
        .into_iter()
        .filter(|v| !v.is_null())
        .map(|value| Document {
            file: file.clone(),
            value,
        })
        .collect()
}

/// The Prometheus operator's `PodMonitor`, as far as the manifests use it.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodMonitor {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: PodMonitorSpec,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodMonitorSpec {
    pub selector: LabelSelector,
    pub pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PodMetricsEndpoint {
    pub port: String,
    pub path: String,
    pub interval: String,
}

/// The Prometheus operator's `PrometheusRule`, alerting rules only.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrometheusRule {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: RuleSpec,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub groups: Vec<RuleGroup>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleGroup {
    pub name: String,
    pub rules: Vec<AlertRule>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub alert: String,
    pub expr: String,
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A container's environment as the kubelet hands it over: the downward
/// API filled in with the values above, `$(NAME)` expanded from earlier
/// variables.
pub fn environment(container: &Container) -> Vec<(String, String)> {
    let mut resolved: Vec<(String, String)> = Vec::new();
    for EnvVar {
        name,
        value,
        value_from,
    } in container.env.iter().flatten()
    {
        let value = match (value, value_from) {
            (Some(value), None) => expand(value, &resolved),
            (None, Some(from)) => {
                let field = from
                    .field_ref
                    .as_ref()
                    .unwrap_or_else(|| panic!("{name}: only the downward API is used"));
                match field.field_path.as_str() {
                    "spec.nodeName" => NODE_NAME.to_owned(),
                    "status.hostIP" => HOST_IP.to_owned(),
                    "status.podIP" => POD_IP.to_owned(),
                    other => panic!("{name}: unexpected field {other}"),
                }
            }
            _ => panic!("{name}: needs exactly one of value and valueFrom"),
        };
        resolved.push((name.clone(), value));
    }
    resolved
}

fn expand(value: &str, earlier: &[(String, String)]) -> String {
    let mut out = value.to_owned();
    for (name, value) in earlier {
        out = out.replace(&format!("$({name})"), value);
    }
    assert!(
        !out.contains("$("),
        "{value}: refers to an undefined variable"
    );
    out
}

/// Whether some variable's value refers to `name` by `$(name)`.
pub fn referenced(container: &Container, name: &str) -> bool {
    container
        .env
        .iter()
        .flatten()
        .filter_map(|e| e.value.as_deref())
        .any(|v| v.contains(&format!("$({name})")))
}

/// Every `starling_…` name the PrometheusRule and the Grafana dashboard of
/// the Prometheus overlay use.
pub fn metrics_used() -> std::collections::BTreeSet<String> {
    let mut used = std::collections::BTreeSet::new();
    for document in render(&deploy("overlays/prometheus")) {
        if document.kind().1 == "PrometheusRule" {
            let rule: PrometheusRule = document.strict();
            for group in rule.spec.groups {
                for alert in group.rules {
                    used.extend(metric_names(&alert.expr));
                }
            }
        }
    }
    let path = deploy("overlays/prometheus/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read"))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            used.extend(metric_names(target["expr"].as_str().expect("expr")));
        }
    }
    used
}

/// Every metric name `docs/reference.md`'s metrics table lists (its first
/// column), as the classic format names samples (`_total` for counters).
pub fn metrics_documented() -> std::collections::BTreeSet<String> {
    let path = repository().join("docs/reference.md");
    let reference = std::fs::read_to_string(&path).expect("docs/reference.md");
    let section = reference
        .split("#### Metrics")
        .nth(1)
        .and_then(|rest| rest.split("\n#### ").next())
        .expect("reference.md has a metrics section");
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `starling_"))
        .flat_map(|line| {
            let first_cell = line.split(" |").next().unwrap_or_default();
            metric_names(&format!("`starling_{first_cell}"))
        })
        .collect()
}

/// `starling_…` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("starling_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// One RBAC grant: (API group, resource, names, verbs, namespace or "").
pub type Grant = (String, String, Vec<String>, Vec<String>, String);

/// The grants of a role's rules, names and verbs sorted.
pub fn grants(rules: &[PolicyRule], namespace: &str) -> Vec<Grant> {
    let mut out = Vec::new();
    for rule in rules {
        assert!(rule.non_resource_urls.is_none());
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                let mut names = rule.resource_names.clone().unwrap_or_default();
                let mut verbs = rule.verbs.clone();
                names.sort();
                verbs.sort();
                out.push((
                    group.clone(),
                    resource.clone(),
                    names,
                    verbs,
                    namespace.to_owned(),
                ));
            }
        }
    }
    out
}

/// The table between the `<!-- MARKER -->` markers of docs/operations.md.
pub fn documented_grants(marker: &str) -> Vec<Grant> {
    let path = repository().join("docs/operations.md");
    let text = std::fs::read_to_string(&path).expect("docs/operations.md");
    let table = text
        .split_once(&format!("<!-- {marker} -->"))
        .and_then(|(_, rest)| rest.split_once(&format!("<!-- /{marker} -->")))
        .unwrap_or_else(|| panic!("the {marker} markers"))
        .0;
    let list = |cell: &str| -> Vec<String> {
        let mut items: Vec<String> = cell
            .split(',')
            .map(|s| s.trim().trim_matches('`').to_owned())
            .filter(|s| !s.is_empty() && !s.starts_with('('))
            .collect();
        items.sort();
        items
    };
    table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let group = cells[0].trim_matches('`').trim_matches('"').to_owned();
            let namespace = match cells[4] {
                "(cluster)" => String::new(),
                ns => ns.trim_matches('`').to_owned(),
            };
            (
                group,
                cells[1].trim_matches('`').to_owned(),
                list(cells[2]),
                list(cells[3]),
                namespace,
            )
        })
        .collect()
}

/// Every document of `kind`, decoded strictly into `T`.
pub fn all_of<T>(documents: &[Document], kind: &str) -> Vec<T>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    documents
        .iter()
        .filter(|d| d.kind().1 == kind)
        .map(Document::strict)
        .collect()
}
