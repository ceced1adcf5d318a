//! The relay against a real nats-server: every event of the log reaches ANJU_EVENTS
//! exactly once and in log order; NATS outages, restarts and a wiped store are repaired
//! from the log.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anju_eventlog::{EventLog, ExpectedVersion, LogOptions, Metadata, NewEvent};
use anju_relay::{
    EventMessage, RelayConfig, Route, Router, HEADER_EVENT_TYPE, HEADER_POSITION, HEADER_STREAM,
};
use anju_testkit::NatsServer;
use async_nats::jetstream;

fn router() -> Router {
    Arc::new(|event: &anju_eventlog::RecordedEvent| {
        // The router sees only the first event of each stream; its payload names the site.
        assert_eq!(
            event.stream_version, 0,
            "the router is asked about first events only"
        );
        let payload: serde_json::Value =
            serde_json::from_slice(&event.payload).expect("json payload");
        let site = payload["site"]
            .as_str()
            .expect("first event names its site")
            .to_string();
        Route {
            site,
            category: "civil_affairs".to_string(),
        }
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
            metadata: Metadata {
                actor: "caseworker:1".to_string(),
                ..Metadata::default()
            },
            ..NewEvent::new(
                "NoteAdded",
                format!("{{\"n\":{n},\"site\":\"{site}\"}}").into_bytes(),
            )
        };
        log.append(&stream, ExpectedVersion::Any, vec![event])
            .await
            .expect("append");
    }
}

/// Every message in the stream, in stream order.
async fn stream_messages(url: &str) -> Vec<async_nats::jetstream::message::StreamMessage> {
    messages_of(async_nats::connect(url).await.expect("connect to nats")).await
}

/// Every message in the stream `client` reaches, in stream order.
async fn messages_of(
    client: async_nats::Client,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let context = jetstream::new(client);
    let mut stream = context
        .get_stream("ANJU_EVENTS")
        .await
        .expect("stream exists");
    let info = stream.info().await.expect("stream info").clone();
    let mut messages = Vec::new();
    for sequence in info.state.first_sequence..=info.state.last_sequence {
        if info.state.messages == 0 {
            break;
        }
        match stream.get_raw_message(sequence).await {
            Ok(message) => messages.push(message),
            // A message deleted from the middle of the stream (a test's doing).
            Err(error)
                if error.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {}
            Err(error) => panic!("stored message {sequence}: {error}"),
        }
    }
    messages
}

/// Waits until the stream holds `count` messages (or a deadline passes).
async fn wait_for_stream(
    url: &str,
    count: usize,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
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
async fn assert_stream_equals_log(
    log: &EventLog,
    messages: &[async_nats::jetstream::message::StreamMessage],
) {
    let head = log.head_position();
    assert_eq!(
        messages.len() as u64,
        head,
        "stream holds {} messages, log {head} events",
        messages.len()
    );
    let recorded = log
        .read_all(
            0,
            anju_eventlog::Direction::Forwards,
            &anju_eventlog::Filter::default(),
            head as usize,
        )
        .await
        .expect("read the log");
    let mut seen_ids = HashSet::new();
    for (message, event) in messages.iter().zip(&recorded) {
        let body = EventMessage::decode(&message.payload).expect("documented json body");
        assert_eq!(
            body.position, event.position,
            "stream order differs from log order"
        );
        assert_eq!(body.event_id, event.event_id);
        assert!(
            seen_ids.insert(body.event_id),
            "event {} published twice",
            body.event_id
        );
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|value| value.as_str().to_string())
        };
        let message_id = message
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|value| value.as_str().to_string());
        assert_eq!(
            message_id,
            Some(event.event_id.to_string()),
            "Nats-Msg-Id is not the event id"
        );
        assert_eq!(header(HEADER_POSITION), Some(event.position.to_string()));
        assert_eq!(header(HEADER_STREAM), Some(event.stream_id.clone()));
        assert_eq!(header(HEADER_EVENT_TYPE), Some(event.event_type.clone()));
        let site = event
            .stream_id
            .split('-')
            .nth(1)
            .expect("site in stream id");
        assert_eq!(
            message.subject.as_str(),
            format!("anju.events.node-a.{site}.civil_affairs.NoteAdded")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_published_once_in_log_order_and_the_checkpoint_follows() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default())
        .await
        .unwrap();
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
    let log = EventLog::open(dir.path(), LogOptions::default())
        .await
        .unwrap();
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
    assert!(
        log.head_position() > before,
        "appends stalled while nats was down"
    );
    // The relay notices the outage (its lag is what the health detail reports).
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay.status().connected() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !relay.status().connected(),
        "relay still reports connected with nats down"
    );
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
    let log = EventLog::open(dir.path(), LogOptions::default())
        .await
        .unwrap();
    append_events(&log, 0, 400).await;
    let relay = anju_relay::start(log.clone(), config(&nats), router());
    let messages = wait_for_stream(&nats.url(), 400).await;
    assert_eq!(messages.len(), 400);

    nats.wipe_and_restart();
    append_events(&log, 400, 100).await;
    let messages = wait_for_stream(&nats.url(), 500).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        messages.len(),
        500,
        "the relay did not republish the wiped events"
    );
    assert_stream_equals_log(&log, &stream_messages(&nats.url()).await).await;
    assert!(
        relay.status().republished() >= 400,
        "republished {}",
        relay.status().republished()
    );
    relay.stop().await;
    log.close().await.unwrap();
}

