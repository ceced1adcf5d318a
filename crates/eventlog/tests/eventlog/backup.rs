//! The online copy of the segments (issue 15, ADR 009): taken while appends go on and
//! segments roll over, it ends exactly at the head it started at, verifies clean, and a
//! log opened on it holds the original's first events byte for byte and appends on.

use crate::helpers::{events, read_everything, small_options};
use anju_eventlog::{verify_directory, EventLog, ExpectedVersion};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[tokio::test]
async fn a_backup_under_appends_ends_at_its_position_and_opens_as_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path().join("log"), small_options())
        .await
        .unwrap();
    // Enough for several 64 KiB segments before the backup.
    for n in 0..200 {
        log.append(
            &format!("stream-{}", n % 7),
            ExpectedVersion::Any,
            events(5),
        )
        .await
        .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (log, stop) = (log.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                log.append(
                    &format!("writer-{w}-{}", n % 5),
                    ExpectedVersion::Any,
                    events(3),
                )
                .await
                .unwrap();
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let backup = dir.path().join("backup");
    let copied = log.backup(&backup).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let original = read_everything(&log).await;
    assert!(copied.position >= 1000, "{copied:?}");
    assert!(
        original.len() as u64 > copied.position,
        "appends went on after the backup"
    );
    assert!(
        copied.files.len() > 3,
        "several segments: {:?}",
        copied.files
    );
    // The copy ends at the position and leaves the preallocated zeros out.
    let report = verify_directory(&backup).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.torn_tail, None);
    assert_eq!(report.events, copied.position);
    let on_disk: u64 = copied
        .files
        .iter()
        .map(|f| std::fs::metadata(backup.join(f)).unwrap().len())
        .sum();
    assert_eq!(on_disk, copied.bytes);
    assert!(copied.bytes < copied.files.len() as u64 * small_options().segment_size);
    // A log opened on the copy holds the first events exactly and appends after them.
    let restored = EventLog::open(&backup, small_options()).await.unwrap();
    let events_copied = read_everything(&restored).await;
    assert_eq!(events_copied, original[..copied.position as usize]);
    let next = restored
        .append("after-restore", ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();
    assert_eq!(next.first_position, copied.position);
    // A second backup into the same place is refused.
    assert!(log.backup(&backup).await.is_err());
}
