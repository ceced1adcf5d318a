//! The server streams: a queue watch sees a new request arrive after its snapshot, a
//! log subscription sees the event after CAUGHT_UP, and both end when the server stops
//! (the stop does not wait out its grace for them).

use std::time::{Duration, Instant};

use anju_proto::v1::*;
use tokio_stream::StreamExt;

use super::{dibao, World};
use crate::helpers::authed;

#[track_caller]
fn next<T>(item: Option<Result<T, tonic::Status>>) -> T {
    item.expect("stream open").expect("no error")
}

#[tokio::test]
async fn queue_watch_and_log_subscription_follow_writes_and_end_on_stop() {
    let world = World::new().await;
    let t = &world.tokens;
    let first = world
        .submit(&t.resident, &dibao(), "streams-0001-key", "13300001111")
        .await
        .unwrap();
    world.status(&first, first.position).await;

    let mut queue = world
        .clients
        .caseworker
        .clone()
        .watch_queue(authed(WatchQueueRequest::default(), &t.caseworker_a))
        .await
        .unwrap()
        .into_inner();
    let mut log = world
        .clients
        .eventlog
        .clone()
        .subscribe_all(authed(
            SubscribeAllRequest {
                from_position: 0,
                filter: Some(EventFilter {
                    stream_prefixes: vec!["request-".into()],
                    event_types: vec![],
                }),
            },
            &t.admin,
        ))
        .await
        .unwrap()
        .into_inner();

    let added: WatchQueueResponse = next(queue.next().await);
    assert_eq!(added.kind(), QueueChangeKind::Added);
    assert_eq!(added.item.unwrap().request_id, first.request_id);
    assert_eq!(next(queue.next().await).kind(), QueueChangeKind::CaughtUp);
    let history: SubscribeAllResponse = next(log.next().await);
    match history.message.unwrap() {
        subscribe_all_response::Message::Event(event) => {
            assert_eq!(event.position, first.position);
            assert_eq!(event.event_type, "RequestSubmitted");
        }
        other => panic!("expected the first event, got {other:?}"),
    }
    let caught_up: SubscribeAllResponse = next(log.next().await);
    assert!(matches!(
        caught_up.message,
        Some(subscribe_all_response::Message::CaughtUp(_))
    ));

    // A new request shows up live in both.
    let second = world
        .submit(&t.resident, &dibao(), "streams-0002-key", "13300002222")
        .await
        .unwrap();
    let change: WatchQueueResponse = next(queue.next().await);
    assert_eq!(change.kind(), QueueChangeKind::Added);
    assert_eq!(change.position, second.position);
    assert_eq!(change.item.unwrap().request_id, second.request_id);
    match next(log.next().await).message.unwrap() {
        subscribe_all_response::Message::Event(event) => {
            assert_eq!(event.position, second.position)
        }
        other => panic!("expected the live event, got {other:?}"),
    }

    // Stopping ends both streams well inside the grace.
    let started = Instant::now();
    let World { app, .. } = world;
    let stopping = tokio::spawn(app.stop());
    for ended in [
        tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = queue.next().await {}
        })
        .await,
        tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = log.next().await {}
        })
        .await,
    ] {
        ended.expect("the stream ends when the server stops");
    }
    stopping.await.unwrap().expect("clean stop");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}
