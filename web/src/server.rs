//! The router and its entry point.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use tokio::net::TcpListener;

use crate::api::{
    AnnotationAck, ApiError, ErrorBody, HistoryQuery, HistoryResponse, MembersResponse,
    StatusResponse,
};
use crate::query;

/// An answer the agent computes off the request task (SQLite reads run on
/// blocking threads).
pub type Reply<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send>>;

/// Everything the HTTP surface reads from the agent. A trait, so the
/// server can be tested against a fixed view and the agent keeps its
/// internals private.
pub trait AgentView: Send + Sync + 'static {
    fn members(&self) -> MembersResponse;
    /// The Prometheus/OpenMetrics text exposition.
    fn metrics(&self) -> String;
    /// The agent's own loop ticked recently. Never cluster health: a
    /// cluster incident must not make every agent restart.
    fn live(&self) -> bool;
    /// The cluster's status rolled up from gossip and check results.
    fn status(&self) -> Reply<StatusResponse> {
        unavailable("this agent keeps no history")
    }
    /// The cluster's event log, newest first.
    fn history(&self, _query: HistoryQuery) -> Reply<HistoryResponse> {
        unavailable("this agent keeps no history")
    }
    /// Anti-entropy: a sealed version vector in, the sealed missing rows
    /// out. Opaque here; the agent owns the key and the format.
    fn sync(&self, _sealed: Bytes) -> Reply<Vec<u8>> {
        unavailable("this agent keeps no history")
    }
    /// Record an operator's annotation (sealed with the cluster key).
    fn annotate(&self, _sealed: Bytes) -> Reply<AnnotationAck> {
        unavailable("this agent keeps no history")
    }
}

fn unavailable<T: Send + 'static>(message: &'static str) -> Reply<T> {
    Box::pin(async move { Err(ApiError::Unavailable(message.to_owned())) })
}

/// Bounds how long one request may hold a connection. A sync batch is the
/// slowest answer we give, and it is milliseconds of SQLite.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A sync request is a version vector: ~60 bytes per origin, so this
/// covers thousands of nodes with room to spare.
const SYNC_BODY_LIMIT: usize = 1 << 20;
/// An annotation is one short message.
const ANNOTATION_BODY_LIMIT: usize = 16 << 10;

pub fn router(view: Arc<dyn AgentView>) -> Router {
    Router::new()
        .route("/v1/members", get(members))
        .route("/v1/status", get(status))
        .route("/v1/history", get(history))
        .route(
            "/v1/sync",
            post(sync).layer(DefaultBodyLimit::max(SYNC_BODY_LIMIT)),
        )
        .route(
            "/v1/events",
            post(annotate).layer(DefaultBodyLimit::max(ANNOTATION_BODY_LIMIT)),
        )
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .fallback(not_found)
        .with_state(view)
}

/// Serve until `shutdown` completes, then finish in-flight requests.
pub async fn serve(
    listener: TcpListener,
    view: Arc<dyn AgentView>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(view))
        .with_graceful_shutdown(shutdown)
        .await
}

type ViewState = State<Arc<dyn AgentView>>;

async fn members(State(view): ViewState) -> Response {
    bounded(async move { axum::Json(view.members()).into_response() }).await
}

async fn status(State(view): ViewState) -> Response {
    bounded(async move {
        match view.status().await {
            Ok(answer) => axum::Json(answer).into_response(),
            Err(refusal) => refused(refusal),
        }
    })
    .await
}

async fn history(
    State(view): ViewState,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let query = match query::history(&params) {
        Ok(query) => query,
        Err(refusal) => return refused(refusal),
    };
    bounded(async move {
        match view.history(query).await {
            Ok(answer) => axum::Json(answer).into_response(),
            Err(refusal) => refused(refusal),
        }
    })
    .await
}

async fn sync(State(view): ViewState, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return error(rejection.status(), &rejection.body_text()),
    };
    bounded(async move {
        match view.sync(body).await {
            Ok(sealed) => {
                ([(header::CONTENT_TYPE, "application/octet-stream")], sealed).into_response()
            }
            Err(refusal) => refused(refusal),
        }
    })
    .await
}

async fn annotate(State(view): ViewState, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return error(rejection.status(), &rejection.body_text()),
    };
    bounded(async move {
        match view.annotate(body).await {
            Ok(ack) => (StatusCode::CREATED, axum::Json(ack)).into_response(),
            Err(refusal) => refused(refusal),
        }
    })
    .await
}

async fn metrics(State(view): ViewState) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        view.metrics(),
    )
        .into_response()
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

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

fn refused(refusal: ApiError) -> Response {
    let status = match refusal {
        ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
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

async fn bounded(response: impl Future<Output = Response>) -> Response {
    tokio::time::timeout(REQUEST_TIMEOUT, response)
        .await
        .unwrap_or_else(|_| error(StatusCode::SERVICE_UNAVAILABLE, "request timed out"))
}
