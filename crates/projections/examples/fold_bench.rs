//! The fold alone, without the log: decode N `RequestSubmitted` events from JSON and
//! apply them to `ReadModels` on a fresh sled store in chunks, timing each part.
//!
//! `cargo run --release -p anju-projections --example fold_bench -- 200000 512 [memory]`
//! (the third argument picks the memory backend instead of sled; with `KEEP_SNAPSHOT=FILE`
//! the memory backend's snapshot is copied to FILE, to look at what each part holds).

use anju_domain::*;
use anju_projections::{Input, ReadModels};
use std::sync::Arc;
use std::time::Instant;

/// User plus system CPU seconds of the whole process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

static CALENDAR: std::sync::LazyLock<Calendar> = std::sync::LazyLock::new(Calendar::china_2026);

fn submitted(n: u64) -> (RequestId, Event) {
    let id = RequestId(uuid::Uuid::from_u128(
        0x0190_0000_0000_7000_8000_0000_0000_0000 + n as u128,
    ));
    let at = Timestamp(Timestamp::cst(2026, 3, 2, 9, 0).0 + (n as i64 % 1_000_000) * 1_000);
    let mut answers = FormAnswers::new();
    answers.insert("problem".into(), Answer::Text("漏水 leak".into()));
    answers.insert("location".into(), Answer::Text("3栋2单元501".into()));
    let event = Event::RequestSubmitted {
        request_id: id,
        tracking_code: TrackingCode::from_random_bytes(
            (n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes(),
        ),
        site: SiteId::new(format!("site-{}", n % 20)),
        category: Category::Community,
        service_code: ServiceCode::parse("SQ-WEIXIU").unwrap(),
        terms: ServiceTerms {
            version: 1,
            approval_levels: 0,
            promised_days: 3,
            statutory_days: 5,
            steps: vec!["inspect".into(), "repair".into(), "check".into()],
        },
        answers,
        applicant: Applicant {
            resident_id: ActorId::new(format!("res-{n}")),
            display_name: "王秀英".into(),
            phone_last4: "0427".into(),
            sealed_contact: "sealed:v1:0123456789abcdef0123456789abcdef".into(),
            id_number_digests: Vec::new(),
        },
        submitted_by: ActorId::new(format!("res-{n}")),
        on_behalf_of: None,
        at,
        intake_deadline: CALENDAR.add_working_days(at, 5),
        materials: Default::default(),
    };
    (id, event)
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let chunk: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2048);
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp".into())).unwrap();
    let memory = std::env::args().nth(3).as_deref() == Some("memory");
    let db = sled::Config::new()
        .path(dir.path().join("sled"))
        .cache_capacity(64 << 20)
        .open()
        .unwrap();
    // The memory backend folds views from a log; the benchmark's submissions are the
    // first event of their requests, so the (empty) log is never read.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let log = runtime
        .block_on(anju_eventlog::EventLog::open(
            dir.path().join("log"),
            Default::default(),
        ))
        .unwrap();
    let models = if memory {
        ReadModels::open_memory(
            log.clone(),
            Arc::new(Calendar::china_2026()),
            dir.path().join("projections.snapshot"),
        )
        .unwrap()
    } else {
        ReadModels::open(&db, Arc::new(Calendar::china_2026())).unwrap()
    };
    models.ensure_version().unwrap();
    let mut decode = 0.0;
    let mut apply = 0.0;
    let mut position = 0u64;
    let mut cpu = 0.0;
    while position < n {
        let end = (position + chunk as u64).min(n);
        let records: Vec<(String, String, Vec<u8>)> = (position..end)
            .map(|i| {
                let (id, e) = submitted(i);
                (id.stream_name(), e.event_type().to_string(), e.to_json())
            })
            .collect();
        let (t, c) = (Instant::now(), cpu_seconds());
        let events: Vec<Option<Event>> = records
            .iter()
            .map(|(_, t, p)| Event::from_json(t, 1, p).ok())
            .collect();
        decode += t.elapsed().as_secs_f64();
        let inputs: Vec<Input<'_>> = records
            .iter()
            .zip(&events)
            .enumerate()
            .map(|(k, ((s, t, _), e))| Input {
                stream_id: s,
                stream_version: 0,
                position: position + k as u64,
                event_type: t,
                event: e.as_ref(),
            })
            .collect();
        let t = Instant::now();
        models.apply_all(&inputs, Some(end)).unwrap();
        apply += t.elapsed().as_secs_f64();
        cpu += cpu_seconds() - c;
        position = end;
    }
    if memory {
        for part in models.memory_footprint() {
            if part.entries > 0 {
                println!(
                    "{}: {} entries in {} pages, {:.1} MiB of entries, {:.1} MiB allocated",
                    part.part,
                    part.entries,
                    part.pages,
                    part.used_bytes as f64 / 1048576.0,
                    part.allocated_bytes as f64 / 1048576.0
                );
            }
        }
        let (t, c) = (Instant::now(), cpu_seconds());
        models.save_snapshot().unwrap();
        if let Ok(keep) = std::env::var("KEEP_SNAPSHOT") {
            std::fs::copy(dir.path().join("projections.snapshot"), keep).unwrap();
        }
        let size = std::fs::metadata(dir.path().join("projections.snapshot"))
            .map(|m| m.len())
            .unwrap_or(0);
        println!(
            "snapshot: {:.2}s wall, {:.2} CPU-s, {} MiB",
            t.elapsed().as_secs_f64(),
            cpu_seconds() - c,
            size >> 20
        );
    }
    println!(
        "{n} events: {cpu:.1} CPU-s for decode+apply = {:.0} events per CPU-second",
        n as f64 / cpu
    );
    println!(
        "{n} events, chunks of {chunk}: decode {decode:.2}s ({:.0}/s), apply {apply:.2}s ({:.0}/s), together {:.0}/s; rss {} MiB, peak {} MiB",
        n as f64 / decode,
        n as f64 / apply,
        n as f64 / (decode + apply),
        rss_kib("VmRSS:") / 1024,
        rss_kib("VmHWM:") / 1024
    );
}
