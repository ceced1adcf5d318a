//! The relay against a real nats-server: every event of the log reaches ANJU_EVENTS
//! exactly once and in log order; NATS outages, restarts and a wiped store are repaired
//! from the log.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anju_eventlog::{EventLog, ExpectedVersion, LogOptions, Metadata, NewEvent};
use anju_relay::{EventMessage, RelayConfig, Route, Router, HEADER_EVENT_TYPE, HEADER_POSITION, HEADER_STREAM};
use anju_testkit::NatsServer;
use async_nats::jetstream;

fn router() -> Router {
    Arc::new(|event: &anju_eventlog::RecordedEvent| {
        // The router sees only the first event of each stream; its payload names the site.
        assert_eq!(event.stream_version, 0, "the router is asked about first events only");
        let payload: serde_json::Value = serde_json::from_slice(&event.payload).expect("json payload");
        let site = payload["site"].as_str().expect("first event names its site").to_string();
        Route { site, category: "civil_affairs".to_string() }
    })
}

fn config(nats: &NatsServer) -> RelayConfig {
    let mut config = RelayConfig::new(nats.url(), "node-a");
    config.max_in_flight = 512;
    config.ack_timeout = Duration::from_secs(3);
    config
}

async fn append_events(log: &EventLog, from: usize, count: usize) {
    for n in from..from + count {
        let stream = format!("request-s{}-{}", n % 3, n / 4);
        let site = format!("s{}", n % 3);
        let event = NewEvent {
            metadata: Metadata { actor: "caseworker:1".to_string(), ..Metadata::default() },
            ..NewEvent::new("NoteAdded", format!("{{\"n\":{n},\"site\":\"{site}\"}}").into_bytes())
        };
        log.append(&stream, ExpectedVersion::Any, vec![event]).await.expect("append");
    }
}

/// Every message in the stream, in stream order.
async fn stream_messages(url: &str) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let client = async_nats::connect(url).await.expect("connect to nats");
    let context = jetstream::new(client);
    let mut stream = context.get_stream("ANJU_EVENTS").await.expect("stream exists");
    let info = stream.info().await.expect("stream info").clone();
    let mut messages = Vec::new();
    for sequence in info.state.first_sequence..=info.state.last_sequence {
        if info.state.messages == 0 {
            break;
        }
        messages.push(stream.get_raw_message(sequence).await.expect("stored message"));
    }
    messages
}

/// Waits until the stream holds `count` messages (or a deadline passes).
async fn wait_for_stream(url: &str, count: usize) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let messages = match async_nats::connect(url).await {
            Ok(_) => stream_messages_or_empty(url).await,
            Err(_) => Vec::new(),
        };
        if messages.len() >= count || Instant::now() > deadline {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stream_messages_or_empty(url: &str) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let client = match async_nats::connect(url).await {
        Ok(client) => client,
        Err(_) => return Vec::new(),
    };
    let context = jetstream::new(client);
    if context.get_stream("ANJU_EVENTS").await.is_err() {
        return Vec::new();
    }
    stream_messages(url).await
}

/// Exactly the log's events: positions 0..count once each, in log order, with the
/// headers and subjects the documentation promises.
async fn assert_stream_equals_log(log: &EventLog, messages: &[async_nats::jetstream::message::StreamMessage]) {
    let head = log.head_position();
    assert_eq!(messages.len() as u64, head, "stream holds {} messages, log {head} events", messages.len());
    let recorded = log
        .read_all(0, anju_eventlog::Direction::Forwards, &anju_eventlog::Filter::default(), head as usize)
        .await
        .expect("read the log");
    let mut seen_ids = HashSet::new();
    for (message, event) in messages.iter().zip(&recorded) {
        let body = EventMessage::decode(&message.payload).expect("documented json body");
        assert_eq!(body.position, event.position, "stream order differs from log order");
        assert_eq!(body.event_id, event.event_id);
        assert!(seen_ids.insert(body.event_id), "event {} published twice", body.event_id);
        let header = |name: &str| message.headers.get(name).map(|value| value.as_str().to_string());
        let message_id = message.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|value| value.as_str().to_string());
        assert_eq!(message_id, Some(event.event_id.to_string()), "Nats-Msg-Id is not the event id");
        assert_eq!(header(HEADER_POSITION), Some(event.position.to_string()));
        assert_eq!(header(HEADER_STREAM), Some(event.stream_id.clone()));
        assert_eq!(header(HEADER_EVENT_TYPE), Some(event.event_type.clone()));
        let site = event.stream_id.split('-').nth(1).expect("site in stream id");
        assert_eq!(message.subject.as_str(), format!("anju.events.node-a.{site}.civil_affairs.NoteAdded"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_published_once_in_log_order_and_the_checkpoint_follows() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default()).await.unwrap();
    append_events(&log, 0, 300).await;

    let relay = anju_relay::start(log.clone(), config(&nats), router());
    // Events appended while the relay runs are published too.
    append_events(&log, 300, 200).await;
    let messages = wait_for_stream(&nats.url(), 500).await;
    assert_stream_equals_log(&log, &messages).await;

    let status = relay.status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.checkpoint("relay").unwrap() != Some(500) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(log.checkpoint("relay").unwrap(), Some(500));
    assert_eq!(status.published_up_to(), 500);
    assert!(status.connected());
    relay.stop().await;

    // A restarted relay resumes from its checkpoint and publishes nothing twice.
    let relay = anju_relay::start(log.clone(), config(&nats), router());
    append_events(&log, 500, 10).await;
    let messages = wait_for_stream(&nats.url(), 510).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_stream_equals_log(&log, &stream_messages(&nats.url()).await).await;
    assert_eq!(messages.len(), 510);
    relay.stop().await;
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_under_load_is_drained_in_order_when_nats_returns() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default()).await.unwrap();
    let relay = anju_relay::start(log.clone(), config(&nats), router());

    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            for round in 0..20 {
                append_events(&log, round * 50, 50).await;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    nats.kill();
    // The log keeps accepting while NATS is down.
    let before = log.head_position();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(log.head_position() > before, "appends stalled while nats was down");
    // The relay notices the outage (its lag is what the health detail reports).
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay.status().connected() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!relay.status().connected(), "relay still reports connected with nats down");
    assert!(relay.status().published_up_to() < log.head_position());
    nats.restart();
    writer.await.unwrap();
    assert_eq!(log.head_position(), 1000);

    wait_for_stream(&nats.url(), 1000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_stream_equals_log(&log, &stream_messages(&nats.url()).await).await;
    relay.stop().await;
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_jetstream_store_is_detected_and_republished() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default()).await.unwrap();
    append_events(&log, 0, 400).await;
    let relay = anju_relay::start(log.clone(), config(&nats), router());
    let messages = wait_for_stream(&nats.url(), 400).await;
    assert_eq!(messages.len(), 400);

    nats.wipe_and_restart();
    append_events(&log, 400, 100).await;
    let messages = wait_for_stream(&nats.url(), 500).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(messages.len(), 500, "the relay did not republish the wiped events");
    assert_stream_equals_log(&log, &stream_messages(&nats.url()).await).await;
    assert!(relay.status().republished() >= 400, "republished {}", relay.status().republished());
    relay.stop().await;
    log.close().await.unwrap();
}
