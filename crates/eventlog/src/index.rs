//! The log's indexes. The stream index (stream → the position of each version), the
//! event-id set and the sparse position → location table live in memory only and are
//! rebuilt by one scan of the segments on open (ADR 005). The sled store beside the
//! segments keeps what is not derived from them: named checkpoints, and the trees other
//! components open in it.
//!
//! Index formats 1 and 2 also kept the stream index and the locations in sled, one insert
//! per event; a store of format 2 has those trees dropped on open, one of format 1 (or of
//! no known format) is moved aside and a fresh one started.

use crate::error::LogError;
use crate::event_ids::EventIds;
use crate::streams::StreamIndex;
use std::path::Path;
use uuid::Uuid;

/// The location of every `SPARSE_STRIDE`-th position is kept; a read scans at most this
/// many frames forward from the nearest one.
pub(crate) const SPARSE_STRIDE: u64 = 32;
const FORMAT: &[u8] = b"anju-eventlog-index-3";
/// The format that kept the stream index and the locations in sled.
const FORMAT_2: &[u8] = b"anju-eventlog-index-2";
const FORMAT_2_TREES: [&str; 2] = ["eventlog.by_stream", "eventlog.locations"];
const META_FORMAT: &[u8] = b"format";
const META_INDEXED_UP_TO: &[u8] = b"indexed_up_to";

/// A location in the log: segment index in the top 24 bits, byte offset in the low 40.
pub(crate) fn encode_location(segment: u64, offset: u64) -> u64 {
    (segment << 40) | offset
}

pub(crate) fn decode_location(location: u64) -> (u64, u64) {
    (location >> 40, location & ((1 << 40) - 1))
}

/// The in-memory state built from the segments on open.
#[derive(Default)]
pub(crate) struct Loaded {
    pub streams: StreamIndex,
    pub ids: EventIds,
    pub sparse: Vec<u64>,
    /// Events whose id shares its fingerprint with an earlier event's: (position, id,
    /// earlier positions), checked against the earlier events once the log can read them.
    pub suspects: Vec<(u64, Uuid, Vec<u64>)>,
}

impl Loaded {
    /// Adds a committed event found at `location`.
    pub fn add(&mut self, position: u64, stream: &str, version: u64, id: Uuid, location: u64) {
        if position.is_multiple_of(SPARSE_STRIDE) {
            debug_assert_eq!(self.sparse.len() as u64, position / SPARSE_STRIDE);
            self.sparse.push(location);
        }
        self.ids.insert(&id, position);
        self.streams.push(stream, version, position);
    }
}

pub(crate) struct Index {
    pub db: sled::Db,
    checkpoints: sled::Tree,
}

impl Index {
    /// Opens the sled store at `path`; if it will not open, or is not ours, it is moved
    /// aside and a fresh one is started (its checkpoints are then gone: readers start
    /// again from the beginning).
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Index, LogError> {
        match Self::try_open(path, cache_bytes) {
            Ok(index) => Ok(index),
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "the log's sled store is damaged; starting a fresh one");
                let aside = path.with_extension("damaged");
                let _ = std::fs::remove_dir_all(&aside);
                if path.exists() {
                    std::fs::rename(path, &aside).map_err(|e| LogError::io(path.display(), e))?;
                }
                Self::try_open(path, cache_bytes).map_err(|reason| {
                    LogError::Corrupt(format!("a fresh sled store would not open: {reason}"))
                })
            }
        }
    }

    fn try_open(path: &Path, cache_bytes: u64) -> Result<Index, String> {
        let path = path.to_path_buf();
        let opened = std::panic::catch_unwind(move || -> sled::Result<(sled::Db, sled::Tree)> {
            let db = sled::Config::new()
                .path(path)
                .cache_capacity(cache_bytes)
                .open()?;
            let meta = db.open_tree("eventlog.meta")?;
            Ok((db, meta))
        });
        let (db, meta) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("sled panicked while opening".to_string()),
        };
        let had_format_2_trees = db.tree_names().iter().any(|name| {
            FORMAT_2_TREES
                .iter()
                .any(|old| name.as_ref() == old.as_bytes())
        });
        match meta.get(META_FORMAT).map_err(|e| e.to_string())? {
            Some(format) if format.as_ref() == FORMAT => {}
            Some(format) if format.as_ref() == FORMAT_2 => {
                tracing::info!("dropping the stream index trees of log index format 2 from sled; the stream index is now kept in memory");
                for tree in FORMAT_2_TREES {
                    db.drop_tree(tree).map_err(|e| e.to_string())?;
                }
                meta.remove(META_INDEXED_UP_TO).map_err(|e| e.to_string())?;
                meta.insert(META_FORMAT, FORMAT)
                    .map_err(|e| e.to_string())?;
                // Made durable at once, not left to the next flush: one run of the
                // format-2 recovery test found the checkpoints gone after the next reopen.
                db.flush().map_err(|e| e.to_string())?;
            }
            None if meta.is_empty() && !had_format_2_trees => {
                meta.insert(META_FORMAT, FORMAT)
                    .map_err(|e| e.to_string())?;
            }
            _ => return Err("the store has an unknown format mark".to_string()),
        }
        let checkpoints = db
            .open_tree("eventlog.checkpoints")
            .map_err(|e| e.to_string())?;
        Ok(Index { db, checkpoints })
    }

    pub fn checkpoint(&self, name: &str) -> Result<Option<u64>, LogError> {
        Ok(self
            .checkpoints
            .get(name.as_bytes())?
            .and_then(|v| Some(u64::from_be_bytes(v.as_ref().try_into().ok()?))))
    }

    pub fn set_checkpoint(&self, name: &str, position: u64) -> Result<(), LogError> {
        self.checkpoints
            .insert(name.as_bytes(), &position.to_be_bytes())?;
        Ok(())
    }

    pub fn flush(&self) -> Result<(), LogError> {
        self.db.flush()?;
        Ok(())
    }
}
