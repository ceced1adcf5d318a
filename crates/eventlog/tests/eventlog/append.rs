//! Appends: every expected-version case, idempotent retries, invalid input, races.

use crate::helpers::{assert_verifies, event, events, open};
use anju_eventlog::{AppendError, AppendResult, ExpectedVersion};
use std::sync::Arc;

#[tokio::test]
async fn expected_version_no_stream_accepts_only_a_new_stream() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let first = log
        .append("request-a", ExpectedVersion::NoStream, events(2))
        .await
        .unwrap();
    assert_eq!(
        first,
        AppendResult {
            first_position: 0,
            last_position: 1,
            stream_version: 1
        }
    );
    let err = log
        .append("request-a", ExpectedVersion::NoStream, events(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::WrongExpectedVersion { ref stream, expected: ExpectedVersion::NoStream, actual: Some(1) } if stream == "request-a"
        ),
        "{err:?}"
    );
    assert_eq!(log.head_position(), 2);
}

#[tokio::test]
async fn expected_version_stream_exists_refuses_a_missing_stream() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let err = log
        .append("request-b", ExpectedVersion::StreamExists, events(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::WrongExpectedVersion { actual: None, .. }),
        "{err:?}"
    );
    log.append("request-b", ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    let ok = log
        .append("request-b", ExpectedVersion::StreamExists, events(1))
        .await
        .unwrap();
    assert_eq!(ok.stream_version, 1);
}

#[tokio::test]
async fn expected_version_exact_must_match_the_last_version() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let err = log
        .append("request-c", ExpectedVersion::Exact(0), events(1))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        AppendError::WrongExpectedVersion {
            expected: ExpectedVersion::Exact(0),
            actual: None,
            ..
        }
    ));
    log.append("request-c", ExpectedVersion::NoStream, events(3))
        .await
        .unwrap();
    for wrong in [0, 1, 3, 99] {
        let err = log
            .append("request-c", ExpectedVersion::Exact(wrong), events(1))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AppendError::WrongExpectedVersion { expected: ExpectedVersion::Exact(w), actual: Some(2), .. } if w == wrong),
            "{err:?}"
        );
    }
    let ok = log
        .append("request-c", ExpectedVersion::Exact(2), events(1))
        .await
        .unwrap();
    assert_eq!(
        ok,
        AppendResult {
            first_position: 3,
            last_position: 3,
            stream_version: 3
        }
    );
    assert_eq!(log.stream_version("request-c"), Some(3));
    assert_eq!(log.stream_version("request-none"), None);
}

#[tokio::test]
async fn expected_version_any_always_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let a = log
        .append("request-d", ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    let b = log
        .append("request-d", ExpectedVersion::Any, events(2))
        .await
        .unwrap();
    assert_eq!(a.stream_version, 0);
    assert_eq!(
        b,
        AppendResult {
            first_position: 1,
            last_position: 2,
            stream_version: 2
        }
    );
}

#[tokio::test]
async fn a_retried_append_returns_the_original_result_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let batch = events(3);
    let original = log
        .append("request-e", ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    log.append("request-other", ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    // The retry carries the same stale expected version; idempotency wins over the check.
    let retry = log
        .append("request-e", ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!(retry, original);
    let retry_any = log
        .append("request-e", ExpectedVersion::Any, batch.clone())
        .await
        .unwrap();
    assert_eq!(retry_any, original);
    assert_eq!(log.head_position(), 4);
    // Also after a reopen, when the ids come from the index rather than this session.
    log.close().await.unwrap();
    let log = open(dir.path()).await;
    let retry = log
        .append("request-e", ExpectedVersion::Exact(7), batch)
        .await
        .unwrap();
    assert_eq!(retry, original);
    assert_eq!(log.head_position(), 4);
    assert_verifies(&log).await;
}

#[tokio::test]
async fn a_retry_with_only_some_ids_stored_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let batch = events(2);
    log.append("request-f", ExpectedVersion::Any, batch.clone())
        .await
        .unwrap();
    let mut mixed = vec![batch[0].clone()];
    mixed.push(event("Other", "new"));
    let err = log
        .append("request-f", ExpectedVersion::Any, mixed)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::PartiallyDuplicate { ref already_stored, .. } if already_stored == &vec![batch[0].event_id]),
        "{err:?}"
    );
    // All ids stored, but in another stream: not the same append, so refused too.
    let err = log
        .append("request-g", ExpectedVersion::Any, batch.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::PartiallyDuplicate { .. }),
        "{err:?}"
    );
    // Part of an earlier append is not that append either.
    let err = log
        .append("request-f", ExpectedVersion::Any, vec![batch[1].clone()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::PartiallyDuplicate { .. }),
        "{err:?}"
    );
    assert_eq!(log.head_position(), 2);
}

