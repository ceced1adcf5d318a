//! An online copy of the log's segments up to a durable position, taken while the writer
//! keeps appending (ADR 009). Every byte below the head's frame end was synced before the
//! head moved past it and is never written again, so it is read with positional reads on
//! the open segment files without stopping the writer.

use crate::error::LogError;
use crate::segment::{segment_path, sync_dir, FrameCursor, Next, Segment, SEGMENT_HEADER_LEN};
use crate::shared::Shared;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// What [`crate::EventLog::backup`] copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBackup {
    /// The copy holds the events at positions `0..position`: the head when it started.
    pub position: u64,
    /// The segment files written, relative to the target directory (`segments/NNNNNNNN.seg`).
    pub files: Vec<String>,
    /// Bytes written.
    pub bytes: u64,
}

impl Shared {
    /// The byte offset just past the frame of the committed event at `position` in
    /// `segment`, which must hold it.
    fn frame_end(&self, segment: &Segment, position: u64) -> Result<u64, LogError> {
        let io = |e| LogError::io(segment.path.display(), e);
        // Start at the nearest indexed location in this segment, else at its first frame.
        let block = position / crate::index::SPARSE_STRIDE;
        let mut offset = SEGMENT_HEADER_LEN;
        let mut expected = segment.first_position;
        if let Some(location) = self
            .sparse
            .read()
            .expect("sparse index lock poisoned")
            .get(block as usize)
        {
            let (index, at) = crate::index::decode_location(*location);
            let block_start = block * crate::index::SPARSE_STRIDE;
            if index == segment.index && block_start >= segment.first_position {
                offset = at;
                expected = block_start;
            }
        }
        let mut cursor = FrameCursor::new(&segment.file, offset, 256 << 10);
        loop {
            match cursor.next_frame().map_err(io)? {
                Next::Frame { frame, offset, len } => {
                    if frame.event.position != expected {
                        return Err(LogError::Corrupt(format!(
                            "expected position {expected} at offset {offset} of {} but found {}",
                            segment.path.display(),
                            frame.event.position
                        )));
                    }
                    if expected == position {
                        return Ok(offset + len);
                    }
                    expected += 1;
                }
                Next::End { offset } | Next::Damaged { offset, .. } => {
                    return Err(LogError::Corrupt(format!(
                        "committed position {position} is missing from {} (the data ends at \
                         offset {offset}, before position {expected})",
                        segment.path.display()
                    )))
                }
            }
        }
    }
}

/// Copies the segments holding positions `0..head` into `to/segments/`, each up to the end
/// of its last event below `head` (the zeros a segment is preallocated with are left out),
/// syncing every file and the directory. `to` must not hold a `segments` directory yet.
pub(crate) fn backup(shared: &Arc<Shared>, to: &Path) -> Result<LogBackup, LogError> {
    let head = shared.head();
    let segments: Vec<Arc<Segment>> = shared
        .segments
        .read()
        .expect("segment list lock poisoned")
        .clone();
    let target = to.join("segments");
    std::fs::create_dir_all(to).map_err(|e| LogError::io(to.display(), e))?;
    std::fs::create_dir(&target).map_err(|e| LogError::io(target.display(), e))?;
    let mut copied = LogBackup {
        position: head,
        files: Vec::new(),
        bytes: 0,
    };
    for (n, segment) in segments.iter().enumerate() {
        if segment.first_position >= head && n > 0 {
            break;
        }
        // The last event of this segment below the head: the one before the next
        // segment's first, or the one before the head.
        let next_first = segments.get(n + 1).map_or(u64::MAX, |s| s.first_position);
        let end_position = next_first.min(head);
        let end = if end_position > segment.first_position {
            shared.frame_end(segment, end_position - 1)?
        } else {
            SEGMENT_HEADER_LEN
        };
        let name = segment_path(&target, segment.index);
        copy_prefix(&segment.file, &segment.path, end, &name)?;
        copied.files.push(format!(
            "segments/{}",
            name.file_name().expect("a file name").to_string_lossy()
        ));
        copied.bytes += end;
    }
    sync_dir(&target)?;
    sync_dir(to)?;
    Ok(copied)
}

/// How many bytes a copy writes between two syncs (a multiple of its 1 MiB buffer).
const SYNC_EVERY: u64 = 8 << 20;

/// Writes the first `len` bytes of `source` to a new file `target` and syncs it.
fn copy_prefix(source: &File, source_path: &Path, len: u64, target: &Path) -> Result<(), LogError> {
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(target)
        .map_err(|e| LogError::io(target.display(), e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < len {
        let want = ((len - at) as usize).min(buf.len());
        source
            .read_exact_at(&mut buf[..want], at)
            .map_err(|e| LogError::io(source_path.display(), e))?;
        out.write_all(&buf[..want])
            .map_err(|e| LogError::io(target.display(), e))?;
        at += want as u64;
        // Sync as it goes, so the copy never leaves hundreds of megabytes for one sync
        // to push out at once beside the writer's fdatasync calls.
        if at.is_multiple_of(SYNC_EVERY) {
            out.sync_data()
                .map_err(|e| LogError::io(target.display(), e))?;
        }
    }
    out.sync_all()
        .map_err(|e| LogError::io(target.display(), e))?;
    Ok(())
}
