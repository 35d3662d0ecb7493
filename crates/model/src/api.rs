//! The JSON shapes of the API. The CLI deserializes the same types, so the
//! two cannot drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::page::NodeCounts;
use crate::{EventKind, NodeHealth, Status};

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
    /// Members that match the request's filters, the answering node
    /// included; `members` is one page of them.
    #[serde(default)]
    pub members_matched: usize,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// One page of the members, sorted by name (see [`crate::MemberPage`]).
    pub members: Vec<Member>,
}

/// Every error body: `{"error": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// One row of the cluster's event log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// The log this row belongs to: the recording node's name and the id
    /// of its history database.
    pub origin: String,
    /// Position in the origin's log; (origin, seq) names the row.
    pub seq: u64,
    /// The node that recorded the event.
    pub observer: String,
    /// When it happened, Unix milliseconds, on the observer's clock.
    pub at_unix_ms: u64,
    pub kind: EventKind,
    /// The node the event is about.
    pub node: String,
    pub check: Option<String>,
    pub old_state: Option<String>,
    pub new_state: Option<String>,
    pub message: String,
}

/// `GET /v1/history`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryResponse {
    pub answered_by: String,
    pub answered_at_unix_ms: u64,
    /// Whose history the rows come from: the answering node, or in an
    /// aggregated cluster the aggregator it asked. `None` from releases
    /// before aggregators, which always answered from their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    /// Set when rows matching the filters may exist that this answer could
    /// not hold, and why: in an aggregated cluster with no aggregator
    /// answering, a node has only its own log and the cluster's latest
    /// health; older history is unavailable, not empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
    /// Newest first.
    pub events: Vec<HistoryEvent>,
    /// Pass as `cursor` (same filters) for the next, older page; `null`
    /// when this page was the last.
    pub next_cursor: Option<String>,
}

/// Where a history page ends: the last row's place in the newest-first
/// order (time, then origin and seq, which break ties between rows of the
/// same millisecond). The next page starts strictly after it, so paging
/// neither skips nor repeats rows, even while new rows arrive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryCursor {
    pub at_unix_ms: u64,
    pub origin: String,
    pub seq: u64,
}

impl std::fmt::Display for HistoryCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The origin goes last: it is the only part that may contain ':'.
        write!(f, "{}:{}:{}", self.at_unix_ms, self.seq, self.origin)
    }
}

impl std::str::FromStr for HistoryCursor {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut parts = text.splitn(3, ':');
        let mut number = || parts.next().and_then(|p| p.parse::<u64>().ok());
        match (number(), number(), parts.next()) {
            (Some(at_unix_ms), Some(seq), Some(origin)) if !origin.is_empty() => {
                Ok(HistoryCursor {
                    at_unix_ms,
                    origin: origin.to_owned(),
                    seq,
                })
            }
            _ => Err(format!(
                "{text:?} is not a cursor (pass back a response's next_cursor unchanged)"
            )),
        }
    }
}

/// Rows per history page when the caller does not say.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;
/// The most rows one request may ask for: a bound on the memory and time
/// one caller can take from an agent that is busy during an incident.
pub const MAX_HISTORY_LIMIT: usize = 1000;

/// The filters of `GET /v1/history`, parsed and bounded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    pub node: Option<String>,
    pub kind: Option<EventKind>,
    pub check: Option<String>,
    /// Inclusive, Unix milliseconds.
    pub since_unix_ms: Option<u64>,
    /// Exclusive, Unix milliseconds.
    pub until_unix_ms: Option<u64>,
    /// Continue after this row (a previous page's `next_cursor`).
    pub cursor: Option<HistoryCursor>,
    pub limit: usize,
}

impl HistoryQuery {
    /// The query string that asks another agent the same (`GET
    /// /v1/history` parses it back into this).
    pub fn to_params(&self) -> Vec<(&'static str, String)> {
        let mut params = vec![("limit", self.limit.to_string())];
        let optional = [
            ("node", self.node.clone()),
            ("kind", self.kind.map(|k| k.as_str().to_owned())),
            ("check", self.check.clone()),
            ("since", self.since_unix_ms.map(|t| t.to_string())),
            ("until", self.until_unix_ms.map(|t| t.to_string())),
            ("cursor", self.cursor.as_ref().map(ToString::to_string)),
        ];
        params.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
        params
    }
}

/// The answer to `POST /v1/events`: where the annotation was recorded.
/// `POST /v1/events` body, once opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnotationRequest {
    /// The node the annotation is about; the answering node if absent.
    #[serde(default)]
    pub node: Option<String>,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnotationAck {
    pub origin: String,
    pub seq: u64,
}

