//! The sled indexes over the segments: stream → version → (position, event id), sparse
//! position → location, named checkpoints, and the "indexed up to" mark. Everything here
//! can be rebuilt from the segments.
//!
//! One sled insert per event: the stream entry's value carries the event id, so the
//! event-id set and each stream's current version are loaded from the stream entries on
//! open (format 1 kept two more trees for them, tripling the indexer's sled work).

use crate::error::LogError;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use uuid::Uuid;

/// The location of every `SPARSE_STRIDE`-th position is kept; a read scans at most this
/// many frames forward from the nearest one.
pub(crate) const SPARSE_STRIDE: u64 = 32;
const FORMAT: &[u8] = b"anju-eventlog-index-2";
const META_INDEXED_UP_TO: &[u8] = b"indexed_up_to";
const META_FORMAT: &[u8] = b"format";

/// A location in the log: segment index in the top 24 bits, byte offset in the low 40.
pub(crate) fn encode_location(segment: u64, offset: u64) -> u64 {
    (segment << 40) | offset
}

pub(crate) fn decode_location(location: u64) -> (u64, u64) {
    (location >> 40, location & ((1 << 40) - 1))
}

/// One appended event as the indexer needs it.
pub(crate) struct IndexEntry {
    pub position: u64,
    pub stream: Arc<str>,
    pub version: u64,
    pub event_id: Uuid,
    /// Set for positions that are a multiple of `SPARSE_STRIDE`.
    pub location: Option<u64>,
}

pub(crate) struct Index {
    pub db: sled::Db,
    by_stream: sled::Tree,
    locations: sled::Tree,
    meta: sled::Tree,
    checkpoints: sled::Tree,
}

/// The in-memory state loaded from the index on open.
#[derive(Default)]
pub(crate) struct Loaded {
    pub indexed_up_to: u64,
    pub versions: HashMap<String, u64>,
    pub ids: HashMap<Uuid, u64>,
    pub sparse: Vec<u64>,
}

