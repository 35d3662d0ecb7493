//! starling's HTTP surface: the JSON API and Prometheus metrics, served
//! from any agent and read through the [`AgentView`] trait.

mod api;
mod server;

pub use api::{ErrorBody, Member, MembersResponse, StateCounts};
pub use server::{AgentView, router, serve};
