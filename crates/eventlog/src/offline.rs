//! Work on a stopped server's log directory that never goes through recovery:
//! [`verify_directory`] reads every segment and writes nothing; [`salvage`] moves damaged
//! segments aside and writes back in their place every event it can prove intact, with a
//! placeholder at each position it cannot keep (ADR 007).

use crate::codec::{encode_frame, DecodedFrame, FrameFields};
use crate::error::LogError;
use crate::examine::{classify, describe_damage, Stop, StopPoint};
use crate::recovery::torn_write_candidates;
use crate::segment::{
    header_bytes, open_segment_read_only, parse_segment_name, segment_path, sync_dir, FrameCursor,
    Next, Segment, SEGMENT_HEADER_LEN,
};
use crate::types::VerifyReport;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Stops listing problems after this many; the count of events still covers everything.
const MAX_PROBLEMS: usize = 100;
/// The stream that holds a placeholder for each position salvage could not keep.
pub const LOST_STREAM: &str = "$lost";
/// The type of those placeholders.
pub const LOST_EVENT_TYPE: &str = "EventLost";

/// What a walk over a segment meets, in order.
enum Walked {
    Frame { frame: DecodedFrame, len: u64 },
    Damage(String),
    Torn(String),
}

/// Reads one segment's frames in order, naming damage and a torn tail as they are met and
/// going on from the next intact frame after damage.
fn walk_segment(
    segment: &Segment,
    is_last: bool,
    mut visit: impl FnMut(Walked),
) -> Result<(), LogError> {
    let io = |e| LogError::io(segment.path.display(), e);
    let mut expected = segment.first_position;
    let mut cursor = FrameCursor::new(&segment.file, SEGMENT_HEADER_LEN, 1 << 20);
    let mut append_start: Option<u64> = None;
    let mut last_write_start = None;
    let mut last_good = None;
    loop {
        let (offset, found, intact_frame_at_offset) = match cursor.next_frame().map_err(io)? {
            Next::Frame { frame, offset, len } if frame.event.position == expected => {
                append_start = if frame.remaining_in_append == 0 {
                    None
                } else if frame.index_in_append == 0 {
                    Some(offset)
                } else {
                    append_start.or(Some(offset))
                };
                last_write_start = frame.write_start;
                last_good = Some(expected);
                expected += 1;
                visit(Walked::Frame { frame, len });
                continue;
            }
            Next::Frame { frame, offset, .. } => (
                offset,
                Some(format!("a frame holding position {}", frame.event.position)),
                true,
            ),
            Next::End { offset } => (offset, None, false),
            Next::Damaged { offset, reason } => (offset, Some(reason.to_string()), false),
        };
        let stop = StopPoint {
            offset,
            found: found.as_deref(),
            intact_frame_at_offset,
            write_starts: torn_write_candidates(offset, append_start, last_write_start),
            next_position: expected,
            last_good_position: last_good,
            is_last_segment: is_last,
        };
        match classify(segment, &stop).map_err(io)? {
            Stop::Clean => return Ok(()),
            Stop::Torn { bytes } => {
                visit(Walked::Torn(format!(
                    "{}: {bytes} bytes from byte offset {offset} on are the unfinished last \
                     write, never acknowledged; anju-server cuts them off when it starts",
                    segment.path.display()
                )));
                return Ok(());
            }
            Stop::Damaged {
                detail,
                next_intact,
            } => {
                visit(Walked::Damage(describe_damage(
                    segment,
                    &stop,
                    &detail,
                    next_intact.as_deref(),
                )));
                let Some(intact) = next_intact.map(|boxed| *boxed) else {
                    return Ok(());
                };
                expected = intact.frame.event.position;
                cursor = FrameCursor::new(&segment.file, intact.offset, 1 << 20);
                append_start = None;
                last_write_start = None;
            }
        }
    }
}

/// The segment indexes in `segment_dir`, sorted; nothing is created or deleted.
fn segment_indexes(segment_dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut indexes = Vec::new();
    for entry in
        std::fs::read_dir(segment_dir).map_err(|e| LogError::io(segment_dir.display(), e))?
    {
        let entry = entry.map_err(|e| LogError::io(segment_dir.display(), e))?;
        if let Some(index) = parse_segment_name(&entry.file_name().to_string_lossy()) {
            indexes.push(index);
        }
    }
    indexes.sort_unstable();
    Ok(indexes)
}

