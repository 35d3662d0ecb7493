//! What the HTTP surface reads from the agent.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use starling_model::{
    AnnotationAck, ApiError, HistoryQuery, HistoryResponse, MembersResponse, NodeResponse,
    OverlayResponse, StatusResponse,
};

/// An answer the agent computes off the request task (SQLite reads run on
/// blocking threads).
pub type Reply<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send>>;

/// Everything the HTTP surface reads from the agent. A trait, so the
/// server can be tested against a fixed view and the agent keeps its
/// internals private.
pub trait AgentView: Send + Sync + 'static {
    fn members(&self) -> MembersResponse;
    /// The OpenMetrics text exposition (served as is, or in the classic
    /// format to scrapers that prefer it). A reply, so the agent
    /// can bring its cluster gauges up to date from the history first.
    fn metrics(&self) -> Reply<String>;
    /// The agent's own loop ticked recently. Never cluster health: a
    /// cluster incident must not make every agent restart.
    fn live(&self) -> bool;
    /// Ready to answer for the cluster: the history is open and gossip has
    /// joined. `Err` says what is missing.
    fn ready(&self) -> Result<(), String>;
    /// The cluster's status rolled up from gossip and check results.
    fn status(&self) -> Reply<StatusResponse> {
        unavailable("this agent keeps no history")
    }
    /// One node's latest check results in full; `NotFound` for a node
    /// neither gossip nor the history knows.
    fn node(&self, _name: String) -> Reply<NodeResponse> {
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
    /// An aggregator taking a node's sealed stream of its own rows; the
    /// sealed acknowledgement out.
    fn stream(&self, _sealed: Bytes) -> Reply<Vec<u8>> {
        Box::pin(async { Err(not_an_aggregator()) })
    }
    /// An aggregator's health table, the part changed since the sealed
    /// request's revision.
    fn health_table(&self, _sealed: Bytes) -> Reply<Vec<u8>> {
        Box::pin(async { Err(not_an_aggregator()) })
    }
    /// An aggregator's newest events after the sealed request's place:
    /// what an ordinary node keeps as its window of the cluster log.
    fn window(&self, _sealed: Bytes) -> Reply<Vec<u8>> {
        Box::pin(async { Err(not_an_aggregator()) })
    }
    /// Record an operator's annotation (sealed with the cluster key).
    fn annotate(&self, _sealed: Bytes) -> Reply<AnnotationAck> {
        unavailable("this agent keeps no history")
    }
    /// The overlay reachability matrix; `NotFound` while no probe in the
    /// cluster has reported.
    fn overlay(&self) -> Reply<OverlayResponse> {
        Box::pin(async {
            Err(ApiError::NotFound(
                "no overlay data: no overlay probe (starling probe) has reported".to_owned(),
            ))
        })
    }
    /// The local probe's sealed report in, its sealed assignment out.
    fn overlay_report(&self, _sealed: Bytes) -> Reply<Vec<u8>> {
        unavailable("this agent takes no overlay reports")
    }
}

/// What any node but an aggregator answers to an aggregator's endpoints:
/// a node that streams to the wrong member hears so.
pub fn not_an_aggregator() -> ApiError {
    ApiError::NotFound("this node is not an aggregator (--role aggregator)".to_owned())
}

fn unavailable<T: Send + 'static>(message: &'static str) -> Reply<T> {
    Box::pin(async move { Err(ApiError::Unavailable(message.to_owned())) })
}