#[tokio::test]
async fn two_identical_appends_sent_at_once_write_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let batch = events(2);
    let (a, b) = tokio::join!(
        log.append("request-h", ExpectedVersion::NoStream, batch.clone()),
        log.append("request-h", ExpectedVersion::NoStream, batch.clone())
    );
    assert_eq!(a.unwrap(), b.unwrap());
    assert_eq!(log.head_position(), 2);
}

#[tokio::test]
async fn invalid_appends_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let long = "x".repeat(300);
    let cases: Vec<(&str, Vec<anju_eventlog::NewEvent>)> = vec![
        ("", events(1)),
        ("$all", events(1)),
        ("request-i", Vec::new()),
        ("request-i", {
            let e = event("A", "x");
            vec![e.clone(), e]
        }),
        (
            "request-i",
            vec![{
                let mut e = event("A", "x");
                e.event_type.clear();
                e
            }],
        ),
        (
            "request-i",
            vec![{
                let mut e = event("A", "x");
                e.payload = vec![0; 5 << 20];
                e
            }],
        ),
        (&long, events(1)),
    ];
    for (stream, batch) in cases {
        let err = log
            .append(stream, ExpectedVersion::Any, batch)
            .await
            .unwrap_err();
        assert!(
            matches!(err, AppendError::Invalid(_)),
            "{stream:?}: {err:?}"
        );
    }
    assert_eq!(log.head_position(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_racing_exact_appends_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    for round in 0..50u64 {
        let stream = format!("request-race-{}", round % 5);
        let current = log.stream_version(&stream);
        let expected = current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let (a, b) = tokio::join!(
            tokio::spawn({
                let log = log.clone();
                let s = stream.clone();
                async move { log.append(&s, expected, events(1)).await }
            }),
            tokio::spawn({
                let log = log.clone();
                let s = stream.clone();
                async move { log.append(&s, expected, events(2)).await }
            })
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(
            a.is_ok() != b.is_ok(),
            "round {round}: exactly one should win: {a:?} {b:?}"
        );
        let loser = if a.is_ok() { b } else { a };
        assert!(matches!(
            loser,
            Err(AppendError::WrongExpectedVersion { .. })
        ));
    }
    assert_verifies(&log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_appenders_to_one_stream_get_contiguous_versions() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let log = Arc::new(log);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            for _ in 0..25 {
                results.push(
                    log.append("request-shared", ExpectedVersion::Any, events(2))
                        .await
                        .unwrap(),
                );
            }
            results
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        for result in task.await.unwrap() {
            assert_eq!(result.last_position, result.first_position + 1);
            versions.push(result.stream_version);
        }
    }
    versions.sort_unstable();
    assert_eq!(versions, (0..800).skip(1).step_by(2).collect::<Vec<u64>>());
    assert_eq!(log.stream_version("request-shared"), Some(799));
    assert_verifies(&log).await;
}

#[tokio::test]
async fn appends_after_close_report_closed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let other = log.clone();
    log.close().await.unwrap();
    let err = other
        .append("request-j", ExpectedVersion::Any, events(1))
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::Closed), "{err:?}");
}