/// A lock on the directory's LOCK file, so no anju-server works on it meanwhile:
/// shared for reading (and then only if the file exists), exclusive for salvage.
fn lock_directory(dir: &Path, exclusive: bool) -> Result<Option<File>, LogError> {
    let path = dir.join("LOCK");
    let in_use = |e: std::fs::TryLockError| {
        LogError::io(
            path.display(),
            std::io::Error::other(format!("log directory is in use: {e:?}")),
        )
    };
    if exclusive {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| LogError::io(path.display(), e))?;
        file.try_lock().map_err(in_use)?;
        return Ok(Some(file));
    }
    match File::open(&path) {
        Ok(file) => {
            file.try_lock_shared().map_err(in_use)?;
            Ok(Some(file))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LogError::io(path.display(), e)),
    }
}

/// Checks a stopped log directory (the one holding `segments/`) without writing to it:
/// every frame's checksum, position and stream-version contiguity, unique event ids,
/// whole appends, and what follows the data of each segment. Damage is listed in
/// `problems` with its file, byte offset and the positions around it; the unfinished
/// last write a crash left, which anju-server cuts when it starts, is `torn_tail`.
pub fn verify_directory(dir: &Path) -> Result<VerifyReport, LogError> {
    let _lock = lock_directory(dir, false)?;
    let segment_dir = dir.join("segments");
    let indexes = segment_indexes(&segment_dir)?;
    let mut report = VerifyReport {
        segments: indexes.len() as u64,
        ..VerifyReport::default()
    };
    let mut problems = Vec::new();
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut ids: HashSet<Uuid> = HashSet::new();
    let mut expected = 0u64;
    let last = indexes.len().saturating_sub(1);
    for (n, index) in indexes.iter().enumerate() {
        if *index != n as u64 {
            problems.push(format!("segment {n} is missing"));
        }
        let segment = match open_segment_read_only(&segment_dir, *index) {
            Ok(segment) => segment,
            Err(error) => {
                problems.push(error.to_string());
                continue;
            }
        };
        if segment.first_position != expected {
            problems.push(format!(
                "{} starts at position {} where {expected} was expected",
                segment.path.display(),
                segment.first_position
            ));
            expected = segment.first_position;
        }
        // The position of the first event of an append whose last frame is not seen yet.
        let mut open_append: Option<u64> = None;
        let path = segment.path.display().to_string();
        walk_segment(&segment, n == last, |walked| match walked {
            Walked::Frame { frame, len } => {
                let event = &frame.event;
                report.events += 1;
                report.bytes += len;
                if event.position != expected {
                    problems.push(format!(
                        "{path}: positions {expected} to {} are missing",
                        event.position.saturating_sub(1)
                    ));
                }
                expected = event.position + 1;
                let want = versions.get(&event.stream_id).map_or(0, |v| v + 1);
                if event.stream_version != want {
                    problems.push(format!(
                        "position {}: stream {} has version {} where {want} was expected",
                        event.position, event.stream_id, event.stream_version
                    ));
                }
                versions.insert(event.stream_id.clone(), event.stream_version);
                if !ids.insert(event.event_id) {
                    problems.push(format!(
                        "position {}: event id {} is repeated",
                        event.position, event.event_id
                    ));
                }
                if frame.index_in_append == 0 {
                    if let Some(start) = open_append.take() {
                        problems.push(format!(
                            "{path}: the append from position {start} is cut short"
                        ));
                    }
                }
                open_append = match (frame.remaining_in_append, open_append) {
                    (0, _) => None,
                    (_, Some(start)) => Some(start),
                    (_, None) => Some(event.position),
                };
            }
            Walked::Damage(text) => problems.push(text),
            Walked::Torn(text) => report.torn_tail = Some(text),
        })?;
        if let Some(start) = open_append {
            if n != last {
                problems.push(format!(
                    "{path}: the append from position {start} is cut short at the end of a \
                     segment that is not the last"
                ));
            } else if report.torn_tail.is_none() {
                report.torn_tail = Some(format!(
                    "{path}: the append from position {start} is not complete: it was never \
                     acknowledged and anju-server cuts it off when it starts"
                ));
            }
        }
    }
    report.streams = versions.len() as u64;
    report.problems_found = problems.len() as u64;
    problems.truncate(MAX_PROBLEMS);
    report.problems = problems;
    Ok(report)
}

