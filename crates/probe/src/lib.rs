//! The overlay probe: `starling probe` runs on the pod network, answers
//! sealed UDP echo on its pod IP, probes the peers its agent assigns, and
//! reports loss, round trips and clock offsets back to that agent.
//!
//! The core (`prober`, `window`) is sans-IO; `probe` is its loop; `wire`
//! is what the probe and the agent exchange.

#[doc(hidden)]
pub mod fuzzing;
mod probe;
mod prober;
mod window;
mod wire;

pub use probe::{
    DEFAULT_INTERVAL, DEFAULT_REPORT_INTERVAL, DEFAULT_WINDOW, MAX_OFFSET_RTT, OffsetClock,
    ProbeConfig, ProbeSettings, ProbeSetupError, SystemClock, WallClock, run, run_command,
};
pub use prober::Prober;
pub use window::{PeerWindow, WindowTiming};
pub use wire::{Echo, PeerReport, ProbeAssignment, ProbeReport, ProbeTarget};
