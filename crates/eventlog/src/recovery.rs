//! Opening a log directory: find the segments, cut off a torn or garbage tail, open the
//! sled store, and build the in-memory indexes from every durable event.

use crate::error::LogError;
use crate::index::{encode_location, Index, Loaded};
use crate::segment::{
    create_segment, open_segment, parse_segment_name, sync_dir, zero_fill, FrameCursor, Next,
    Segment, SEGMENT_HEADER_LEN,
};
use crate::types::{LogOptions, RecordedEvent};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// Everything `EventLog::open` needs to start the writer.
pub(crate) struct Recovered {
    pub segments: Vec<Arc<Segment>>,
    pub write_offset: u64,
    pub head: u64,
    pub loaded: Loaded,
    pub index: Index,
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
    // The store holds checkpoints and the small trees of other components only.
    let index = Index::open(index_dir, 16 << 20)?;
    let (write_offset, head, loaded) = scan(&segments, options)?;
    Ok(Recovered {
        segments,
        write_offset,
        head,
        loaded,
        index,
    })
}

/// Scans every segment from the start: builds the in-memory indexes from the committed
/// events and cuts a torn tail off the last segment.
fn scan(segments: &[Arc<Segment>], options: &LogOptions) -> Result<(u64, u64, Loaded), LogError> {
    let mut loaded = Loaded::default();
    let mut expected = 0u64;
    // The events of the append being read; added only once its last frame is seen.
    let mut current_append: Vec<(RecordedEvent, u64)> = Vec::new();
    let mut append_start: Option<u64> = None;
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        if segment.first_position != expected {
            return Err(LogError::Corrupt(format!(
                "segment {} starts at position {} but {expected} was expected",
                segment.path.display(),
                segment.first_position
            )));
        }
        let mut cursor = FrameCursor::new(&segment.file, SEGMENT_HEADER_LEN, 1 << 20);
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
                        append_start = Some(offset);
                    }
                    expected += 1;
                    let remaining = frame.remaining_in_append;
                    current_append.push((event, offset));
                    if remaining == 0 {
                        for (event, offset) in current_append.drain(..) {
                            add(&mut loaded, &event, encode_location(i as u64, offset))?;
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
        let cut = append_start.unwrap_or(end);
        if !current_append.is_empty() {
            expected -= current_append.len() as u64;
            current_append.clear();
        }
        if let Some(reason) = &damage {
            tracing::warn!(segment = %segment.path.display(), offset = cut, %reason, "cutting off a torn tail");
        }
        cut_tail(segment, cut, damage.is_some() || cut != end, options)?;
        return Ok((cut, expected, loaded));
    }
    unreachable!("the last segment always returns")
}

/// Adds one committed event to the in-memory indexes, checking its stream version and
/// event id against what came before it.
fn add(loaded: &mut Loaded, event: &RecordedEvent, location: u64) -> Result<(), LogError> {
    let want = loaded
        .streams
        .version(&event.stream_id)
        .map_or(0, |version| version + 1);
    if event.stream_version != want {
        return Err(LogError::Corrupt(format!(
            "position {} holds version {} of {} where version {want} was expected",
            event.position, event.stream_version, event.stream_id
        )));
    }
    let earlier: Vec<u64> = loaded.ids.candidates(&event.event_id).collect();
    if !earlier.is_empty() {
        loaded
            .suspects
            .push((event.position, event.event_id, earlier));
    }
    loaded.add(
        event.position,
        &event.stream_id,
        event.stream_version,
        event.event_id,
        location,
    );
    Ok(())
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
