//! The agent's judgement of its probe's figures: one verdict per path from
//! this node, and this node's clock against the cluster's. Pure: reports
//! and times in, verdicts out.

use std::collections::BTreeMap;
use std::time::Duration;

use starling_checks::Status;

use super::config::OverlayConfig;
use starling_probe::{PeerReport, ProbeReport};

/// Path results are checks named `overlay/<peer>` on the source node, so
/// they replicate like any check's status changes.
pub const PATH_CHECK_PREFIX: &str = "overlay/";
/// This node's clock against the median of the cluster's.
pub const CLOCK_CHECK: &str = "clock-drift";

pub fn path_check(peer: &str) -> String {
    format!("{PATH_CHECK_PREFIX}{peer}")
}

/// The peer a path check is about, or `None` for any other check.
pub fn path_target(check: &str) -> Option<&str> {
    check.strip_prefix(PATH_CHECK_PREFIX)
}

#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub status: Status,
    pub message: String,
}

#[derive(Debug)]
struct PathState {
    /// Since when loss has been above the threshold, continuously.
    above_since_ms: Option<u64>,
    figures: PeerReport,
    verdict: Verdict,
}

/// What one report changed.
#[derive(Debug, Default)]
pub struct Judged {
    /// Every path in the report, with its verdict.
    pub paths: Vec<(String, Verdict)>,
    /// Peers no longer in the report (left the cluster, or no longer
    /// assigned): their paths are retired.
    pub retired: Vec<String>,
    /// `None` until a peer answered fast enough to compare clocks.
    pub clock: Option<(Verdict, f64)>,
}

#[derive(Debug)]
pub struct Judge {
    settings: OverlayConfig,
    paths: BTreeMap<String, PathState>,
}

impl Judge {
    pub fn new(settings: OverlayConfig) -> Self {
        Judge {
            settings,
            paths: BTreeMap::new(),
        }
    }

    /// The latest figures and verdict of each path from this node.
    pub fn paths(&self) -> impl Iterator<Item = (&str, &PeerReport, &Verdict)> {
        self.paths
            .iter()
            .map(|(peer, state)| (peer.as_str(), &state.figures, &state.verdict))
    }

    pub fn judge(&mut self, report: &ProbeReport, now_ms: u64) -> Judged {
        let mut judged = Judged::default();
        let mut next = BTreeMap::new();
        for figures in &report.peers {
            let mut state = self.paths.remove(&figures.node).unwrap_or(PathState {
                above_since_ms: None,
                figures: figures.clone(),
                verdict: Verdict {
                    status: Status::Unknown,
                    message: String::new(),
                },
            });
            state.figures = figures.clone();
            state.verdict = self.path_verdict(&mut state.above_since_ms, figures, now_ms);
            judged
                .paths
                .push((figures.node.clone(), state.verdict.clone()));
            next.insert(figures.node.clone(), state);
        }
        judged.retired = std::mem::replace(&mut self.paths, next)
            .into_keys()
            .collect();
        judged.clock = self.clock_verdict(&report.peers);
        judged
    }

    /// Forget every path: the probe stopped reporting, so its last figures
    /// are no longer true. Returns the retired peers.
    pub fn retire_all(&mut self) -> Vec<String> {
        std::mem::take(&mut self.paths).into_keys().collect()
    }

    fn path_verdict(
        &self,
        above_since_ms: &mut Option<u64>,
        figures: &PeerReport,
        now_ms: u64,
    ) -> Verdict {
        let limit = self.settings.loss_critical;
        let window = self.settings.window;
        let Some(loss) = figures.loss_ratio() else {
            *above_since_ms = None;
            return Verdict {
                status: Status::Unknown,
                message: "no ping old enough to judge yet".to_owned(),
            };
        };
        let rtt = format!(
            "round trip p50 {}, p95 {}",
            ms(figures.rtt_p50_ms),
            ms(figures.rtt_p95_ms)
        );
        if loss > limit {
            let since = *above_since_ms.get_or_insert(now_ms);
            let held = Duration::from_millis(now_ms.saturating_sub(since));
            return if held >= window {
                Verdict {
                    status: Status::Critical,
                    message: format!(
                        "{} of pings to {} lost over {}, above {} for {}",
                        percent(loss),
                        figures.node,
                        human(window),
                        percent(limit),
                        human(held)
                    ),
                }
            } else {
                Verdict {
                    status: Status::Warning,
                    message: format!(
                        "{} of pings lost over {} (critical once above {} for {}); {rtt}",
                        percent(loss),
                        human(window),
                        percent(limit),
                        human(window)
                    ),
                }
            };
        }
        *above_since_ms = None;
        let slow = figures
            .rtt_p95_ms
            .is_some_and(|p95| p95 > self.settings.rtt_warning.as_secs_f64() * 1000.0);
        Verdict {
            status: if slow { Status::Warning } else { Status::Ok },
            message: if slow {
                format!(
                    "{rtt}, above {}; {} loss",
                    human(self.settings.rtt_warning),
                    percent(loss)
                )
            } else {
                format!("{} loss, {rtt}", percent(loss))
            },
        }
    }

