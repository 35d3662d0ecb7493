//! Store errors, worded for the operator who reads them in a log.

use std::path::PathBuf;

use rusqlite::ErrorCode;

/// Why a history operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("history database {}: {source}", path.display())]
    Open {
        /// The database file, so the operator knows which file to look at.
        path: PathBuf,
        /// What is wrong with it, and what to do.
        #[source]
        source: OpenError,
    },
    #[error(
        "history database {}: schema version {found} is newer than this agent supports \
         ({supported}): a newer starling wrote it; upgrade, or move the file away to start \
         a new history",
        path.display()
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The file's schema version.
        found: u32,
        /// The highest this build knows.
        supported: u32,
    },
    #[error("history database {}: disk full, write refused", path.display())]
    DiskFull {
        /// The database file, whose file system is the full one.
        path: PathBuf,
    },
    #[error("node name {0:?} cannot name a history origin (1 to 253 of A-Z a-z 0-9 . _ -)")]
    InvalidNodeName(String),
    #[error("history database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("history store is closed (its writer thread is gone)")]
    Closed,
}

/// What is wrong with a database file that would not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create its directory: {0}")]
    CreateDir(#[source] std::io::Error),
    #[error(
        "file is not a database (corrupt, or not a starling history file): \
         move it away to start a new history"
    )]
    NotADatabase(#[source] rusqlite::Error),
    #[error("database is corrupt ({0}): move it away to start a new history")]
    Corrupt(String),
    #[error("cannot open it (a directory in the way, or no permission to read it): {0}")]
    CannotOpen(#[source] rusqlite::Error),
    #[error("cannot write it (a read-only file or file system): {0}")]
    ReadOnly(#[source] rusqlite::Error),
    #[error("cannot start the writer thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("{0}")]
    Sqlite(#[source] rusqlite::Error),
}

impl OpenError {
    pub(super) fn classify(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => OpenError::NotADatabase(error),
            Some(ErrorCode::DatabaseCorrupt) => OpenError::Corrupt(error.to_string()),
            Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
                OpenError::CannotOpen(error)
            }
            Some(ErrorCode::ReadOnly) => OpenError::ReadOnly(error),
            _ => OpenError::Sqlite(error),
        }
    }
}
