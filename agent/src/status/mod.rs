//! Checks in the agent: where they run (from the gossip view), what their
//! results become (history rows and transition events), and the node and
//! cluster status rolled up from them.

mod metrics;
mod placement;
mod results;
mod rollup;
mod setup;

pub use metrics::StatusMetrics;
pub use placement::GossipPlacement;
pub(crate) use results::{history_row, history_status, record_results, record_transition};
pub use rollup::roll_up;
pub(crate) use rollup::state_counts;
pub use setup::ChecksError;
pub(crate) use setup::{node_checks_here, runner};
