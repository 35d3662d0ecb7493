//! A node's place in one aggregator database's order: the health table's
//! revisions, or the log's arrivals. Positions number one database's rows,
//! so the database's epoch goes with them: a place taken from another
//! aggregator, or from this one before a wipe, means nothing there
//! (`serve::place` is the aggregator's side of the rule).

/// Where a node stands in one aggregator database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// The aggregator database the position belongs to; none before the
    /// first answer.
    pub epoch: Option<String>,
    /// The newest position the node holds of it.
    pub after: u64,
}
