//! What follows the last frame that reads cleanly from a segment: nothing (zeros or the
//! end of the file), the unfinished last write that a crash tore, or damage. Recovery,
//! `verify` and `salvage` all ask this one place, so they draw the line in the same spot
//! (ADR 007).

use crate::codec::{
    decode_body, decode_header, DecodedFrame, Header, FRAME_HEADER_LEN, MAX_WRITE_BYTES,
    MIN_FRAME_LEN,
};
use crate::segment::Segment;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Where the clean run of frames stopped and what the caller knows about it.
pub(crate) struct StopPoint<'a> {
    /// The offset of the first byte that is not part of a clean frame.
    pub offset: u64,
    /// What was found there; `None` for a zero length (the normal end of the data).
    pub found: Option<&'a str>,
    /// Whether a frame that passes its checksum sits at `offset` (it failed another check,
    /// such as its position), which no crash can produce.
    pub intact_frame_at_offset: bool,
    /// The offsets where the unfinished last write may have started: the stop point
    /// itself, and the write start of the last clean frame if its write may run on past it.
    pub write_starts: Vec<u64>,
    /// The position the next frame should hold.
    pub next_position: u64,
    /// The position of the last clean event before the stop, if any.
    pub last_good_position: Option<u64>,
    pub is_last_segment: bool,
}

/// An intact frame found after damage.
pub(crate) struct Intact {
    pub offset: u64,
    pub frame: DecodedFrame,
}

/// The verdict on a stop point.
pub(crate) enum Stop {
    /// Only zeros or the end of the file follow: the data simply ends here.
    Clean,
    /// The bytes from the stop on can only be the unfinished last write: a crash tore it
    /// and it was never acknowledged.
    Torn { bytes: u64 },
    /// Anything else: the file is damaged. `next_intact` is the first intact frame after
    /// the damage, if one lies within reach.
    Damaged {
        detail: String,
        next_intact: Option<Box<Intact>>,
    },
}

/// Decides what the bytes from `stop.offset` to the end of the segment are.
pub(crate) fn classify(segment: &Segment, stop: &StopPoint<'_>) -> std::io::Result<Stop> {
    let file = &segment.file;
    let len = file.metadata()?.len();
    let last_non_zero = last_non_zero_byte(file, stop.offset, len)?;
    // Only zeros (or nothing) from the stop on: the data ends there, whatever the
    // cursor made of the zeros.
    let Some(last_non_zero) = last_non_zero else {
        return Ok(Stop::Clean);
    };
    let search_end = (last_non_zero + 1).min(stop.offset.saturating_add(MAX_WRITE_BYTES));
    let window = read_window(file, stop.offset, search_end)?;
    let intact = intact_frames(&window, stop.offset, stop.next_position);
    let damaged = |detail: String, intact: Vec<Intact>| {
        Ok(Stop::Damaged {
            detail,
            next_intact: intact.into_iter().next().map(Box::new),
        })
    };
    if !stop.is_last_segment {
        return damaged(
            "it is not the last segment, where only complete writes can be".into(),
            intact,
        );
    }
    if stop.intact_frame_at_offset {
        return damaged(
            "the frame there passes its checksum, so no crash tore it".into(),
            intact,
        );
    }
    // The unfinished write started at one of the candidate offsets, and it cannot have
    // left anything further than MAX_WRITE_BYTES past its start, nor any frame of
    // another write after it.
    let torn_from = stop.write_starts.iter().copied().find(|start| {
        last_non_zero < start.saturating_add(MAX_WRITE_BYTES)
            && intact
                .iter()
                .all(|found| found.frame.write_start == Some(*start))
    });
    match torn_from {
        Some(_) => Ok(Stop::Torn {
            bytes: last_non_zero + 1 - stop.offset,
        }),
        None => {
            let detail = if !intact.is_empty() {
                "intact frames follow it, so it is not the unfinished end of the last write"
            } else if last_non_zero >= stop.offset.saturating_add(MAX_WRITE_BYTES) {
                "non-zero bytes follow it further than any single write reaches"
            } else {
                "non-zero bytes follow it further than the last write reaches"
            };
            damaged(detail.to_string(), intact)
        }
    }
}

