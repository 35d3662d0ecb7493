//! What the overlay probe says: echo datagrams between probes, and the
//! report/assignment exchange with the local agent.
//!
//! Echo datagrams are postcard inside the gossip envelope (purpose
//! `Echo`): the AEAD tag is the cluster key's MAC, so a sender without the
//! key cannot answer for a peer and fake reachability. Reports travel as
//! sealed JSON over the agent's HTTP port, like sync requests.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// One echo datagram. Names travel inside so a probe can tell who pinged it
/// (coverage) and match answers without trusting source addresses, which
/// NAT or a multi-homed pod may change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Echo {
    Ping {
        from: String,
        seq: u64,
        /// The sender's wall clock when it sent, echoed back for drift.
        sent_unix_ms: u64,
    },
    Pong {
        from: String,
        seq: u64,
        sent_unix_ms: u64,
        /// The responder's wall clock when it answered.
        answered_unix_ms: u64,
    },
}

/// Names longer than Kubernetes allows are refused before encoding, so a
/// datagram always fits one UDP packet on any MTU.
pub const MAX_ECHO_BYTES: usize = 512;

impl Echo {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("an echo of bounded fields always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Echo, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// What a probe tells its local agent, every report interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// Must be the agent's own node name: a probe scheduled on the wrong
    /// node (or pointed at the wrong agent) is refused, not believed.
    pub node: String,
    /// Where this probe answers echo: the agent gossips it.
    pub probe_addr: SocketAddr,
    /// The window the figures cover.
    pub window_ms: u64,
    pub peers: Vec<PeerReport>,
    /// Distinct probes that pinged this one within the window: proof that
    /// this node's pod address is actually covered.
    pub probed_by: Vec<String>,
    /// Echo bytes (sealed, UDP payload) since the probe started: its
    /// cost on the pod network, exported by the agent.
    pub sent_bytes: u64,
    pub received_bytes: u64,
}

/// One peer's figures over the window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerReport {
    pub node: String,
    /// Pings old enough to have been answered.
    pub sent: u32,
    /// Of those, the unanswered ones.
    pub lost: u32,
    pub rtt_p50_ms: Option<f64>,
    pub rtt_p95_ms: Option<f64>,
    /// The peer's clock minus ours, from round trips short enough to
    /// bound the error (RTT-compensated); `None` without such a sample.
    pub clock_offset_ms: Option<f64>,
}

impl PeerReport {
    pub fn loss_ratio(&self) -> Option<f64> {
        (self.sent > 0).then(|| f64::from(self.lost) / f64::from(self.sent))
    }
}

/// The agent's answer to a report: whom to probe and how often. The agent
/// holds these settings so an operator configures the overlay in one place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeAssignment {
    pub targets: Vec<ProbeTarget>,
    pub interval_ms: u64,
    pub window_ms: u64,
    pub report_interval_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeTarget {
    pub node: String,
    pub addr: SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_round_trip_and_stay_small() {
        let long = "n".repeat(253);
        for echo in [
            Echo::Ping {
                from: long.clone(),
                seq: u64::MAX,
                sent_unix_ms: u64::MAX,
            },
            Echo::Pong {
                from: long.clone(),
                seq: u64::MAX,
                sent_unix_ms: u64::MAX,
                answered_unix_ms: u64::MAX,
            },
        ] {
            let bytes = echo.encode();
            assert!(bytes.len() <= MAX_ECHO_BYTES, "{} bytes", bytes.len());
            assert_eq!(Echo::decode(&bytes).expect("decodes"), echo);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for junk in [&b""[..], b"\xff\xff\xff", b"\x00"] {
            assert!(Echo::decode(junk).is_err());
        }
    }
}
