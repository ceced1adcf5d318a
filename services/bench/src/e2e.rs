//! `anju-bench e2e`: the whole service over gRPC. N concurrent clients submit requests
//! (each acknowledged only once durable in the log), then a mixed workload of
//! submissions, caseworker actions and status reads. Unless given `--server`, it starts
//! its own `anju-server` (the binary beside this one) on a temporary directory with
//! publishing off, and reports that process's peak memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anju_auth::{Claims, Role, Secret};
use anju_proto::v1::caseworker_service_client::CaseworkerServiceClient;
use anju_proto::v1::resident_service_client::ResidentServiceClient;
use anju_proto::v1::{
    AcceptRequestRequest, Applicant, ClaimRequestRequest, GetRequestStatusRequest,
    SubmitRequestRequest,
};
use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::sync::Mutex;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

#[derive(clap::Args)]
pub struct E2eArgs {
    /// A running server to measure (`http://host:port`); its secret must be given too.
    #[arg(long)]
    server: Option<String>,
    /// The server's token secret file (with `--server`).
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 256)]
    clients: usize,
    /// HTTP/2 connections the clients share.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Submissions in the submit-only run.
    #[arg(long, default_value_t = 200_000)]
    submissions: u64,
    /// Rounds of the mixed workload (each: submit, claim, accept, status read).
    #[arg(long, default_value_t = 20_000)]
    mixed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

const SITES: [&str; 4] = ["SC-LS-001", "SC-LS-002", "SC-BZ-001", "SC-GZ-003"];

/// An `anju-server` the benchmark started; killed when dropped.
pub(crate) struct SpawnedServer {
    pub(crate) child: Child,
    /// Its `/metrics` port.
    pub(crate) http_port: u16,
    /// The temporary data directory, when the benchmark made one.
    _data: Option<tempfile::TempDir>,
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to start an `anju-server` beside the benchmark.
pub(crate) struct ServerOptions<'a> {
    /// Where to publish; `None` publishes nothing.
    pub(crate) nats_url: Option<&'a str>,
    pub(crate) node_id: &'a str,
    /// Flags after the benchmark's own (later flags win).
    pub(crate) extra_args: Vec<String>,
    /// Where the server's log lines go.
    pub(crate) stderr: Stdio,
}

pub async fn run(args: E2eArgs) -> anyhow::Result<()> {
    let (address, secret, spawned) = match &args.server {
        Some(address) => {
            let file = args
                .secret_file
                .as_ref()
                .context("--server needs --secret-file")?;
            let secret = anju_auth::read_secret_file(file)
                .with_context(|| format!("reading {}", file.display()))?;
            (address.clone(), secret, None)
        }
        None => {
            let (address, secret, server) = spawn_server(None, "bench")?;
            (address, secret, Some(server))
        }
    };
    let channels = connect(&address, args.connections).await?;
    let tokens = Tokens::new(&secret, args.clients);

    let submit = submit_run(&channels, &tokens, args.clients, args.submissions).await?;
    eprintln!(
        "submit: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms ({} errors)",
        submit.per_sec, submit.p50_ms, submit.p99_ms, submit.errors
    );
    let mixed = mixed_run(&channels, &tokens, args.clients, args.mixed).await?;
    eprintln!(
        "mixed: {:.0} ops/s, p99 {:.2} ms ({} errors)",
        mixed.per_sec, mixed.p99_ms, mixed.errors
    );
    let peak_rss_mb = spawned
        .as_ref()
        .and_then(|server| peak_rss_mb(server.child.id()));

    if args.json {
        let mut report = serde_json::json!({
            "clients": args.clients,
            "submissions": args.submissions,
            "submits_per_sec": submit.per_sec.round(),
            "p50_ms": round2(submit.p50_ms),
            "p99_ms": round2(submit.p99_ms),
            "submit_errors": submit.errors,
            "mixed_ops_per_sec": mixed.per_sec.round(),
            "mixed_p99_ms": round2(mixed.p99_ms),
            "mixed_errors": mixed.errors,
        });
        if let Some(rss) = peak_rss_mb {
            report["server_peak_rss_mb"] = serde_json::json!(rss.round());
        }
        println!("{report}");
    } else {
        println!("| workload | clients | operations | per second | p50 ms | p99 ms | errors |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        println!(
            "| durable submissions | {} | {} | {:.0} | {:.2} | {:.2} | {} |",
            args.clients,
            args.submissions,
            submit.per_sec,
            submit.p50_ms,
            submit.p99_ms,
            submit.errors
        );
        println!(
            "| mixed (submit, claim, accept, status) | {} | {} | {:.0} | {:.2} | {:.2} | {} |",
            args.clients,
            args.mixed * 4,
            mixed.per_sec,
            mixed.p50_ms,
            mixed.p99_ms,
            mixed.errors
        );
        if let Some(rss) = peak_rss_mb {
            println!("\nserver peak RSS: {rss:.0} MB");
        }
    }
    Ok(())
}

