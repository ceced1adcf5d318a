//! `anju-bench log`: the event log's durable append rate against the disk's raw
//! fdatasync rate and against PostgreSQL doing the same appends.

use anju_eventlog::{EventLog, ExpectedVersion, LogOptions, NewEvent};
use anyhow::Context;
use hdrhistogram::Histogram;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

#[derive(clap::Args)]
pub struct LogArgs {
    /// Directory on the disk to measure (a temporary directory is made inside it).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Events appended by the 256-writer run (the 1-writer run appends a twentieth).
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Also run the 256-writer workload against this PostgreSQL.
    #[arg(long)]
    postgres: Option<String>,
    /// PostgreSQL connections the 256 PostgreSQL writers share.
    #[arg(long, default_value_t = 64)]
    postgres_connections: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

const PAYLOAD_BYTES: usize = 300;
const WRITERS: u64 = 256;

struct Run {
    appends_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

pub async fn run(args: LogArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix("anju-bench-log-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("making a temporary directory in {}", args.dir.display()))?;
    // The disk is shared, so its fdatasync rate is sampled before, between and after the
    // log runs, and the best sample is taken as the disk's limit (the strictest baseline).
    let mut samples = vec![fsync_rates(work.path())?];
    let one = log_run(
        &work.path().join("log-1"),
        1,
        (args.events / 20).clamp(1000, 20_000),
    )
    .await?;
    eprintln!("log, 1 writer: {:.0} appends/s", one.appends_per_sec);
    samples.push(fsync_rates(work.path())?);
    let many = log_run(&work.path().join("log-256"), WRITERS, args.events).await?;
    eprintln!(
        "log, 256 writers: {:.0} appends/s, p99 {:.2} ms",
        many.appends_per_sec, many.p99_ms
    );
    let rss_mb = peak_rss_mb();
    samples.push(fsync_rates(work.path())?);
    let fsync_append = samples.iter().map(|s| s.0).fold(0.0, f64::max);
    let fsync_overwrite = samples.iter().map(|s| s.1).fold(0.0, f64::max);
    let fsync_per_sec = fsync_append.max(fsync_overwrite);
    eprintln!("raw fdatasync/s samples (appending, overwriting): {samples:.0?}");

    let postgres = match &args.postgres {
        Some(url) => {
            let run = postgres_run(
                url,
                args.postgres_connections,
                (args.events / 4).max(WRITERS * 10),
            )
            .await?;
            eprintln!(
                "postgres, 256 writers: {:.0} appends/s",
                run.appends_per_sec
            );
            Some(run)
        }
        None => None,
    };

    let mut json = serde_json::json!({
        "fsync_per_sec": round(fsync_per_sec),
        "fsync_per_sec_appending": round(fsync_append),
        "fsync_per_sec_overwriting": round(fsync_overwrite),
        "fsync_samples": samples.iter().map(|s| [round(s.0), round(s.1)]).collect::<Vec<_>>(),
        "appends_per_sec_1": round(one.appends_per_sec),
        "p50_ms_1": round3(one.p50_ms),
        "p99_ms_1": round3(one.p99_ms),
        "appends_per_sec_256": round(many.appends_per_sec),
        "p50_ms_256": round3(many.p50_ms),
        "p99_ms_256": round3(many.p99_ms),
        "max_ms_256": round3(many.max_ms),
        "speedup_over_fsync_256": round3(many.appends_per_sec / fsync_per_sec),
        "events_256": args.events,
        "payload_bytes": PAYLOAD_BYTES,
        "peak_rss_mb_after_log_runs": rss_mb,
    });
    if let Some(pg) = &postgres {
        json["postgres_appends_per_sec_256"] = round(pg.appends_per_sec).into();
        json["postgres_p50_ms_256"] = round3(pg.p50_ms).into();
        json["postgres_p99_ms_256"] = round3(pg.p99_ms).into();
        json["speedup_over_postgres_256"] =
            round3(many.appends_per_sec / pg.appends_per_sec).into();
    }
    if args.json {
        println!("{json}");
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(out, "| measurement | appends/s | p50 ms | p99 ms |")?;
        writeln!(out, "|---|---:|---:|---:|")?;
        writeln!(
            out,
            "| raw write + fdatasync (best of append/overwrite) | {fsync_per_sec:.0} | | |"
        )?;
        writeln!(
            out,
            "| anju log, 1 writer | {:.0} | {:.3} | {:.3} |",
            one.appends_per_sec, one.p50_ms, one.p99_ms
        )?;
        writeln!(
            out,
            "| anju log, 256 writers | {:.0} | {:.3} | {:.3} |",
            many.appends_per_sec, many.p50_ms, many.p99_ms
        )?;
        if let Some(pg) = &postgres {
            writeln!(
                out,
                "| PostgreSQL, 256 writers | {:.0} | {:.3} | {:.3} |",
                pg.appends_per_sec, pg.p50_ms, pg.p99_ms
            )?;
        }
    }
    Ok(())
}

fn round(x: f64) -> f64 {
    x.round()
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Write + fdatasync rates of single 300-byte writes: appending to a growing file, and
/// overwriting a zero-filled one (no size change to persist).
fn fsync_rates(dir: &Path) -> anyhow::Result<(f64, f64)> {
    let measure = |preallocate: bool| -> anyhow::Result<f64> {
        let path = dir.join(if preallocate {
            "fsync-overwrite"
        } else {
            "fsync-append"
        });
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        let buf = [0x42u8; PAYLOAD_BYTES];
        if preallocate {
            file.write_all_at(&vec![0u8; 8 << 20], 0)?;
            file.sync_all()?;
        }
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < Duration::from_secs(1) {
            file.write_all_at(&buf, n * PAYLOAD_BYTES as u64)?;
            file.sync_data()?;
            n += 1;
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        std::fs::remove_file(&path)?;
        Ok(rate)
    };
    Ok((measure(false)?, measure(true)?))
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid histogram bounds")
}

fn summarize(events: u64, elapsed: Duration, latencies: &Histogram<u64>) -> Run {
    Run {
        appends_per_sec: events as f64 / elapsed.as_secs_f64(),
        p50_ms: latencies.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: latencies.value_at_quantile(0.99) as f64 / 1000.0,
        max_ms: latencies.max() as f64 / 1000.0,
    }
}

/// `writers` tasks each append single events to their own stream with an exact expected
/// version, until `events` appends are acknowledged in total.
async fn log_run(dir: &Path, writers: u64, events: u64) -> anyhow::Result<Run> {
    let log = EventLog::open(dir, LogOptions::default())
        .await
        .context("opening the log")?;
    let per_writer = events.div_ceil(writers);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("request-{}", uuid::Uuid::now_v7());
            let mut latencies = histogram();
            for version in 0..per_writer {
                let expected = if version == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(version - 1)
                };
                let event = NewEvent::new("BenchmarkEvent", vec![writer as u8; PAYLOAD_BYTES]);
                let sent = Instant::now();
                log.append(&stream, expected, vec![event]).await?;
                latencies.record(sent.elapsed().as_micros().max(1) as u64)?;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = histogram();
    for task in tasks {
        latencies.add(task.await??)?;
    }
    let elapsed = started.elapsed();
    let run = summarize(per_writer * writers, elapsed, &latencies);
    log.close().await.context("closing the log")?;
    Ok(run)
}

/// The same workload against PostgreSQL: one transaction per append that checks the
/// stream's current version and inserts under a unique (stream, version) key.
async fn postgres_run(url: &str, connections: usize, events: u64) -> anyhow::Result<Run> {
    let mut clients = Vec::new();
    for _ in 0..connections {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("postgres connection ended: {e}");
            }
        });
        clients.push(Arc::new(Mutex::new(client)));
    }
    {
        let setup = clients[0].lock().await;
        setup
            .batch_execute(
                "SET synchronous_commit = on;
                 DROP TABLE IF EXISTS anju_bench_events;
                 CREATE TABLE anju_bench_events (
                     position bigserial,
                     stream text NOT NULL,
                     version bigint NOT NULL,
                     event_id text NOT NULL UNIQUE,
                     event_type text NOT NULL,
                     recorded_at timestamptz NOT NULL DEFAULT now(),
                     payload bytea NOT NULL,
                     PRIMARY KEY (stream, version)
                 );",
            )
            .await
            .context("creating the benchmark table")?;
    }
    for client in &clients {
        client
            .lock()
            .await
            .batch_execute("SET synchronous_commit = on")
            .await?;
    }
    let per_writer = events.div_ceil(WRITERS);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let client = clients[writer as usize % clients.len()].clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("request-{}", uuid::Uuid::now_v7());
            let payload = vec![writer as u8; PAYLOAD_BYTES];
            let mut latencies = histogram();
            for version in 0..per_writer as i64 {
                let sent = Instant::now();
                let mut client = client.lock().await;
                let tx = client.transaction().await?;
                let row = tx.query_one("SELECT max(version) FROM anju_bench_events WHERE stream = $1", &[&stream]).await?;
                let current: Option<i64> = row.get(0);
                let expected = if version == 0 { None } else { Some(version - 1) };
                anyhow::ensure!(current == expected, "expected version {expected:?} but found {current:?}");
                tx.execute(
                    "INSERT INTO anju_bench_events (stream, version, event_id, event_type, payload) VALUES ($1, $2, $3, $4, $5)",
                    &[&stream, &version, &uuid::Uuid::now_v7().to_string(), &"BenchmarkEvent", &payload],
                )
                .await?;
                tx.commit().await?;
                drop(client);
                latencies.record(sent.elapsed().as_micros().max(1) as u64)?;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = histogram();
    for task in tasks {
        latencies.add(task.await??)?;
    }
    let run = summarize(per_writer * WRITERS, started.elapsed(), &latencies);
    clients[0]
        .lock()
        .await
        .batch_execute("DROP TABLE anju_bench_events")
        .await?;
    Ok(run)
}

/// The process's peak resident memory, from /proc (0 where unavailable).
fn peak_rss_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}
