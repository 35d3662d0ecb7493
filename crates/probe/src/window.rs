//! One peer's sliding window of echo samples. Sans-IO: callers pass the
//! monotonic time, so tests replay any timeline.

use std::collections::VecDeque;
use std::time::Duration;

use super::wire::PeerReport;

#[derive(Clone, Copy, Debug)]
struct Sample {
    seq: u64,
    sent: Duration,
    rtt: Option<Duration>,
    /// Peer clock minus ours, when the round trip was short enough.
    offset_ms: Option<f64>,
}

/// How samples are judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowTiming {
    /// How far back samples count.
    pub window: Duration,
    /// An echo not back within this is lost. Younger pings are pending:
    /// counting them as lost would report loss on a healthy path.
    pub timeout: Duration,
    /// Round trips above this are too uncertain for clock offsets (the
    /// error is up to half the RTT) and are left out of drift.
    pub max_offset_rtt: Duration,
}

#[derive(Debug, Default)]
pub struct PeerWindow {
    samples: VecDeque<Sample>,
}

impl PeerWindow {
    pub fn sent(&mut self, seq: u64, now: Duration) {
        self.samples.push_back(Sample {
            seq,
            sent: now,
            rtt: None,
            offset_ms: None,
        });
    }

    /// Record an answer. `false` when `seq` is unknown or already answered
    /// (a duplicate or a replay), which is then ignored.
    pub fn answered(
        &mut self,
        seq: u64,
        now: Duration,
        sent_unix_ms: u64,
        answered_unix_ms: u64,
        timing: &WindowTiming,
    ) -> bool {
        let Some(sample) = self.samples.iter_mut().find(|s| s.seq == seq) else {
            return false;
        };
        if sample.rtt.is_some() {
            return false;
        }
        let rtt = now.saturating_sub(sample.sent);
        sample.rtt = Some(rtt);
        if rtt <= timing.max_offset_rtt {
            // The peer read its clock about half a round trip after ours.
            let midpoint = sent_unix_ms as f64 + rtt.as_secs_f64() * 500.0;
            sample.offset_ms = Some(answered_unix_ms as f64 - midpoint);
        }
        true
    }

    /// Drop samples older than the window.
    pub fn expire(&mut self, now: Duration, timing: &WindowTiming) {
        while let Some(first) = self.samples.front() {
            if now.saturating_sub(first.sent) <= timing.window {
                break;
            }
            self.samples.pop_front();
        }
    }

    pub fn report(&self, node: &str, now: Duration, timing: &WindowTiming) -> PeerReport {
        let mut sent = 0u32;
        let mut lost = 0u32;
        let mut rtts: Vec<Duration> = Vec::new();
        let mut offsets: Vec<f64> = Vec::new();
        for sample in &self.samples {
            if let Some(rtt) = sample.rtt {
                sent += 1;
                rtts.push(rtt);
                offsets.extend(sample.offset_ms);
            } else if now.saturating_sub(sample.sent) >= timing.timeout {
                sent += 1;
                lost += 1;
            }
        }
        rtts.sort_unstable();
        offsets.sort_unstable_by(f64::total_cmp);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        PeerReport {
            node: node.to_owned(),
            sent,
            lost,
            rtt_p50_ms: nearest_rank(&rtts, 50).map(ms),
            rtt_p95_ms: nearest_rank(&rtts, 95).map(ms),
            clock_offset_ms: nearest_rank(&offsets, 50),
        }
    }
}

/// The nearest-rank percentile of sorted values.
fn nearest_rank<T: Copy>(sorted: &[T], percentile: usize) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (percentile * sorted.len()).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

/// A 10 s window, 1 s timeout, 100 ms bound for offsets: the tests' timing.
#[cfg(test)]
pub(crate) const TEST_TIMING: WindowTiming = WindowTiming {
    window: Duration::from_secs(10),
    timeout: Duration::from_secs(1),
    max_offset_rtt: Duration::from_millis(100),
};

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: WindowTiming = TEST_TIMING;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn pending_pings_are_not_loss_and_late_ones_are() {
        let mut window = PeerWindow::default();
        window.sent(1, ms(0));
        window.sent(2, ms(500));
        let report = window.report("b", ms(900), &TIMING);
        assert_eq!((report.sent, report.lost), (0, 0), "both still pending");
        let report = window.report("b", ms(1200), &TIMING);
        assert_eq!((report.sent, report.lost), (1, 1), "the first timed out");
        assert_eq!(report.loss_ratio(), Some(1.0));
    }

    #[test]
    fn percentiles_come_from_answered_pings_in_the_window() {
        let mut window = PeerWindow::default();
        for seq in 0..100u64 {
            let sent = ms(seq * 10);
            window.sent(seq, sent);
            // RTTs 1..=100 ms.
            window.answered(seq, sent + ms(seq + 1), 0, 0, &TIMING);
        }
        let report = window.report("b", ms(5_000), &TIMING);
        assert_eq!((report.sent, report.lost), (100, 0));
        assert_eq!(report.rtt_p50_ms, Some(50.0));
        assert_eq!(report.rtt_p95_ms, Some(95.0));
        window.expire(ms(10_500), &TIMING);
        let report = window.report("b", ms(10_500), &TIMING);
        assert_eq!(report.sent, 50, "samples older than the window are gone");
    }

    #[test]
    fn duplicates_and_unknown_answers_are_ignored() {
        let mut window = PeerWindow::default();
        window.sent(7, ms(0));
        assert!(window.answered(7, ms(2), 0, 0, &TIMING));
        assert!(!window.answered(7, ms(3), 0, 0, &TIMING), "a replay");
        assert!(!window.answered(8, ms(3), 0, 0, &TIMING), "never sent");
    }

    #[test]
    fn clock_offset_is_rtt_compensated_and_long_trips_are_discarded() {
        let mut window = PeerWindow::default();
        // Sent at our 10_000, answered by a clock 1_500 ms ahead, 40 ms
        // round trip: it read 10_000 + 20 + 1_500.
        window.sent(1, ms(0));
        window.answered(1, ms(40), 10_000, 11_520, &TIMING);
        // A 300 ms round trip says something else, and is not believed.
        window.sent(2, ms(100));
        window.answered(2, ms(400), 10_100, 10_100, &TIMING);
        let report = window.report("b", ms(1_000), &TIMING);
        assert_eq!(report.clock_offset_ms, Some(1_500.0));
    }
}
