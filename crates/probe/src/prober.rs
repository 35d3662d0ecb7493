//! The probe's protocol logic, sans-IO: which peers to ping, what to answer,
//! what to report. No socket and no clock inside; the loop in `probe.rs`
//! passes both times in (monotonic for RTTs, wall for drift), so a test can
//! give one probe a clock that is off.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use super::window::{PeerWindow, WindowTiming};
use super::wire::{Echo, PeerReport, ProbeReport, ProbeTarget};

#[derive(Debug)]
struct Target {
    addr: SocketAddr,
    window: PeerWindow,
}

#[derive(Debug)]
pub struct Prober {
    me: String,
    probe_addr: SocketAddr,
    timing: WindowTiming,
    next_seq: u64,
    targets: BTreeMap<String, Target>,
    /// When each source last pinged us.
    pinged_by: HashMap<String, Duration>,
}

impl Prober {
    pub fn new(me: String, probe_addr: SocketAddr, timing: WindowTiming) -> Self {
        Prober {
            me,
            probe_addr,
            timing,
            next_seq: 0,
            targets: BTreeMap::new(),
            pinged_by: HashMap::new(),
        }
    }

    pub fn timing(&self) -> WindowTiming {
        self.timing
    }

    pub fn set_timing(&mut self, timing: WindowTiming) {
        self.timing = timing;
    }

    /// Replace the peers to probe. A peer that stays keeps its window; one
    /// that is gone is forgotten at once, so no stale figures are reported.
    pub fn set_targets(&mut self, targets: &[ProbeTarget]) {
        let mut next = BTreeMap::new();
        for target in targets.iter().filter(|t| t.node != self.me) {
            let window = match self.targets.remove(&target.node) {
                // A peer whose probe moved (a new pod IP) starts afresh.
                Some(old) if old.addr == target.addr => old.window,
                _ => PeerWindow::default(),
            };
            next.insert(
                target.node.clone(),
                Target {
                    addr: target.addr,
                    window,
                },
            );
        }
        self.targets = next;
    }

    /// One ping for every target.
    pub fn tick(&mut self, now: Duration, wall_unix_ms: u64) -> Vec<(SocketAddr, Echo)> {
        let mut out = Vec::with_capacity(self.targets.len());
        for target in self.targets.values_mut() {
            target.window.expire(now, &self.timing);
            self.next_seq += 1;
            target.window.sent(self.next_seq, now);
            out.push((
                target.addr,
                Echo::Ping {
                    from: self.me.clone(),
                    seq: self.next_seq,
                    sent_unix_ms: wall_unix_ms,
                },
            ));
        }
        let horizon = self.timing.window;
        self.pinged_by
            .retain(|_, at| now.saturating_sub(*at) <= horizon);
        out
    }

    /// Handle a datagram that opened under the cluster key; the answer to
    /// send back to its sender, if any.
    pub fn receive(&mut self, echo: Echo, now: Duration, wall_unix_ms: u64) -> Option<Echo> {
        match echo {
            Echo::Ping {
                from,
                seq,
                sent_unix_ms,
            } => {
                if from != self.me {
                    self.pinged_by.insert(from, now);
                }
                Some(Echo::Pong {
                    from: self.me.clone(),
                    seq,
                    sent_unix_ms,
                    answered_unix_ms: wall_unix_ms,
                })
            }
            Echo::Pong {
                from,
                seq,
                sent_unix_ms,
                answered_unix_ms,
            } => {
                if let Some(target) = self.targets.get_mut(&from) {
                    target
                        .window
                        .answered(seq, now, sent_unix_ms, answered_unix_ms, &self.timing);
                }
                None
            }
        }
    }

