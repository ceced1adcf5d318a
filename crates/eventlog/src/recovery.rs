//! Opening a log directory: find the segments, cut off a torn or garbage tail, open or
//! rebuild the sled index, and bring the in-memory state up to the last durable event.

use crate::error::LogError;
use crate::index::{encode_location, Index, IndexEntry, Loaded, SPARSE_STRIDE};
use crate::segment::{
    create_segment, open_segment, parse_segment_name, sync_dir, zero_fill, FrameCursor, Next,
    Segment, SEGMENT_HEADER_LEN,
};
use crate::types::{LogOptions, RecordedEvent};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// Everything `EventLog::open` needs to start the writer and the indexer.
pub(crate) struct Recovered {
    pub segments: Vec<Arc<Segment>>,
    pub write_offset: u64,
    pub head: u64,
    pub loaded: Loaded,
    /// Committed events the index does not hold yet, oldest first.
    pub to_index: Vec<IndexEntry>,
    pub index: Index,
    pub rebuilt_index: bool,
}

pub(crate) fn open_segments(
    segment_dir: &Path,
    options: &LogOptions,
) -> Result<Vec<Arc<Segment>>, LogError> {
    std::fs::create_dir_all(segment_dir).map_err(|e| LogError::io(segment_dir.display(), e))?;
    let mut indexes = Vec::new();
    for entry in
        std::fs::read_dir(segment_dir).map_err(|e| LogError::io(segment_dir.display(), e))?
    {
        let entry = entry.map_err(|e| LogError::io(segment_dir.display(), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".seg.tmp") {
            // A segment whose creation did not finish; it never held data.
            std::fs::remove_file(entry.path())
                .map_err(|e| LogError::io(entry.path().display(), e))?;
        } else if let Some(index) = parse_segment_name(&name) {
            indexes.push(index);
        }
    }
    indexes.sort_unstable();
    let mut segments = Vec::with_capacity(indexes.len());
    for (expected, index) in indexes.into_iter().enumerate() {
        if index != expected as u64 {
            return Err(LogError::Corrupt(format!("segment {expected} is missing")));
        }
        segments.push(Arc::new(open_segment(segment_dir, index)?));
    }
    if segments.is_empty() {
        let preallocate_to = if options.preallocate {
            options.segment_size
        } else {
            SEGMENT_HEADER_LEN
        };
        segments.push(Arc::new(create_segment(segment_dir, 0, 0, preallocate_to)?));
    }
    Ok(segments)
}

pub(crate) fn recover(
    segment_dir: &Path,
    index_dir: &Path,
    options: &LogOptions,
) -> Result<Recovered, LogError> {
    let segments = open_segments(segment_dir, options)?;
    let cache = 64 << 20;
    let (mut index, mut rebuilt_index) = Index::open(index_dir, cache)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let loaded = match index.load() {
            Ok(loaded) => loaded,
            Err(reason) if attempt == 1 => {
                tracing::warn!(%reason, "sled index is inconsistent; rebuilding it from the segments");
                (index, rebuilt_index) = rebuild(index, index_dir, cache)?;
                continue;
            }
            Err(reason) => {
                return Err(LogError::Corrupt(format!(
                    "a rebuilt index is inconsistent: {reason}"
                )))
            }
        };
        match scan_tail(&segments, &index, loaded, options)? {
            Ok((write_offset, head, loaded, to_index)) => {
                return Ok(Recovered {
                    segments,
                    write_offset,
                    head,
                    loaded,
                    to_index,
                    index,
                    rebuilt_index,
                })
            }
            Err(reason) if attempt == 1 => {
                tracing::warn!(%reason, "sled index disagrees with the segments; rebuilding it");
                (index, rebuilt_index) = rebuild(index, index_dir, cache)?;
            }
            Err(reason) => return Err(LogError::Corrupt(reason)),
        }
    }
}

fn rebuild(index: Index, index_dir: &Path, cache: u64) -> Result<(Index, bool), LogError> {
    drop(index);
    let aside = index_dir.with_extension("damaged");
    let _ = std::fs::remove_dir_all(&aside);
    std::fs::rename(index_dir, &aside).map_err(|e| LogError::io(index_dir.display(), e))?;
    let (index, _) = Index::open(index_dir, cache)?;
    Ok((index, true))
}

type TailScan = (u64, u64, Loaded, Vec<IndexEntry>);

