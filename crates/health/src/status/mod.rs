//! Checks in the agent: where they run (from the gossip view), what their
//! results become (history rows and transition events), and the node and
//! cluster status rolled up from them.

mod metrics;
mod placement;
mod results;
mod rollup;

pub use metrics::StatusMetrics;
pub use placement::GossipPlacement;
pub use results::record_results;
pub(crate) use results::{history_row, record_transition};
pub use rollup::roll_up;
pub use rollup::state_counts;
