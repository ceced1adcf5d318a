//! Crash test: a child process appends from many tasks and records every acknowledged
//! event; the parent kills it with SIGKILL at random moments, reopens the log and checks
//! that every acknowledged event is there, once, with contiguous positions and versions,
//! and that `verify` passes. The child is this test binary run again with an env var.

use anju_eventlog::{Direction, EventLog, ExpectedVersion, Filter, LogOptions, NewEvent};
use rand::Rng;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const CHILD_DIR: &str = "ANJU_CRASH_CHILD_DIR";
const ROUNDS: usize = 32;
const TASKS: usize = 16;

fn options() -> LogOptions {
    // Small segments so crashes also land around segment rollover.
    LogOptions {
        segment_size: 256 * 1024,
        ..LogOptions::default()
    }
}

/// The child: appends until killed, writing one line per acknowledged event to `acks`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let log = EventLog::open(dir.join("log"), options())
            .await
            .expect("child opens the log");
        std::fs::write(dir.join("ready"), b"").unwrap();
        let acks = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("acks"))
            .unwrap();
        let acks = Arc::new(Mutex::new(acks));
        let run = Uuid::now_v7();
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let log = log.clone();
            let acks = acks.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    // Some streams are shared by tasks and use expected versions, so some
                    // appends are refused; others are private to this run and task.
                    let (stream, expected) = if task % 4 == 0 {
                        let stream = format!("shared-{}", i % 3);
                        let expected = log
                            .stream_version(&stream)
                            .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                        (stream, expected)
                    } else {
                        (
                            format!("request-{run}-{task}-{}", i % 5),
                            ExpectedVersion::Any,
                        )
                    };
                    let count = 1 + (i % 3) as usize;
                    let events: Vec<NewEvent> = (0..count)
                        .map(|k| {
                            NewEvent::new("CrashTested", format!("{task}-{i}-{k}").into_bytes())
                        })
                        .collect();
                    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
                    if let Ok(result) = log.append(&stream, expected, events).await {
                        let mut lines = String::new();
                        for (k, id) in ids.iter().enumerate() {
                            let version = result.stream_version + 1 + k as u64 - count as u64;
                            lines.push_str(&format!(
                                "{id} {} {stream} {version}\n",
                                result.first_position + k as u64
                            ));
                        }
                        acks.lock().unwrap().write_all(lines.as_bytes()).unwrap();
                    }
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}

struct Ack {
    id: Uuid,
    position: u64,
    stream: String,
    version: u64,
}

fn read_acks(path: &Path) -> Vec<Ack> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            if parts.len() != 4 {
                return None; // a line cut short by the kill
            }
            Some(Ack {
                id: parts[0].parse().ok()?,
                position: parts[1].parse().ok()?,
                stream: parts[2].to_string(),
                version: parts[3].parse().ok()?,
            })
        })
        .collect()
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rng = rand::thread_rng();
    let started = Instant::now();
    let mut last_head = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Mostly while appending; sometimes so early that the kill lands in open and recovery.
        let ready = dir.path().join("ready");
        let _ = std::fs::remove_file(&ready);
        let delay = if round % 8 == 7 {
            rng.gen_range(1..30)
        } else {
            let waiting = Instant::now();
            while !ready.exists() && waiting.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(2));
            }
            rng.gen_range(20..400)
        };
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap();
        child.wait().unwrap();

        let acks = read_acks(&dir.path().join("acks"));
        let opening = Instant::now();
        let head = runtime.block_on(check(&dir.path().join("log"), &acks));
        let checked_in = opening.elapsed();
        assert!(
            head >= last_head,
            "round {round}: the log shrank from {last_head} to {head}"
        );
        eprintln!("round {round}: killed after {delay} ms; {head} events, {} acknowledged; checked in {checked_in:?}", acks.len());
        last_head = head;
    }
    assert!(
        last_head > 1000,
        "the children should have appended a fair amount, got {last_head}"
    );
    eprintln!("{ROUNDS} kill/reopen rounds in {:?}", started.elapsed());
}

async fn check(dir: &Path, acks: &[Ack]) -> u64 {
    let log = EventLog::open(dir, options())
        .await
        .expect("log reopens after SIGKILL");
    let head = log.head_position();
    let mut by_position = HashMap::new();
    let mut from = 0;
    let mut versions: HashMap<String, u64> = HashMap::new();
    loop {
        let batch = log
            .read_all(from, Direction::Forwards, &Filter::all(), 4096)
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        for event in batch {
            assert_eq!(event.position, from, "positions must be contiguous");
            let want = versions.get(&event.stream_id).map_or(0, |v| v + 1);
            assert_eq!(
                event.stream_version, want,
                "versions of {} must be contiguous",
                event.stream_id
            );
            versions.insert(event.stream_id.clone(), event.stream_version);
            by_position.insert(
                event.position,
                (event.event_id, event.stream_id, event.stream_version),
            );
            from += 1;
        }
    }
    assert_eq!(from, head);
    for ack in acks {
        let stored = by_position
            .get(&ack.position)
            .unwrap_or_else(|| panic!("acknowledged position {} is lost", ack.position));
        assert_eq!(
            stored,
            &(ack.id, ack.stream.clone(), ack.version),
            "acknowledged event at {} differs",
            ack.position
        );
    }
    let report = log.verify().await.unwrap();
    assert!(report.is_ok(), "verify: {:?}", report.problems);
    log.close().await.unwrap();
    head
}
