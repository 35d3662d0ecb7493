//! etcd's own metrics (`/metrics` on a client URL or kubeadm's plain
//! metrics port), for what one read cannot show: a slow disk. etcd's
//! published guidance is a WAL fsync p99 under 10 ms and a backend commit
//! p99 under 25 ms; above that, the leader misses heartbeats, leaders
//! change and proposals fail — the incident the Satellite article tells,
//! with `/health` fine most of the time.
//!
//! Quantiles are taken over the interval since the previous run (bucket
//! counts subtracted), not since etcd started: a disk slow now is not
//! diluted by a year of fast fsyncs.

use std::time::Duration;

/// Fewer fsyncs than this in an interval say nothing about a percentile;
/// an idle etcd (reads only) writes almost nothing.
pub(super) const MIN_SAMPLES: f64 = 20.0;
/// A p99 this many times etcd's guidance is critical, not a warning.
const CRITICAL_FACTOR: u32 = 10;

/// The guidance the figures are judged against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskLimits {
    /// WAL fsync p99 above this is a slow disk (etcd: 10 ms).
    pub wal_fsync_p99: Duration,
    /// Backend commit p99 above this is a slow disk (etcd: 25 ms).
    pub backend_commit_p99: Duration,
}

impl Default for DiskLimits {
    fn default() -> Self {
        DiskLimits {
            wal_fsync_p99: Duration::from_millis(10),
            backend_commit_p99: Duration::from_millis(25),
        }
    }
}

/// A cumulative Prometheus histogram: (upper bound, count at or below).
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Histogram {
    buckets: Vec<(f64, f64)>,
}

/// What one scrape of `/metrics` holds that the check uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Scrape {
    wal_fsync: Histogram,
    backend_commit: Histogram,
    leader_changes: f64,
    proposals_failed: f64,
    pub(super) quota_bytes: Option<f64>,
}

/// The figures of one interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct DiskFigures {
    pub(super) wal_fsync_p99: Option<Duration>,
    pub(super) backend_commit_p99: Option<Duration>,
    /// WAL fsyncs in the interval judged.
    pub(super) fsyncs: u64,
    pub(super) leader_changes: u64,
    pub(super) proposals_failed: u64,
}

pub(super) fn parse(text: &str) -> Scrape {
    let mut scrape = Scrape::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        match name {
            "etcd_disk_wal_fsync_duration_seconds_bucket" => {
                push_bucket(&mut scrape.wal_fsync, labels, value);
            }
            "etcd_disk_backend_commit_duration_seconds_bucket" => {
                push_bucket(&mut scrape.backend_commit, labels, value);
            }
            "etcd_server_leader_changes_seen_total" => scrape.leader_changes = value,
            "etcd_server_proposals_failed_total" => scrape.proposals_failed = value,
            "etcd_server_quota_backend_bytes" => scrape.quota_bytes = Some(value),
            _ => {}
        }
    }
    scrape
}

fn push_bucket(histogram: &mut Histogram, labels: &str, count: f64) {
    let bound = labels
        .split(',')
        .find_map(|label| label.trim().strip_prefix("le=\""))
        .and_then(|rest| rest.split('"').next())
        .and_then(|le| match le {
            "+Inf" => Some(f64::INFINITY),
            le => le.parse().ok(),
        });
    if let Some(bound) = bound {
        histogram.buckets.push((bound, count));
    }
}

impl Histogram {
    fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |&(_, count)| count)
    }

    /// This histogram less an earlier one of the same series; the earlier
    /// one is ignored if etcd restarted meanwhile (counts went down).
    fn since(&self, earlier: &Histogram) -> Histogram {
        if earlier.buckets.len() != self.buckets.len() || earlier.count() > self.count() {
            return self.clone();
        }
        let buckets = self
            .buckets
            .iter()
            .zip(&earlier.buckets)
            .map(|(&(bound, now), &(_, then))| (bound, now - then))
            .collect();
        Histogram { buckets }
    }

    /// The `q` quantile, interpolated inside its bucket as Prometheus's
    /// `histogram_quantile` does; `None` under [`MIN_SAMPLES`].
    fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total < MIN_SAMPLES {
            return None;
        }
        let rank = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(upper, count) in &self.buckets {
            if count >= rank {
                if upper.is_infinite() {
                    return Some(Duration::from_secs_f64(lower));
                }
                let inside = count - below;
                let fraction = if inside > 0.0 {
                    (rank - below) / inside
                } else {
                    1.0
                };
                return Some(Duration::from_secs_f64(lower + (upper - lower) * fraction));
            }
            (lower, below) = (upper, count);
        }
        None
    }
}