/// One position salvage could not keep; a placeholder holds it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostEvent {
    pub position: u64,
    /// Why it was not kept, in words.
    pub reason: String,
    /// What the original frame said, when it was intact but could not be kept.
    pub stream_id: Option<String>,
    pub stream_version: Option<u64>,
    pub event_id: Option<Uuid>,
}

/// What [`salvage`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SalvageReport {
    /// Where the damaged segments (and the files derived from them) were moved; `None`
    /// when no damage was found and nothing was changed.
    pub moved_to: Option<PathBuf>,
    /// The files moved there.
    pub moved: Vec<PathBuf>,
    /// The damage found, in words.
    pub damage: Vec<String>,
    /// Events of the rewritten segments kept as they were (same position, stream,
    /// version, id and content).
    pub kept: u64,
    /// Each position now holding a placeholder in [`LOST_STREAM`], in order.
    pub lost: Vec<LostEvent>,
    /// Set when the last segment's data ends in damage with no intact frame after it,
    /// or in an append not all of whose frames are intact: the log now ends at this
    /// position, and whatever the segment held from here on (how many events is not
    /// known) is only in the moved-aside copy.
    pub cut_from: Option<u64>,
    /// The log's head after the salvage.
    pub head: u64,
}

/// An intact frame found in a damaged segment, by position.
struct Slot {
    frame: DecodedFrame,
}