/// Why a request was refused; each maps to one HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    /// A sealed request that authenticated but was taken before, or is too
    /// old to tell: a replay.
    #[error("{0}")]
    Replayed(String),
    #[error("{0}")]
    NotFound(String),
    /// The agent cannot answer now (its history failed, the disk is full).
    #[error("{0}")]
    Unavailable(String),
}

/// `GET /v1/status`: the cluster as the answering node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    pub answered_by: String,
    pub answered_at_unix_ms: u64,
    /// Every node healthy (and, once they exist, every cluster-scope check).
    pub healthy: bool,
    /// Why not, one line each (`node-3: etcd: …`), at most
    /// [`crate::MAX_REASONS`].
    pub reasons: Vec<String>,
    /// Reason lines past the first [`crate::MAX_REASONS`], left out.
    #[serde(default)]
    pub reasons_omitted: usize,
    /// Members per gossip state, the answering node included.
    pub counts: StateCounts,
    /// The answering node sees more than half of the known members alive:
    /// in a partition, the side whose answer to trust.
    pub majority: bool,
    /// Checks run once for the whole cluster (the scheduler probe, leader
    /// leases): their latest result, whichever node ran them.
    pub cluster_checks: Vec<CheckSummary>,
    /// Nodes per verdict, all of them, whatever the page shows.
    #[serde(default)]
    pub node_counts: NodeCounts,
    /// Nodes that match the request's filters; `nodes` is one page of them.
    #[serde(default)]
    pub nodes_matched: usize,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// One page of the nodes, by name (see [`crate::NodePage`]).
    pub nodes: Vec<NodeStatus>,
}

/// One node in `StatusResponse`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub status: NodeHealth,
    pub reasons: Vec<String>,
    /// The latest status of each check on that node, as known here.
    pub checks: Vec<CheckSummary>,
}

/// A check's latest status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSummary {
    pub check: String,
    /// The node that ran it.
    pub node: String,
    pub status: Status,
    pub message: String,
    pub at_unix_ms: u64,
}

/// `GET /v1/nodes`: the nodes' verdicts, as in `/v1/status`, a page at a
/// time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodesResponse {
    pub answered_by: String,
    pub answered_at_unix_ms: u64,
    #[serde(default)]
    pub node_counts: NodeCounts,
    #[serde(default)]
    pub nodes_matched: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    pub nodes: Vec<NodeStatus>,
}

/// `GET /v1/nodes/{name}`: one node, every check in full.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeResponse {
    pub answered_by: String,
    pub answered_at_unix_ms: u64,
    pub name: String,
    /// As in `NodeStatus`.
    pub status: NodeHealth,
    pub reasons: Vec<String>,
    /// The node in the gossip view; `null` for a node known only from the
    /// history (it left, or has not been seen since this agent started).
    pub member: Option<Member>,
    pub checks: Vec<CheckDetail>,
}

/// A check's latest result in full.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckDetail {
    pub check: String,
    pub status: Status,
    pub message: String,
    /// When the result was produced, Unix milliseconds.
    pub at_unix_ms: u64,
    /// How long the run took; `null` when the answering node knows the
    /// result from the cluster's log, which carries status changes only.
    pub duration_ms: Option<u64>,
    /// The check's structured facts (latencies, members); `null` when the
    /// answering node is not the one that ran it: only status changes are
    /// replicated. Ask the node itself for them.
    pub details: Option<serde_json::Value>,
}

/// `GET /healthz`: the cluster verdict for plain HTTP monitors, which read
/// the status code (200 healthy, 503 not); the body says why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthzResponse {
    pub healthy: bool,
    pub answered_by: String,
    pub reasons: Vec<String>,
}

/// `GET /v1/overlay`: the pod network's reachability matrix as the
/// answering node knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverlayResponse {
    pub answered_by: String,
    pub answered_at_unix_ms: u64,
    /// The window loss is judged over.
    pub window_secs: u64,
    /// Nodes gossip sees alive; paths to or from others are left out.
    pub nodes: Vec<String>,
    pub paths: Vec<OverlayPath>,
    /// The judgement in words: "overlay path a↔b broken", "b's pod
    /// network is broken".
    pub verdicts: Vec<String>,
    /// Per node, how many probes have a judged path to it: its coverage.
    pub probed_by: BTreeMap<String, usize>,
}

/// One directed path `from` → `to`. Figures are known only for paths
/// from the answering node (its probe reports to it); other nodes' paths
/// replicate as status changes, with the figures in the message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverlayPath {
    pub from: String,
    pub to: String,
    pub status: Status,
    pub message: String,
    pub at_unix_ms: u64,
    pub loss_ratio: Option<f64>,
    pub rtt_p50_ms: Option<f64>,
    pub rtt_p95_ms: Option<f64>,
}