/// The stream's configuration as the server reports it (raw, so `allow_batched` shows).
async fn raw_stream_config(url: &str) -> serde_json::Value {
    let client = async_nats::connect(url).await.expect("connect to nats");
    let answer = client
        .request("$JS.API.STREAM.INFO.ANJU_EVENTS", "".into())
        .await
        .expect("stream info");
    let info: serde_json::Value =
        serde_json::from_slice(&answer.payload).expect("json stream info");
    info["config"].clone()
}

async fn wait_for_checkpoint(log: &EventLog, relay: &anju_relay::RelayHandle, position: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while (log.checkpoint("relay").unwrap() != Some(position)
        || relay.status().published_up_to() != position)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        relay.status().published_up_to(),
        position,
        "published_up_to did not reach {position}"
    );
    assert_eq!(
        log.checkpoint("relay").unwrap(),
        Some(position),
        "checkpoint did not reach {position}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_batches_acknowledge_many_messages_at_once_and_the_tail_of_each_burst() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default())
        .await
        .unwrap();
    append_events(&log, 0, 5000).await;

    let relay = anju_relay::start(log.clone(), config(&nats), router());
    let messages = wait_for_stream(&nats.url(), 5000).await;
    assert_stream_equals_log(&log, &messages).await;
    wait_for_checkpoint(&log, &relay, 5000).await;
    let status = relay.status();
    assert!(
        status.fast_batching(),
        "the relay did not publish in fast batches"
    );
    assert_eq!(
        raw_stream_config(&nats.url()).await["allow_batched"],
        serde_json::json!(true)
    );
    let acknowledgements = status.acknowledgements();
    assert!(
        acknowledgements * 20 < 5000,
        "{acknowledgements} acknowledgements for 5000 messages: not batched"
    );

    // Single live events: each one is acknowledged (the batch ends when the log has
    // nothing more) without waiting for later events.
    for n in 0..3 {
        append_events(&log, 5000 + n, 1).await;
        wait_for_checkpoint(&log, &relay, 5001 + n as u64).await;
    }
    // An idle relay holds no batch the server would abandon: after more than the
    // server's 10 s batch timeout the next event still goes through on this connection.
    tokio::time::sleep(Duration::from_secs(11)).await;
    append_events(&log, 5003, 1).await;
    wait_for_checkpoint(&log, &relay, 5004).await;
    assert!(
        relay.status().last_error().is_none(),
        "{:?}",
        relay.status().last_error()
    );
    assert_stream_equals_log(&log, &stream_messages(&nats.url()).await).await;
    relay.stop().await;
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_batches_keep_within_a_small_in_flight_limit() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default())
        .await
        .unwrap();
    append_events(&log, 0, 1000).await;
    // Fewer in flight than the flow the relay would ask for (500): it asks for less, or it
    // would wait for acknowledgements the server sends only every 500 messages.
    let relay = anju_relay::start(
        log.clone(),
        RelayConfig {
            max_in_flight: 10,
            ..config(&nats)
        },
        router(),
    );
    wait_for_checkpoint(&log, &relay, 1000).await;
    assert!(relay.status().fast_batching());
    assert!(
        relay.status().last_error().is_none(),
        "{:?}",
        relay.status().last_error()
    );
    assert_stream_equals_log(&log, &stream_messages(&nats.url()).await).await;
    relay.stop().await;
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_batch_messages_already_in_the_stream_are_dropped_as_duplicates() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default())
        .await
        .unwrap();
    append_events(&log, 0, 300).await;

    // Positions 100..200 are in the stream already (published as the relay would, one by
    // one) while the checkpoint is 0: the relay's repair finds position 0 missing and
    // publishes 0..300, in fast batches; JetStream's duplicate window must drop the 100
    // it has.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let context = jetstream::new(client);
    context
        .create_stream(jetstream::stream::Config {
            name: "ANJU_EVENTS".to_string(),
            subjects: vec!["anju.events.>".to_string()],
            duplicate_window: Duration::from_secs(30 * 60),
            ..Default::default()
        })
        .await
        .unwrap();
    let recorded = log
        .read_all(
            0,
            anju_eventlog::Direction::Forwards,
            &anju_eventlog::Filter::default(),
            300,
        )
        .await
        .unwrap();
    for event in &recorded[100..200] {
        let site = event.stream_id.split('-').nth(1).unwrap();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            event.event_id.to_string().as_str(),
        );
        headers.insert(HEADER_POSITION, event.position.to_string().as_str());
        headers.insert(HEADER_STREAM, event.stream_id.as_str());
        headers.insert(HEADER_EVENT_TYPE, event.event_type.as_str());
        let body = serde_json::to_vec(&EventMessage::from_recorded("node-a", event)).unwrap();
        context
            .publish_with_headers(
                format!("anju.events.node-a.{site}.civil_affairs.NoteAdded"),
                headers,
                body.into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let relay = anju_relay::start(log.clone(), config(&nats), router());
    wait_for_checkpoint(&log, &relay, 300).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(relay.status().fast_batching());
    assert!(
        relay.status().acknowledgements() < 50,
        "{} acknowledgements",
        relay.status().acknowledgements()
    );
    let messages = stream_messages(&nats.url()).await;
    assert_eq!(
        messages.len(),
        300,
        "events already in the stream were stored again"
    );
    let positions: Vec<u64> = messages
        .iter()
        .map(|message| EventMessage::decode(&message.payload).unwrap().position)
        .collect();
    let expected: Vec<u64> = (100..200).chain(0..100).chain(200..300).collect();
    assert_eq!(positions, expected);
    relay.stop().await;
    log.close().await.unwrap();
}

