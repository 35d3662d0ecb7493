//! The overlay judgement's settings, checked.

use std::time::Duration;

use super::ConfigError;
use crate::cli::OverlayArgs;

#[derive(Debug, Clone, PartialEq)]
pub struct OverlaySettings {
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

impl Default for OverlaySettings {
    fn default() -> Self {
        OverlaySettings {
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

pub(super) fn overlay(args: &OverlayArgs) -> Result<OverlaySettings, ConfigError> {
    let invalid = |flag, reason: String| ConfigError::Invalid { flag, reason };
    if args.overlay_interval < Duration::from_millis(100) {
        return Err(ConfigError::TooSmall {
            flag: "--overlay-interval",
            min: Duration::from_millis(100),
        });
    }
    // Fewer samples than this make one lost ping a 10% swing.
    if args.overlay_window < args.overlay_interval * 10 {
        return Err(invalid(
            "--overlay-window",
            format!(
                "{} is shorter than 10 × --overlay-interval ({}): too few pings to judge loss",
                humantime::format_duration(args.overlay_window),
                humantime::format_duration(args.overlay_interval)
            ),
        ));
    }
    if args.overlay_report_interval < Duration::from_millis(100)
        || args.overlay_report_interval > args.overlay_window
    {
        return Err(invalid(
            "--overlay-report-interval",
            "must be between 100ms and --overlay-window".to_owned(),
        ));
    }
    if !(args.overlay_loss_critical > 0.0 && args.overlay_loss_critical < 100.0) {
        return Err(invalid(
            "--overlay-loss-critical",
            format!(
                "{} is not a percentage above 0 and below 100",
                args.overlay_loss_critical
            ),
        ));
    }
    if args.overlay_peers == 0 {
        return Err(invalid(
            "--overlay-peers",
            "must be at least 1: every node needs someone pinging it".to_owned(),
        ));
    }
    if args.clock_drift_warning >= args.clock_drift_critical {
        return Err(invalid(
            "--clock-drift-warning",
            "must be below --clock-drift-critical".to_owned(),
        ));
    }
    Ok(OverlaySettings {
        interval: args.overlay_interval,
        window: args.overlay_window,
        report_interval: args.overlay_report_interval,
        loss_critical: args.overlay_loss_critical / 100.0,
        rtt_warning: args.overlay_rtt_warning,
        all_pairs_up_to: args.overlay_all_pairs_up_to,
        peers: args.overlay_peers,
        drift_warning: args.clock_drift_warning,
        drift_critical: args.clock_drift_critical,
    })
}
