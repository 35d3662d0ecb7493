//! The agent's side of the pod overlay network: which peers each probe
//! covers, the judgement of its reports over a sliding window, and the
//! cluster's reachability matrix.
//!
//! The judgement (`judge`, `matrix`, `select`) is pure; `intake` holds the
//! state and does the recording.

mod config;
pub(crate) mod intake;
mod judge;
mod matrix;
mod metrics;
mod select;

pub use config::OverlayConfig;
pub use intake::OverlayIntake;
pub use judge::{CLOCK_CHECK, PATH_CHECK_PREFIX, path_target};
pub use matrix::{OverlayVerdicts, response, verdicts};
pub use metrics::OverlayMetrics;
pub use select::targets;