pub(crate) fn stream_key(stream: &str, version: u64) -> Vec<u8> {
    // 0xFF never occurs in UTF-8, so it separates the stream id from the version.
    let mut key = Vec::with_capacity(stream.len() + 9);
    key.extend_from_slice(stream.as_bytes());
    key.push(0xFF);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

/// Splits a `by_stream` key into the stream id's bytes and the version.
fn split_stream_key(key: &[u8]) -> Option<(&[u8], u64)> {
    if key.len() < 9 || key[key.len() - 9] != 0xFF {
        return None;
    }
    let (stream, rest) = key.split_at(key.len() - 9);
    Some((stream, be_u64(&rest[1..])?))
}

/// A `by_stream` value: the position, then the event id.
fn stream_value(value: &[u8]) -> Option<(u64, Uuid)> {
    if value.len() != 24 {
        return None;
    }
    Some((be_u64(&value[..8])?, Uuid::from_slice(&value[8..]).ok()?))
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

impl Index {
    /// Opens the sled store at `path`; if it will not open, or is not ours, it is moved
    /// aside and a fresh one is started (the caller then re-indexes from the segments).
    pub fn open(path: &Path, cache_bytes: u64) -> Result<(Index, bool), LogError> {
        match Self::try_open(path, cache_bytes) {
            Ok(index) => Ok((index, false)),
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "sled index is damaged; rebuilding it from the segments");
                let aside = path.with_extension("damaged");
                let _ = std::fs::remove_dir_all(&aside);
                if path.exists() {
                    std::fs::rename(path, &aside).map_err(|e| LogError::io(path.display(), e))?;
                }
                let index = Self::try_open(path, cache_bytes).map_err(|reason| {
                    LogError::Corrupt(format!("a fresh sled index would not open: {reason}"))
                })?;
                Ok((index, true))
            }
        }
    }

    fn try_open(path: &Path, cache_bytes: u64) -> Result<Index, String> {
        let path = path.to_path_buf();
        let opened = std::panic::catch_unwind(move || -> sled::Result<Index> {
            let db = sled::Config::new()
                .path(path)
                .cache_capacity(cache_bytes)
                .open()?;
            let index = Index {
                by_stream: db.open_tree("eventlog.by_stream")?,
                locations: db.open_tree("eventlog.locations")?,
                meta: db.open_tree("eventlog.meta")?,
                checkpoints: db.open_tree("eventlog.checkpoints")?,
                db,
            };
            Ok(index)
        });
        let index = match opened {
            Ok(Ok(index)) => index,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("sled panicked while opening".to_string()),
        };
        match index.meta.get(META_FORMAT).map_err(|e| e.to_string())? {
            Some(format) if format.as_ref() == FORMAT => Ok(index),
            None if index.meta.is_empty() && index.by_stream.is_empty() => {
                index
                    .meta
                    .insert(META_FORMAT, FORMAT)
                    .map_err(|e| e.to_string())?;
                Ok(index)
            }
            _ => Err("the index has an unknown format mark".to_string()),
        }
    }

    /// Loads the writer's in-memory state; `Err` means the index contradicts itself.
    pub fn load(&self) -> Result<Loaded, String> {
        let read = || -> sled::Result<Result<Loaded, String>> {
            let indexed_up_to = match self.meta.get(META_INDEXED_UP_TO)? {
                Some(v) => match be_u64(&v) {
                    Some(n) => n,
                    None => return Ok(Err("the indexed-up-to mark is malformed".into())),
                },
                None => 0,
            };
            let mut loaded = Loaded {
                indexed_up_to,
                ..Loaded::default()
            };
            for item in self.locations.iter() {
                let (k, v) = item?;
                let (Some(block), Some(location)) = (be_u64(&k), be_u64(&v)) else {
                    return Ok(Err("a location entry is malformed".into()));
                };
                if block != loaded.sparse.len() as u64 {
                    return Ok(Err(format!(
                        "location entries skip block {}",
                        loaded.sparse.len()
                    )));
                }
                loaded.sparse.push(location);
            }
            // Entries past the mark may exist (the mark is written after the batches).
            loaded
                .sparse
                .truncate(indexed_up_to.div_ceil(SPARSE_STRIDE) as usize);
            if (loaded.sparse.len() as u64) < indexed_up_to.div_ceil(SPARSE_STRIDE) {
                return Ok(Err(
                    "location entries stop before the indexed-up-to mark".into()
                ));
            }
            // Entries are ordered by stream, then version: the last one of a stream
            // below the mark is its current version.
            let mut current: Option<(String, u64)> = None;
            for item in self.by_stream.iter() {
                let (k, v) = item?;
                let Some((stream, version)) = split_stream_key(&k) else {
                    return Ok(Err("a stream index key is malformed".into()));
                };
                let Some((position, id)) = stream_value(&v) else {
                    return Ok(Err("a stream index entry is malformed".into()));
                };
                if position >= indexed_up_to {
                    continue;
                }
                loaded.ids.insert(id, position);
                match &mut current {
                    Some((name, last)) if name.as_bytes() == stream => *last = version,
                    _ => {
                        if let Some((name, last)) = current.take() {
                            loaded.versions.insert(name, last);
                        }
                        let Ok(name) = std::str::from_utf8(stream) else {
                            return Ok(Err("a stream index key is not UTF-8".into()));
                        };
                        current = Some((name.to_string(), version));
                    }
                }
            }
            if let Some((name, last)) = current {
                loaded.versions.insert(name, last);
            }
            Ok(Ok(loaded))
        };
        match read() {
            Ok(result) => result,
            Err(e) => Err(format!("reading the index failed: {e}")),
        }
    }

    /// Whether the index holds this event where the segments say it is.
    pub fn agrees(
        &self,
        event_id: Uuid,
        position: u64,
        stream: &str,
        version: u64,
    ) -> Result<bool, LogError> {
        let stored = self
            .by_stream
            .get(stream_key(stream, version))?
            .and_then(|v| stream_value(&v));
        Ok(stored == Some((position, event_id)))
    }

    /// The highest version of `stream` in the index.
    pub fn stream_version(&self, stream: &str) -> Result<Option<u64>, LogError> {
        match self
            .by_stream
            .range(stream_key(stream, 0)..=stream_key(stream, u64::MAX))
            .next_back()
        {
            None => Ok(None),
            Some(item) => {
                let (k, _) = item?;
                Ok(split_stream_key(&k).map(|(_, version)| version))
            }
        }
    }

    pub fn location(&self, block: u64) -> Result<Option<u64>, LogError> {
        Ok(self
            .locations
            .get(block.to_be_bytes())?
            .and_then(|v| be_u64(&v)))
    }

    /// Writes a batch of entries, then moves the indexed-up-to mark past them.
    pub fn apply(&self, entries: &[IndexEntry]) -> Result<(), LogError> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let mut by_stream = sled::Batch::default();
        let mut locations = sled::Batch::default();
        for entry in entries {
            let mut value = [0u8; 24];
            value[..8].copy_from_slice(&entry.position.to_be_bytes());
            value[8..].copy_from_slice(entry.event_id.as_bytes());
            by_stream.insert(stream_key(&entry.stream, entry.version), &value[..]);
            if let Some(location) = entry.location {
                locations.insert(
                    &(entry.position / SPARSE_STRIDE).to_be_bytes(),
                    &location.to_be_bytes(),
                );
            }
        }
        self.by_stream.apply_batch(by_stream)?;
        self.locations.apply_batch(locations)?;
        self.meta
            .insert(META_INDEXED_UP_TO, &(last.position + 1).to_be_bytes())?;
        Ok(())
    }

    /// Positions of a stream's events from `from_version`, in the given order.
    pub fn stream_positions(
        &self,
        stream: &str,
        from_version: u64,
        forwards: bool,
        max: usize,
    ) -> Result<Vec<(u64, u64)>, LogError> {
        let parse = |item: sled::Result<(sled::IVec, sled::IVec)>| -> Result<(u64, u64), LogError> {
            let (k, v) = item?;
            let version = split_stream_key(&k).map(|(_, version)| version);
            match (version, stream_value(&v)) {
                (Some(version), Some((position, _))) => Ok((version, position)),
                _ => Err(LogError::Corrupt(
                    "a stream index entry is malformed".into(),
                )),
            }
        };
        let range = if forwards {
            stream_key(stream, from_version)..=stream_key(stream, u64::MAX)
        } else {
            stream_key(stream, 0)..=stream_key(stream, from_version)
        };
        let iter = self.by_stream.range(range);
        if forwards {
            iter.take(max).map(parse).collect()
        } else {
            iter.rev().take(max).map(parse).collect()
        }
    }

    pub fn checkpoint(&self, name: &str) -> Result<Option<u64>, LogError> {
        Ok(self
            .checkpoints
            .get(name.as_bytes())?
            .and_then(|v| be_u64(&v)))
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