/// Scans from the last indexed position to the end of the log. The outer `Err` is a fault
/// in the segments; the inner `Err` says the index disagrees with them (rebuild it).
fn scan_tail(
    segments: &[Arc<Segment>],
    index: &Index,
    mut loaded: Loaded,
    options: &LogOptions,
) -> Result<Result<TailScan, String>, LogError> {
    let indexed = loaded.indexed_up_to;
    let (start_segment, start_offset, start_position) = if indexed == 0 {
        (0, SEGMENT_HEADER_LEN, 0)
    } else {
        let block = (indexed - 1) / SPARSE_STRIDE;
        let (segment, offset) = crate::index::decode_location(loaded.sparse[block as usize]);
        (segment, offset, block * SPARSE_STRIDE)
    };
    if start_segment as usize >= segments.len() {
        return Ok(Err(format!(
            "the index points into segment {start_segment}, which does not exist"
        )));
    }
    let mut expected = start_position;
    let mut to_index = Vec::new();
    // The events of the append being read; applied only once its last frame is seen.
    let mut current_append: Vec<(RecordedEvent, u64)> = Vec::new();
    let mut append_start: Option<(usize, u64)> = None;
    let mut last_indexed_seen = indexed == 0;
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate().skip(start_segment as usize) {
        let offset = if i == start_segment as usize {
            start_offset
        } else {
            SEGMENT_HEADER_LEN
        };
        if i != start_segment as usize && segment.first_position != expected {
            return Err(LogError::Corrupt(format!(
                "segment {} starts at position {} but {expected} was expected",
                segment.path.display(),
                segment.first_position
            )));
        }
        let mut cursor = FrameCursor::new(&segment.file, offset, 1 << 20);
        let (end, damage) = loop {
            match cursor
                .next_frame()
                .map_err(|e| LogError::io(segment.path.display(), e))?
            {
                Next::Frame { frame, offset, .. } => {
                    let event = frame.event;
                    if event.position != expected {
                        break (
                            offset,
                            Some(format!(
                                "position {} where {expected} was expected",
                                event.position
                            )),
                        );
                    }
                    if current_append.is_empty() {
                        append_start = Some((i, offset));
                    }
                    expected += 1;
                    if event.position + 1 == indexed {
                        // Spot check: the newest indexed event must be in the index.
                        if !index.agrees(
                            event.event_id,
                            event.position,
                            &event.stream_id,
                            event.stream_version,
                        )? {
                            return Ok(Err(format!(
                                "the index does not hold position {}",
                                event.position
                            )));
                        }
                        last_indexed_seen = true;
                    }
                    let remaining = frame.remaining_in_append;
                    current_append.push((event, offset));
                    if remaining == 0 {
                        for (event, offset) in current_append.drain(..) {
                            if event.position >= indexed {
                                apply(
                                    &mut loaded,
                                    &mut to_index,
                                    event,
                                    encode_location(i as u64, offset),
                                );
                            }
                        }
                        append_start = None;
                    }
                }
                Next::End { offset } => break (offset, None),
                Next::Damaged { offset, reason } => break (offset, Some(reason.to_string())),
            }
        };
        if i < last {
            if let Some(reason) = damage {
                return Err(LogError::Corrupt(format!(
                    "{reason} at offset {end} of {}, which is not the last segment",
                    segment.path.display()
                )));
            }
            if !current_append.is_empty() {
                return Err(LogError::Corrupt(format!(
                    "an append is cut short at the end of {}",
                    segment.path.display()
                )));
            }
            continue;
        }
        // The last segment: anything after the last complete append is an unacknowledged
        // write that was torn by a crash; cut it off.
        let cut = match append_start {
            Some((_, offset)) => offset,
            None => end,
        };
        if !current_append.is_empty() {
            expected -= current_append.len() as u64;
            current_append.clear();
        }
        if let Some(reason) = &damage {
            tracing::warn!(segment = %segment.path.display(), offset = cut, %reason, "cutting off a torn tail");
        }
        cut_tail(segment, cut, damage.is_some() || cut != end, options)?;
        if !last_indexed_seen {
            return Ok(Err(format!(
                "the index claims position {} but the segments end before it",
                indexed - 1
            )));
        }
        return Ok(Ok((cut, expected, loaded, to_index)));
    }
    unreachable!("the last segment always returns")
}

fn apply(loaded: &mut Loaded, to_index: &mut Vec<IndexEntry>, event: RecordedEvent, location: u64) {
    let location = (event.position % SPARSE_STRIDE == 0).then_some(location);
    if let Some(location) = location {
        debug_assert_eq!(loaded.sparse.len() as u64, event.position / SPARSE_STRIDE);
        loaded.sparse.push(location);
    }
    loaded.ids.insert(event.event_id, event.position);
    loaded
        .versions
        .insert(event.stream_id.clone(), event.stream_version);
    to_index.push(IndexEntry {
        position: event.position,
        stream: Arc::from(event.stream_id.as_str()),
        version: event.stream_version,
        event_id: event.event_id,
        location,
    });
}

/// Makes sure nothing but zeros follows `cut` in the last segment, so a later write can
/// never be followed by stale frames from before the crash.
fn cut_tail(
    segment: &Segment,
    cut: u64,
    damaged: bool,
    options: &LogOptions,
) -> Result<(), LogError> {
    let io = |e| LogError::io(segment.path.display(), e);
    let len = segment.file.metadata().map_err(io)?.len();
    if len <= cut {
        return Ok(());
    }
    if !damaged && only_zeros(segment, cut, len).map_err(io)? {
        return Ok(());
    }
    segment.file.set_len(cut).map_err(io)?;
    if options.preallocate && options.segment_size > cut {
        zero_fill(&segment.file, cut, options.segment_size).map_err(io)?;
    }
    segment.file.sync_all().map_err(io)?;
    if let Some(dir) = segment.path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn only_zeros(segment: &Segment, from: u64, to: u64) -> std::io::Result<bool> {
    let mut buf = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(buf.len());
        segment.file.read_exact_at(&mut buf[..n], at)?;
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}
