//! starling's vocabulary: the JSON shapes of the API (the agents serve
//! them, the CLI and the other agents read them, so the two cannot drift)
//! and the small types every layer shares.
//!
//! Serde only: nothing here opens a socket, a file or a clock other than
//! [`unix_ms_now`].

mod api;
mod page;
mod vocabulary;

pub use api::{
    AnnotationAck, AnnotationRequest, ApiError, CheckDetail, CheckSummary, DEFAULT_HISTORY_LIMIT,
    ErrorBody, HealthzResponse, HistoryCursor, HistoryEvent, HistoryQuery, HistoryResponse,
    MAX_HISTORY_LIMIT, Member, MembersResponse, NodeResponse, NodeStatus, NodesResponse,
    OverlayPath, OverlayResponse, StateCounts, StatusResponse,
};
pub use page::{
    DEFAULT_NODE_LIMIT, HealthFilter, MAX_NODE_LIMIT, MAX_REASONS, MEMBER_STATES, MemberPage,
    NodeCounts, NodePage,
};
pub use vocabulary::{EventKind, NodeHealth, ParseEnumError, Service, Status};

/// How long an agent's HTTP server keeps a connection that waits for its
/// next request: its header-read timeout (the slow-loris bound), which
/// hyper starts as soon as a response is sent, so it also ends idle
/// keep-alive connections. Clients of agents drop pooled connections
/// sooner (`starling_checks::agent_client`).
pub const IDLE_CONNECTION_CLOSE: std::time::Duration = std::time::Duration::from_secs(5);

/// Wall-clock Unix milliseconds: what people and other nodes read.
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
