//! kill -9 of a real `anju-server` under submission load with publishing on: after a
//! restart on the same data directory, ANJU_EVENTS holds exactly the events of the
//! node's log (the same positions and event ids), none missing, none twice.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anju_testkit::NatsServer;
use support::*;

const NODE: &str = "node-kill9";

async fn relay_caught_up(node: &Node) {
    wait_until("the relay to publish the whole log", 60, || {
        let metrics = node.metrics();
        metric(&metrics, "anju_relay_connected") == Some(1)
            && metric(&metrics, "anju_relay_lag_events") == Some(0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill9_under_load_the_stream_holds_exactly_the_log() {
    let nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("token-secret");
    write_secret(&secret_file);
    let data_dir = dir.path().join("node");
    let mut node = Node::start(&data_dir, &secret_file, NODE, &url).await;

    let acknowledged = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for writer in 0..16u64 {
        let actors = Actors::new(&node, "site-k");
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            let mut resident = actors.resident;
            for n in 0.. {
                let request = repair("site-k", &format!("kill9-{writer}"), n);
                match resident
                    .submit_request(authed(request, &actors.resident_token))
                    .await
                {
                    Ok(_) => acknowledged.fetch_add(1, Ordering::Relaxed),
                    // The server is gone.
                    Err(_) => return,
                };
            }
        }));
    }
    // Kill while submissions and publishing are both in full flow.
    let started = Instant::now();
    while acknowledged.load(Ordering::Relaxed) < 300 && started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let published_before = metric(&node.metrics(), "anju_relay_lag_events");
    node.process.kill9();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.load(Ordering::Relaxed);
    assert!(
        acknowledged >= 300,
        "only {acknowledged} submissions acknowledged before the kill"
    );
    assert!(
        published_before.is_some(),
        "the relay was running before the kill"
    );

    let node = Node::start(&data_dir, &secret_file, NODE, &url).await;
    // A little more work after the restart, published after the repaired gap.
    let mut actors = Actors::new(&node, "site-k");
    for n in 0..20 {
        actors
            .resident
            .submit_request(authed(
                repair("site-k", "after-restart", n),
                &actors.resident_token,
            ))
            .await
            .expect("submit after the restart");
    }
    relay_caught_up(&node).await;
    let log = node.log_events().await;
    assert!(
        log.len() as u64 >= acknowledged + 20,
        "the log holds {} events, fewer than the {} acknowledged submissions",
        log.len(),
        acknowledged + 20
    );
    let stream = stream_events(&url, NODE).await;
    assert_stream_equals_log(&log, &stream);
}
