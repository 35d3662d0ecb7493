//! The router and its entry point.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::api::{ErrorBody, MembersResponse};

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
}

/// Bounds how long one request may hold a connection; nothing we serve
/// should take more than milliseconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub fn router(view: Arc<dyn AgentView>) -> Router {
    Router::new()
        .route("/v1/members", get(members))
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
