//! The public value types of the event log: what callers append, what they read back.

use uuid::Uuid;

/// What the caller believes about a stream's current version when appending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// Append whatever the stream's state.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must already have at least one event.
    StreamExists,
    /// The stream's last event must have exactly this version.
    Exact(u64),
}

/// Who and what caused an event: kept with every record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    pub actor: String,
}

/// An event as the caller hands it to `append`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub metadata: Metadata,
    pub payload: Vec<u8>,
}

impl NewEvent {
    /// A new event with a fresh UUID v7 id, schema version 1 and empty metadata.
    pub fn new(event_type: impl Into<String>, payload: Vec<u8>) -> NewEvent {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version: 1,
            metadata: Metadata::default(),
            payload,
        }
    }
}

/// An event as stored in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub position: u64,
    pub stream_id: String,
    pub stream_version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    /// Microseconds since the unix epoch at which the writer recorded the event.
    pub recorded_at_micros: i64,
    pub metadata: Metadata,
    pub payload: Vec<u8>,
}

/// Where an acknowledged append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    pub first_position: u64,
    pub last_position: u64,
    /// The stream version of the last appended event.
    pub stream_version: u64,
}

/// Which events a read of `$all` or a subscription returns; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub stream_prefix: Option<String>,
    pub event_types: Vec<String>,
}

impl Filter {
    /// A filter that matches every event.
    pub fn all() -> Filter {
        Filter::default()
    }

    /// Events whose stream id starts with `prefix`.
    pub fn stream_prefix(prefix: impl Into<String>) -> Filter {
        Filter {
            stream_prefix: Some(prefix.into()),
            event_types: Vec::new(),
        }
    }

    pub fn matches(&self, stream_id: &str, event_type: &str) -> bool {
        if let Some(prefix) = &self.stream_prefix {
            if !stream_id.starts_with(prefix.as_str()) {
                return false;
            }
        }
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forwards,
    Backwards,
}

/// Tuning knobs of an open log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// A segment file is closed and a new one started once it would grow past this many bytes.
    pub segment_size: u64,
    /// Whether new segment files are filled with zeros up front, so that an `fdatasync`
    /// after a write does not also have to persist the file's new size.
    pub preallocate: bool,
    /// The largest payload accepted for one event.
    pub max_event_bytes: usize,
    /// The most events accepted in one append.
    pub max_events_per_append: usize,
    /// The most events one read returns, whatever `max` the caller asks for.
    pub max_read_batch: usize,
    /// How many bytes of appends the writer gathers at most into one write and sync.
    pub max_commit_bytes: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_size: 64 << 20,
            preallocate: true,
            max_event_bytes: 4 << 20,
            max_events_per_append: 10_000,
            max_read_batch: 4096,
            max_commit_bytes: 8 << 20,
        }
    }
}

/// Counts that describe an open log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogStats {
    pub events: u64,
    pub streams: u64,
    pub segments: u64,
    /// Bytes of framed records in all segments (excluding headers and preallocated space).
    pub bytes: u64,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub events: u64,
    pub streams: u64,
    pub segments: u64,
    pub bytes: u64,
    /// Each problem found, in words (the first 100); empty when the log is sound.
    pub problems: Vec<String>,
    /// How many problems were found in all.
    pub problems_found: u64,
    /// The unfinished last write a crash left at the end of the last segment, which was
    /// never acknowledged and which opening the log cuts off; not a problem.
    pub torn_tail: Option<String>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}
