//! Recovery on open: the unfinished last write is cut off, any other damage is refused
//! with its place named and the file left as it was (issue 15), the in-memory indexes are built
//! again with the same answers whatever happened to the sled store beside the segments,
//! a store of the older format loses its stream index trees and keeps its checkpoints,
//! and a second open of a directory in use is refused.

use crate::helpers::{
    assert_verifies, data_end, event, events, frame_offsets, last_segment, open, read_everything,
};
use anju_eventlog::{Direction, EventLog, ExpectedVersion, Filter, LogOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;

fn unpreallocated() -> LogOptions {
    LogOptions {
        preallocate: false,
        ..crate::helpers::small_options()
    }
}

#[tokio::test]
async fn a_torn_last_frame_is_cut_off_and_everything_before_it_stays() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), unpreallocated()).await.unwrap();
    log.append("request-t", ExpectedVersion::Any, events(5))
        .await
        .unwrap();
    let last = log
        .append("request-t", ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    assert_eq!(last.last_position, 5);
    log.close().await.unwrap();
    let segment = last_segment(dir.path());
    let len = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 7)
        .unwrap();

    let log = EventLog::open(dir.path(), unpreallocated()).await.unwrap();
    assert_eq!(log.head_position(), 5);
    assert_eq!(log.stream_version("request-t"), Some(4));
    assert_verifies(&log).await;
    let again = log
        .append("request-t", ExpectedVersion::Exact(4), events(1))
        .await
        .unwrap();
    assert_eq!(again.first_position, 5);
    log.close().await.unwrap();
    let log = EventLog::open(dir.path(), unpreallocated()).await.unwrap();
    assert_eq!(log.head_position(), 6);
    assert_verifies(&log).await;
}

#[tokio::test]
async fn a_torn_multi_event_append_disappears_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), unpreallocated()).await.unwrap();
    log.append("request-u", ExpectedVersion::Any, events(2))
        .await
        .unwrap();
    log.append("request-u", ExpectedVersion::Any, events(3))
        .await
        .unwrap();
    log.close().await.unwrap();
    let segment = last_segment(dir.path());
    let len = std::fs::metadata(&segment).unwrap().len();
    // Lose the last frame of the three-event append: the first two must go too.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 20)
        .unwrap();
    let log = EventLog::open(dir.path(), unpreallocated()).await.unwrap();
    assert_eq!(log.head_position(), 2);
    assert_eq!(log.stream_version("request-u"), Some(1));
    assert_verifies(&log).await;
}

#[tokio::test]
async fn a_garbage_tail_is_cut_off_without_losing_events() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), unpreallocated()).await.unwrap();
    log.append("request-v", ExpectedVersion::Any, events(4))
        .await
        .unwrap();
    log.close().await.unwrap();
    let segment = last_segment(dir.path());
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    file.write_all(&[0x5a; 3]).unwrap();
    file.write_all(&rand::random::<[u8; 32]>()).unwrap();
    drop(file);
    let log = EventLog::open(dir.path(), unpreallocated()).await.unwrap();
    assert_eq!(log.head_position(), 4);
    log.append("request-v", ExpectedVersion::Exact(3), events(1))
        .await
        .unwrap();
    assert_verifies(&log).await;
}

#[tokio::test]
async fn in_a_preallocated_segment_garbage_after_the_data_is_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    log.append("request-w", ExpectedVersion::Any, events(3))
        .await
        .unwrap();
    log.close().await.unwrap();
    let segment = last_segment(dir.path());
    let end = data_end(&segment);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    // A stale frame-like fragment some way after the end, behind a zero gap.
    file.write_all_at(&[7u8; 40], end + 100).unwrap();
    drop(file);
    let log = open(dir.path()).await;
    assert_eq!(log.head_position(), 3);
    assert_eq!(
        data_end(&segment),
        end,
        "the fragment should have been zeroed"
    );
    log.append("request-w", ExpectedVersion::Exact(2), events(2))
        .await
        .unwrap();
    log.close().await.unwrap();
    let log = open(dir.path()).await;
    assert_eq!(log.head_position(), 5);
    assert_verifies(&log).await;
}

