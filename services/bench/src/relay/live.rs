//! The live run of `anju-bench relay`: a spawned `anju-server` publishing to NATS takes
//! open-loop submissions at `--rate` for `--seconds`, while an ordered JetStream consumer
//! receives the node's events. Each event's relay lag is its arrival time at the consumer
//! minus its commit time (`recorded_at_micros` of the message); both clocks are this
//! machine's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anju_proto::v1::resident_service_client::ResidentServiceClient;
use anju_testkit::NatsServer;
use anyhow::Context;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use tokio::sync::{Mutex, Semaphore};

use super::RelayArgs;
use crate::e2e::{self, round2};

/// What the live run measured.
pub struct LiveOutcome {
    rate: u64,
    seconds: u64,
    offered: u64,
    accepted: u64,
    errors: u64,
    skipped: u64,
    submits_per_sec: f64,
    submit_p99_ms: f64,
    events: u64,
    events_per_sec: f64,
    lag_p50_ms: f64,
    lag_p99_ms: f64,
    lag_max_ms: f64,
}

impl LiveOutcome {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "target_submits_per_sec": self.rate,
            "seconds": self.seconds,
            "offered": self.offered,
            "accepted": self.accepted,
            "submit_errors": self.errors,
            "skipped_outstanding_limit": self.skipped,
            "submits_per_sec": self.submits_per_sec.round(),
            "submit_p99_ms": round2(self.submit_p99_ms),
            "events_received": self.events,
            "events_per_sec": self.events_per_sec.round(),
            "relay_lag_p50_ms": round2(self.lag_p50_ms),
            "relay_lag_p99_ms": round2(self.lag_p99_ms),
            "relay_lag_max_ms": round2(self.lag_max_ms),
        })
    }

    pub fn print_table(&self) {
        println!("| target submissions/s | achieved submissions/s | submit p99 ms | events published and received/s | relay lag p50 ms | relay lag p99 ms | max ms | errors | skipped |");
        println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        println!(
            "| {} | {:.0} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} |",
            self.rate,
            self.submits_per_sec,
            self.submit_p99_ms,
            self.events_per_sec,
            self.lag_p50_ms,
            self.lag_p99_ms,
            self.lag_max_ms,
            self.errors,
            self.skipped
        );
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

pub async fn run(args: &RelayArgs) -> anyhow::Result<LiveOutcome> {
    let started_nats = match &args.nats_url {
        Some(_) => None,
        None => Some(NatsServer::start()),
    };
    let nats_url = args
        .nats_url
        .clone()
        .or_else(|| started_nats.as_ref().map(NatsServer::url))
        .expect("a nats url");
    // A node id of its own, so a stream kept from earlier runs holds no positions of it.
    let node_id = format!("bench-{}-{}", std::process::id(), now_micros() / 1_000_000);
    let (address, secret, server) = e2e::spawn_server(Some(&nats_url), &node_id)?;
    let channels = e2e::connect(&address, 8).await?;
    let tokens = e2e::Tokens::new(&secret, 256);

    // The relay creates the stream when it connects; a consumer then follows the node's
    // subjects from whatever arrives next.
    let nats_address = anju_relay::NatsAddress::parse(&nats_url)?;
    let client = nats_address
        .connect(|options| options)
        .await
        .with_context(|| format!("connecting to {nats_address}"))?;
    let context = jetstream::new(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    let stream = loop {
        if let Ok(stream) = context.get_stream("ANJU_EVENTS").await {
            break stream;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the relay did not create ANJU_EVENTS within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let consumer = stream
        .create_consumer(consumer::push::OrderedConfig {
            deliver_subject: client.new_inbox(),
            filter_subject: format!("anju.events.{node_id}.>"),
            deliver_policy: consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .context("creating the measuring consumer")?;
    let mut messages = consumer.messages().await.context("consuming ANJU_EVENTS")?;
    let lags = Arc::new(Mutex::new(e2e::histogram()));
    let received = Arc::new(AtomicU64::new(0));
    let receiver = {
        let (lags, received) = (lags.clone(), received.clone());
        tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                let Ok(message) = message else { continue };
                let arrived = now_micros();
                if let Ok(body) = anju_relay::EventMessage::decode(&message.payload) {
                    let lag = (arrived - body.recorded_at_micros).max(1) as u64;
                    let _ = lags.lock().await.record(lag);
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    // Open loop: every millisecond, start the submissions that are due by now.
    let outstanding = Arc::new(Semaphore::new(args.max_outstanding));
    let (accepted, errors, skipped) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let latencies = Arc::new(Mutex::new(e2e::histogram()));
    let total = args.rate * args.seconds;
    let mut offered = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while offered < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * args.rate as f64) as u64).min(total);
        while offered < due {
            offered += 1;
            let Ok(permit) = outstanding.clone().try_acquire_owned() else {
                skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let mut resident =
                ResidentServiceClient::new(channels[offered as usize % channels.len()].clone());
            let token = tokens.residents[offered as usize % tokens.residents.len()].clone();
            let (accepted, errors, latencies) =
                (accepted.clone(), errors.clone(), latencies.clone());
            tasks.spawn(async move {
                let call = Instant::now();
                match resident
                    .submit_request(e2e::with_token(e2e::submission("live"), &token))
                    .await
                {
                    Ok(_) => {
                        let _ = latencies
                            .lock()
                            .await
                            .record(call.elapsed().as_micros() as u64);
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(status) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("submit failed: {status}");
                        }
                    }
                }
                drop(permit);
            });
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let submit_elapsed = started.elapsed();

    // Every committed event must reach the consumer before the figures are read: once
    // the relay has published everything, the node's last message names the log's head.
    wait_for_relay(server.http_port).await?;
    let last = stream
        .get_last_raw_message_by_subject(&format!("anju.events.{node_id}.>"))
        .await
        .context("reading the node's last message")?;
    let head = last
        .headers
        .get(anju_relay::HEADER_POSITION)
        .and_then(|value| value.as_str().parse::<u64>().ok())
        .context("the last message has no position header")?
        + 1;
    let drain_deadline = Instant::now() + Duration::from_secs(60);
    while received.load(Ordering::Relaxed) < head {
        anyhow::ensure!(
            Instant::now() < drain_deadline,
            "the consumer received {} of {head} events",
            received.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events_elapsed = started.elapsed();
    receiver.abort();
    drop(server);
    drop(started_nats);

    let lags = lags.lock().await;
    let latencies = latencies.lock().await;
    let accepted = accepted.load(Ordering::Relaxed);
    let events = received.load(Ordering::Relaxed);
    let outcome = LiveOutcome {
        rate: args.rate,
        seconds: args.seconds,
        offered,
        accepted,
        errors: errors.load(Ordering::Relaxed),
        skipped: skipped.load(Ordering::Relaxed),
        submits_per_sec: accepted as f64 / submit_elapsed.as_secs_f64(),
        submit_p99_ms: latencies.value_at_quantile(0.99) as f64 / 1000.0,
        events,
        events_per_sec: events as f64 / events_elapsed.as_secs_f64(),
        lag_p50_ms: lags.value_at_quantile(0.50) as f64 / 1000.0,
        lag_p99_ms: lags.value_at_quantile(0.99) as f64 / 1000.0,
        lag_max_ms: lags.max() as f64 / 1000.0,
    };
    eprintln!(
        "live: {:.0} submissions/s of {} offered/s, relay lag p50 {:.2} ms, p99 {:.2} ms ({} errors, {} skipped)",
        outcome.submits_per_sec, args.rate, outcome.lag_p50_ms, outcome.lag_p99_ms, outcome.errors, outcome.skipped
    );
    Ok(outcome)
}

/// Waits until the server's relay has nothing left to publish (its `/metrics`).
async fn wait_for_relay(http_port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = http_get(http_port, "/metrics").await.unwrap_or_default();
        let value = |name: &str| {
            text.lines().find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
        };
        if value("anju_relay_lag_events") == Some(0) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the relay did not catch up within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}
