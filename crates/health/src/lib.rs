//! Health judgement: where each check runs (from the gossip view), what
//! its results become (history rows and transition events), the node and
//! cluster status rolled up from them, and the overlay verdicts judged
//! from the probes' reports.
//!
//! The roll-up and the overlay judgement live together because each reads
//! the other's verdicts: a broken pod path degrades a node, and a node
//! gossip calls unreachable is no overlay fault.

#[doc(hidden)]
pub mod fuzzing;
pub mod overlay;
pub mod status;
