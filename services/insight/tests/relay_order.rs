//! The stream keeps each node's log order through every fault (issue: the NATS stream
//! keeps each node's log order): twenty kill -9 / restarts of nats-server under
//! submission load, then a wiped JetStream store and an anju-server killed while NATS is
//! down. Each ends with `anju relay check --json` (the operators' check) showing nothing
//! missing, twice, out of order or mismatched, the stream read back in log order, and
//! anju-insight, reading throughout, never seeing a message ahead of a gap.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anju_auth::Role;
use anju_testkit::NatsServer;
use support::*;

/// Submitters running against one node until stopped (also when a test fails first).
struct Load {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(node: &Node, site: &str, key: &str, writers: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let writers = (0..writers)
            .map(|writer| {
                let actors = Actors::new(node, site);
                let (stop, accepted, failures) = (stop.clone(), accepted.clone(), failures.clone());
                let (site, key) = (site.to_string(), format!("{key}-{writer}"));
                tokio::spawn(async move {
                    let mut resident = actors.resident;
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let call = resident
                            .submit_request(authed(repair(&site, &key, n), &actors.resident_token));
                        match tokio::time::timeout(Duration::from_secs(10), call).await {
                            Ok(Ok(_)) => {
                                accepted.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(Err(status)) => {
                                failures.lock().unwrap().push(status.to_string());
                                return;
                            }
                            Err(_) => {
                                failures
                                    .lock()
                                    .unwrap()
                                    .push("no answer within 10 s".to_string());
                                return;
                            }
                        }
                        n += 1;
                    }
                })
            })
            .collect();
        Load {
            stop,
            accepted,
            failures,
            writers,
        }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Stops the writers; the submissions accepted. Fails the test on any failed one.
    async fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for writer in std::mem::take(&mut self.writers) {
            writer.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        assert!(
            failures.is_empty(),
            "{} submissions failed, e.g. {:?}",
            failures.len(),
            &failures[..failures.len().min(3)]
        );
        self.accepted()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Waits until at least `more` further submissions were accepted.
async fn accepted_grows(load: &Load, more: u64) {
    let target = load.accepted() + more;
    wait_until("submissions to be accepted", 30, || {
        load.accepted() >= target
    })
    .await;
}

async fn relay_connected(node: &Node) {
    wait_until("the relay to connect", 60, || {
        metric(&node.metrics(), "anju_relay_connected") == Some(1)
    })
    .await;
}

async fn relay_caught_up(node: &Node) {
    wait_until("the relay to publish the whole log", 90, || {
        let metrics = node.metrics();
        metric(&metrics, "anju_relay_connected") == Some(1)
            && metric(&metrics, "anju_relay_lag_events") == Some(0)
    })
    .await;
}

/// The `anju` CLI built beside `anju-insight`.
fn anju_binary() -> PathBuf {
    let beside = Path::new(env!("CARGO_BIN_EXE_anju-insight")).with_file_name("anju");
    assert!(
        beside.exists(),
        "{} is missing: build it with the same profile (`cargo build --release -p anju-cli`) \
         or run the whole suite (`./scripts/test`)",
        beside.display()
    );
    beside
}

/// `anju relay check --json` against the node: its exit code and report.
fn relay_check(node: &Node, nats_url: &str) -> (i32, serde_json::Value) {
    let admin = token(&node.secret(), Role::Admin, "admin-test", &["*"]);
    let output = Command::new(anju_binary())
        .args(["--server", &format!("http://127.0.0.1:{}", node.grpc_port)])
        .args(["--token", &admin, "--json", "relay", "check"])
        .args(["--nats-url", nats_url, "--node-id", &node.node_id])
        .env("XDG_CONFIG_HOME", "/nonexistent-anju-test-config")
        .env_remove("ANJU_PROFILE")
        .output()
        .expect("run anju relay check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|error| {
        panic!(
            "anju relay check printed no JSON report ({error}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), report)
}

/// The operators' check, the stream read back, and insight's view all agree that the
/// stream holds exactly the log, in log order.
async fn assert_in_log_order(node: &Node, nats_url: &str, insight: &InsightProcess) {
    relay_caught_up(node).await;
    let (code, report) = relay_check(node, nats_url);
    for count in ["missing", "duplicate", "out_of_order", "mismatched"] {
        assert_eq!(
            report[count], 0,
            "anju relay check counts {count}: {report:#}"
        );
    }
    assert_eq!(
        code, 0,
        "anju relay check exits 0 on a clean stream: {report:#}"
    );

    let log = node.log_events().await;
    assert_eq!(report["log_events"], log.len() as u64, "{report:#}");
    let stream = stream_events(nats_url, &node.node_id).await;
    let positions: Vec<u64> = stream.iter().map(|event| event.position).collect();
    let expected: Vec<u64> = (1..=log.len() as u64).collect();
    assert!(
        positions == expected,
        "the stream holds the node's messages out of log order, first difference at {:?}",
        positions
            .iter()
            .zip(&expected)
            .position(|(stored, wanted)| stored != wanted)
    );
    assert_stream_equals_log(&log, &stream);

    let node_id = node.node_id.clone();
    let head = log.len() as u64;
    wait_until("anju-insight to fold the whole log", 60, || {
        insight.node_positions().get(&node_id).copied() == Some(head)
    })
    .await;
    assert_eq!(
        metric(&insight.metrics(), "anju_insight_out_of_order_total"),
        Some(0),
        "anju-insight received a message ahead of a gap"
    );
}

/// A small deterministic generator for the fault timings; the seed is printed so that a
/// failing schedule can be replayed with ANJU_FAULT_SEED.
struct Schedule(u64);

impl Schedule {
    fn new() -> Schedule {
        let seed = std::env::var("ANJU_FAULT_SEED")
            .ok()
            .and_then(|seed| seed.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("fault schedule seed {seed} (replay with ANJU_FAULT_SEED={seed})");
        Schedule(seed | 1)
    }

    /// A duration between `low` and `high` milliseconds.
    fn millis(&mut self, low: u64, high: u64) -> Duration {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(low + self.0 % (high - low + 1))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nats_kills_under_load_leave_the_stream_in_log_order() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("token-secret");
    write_secret(&secret_file);
    let node = Node::start(&dir.path().join("node"), &secret_file, "node-order", &url).await;
    let insight = InsightProcess::start(&dir.path().join("insight"), &secret_file, &url).await;
    let mut schedule = Schedule::new();

    let load = Load::start(&node, "site-r", "order", 8);
    for round in 1..=20 {
        relay_connected(&node).await;
        // Kill at a random moment while submissions and publishing are in full flow.
        accepted_grows(&load, 20).await;
        tokio::time::sleep(schedule.millis(0, 400)).await;
        nats.kill();
        tokio::time::sleep(schedule.millis(100, 1200)).await;
        nats.restart();
        eprintln!("round {round}: {} submissions accepted", load.accepted());
    }
    let accepted = load.finish().await;
    assert!(accepted > 0);
    assert_in_log_order(&node, &url, &insight).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_store_and_a_server_killed_while_nats_is_down_leave_the_stream_in_log_order() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("token-secret");
    write_secret(&secret_file);
    let data_dir = dir.path().join("node");
    let node_id = "node-wiped";
    let mut node = Node::start(&data_dir, &secret_file, node_id, &url).await;
    let insight = InsightProcess::start(&dir.path().join("insight"), &secret_file, &url).await;

    // The whole store lost under load: the relay republishes the node's log from the
    // start, in order, while new submissions keep coming.
    let load = Load::start(&node, "site-w", "wiped", 8);
    relay_connected(&node).await;
    accepted_grows(&load, 200).await;
    nats.wipe_and_restart();
    accepted_grows(&load, 200).await;
    relay_connected(&node).await;
    accepted_grows(&load, 100).await;

    // NATS down, then anju-server killed with unpublished events in its log.
    nats.kill();
    wait_until("the relay to notice the outage", 30, || {
        metric(&node.metrics(), "anju_relay_connected") == Some(0)
    })
    .await;
    accepted_grows(&load, 200).await;
    let lag = metric(&node.metrics(), "anju_relay_lag_events").unwrap_or(0);
    assert!(lag > 0, "events were accepted while NATS was down");
    node.process.kill9();
    // The writers find the server gone; what they got acknowledged is in the log.
    let mut killed = load;
    killed.stop.store(true, Ordering::Relaxed);
    for writer in std::mem::take(&mut killed.writers) {
        writer.await.unwrap();
    }

    // The server comes back before NATS does, takes more work, then NATS returns.
    node = Node::start(&data_dir, &secret_file, node_id, &url).await;
    let load = Load::start(&node, "site-w", "after-kill", 4);
    accepted_grows(&load, 100).await;
    nats.restart();
    relay_connected(&node).await;
    accepted_grows(&load, 100).await;
    load.finish().await;
    assert_in_log_order(&node, &url, &insight).await;
}
