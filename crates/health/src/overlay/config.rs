//! How the overlay judgement reads the probes' reports: windows,
//! thresholds and how many peers each probe covers.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct OverlayConfig {
    /// Between two pings to each peer (handed to the probe).
    pub interval: Duration,
    /// The sliding window, and how long loss must stay above the
    /// threshold before a path is critical.
    pub window: Duration,
    /// Between two probe reports; three missed reports make the local
    /// probe's figures stale.
    pub report_interval: Duration,
    /// Loss ratio (0..1) above which a path is failing.
    pub loss_critical: f64,
    pub rtt_warning: Duration,
    pub all_pairs_up_to: usize,
    /// Probes per node above `all_pairs_up_to`.
    pub peers: usize,
    pub drift_warning: Duration,
    pub drift_critical: Duration,
}

impl Default for OverlayConfig {
    fn default() -> Self {
        OverlayConfig {
            interval: Duration::from_secs(1),
            window: Duration::from_secs(120),
            report_interval: Duration::from_secs(5),
            loss_critical: 0.2,
            rtt_warning: Duration::from_millis(100),
            all_pairs_up_to: 100,
            peers: 10,
            drift_warning: Duration::from_millis(300),
            drift_critical: Duration::from_secs(1),
        }
    }
}
