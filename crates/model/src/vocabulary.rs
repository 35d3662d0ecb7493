//! The typed vocabulary every layer speaks: check statuses, node health
//! and event kinds. Each has one lowercase spelling, used alike on the
//! wire (JSON), in the database and on screen.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A string that names no known variant of a lowercase enum.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (expected one of: {})", .expected.join(", "))]
pub struct ParseEnumError {
    /// Which enum, so the message makes sense without context.
    pub what: &'static str,
    /// The text that did not parse, to show the user their typo.
    pub value: String,
    /// The accepted spellings, to show the fix.
    pub expected: Vec<&'static str>,
}

/// Declares a fieldless enum whose wire, database and display form is its
/// lowercase name, so the three can never disagree.
macro_rules! lowercase_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseEnumError;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                match value {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ParseEnumError {
                        what: $what,
                        value: value.to_owned(),
                        expected: vec![$($text),+],
                    }),
                }
            }
        }

        #[cfg(feature = "sqlite")]
        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        #[cfg(feature = "sqlite")]
        impl rusqlite::types::FromSql for $name {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

lowercase_enum!(
    /// What an event is about; lets the UI and alerting filter the log.
    EventKind, "event kind", {
        /// A node joined, was suspected, failed or left.
        Membership => "membership",
        /// A check changed state.
        Check => "check",
        /// An alert fired or resolved.
        Alert => "alert",
        /// A human or tool wrote a note into the log.
        Annotation => "annotation",
    }
);

lowercase_enum!(
    /// How a check found its target, in Nagios terms operators already
    /// know. Warnings do not degrade a node; critical does; unknown means
    /// the check could not tell (and says why).
    Status, "check status", {
        Ok => "ok",
        Warning => "warning",
        Critical => "critical",
        /// The check could not tell (it timed out, or its probe failed).
        Unknown => "unknown",
    }
);

lowercase_enum!(
    /// A node's verdict in the roll-up.
    NodeHealth, "node health", {
        /// Gossip sees it alive and no check of it is critical.
        Healthy => "healthy",
        /// A check of it (or its pod network) is critical: the reasons say which.
        Degraded => "degraded",
        /// Gossip calls it suspect, down or gone: its checks cannot be trusted.
        Unreachable => "unreachable",
        /// It runs checks, and none has reported yet.
        Unknown => "unknown",
        /// It left the cluster on purpose. Only `/v1/nodes/{name}` says so:
        /// the roll-up leaves such nodes out.
        Left => "left",
    }
);

/// The services a node advertises in its gossip identity, each in a slot
/// of its own: gossip carries the addresses without knowing what answers
/// there. The numbers are part of the wire format: never renumber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// The agent's HTTP API (`starling members --addr`, history sync).
    Api = 0,
    /// The overlay probe's pod address, once the probe reports it.
    Probe = 1,
}

impl From<Service> for usize {
    fn from(service: Service) -> usize {
        service as usize
    }
}
