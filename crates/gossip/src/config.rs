//! Gossip timing, derived from the cluster size.

use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use foca::PeriodicParams;

/// Protocol timings. foca's `Config::new_lan` is the starting point; the
/// differences are ours and each says why.
#[derive(Clone, Debug, PartialEq)]
pub struct GossipConfig {
    /// How often each member probes one other member. Shorter than
    /// memberlist's 1 s: detection speed is the product, and the extra
    /// traffic is one tiny datagram per member per period.
    pub probe_period: Duration,
    /// How long to wait for a direct ack before asking others to probe.
    /// Generous for a LAN (p99 RTT is milliseconds) so that a busy node is
    /// not suspected for its scheduling latency.
    pub probe_rtt: Duration,
    /// Members asked to probe indirectly when the direct probe times out.
    pub indirect_probes: usize,
    /// How often updates are pushed to `gossip_fanout` random members, on
    /// top of the piggyback on probes. Costs nothing when there is no news
    /// (foca only gossips pending updates); speeds up suspicions, their
    /// confirmations and Down alike.
    pub gossip_interval: Duration,
    pub gossip_fanout: usize,
    /// Lifeguard's suspicion timeout: the minimum is
    /// `suspicion_mult * log10(max(n, 10)) * probe_period`, reached once
    /// `confirmations` other members independently suspect the same node.
    pub suspicion_mult: f64,
    /// The timeout with no confirmation, as a multiple of the minimum. A
    /// lone suspicion is the usual symptom of packet loss, so it gets the
    /// time to be refuted.
    pub suspicion_max_mult: f64,
    /// No suspicion times out sooner, however many confirm it: a node
    /// frozen for a moment (a GC pause, a CPU-starved container, SIGSTOP)
    /// must be able to wake and refute before it is declared down. With a
    /// 0.4 s probe period the earliest a frozen node is suspected is 0.4 s
    /// into the freeze, so 2 s here lets freezes of up to 2 s pass as
    /// suspicions (it wakes at 2 s, its refutation arrives by 2.4 s).
    /// Lifeguard's formula alone gives 0.4 s at 10 members or fewer.
    pub suspicion_floor: Duration,
    pub confirmations: usize,
    /// Full-state exchange with one random member over TCP; scaled up for
    /// large clusters as memberlist does, since each exchange is O(n).
    pub push_pull_interval: Duration,
    /// Upper bound of the local-health score; probe timeouts are stretched
    /// by `1 + score`.
    pub max_local_health: u32,
    /// The largest foca payload; the envelope adds its own overhead on top
    /// and the sum must stay under a typical 1500-byte MTU.
    pub max_packet_size: usize,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            probe_period: Duration::from_millis(400),
            probe_rtt: Duration::from_millis(200),
            indirect_probes: 3,
            gossip_interval: Duration::from_millis(100),
            gossip_fanout: 3,
            suspicion_mult: 1.0,
            suspicion_max_mult: 6.0,
            suspicion_floor: Duration::from_secs(2),
            confirmations: 2,
            push_pull_interval: Duration::from_secs(15),
            max_local_health: 8,
            max_packet_size: 1400 - starling_seal::OVERHEAD,
        }
    }
}

impl GossipConfig {
    /// The (min, max) suspicion timeout for a cluster of `members`: the
    /// floor holds for both, at every size.
    pub fn suspicion_bounds(&self, members: usize) -> (Duration, Duration) {
        let scale = (members.max(10) as f64).log10();
        let lifeguard = self.probe_period.mul_f64(self.suspicion_mult * scale);
        let min = lifeguard.max(self.suspicion_floor);
        let max = lifeguard.mul_f64(self.suspicion_max_mult).max(min);
        (min, max)
    }

    /// Confirmations needed to reach the minimum timeout: never more than
    /// the members that could possibly confirm (everyone but us and the
    /// suspect).
    pub fn expected_confirmations(&self, members: usize) -> usize {
        self.confirmations.min(members.saturating_sub(2))
    }

    pub fn push_pull_interval(&self, members: usize) -> Duration {
        // memberlist's pushPullScale: one extra interval per doubling past 32.
        let extra = if members > 32 {
            (members as f64).log2().ceil() - 32f64.log2()
        } else {
            0.0
        };
        self.push_pull_interval.mul_f64(1.0 + extra)
    }

