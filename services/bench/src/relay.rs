//! `anju-bench relay`: how fast the relay publishes a backlog of the log to JetStream with
//! acknowledgements, against a nats-server with default settings and one with
//! `sync_interval: always`, each started by the benchmark on a free port; then the relay
//! lag while a spawned `anju-server` takes open-loop submissions at a fixed rate: the
//! time from an event's commit (`recorded_at_micros` in the message) to its arrival at a
//! JetStream consumer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anju_eventlog::{EventLog, ExpectedVersion, LogOptions, Metadata, NewEvent};
use anju_relay::RelayConfig;
use anju_testkit::NatsServer;
use anyhow::Context;

mod live;

#[derive(clap::Args)]
pub struct RelayArgs {
    /// Events in the backlog the relay publishes.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Publishes awaiting acknowledgement at once.
    #[arg(long, default_value_t = 4096)]
    in_flight: usize,
    /// Publish in JetStream fast-ingest batches (the relay's default; false measures the
    /// per-message path, one acknowledgement per event).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    fast_batch: bool,
    /// Fast batches: flow acknowledgements outstanding before the relay waits (the relay's
    /// default is 3; the in-flight limit applies as well).
    #[arg(long, default_value_t = RelayConfig::new("", "").fast_batch_outstanding_acks)]
    fast_outstanding_acks: u16,
    /// Also measure against a nats-server with `sync_interval: always`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    sync_always: bool,
    /// Live run: submissions per second offered to a spawned anju-server (open loop, each
    /// on its own schedule whatever the answers' speed); 0 skips the live run.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Live run: how long submissions are offered, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Live run: submissions awaiting their answer at once; a submission due while this
    /// many are outstanding is skipped and counted.
    #[arg(long, default_value_t = 4096)]
    max_outstanding: usize,
    /// Live run: a running nats-server to publish to (else one is started).
    #[arg(long)]
    nats_url: Option<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

const EVENTS_PER_STREAM: u64 = 8;
const SITES: [&str; 4] = ["SC-LS-001", "SC-LS-002", "SC-BZ-001", "SC-GZ-003"];

pub async fn run(args: RelayArgs) -> anyhow::Result<()> {
    let backlog = if args.events > 0 {
        Some(backlog_run(&args).await?)
    } else {
        None
    };
    let live = if args.rate > 0 {
        Some(live::run(&args).await?)
    } else {
        None
    };

    if args.json {
        let mut report = serde_json::json!({});
        if let Some((default_rate, always_rate)) = backlog {
            report["events"] = serde_json::json!(args.events);
            report["in_flight"] = serde_json::json!(args.in_flight);
            report["fast_batch"] = serde_json::json!(default_rate.fast_batching);
            report["relay_backlog_events_per_sec"] =
                serde_json::json!(default_rate.events_per_sec.round());
            report["acknowledgements_per_event"] =
                serde_json::json!(default_rate.acknowledgements_per_event);
            if let Some(rate) = always_rate {
                report["relay_backlog_events_per_sec_sync_always"] =
                    serde_json::json!(rate.events_per_sec.round());
                report["acknowledgements_per_event_sync_always"] =
                    serde_json::json!(rate.acknowledgements_per_event);
            }
        }
        if let Some(live) = &live {
            report["live"] = live.json();
        }
        println!("{report}");
    } else {
        if let Some((default_rate, always_rate)) = backlog {
            println!(
                "| nats-server | backlog | fast batches | published with acks | acks per event |"
            );
            println!("| --- | ---: | --- | ---: | ---: |");
            for (label, run) in [
                ("default sync_interval", Some(default_rate)),
                ("sync_interval: always", always_rate),
            ] {
                if let Some(run) = run {
                    println!(
                        "| {label} | {} | {} | {:.0} events/s | {:.4} |",
                        args.events,
                        if run.fast_batching { "yes" } else { "no" },
                        run.events_per_sec,
                        run.acknowledgements_per_event
                    );
                }
            }
        }
        if let Some(live) = &live {
            if backlog.is_some() {
                println!();
            }
            live.print_table();
        }
    }
    Ok(())
}

/// One backlog run's outcome.
#[derive(Clone, Copy)]
struct BacklogRun {
    events_per_sec: f64,
    /// JetStream's acknowledgement messages per published event.
    acknowledgements_per_event: f64,
    /// The relay published in fast-ingest batches.
    fast_batching: bool,
}

/// The backlog runs: events/s with the default sync interval and, when asked, with
/// `sync_interval: always`.
async fn backlog_run(args: &RelayArgs) -> anyhow::Result<(BacklogRun, Option<BacklogRun>)> {
    let work = tempfile::tempdir().context("making a temporary directory")?;
    let log = EventLog::open(work.path().join("log"), LogOptions::default())
        .await
        .context("opening the log")?;
    let started = Instant::now();
    fill_backlog(&log, args.events).await?;
    eprintln!(
        "backlog of {} events written in {:.1} s",
        args.events,
        started.elapsed().as_secs_f64()
    );

    let read_rate = read_backlog(&log).await?;
    eprintln!("log subscription alone (read and encode, no publishing): {read_rate:.0} events/s");
    let default_rate = publish_backlog(&log, NatsServer::start(), args, "default").await?;
    eprintln!(
        "sync_interval default: {:.0} events/s",
        default_rate.events_per_sec
    );
    let always_rate = if args.sync_always {
        let rate = publish_backlog(
            &log,
            NatsServer::start_with_jetstream_settings("sync_interval: always"),
            args,
            "always",
        )
        .await?;
        eprintln!("sync_interval always: {:.0} events/s", rate.events_per_sec);
        Some(rate)
    } else {
        None
    };
    log.close().await.context("closing the log")?;
    Ok((default_rate, always_rate))
}

/// Appends `events` request events of about 300 bytes, several per request stream, the way
/// the service writes them (a submission, then the caseworker's steps).
async fn fill_backlog(log: &EventLog, events: u64) -> anyhow::Result<()> {
    let streams = events.div_ceil(EVENTS_PER_STREAM);
    let mut tasks = tokio::task::JoinSet::new();
    let workers = 64u64;
    for worker in 0..workers {
        let log = log.clone();
        tasks.spawn(async move {
            let mut stream_number = worker;
            while stream_number < streams {
                let stream = format!(
                    "request-{}",
                    uuid::Uuid::from_u128(stream_number as u128 + 1)
                );
                let site = SITES[(stream_number % SITES.len() as u64) as usize];
                let count = EVENTS_PER_STREAM.min(events - stream_number * EVENTS_PER_STREAM);
                let batch = (0..count)
                    .map(|version| NewEvent {
                        metadata: Metadata {
                            actor: "caseworker:bench".to_string(),
                            ..Metadata::default()
                        },
                        ..NewEvent::new(
                            if version == 0 {
                                "RequestSubmitted"
                            } else {
                                "NoteAdded"
                            },
                            payload(site, stream_number, version),
                        )
                    })
                    .collect();
                log.append(&stream, ExpectedVersion::NoStream, batch)
                    .await?;
                stream_number += workers;
            }
            anyhow::Ok(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.context("backlog writer panicked")??;
    }
    anyhow::ensure!(
        log.head_position() == events,
        "backlog holds {} events, wanted {events}",
        log.head_position()
    );
    Ok(())
}

fn payload(site: &str, stream: u64, version: u64) -> Vec<u8> {
    let text = format!(
        "{{\"type\":\"{}\",\"site\":\"{site}\",\"category\":\"community\",\"by\":\"cw-{}\",\"text\":\"{}\",\"at\":{}}}",
        if version == 0 { "RequestSubmitted" } else { "NoteAdded" },
        stream % 97,
        "住户反映楼道灯不亮，已联系物业维修。".repeat(4),
        1_772_000_000_000u64 + stream * 1000 + version,
    );
    text.into_bytes()
}

/// The relay's own share of the work: reading the backlog through a subscription and
/// encoding each message, without NATS.
async fn read_backlog(log: &EventLog) -> anyhow::Result<f64> {
    let head = log.head_position();
    let started = Instant::now();
    let mut subscription = log.subscribe_all(0, anju_eventlog::Filter::default());
    let mut bytes = 0usize;
    while let Some(event) = subscription.next().await {
        let event = event?;
        bytes += anju_relay::encode_for_bench("bench", &event);
        if event.position + 1 == head {
            break;
        }
    }
    anyhow::ensure!(bytes > 0, "nothing encoded");
    Ok(head as f64 / started.elapsed().as_secs_f64())
}

/// Publishes the whole log from position 0 to a fresh nats-server.
async fn publish_backlog(
    log: &EventLog,
    nats: NatsServer,
    args: &RelayArgs,
    label: &str,
) -> anyhow::Result<BacklogRun> {
    let checkpoint = format!("bench-relay-{label}");
    log.set_checkpoint(&checkpoint, 0)
        .context("resetting the relay checkpoint")?;
    let mut config = RelayConfig::new(nats.url(), "bench");
    config.max_in_flight = args.in_flight;
    config.fast_batch = args.fast_batch;
    config.fast_batch_outstanding_acks = args.fast_outstanding_acks;
    config.checkpoint_name = checkpoint;
    let head = log.head_position();
    let nats_pid = child_pid("nats-server");
    let cpu_before = (
        cpu_seconds("self"),
        nats_pid.map(|pid| cpu_seconds(&pid.to_string())),
    );
    let started = Instant::now();
    let relay = anju_relay::start(log.clone(), config, Arc::new(anju_relay::route_from_json));
    let status = relay.status();
    let deadline = started + Duration::from_secs(600);
    // The rate of each tenth of the backlog, to see whether publishing slows as the
    // stream grows.
    let mut tenths = Vec::new();
    let mut tenth_started = (started, 0u64);
    while status.published_up_to() < head {
        anyhow::ensure!(
            Instant::now() < deadline,
            "relay stalled at {} of {head}: {:?}",
            status.published_up_to(),
            status.last_error()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        let published = status.published_up_to();
        if published >= (tenths.len() as u64 + 1) * head / 10 {
            let rate =
                (published - tenth_started.1) as f64 / tenth_started.0.elapsed().as_secs_f64();
            tenths.push(format!("{rate:.0}"));
            tenth_started = (Instant::now(), published);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "{label}: events/s by tenth of the backlog: {}",
        tenths.join(" ")
    );
    let relay_cpu = cpu_seconds("self") - cpu_before.0;
    let nats_cpu = nats_pid
        .zip(cpu_before.1)
        .map(|(pid, before)| cpu_seconds(&pid.to_string()) - before);
    eprintln!(
        "{label}: CPU per event: this process (relay) {:.1} µs, nats-server {} µs, over {elapsed:.1} s",
        relay_cpu * 1e6 / head as f64,
        nats_cpu.map_or("?".to_string(), |cpu| format!("{:.1}", cpu * 1e6 / head as f64)),
    );
    let run = BacklogRun {
        events_per_sec: head as f64 / elapsed,
        acknowledgements_per_event: status.acknowledgements() as f64 / head.max(1) as f64,
        fast_batching: status.fast_batching(),
    };
    eprintln!(
        "{label}: fast batches {}, {} acknowledgements ({:.4} per event)",
        run.fast_batching,
        status.acknowledgements(),
        run.acknowledgements_per_event
    );
    relay.stop().await;
    drop(nats);
    Ok(run)
}

/// User plus system CPU seconds of a process so far (`/proc/<pid>/stat`, in the kernel's
/// fixed 100 ticks a second); 0 when it cannot be read.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name is in parentheses and may hold spaces: fields count from after it.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The newest child of this process with that command name (the nats-server the run
/// started), to measure its CPU.
fn child_pid(name: &str) -> Option<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')').is_some_and(|(head, rest)| {
                    head.ends_with(&format!("({name}"))
                        && rest.split_whitespace().nth(1) == Some(me.as_str())
                })
            })
        })
        .max()
}