    /// This node's clock minus the cluster's median, counting this node
    /// as one voter at zero: a node is off only when most of the cluster
    /// disagrees with it, and with one peer nobody can tell who is off.
    fn clock_verdict(&self, peers: &[PeerReport]) -> Option<(Verdict, f64)> {
        let mut mine: Vec<f64> = peers
            .iter()
            .filter_map(|p| p.clock_offset_ms.map(|o| -o))
            .collect();
        if mine.is_empty() {
            return None;
        }
        let voters = mine.len();
        mine.push(0.0);
        mine.sort_unstable_by(f64::total_cmp);
        let middle = mine.len() / 2;
        let offset = if mine.len() % 2 == 1 {
            mine[middle]
        } else {
            // Between two middles, the smaller claim of drift.
            let (a, b) = (mine[middle - 1], mine[middle]);
            if a.abs() <= b.abs() { a } else { b }
        };
        // A report may claim any offset; one beyond every Duration is
        // beyond every threshold too.
        let size = Duration::try_from_secs_f64(offset.abs() / 1000.0).unwrap_or(Duration::MAX);
        let status = if size >= self.settings.drift_critical {
            Status::Critical
        } else if size >= self.settings.drift_warning {
            Status::Warning
        } else {
            Status::Ok
        };
        let direction = if offset >= 0.0 { "ahead of" } else { "behind" };
        let message = format!(
            "clock {} {direction} the cluster's median ({voters} peer(s) compared; warning at {}, critical at {})",
            ms(Some(offset.abs())),
            human(self.settings.drift_warning),
            human(self.settings.drift_critical)
        );
        Some((Verdict { status, message }, offset))
    }
}

