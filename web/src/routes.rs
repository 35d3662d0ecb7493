//! The router: every endpoint, and the JSON error every refusal becomes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Serialize;

use crate::exposition::Dialect;
use crate::view::AgentView;
use crate::{kuberhealthy, query};
use starling_model::{ApiError, ErrorBody, HealthzResponse, NodePage};

/// Bounds how long one request may hold a connection. A sync batch is the
/// slowest answer we give, and it is milliseconds of SQLite.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A sync request is a version vector: ~60 bytes per origin, so this
/// covers thousands of nodes with room to spare.
const SYNC_BODY_LIMIT: usize = 1 << 20;
/// A stream is at most 5,000 rows of about 300 bytes of JSON each.
const STREAM_BODY_LIMIT: usize = 4 << 20;
/// An annotation is one short message.
const ANNOTATION_BODY_LIMIT: usize = 16 << 10;
/// A probe report: about 200 bytes per peer; 256 KiB is 1,000 peers.
const REPORT_BODY_LIMIT: usize = 256 << 10;
/// Everything else takes no body at all.
const DEFAULT_BODY_LIMIT: usize = 4 << 10;

const DASHBOARD: &str = include_str!("dashboard.html");
/// The dashboard runs only its own inline script and styles and talks
/// only to the agent that served it: nothing from outside, even if a
/// message in the data tried to smuggle markup in.
const DASHBOARD_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'none'";

type ViewState = State<Arc<dyn AgentView>>;

pub fn router(view: Arc<dyn AgentView>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/v1/status", get(status))
        .route("/v1/nodes", get(nodes))
        .route("/v1/nodes/{name}", get(node))
        .route("/v1/members", get(members))
        .route("/v1/history", get(history))
        .route("/v1/overlay", get(overlay))
        .route(
            "/v1/overlay/report",
            post(overlay_report).layer(DefaultBodyLimit::max(REPORT_BODY_LIMIT)),
        )
        .route(
            "/v1/sync",
            post(sync).layer(DefaultBodyLimit::max(SYNC_BODY_LIMIT)),
        )
        .route(
            "/v1/stream",
            post(stream).layer(DefaultBodyLimit::max(STREAM_BODY_LIMIT)),
        )
        .route(
            "/v1/health-table",
            post(health_table).layer(DefaultBodyLimit::max(SYNC_BODY_LIMIT)),
        )
        .route(
            "/v1/window",
            post(window).layer(DefaultBodyLimit::max(SYNC_BODY_LIMIT)),
        )
        .route(
            "/v1/events",
            post(annotate).layer(DefaultBodyLimit::max(ANNOTATION_BODY_LIMIT)),
        )
        .route("/json", get(kuberhealthy_json))
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(DEFAULT_BODY_LIMIT))
        .layer(middleware::from_fn(deadline))
        .with_state(view)
}

/// Every request gets `REQUEST_TIMEOUT`; a stuck read of the history
/// answers 503 instead of holding the connection.
async fn deadline(request: Request, next: Next) -> Response {
    tokio::time::timeout(REQUEST_TIMEOUT, next.run(request))
        .await
        .unwrap_or_else(|_| error(StatusCode::SERVICE_UNAVAILABLE, "request timed out"))
}

async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, DASHBOARD_POLICY),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        DASHBOARD,
    )
        .into_response()
}

async fn status(State(view): ViewState, params: QueryParams) -> Response {
    let page = match node_page(params) {
        Ok(page) => page,
        Err((status, message)) => return error(status, &message),
    };
    json(view.status().await.map(|mut status| {
        page.apply(&mut status);
        status
    }))
}

async fn nodes(State(view): ViewState, params: QueryParams) -> Response {
    let page = match node_page(params) {
        Ok(page) => page,
        Err((status, message)) => return error(status, &message),
    };
    json(view.status().await.map(|status| page.nodes(status)))
}

type QueryParams = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The page a request asks for, or why it is refused.
fn node_page(params: QueryParams) -> Result<NodePage, (StatusCode, String)> {
    let Query(params) = params.map_err(|rejection| (rejection.status(), rejection.body_text()))?;
    query::node_page(&params).map_err(|refusal| (StatusCode::BAD_REQUEST, refusal.to_string()))
}

async fn node(State(view): ViewState, name: Result<Path<String>, PathRejection>) -> Response {
    match name {
        Ok(Path(name)) => json(view.node(name).await),
        Err(rejection) => error(rejection.status(), &rejection.body_text()),
    }
}

