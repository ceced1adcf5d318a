//! Log reads page by bytes as well as by count (issue 15, found item 4): with notes at
//! their longest, `ReadAll` and `ReadStream` at `max_count` 1000 answer a page that fits
//! in `max_message_bytes` instead of failing with `OUT_OF_RANGE`, and following
//! `next_position` (or the last version) returns every event once, in order.

use anju_proto::v1::*;
use prost::Message;
use tokio_stream::StreamExt;

use super::{dibao, World};
use crate::helpers::{authed, TestApp};

/// The server's limit, scaled down from the default 4 MiB so that a few hundred
/// kilobytes of notes exceed it (1000 such notes exceed the default just the same).
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// More notes than one response can hold: each is 2000 three-byte characters, about
/// 6 KB of payload, so 120 of them are about 720 KB.
const NOTES: usize = 120;

#[tokio::test]
async fn read_all_and_read_stream_page_by_bytes_with_long_notes() {
    let world =
        World::on(TestApp::spawn_with(|config| config.max_message_bytes = MAX_MESSAGE_BYTES).await)
            .await;
    let t = &world.tokens;
    let submitted = world
        .submit(&t.resident, &dibao(), "paging-0001-key", "13300003333")
        .await
        .unwrap();
    let text = "长".repeat(2000);
    let mut caseworker = world.clients.caseworker.clone();
    for n in 0..NOTES {
        caseworker
            .add_note(authed(
                AddNoteRequest {
                    request_id: submitted.request_id.clone(),
                    idempotency_key: format!("paging-note-{n:05}"),
                    text: text.clone(),
                    internal: true,
                    ..Default::default()
                },
                &t.admin,
            ))
            .await
            .expect("note added");
    }
    let head = world.head().await;
    assert!(head > NOTES as u64, "head {head}");

    let mut eventlog = world.clients.eventlog.clone();
    let mut seen = Vec::new();
    let mut from = 0;
    let mut pages = 0;
    loop {
        let page = eventlog
            .read_all(authed(
                ReadAllRequest {
                    from_position: from,
                    max_count: 1000,
                    ..Default::default()
                },
                &t.admin,
            ))
            .await
            .expect("ReadAll at max_count 1000 with long notes answers")
            .into_inner();
        assert!(
            page.encoded_len() <= MAX_MESSAGE_BYTES,
            "a page of {} bytes",
            page.encoded_len()
        );
        if page.events.is_empty() {
            break;
        }
        pages += 1;
        assert_eq!(
            page.next_position,
            page.events.last().unwrap().position + 1,
            "the next page starts right after the last event returned"
        );
        seen.extend(page.events.iter().map(|e| e.position));
        from = page.next_position;
    }
    assert!(pages >= 3, "{pages} pages: cut by bytes, not by count");
    assert_eq!(
        seen,
        (1..=head).collect::<Vec<_>>(),
        "every event once, in order"
    );

    let stream_id = format!("request-{}", submitted.request_id);
    let mut versions = Vec::new();
    let mut from_version = 1;
    let mut stream_pages = 0;
    loop {
        stream_pages += 1;
        let page = eventlog
            .read_stream(authed(
                ReadStreamRequest {
                    stream_id: stream_id.clone(),
                    from_version,
                    max_count: 1000,
                    ..Default::default()
                },
                &t.admin,
            ))
            .await
            .expect("ReadStream at max_count 1000 with long notes answers")
            .into_inner();
        assert!(page.encoded_len() <= MAX_MESSAGE_BYTES);
        assert!(!page.events.is_empty(), "a page before the end has events");
        versions.extend(page.events.iter().map(|e| e.stream_version));
        from_version = page.events.last().unwrap().stream_version + 1;
        if page.end_of_stream {
            break;
        }
    }
    assert!(stream_pages >= 3, "{stream_pages} stream pages");
    let stream_version = NOTES as u64 + 1;
    assert_eq!(versions, (1..=stream_version).collect::<Vec<_>>());

    // SubscribeAll sends one event a message, so it never meets the limit.
    let mut subscription = eventlog
        .subscribe_all(authed(SubscribeAllRequest::default(), &t.admin))
        .await
        .unwrap()
        .into_inner();
    let mut delivered = 0u64;
    while let Some(item) = subscription.next().await {
        match item.expect("no error").message {
            Some(subscribe_all_response::Message::Event(_)) => delivered += 1,
            Some(subscribe_all_response::Message::CaughtUp(_)) => break,
            _ => {}
        }
    }
    assert_eq!(delivered, head);
}
