//! Reads of one stream and of `$all`, both directions, filters, bounds, segment rollover.

use crate::helpers::{assert_verifies, event, events, open, read_everything};
use anju_eventlog::{Direction, ExpectedVersion, Filter};

#[tokio::test]
async fn a_stream_reads_forwards_and_backwards_from_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    for i in 0..10 {
        log.append(
            "request-r",
            ExpectedVersion::Any,
            vec![event("Step", &i.to_string())],
        )
        .await
        .unwrap();
        log.append("request-noise", ExpectedVersion::Any, events(1))
            .await
            .unwrap();
    }
    let forwards = log
        .read_stream("request-r", 3, Direction::Forwards, 4)
        .await
        .unwrap();
    assert_eq!(
        forwards
            .iter()
            .map(|e| e.stream_version)
            .collect::<Vec<_>>(),
        vec![3, 4, 5, 6]
    );
    assert_eq!(forwards[0].payload, b"3");
    assert!(forwards.iter().all(|e| e.stream_id == "request-r"));
    let backwards = log
        .read_stream("request-r", 3, Direction::Backwards, 10)
        .await
        .unwrap();
    assert_eq!(
        backwards
            .iter()
            .map(|e| e.stream_version)
            .collect::<Vec<_>>(),
        vec![3, 2, 1, 0]
    );
    let newest = log
        .read_stream("request-r", u64::MAX, Direction::Backwards, 2)
        .await
        .unwrap();
    assert_eq!(
        newest.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        vec![9, 8]
    );
    assert!(log
        .read_stream("request-missing", 0, Direction::Forwards, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(log
        .read_stream("request-r", 10, Direction::Forwards, 10)
        .await
        .unwrap()
        .is_empty());
    // A stream whose id is a prefix of another's does not see the other's events.
    log.append("request-r2", ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    assert_eq!(
        log.read_stream("request-r", 0, Direction::Forwards, 100)
            .await
            .unwrap()
            .len(),
        10
    );
}

#[tokio::test]
async fn all_reads_in_both_directions_with_filters() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    for i in 0..30 {
        let stream = if i % 3 == 0 {
            format!("request-{i}")
        } else {
            format!("timer-{i}")
        };
        let kind = if i % 2 == 0 { "Even" } else { "Odd" };
        log.append(
            &stream,
            ExpectedVersion::Any,
            vec![event(kind, &i.to_string())],
        )
        .await
        .unwrap();
    }
    let all = log
        .read_all(0, Direction::Forwards, &Filter::all(), 100)
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        (0..30).collect::<Vec<_>>()
    );
    let from_10 = log
        .read_all(10, Direction::Forwards, &Filter::all(), 5)
        .await
        .unwrap();
    assert_eq!(
        from_10.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![10, 11, 12, 13, 14]
    );
    let back = log
        .read_all(u64::MAX, Direction::Backwards, &Filter::all(), 3)
        .await
        .unwrap();
    assert_eq!(
        back.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![29, 28, 27]
    );
    let back_from = log
        .read_all(5, Direction::Backwards, &Filter::all(), 100)
        .await
        .unwrap();
    assert_eq!(
        back_from.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![5, 4, 3, 2, 1, 0]
    );
    let requests = log
        .read_all(
            0,
            Direction::Forwards,
            &Filter::stream_prefix("request-"),
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        requests.iter().map(|e| e.position).collect::<Vec<_>>(),
        (0..30).step_by(3).collect::<Vec<_>>()
    );
    let even_requests = Filter {
        stream_prefix: Some("request-".into()),
        event_types: vec!["Even".into()],
    };
    let got = log
        .read_all(u64::MAX, Direction::Backwards, &even_requests, 100)
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![24, 18, 12, 6, 0]
    );
    assert!(log
        .read_all(30, Direction::Forwards, &Filter::all(), 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn reads_are_bounded_by_the_batch_limit() {
    let dir = tempfile::tempdir().unwrap();
    let options = anju_eventlog::LogOptions {
        max_read_batch: 7,
        ..crate::helpers::small_options()
    };
    let log = anju_eventlog::EventLog::open(dir.path(), options)
        .await
        .unwrap();
    log.append("request-big", ExpectedVersion::Any, events(20))
        .await
        .unwrap();
    assert_eq!(
        log.read_all(0, Direction::Forwards, &Filter::all(), 1000)
            .await
            .unwrap()
            .len(),
        7
    );
    assert_eq!(
        log.read_stream("request-big", 0, Direction::Forwards, 1000)
            .await
            .unwrap()
            .len(),
        7
    );
}

#[tokio::test]
async fn segments_roll_over_and_every_event_reads_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let payload = "x".repeat(900);
    let mut stored = Vec::new();
    for i in 0..300 {
        let e = event("Big", &payload);
        stored.push(e.event_id);
        log.append(&format!("request-{}", i % 7), ExpectedVersion::Any, vec![e])
            .await
            .unwrap();
    }
    let stats = log.stats().await;
    assert!(
        stats.segments > 3,
        "expected several segments, got {stats:?}"
    );
    assert_eq!(stats.events, 300);
    assert_eq!(stats.streams, 7);
    log.close().await.unwrap();
    let log = open(dir.path()).await;
    let all = read_everything(&log).await;
    assert_eq!(all.iter().map(|e| e.event_id).collect::<Vec<_>>(), stored);
    let stream = log
        .read_stream("request-3", 0, Direction::Forwards, 1000)
        .await
        .unwrap();
    assert_eq!(stream.len(), 43);
    assert!(stream
        .iter()
        .enumerate()
        .all(|(i, e)| e.stream_version == i as u64));
    assert_eq!(log.event_position(stored[123]).await.unwrap(), Some(123));
    assert_verifies(&log).await;
}

#[tokio::test]
async fn checkpoints_are_stored_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    assert_eq!(log.checkpoint("projection-status").unwrap(), None);
    log.set_checkpoint("projection-status", 42).unwrap();
    assert_eq!(log.checkpoint("projection-status").unwrap(), Some(42));
    log.close().await.unwrap();
    let log = open(dir.path()).await;
    assert_eq!(log.checkpoint("projection-status").unwrap(), Some(42));
    let tree = log.index_db().open_tree("read-model").unwrap();
    tree.insert("k", "v").unwrap();
}

#[tokio::test]
async fn recorded_events_keep_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let sent = event("RequestSubmitted", "{\"service\":\"elderly-care\"}");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    log.append(
        "request-fields",
        ExpectedVersion::NoStream,
        vec![sent.clone()],
    )
    .await
    .unwrap();
    let got = log
        .read_stream("request-fields", 0, Direction::Forwards, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(got.event_id, sent.event_id);
    assert_eq!(got.event_type, sent.event_type);
    assert_eq!(got.schema_version, sent.schema_version);
    assert_eq!(got.metadata, sent.metadata);
    assert_eq!(got.payload, sent.payload);
    assert!(got.recorded_at_micros >= before - 1_000_000);
}
