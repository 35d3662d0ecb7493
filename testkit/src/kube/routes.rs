//! The HTTP side: one handler that logs each request, applies the test's switches
//! (unresponsive, latency, errors) and then dispatches on method and path.
//!
//! A single fallback handler instead of an axum route table, because every path must pass
//! through the same switches and every miss (unknown path or method) must be a 404 Status,
//! which kube's client parses, not axum's empty 404/405.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::List;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;

use super::error::ApiError;
use super::objects::{self, active_namespace};
use super::state::{self, Shared};
use super::{nodes, pods};

/// The router serving every path through [`handle`].
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    // kube's client builds queries as `path?` plus `&k=v` per parameter, so it sends
    // `pods?&labelSelector=…` and `pods/x?`; the log drops the empty pieces so that tests
    // can assert on the request a reader would write.
    let query: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .collect();
    let line = if query.is_empty() {
        format!("{method} {}", uri.path())
    } else {
        format!("{method} {}?{}", uri.path(), query.join("&"))
    };
    tracing::debug!(request = %line, "fake apiserver");
    let (latency, errors) = {
        let mut state = shared.lock();
        state.requests.push(line);
        (state.switches.latency, state.switches.errors)
    };
    let going_away = || ApiError::Internal("the fake apiserver is shutting down".to_owned());
    if !shared.wait_responsive().await {
        return going_away().into_response();
    }
    if !latency.is_zero() && !shared.sleep(latency).await {
        return going_away().into_response();
    }
    if errors {
        return ApiError::Internal("an internal error injected by the test".to_owned())
            .into_response();
    }
    route(&shared, &method, &uri, &body).unwrap_or_else(IntoResponse::into_response)
}

/// The query parameters; a query that is not `k=v&…` is a 400.
fn query(uri: &Uri) -> Result<HashMap<String, String>, ApiError> {
    Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|Query(q)| q)
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))
}

fn json<T: serde::Serialize>(code: StatusCode, value: &T) -> Response {
    (code, Json(value)).into_response()
}

fn text(code: StatusCode, body: String) -> Response {
    // What kube-apiserver sends for its health endpoints.
    let headers = [
        (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    (code, headers, body).into_response()
}

fn route(shared: &Shared, method: &Method, uri: &Uri, body: &[u8]) -> Result<Response, ApiError> {
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let query = query(uri)?;
    let mut state = shared.lock();
    let response = match (method.as_str(), segments.as_slice()) {
        ("GET", ["livez"]) => text(StatusCode::OK, "ok".to_owned()),
        ("GET", ["readyz"]) => {
            let verbose = query.contains_key("verbose");
            let (passed, body) = objects::readyz(verbose, state.switches.failing_readyz.as_deref());
            let code = if passed {
                StatusCode::OK
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            text(code, body)
        }
        ("GET", ["version"]) => json(StatusCode::OK, &objects::version_info()),
        ("GET", ["api", "v1", "namespaces", name]) => {
            let namespace = state
                .namespaces
                .get(*name)
                .ok_or_else(|| ApiError::NotFound {
                    resource: "namespaces",
                    name: (*name).to_owned(),
                })?;
            json(StatusCode::OK, namespace)
        }
        ("POST", ["api", "v1", "namespaces"]) => {
            json(StatusCode::CREATED, &create_namespace(&mut state, body)?)
        }
        ("POST", ["api", "v1", "namespaces", ns, "pods"]) => {
            json(StatusCode::CREATED, &pods::create(&mut state, ns, body)?)
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods"]) => {
            if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
                return Err(ApiError::BadRequest(
                    "the fake apiserver does not support watch; poll with GET".to_owned(),
                ));
            }
            let labels = query.get("labelSelector").map(String::as_str);
            let fields = query.get("fieldSelector").map(String::as_str);
            json(StatusCode::OK, &pods::list(&state, ns, labels, fields)?)
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods", name]) => {
            json(StatusCode::OK, &pods::get(&state, ns, name)?)
        }
        ("DELETE", ["api", "v1", "namespaces", ns, "pods", name]) => {
            json(StatusCode::OK, &pods::delete(&mut state, ns, name)?)
        }
        ("GET", ["api", "v1", "nodes"]) => {
            let list = List {
                items: state.nodes.clone(),
                metadata: ListMeta {
                    resource_version: Some(state.list_version()),
                    ..ListMeta::default()
                },
            };
            json(StatusCode::OK, &list)
        }
        ("GET", ["api", "v1", "nodes", name]) => json(StatusCode::OK, &nodes::get(&state, name)?),
        ("PATCH", ["api", "v1", "nodes", name, "status"]) => json(
            StatusCode::OK,
            &nodes::patch_status(&mut state, name, body)?,
        ),
        ("POST", ["api", "v1", "namespaces", ns, "events"]) => json(
            StatusCode::CREATED,
            &nodes::create_event(&mut state, ns, body)?,
        ),
        (
            "GET",
            [
                "apis",
                "coordination.k8s.io",
                "v1",
                "namespaces",
                ns,
                "leases",
                name,
            ],
        ) => {
            let key = ((*ns).to_owned(), (*name).to_owned());
            let lease = state.leases.get(&key).ok_or_else(|| ApiError::NotFound {
                resource: "leases.coordination.k8s.io",
                name: (*name).to_owned(),
            })?;
            json(StatusCode::OK, lease)
        }
        _ => return Err(ApiError::UnknownPath),
    };
    Ok(response)
}

/// `POST /api/v1/namespaces`: stores the namespace as `Active` and returns it.
fn create_namespace(state: &mut state::State, body: &[u8]) -> Result<Namespace, ApiError> {
    let namespace: Namespace = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not a Namespace: {e}")))?;
    let mut meta = namespace.metadata;
    if meta.name.as_deref().is_none_or(str::is_empty) {
        match meta.generate_name.as_deref().filter(|p| !p.is_empty()) {
            Some(prefix) => meta.name = Some(format!("{prefix}{}", state::name_suffix())),
            None => {
                return Err(ApiError::Invalid(
                    "Namespace is invalid: metadata.name: Required value: name or \
                     generateName is required"
                        .to_owned(),
                ));
            }
        }
    }
    let name = meta.name.clone().unwrap_or_default();
    if state.namespaces.contains_key(&name) {
        return Err(ApiError::AlreadyExists {
            resource: "namespaces",
            name,
        });
    }
    let namespace = active_namespace(state.new_meta(meta, None));
    state.namespaces.insert(name, namespace.clone());
    Ok(namespace)
}
