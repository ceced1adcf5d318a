//! Errors of the event log, one enum for appends and one for everything else.

use crate::types::ExpectedVersion;
use uuid::Uuid;

/// Why an append was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(
        "wrong expected version for stream {stream}: expected {expected:?}, actual {actual:?}"
    )]
    WrongExpectedVersion {
        stream: String,
        expected: ExpectedVersion,
        actual: Option<u64>,
    },
    /// Some, but not all, of the event ids are already stored (or all are, but not as one
    /// earlier append to this stream): a retry must resend exactly the original append.
    #[error(
        "some event ids of the append to stream {stream} are already stored: {already_stored:?}"
    )]
    PartiallyDuplicate {
        stream: String,
        already_stored: Vec<Uuid>,
    },
    #[error("invalid append: {0}")]
    Invalid(String),
    #[error("event log is closed")]
    Closed,
    /// The write or sync failed and nothing of the append was acknowledged; the next
    /// append retries once the writer has cut its partial write back.
    #[error("event log io failed: {0}")]
    Io(String),
}

/// Why opening, reading, verifying or indexing failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("event log io failed at {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("event log is corrupt: {0}")]
    Corrupt(String),
    #[error("sled index failed: {0}")]
    Index(#[from] sled::Error),
    #[error("event log is closed")]
    Closed,
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl LogError {
    pub(crate) fn io(path: impl std::fmt::Display, source: std::io::Error) -> LogError {
        LogError::Io {
            path: path.to_string(),
            source,
        }
    }
}