/// A nats-server whose clients (connecting without credentials, as the user `relay`) may
/// do anything but update streams: an operator's restriction the relay must live with.
fn nats_without_stream_updates(dir: &std::path::Path) -> NatsServer {
    let conf = dir.join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "jetstream {{ store_dir: {:?} }}\nno_auth_user: relay\nauthorization {{ users = [\n  {{ user: relay, password: relay, permissions: {{ publish: {{ allow: [\">\"], deny: [\"$JS.API.STREAM.UPDATE.>\"] }} }} }}\n] }}\n",
            dir.join("store")
        ),
    )
    .unwrap();
    NatsServer::start_with_args(&["-c", conf.to_str().unwrap()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_allow_batched_the_relay_falls_back_to_one_acknowledgement_per_message() {
    let nats_dir = tempfile::tempdir().unwrap();
    let nats = nats_without_stream_updates(nats_dir.path());
    // The stream exists as the relay wants it, but without allow_batched, and the relay's
    // user cannot change that.
    let admin = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    admin
        .create_stream(jetstream::stream::Config {
            name: "ANJU_EVENTS".to_string(),
            subjects: vec!["anju.events.>".to_string()],
            duplicate_window: Duration::from_secs(30 * 60),
            ..Default::default()
        })
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default())
        .await
        .unwrap();
    append_events(&log, 0, 500).await;
    let relay = anju_relay::start(log.clone(), config(&nats), router());
    let messages = wait_for_stream(&nats.url(), 500).await;
    assert_stream_equals_log(&log, &messages).await;
    wait_for_checkpoint(&log, &relay, 500).await;
    assert!(!relay.status().fast_batching());
    assert_eq!(
        relay.status().acknowledgements(),
        500,
        "one acknowledgement per message"
    );
    assert_ne!(
        raw_stream_config(&nats.url()).await["allow_batched"],
        serde_json::json!(true)
    );
    relay.stop().await;

    // Switched off in the configuration, the relay does not try.
    let mut relay_config = config(&nats);
    relay_config.fast_batch = false;
    let nats_free = NatsServer::start();
    relay_config.nats_url = nats_free.url();
    let relay = anju_relay::start(
        log.clone(),
        RelayConfig {
            checkpoint_name: "relay-2".to_string(),
            ..relay_config
        },
        router(),
    );
    let messages = wait_for_stream(&nats_free.url(), 500).await;
    assert_stream_equals_log(&log, &messages).await;
    assert!(!relay.status().fast_batching());
    assert_ne!(
        raw_stream_config(&nats_free.url()).await["allow_batched"],
        serde_json::json!(true)
    );
    relay.stop().await;
    log.close().await.unwrap();
}

/// Every message of the stream, read with credentials; none while there is no stream.
async fn stream_messages_as(
    url: &str,
    user: &str,
    password: &str,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let client = async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .connect(url)
        .await
        .expect("connect to nats with credentials");
    if jetstream::new(client.clone())
        .get_stream("ANJU_EVENTS")
        .await
        .is_err()
    {
        return Vec::new();
    }
    messages_of(client).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_url_reach_a_server_that_wants_them_and_are_never_shown() {
    let nats = NatsServer::start_with_args(&["--user", "anju", "--pass", "s3cr@t-pw"]);
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default())
        .await
        .unwrap();
    append_events(&log, 0, 40).await;

    // A wrong password: the relay stays disconnected and says why, naming the server but
    // not the password.
    let mut wrong = config(&nats);
    wrong.nats_url = format!("nats://anju:wr0ng-pw@127.0.0.1:{}", nats.port());
    assert!(!format!("{wrong:?}").contains("wr0ng-pw"), "{wrong:?}");
    let relay = anju_relay::start(log.clone(), wrong, router());
    let status = relay.status();
    let deadline = Instant::now() + Duration::from_secs(20);
    let error = loop {
        if let Some(error) = status.last_error() {
            break error;
        }
        assert!(
            Instant::now() < deadline,
            "the relay never reported the refusal"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.connected());
    assert!(
        error.contains(&format!("nats://anju:***@127.0.0.1:{}", nats.port())),
        "{error}"
    );
    assert!(!error.contains("wr0ng-pw"), "{error}");
    relay.stop().await;
    assert!(stream_messages_as(&nats.url(), "anju", "s3cr@t-pw")
        .await
        .is_empty());

    // The right one, percent-encoded, on the second server of a list whose first is
    // down: every event arrives, in order, once.
    let mut right = config(&nats);
    right.nats_url = format!(
        "nats://127.0.0.1:{},nats://anju:s3cr%40t-pw@127.0.0.1:{}",
        anju_testkit::free_port(),
        nats.port()
    );
    let relay = anju_relay::start(log.clone(), right, router());
    append_events(&log, 40, 20).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let messages = loop {
        let messages = stream_messages_as(&nats.url(), "anju", "s3cr@t-pw").await;
        if messages.len() >= 60 || Instant::now() > deadline {
            break messages;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_stream_equals_log(&log, &messages).await;
    assert!(relay.status().connected());
    relay.stop().await;
    log.close().await.unwrap();
}

/// Publishes a message of `node` at log position `position` with `id` as its
/// `Nats-Msg-Id` (none: no id, so JetStream cannot drop it as a duplicate).
async fn publish_raw(
    context: &jetstream::Context,
    node: &str,
    position: u64,
    id: Option<uuid::Uuid>,
) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(anju_relay::HEADER_NODE, node);
    headers.insert(HEADER_POSITION, position.to_string().as_str());
    if let Some(id) = id {
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.to_string().as_str());
    }
    context
        .publish_with_headers(
            format!("anju.events.{node}.s1.civil_affairs.NoteAdded"),
            headers,
            "{}".into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_counts_each_kind_of_difference_between_log_and_stream() {
    use anju_relay::check::{check_stream, CheckError, CheckTarget};
    let nats = NatsServer::start();
    let target = |node: &str, nats_url: String| CheckTarget {
        nats_url,
        stream_name: "ANJU_EVENTS".to_string(),
        subject_prefix: "anju.events".to_string(),
        node_id: node.to_string(),
        timeout: Duration::from_secs(5),
    };
    let log: Vec<uuid::Uuid> = (0..6).map(|_| uuid::Uuid::new_v4()).collect();

    // Before the stream exists: said so, not an empty report.
    let error = check_stream(&target("node-c", nats.url()), &log)
        .await
        .expect_err("no stream yet");
    assert!(matches!(error, CheckError::NoStream { .. }), "{error:?}");
    assert!(error.to_string().contains("ANJU_EVENTS"), "{error}");
    // An address with nothing listening.
    let closed = format!("nats://127.0.0.1:{}", anju_testkit::free_port());
    let error = check_stream(&target("node-c", closed), &log)
        .await
        .expect_err("nothing listens there");
    assert!(matches!(error, CheckError::Connect { .. }), "{error:?}");

    let client = async_nats::connect(nats.url()).await.unwrap();
    let context = jetstream::new(client);
    context
        .create_stream(jetstream::stream::Config {
            name: "ANJU_EVENTS".to_string(),
            subjects: vec!["anju.events.>".to_string()],
            ..Default::default()
        })
        .await
        .unwrap();
    // node-c: 0, 2, then 1 (out of order), 2 again (duplicate), 3 with another event's
    // id and 9 past the log's end (mismatched); 4 and 5 never arrive (missing).
    publish_raw(&context, "node-c", 0, Some(log[0])).await;
    publish_raw(&context, "node-c", 2, Some(log[2])).await;
    publish_raw(&context, "node-c", 1, Some(log[1])).await;
    publish_raw(&context, "node-c", 2, None).await;
    publish_raw(&context, "node-c", 3, Some(uuid::Uuid::new_v4())).await;
    publish_raw(&context, "node-c", 9, Some(uuid::Uuid::new_v4())).await;
    // Another node's messages, in order, are not node-c's business.
    let other_log: Vec<uuid::Uuid> = (0..6).map(|_| uuid::Uuid::new_v4()).collect();
    for (position, id) in other_log.iter().enumerate() {
        publish_raw(&context, "node-d", position as u64, Some(*id)).await;
    }

    let report = check_stream(&target("node-c", nats.url()), &log)
        .await
        .expect("the check runs");
    assert_eq!(report.log_events, 6);
    assert_eq!(report.stream_messages, 6, "{report:?}");
    assert_eq!(report.out_of_order, 1, "{report:?}");
    assert_eq!(report.duplicate, 1, "{report:?}");
    assert_eq!(report.mismatched, 2, "{report:?}");
    assert_eq!(report.missing, 2, "{report:?}");
    assert_eq!(report.missing_after_last_message, 0, "{report:?}");
    assert!(!report.is_clean());
    assert!(
        report
            .examples
            .iter()
            .any(|example| example.contains(&format!("where the log has {}", log[3]))),
        "{:?}",
        report.examples
    );

    let report = check_stream(&target("node-d", nats.url()), &other_log)
        .await
        .expect("the check runs");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.stream_messages, 6);
    // A log longer than the stream: the tail is missing after the last message (lag).
    let longer: Vec<uuid::Uuid> = other_log
        .iter()
        .copied()
        .chain([uuid::Uuid::new_v4()])
        .collect();
    let report = check_stream(&target("node-d", nats.url()), &longer)
        .await
        .expect("the check runs");
    assert_eq!((report.missing, report.missing_after_last_message), (1, 1));
}

/// Twenty kill -9 / restarts of nats-server while events are appended, one publish
/// acknowledged at a time (`fast_batch` off: the process tests in anju-insight cover the
/// server's default, fast batches): the stream ends up holding the log in log order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_by_message_the_stream_keeps_log_order_through_twenty_nats_kills() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default())
        .await
        .unwrap();
    let mut config = config(&nats);
    config.fast_batch = false;
    let relay = anju_relay::start(log.clone(), config, router());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (log, stop) = (log.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                append_events(&log, n, 20).await;
                n += 20;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    for round in 0..20u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !relay.status().connected() {
            assert!(Instant::now() < deadline, "round {round}: no reconnection");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Kill while publishes are in flight, at a different moment each round.
        tokio::time::sleep(Duration::from_millis(50 + round * 17 % 200)).await;
        nats.kill();
        tokio::time::sleep(Duration::from_millis(100 + round * 37 % 400)).await;
        nats.restart();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    let head = log.head_position();
    assert!(!relay.status().fast_batching());
    let deadline = Instant::now() + Duration::from_secs(60);
    while relay.status().published_up_to() < head {
        assert!(Instant::now() < deadline, "the relay did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_stream_equals_log(&log, &stream_messages(&nats.url()).await).await;
    relay.stop().await;
    log.close().await.unwrap();
}
