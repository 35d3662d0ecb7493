//! starling's HTTP surface: the JSON API, the Kuberhealthy-compatible
//! status page, Prometheus metrics and the dashboard, served from any agent
//! and read through the [`AgentView`] trait.

mod api;
mod kuberhealthy;
mod query;
mod routes;
mod server;
mod view;

pub use api::{
    AnnotationAck, ApiError, CheckDetail, CheckSummary, ErrorBody, HealthzResponse, HistoryCursor,
    HistoryEvent, HistoryQuery, HistoryResponse, Member, MembersResponse, NodeResponse, NodeStatus,
    NodesResponse, OverlayPath, OverlayResponse, StateCounts, StatusResponse,
};
pub use kuberhealthy::{KuberhealthyState, WorkloadDetails};
pub use query::{DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT};
pub use routes::router;
pub use server::serve;
pub use view::{AgentView, Reply};
