//! Pods: create (with `generateName`), get, list by selector, delete, and the fixture's
//! direct insertion of a pod left over from an "earlier run".

use std::time::Instant;

use k8s_openapi::List;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, Time};

use super::error::ApiError;
use super::selector::Selector;
use super::state::{State, StoredPod, name_suffix, new_uid, now};

/// How often a `generateName` suffix is redrawn when it clashes; with 27^5 suffixes a
/// second draw is already rare.
const NAME_ATTEMPTS: usize = 8;

/// `POST /api/v1/namespaces/{namespace}/pods`: stores the pod as `Pending` and returns it.
pub(super) fn create(state: &mut State, namespace: &str, body: &[u8]) -> Result<Pod, ApiError> {
    if !state.namespaces.contains_key(namespace) {
        return Err(ApiError::NotFound {
            resource: "namespaces",
            name: namespace.to_owned(),
        });
    }
    let mut pod: Pod = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not a Pod: {e}")))?;
    if pod
        .metadata
        .namespace
        .as_deref()
        .is_some_and(|ns| ns != namespace)
    {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the \
             request"
                .to_owned(),
        ));
    }
    // The real server refuses a pod without containers; so must the fake, or a check that
    // forgot them would pass here and fail in production.
    if pod
        .spec
        .as_ref()
        .is_none_or(|spec| spec.containers.is_empty())
    {
        return Err(ApiError::Invalid(
            "Pod is invalid: spec.containers: Required value".to_owned(),
        ));
    }
    let name = choose_name(state, namespace, &pod)?;
    let key = (namespace.to_owned(), name.clone());
    if state.pods.contains_key(&key) {
        return Err(ApiError::AlreadyExists {
            resource: "pods",
            name,
        });
    }
    pod.metadata.name = Some(name);
    pod.metadata = state.new_meta(pod.metadata, Some(namespace));
    // Whatever status the client sent is ignored, as by the real server.
    pod.status = Some(PodStatus {
        phase: Some("Pending".to_owned()),
        qos_class: Some("BestEffort".to_owned()),
        ..PodStatus::default()
    });
    store(state, key, pod.clone());
    Ok(pod)
}

/// The name a new pod gets: its own, or `generateName` plus a suffix no pod has.
fn choose_name(state: &State, namespace: &str, pod: &Pod) -> Result<String, ApiError> {
    if let Some(name) = pod.metadata.name.as_deref().filter(|n| !n.is_empty()) {
        return Ok(name.to_owned());
    }
    let Some(prefix) = pod
        .metadata
        .generate_name
        .as_deref()
        .filter(|p| !p.is_empty())
    else {
        return Err(ApiError::Invalid(
            "Pod is invalid: metadata.name: Required value: name or generateName is required"
                .to_owned(),
        ));
    };
    let candidate = || format!("{prefix}{}", name_suffix());
    let mut name = candidate();
    for _ in 1..NAME_ATTEMPTS {
        if !state
            .pods
            .contains_key(&(namespace.to_owned(), name.clone()))
        {
            break;
        }
        name = candidate();
    }
    // After NAME_ATTEMPTS clashes the caller's AlreadyExists is what the real server says.
    Ok(name)
}

fn store(state: &mut State, key: (String, String), pod: Pod) {
    let stored = StoredPod {
        pod,
        created: Instant::now(),
        bound: None,
    };
    state.pods.insert(key, stored);
}

/// `GET /api/v1/namespaces/{namespace}/pods/{name}`.
pub(super) fn get(state: &State, namespace: &str, name: &str) -> Result<Pod, ApiError> {
    state
        .pods
        .get(&(namespace.to_owned(), name.to_owned()))
        .map(|stored| stored.pod.clone())
        .ok_or_else(|| ApiError::NotFound {
            resource: "pods",
            name: name.to_owned(),
        })
}

/// `GET /api/v1/namespaces/{namespace}/pods?labelSelector=…&fieldSelector=…`. `limit` is
/// ignored (a server may always answer everything at once, without a `continue` token).
pub(super) fn list(
    state: &State,
    namespace: &str,
    labels: Option<&str>,
    fields: Option<&str>,
) -> Result<List<Pod>, ApiError> {
    let labels = Selector::parse(labels.unwrap_or(""))?;
    let fields = Selector::parse(fields.unwrap_or(""))?;
    fields.check_pod_fields()?;
    let items = in_namespace(state, namespace)
        .filter(|pod| labels.matches_labels(pod.metadata.labels.as_ref()))
        .filter(|pod| fields.matches_pod_fields(pod))
        .cloned()
        .collect();
    Ok(List {
        items,
        metadata: ListMeta {
            resource_version: Some(state.list_version()),
            ..ListMeta::default()
        },
    })
}

/// `DELETE /api/v1/namespaces/{namespace}/pods/{name}`: removes the pod at once (no
/// graceful termination) and returns it as it was.
pub(super) fn delete(state: &mut State, namespace: &str, name: &str) -> Result<Pod, ApiError> {
    let removed = state.pods.remove(&(namespace.to_owned(), name.to_owned()));
    match removed {
        Some(stored) => {
            state.next_version();
            Ok(stored.pod)
        }
        None => Err(ApiError::NotFound {
            resource: "pods",
            name: name.to_owned(),
        }),
    }
}

/// The pods of `namespace`, by name.
pub(super) fn in_namespace<'a>(state: &'a State, namespace: &str) -> impl Iterator<Item = &'a Pod> {
    let start = (namespace.to_owned(), String::new());
    let namespace = namespace.to_owned();
    state
        .pods
        .range(start..)
        .take_while(move |((ns, _), _)| *ns == namespace)
        .map(|(_, stored)| &stored.pod)
}

/// Stores `pod` as given, replacing one of the same name: the fixture for objects that
/// exist before the code under test starts. Fills in what the API server would have set
/// (namespace `default`, a name from `generateName`, uid, creation time, resource version,
/// phase `Pending`) and creates the namespace if needed. The fake scheduler treats it like
/// any other pod, so a leftover `Pending` pod without a node gets bound.
pub(super) fn insert(state: &mut State, mut pod: Pod) {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    state.ensure_namespace(&namespace);
    let name = match pod.metadata.name.clone().filter(|n| !n.is_empty()) {
        Some(name) => name,
        None => {
            let prefix = pod.metadata.generate_name.as_deref().unwrap_or("pod-");
            format!("{prefix}{}", name_suffix())
        }
    };
    let meta = &mut pod.metadata;
    meta.name = Some(name.clone());
    meta.namespace = Some(namespace.clone());
    meta.uid.get_or_insert_with(new_uid);
    meta.creation_timestamp.get_or_insert_with(|| Time(now()));
    meta.resource_version = Some(state.next_version());
    let status = pod.status.get_or_insert_with(PodStatus::default);
    status.phase.get_or_insert_with(|| "Pending".to_owned());
    store(state, (namespace, name), pod);
}
