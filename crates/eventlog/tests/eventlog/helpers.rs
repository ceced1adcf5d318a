//! Shared helpers: opening logs with small segments, making events, reading everything.

use anju_eventlog::{Direction, EventLog, Filter, LogOptions, Metadata, NewEvent, RecordedEvent};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Small segments so tests cross segment boundaries.
pub fn small_options() -> LogOptions {
    LogOptions {
        segment_size: 64 * 1024,
        ..LogOptions::default()
    }
}

pub async fn open(dir: &Path) -> EventLog {
    EventLog::open(dir, small_options())
        .await
        .expect("log should open")
}

pub fn event(event_type: &str, payload: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.to_string(),
        schema_version: 1,
        metadata: Metadata {
            correlation_id: Some(Uuid::now_v7()),
            causation_id: None,
            actor: "test-clerk".to_string(),
        },
        payload: payload.as_bytes().to_vec(),
    }
}

pub fn events(n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| event("Something", &format!("payload-{i}")))
        .collect()
}

pub async fn read_everything(log: &EventLog) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    loop {
        let batch = log
            .read_all(all.len() as u64, Direction::Forwards, &Filter::all(), 1000)
            .await
            .expect("read_all should work");
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

pub fn last_segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .expect("segment dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    segments.pop().expect("at least one segment")
}

/// The offset just past the last non-zero byte of a file: where written data ends in a
/// preallocated segment.
pub fn data_end(path: &Path) -> u64 {
    let bytes = std::fs::read(path).expect("segment readable");
    bytes
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |i| i as u64 + 1)
}

pub async fn assert_verifies(log: &EventLog) {
    let report = log.verify().await.expect("verify should run");
    assert!(
        report.is_ok(),
        "verify found problems: {:?}",
        report.problems
    );
}

/// The byte offset of every frame in a segment file, read from the length fields.
pub fn frame_offsets(path: &Path) -> Vec<u64> {
    let bytes = std::fs::read(path).expect("segment readable");
    let mut offsets = Vec::new();
    let mut at = 32usize;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        offsets.push(at as u64);
        at += 8 + len;
    }
    offsets
}