    /// The foca configuration for a cluster of `members`.
    ///
    /// `suspect_to_down_after` is the maximum: our suspicion tracker fires
    /// the timer earlier as confirmations arrive.
    pub fn foca_config(&self, members: usize) -> foca::Config {
        let mut config = foca::Config::new_lan(
            std::num::NonZeroU32::new(members.max(1) as u32).expect("max(1) is non-zero"),
        );
        config.probe_period = self.probe_period;
        config.probe_rtt = self.probe_rtt;
        config.num_indirect_probes =
            NonZeroUsize::new(self.indirect_probes.max(1)).expect("max(1) is non-zero");
        config.suspect_to_down_after = self.suspicion_bounds(members).1;
        config.max_packet_size =
            NonZeroUsize::new(self.max_packet_size).expect("packet size is configured non-zero");
        config.max_transmissions = max_transmissions(members);
        config.periodic_gossip = Some(PeriodicParams {
            frequency: self.gossip_interval,
            num_members: NonZeroUsize::new(self.gossip_fanout.max(1)).expect("max(1) is non-zero"),
        });
        // A down member that is alive again (a healed partition) must learn
        // it was declared down so it can renew its identity and rejoin.
        config.notify_down_members = true;
        config.periodic_announce_to_down_members = Some(PeriodicParams {
            frequency: Duration::from_secs(5),
            num_members: NonZeroUsize::new(2).expect("literal is non-zero"),
        });
        config
    }
}

/// How often each member passes an update on: enough that the update
/// misses no member in all but one of a thousand. With `k` sends to
/// random members by each of `n` members, a given member is missed with
/// probability about `e^-k`, so some member is with about `n e^-k`; `k =
/// ln(1000 n)` holds that to 0.1%. memberlist's `4 log10(n + 1)` (7 at
/// 50 members) left one member of 50 without one update in about 16 in
/// the simulation (`starling-bench scale --nodes 50 --idle-window 5`,
/// seeds 1 to 16): it learned of a crash only by its own probe, seconds
/// after the others, and of a pushed row only by anti-entropy.
fn max_transmissions(members: usize) -> NonZeroU8 {
    let tx = (1000.0 * members.max(1) as f64).ln().ceil().min(255.0);
    NonZeroU8::new(tx as u8).expect("ln(1000) > 6, at most 255")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_passed_on_often_enough_to_miss_nobody() {
        let tx = |n| max_transmissions(n).get();
        assert_eq!(
            [tx(1), tx(5), tx(50), tx(1000), tx(5000)],
            [7, 9, 11, 14, 16]
        );
        for n in [5usize, 50, 1000, 5000] {
            let expected_missed = n as f64 * (-f64::from(tx(n))).exp();
            assert!(expected_missed <= 0.001, "{n}: {expected_missed}");
        }
    }

    #[test]
    fn suspicion_grows_with_the_cluster_and_never_undercuts_the_floor() {
        let config = GossipConfig::default();
        for members in [2, 5, 10, 50, 1000, 5000, 100_000] {
            let (min, max) = config.suspicion_bounds(members);
            assert!(min >= config.suspicion_floor, "{members}: {min:?}");
            assert!(max >= min, "{members}");
        }
        let (_, small_max) = config.suspicion_bounds(5);
        let (big_min, big_max) = config.suspicion_bounds(1_000_000);
        assert!(big_max > small_max);
        assert!(
            big_min > config.suspicion_floor,
            "past the floor, Lifeguard's formula rules"
        );
        assert_eq!(
            config.suspicion_bounds(5).0,
            Duration::from_secs(2),
            "a 2 s freeze is not a death"
        );
        assert_eq!(
            config.foca_config(1000).suspect_to_down_after,
            config.suspicion_bounds(1000).1
        );
    }

    #[test]
    fn confirmations_never_exceed_possible_witnesses() {
        let config = GossipConfig::default();
        assert_eq!(config.expected_confirmations(2), 0);
        assert_eq!(config.expected_confirmations(3), 1);
        assert_eq!(config.expected_confirmations(100), 2);
    }

    #[test]
    fn push_pull_slows_down_past_32_members() {
        let config = GossipConfig::default();
        assert_eq!(config.push_pull_interval(10), config.push_pull_interval);
        assert!(config.push_pull_interval(1000) > config.push_pull_interval(64));
    }
}