/// The offset of the last non-zero byte in `[from, to)`, reading backwards.
fn last_non_zero_byte(file: &File, from: u64, to: u64) -> std::io::Result<Option<u64>> {
    const CHUNK: u64 = 1 << 20;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut end = to;
    while end > from {
        let start = end.saturating_sub(CHUNK).max(from);
        let n = (end - start) as usize;
        file.read_exact_at(&mut buf[..n], start)?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b != 0) {
            return Ok(Some(start + i as u64));
        }
        end = start;
    }
    Ok(None)
}

fn read_window(file: &File, from: u64, to: u64) -> std::io::Result<Vec<u8>> {
    let mut window = vec![0u8; to.saturating_sub(from) as usize];
    file.read_exact_at(&mut window, from)?;
    Ok(window)
}

/// The frame whose first byte is `bytes[at]`, if one that passes its checksum is there.
fn frame_at(bytes: &[u8], at: usize) -> Option<(DecodedFrame, usize)> {
    let header: [u8; FRAME_HEADER_LEN] = bytes.get(at..at + FRAME_HEADER_LEN)?.try_into().ok()?;
    let Header::Frame { body_len, crc } = decode_header(&header) else {
        return None;
    };
    let body = bytes.get(at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + body_len)?;
    decode_body(body, crc).map(|frame| (frame, FRAME_HEADER_LEN + body_len))
}

/// Every intact frame in `window` (which starts at segment offset `base`) after its first
/// byte: searched byte by byte where frames do not follow one another, and followed frame
/// by frame where they do. Only frames holding a position from `min_position` to as many
/// as the window could hold pass, so a stray match inside a payload is not taken for one.
pub(crate) fn intact_frames(window: &[u8], base: u64, min_position: u64) -> Vec<Intact> {
    let max_position = min_position + window.len() as u64 / MIN_FRAME_LEN + 1;
    let plausible = |at: usize| -> bool {
        let Some(bytes) = window.get(at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + 8) else {
            return false;
        };
        let position = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
        (min_position..=max_position).contains(&position)
    };
    let mut found = Vec::new();
    let mut at = 1usize;
    while at + FRAME_HEADER_LEN <= window.len() {
        if plausible(at) {
            if let Some((frame, len)) = frame_at(window, at) {
                found.push(Intact {
                    offset: base + at as u64,
                    frame,
                });
                at += len;
                continue;
            }
        }
        at += 1;
    }
    found
}

/// A sentence naming the damage for an operator: the file, the byte offset, the positions
/// around it and what was found, and what to do.
pub(crate) fn describe_damage(
    segment: &Segment,
    stop: &StopPoint<'_>,
    detail: &str,
    next_intact: Option<&Intact>,
) -> String {
    let found = stop
        .found
        .unwrap_or("a zero frame length, which marks the end of the data,");
    let before = match stop.last_good_position {
        Some(position) => format!("the last intact event before it is position {position}"),
        None => "no intact event precedes it in this segment".to_string(),
    };
    let after = match next_intact {
        Some(intact) => format!(
            "an intact frame holding position {} follows at offset {}",
            intact.frame.event.position, intact.offset
        ),
        None => "no intact frame was found after it".to_string(),
    };
    format!(
        "{} is damaged at byte offset {}: {found} where position {} was expected; {before}, \
         {after}; {detail}",
        segment.path.display(),
        stop.offset,
        stop.next_position,
    )
}

/// What an operator can do about damage, said after every refusal to open.
pub(crate) const DAMAGE_ADVICE: &str = "nothing was changed; restore the data directory \
    from a backup, or stop anju-server and run `anju log salvage --data-dir <dir>` to move \
    the damaged segments aside and keep every event that can be proven intact";