    pub fn report(&self, now: Duration) -> ProbeReport {
        let peers: Vec<PeerReport> = self
            .targets
            .iter()
            .map(|(node, target)| target.window.report(node, now, &self.timing))
            .collect();
        let mut probed_by: Vec<String> = self.pinged_by.keys().cloned().collect();
        probed_by.sort_unstable();
        ProbeReport {
            node: self.me.clone(),
            probe_addr: self.probe_addr,
            window_ms: self.timing.window.as_millis() as u64,
            peers,
            probed_by,
            sent_bytes: 0,
            received_bytes: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::TEST_TIMING as TIMING;

    fn target(node: &str, port: u16) -> ProbeTarget {
        ProbeTarget {
            node: node.to_owned(),
            addr: SocketAddr::from(([10, 244, 0, 1], port)),
        }
    }

    fn prober(me: &str) -> Prober {
        Prober::new(me.to_owned(), target(me, 1).addr, TIMING)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Two probes wired back to back; `b`'s wall clock runs `skew` ahead.
    #[test]
    fn two_probes_measure_each_other_and_the_skew_with_its_sign() {
        let mut a = prober("a");
        let mut b = prober("b");
        a.set_targets(&[target("b", 2)]);
        b.set_targets(&[target("a", 1)]);
        let skew = 2_000u64;
        for step in 0..20u64 {
            let now = ms(step * 100);
            let wall = 1_000_000 + step * 100;
            for (_, ping) in a.tick(now, wall) {
                // 10 ms each way.
                let pong = b
                    .receive(ping, now + ms(10), wall + 10 + skew)
                    .expect("answers");
                assert!(a.receive(pong, now + ms(20), wall + 20).is_none());
            }
            for (_, ping) in b.tick(now, wall + skew) {
                let pong = a.receive(ping, now + ms(10), wall + 10).expect("answers");
                b.receive(pong, now + ms(20), wall + 20 + skew);
            }
        }
        let from_a = a.report(ms(2_000));
        let peer = &from_a.peers[0];
        assert_eq!((peer.sent, peer.lost), (20, 0));
        assert_eq!(peer.rtt_p50_ms, Some(20.0));
        assert_eq!(peer.clock_offset_ms, Some(2_000.0), "b is ahead of a");
        assert_eq!(from_a.probed_by, vec!["b".to_owned()]);
        let from_b = b.report(ms(2_000));
        assert_eq!(
            from_b.peers[0].clock_offset_ms,
            Some(-2_000.0),
            "a is behind b"
        );
    }

    #[test]
    fn a_peer_that_leaves_the_targets_leaves_the_report_at_once() {
        let mut a = prober("a");
        a.set_targets(&[target("b", 2), target("c", 3), target("a", 1)]);
        assert_eq!(a.tick(ms(0), 0).len(), 2, "never probes itself");
        a.set_targets(&[target("c", 3)]);
        let report = a.report(ms(5_000));
        let names: Vec<&str> = report.peers.iter().map(|p| p.node.as_str()).collect();
        assert_eq!(names, ["c"]);
        assert_eq!(report.peers[0].lost, 1, "c kept its window");
    }

    #[test]
    fn a_pong_from_someone_never_pinged_changes_nothing() {
        let mut a = prober("a");
        a.set_targets(&[target("b", 2)]);
        a.tick(ms(0), 0);
        let forged = Echo::Pong {
            from: "b".into(),
            seq: 999,
            sent_unix_ms: 0,
            answered_unix_ms: 0,
        };
        assert!(a.receive(forged, ms(5), 5).is_none());
        let report = a.report(ms(2_000));
        assert_eq!((report.peers[0].sent, report.peers[0].lost), (1, 1));
    }

    #[test]
    fn coverage_forgets_sources_older_than_the_window() {
        let mut a = prober("a");
        let ping = |from: &str| Echo::Ping {
            from: from.into(),
            seq: 1,
            sent_unix_ms: 0,
        };
        a.receive(ping("b"), ms(0), 0);
        a.receive(ping("c"), ms(9_000), 0);
        a.tick(ms(10_500), 0);
        assert_eq!(a.report(ms(10_500)).probed_by, vec!["c".to_owned()]);
    }
}
