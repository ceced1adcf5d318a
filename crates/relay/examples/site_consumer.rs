//! A consumer of one site's events that relies on what docs/nats.md ("What a consumer
//! can rely on") promises: each node's messages arrive in log order, so a position at or
//! below the last one applied is a message seen before (a redelivery, or a store
//! republished after it was wiped) and anything else is new.
//!
//! ```text
//! cargo run --release -p anju-relay --example site_consumer -- nats://127.0.0.1:4222 SC-LS-001
//! ```
//!
//! It prints one line per new event. `next` is kept in memory here; a real consumer
//! stores it together with what it did with the events (anju-insight keeps it in sled
//! with its read models), so that a restart neither repeats nor skips anything.

use std::collections::HashMap;

use anju_relay::EventMessage;
use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".to_string());
    let site = args.next().unwrap_or_else(|| "SC-LS-001".to_string());

    let client = async_nats::connect(url.as_str()).await?;
    let stream = jetstream::new(client).get_stream("ANJU_EVENTS").await?;
    // Site ids are subject tokens already (ASCII letters, digits, `-`, `_`).
    let name = format!("site-consumer-{site}");
    let consumer = stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: format!("anju.events.*.{site}.>"),
                ..Default::default()
            },
        )
        .await?;

    // node -> the position after the last event applied
    let mut next: HashMap<String, u64> = HashMap::new();
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let event = EventMessage::decode(&message.payload)?;
        let expected = next.entry(event.node.clone()).or_insert(0);
        if event.position < *expected {
            // Seen before: acknowledge, do nothing else.
            message.ack().await?;
            continue;
        }
        // New. With a filter on one site, the positions between belong to other sites.
        println!(
            "{} #{} {} {}",
            event.node, event.position, event.event_type, event.stream_id
        );
        *expected = event.position + 1;
        message.ack().await?;
    }
    Ok(())
}
