//! What travels between a node and its aggregators: sealed JSON over
//! HTTP, like anti-entropy, so only cluster members can stream rows in or
//! read the health table out. Public so that a load generator
//! (`starling-bench aggregator`) speaks the same protocol as a node.

use serde::{Deserialize, Serialize};
use starling_history::{CheckResult, Event, SyncBatch};

/// `POST /v1/stream` body, once opened: rows of the sender's own log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRequest {
    /// The sender; `origin` must be one of its logs.
    pub node: String,
    pub origin: String,
    /// The sender believes the aggregator holds every row of `origin` up
    /// to this: the batch starts after it. Only when the aggregator does
    /// hold them does it take the batch's `through`, so a wrong belief (an
    /// aggregator wiped since) costs a resend, never a row.
    pub from: u64,
    /// Rows of `origin` past `from`, and `through` as the sender vouches
    /// for it. Empty to learn where the aggregator stands.
    pub batch: SyncBatch,
}

/// The acknowledgement: every row of `origin` up to `through` is committed
/// to the aggregator's database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamReply {
    pub aggregator: String,
    /// The aggregator's own origin: it changes when its data is wiped, and
    /// with it everything acknowledged before is void.
    pub epoch: String,
    pub origin: String,
    pub through: u64,
}

/// `POST /v1/health-table` body, once opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthRequest {
    /// The aggregator database the asker's copy came from; a different
    /// one (another aggregator, or this one wiped) sends the whole table.
    pub epoch: Option<String>,
    /// The newest revision the asker holds of that database's table.
    pub after: u64,
}

/// The latest results that changed after the asked revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReply {
    pub aggregator: String,
    pub epoch: String,
    /// Oldest change first.
    pub changed: Vec<CheckResult>,
    /// The revision of the last of `changed`, where the next ask starts;
    /// the asked one when nothing changed. One number for the whole page,
    /// not one per result: at 5,000 busy nodes a page holds hundreds.
    pub through: u64,
    /// Cut at the row limit: ask again from `through`.
    pub more: bool,
}

/// `POST /v1/window` body, once opened: the asker's place in the
/// aggregator's log, by arrival.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowRequest {
    /// The aggregator database `after` belongs to; another one (another
    /// aggregator, or this one wiped) answers from its newest.
    pub epoch: Option<String>,
    /// The last arrival the asker has; 0 for the newest there are.
    pub after: u64,
}

/// The newest events the aggregator took in after the asked place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowReply {
    pub aggregator: String,
    pub epoch: String,
    /// Oldest arrival first. Past `WINDOW_BATCH_ROWS` only the newest.
    pub events: Vec<Event>,
    /// The place to ask after next time.
    pub through: u64,
}
