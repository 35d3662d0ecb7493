//! The starling agent: SWIM gossip membership over sealed UDP, and the
//! `starling` binary's commands.
//!
//! Modules are private where they can be; this list is the surface.

pub mod alert;
pub mod bench;
pub mod cli;
pub mod client;
pub mod daemon;
pub mod gossip;
pub mod history;
pub mod lab;
pub mod logging;
pub mod overlay;
pub mod replicate;
pub mod settings;
pub mod status;

mod incarnation;
mod rendezvous;
mod view;

pub use daemon::{AgentError, RunningAgent};
pub use incarnation::DataDirError;
pub use settings::{AgentSettings, ConfigError};

/// Completes on SIGTERM (how Kubernetes stops a pod) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}

/// Wall-clock Unix milliseconds: what people and other nodes read.
pub(crate) fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Completes once `true` is sent on `stopping` (or its sender is gone):
/// the stop signal every agent task takes.
pub(crate) async fn stopped(mut stopping: tokio::sync::watch::Receiver<bool>) {
    // An error means the sender is gone: stop as well.
    let _ = stopping.wait_for(|stop| *stop).await;
}
