//! anju-server publishes its log to JetStream: every event of a submission and its
//! caseworker steps reaches ANJU_EVENTS once, in order, under the documented subject,
//! with no phone or identity number in clear, and /metrics shows the relay's lag.

use std::time::{Duration, Instant};

use anju_testkit::NatsServer;
use async_nats::jetstream;

use super::{one_per_category, World, SITE_A};
use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_jetstream_with_site_category_and_type_in_the_subject() {
    let nats = NatsServer::start();
    let url = nats.url();
    let app = TestApp::spawn_with(|config| {
        config.nats_url = Some(url.clone());
        config.node_id = "node-test".to_string();
    })
    .await;
    let world = World::on(app).await;
    let phone = "13800130427";
    let form = &one_per_category()[0];
    let submitted = world
        .submit(&world.tokens.resident, form, "nats-key-0001", phone)
        .await
        .expect("submit");
    let head = world.head().await;
    assert!(head >= 1);

    let client = async_nats::connect(&url).await.expect("connect to nats");
    let context = jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(30);
    let messages = loop {
        if let Ok(mut stream) = context.get_stream("ANJU_EVENTS").await {
            let state = stream.info().await.expect("stream info").state.clone();
            if state.messages >= head {
                let mut messages = Vec::new();
                for sequence in state.first_sequence..=state.last_sequence {
                    messages.push(stream.get_raw_message(sequence).await.expect("message"));
                }
                break messages;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the relay did not publish the submission"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(messages.len() as u64, head, "each event once");
    let first = &messages[0];
    let body = anju_relay::EventMessage::decode(&first.payload).expect("documented body");
    assert_eq!(body.event_type, "RequestSubmitted");
    assert_eq!(body.stream_id, format!("request-{}", submitted.request_id));
    let category = body.data["category"]
        .as_str()
        .expect("category in the event")
        .to_string();
    assert_eq!(
        first.subject.as_str(),
        format!("anju.events.node-test.{SITE_A}.{category}.RequestSubmitted")
    );
    for message in &messages {
        let text = String::from_utf8_lossy(&message.payload);
        assert!(
            !text.contains(phone),
            "a phone number travelled in clear: {text}"
        );
        assert!(
            !text.contains(super::SAMPLE_ID_NUMBER),
            "an identity number travelled in clear: {text}"
        );
    }

    // The stream can hold the last event a moment before the relay has read its
    // acknowledgement, so the lag reaches 0 shortly after, not necessarily now.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = world.app.http_get("/metrics").await;
        if metrics.contains("anju_relay_lag_events 0") || Instant::now() >= deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(metrics.contains("anju_relay_connected 1"), "{metrics}");
    assert!(metrics.contains("anju_relay_lag_events 0"), "{metrics}");
    world.app.stop().await.expect("stops cleanly");
}