/// The figures since `before` (the previous run's scrape), or since etcd
/// started when there is none.
pub(super) fn figures(now: &Scrape, before: Option<&Scrape>) -> DiskFigures {
    let empty = Scrape::default();
    let before = before.unwrap_or(&empty);
    let wal = now.wal_fsync.since(&before.wal_fsync);
    let commit = now.backend_commit.since(&before.backend_commit);
    // A counter that went down means etcd restarted: its first election
    // is not a leader change, so nothing is counted for that interval.
    let grew = |now: f64, then: f64| (now - then).max(0.0);
    DiskFigures {
        wal_fsync_p99: wal.quantile(0.99),
        backend_commit_p99: commit.quantile(0.99),
        fsyncs: wal.count() as u64,
        leader_changes: grew(now.leader_changes, before.leader_changes) as u64,
        proposals_failed: grew(now.proposals_failed, before.proposals_failed) as u64,
    }
}

/// What the figures say about etcd's disk: `(critical, line)` per finding.
/// Leader changes and failed proposals count only between two runs (the
/// first scrape's totals include etcd's own start).
pub(super) fn judge_disk(
    figures: &DiskFigures,
    limits: &DiskLimits,
    interval_known: bool,
) -> Vec<(bool, String)> {
    let mut found = Vec::new();
    for (what, p99, limit) in [
        ("WAL fsync", figures.wal_fsync_p99, limits.wal_fsync_p99),
        (
            "backend commit",
            figures.backend_commit_p99,
            limits.backend_commit_p99,
        ),
    ] {
        if let Some(p99) = p99.filter(|p99| *p99 > limit) {
            found.push((
                p99 > limit * CRITICAL_FACTOR,
                format!(
                    "etcd's disk is slow: {what} p99 {} (etcd wants under {})",
                    millis(p99),
                    millis(limit)
                ),
            ));
        }
    }
    if interval_known && figures.leader_changes > 0 {
        found.push((
            false,
            format!(
                "etcd changed leader {} time(s) since the last check",
                figures.leader_changes
            ),
        ));
    }
    if interval_known && figures.proposals_failed > 0 {
        found.push((
            false,
            format!(
                "{} etcd proposal(s) failed since the last check",
                figures.proposals_failed
            ),
        ));
    }
    found
}

pub(super) fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape etcd 3.4 serves, with `n` fsyncs in each of two buckets.
    fn exposition(fast: u32, slow: u32, leader_changes: u32) -> String {
        let mut text = String::from("# HELP etcd_disk_wal_fsync_duration_seconds x\n");
        for (le, count) in [
            ("0.001", 0),
            ("0.002", fast),
            ("0.004", fast),
            ("0.064", fast),
            ("0.128", fast + slow),
            ("+Inf", fast + slow),
        ] {
            text.push_str(&format!(
                "etcd_disk_wal_fsync_duration_seconds_bucket{{le=\"{le}\"}} {count}\n"
            ));
        }
        text.push_str(&format!(
            "etcd_server_leader_changes_seen_total {leader_changes}\n\
             etcd_server_quota_backend_bytes 2.147483648e+09\n"
        ));
        text
    }

    #[test]
    fn a_slow_interval_is_named_even_after_a_long_fast_history() {
        let limits = DiskLimits::default();
        let before = parse(&exposition(100_000, 0, 1));
        assert_eq!(before.quota_bytes, Some(2_147_483_648.0));
        // 100 new fsyncs, 5 of them slow: p99 falls in the 64–128 ms bucket.
        let now = parse(&exposition(100_095, 5, 3));
        let recent = figures(&now, Some(&before));
        assert_eq!(recent.fsyncs, 100);
        let p99 = recent.wal_fsync_p99.expect("enough samples");
        assert!(p99 > Duration::from_millis(64) && p99 < Duration::from_millis(128));
        let found = judge_disk(&recent, &limits, true);
        assert!(
            found[0]
                .1
                .starts_with("etcd's disk is slow: WAL fsync p99 ")
        );
        assert!(
            found[0].1.ends_with("(etcd wants under 10 ms)"),
            "{found:?}"
        );
        // 115 ms: over ten times the guidance, so critical.
        assert!(found[0].0, "{found:?}");
        let under_tenfold = DiskLimits {
            wal_fsync_p99: Duration::from_millis(20),
            ..limits
        };
        assert!(!judge_disk(&recent, &under_tenfold, true)[0].0);
        assert_eq!(
            found[1].1,
            "etcd changed leader 2 time(s) since the last check"
        );
        // Since start, the same 5 slow fsyncs vanish among 100,100.
        let diluted = figures(&now, None);
        assert!(diluted.wal_fsync_p99.expect("samples") < Duration::from_millis(3));
    }

    #[test]
    fn an_idle_interval_judges_nothing() {
        let before = parse(&exposition(50, 0, 1));
        let idle = figures(&parse(&exposition(55, 0, 1)), Some(&before));
        assert_eq!(idle.wal_fsync_p99, None);
        assert!(judge_disk(&idle, &DiskLimits::default(), true).is_empty());
    }
}
