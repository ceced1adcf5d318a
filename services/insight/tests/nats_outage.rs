//! nats-server killed under submission load and started again a few seconds later: a
//! real `anju-server` accepts every submission throughout, and once the relay has caught
//! up ANJU_EVENTS holds exactly the events of the node's log, none missing, none twice
//! (including any acknowledged messages the killed nats-server had not yet written).

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anju_testkit::NatsServer;
use support::*;

const NODE: &str = "node-outage";

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_go_on_while_nats_is_down_and_the_stream_catches_up_exactly() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("token-secret");
    write_secret(&secret_file);
    let node = Node::start(&dir.path().join("node"), &secret_file, NODE, &url).await;

    let stop = Arc::new(AtomicBool::new(false));
    // Writers stop when the test ends, also when an assertion fails before they are told.
    let _stop_writers = StopOnDrop(stop.clone());
    let accepted = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for writer in 0..8u64 {
        let actors = Actors::new(&node, "site-o");
        let (stop, accepted, failures) = (stop.clone(), accepted.clone(), failures.clone());
        writers.push(tokio::spawn(async move {
            let mut resident = actors.resident;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let request = repair("site-o", &format!("outage-{writer}"), n);
                let call = resident.submit_request(authed(request, &actors.resident_token));
                match tokio::time::timeout(Duration::from_secs(10), call).await {
                    Ok(Ok(_)) => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(status)) => failures.lock().unwrap().push(status.to_string()),
                    Err(_) => failures
                        .lock()
                        .unwrap()
                        .push("no answer within 10 s".to_string()),
                }
                if !failures.lock().unwrap().is_empty() {
                    // Give up at the first failure: it already fails the test.
                    return;
                }
                n += 1;
            }
        }));
    }
    let accepted_at = |accepted: &AtomicU64| accepted.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_outage = accepted_at(&accepted);
    nats.kill();
    wait_until("the relay to notice the outage", 30, || {
        metric(&node.metrics(), "anju_relay_connected") == Some(0)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during_outage = accepted_at(&accepted) - before_outage;
    let lag_during_outage = metric(&node.metrics(), "anju_relay_lag_events").unwrap();
    nats.restart();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }

    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} submissions failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(before_outage > 0, "nothing accepted before the outage");
    assert!(during_outage > 0, "nothing accepted while nats was down");
    assert!(
        lag_during_outage > 0,
        "the relay lag did not grow while nats was down"
    );

    wait_until(
        "the relay to publish the whole log after the outage",
        60,
        || {
            let metrics = node.metrics();
            metric(&metrics, "anju_relay_connected") == Some(1)
                && metric(&metrics, "anju_relay_lag_events") == Some(0)
        },
    )
    .await;
    let log = node.log_events().await;
    assert!(
        log.len() as u64 >= accepted_at(&accepted),
        "every accepted submission is in the log"
    );
    let stream = stream_events(&url, NODE).await;
    assert_stream_equals_log(&log, &stream);
}
