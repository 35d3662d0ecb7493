//! The overlay judgement's settings, checked.

use std::time::Duration;

use super::ConfigError;
use crate::cli::OverlayArgs;
pub use starling_health::overlay::OverlayConfig;

pub(super) fn overlay(args: &OverlayArgs) -> Result<OverlayConfig, ConfigError> {
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
    Ok(OverlayConfig {
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
