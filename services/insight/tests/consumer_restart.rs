//! anju-insight after a kill -9 with a batch in hand (issue 15, found item 5): the
//! durable consumer still holds messages delivered to the killed run and never
//! acknowledged. JetStream would redeliver them only after `ack_wait` (30 s), and until
//! then every later message arrived ahead of them and was refused and redelivered, again
//! and again (about 81,000 redeliveries once). The restarted run starts the consumer
//! again from its ack floor, so it catches up with no message out of order.

mod support;

use anju_testkit::NatsServer;
use async_nats::jetstream::consumer::PullConsumer;
use futures::StreamExt;
use support::*;

const NODE: &str = "node-restart";
const SITE: &str = "site-r";
const DURABLE: &str = "anju-insight";
/// What the killed run had in hand: delivered, not acknowledged.
const IN_HAND: usize = 50;

async fn submit(node: &Node, from: u64, count: u64) {
    let mut actors = Actors::new(node, SITE);
    for n in from..from + count {
        actors
            .resident
            .submit_request(authed(repair(SITE, "restart", n), &actors.resident_token))
            .await
            .expect("submitted");
    }
}

async fn wait_for_head(insight: &InsightProcess, node: &Node) {
    let head = node.log_events().await.len() as u64;
    wait_until("insight to reach the node's head", 90, || {
        insight.node_positions().get(NODE) == Some(&head)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_insight_takes_what_its_killed_run_left_unacknowledged_in_order() {
    let nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("token-secret");
    write_secret(&secret_file);
    let node = Node::start(&dir.path().join("node"), &secret_file, NODE, &url).await;
    submit(&node, 0, 20).await;
    let insight_dir = dir.path().join("insight");
    let mut insight = InsightProcess::start(&insight_dir, &secret_file, &url).await;
    wait_for_head(&insight, &node).await;
    insight.process.kill9();

    submit(&node, 20, 150).await;
    let head = node.log_events().await.len();
    wait_until("the relay to publish the whole log", 60, || {
        let metrics = node.metrics();
        metric(&metrics, "anju_relay_lag_events") == Some(0)
    })
    .await;
    // What a run killed with a batch in hand leaves behind.
    let client = async_nats::connect(&url).await.unwrap();
    let stream = async_nats::jetstream::new(client)
        .get_stream("ANJU_EVENTS")
        .await
        .unwrap();
    let consumer: PullConsumer = stream.get_consumer(DURABLE).await.unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(IN_HAND)
        .messages()
        .await
        .unwrap();
    let mut in_hand = 0;
    while let Some(message) = batch.next().await {
        message.unwrap();
        in_hand += 1;
    }
    assert_eq!(in_hand, IN_HAND);
    let info = stream.consumer_info(DURABLE).await.unwrap();
    assert_eq!(
        info.num_ack_pending, IN_HAND,
        "delivered, never acknowledged"
    );
    assert!(head > IN_HAND * 2, "more messages follow the ones in hand");

    let insight = InsightProcess::start(&insight_dir, &secret_file, &url).await;
    wait_for_head(&insight, &node).await;
    let metrics = insight.metrics();
    assert_eq!(
        metric(&metrics, "anju_insight_out_of_order_total"),
        Some(0),
        "no message redelivered for arriving ahead of the ones the killed run held"
    );
    let info = stream.consumer_info(DURABLE).await.unwrap();
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(
        info.num_redelivered, 0,
        "each message delivered to the new run once"
    );
}
