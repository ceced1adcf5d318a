//! Catch-up subscriptions: history then live, under concurrent appends, exactly once and
//! in order; filters; slow subscribers do not hold anyone up; close ends them.

use crate::helpers::{event, events, open};

use anju_eventlog::{ExpectedVersion, Filter};
use futures::StreamExt;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_catch_up_subscription_crosses_into_live_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    for i in 0..50 {
        log.append(&format!("request-{i}"), ExpectedVersion::Any, events(10))
            .await
            .unwrap();
    }
    let writers = 8;
    let per_writer = 150;
    let total = 500 + writers * per_writer;
    let mut subscribers = Vec::new();
    for start in [0u64, 250] {
        let mut subscription = log.subscribe_all(start, Filter::all());
        subscribers.push(tokio::spawn(async move {
            let mut positions = Vec::new();
            while positions.len() < total - start as usize {
                let event = tokio::time::timeout(Duration::from_secs(20), subscription.next())
                    .await
                    .expect("subscription should keep delivering")
                    .expect("subscription should not end")
                    .expect("subscription should not fail");
                positions.push(event.position);
            }
            positions
        }));
    }
    // A subscriber that never reads must not hold up anything.
    let _idle = log.subscribe_all(0, Filter::all());
    let mut appenders = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        appenders.push(tokio::spawn(async move {
            // 100 appends of one or two events: 150 events per writer.
            for i in 0..100 {
                let batch = events(1 + i % 2);
                log.append(&format!("live-{w}"), ExpectedVersion::Any, batch)
                    .await
                    .unwrap();
                if i % 20 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for appender in appenders {
        appender.await.unwrap();
    }
    assert_eq!(log.head_position(), total as u64);
    for (subscriber, start) in subscribers.into_iter().zip([0u64, 250]) {
        let positions = subscriber.await.unwrap();
        assert_eq!(positions, (start..total as u64).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_filtered_subscription_sees_only_matching_events_live() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let filter = Filter {
        stream_prefix: Some("request-".into()),
        event_types: vec!["Submitted".into()],
    };
    let mut stream = log.subscribe_all(0, filter).into_stream().boxed();
    log.append(
        "timer-1",
        ExpectedVersion::Any,
        vec![event("Submitted", "no")],
    )
    .await
    .unwrap();
    log.append(
        "request-1",
        ExpectedVersion::Any,
        vec![event("Noted", "no")],
    )
    .await
    .unwrap();
    log.append(
        "request-1",
        ExpectedVersion::Any,
        vec![event("Submitted", "yes")],
    )
    .await
    .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.position, got.payload.as_slice()),
        (2, b"yes".as_slice())
    );
    let next = log.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        // More non-matching events than one history scan covers, in few appends.
        for _ in 0..5 {
            let ticks = (0..1000).map(|i| event("Tick", &i.to_string())).collect();
            next.append("timer-2", ExpectedVersion::Any, ticks)
                .await
                .unwrap();
        }
        next.append(
            "request-2",
            ExpectedVersion::Any,
            vec![event("Submitted", "later")],
        )
        .await
        .unwrap();
    });
    let got = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.position, got.payload.as_slice()),
        (5003, b"later".as_slice())
    );
}

#[tokio::test]
async fn closing_the_log_ends_a_caught_up_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    log.append("request-1", ExpectedVersion::Any, events(2))
        .await
        .unwrap();
    let mut subscription = log.subscribe_all(0, Filter::all());
    assert_eq!(subscription.next().await.unwrap().unwrap().position, 0);
    assert_eq!(subscription.next().await.unwrap().unwrap().position, 1);
    let position = log.wait_for_position(1).await.unwrap();
    assert_eq!(position, 2);
    log.clone().close().await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .unwrap();
    assert!(end.is_none());
}

#[tokio::test]
async fn a_task_on_its_own_thread_runs_there_and_reports_when_done() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let done = anju_eventlog::spawn_on_own_thread("anju-test-own", async move {
        // Its own runtime: timers and spawned tasks work there too.
        let inner = tokio::spawn(async { std::thread::current().name().map(str::to_string) });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let _ = tx.send(inner.await.unwrap());
    });
    assert_eq!(rx.await.unwrap().as_deref(), Some("anju-test-own"));
    tokio::time::timeout(std::time::Duration::from_secs(5), done)
        .await
        .expect("the done signal comes")
        .expect("sent, not dropped");
}
