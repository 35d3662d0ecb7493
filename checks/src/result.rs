//! The result vocabulary every check speaks.

use serde::{Deserialize, Serialize};

pub use starling_model::Status;

/// What one run of a check found, before the runner adds timing and
/// applies the failure threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    /// One line for people: what is wrong, or what was measured.
    pub message: String,
    /// Structured facts for tools and the dashboard (latencies, members).
    pub details: serde_json::Value,
}

impl Outcome {
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Outcome {
            status,
            message: one_line(message.into()),
            details: serde_json::Value::Null,
        }
    }

    pub fn ok(message: impl Into<String>) -> Self {
        Outcome::new(Status::Ok, message)
    }

    pub fn warning(message: impl Into<String>) -> Self {
        Outcome::new(Status::Warning, message)
    }

    pub fn critical(message: impl Into<String>) -> Self {
        Outcome::new(Status::Critical, message)
    }

    /// The check could not run; `message` says why.
    pub fn unknown(message: impl Into<String>) -> Self {
        Outcome::new(Status::Unknown, message)
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// The longest message kept: it is shown in tables and carried in
/// gossip-replicated history rows.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// Messages are one line: multi-line errors are joined, long ones cut.
fn one_line(message: String) -> String {
    let mut line: String = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > MAX_MESSAGE_CHARS {
        line = line.chars().take(MAX_MESSAGE_CHARS - 1).collect();
        line.push('…');
    }
    line
}

/// A finished run, as the runner publishes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub check: String,
    /// After the failure threshold: what the node's status uses.
    pub status: Status,
    pub message: String,
    pub details: serde_json::Value,
    pub duration_ms: u64,
    pub at_unix_ms: u64,
    /// Failed runs in a row (0 after a pass).
    pub consecutive_failures: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_text() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>(), Ok(status));
        }
        assert!("fine".parse::<Status>().is_err());
    }

    #[test]
    fn messages_are_one_bounded_line() {
        let outcome = Outcome::critical("a\nb\t c");
        assert_eq!(outcome.message, "a b c");
        let long = Outcome::ok("x".repeat(1000));
        assert_eq!(long.message.chars().count(), MAX_MESSAGE_CHARS);
    }
}
