//! The JSON shapes of the API. The CLI deserializes the same types, so the
//! two cannot drift apart.

use serde::{Deserialize, Serialize};

/// One gossip member as the answering node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    /// Gossip address (UDP and TCP).
    pub addr: String,
    /// Process incarnation: higher after every restart or renewal.
    pub incarnation: u64,
    pub role: String,
    pub api_addr: Option<String>,
    pub probe_addr: Option<String>,
    /// `alive`, `suspect`, `down` or `left`.
    pub state: String,
    /// When the member entered `state`, Unix milliseconds.
    pub since_unix_ms: u64,
}

/// Members per state, from the answering node's point of view.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    pub alive: usize,
    pub suspect: usize,
    pub down: usize,
    pub left: usize,
}

/// `GET /v1/members`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersResponse {
    /// Which node answered: any node can answer for the cluster.
    pub answered_by: String,
    pub answered_at_unix_ms: u64,
    /// Counts include the answering node itself (always alive to itself).
    pub counts: StateCounts,
    /// Lifeguard local-health score of the answering node (0 is healthy).
    pub local_health: u32,
    /// Every member, the answering node included, sorted by name.
    pub members: Vec<Member>,
}

/// Every error body: `{"error": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}