/// Moves the first damaged segment and every later one aside (into
/// `damaged/<unix seconds>/` beside `segments/`, never deleting them) and writes new
/// segments in their place, covering the same positions: every intact event whose whole
/// append is intact and whose stream version follows on from the events kept before it
/// is kept byte for byte in content; every other position holds a placeholder event in
/// stream [`LOST_STREAM`] saying what was there. Positions stay dense and every stream's
/// versions stay contiguous. Files beside `segments/` that were built from the events
/// (read-model snapshots) are moved aside too, so they are rebuilt. The sled store is
/// left alone. Refuses to run while anju-server holds the directory.
pub fn salvage(dir: &Path) -> Result<SalvageReport, LogError> {
    let _lock = lock_directory(dir, true)?;
    let segment_dir = dir.join("segments");
    let indexes = segment_indexes(&segment_dir)?;
    for (n, index) in indexes.iter().enumerate() {
        if *index != n as u64 {
            return Err(LogError::Corrupt(format!(
                "segment {n} is missing; salvage cannot tell which positions it held: \
                 restore the data directory from a backup"
            )));
        }
    }
    let segments = indexes
        .iter()
        .map(|index| open_segment_read_only(&segment_dir, *index))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            LogError::Corrupt(format!(
                "{e}; salvage needs every segment header: restore the data directory from a backup"
            ))
        })?;
    let last = segments.len().saturating_sub(1);
    let mut report = SalvageReport::default();
    // The first damaged segment, and the versions of every stream before it.
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut first_damaged = None;
    for (n, segment) in segments.iter().enumerate() {
        let mut damage = Vec::new();
        let mut seen = Vec::new();
        let mut open_append = false;
        walk_segment(segment, n == last, |walked| match walked {
            Walked::Frame { frame, .. } => {
                open_append = frame.remaining_in_append != 0;
                seen.push((frame.event.stream_id, frame.event.stream_version));
            }
            Walked::Damage(text) => damage.push(text),
            Walked::Torn(_) => {}
        })?;
        if open_append && n != last {
            damage.push(format!(
                "{}: an append is cut short at the end of a segment that is not the last",
                segment.path.display()
            ));
        }
        let next_first = segments.get(n + 1).map(|s| s.first_position);
        if !damage.is_empty()
            || next_first.is_some_and(|first| first != segment.first_position + seen.len() as u64)
        {
            report.damage = damage;
            first_damaged = Some(n);
            break;
        }
        versions.extend(seen);
    }
    let Some(first_damaged) = first_damaged else {
        report.head = head_of_prefix(&segments)?;
        return Ok(report);
    };
    // Next version of each stream.
    let mut next_version: HashMap<String, u64> =
        versions.into_iter().map(|(s, v)| (s, v + 1)).collect();
    let mut rewritten: Vec<(u64, Vec<u8>)> = Vec::new();
    for (n, segment) in segments.iter().enumerate().skip(first_damaged) {
        let mut slots: BTreeMap<u64, Slot> = BTreeMap::new();
        // Whether damage comes after every intact frame of the segment.
        let mut damaged_at_end = false;
        walk_segment(segment, n == last, |walked| match walked {
            Walked::Frame { frame, .. } => {
                damaged_at_end = false;
                slots.entry(frame.event.position).or_insert(Slot { frame });
            }
            Walked::Damage(_) => damaged_at_end = true,
            Walked::Torn(_) => {}
        })?;
        let start = segment.first_position;
        let end = match segments.get(n + 1) {
            Some(next) => next.first_position,
            // The last segment ends after its last complete append.
            None => {
                let end = complete_end(&slots, start);
                if damaged_at_end || slots.keys().next_back().is_some_and(|p| *p >= end) {
                    report.cut_from = Some(end);
                }
                end
            }
        };
        let mut buf = header_bytes(start).to_vec();
        let mut position = start;
        while position < end {
            let kept = whole_append(&slots, position, end).and_then(|count| {
                let first = &slots[&position].frame.event;
                let follows = next_version.get(&first.stream_id).copied().unwrap_or(0)
                    == first.stream_version;
                follows.then_some(count)
            });
            match kept {
                Some(count) => {
                    for p in position..position + count {
                        let frame = &slots[&p].frame;
                        encode_kept(&mut buf, frame);
                        next_version.insert(
                            frame.event.stream_id.clone(),
                            frame.event.stream_version + 1,
                        );
                    }
                    report.kept += count;
                    position += count;
                }
                None => {
                    let lost = lost_event(&slots, position, end, &next_version);
                    let version = next_version.get(LOST_STREAM).copied().unwrap_or(0);
                    encode_placeholder(&mut buf, &lost, version);
                    next_version.insert(LOST_STREAM.to_string(), version + 1);
                    report.lost.push(lost);
                    position += 1;
                }
            }
        }
        report.head = end;
        rewritten.push((segment.index, buf));
    }
    // Write the new segments beside the old ones, then move the old ones aside and the
    // new ones into place.
    for (index, buf) in &rewritten {
        let path = salvaged_path(&segment_dir, *index);
        let mut file = File::create(&path).map_err(|e| LogError::io(path.display(), e))?;
        file.write_all(buf)
            .and_then(|()| file.sync_all())
            .map_err(|e| LogError::io(path.display(), e))?;
    }
    sync_dir(&segment_dir)?;
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = dir.join("damaged").join(seconds.to_string());
    std::fs::create_dir_all(&aside).map_err(|e| LogError::io(aside.display(), e))?;
    let mut move_aside = |from: PathBuf| -> Result<(), LogError> {
        let to = aside.join(from.file_name().expect("a file name"));
        std::fs::rename(&from, &to).map_err(|e| LogError::io(from.display(), e))?;
        report.moved.push(to);
        Ok(())
    };
    for (index, _) in &rewritten {
        move_aside(segment_path(&segment_dir, *index))?;
    }
    for entry in std::fs::read_dir(dir).map_err(|e| LogError::io(dir.display(), e))? {
        let entry = entry.map_err(|e| LogError::io(dir.display(), e))?;
        let name = entry.file_name();
        let derived = entry.file_type().is_ok_and(|t| t.is_file()) && name != "LOCK";
        if derived {
            move_aside(entry.path())?;
        }
    }
    sync_dir(&aside)?;
    for (index, _) in &rewritten {
        let from = salvaged_path(&segment_dir, *index);
        let to = segment_path(&segment_dir, *index);
        std::fs::rename(&from, &to).map_err(|e| LogError::io(from.display(), e))?;
    }
    sync_dir(&segment_dir)?;
    sync_dir(dir)?;
    report.moved_to = Some(aside);
    Ok(report)
}

/// The head of a log with no damage: one past the last position of the last segment.
fn head_of_prefix(segments: &[Segment]) -> Result<u64, LogError> {
    let Some(segment) = segments.last() else {
        return Ok(0);
    };
    let mut head = segment.first_position;
    let mut complete = head;
    walk_segment(segment, true, |walked| {
        if let Walked::Frame { frame, .. } = walked {
            head = frame.event.position + 1;
            if frame.remaining_in_append == 0 {
                complete = head;
            }
        }
    })?;
    Ok(complete)
}

fn salvaged_path(segment_dir: &Path, index: u64) -> PathBuf {
    segment_dir.join(format!("{index:08}.seg.salvaged"))
}