pub(crate) fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Starts `anju-server` from beside this binary on free ports and a temporary directory,
/// publishing to `nats_url` as node `node_id` (or not publishing when `None`).
pub(crate) fn spawn_server(
    nats_url: Option<&str>,
    node_id: &str,
) -> anyhow::Result<(String, Secret, SpawnedServer)> {
    let data = tempfile::tempdir().context("making a temporary data directory")?;
    let options = ServerOptions {
        nats_url,
        node_id,
        extra_args: Vec::new(),
        stderr: Stdio::inherit(),
    };
    let (address, secret, mut server) = spawn_server_in(data.path(), options)?;
    server._data = Some(data);
    Ok((address, secret, server))
}

/// Starts `anju-server` from beside this binary on free ports over `data_dir` (kept when
/// the server is gone) and waits until it listens.
pub(crate) fn spawn_server_in(
    data_dir: &Path,
    options: ServerOptions<'_>,
) -> anyhow::Result<(String, Secret, SpawnedServer)> {
    let binary = std::env::current_exe()?.with_file_name("anju-server");
    anyhow::ensure!(
        binary.exists(),
        "{} not found: build it with `cargo build --release -p anju-server`, or pass --server",
        binary.display()
    );
    let port = free_port()?;
    let http_port = free_port()?;
    let child = Command::new(&binary)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--grpc-addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--http-addr")
        .arg(format!("127.0.0.1:{http_port}"))
        .arg("--nats-url")
        .arg(options.nats_url.unwrap_or("none"))
        .arg("--node-id")
        .arg(options.node_id)
        .arg("--concurrency-limit")
        .arg("4096")
        .arg("--log-filter")
        .arg("warn")
        // Every client reads statuses far faster than a resident at a kiosk would.
        .arg("--status-lookups-per-minute")
        .arg("1000000")
        .args(&options.extra_args)
        .stdout(Stdio::null())
        .stderr(options.stderr)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut server = SpawnedServer {
        child,
        http_port,
        _data: None,
    };
    let secret_path = data_dir.join(anju_auth::SECRET_FILE_NAME);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(secret_path.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()) {
        if let Ok(Some(status)) = server.child.try_wait() {
            anyhow::bail!(
                "anju-server on {} stopped at start: {status}",
                data_dir.display()
            );
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "anju-server did not start within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let secret =
        anju_auth::read_secret_file(&secret_path).context("reading the server's token secret")?;
    Ok((format!("http://127.0.0.1:{port}"), secret, server))
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) async fn connect(address: &str, connections: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::new();
    for _ in 0..connections.max(1) {
        let channel = Endpoint::from_shared(address.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {address}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Tokens for the clients: one resident account per client (status look-ups are
/// rate-limited per account, as a kiosk's would be) and one caseworker of every site.
pub(crate) struct Tokens {
    pub(crate) residents: Vec<MetadataValue<tonic::metadata::Ascii>>,
    pub(crate) caseworker: MetadataValue<tonic::metadata::Ascii>,
}

impl Tokens {
    pub(crate) fn new(secret: &Secret, clients: usize) -> Tokens {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let token = |subject: &str, role: Role, sites: Vec<String>| {
            let claims = Claims {
                sub: subject.to_string(),
                role,
                sites,
                categories: Vec::new(),
                exp: now + 3600,
                iat: now,
            };
            format!("Bearer {}", anju_auth::issue(secret, &claims))
                .parse()
                .expect("a token is ascii")
        };
        Tokens {
            residents: (0..clients.max(1))
                .map(|n| token(&format!("bench-resident-{n}"), Role::Resident, Vec::new()))
                .collect(),
            caseworker: token(
                "bench-caseworker",
                Role::Caseworker,
                SITES.iter().map(|s| s.to_string()).collect(),
            ),
        }
    }
}

pub(crate) fn with_token<T>(
    message: T,
    token: &MetadataValue<tonic::metadata::Ascii>,
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", token.clone());
    request
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

pub(crate) fn submission(run: &str) -> SubmitRequestRequest {
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let mut text_answers = BTreeMap::new();
    text_answers.insert("problem".to_string(), "漏水 leak".to_string());
    text_answers.insert(
        "location".to_string(),
        format!("{}栋{}单元{}", n % 30 + 1, n % 4 + 1, n % 900 + 101),
    );
    SubmitRequestRequest {
        idempotency_key: format!("bench-{run}-{n:012}"),
        service_code: "SQ-WEIXIU".to_string(),
        site_id: SITES[(n % SITES.len() as u64) as usize].to_string(),
        applicant: Some(Applicant {
            name: "王秀英".to_string(),
            phone: format!("139{:08}", n % 100_000_000),
            id_number: None,
        }),
        text_answers: text_answers.into_iter().collect(),
        ..SubmitRequestRequest::default()
    }
}

struct Outcome {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn outcome(histogram: &Histogram<u64>, operations: u64, elapsed: Duration, errors: u64) -> Outcome {
    Outcome {
        per_sec: operations as f64 / elapsed.as_secs_f64(),
        p50_ms: histogram.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: histogram.value_at_quantile(0.99) as f64 / 1000.0,
        errors,
    }
}

/// `clients` tasks share `total` submissions; latency per call in microseconds.
async fn submit_run(
    channels: &[Channel],
    tokens: &Tokens,
    clients: usize,
    total: u64,
) -> anyhow::Result<Outcome> {
    let remaining = Arc::new(AtomicU64::new(total));
    let errors = Arc::new(AtomicU64::new(0));
    let merged = Arc::new(Mutex::new(histogram()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let mut resident = ResidentServiceClient::new(channels[client % channels.len()].clone());
        let token = tokens.residents[client % tokens.residents.len()].clone();
        let (remaining, errors, merged) = (remaining.clone(), errors.clone(), merged.clone());
        tasks.spawn(async move {
            let mut local = histogram();
            while remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let call_started = Instant::now();
                match resident
                    .submit_request(with_token(submission("s"), &token))
                    .await
                {
                    Ok(_) => {
                        let _ = local.record(call_started.elapsed().as_micros() as u64);
                    }
                    Err(status) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("submit failed: {status}");
                        }
                    }
                }
            }
            merged
                .lock()
                .await
                .add(&local)
                .expect("histograms share bounds");
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.context("a client task panicked")?;
    }
    let elapsed = started.elapsed();
    let errors = errors.load(Ordering::Relaxed);
    let histogram = merged.lock().await;
    Ok(outcome(&histogram, total - errors, elapsed, errors))
}

/// Each round: a resident submits, a caseworker claims and accepts, the resident reads the
/// status at the acceptance's position (read-your-writes through the projections).
async fn mixed_run(
    channels: &[Channel],
    tokens: &Tokens,
    clients: usize,
    rounds: u64,
) -> anyhow::Result<Outcome> {
    let remaining = Arc::new(AtomicU64::new(rounds));
    let errors = Arc::new(AtomicU64::new(0));
    let merged = Arc::new(Mutex::new(histogram()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let channel = channels[client % channels.len()].clone();
        let mut resident = ResidentServiceClient::new(channel.clone());
        let mut caseworker = CaseworkerServiceClient::new(channel);
        let (resident_token, caseworker_token) = (
            tokens.residents[client % tokens.residents.len()].clone(),
            tokens.caseworker.clone(),
        );
        let (remaining, errors, merged) = (remaining.clone(), errors.clone(), merged.clone());
        tasks.spawn(async move {
            let mut local = histogram();
            let timed = |started: Instant, local: &mut Histogram<u64>| {
                let _ = local.record(started.elapsed().as_micros() as u64);
            };
            while remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let round = async {
                    let request = submission("m");
                    let phone = request
                        .applicant
                        .as_ref()
                        .map(|a| a.phone.clone())
                        .unwrap_or_default();
                    let call = Instant::now();
                    let submitted = resident
                        .submit_request(with_token(request, &resident_token))
                        .await?
                        .into_inner();
                    timed(call, &mut local);
                    let call = Instant::now();
                    caseworker
                        .claim_request(with_token(
                            ClaimRequestRequest {
                                request_id: submitted.request_id.clone(),
                                ..Default::default()
                            },
                            &caseworker_token,
                        ))
                        .await?;
                    timed(call, &mut local);
                    let call = Instant::now();
                    let accepted = caseworker
                        .accept_request(with_token(
                            AcceptRequestRequest {
                                request_id: submitted.request_id.clone(),
                                ..Default::default()
                            },
                            &caseworker_token,
                        ))
                        .await?
                        .into_inner();
                    timed(call, &mut local);
                    let call = Instant::now();
                    resident
                        .get_request_status(with_token(
                            GetRequestStatusRequest {
                                tracking_code: submitted.tracking_code,
                                phone_last4: phone[phone.len().saturating_sub(4)..].to_string(),
                                min_position: accepted.position,
                            },
                            &resident_token,
                        ))
                        .await?;
                    timed(call, &mut local);
                    Ok::<(), tonic::Status>(())
                };
                if let Err(status) = round.await {
                    if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("mixed round failed: {status}");
                    }
                }
            }
            merged
                .lock()
                .await
                .add(&local)
                .expect("histograms share bounds");
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.context("a client task panicked")?;
    }
    let elapsed = started.elapsed();
    let errors = errors.load(Ordering::Relaxed);
    let histogram = merged.lock().await;
    Ok(outcome(&histogram, (rounds - errors) * 4, elapsed, errors))
}

/// The peak resident set (VmHWM) of a process, in MB.
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