#[tokio::test]
async fn in_a_preallocated_segment_a_damaged_last_frame_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    log.append("request-x", ExpectedVersion::Any, events(3))
        .await
        .unwrap();
    log.append("request-x", ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    log.close().await.unwrap();
    let segment = last_segment(dir.path());
    let end = data_end(&segment);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.write_all_at(&[0xff; 4], end - 10).unwrap();
    drop(file);
    let log = open(dir.path()).await;
    assert_eq!(log.head_position(), 3);
    assert_verifies(&log).await;
}

async fn answers(
    log: &EventLog,
) -> (
    Vec<anju_eventlog::RecordedEvent>,
    Vec<anju_eventlog::RecordedEvent>,
    Option<u64>,
    u64,
) {
    (
        read_everything(log).await,
        log.read_stream("request-y1", 0, Direction::Forwards, 1000)
            .await
            .unwrap(),
        log.stream_version("request-y2"),
        log.head_position(),
    )
}

async fn fill_for_index_tests(
    dir: &std::path::Path,
) -> (
    Vec<anju_eventlog::RecordedEvent>,
    Vec<anju_eventlog::RecordedEvent>,
    Option<u64>,
    u64,
) {
    let log = open(dir).await;
    for i in 0..200 {
        let stream = format!("request-y{}", i % 3);
        log.append(
            &stream,
            ExpectedVersion::Any,
            vec![event("Filled", &"p".repeat(i))],
        )
        .await
        .unwrap();
    }
    let before = answers(&log).await;
    log.close().await.unwrap();
    before
}

#[tokio::test]
async fn a_deleted_store_changes_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let before = fill_for_index_tests(dir.path()).await;
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let log = open(dir.path()).await;
    assert_eq!(answers(&log).await, before);
    assert_eq!(
        log.event_position(before.0[150].event_id).await.unwrap(),
        Some(150)
    );
    assert_verifies(&log).await;
    // Idempotency still holds after the rebuild.
    log.close().await.unwrap();
    let log = open(dir.path()).await;
    assert_eq!(answers(&log).await, before);
}

#[tokio::test]
async fn a_corrupted_store_changes_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let before = fill_for_index_tests(dir.path()).await;
    for entry in walk(&dir.path().join("index")) {
        let len = std::fs::metadata(&entry).unwrap().len() as usize;
        std::fs::write(
            &entry,
            (0..len.max(64))
                .map(|i| (i * 31 % 251) as u8)
                .collect::<Vec<u8>>(),
        )
        .unwrap();
    }
    let log = open(dir.path()).await;
    assert_eq!(answers(&log).await, before);
    assert_verifies(&log).await;
}

#[tokio::test]
async fn an_old_copy_of_the_store_changes_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let before = fill_for_index_tests(dir.path()).await;
    let old_index = tempfile::tempdir().unwrap();
    // A store copied from an empty log knows nothing of the events.
    {
        let empty = tempfile::tempdir().unwrap();
        let log = open(empty.path()).await;
        log.close().await.unwrap();
        copy_dir(&empty.path().join("index"), &old_index.path().join("index"));
    }
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    copy_dir(&old_index.path().join("index"), &dir.path().join("index"));
    let log = open(dir.path()).await;
    assert_eq!(answers(&log).await, before);
    assert_verifies(&log).await;
}

#[tokio::test]
async fn a_store_of_index_format_2_drops_its_stream_trees_and_keeps_its_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let before = fill_for_index_tests(dir.path()).await;
    {
        // Put back what format 2 kept in sled: its mark and a per-event stream tree.
        let log = open(dir.path()).await;
        log.set_checkpoint("relay", 123).unwrap();
        let db = log.index_db();
        db.open_tree("eventlog.meta")
            .unwrap()
            .insert("format", "anju-eventlog-index-2")
            .unwrap();
        let old = db.open_tree("eventlog.by_stream").unwrap();
        for i in 0u64..500 {
            old.insert(i.to_be_bytes(), &[7u8; 24][..]).unwrap();
        }
        log.close().await.unwrap();
    }
    let log = open(dir.path()).await;
    let names: Vec<String> = log
        .index_db()
        .tree_names()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n == "eventlog.by_stream"),
        "the old stream tree is still there: {names:?}"
    );
    assert_eq!(log.checkpoint("relay").unwrap(), Some(123));
    assert_eq!(answers(&log).await, before);
    assert_verifies(&log).await;
    log.close().await.unwrap();
    // Reopened, the store is of the current format and still holds the checkpoint.
    let log = open(dir.path()).await;
    assert_eq!(log.checkpoint("relay").unwrap(), Some(123));
    assert_eq!(answers(&log).await, before);
}

