//! `verify`: reads every frame of every segment and checks CRCs, position and stream
//! version contiguity, event id uniqueness, and that the in-memory indexes agree.

use crate::error::LogError;
use crate::index::SPARSE_STRIDE;
use crate::segment::{FrameCursor, Next, SEGMENT_HEADER_LEN};
use crate::shared::Shared;
use crate::types::VerifyReport;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// Stops listing problems after this many; the count of events still covers everything.
const MAX_PROBLEMS: usize = 100;

pub(crate) fn verify(shared: &Shared, head: u64) -> Result<VerifyReport, LogError> {
    let segments = shared
        .segments
        .read()
        .expect("segment list lock poisoned")
        .clone();
    let sparse = shared
        .sparse
        .read()
        .expect("sparse index lock poisoned")
        .clone();
    let streams = shared
        .streams
        .read()
        .expect("stream index lock poisoned")
        .clone();
    let mut report = VerifyReport {
        segments: segments.len() as u64,
        ..VerifyReport::default()
    };
    let problem = |report: &mut VerifyReport, text: String| {
        report.problems_found += 1;
        if report.problems.len() < MAX_PROBLEMS {
            report.problems.push(text);
        }
    };
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut ids: HashSet<Uuid> = HashSet::new();
    let mut expected = 0u64;
    'segments: for (i, segment) in segments.iter().enumerate() {
        if segment.first_position != expected {
            problem(
                &mut report,
                format!(
                    "segment {i} starts at position {} not {expected}",
                    segment.first_position
                ),
            );
        }
        let mut cursor = FrameCursor::new(&segment.file, SEGMENT_HEADER_LEN, 1 << 20);
        loop {
            if expected >= head {
                break 'segments;
            }
            match cursor
                .next_frame()
                .map_err(|e| LogError::io(segment.path.display(), e))?
            {
                Next::Frame { frame, offset, len } => {
                    let e = frame.event;
                    report.bytes += len;
                    if e.position != expected {
                        problem(
                            &mut report,
                            format!(
                                "segment {i} offset {offset}: position {} not {expected}",
                                e.position
                            ),
                        );
                    }
                    expected = e.position + 1;
                    let want_version = versions.get(&e.stream_id).map_or(0, |v| v + 1);
                    if e.stream_version != want_version {
                        problem(
                            &mut report,
                            format!(
                                "position {}: stream {} version {} not {want_version}",
                                e.position, e.stream_id, e.stream_version
                            ),
                        );
                    }
                    versions.insert(e.stream_id.clone(), e.stream_version);
                    if !ids.insert(e.event_id) {
                        problem(
                            &mut report,
                            format!(
                                "position {}: event id {} is repeated",
                                e.position, e.event_id
                            ),
                        );
                    }
                    if e.position % SPARSE_STRIDE == 0 {
                        let block = e.position / SPARSE_STRIDE;
                        let want = crate::index::encode_location(i as u64, offset);
                        if sparse.get(block as usize) != Some(&want) {
                            problem(
                                &mut report,
                                format!("position {}: in-memory location is wrong", e.position),
                            );
                        }
                    }
                    let indexed = streams.position(&e.stream_id, e.stream_version);
                    if indexed != Some(e.position) {
                        problem(
                            &mut report,
                            format!(
                                "position {}: the stream index has {}@{} at {indexed:?}",
                                e.position, e.stream_id, e.stream_version
                            ),
                        );
                    }
                    report.events += 1;
                }
                Next::End { .. } => break,
                Next::Damaged { offset, reason } => {
                    problem(
                        &mut report,
                        format!("segment {i} offset {offset}: {reason}"),
                    );
                    break;
                }
            }
        }
    }
    if expected != head {
        problem(
            &mut report,
            format!("the segments hold {expected} events but the head is {head}"),
        );
    }
    report.streams = versions.len() as u64;
    if streams.len() != versions.len() {
        problem(
            &mut report,
            format!(
                "the stream index holds {} streams but the segments {}",
                streams.len(),
                versions.len()
            ),
        );
    }
    for (stream, version) in &versions {
        if streams.version(stream) != Some(*version) {
            problem(
                &mut report,
                format!("the stream index holds the wrong current version for stream {stream}"),
            );
        }
    }
    Ok(report)
}
