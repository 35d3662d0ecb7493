//! starling's HTTP surface: the JSON API, the Kuberhealthy-compatible
//! status page, Prometheus metrics and the dashboard, served from any agent
//! and read through the [`AgentView`] trait.

mod exposition;
mod kuberhealthy;
mod query;
mod routes;
mod server;
mod view;

pub use kuberhealthy::{CheckDetailV3, KuberhealthyState, StateV3, WorkloadDetails};
pub use routes::router;
pub use server::serve;
pub use view::{AgentView, Reply, not_an_aggregator};
