//! Lifeguard's local health awareness: when *we* are the slow one, give
//! others more time before we blame them.

use std::time::Duration;

/// A saturating score: failed probes and stalls of our own loop raise it,
/// successful probes lower it. Probe timeouts are multiplied by
/// `1 + score`, so a node starved of CPU or bandwidth stops suspecting
/// healthy peers for its own lateness.
#[derive(Debug)]
pub(crate) struct LocalHealth {
    score: u32,
    max: u32,
}

impl LocalHealth {
    pub fn new(max: u32) -> Self {
        LocalHealth { score: 0, max }
    }

    pub fn score(&self) -> u32 {
        self.score
    }

    pub fn probe_failed(&mut self) {
        self.raise(1);
    }

    pub fn probe_succeeded(&mut self) {
        self.score = self.score.saturating_sub(1);
    }

    /// Our own timers fired late: the strongest evidence that we, not the
    /// peer, are unhealthy.
    pub fn stalled(&mut self) {
        self.raise(2);
    }

    pub fn scale(&self, timeout: Duration) -> Duration {
        timeout * (1 + self.score)
    }

    fn raise(&mut self, by: u32) {
        self.score = (self.score + by).min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_saturates_and_recovers() {
        let mut health = LocalHealth::new(3);
        let base = Duration::from_millis(100);
        assert_eq!(health.scale(base), base);
        for _ in 0..10 {
            health.probe_failed();
        }
        assert_eq!(health.score(), 3);
        assert_eq!(health.scale(base), base * 4);
        health.probe_succeeded();
        health.probe_succeeded();
        health.probe_succeeded();
        health.probe_succeeded();
        assert_eq!(health.score(), 0);
        health.stalled();
        assert_eq!(health.score(), 2);
    }
}
