//! The starling agent: the composition root. [`daemon::start`] takes an
//! [`AgentConfig`] (checked by the binary) and starts every layer in
//! order: history, gossip, replication, checks, overlay intake, alerting
//! and the HTTP surface; [`RunningAgent::shutdown`] stops them in the
//! reverse order, stage by stage.

mod checks;
mod config;
pub mod daemon;
mod stage;
mod view;

pub use checks::ChecksError;
pub use config::{
    AgentConfig, HealthzCheckSpec, KubeChecksConfig, KubeSource, NODE_CONDITIONS_EVERY,
    NodeChecksConfig,
};
pub use daemon::{AgentError, HISTORY_FILE, RunningAgent};
pub use starling_gossip::DataDirError;

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