async fn members(State(view): ViewState, params: QueryParams) -> Response {
    let Query(params) = match params {
        Ok(params) => params,
        Err(rejection) => return error(rejection.status(), &rejection.body_text()),
    };
    match query::member_page(&params) {
        Ok(page) => {
            let mut members = view.members();
            page.apply(&mut members);
            axum::Json(members).into_response()
        }
        Err(refusal) => refused(refusal),
    }
}

async fn history(State(view): ViewState, params: QueryParams) -> Response {
    let Query(params) = match params {
        Ok(params) => params,
        Err(rejection) => return error(rejection.status(), &rejection.body_text()),
    };
    match query::history(&params) {
        Ok(query) => json(view.history(query).await),
        Err(refusal) => refused(refusal),
    }
}

async fn overlay(State(view): ViewState) -> Response {
    json(view.overlay().await)
}

async fn sync(State(view): ViewState, body: Result<Bytes, BytesRejection>) -> Response {
    sealed_exchange(body, |body| view.sync(body)).await
}

async fn stream(State(view): ViewState, body: Result<Bytes, BytesRejection>) -> Response {
    sealed_exchange(body, |body| view.stream(body)).await
}

async fn health_table(State(view): ViewState, body: Result<Bytes, BytesRejection>) -> Response {
    sealed_exchange(body, |body| view.health_table(body)).await
}

async fn window(State(view): ViewState, body: Result<Bytes, BytesRejection>) -> Response {
    sealed_exchange(body, |body| view.window(body)).await
}

async fn overlay_report(State(view): ViewState, body: Result<Bytes, BytesRejection>) -> Response {
    sealed_exchange(body, |body| view.overlay_report(body)).await
}

/// A sealed body in, a sealed body out: the agent opens and seals.
async fn sealed_exchange(
    body: Result<Bytes, BytesRejection>,
    answer: impl FnOnce(Bytes) -> crate::view::Reply<Vec<u8>>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return error(rejection.status(), &rejection.body_text()),
    };
    match answer(body).await {
        Ok(sealed) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], sealed).into_response()
        }
        Err(refusal) => refused(refusal),
    }
}

async fn annotate(State(view): ViewState, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return error(rejection.status(), &rejection.body_text()),
    };
    match view.annotate(body).await {
        Ok(ack) => (StatusCode::CREATED, axum::Json(ack)).into_response(),
        Err(refusal) => refused(refusal),
    }
}

/// v3's shape, or v2's with `?v=2`.
async fn kuberhealthy_json(
    State(view): ViewState,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let version = match params
        .as_ref()
        .map(|Query(p)| p.get("v").map(String::as_str))
    {
        Ok(None | Some("3")) => kuberhealthy::Version::V3,
        Ok(Some("2")) => kuberhealthy::Version::V2,
        Ok(Some(other)) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("v={other:?}: Kuberhealthy's shapes are v=3 (the default) and v=2"),
            );
        }
        Err(rejection) => return error(rejection.status(), &rejection.body_text()),
    };
    json(
        view.status()
            .await
            .map(|status| kuberhealthy::render(&status, version)),
    )
}

async fn healthz(State(view): ViewState) -> Response {
    match view.status().await {
        Ok(status) => {
            let code = if status.healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = HealthzResponse {
                healthy: status.healthy,
                answered_by: status.answered_by,
                reasons: status.reasons,
            };
            (code, axum::Json(body)).into_response()
        }
        Err(refusal) => refused(refusal),
    }
}

async fn livez(State(view): ViewState) -> Response {
    if view.live() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "gossip loop is not turning",
        )
    }
}

async fn readyz(State(view): ViewState) -> Response {
    match view.ready() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(missing) => error(StatusCode::SERVICE_UNAVAILABLE, &missing),
    }
}

async fn metrics(State(view): ViewState, headers: HeaderMap) -> Response {
    let dialect = Dialect::negotiate(headers.get(header::ACCEPT));
    match view.metrics().await {
        Ok(text) => {
            let mut response = dialect.render(text).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, dialect.content_type());
            response
        }
        Err(refusal) => refused(refusal),
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}

fn json<T: Serialize>(answer: Result<T, ApiError>) -> Response {
    match answer {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(refusal) => refused(refusal),
    }
}

fn refused(refusal: ApiError) -> Response {
    let status = match refusal {
        ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        ApiError::Replayed(_) => StatusCode::CONFLICT,
        ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, &refusal.to_string())
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(ErrorBody {
            error: message.to_owned(),
        }),
    )
        .into_response()
}