fn percent(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

fn ms(value: Option<f64>) -> String {
    match value {
        Some(v) if v >= 1000.0 => format!("{:.2} s", v / 1000.0),
        Some(v) => format!("{v:.1} ms"),
        None => "-".to_owned(),
    }
}

/// To the millisecond: the default warning is 300 ms, which whole seconds
/// would show as "1s".
fn human(d: Duration) -> String {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn settings() -> OverlayConfig {
        OverlayConfig {
            window: Duration::from_secs(10),
            ..OverlayConfig::default()
        }
    }

    fn figures(node: &str, sent: u32, lost: u32, offset: Option<f64>) -> PeerReport {
        PeerReport {
            node: node.to_owned(),
            sent,
            lost,
            rtt_p50_ms: Some(0.4),
            rtt_p95_ms: Some(0.9),
            clock_offset_ms: offset,
        }
    }

    fn report(peers: Vec<PeerReport>) -> ProbeReport {
        ProbeReport {
            node: "a".into(),
            probe_addr: SocketAddr::from(([10, 244, 0, 1], 7949)),
            window_ms: 10_000,
            peers,
            probed_by: Vec::new(),
            sent_bytes: 0,
            received_bytes: 0,
        }
    }

    fn status_of(judged: &Judged, peer: &str) -> Status {
        judged
            .paths
            .iter()
            .find(|(p, _)| p == peer)
            .map(|(_, v)| v.status)
            .expect("peer judged")
    }

    /// Found writing `starling-bench fuzz`'s probe-report target: a report is JSON,
    /// and JSON carries offsets far beyond any Duration, which
    /// `Duration::from_secs_f64` refused with a panic in the handler.
    #[test]
    fn an_offset_beyond_any_duration_is_critical_not_a_panic() {
        let mut judge = Judge::new(settings());
        for offset in [1e300, -1e300, f64::MAX, 1.8e22] {
            let peers = vec![
                figures("b", 10, 0, Some(offset)),
                figures("c", 10, 0, Some(offset)),
            ];
            let (verdict, _) = judge
                .judge(&report(peers), 0)
                .clock
                .expect("offsets compared");
            assert_eq!(verdict.status, Status::Critical, "{offset}");
        }
    }

    #[test]
    fn loss_is_critical_only_after_staying_above_the_limit_for_a_window() {
        let mut judge = Judge::new(settings());
        let lossy = || report(vec![figures("b", 10, 5, None)]);
        assert_eq!(status_of(&judge.judge(&lossy(), 0), "b"), Status::Warning);
        assert_eq!(
            status_of(&judge.judge(&lossy(), 9_999), "b"),
            Status::Warning
        );
        let judged = judge.judge(&lossy(), 10_000);
        assert_eq!(status_of(&judged, "b"), Status::Critical);
        assert!(judged.paths[0].1.message.contains("50% of pings to b lost"));
        // One good report resets the clock: a flapping path is not critical.
        judge.judge(&report(vec![figures("b", 10, 1, None)]), 11_000);
        assert_eq!(
            status_of(&judge.judge(&lossy(), 12_000), "b"),
            Status::Warning
        );
    }

    #[test]
    fn the_threshold_is_strictly_above() {
        let mut judge = Judge::new(settings());
        let at_limit = report(vec![figures("b", 10, 2, None)]);
        judge.judge(&at_limit, 0);
        assert_eq!(status_of(&judge.judge(&at_limit, 60_000), "b"), Status::Ok);
    }

    #[test]
    fn a_slow_path_is_a_warning_and_unjudged_paths_are_unknown() {
        let mut judge = Judge::new(settings());
        let mut slow = figures("b", 10, 0, None);
        slow.rtt_p95_ms = Some(250.0);
        let judged = judge.judge(&report(vec![slow, figures("c", 0, 0, None)]), 0);
        assert_eq!(status_of(&judged, "b"), Status::Warning);
        assert_eq!(status_of(&judged, "c"), Status::Unknown);
    }

    #[test]
    fn peers_missing_from_a_report_are_retired_at_once() {
        let mut judge = Judge::new(settings());
        judge.judge(
            &report(vec![figures("b", 1, 0, None), figures("c", 1, 0, None)]),
            0,
        );
        let judged = judge.judge(&report(vec![figures("c", 1, 0, None)]), 1);
        assert_eq!(judged.retired, ["b"]);
        assert_eq!(judge.paths().count(), 1);
        assert_eq!(judge.retire_all(), ["c"]);
    }

    #[test]
    fn clock_drift_has_the_right_sign_and_needs_a_majority() {
        let mut judge = Judge::new(settings());
        // Both peers read 1.5 s less than us: we are ahead.
        let ahead = report(vec![
            figures("b", 1, 0, Some(-1_500.0)),
            figures("c", 1, 0, Some(-1_480.0)),
        ]);
        let (verdict, offset) = judge.judge(&ahead, 0).clock.expect("compared");
        assert_eq!(offset, 1_480.0);
        assert_eq!(verdict.status, Status::Critical);
        assert!(
            verdict.message.contains("1.48 s ahead of"),
            "{}",
            verdict.message
        );
        // One peer off by 2 s, one in step: we are not the one drifting.
        let one_off = report(vec![
            figures("b", 1, 0, Some(2_000.0)),
            figures("c", 1, 0, Some(3.0)),
        ]);
        let (verdict, offset) = judge.judge(&one_off, 0).clock.expect("compared");
        assert_eq!((verdict.status, offset), (Status::Ok, -3.0));
        // A 400 ms lag is a warning, behind.
        let behind = report(vec![
            figures("b", 1, 0, Some(400.0)),
            figures("c", 1, 0, Some(410.0)),
        ]);
        let (verdict, _) = judge.judge(&behind, 0).clock.expect("compared");
        assert_eq!(verdict.status, Status::Warning);
        assert!(verdict.message.contains("behind"));
        assert!(
            verdict.message.contains("warning at 300ms, critical at 1s"),
            "{}",
            verdict.message
        );
        assert!(
            judge
                .judge(&report(vec![figures("b", 1, 0, None)]), 0)
                .clock
                .is_none()
        );
    }
}
