//! Opening a log directory: find the segments, cut off the unfinished last write a crash
//! may have torn, refuse any other damage, open the sled store, and build the in-memory
//! indexes from every durable event.

use crate::error::LogError;
use crate::examine::{classify, describe_damage, Stop, StopPoint, DAMAGE_ADVICE};
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
/// events and cuts the unfinished last write off the last segment. Anything else that
/// fails a check is damage, and the log is not opened (ADR 007).
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
        // Where the write of the last clean frame of this segment began.
        let mut last_write_start: Option<u64> = None;
        let mut found = String::new();
        let (end, damage, intact_frame_at_end) = loop {
            match cursor
                .next_frame()
                .map_err(|e| LogError::io(segment.path.display(), e))?
            {
                Next::Frame { frame, offset, .. } => {
                    let event = frame.event;
                    if event.position != expected {
                        found = format!("a frame holding position {}", event.position);
                        break (offset, true, true);
                    }
                    if current_append.is_empty() {
                        append_start = Some(offset);
                    }
                    expected += 1;
                    last_write_start = frame.write_start;
                    let remaining = frame.remaining_in_append;
                    current_append.push((event, offset));
                    if remaining == 0 {
                        for (event, offset) in current_append.drain(..) {
                            add(&mut loaded, &event, encode_location(i as u64, offset))?;
                        }
                        append_start = None;
                    }
                }
                Next::End { offset } => break (offset, false, false),
                Next::Damaged { offset, reason } => {
                    found = reason.to_string();
                    break (offset, true, false);
                }
            }
        };
        let unfinished = current_append.len() as u64;
        let stop = StopPoint {
            offset: end,
            found: damage.then_some(found.as_str()),
            intact_frame_at_offset: intact_frame_at_end,
            write_starts: torn_write_candidates(end, append_start, last_write_start),
            next_position: expected,
            last_good_position: expected.checked_sub(1 + unfinished),
            is_last_segment: i == last,
        };
        let verdict =
            classify(segment, &stop).map_err(|e| LogError::io(segment.path.display(), e))?;
        let torn_bytes = match verdict {
            Stop::Damaged {
                detail,
                next_intact,
            } => {
                return Err(LogError::Corrupt(format!(
                    "{}; {DAMAGE_ADVICE}",
                    describe_damage(segment, &stop, &detail, next_intact.as_deref())
                )))
            }
            Stop::Clean => 0,
            Stop::Torn { bytes } => bytes,
        };
        if i < last {
            if !current_append.is_empty() {
                return Err(LogError::Corrupt(format!(
                    "an append is cut short at byte offset {end} of {}, which is not the last \
                     segment; {DAMAGE_ADVICE}",
                    segment.path.display()
                )));
            }
            continue;
        }
        // The last segment: what follows the last complete append is the unfinished last
        // write, never acknowledged; cut it off.
        let cut = append_start.unwrap_or(end);
        if !current_append.is_empty() {
            expected -= current_append.len() as u64;
            current_append.clear();
        }
        if torn_bytes > 0 || cut != end {
            tracing::warn!(
                segment = %segment.path.display(),
                offset = cut,
                bytes = torn_bytes + (end - cut),
                reason = %stop.found.unwrap_or("non-zero bytes after the end of the data"),
                "cutting off the unfinished last write, which a crash tore before it was acknowledged"
            );
        }
        cut_tail(segment, cut, torn_bytes > 0 || cut != end, options)?;
        return Ok((cut, expected, loaded));
    }
    unreachable!("the last segment always returns")
}

/// Where the unfinished last write may have begun, given where the clean frames stop:
/// at the stop itself, or where the write of the last clean frame began if that write
/// may run on past the stop. An append is never split between writes, so if one is left
/// unfinished its write is the last clean frame's.
pub(crate) fn torn_write_candidates(
    stop: u64,
    append_start: Option<u64>,
    last_write_start: Option<u64>,
) -> Vec<u64> {
    match (append_start, last_write_start) {
        (Some(_), Some(write)) => vec![write],
        // Frames of the first format do not say where their write began.
        (Some(append), None) => vec![append],
        (None, Some(write)) if write != stop => vec![stop, write],
        (None, _) => vec![stop],
    }
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

#[cfg(test)]
mod tests {
    use crate::codec::{encode_frame, FrameFields};
    use crate::segment::{segment_path, SEGMENT_HEADER_LEN};
    use crate::{EventLog, LogOptions};
    use std::os::unix::fs::FileExt;
    use uuid::Uuid;

    fn options() -> LogOptions {
        LogOptions {
            segment_size: 64 * 1024,
            ..LogOptions::default()
        }
    }

    /// A log of `count` one-event appends in the first frame format, which records no
    /// write start; returns the segment's path and each frame's offset.
    async fn first_format_log(dir: &std::path::Path, count: u64) -> (std::path::PathBuf, Vec<u64>) {
        EventLog::open(dir, options())
            .await
            .unwrap()
            .close()
            .await
            .unwrap();
        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        for position in 0..count {
            offsets.push(SEGMENT_HEADER_LEN + buf.len() as u64);
            encode_frame(
                &mut buf,
                &FrameFields {
                    position,
                    stream_version: position,
                    recorded_at_micros: 1_700_000_000_000_000,
                    event_id: Uuid::now_v7(),
                    schema_version: 1,
                    index_in_append: 0,
                    remaining_in_append: 0,
                    correlation_id: None,
                    causation_id: None,
                    write_start: None,
                    stream_id: "request-old",
                    event_type: "Noted",
                    actor: "clerk",
                    payload: b"{\"n\":1}",
                },
            );
        }
        let path = segment_path(&dir.join("segments"), 0);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&buf, SEGMENT_HEADER_LEN).unwrap();
        (path, offsets)
    }

    #[tokio::test]
    async fn a_log_of_the_first_frame_format_opens_and_takes_new_appends() {
        let dir = tempfile::tempdir().unwrap();
        first_format_log(dir.path(), 12).await;
        let log = EventLog::open(dir.path(), options()).await.unwrap();
        assert_eq!(log.head_position(), 12);
        assert_eq!(log.stream_version("request-old"), Some(11));
        log.append(
            "request-old",
            crate::ExpectedVersion::Exact(11),
            vec![crate::NewEvent::new("Noted", b"{}".to_vec())],
        )
        .await
        .unwrap();
        log.close().await.unwrap();
        let log = EventLog::open(dir.path(), options()).await.unwrap();
        assert_eq!(log.head_position(), 13);
        assert!(log.verify().await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn in_the_first_frame_format_a_torn_end_is_cut_and_damage_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets) = first_format_log(dir.path(), 12).await;
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0u8; 30], offsets[11] + 4).unwrap();
        drop(file);
        let log = EventLog::open(dir.path(), options()).await.unwrap();
        assert_eq!(log.head_position(), 11);
        log.close().await.unwrap();

        let dir = tempfile::tempdir().unwrap();
        let (path, offsets) = first_format_log(dir.path(), 12).await;
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0u8; 4], offsets[5]).unwrap();
        drop(file);
        let before = std::fs::read(&path).unwrap();
        let error = EventLog::open(dir.path(), options()).await.err().unwrap();
        assert!(
            error.to_string().contains("position 5 was expected"),
            "{error}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}
