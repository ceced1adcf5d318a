//! Recovery on open: torn and garbage tails are cut off, the in-memory indexes are built
//! again with the same answers whatever happened to the sled store beside the segments,
//! a store of the older format loses its stream index trees and keeps its checkpoints,
//! and a second open of a directory in use is refused.

use crate::helpers::{
    assert_verifies, data_end, event, events, last_segment, open, read_everything,
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
