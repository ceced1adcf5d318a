//! The offline tools on a stopped log directory (issue 15): `verify_directory` reports
//! damage with its place and never writes; `salvage` moves damaged segments aside and
//! keeps exactly the events it can prove intact, with dense positions and contiguous
//! stream versions.

use crate::helpers::{events, frame_offsets, last_segment, small_options};
use anju_eventlog::{
    salvage, verify_directory, Direction, EventLog, ExpectedVersion, LOST_EVENT_TYPE, LOST_STREAM,
};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Twenty one-event appends alternating between streams `request-a` and `request-b`.
async fn alternating(dir: &Path) -> PathBuf {
    let log = EventLog::open(dir, small_options()).await.unwrap();
    for i in 0..20 {
        let stream = if i % 2 == 0 { "request-a" } else { "request-b" };
        log.append(stream, ExpectedVersion::Any, events(1))
            .await
            .unwrap();
    }
    log.close().await.unwrap();
    last_segment(dir)
}

fn flip_byte(segment: &Path, offset: u64) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(segment)
        .unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], offset).unwrap();
}

#[tokio::test]
async fn verify_reports_damage_with_its_place_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let segment = alternating(dir.path()).await;
    let sound = verify_directory(dir.path()).unwrap();
    assert!(sound.is_ok(), "{:?}", sound.problems);
    assert_eq!((sound.events, sound.streams), (20, 2));
    assert_eq!(sound.torn_tail, None);

    let offsets = frame_offsets(&segment);
    flip_byte(&segment, offsets[9] + 30);
    let before = anju_testkit::files_under(dir.path());
    let report = verify_directory(dir.path()).unwrap();
    assert_eq!(
        anju_testkit::files_under(dir.path()),
        before,
        "verify must not write"
    );
    assert!(!report.is_ok());
    let first = &report.problems[0];
    assert!(first.contains(&segment.display().to_string()), "{first}");
    assert!(
        first.contains(&format!("byte offset {}:", offsets[9])),
        "{first}"
    );
    assert!(first.contains("position 9 was expected"), "{first}");
    assert!(first.contains("holding position 10 follows"), "{first}");
    // It reads on after the damage: every other event is counted.
    assert_eq!(report.events, 19);
    assert!(report
        .problems
        .iter()
        .any(|p| p.contains("positions 9 to 9 are missing")));
}

#[tokio::test]
async fn verify_names_an_unfinished_last_write_without_calling_it_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let segment = alternating(dir.path()).await;
    let offsets = frame_offsets(&segment);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.write_all_at(&[0u8; 12], offsets[19]).unwrap();
    drop(file);
    let before = anju_testkit::files_under(dir.path());
    let report = verify_directory(dir.path()).unwrap();
    assert_eq!(anju_testkit::files_under(dir.path()), before);
    assert!(report.is_ok(), "{:?}", report.problems);
    let torn = report.torn_tail.expect("the torn write is named");
    assert!(
        torn.contains(&format!("byte offset {}", offsets[19])),
        "{torn}"
    );
}

#[tokio::test]
async fn salvage_keeps_what_is_provably_intact_and_holds_every_lost_position() {
    let dir = tempfile::tempdir().unwrap();
    let segment = alternating(dir.path()).await;
    let offsets = frame_offsets(&segment);
    let original = std::fs::read(&segment).unwrap();
    // Position 9 is version 4 of request-b.
    flip_byte(&segment, offsets[9] + 30);
    let damaged = std::fs::read(&segment).unwrap();
    assert!(EventLog::open(dir.path(), small_options()).await.is_err());

    let report = salvage(dir.path()).unwrap();
    let moved_to = report.moved_to.clone().expect("damage was found");
    assert_eq!(
        std::fs::read(moved_to.join(segment.file_name().unwrap())).unwrap(),
        damaged,
        "the damaged segment is kept as it was"
    );
    // request-a keeps all ten events; request-b keeps versions 0-3 and loses 4 (damaged)
    // and everything after it (its versions would no longer follow on).
    let lost: Vec<u64> = report.lost.iter().map(|l| l.position).collect();
    assert_eq!(lost, vec![9, 11, 13, 15, 17, 19]);
    assert_eq!(report.lost[0].stream_id, None);
    assert_eq!(report.lost[1].stream_id.as_deref(), Some("request-b"));
    assert_eq!(report.lost[1].stream_version, Some(5));
    assert_eq!(report.kept, 14);
    assert_eq!(report.head, 20);
    assert_eq!(report.cut_from, None);

    let log = EventLog::open(dir.path(), small_options()).await.unwrap();
    assert_eq!(log.head_position(), 20);
    assert_eq!(log.stream_version("request-a"), Some(9));
    assert_eq!(log.stream_version("request-b"), Some(3));
    assert_eq!(log.stream_version(LOST_STREAM), Some(5));
    let placeholders = log
        .read_stream(LOST_STREAM, 0, Direction::Forwards, 10)
        .await
        .unwrap();
    assert_eq!(placeholders.len(), 6);
    assert_eq!(placeholders[0].position, 9);
    assert_eq!(placeholders[0].event_type, LOST_EVENT_TYPE);
    let payload = String::from_utf8(placeholders[1].payload.clone()).unwrap();
    assert!(payload.contains("\"stream_id\":\"request-b\""), "{payload}");
    // The kept events are the original ones, byte for byte in content.
    let kept = log
        .read_stream("request-a", 0, Direction::Forwards, 100)
        .await
        .unwrap();
    assert_eq!(kept.len(), 10);
    let originals = {
        let copy = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(copy.path().join("segments")).unwrap();
        std::fs::write(
            copy.path()
                .join("segments")
                .join(segment.file_name().unwrap()),
            &original,
        )
        .unwrap();
        let log = EventLog::open(copy.path(), small_options()).await.unwrap();
        log.read_stream("request-a", 0, Direction::Forwards, 100)
            .await
            .unwrap()
    };
    assert_eq!(kept, originals);
    log.append("request-b", ExpectedVersion::Exact(3), events(1))
        .await
        .unwrap();
    log.close().await.unwrap();
    assert!(verify_directory(dir.path()).unwrap().is_ok());
}

#[tokio::test]
async fn salvage_of_a_sound_log_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    alternating(dir.path()).await;
    let before = anju_testkit::files_under(dir.path());
    let report = salvage(dir.path()).unwrap();
    assert_eq!(report.moved_to, None);
    assert_eq!(report.head, 20);
    assert_eq!(anju_testkit::files_under(dir.path()), before);
}

#[tokio::test]
async fn verify_and_salvage_refuse_a_directory_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), small_options()).await.unwrap();
    let error = verify_directory(dir.path()).unwrap_err();
    assert!(error.to_string().contains("in use"), "{error}");
    let error = salvage(dir.path()).unwrap_err();
    assert!(error.to_string().contains("in use"), "{error}");
    log.close().await.unwrap();
}
