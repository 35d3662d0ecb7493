//! The node's durable history in SQLite: the cluster-wide event log
//! (replicated between nodes, keyed by origin and seq), this node's raw
//! check results, and the latest result of every check in the cluster.
//!
//! `db` holds the pure functions (no thread, no clock) that replication is
//! built and tested on; `Store` runs them on a writer thread for the agent.

pub mod db;
pub mod digest;
mod metrics;
mod model;
pub mod retention;
mod schema;
mod store;

#[cfg(test)]
mod tests;

pub use db::SetupError;
pub use metrics::HistoryMetrics;
pub use model::{
    CheckResult, Event, EventFilter, EventKind, EventPosition, MAX_MESSAGE_BYTES, NewEvent,
    ParseEnumError, Status, SyncBatch, VersionVector, origin_node, sort_newest_first,
    valid_node_name, valid_origin,
};
pub use retention::{KeepOwn, Retention, RetentionReport};
pub use schema::SCHEMA_VERSION;
pub use store::{OpenError, Store, StoreConfig, StoreError, WriteContext};

/// The history database's file name inside an agent's `--data-dir`.
pub const HISTORY_FILE: &str = "history.db";
