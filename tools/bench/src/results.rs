//! What was measured, filled in as the benchmark goes, so that a system
//! that fails half-way still reports what it measured.

use std::time::Duration;

/// One dissemination or failure-detection run.
#[derive(Clone, Debug)]
pub struct RunTiming {
    pub victim: String,
    /// Agents that should have logged it.
    pub receivers: usize,
    /// From the signal to each receiver's line, sorted; fewer than
    /// `receivers` means the run timed out.
    pub times: Vec<Duration>,
}

impl RunTiming {
    pub fn new(victim: String, receivers: usize, mut times: Vec<Duration>) -> RunTiming {
        times.sort();
        RunTiming {
            victim,
            receivers,
            times,
        }
    }

    pub fn complete(&self) -> bool {
        self.times.len() >= self.receivers
    }

    pub fn first(&self) -> Option<Duration> {
        self.times.first().copied()
    }

    /// The last receiver, only if everyone received it.
    pub fn last(&self) -> Option<Duration> {
        self.times.last().copied().filter(|_| self.complete())
    }

    /// The median receiver, only if everyone received it.
    pub fn median(&self) -> Option<Duration> {
        let secs: Vec<f64> = self.times.iter().map(Duration::as_secs_f64).collect();
        median(&secs)
            .map(Duration::from_secs_f64)
            .filter(|_| self.complete())
    }
}

/// The idle window.
#[derive(Clone, Debug, Default)]
pub struct Idle {
    /// Per agent: the median of its VmRSS samples, KiB.
    pub rss_kib: Vec<f64>,
    /// Per agent: CPU time over the window, % of one core.
    pub cpu_percent: Vec<f64>,
    /// Loopback tx bytes over the window, per second, per agent.
    pub lo_bytes_per_sec: f64,
    /// starling's own sent-bytes counter, per second, per agent (and how
    /// many agents answered both scrapes).
    pub counter_bytes_per_sec: Option<(f64, usize)>,
}

#[derive(Clone, Debug)]
pub struct SystemResult {
    pub system: &'static str,
    /// First and last address of its block.
    pub addresses: String,
    /// Loopback background traffic before the agents started, bytes/s.
    pub lo_background: Option<f64>,
    pub convergence: Option<Duration>,
    pub idle: Option<Idle>,
    /// Suspect/down/left lines logged during settle and idle.
    pub idle_surprises: Vec<String>,
    pub leaves: Vec<RunTiming>,
    pub failures: Vec<RunTiming>,
    pub error: Option<String>,
}

impl SystemResult {
    pub fn new(system: &'static str, addresses: String) -> SystemResult {
        SystemResult {
            system,
            addresses,
            lo_background: None,
            convergence: None,
            idle: None,
            idle_surprises: Vec::new(),
            leaves: Vec::new(),
            failures: Vec::new(),
            error: None,
        }
    }
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
