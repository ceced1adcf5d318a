//! anju's read models: request status and timeline, caseworker queues, the timers index
//! and manager metrics, kept in sled trees (`proj_*`) of the event log's index store.
//!
//! [`ReadModels`] is the fold and the queries, usable without a local log (the insight
//! service feeds it events from many nodes). [`Projections`] adds a checkpointed runner
//! that reads the local log's `request-` streams and applies them in chunks. See
//! `docs/projections.md` for the tree layout and the meaning of every figure.

mod keys;
mod model;
mod queries;
mod read_models;
mod runner;
mod snapshot;
mod store;
mod views;

pub use model::*;
pub use read_models::{
    request_id_of_stream, Dump, Input, ModelStats, ReadModels, PROJECTION_VERSION,
    SNAPSHOT_INTERVAL, TREE_NAMES,
};
pub use runner::{Projections, SNAPSHOT_FILE};

/// Why a projection call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("read model store failed: {0}")]
    Store(#[from] sled::Error),
    #[error("event log failed: {0}")]
    Log(#[from] anju_eventlog::LogError),
    #[error("read model data is corrupt: {0}")]
    Corrupt(String),
    #[error("projections reached position {reached}, not past the wanted position {wanted}")]
    NotReached { wanted: u64, reached: u64 },
    #[error("page token is not valid")]
    BadPageToken,
    #[error("projections are stopped")]
    Stopped,
}