/// One past the last position of the last append in `slots` whose every frame is there,
/// counting only from `start` with no position missing before it.
fn complete_end(slots: &BTreeMap<u64, Slot>, start: u64) -> u64 {
    slots
        .iter()
        .filter(|(_, slot)| slot.frame.remaining_in_append == 0)
        .map(|(position, _)| position + 1)
        .filter(|end| {
            let first = end - 1 - u64::from(slots[&(end - 1)].frame.index_in_append);
            first >= start && (first..*end).all(|p| slots.contains_key(&p))
        })
        .max()
        .unwrap_or(start)
}

/// How many events the append starting at `position` has, if all of them are intact,
/// of one stream with contiguous versions, and end before `end`.
fn whole_append(slots: &BTreeMap<u64, Slot>, position: u64, end: u64) -> Option<u64> {
    let first = &slots.get(&position)?.frame;
    if first.index_in_append != 0 {
        return None;
    }
    let count = u64::from(first.remaining_in_append) + 1;
    if position + count > end {
        return None;
    }
    for i in 0..count {
        let frame = &slots.get(&(position + i))?.frame;
        let fits = frame.event.stream_id == first.event.stream_id
            && frame.event.stream_version == first.event.stream_version + i
            && u64::from(frame.index_in_append) == i
            && u64::from(frame.remaining_in_append) == count - 1 - i;
        if !fits {
            return None;
        }
    }
    Some(count)
}

fn lost_event(
    slots: &BTreeMap<u64, Slot>,
    position: u64,
    end: u64,
    next_version: &HashMap<String, u64>,
) -> LostEvent {
    let Some(slot) = slots.get(&position) else {
        return LostEvent {
            position,
            reason: "unreadable: its frame is damaged".into(),
            stream_id: None,
            stream_version: None,
            event_id: None,
        };
    };
    let event = &slot.frame.event;
    let start = position - u64::from(slot.frame.index_in_append);
    let whole = whole_append(slots, start, end).is_some();
    let reason = if !whole {
        "intact, but another event of its append is not"
    } else {
        let want = next_version.get(&event.stream_id).copied().unwrap_or(0);
        if event.stream_version > want {
            "intact, but an earlier event of its stream was lost"
        } else {
            "intact, but its stream version repeats one kept before it"
        }
    };
    LostEvent {
        position,
        reason: reason.into(),
        stream_id: Some(event.stream_id.clone()),
        stream_version: Some(event.stream_version),
        event_id: Some(event.event_id),
    }
}

/// Re-encodes a kept event; each frame counts as a write of its own, since the whole file
/// is synced before it takes the segment's name.
fn encode_kept(buf: &mut Vec<u8>, frame: &DecodedFrame) {
    let event = &frame.event;
    let offset = buf.len() as u64;
    encode_frame(
        buf,
        &FrameFields {
            position: event.position,
            stream_version: event.stream_version,
            recorded_at_micros: event.recorded_at_micros,
            event_id: event.event_id,
            schema_version: event.schema_version,
            index_in_append: frame.index_in_append,
            remaining_in_append: frame.remaining_in_append,
            correlation_id: event.metadata.correlation_id,
            causation_id: event.metadata.causation_id,
            write_start: Some(offset),
            stream_id: &event.stream_id,
            event_type: &event.event_type,
            actor: &event.metadata.actor,
            payload: &event.payload,
        },
    );
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A placeholder for a position that could not be kept. Its payload is JSON:
/// `{"position", "reason"}` and, when the original frame was intact, `"stream_id"`,
/// `"stream_version"` and `"event_id"` of the event it replaces.
fn encode_placeholder(buf: &mut Vec<u8>, lost: &LostEvent, version: u64) {
    let mut payload = format!(
        "{{\"position\":{},\"reason\":{}",
        lost.position,
        json_string(&lost.reason)
    );
    if let (Some(stream), Some(version), Some(id)) =
        (&lost.stream_id, lost.stream_version, lost.event_id)
    {
        payload.push_str(&format!(
            ",\"stream_id\":{},\"stream_version\":{version},\"event_id\":\"{id}\"",
            json_string(stream)
        ));
    }
    payload.push('}');
    let offset = buf.len() as u64;
    let recorded_at_micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    encode_frame(
        buf,
        &FrameFields {
            position: lost.position,
            stream_version: version,
            recorded_at_micros,
            event_id: Uuid::now_v7(),
            schema_version: 1,
            index_in_append: 0,
            remaining_in_append: 0,
            correlation_id: None,
            causation_id: None,
            write_start: Some(offset),
            stream_id: LOST_STREAM,
            event_type: LOST_EVENT_TYPE,
            actor: "anju log salvage",
            payload: payload.as_bytes(),
        },
    );
}
