//! Projection throughput: appends N `RequestSubmitted` events (one stream each, 64
//! concurrent writers) to a fresh log, then starts the projections and times the
//! catch-up; finally appends N more while the runner is live and times that too.
//!
//! `cargo run --release -p anju-projections --example project_bench -- 200000`

use anju_domain::*;
use anju_eventlog::{EventLog, ExpectedVersion, LogOptions, NewEvent};
use anju_projections::Projections;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

async fn append(log: &EventLog, from: u64, to: u64) {
    let writers = 512;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = from + w;
            while n < to {
                let (id, event) = submitted(n);
                let new = NewEvent::new(event.event_type(), event.to_json());
                log.append(&id.stream_name(), ExpectedVersion::NoStream, vec![new])
                    .await
                    .expect("append");
                n += writers;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp".into())).unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default())
        .await
        .unwrap();
    let t = Instant::now();
    append(&log, 0, n).await;
    let append_s = t.elapsed().as_secs_f64();
    println!(
        "appended {n} submissions in {append_s:.2}s ({:.0}/s)",
        n as f64 / append_s
    );

    let rss_before = rss_kib("VmRSS:");
    let (t, cpu) = (Instant::now(), cpu_seconds());
    let projections = Projections::start(log.clone(), Arc::new(Calendar::china_2026()))
        .await
        .unwrap();
    projections
        .wait_for(log.head_position() - 1, Duration::from_secs(3600))
        .await
        .unwrap();
    let catch_up = t.elapsed().as_secs_f64();
    let catch_up_cpu = cpu_seconds() - cpu;
    println!(
        "catch-up used {catch_up_cpu:.1} CPU-s (all threads) = {:.0} events per CPU-second",
        n as f64 / catch_up_cpu
    );
    println!(
        "catch-up: projected {n} events in {catch_up:.2}s = {:.0} events/s (rss {} MiB before, {} MiB after, peak {} MiB)",
        n as f64 / catch_up,
        rss_before / 1024,
        rss_kib("VmRSS:") / 1024,
        rss_kib("VmHWM:") / 1024
    );

    let t = Instant::now();
    append(&log, n, 2 * n).await;
    let appended = t.elapsed().as_secs_f64();
    projections
        .wait_for(log.head_position() - 1, Duration::from_secs(3600))
        .await
        .unwrap();
    let live = t.elapsed().as_secs_f64();
    println!(
        "live: appended {n} more in {appended:.2}s ({:.0}/s); projections caught up {:.2}s after the last append; overall {:.0} events/s",
        n as f64 / appended,
        live - appended,
        n as f64 / live
    );
    let t = Instant::now();
    let page = projections
        .queue(&anju_projections::QueueQuery::new(
            Scope::only([SiteId::new("site-3")]),
            Timestamp::cst(2026, 3, 20, 0, 0),
        ))
        .unwrap();
    println!("queue page of {} in {:?}", page.items.len(), t.elapsed());
    let t = Instant::now();
    let backlog = projections
        .backlog(
            &anju_projections::MetricsFilter::default(),
            Timestamp::cst(2026, 3, 20, 0, 0),
        )
        .unwrap();
    println!("backlog total {} in {:?}", backlog.total, t.elapsed());
    let t = Instant::now();
    let tp = projections
        .throughput(
            &anju_projections::MetricsFilter::default(),
            anju_projections::Bucket::Day,
        )
        .unwrap();
    println!("throughput {} day buckets in {:?}", tp.len(), t.elapsed());
    println!(
        "rss {} MiB, peak {} MiB",
        rss_kib("VmRSS:") / 1024,
        rss_kib("VmHWM:") / 1024
    );
    projections.stop().await;
    log.close().await.unwrap();
}
