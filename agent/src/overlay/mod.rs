//! The pod overlay network: `starling probe` (pings peers' probes on the
//! pod network and reports loss, round trips and clock offsets) and the
//! agent's side (peer assignment, judgement, the cluster's matrix).
//!
//! The probe's core (`prober`, `window`) is sans-IO; `probe` is its loop.
//! The agent's judgement (`judge`, `matrix`, `select`) is pure; `intake`
//! holds the state and does the recording.

mod intake;
mod judge;
mod matrix;
mod metrics;
mod probe;
mod prober;
mod select;
mod window;
mod wire;

pub use intake::OverlayIntake;
pub use judge::{CLOCK_CHECK, PATH_CHECK_PREFIX, path_target};
pub use matrix::{OverlayVerdicts, response, verdicts};
pub use metrics::OverlayMetrics;
pub use probe::{
    DEFAULT_INTERVAL, DEFAULT_REPORT_INTERVAL, DEFAULT_WINDOW, MAX_OFFSET_RTT, OffsetClock,
    ProbeConfig, ProbeFlags, ProbeSetupError, SystemClock, WallClock, run, run_command,
};
pub use prober::Prober;
pub use select::targets;
pub use window::{PeerWindow, WindowTiming};
pub use wire::{Echo, PeerReport, ProbeAssignment, ProbeReport, ProbeTarget};