#[tokio::test]
async fn a_store_of_unknown_format_is_moved_aside_and_the_log_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let before = fill_for_index_tests(dir.path()).await;
    {
        let log = open(dir.path()).await;
        log.set_checkpoint("relay", 9).unwrap();
        log.index_db()
            .open_tree("eventlog.meta")
            .unwrap()
            .insert("format", "anju-eventlog-index-1")
            .unwrap();
        log.close().await.unwrap();
    }
    let log = open(dir.path()).await;
    assert!(dir.path().join("index.damaged").exists());
    // The checkpoints went with the store: readers start again from the beginning.
    assert_eq!(log.checkpoint("relay").unwrap(), None);
    assert_eq!(answers(&log).await, before);
    assert_verifies(&log).await;
}

#[tokio::test]
async fn a_directory_in_use_is_not_opened_twice() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    log.append("request-z", ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    let err = EventLog::open(dir.path(), crate::helpers::small_options())
        .await
        .err()
        .expect("second open should fail");
    assert!(err.to_string().contains("in use"), "{err}");
    assert!(dir.path().join("index").exists());
    let all = log
        .read_all(0, Direction::Forwards, &Filter::all(), 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Twenty one-event appends, each its own write; returns the last segment's path.
async fn twenty_writes(dir: &std::path::Path, options: LogOptions) -> std::path::PathBuf {
    let log = EventLog::open(dir, options).await.unwrap();
    for _ in 0..20 {
        log.append("request-d", ExpectedVersion::Any, events(1))
            .await
            .unwrap();
    }
    log.close().await.unwrap();
    last_segment(dir)
}

/// Changes the segment with `damage`, then checks that opening is refused with a message
/// naming the file, the offset and the position, and that not a byte of the file changed.
async fn assert_refused(
    options: LogOptions,
    damage: impl FnOnce(&std::fs::File, &[u64]),
    offset_of: impl FnOnce(&[u64]) -> u64,
) {
    let dir = tempfile::tempdir().unwrap();
    let segment = twenty_writes(dir.path(), options.clone()).await;
    let offsets = frame_offsets(&segment);
    assert_eq!(offsets.len(), 20);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&segment)
        .unwrap();
    damage(&file, &offsets);
    drop(file);
    let before = std::fs::read(&segment).unwrap();
    let error = EventLog::open(dir.path(), options.clone())
        .await
        .err()
        .expect("a damaged log must not open");
    let message = error.to_string();
    let offset = offset_of(&offsets);
    assert!(
        message.contains(&segment.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("byte offset {offset}:")),
        "{message}"
    );
    assert!(message.contains("position 9 was expected"), "{message}");
    assert!(
        message.contains("last intact event before it is position 8"),
        "{message}"
    );
    assert!(message.contains("anju log salvage"), "{message}");
    assert_eq!(
        std::fs::read(&segment).unwrap(),
        before,
        "refusing must leave the file as it was"
    );
    // A second attempt says the same: nothing was cut the first time.
    let again = EventLog::open(dir.path(), options).await.err().unwrap();
    assert_eq!(again.to_string(), message);
}

#[tokio::test]
async fn a_flipped_byte_inside_the_last_segment_is_refused_not_cut() {
    for options in [crate::helpers::small_options(), unpreallocated()] {
        assert_refused(
            options,
            |file, offsets| {
                let mut byte = [0u8; 1];
                file.read_exact_at(&mut byte, offsets[9] + 40).unwrap();
                file.write_all_at(&[byte[0] ^ 0x01], offsets[9] + 40)
                    .unwrap();
            },
            |offsets| offsets[9],
        )
        .await;
    }
}

#[tokio::test]
async fn a_zeroed_length_inside_the_last_segment_is_refused_not_cut() {
    for options in [crate::helpers::small_options(), unpreallocated()] {
        assert_refused(
            options,
            |file, offsets| file.write_all_at(&[0u8; 4], offsets[9]).unwrap(),
            |offsets| offsets[9],
        )
        .await;
    }
}

#[tokio::test]
async fn a_garbage_frame_inside_the_last_segment_is_refused_not_cut() {
    assert_refused(
        crate::helpers::small_options(),
        |file, offsets| {
            let len = (offsets[10] - offsets[9]) as usize;
            let garbage: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            file.write_all_at(&garbage, offsets[9]).unwrap();
        },
        |offsets| offsets[9],
    )
    .await;
}

#[tokio::test]
async fn a_torn_last_write_whose_first_bytes_never_reached_the_disk_is_cut() {
    // A write of three appends in one group commit, torn page by page: its start is still
    // zeros while later bytes of it reached the disk.
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    for _ in 0..5 {
        log.append("request-e", ExpectedVersion::Any, events(1))
            .await
            .unwrap();
    }
    let group: Vec<_> = (0..3)
        .map(|_| log.append("request-f", ExpectedVersion::Any, events(2)))
        .collect();
    for append in futures::future::join_all(group).await {
        append.unwrap();
    }
    log.close().await.unwrap();
    let segment = last_segment(dir.path());
    let offsets = frame_offsets(&segment);
    assert_eq!(offsets.len(), 11);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    // Zero the write's first frame only, or all but its last bytes.
    let end = data_end(&segment);
    let torn_from = offsets[5];
    let mut zeros_to = offsets[6];
    if frame_write_start(&segment, offsets[10]) != torn_from {
        // The three appends were not one group commit: tear the last one instead.
        zeros_to = end - 5;
    }
    file.write_all_at(&vec![0u8; (zeros_to - torn_from) as usize], torn_from)
        .unwrap();
    drop(file);
    let log = open(dir.path()).await;
    assert_eq!(log.head_position(), 5);
    assert_eq!(data_end(&segment), torn_from, "the torn bytes are zeroed");
    assert_verifies(&log).await;
}

#[tokio::test]
async fn a_torn_last_write_with_later_frames_intact_is_cut() {
    // Page-granular tearing can leave later frames of the unfinished write intact behind a
    // damaged one: they all belong to the last write, so the cut is still safe.
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    log.append("request-g", ExpectedVersion::Any, events(4))
        .await
        .unwrap();
    log.append("request-g", ExpectedVersion::Any, events(6))
        .await
        .unwrap();
    log.close().await.unwrap();
    let segment = last_segment(dir.path());
    let offsets = frame_offsets(&segment);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.write_all_at(&[0xee; 16], offsets[6] + 20).unwrap();
    drop(file);
    let log = open(dir.path()).await;
    assert_eq!(log.head_position(), 4);
    assert_verifies(&log).await;
}

#[tokio::test]
async fn non_zero_bytes_beyond_the_reach_of_any_write_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        segment_size: 80 << 20,
        ..unpreallocated()
    };
    let log = EventLog::open(dir.path(), options.clone()).await.unwrap();
    log.append("request-h", ExpectedVersion::Any, events(2))
        .await
        .unwrap();
    log.close().await.unwrap();
    let segment = last_segment(dir.path());
    let end = data_end(&segment);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.write_all_at(&[1u8; 8], end + (65 << 20)).unwrap();
    drop(file);
    let before = std::fs::read(&segment).unwrap();
    let error = EventLog::open(dir.path(), options).await.err().unwrap();
    assert!(
        error
            .to_string()
            .contains("further than any single write reaches"),
        "{error}"
    );
    assert!(std::fs::read(&segment).unwrap() == before);
}

/// The write start recorded in the frame at `offset` (format of codec.rs: after the fixed
/// fields and the present ids).
fn frame_write_start(segment: &std::path::Path, offset: u64) -> u64 {
    let bytes = std::fs::read(segment).unwrap();
    let body = &bytes[offset as usize + 8..];
    let flags = body[52];
    assert!(flags & 4 != 0, "the frame records its write start");
    let mut at = 53;
    if flags & 1 != 0 {
        at += 16;
    }
    if flags & 2 != 0 {
        at += 16;
    }
    u64::from_le_bytes(body[at..at + 8].try_into().unwrap())
}
