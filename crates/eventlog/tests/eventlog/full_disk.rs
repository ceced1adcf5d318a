//! A full disk (issue 15, found item 3): on a small tmpfs that fills up, appends fail
//! with an IO error naming the segment and the log reports itself unwritable; once the
//! space is freed the same open log accepts appends again, and after a reopen every
//! acknowledged event is there exactly once and nothing unacknowledged is.

use super::helpers::{assert_verifies, event, read_everything};
use anju_eventlog::{AppendError, EventLog, ExpectedVersion, LogOptions};
use anju_testkit::Tmpfs;
use std::collections::HashSet;
use uuid::Uuid;

fn options() -> LogOptions {
    // No preallocation, so every append needs new blocks, and small segments so the
    // disk also fills while the next segment is being made.
    LogOptions {
        segment_size: 256 * 1024,
        preallocate: false,
        ..LogOptions::default()
    }
}

/// Appends `count` events of about 3 KB from 4 concurrent tasks; answers the ids
/// acknowledged and the errors of those that were not.
async fn append_some(log: &EventLog, round: &str, count: usize) -> (Vec<Uuid>, Vec<AppendError>) {
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..4 {
        let log = log.clone();
        let round = round.to_string();
        tasks.spawn(async move {
            let mut results = Vec::new();
            for n in 0..count / 4 {
                let new = event("Noted", &format!("{round}-{task}-{n}-{}", "x".repeat(3000)));
                let id = new.event_id;
                let stream = format!("full-{round}-{task}");
                let result = log.append(&stream, ExpectedVersion::Any, vec![new]).await;
                results.push((id, result.map(drop)));
            }
            results
        });
    }
    let mut acked = Vec::new();
    let mut failed = Vec::new();
    for (id, result) in tasks.join_all().await.into_iter().flatten() {
        match result {
            Ok(()) => acked.push(id),
            Err(e) => failed.push(e),
        }
    }
    (acked, failed)
}

#[tokio::test]
async fn appends_fail_on_a_full_disk_and_succeed_once_space_is_freed() {
    let disk = Tmpfs::mount(4 << 20);
    let dir = disk.path().join("log");
    let log = EventLog::open(&dir, options()).await.expect("log opens");
    let health = log.write_health();
    let mut acked = Vec::new();

    let (ids, failed) = append_some(&log, "before", 40).await;
    assert!(failed.is_empty(), "{failed:?}");
    acked.extend(ids);
    assert_eq!(health.failure(), None);

    let filler = disk.fill("filler");
    let (ids, failed) = append_some(&log, "full", 80).await;
    acked.extend(ids);
    assert!(!failed.is_empty(), "a full disk refuses appends");
    for error in &failed {
        let message = error.to_string();
        assert!(
            matches!(error, AppendError::Io(_)) && message.contains("No space left on device"),
            "{message}"
        );
    }
    let failure = health.failure().expect("the log reports itself unwritable");
    assert!(failure.contains("No space left on device"), "{failure}");
    assert!(
        failure.contains(&dir.display().to_string()),
        "names the file: {failure}"
    );
    assert!(health.failures() >= 1);

    std::fs::remove_file(filler).unwrap();
    let (ids, failed) = append_some(&log, "after", 80).await;
    assert!(failed.is_empty(), "space is back: {failed:?}");
    acked.extend(ids);
    assert_eq!(health.failure(), None, "writable again");
    log.close().await.unwrap();

    let log = EventLog::open(&dir, options()).await.expect("log reopens");
    let stored: Vec<Uuid> = read_everything(&log)
        .await
        .iter()
        .map(|e| e.event_id)
        .collect();
    let unique: HashSet<Uuid> = stored.iter().copied().collect();
    assert_eq!(unique.len(), stored.len(), "no event twice");
    assert_eq!(
        unique,
        acked.iter().copied().collect::<HashSet<_>>(),
        "exactly the acknowledged events"
    );
    assert_verifies(&log).await;
    log.close().await.unwrap();
}
