//! State shared by the writer thread, the indexer thread and readers, and the reads
//! of events by position that everything else is built on.

use crate::codec::DecodedFrame;
use crate::error::LogError;
use crate::index::{decode_location, Index, SPARSE_STRIDE};
use crate::segment::{FrameCursor, Next, Segment, SEGMENT_HEADER_LEN};
use crate::streams::StreamIndex;
use crate::types::{Filter, LogOptions, RecordedEvent};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

pub(crate) struct Shared {
    pub segment_dir: PathBuf,
    pub options: LogOptions,
    /// Held for the life of the log so a second process cannot open the same directory.
    pub _dir_lock: File,
    pub segments: RwLock<Vec<Arc<Segment>>>,
    /// Location of every `SPARSE_STRIDE`-th position; covers every committed position.
    pub sparse: RwLock<Vec<u64>>,
    /// Next position to be written; every position below it is durable.
    pub head: AtomicU64,
    pub head_tx: watch::Sender<u64>,
    /// The position of every committed version of every stream; the writer adds to it
    /// after commit, before it moves the head.
    pub streams: RwLock<StreamIndex>,
    pub closed: AtomicBool,
    pub index: Index,
    /// Set by the writer when a write or sync fails, cleared when one succeeds again.
    pub write_health: Arc<crate::health::WriteHealth>,
}

/// Read-ahead for scans of many events; single reads use a smaller one.
const SCAN_CHUNK: usize = 256 << 10;
const POINT_CHUNK: usize = 16 << 10;

impl Shared {
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    fn segments_from(&self, index: u64) -> Vec<Arc<Segment>> {
        let segments = self.segments.read().expect("segment list lock poisoned");
        segments.iter().skip(index as usize).cloned().collect()
    }

    /// Visits the committed events at positions `from..to` in order until `visit` says stop.
    /// Returns the position after the last event visited.
    pub fn scan(
        &self,
        from: u64,
        to: u64,
        large: bool,
        mut visit: impl FnMut(RecordedEvent) -> bool,
    ) -> Result<u64, LogError> {
        self.scan_frames(from, to, large, |frame| visit(frame.event))
    }

    /// Like `scan`, with each event's frame details.
    pub fn scan_frames(
        &self,
        from: u64,
        to: u64,
        large: bool,
        mut visit: impl FnMut(DecodedFrame) -> bool,
    ) -> Result<u64, LogError> {
        let to = to.min(self.head());
        if from >= to {
            return Ok(from);
        }
        let block = from / SPARSE_STRIDE;
        let location = {
            let sparse = self.sparse.read().expect("sparse index lock poisoned");
            *sparse
                .get(block as usize)
                .ok_or_else(|| LogError::Corrupt(format!("no location for block {block}")))?
        };
        let (segment_index, mut offset) = decode_location(location);
        let mut expected = block * SPARSE_STRIDE;
        let chunk = if large { SCAN_CHUNK } else { POINT_CHUNK };
        for segment in self.segments_from(segment_index) {
            let mut cursor = FrameCursor::new(&segment.file, offset, chunk);
            loop {
                if expected >= to {
                    return Ok(expected);
                }
                match cursor
                    .next_frame()
                    .map_err(|e| LogError::io(segment.path.display(), e))?
                {
                    Next::Frame { frame, .. } => {
                        if frame.event.position != expected {
                            return Err(LogError::Corrupt(format!(
                                "expected position {expected} in {} but found {}",
                                segment.path.display(),
                                frame.event.position
                            )));
                        }
                        expected += 1;
                        if frame.event.position >= from && !visit(frame) {
                            return Ok(expected);
                        }
                    }
                    Next::End { .. } => break,
                    Next::Damaged { offset, reason } => {
                        return Err(LogError::Corrupt(format!(
                            "{reason} at offset {offset} of {} (position {expected})",
                            segment.path.display()
                        )))
                    }
                }
            }
            offset = SEGMENT_HEADER_LEN;
        }
        Err(LogError::Corrupt(format!(
            "committed position {expected} is missing from the segments"
        )))
    }

    pub fn read_one(&self, position: u64) -> Result<RecordedEvent, LogError> {
        Ok(self.read_frame(position)?.event)
    }

    pub fn read_frame(&self, position: u64) -> Result<DecodedFrame, LogError> {
        let mut found = None;
        self.scan_frames(position, position + 1, false, |frame| {
            found = Some(frame);
            false
        })?;
        found.ok_or_else(|| LogError::Invalid(format!("position {position} is not committed")))
    }

    /// Matching events from `from` forwards, scanning at most up to `to`.
    pub fn read_forwards(
        &self,
        from: u64,
        to: u64,
        filter: &Filter,
        max: usize,
    ) -> Result<(Vec<RecordedEvent>, u64), LogError> {
        let mut events = Vec::new();
        if max == 0 {
            return Ok((events, from));
        }
        let next = self.scan(from, to, true, |event| {
            if filter.matches(&event.stream_id, &event.event_type) {
                events.push(event);
            }
            events.len() < max
        })?;
        Ok((events, next))
    }

    /// Matching events at `from` and below, newest first.
    pub fn read_backwards(
        &self,
        from: u64,
        filter: &Filter,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let head = self.head();
        let mut events = Vec::new();
        if head == 0 || max == 0 {
            return Ok(events);
        }
        let mut end = from.min(head - 1) + 1;
        while end > 0 && events.len() < max {
            let start = end.saturating_sub(SPARSE_STRIDE * 8);
            let mut block = Vec::new();
            self.scan(start, end, true, |event| {
                if filter.matches(&event.stream_id, &event.event_type) {
                    block.push(event);
                }
                true
            })?;
            let wanted = max - events.len();
            events.extend(block.into_iter().rev().take(wanted));
            end = start;
        }
        Ok(events)
    }
}

impl Shared {
    /// The committed version of `stream`, `None` if it has no events.
    pub fn stream_version(&self, stream: &str) -> Option<u64> {
        self.streams
            .read()
            .expect("stream index lock poisoned")
            .version(stream)
    }

    /// (version, position) of a stream's events from `from_version` in the direction
    /// asked; `u64::MAX` backwards means from the newest.
    pub fn stream_positions(
        &self,
        stream: &str,
        from_version: u64,
        forwards: bool,
        max: usize,
    ) -> Vec<(u64, u64)> {
        self.streams
            .read()
            .expect("stream index lock poisoned")
            .positions(stream, from_version, forwards, max)
    }
}
