//! starling's HTTP surface: the JSON API and Prometheus metrics, served
//! from any agent and read through the [`AgentView`] trait.

mod api;
mod query;
mod server;

pub use api::{
    AnnotationAck, ApiError, CheckSummary, ErrorBody, HistoryEvent, HistoryQuery, HistoryResponse,
    Member, MembersResponse, NodeStatus, StateCounts, StatusResponse,
};
pub use query::{DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT};
pub use server::{AgentView, Reply, router, serve};
