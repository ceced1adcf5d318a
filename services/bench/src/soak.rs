//! `anju-bench soak`: a fault campaign. Each round starts the real `anju-server` on a
//! data directory kept across rounds, checks that every write it acknowledged in earlier
//! rounds is in the log exactly once (and that `anju log verify` passes on what the
//! last kill left), drives mixed gRPC load, and kills the server with SIGKILL at a
//! random moment, or just as a log segment rolls over, or while the read models write
//! their snapshot. See docs/faults.md.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anju_auth::{Claims, Role};
use anju_proto::v1::caseworker_service_client::CaseworkerServiceClient;
use anju_proto::v1::event_log_service_client::EventLogServiceClient;
use anju_proto::v1::resident_service_client::ResidentServiceClient;
use anju_proto::v1::{
    AcceptRequestRequest, AddNoteRequest, ClaimRequestRequest, GetRequestStatusRequest,
    ReadAllRequest, RequestState, SubmitRequestRequest,
};
use anyhow::Context;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::e2e::{
    connect, spawn_server_in, submission, with_token, ServerOptions, SpawnedServer, Tokens,
};

#[derive(clap::Args)]
pub struct SoakArgs {
    /// Rounds to run (each: verify, start, check, load, kill -9).
    #[arg(long)]
    rounds: Option<u64>,
    /// Run for this long instead (or as well: whichever ends first), e.g. `40m`.
    #[arg(long)]
    duration: Option<String>,
    /// Where the data directories go; a failed round's directory is kept there
    /// [default: a new temporary directory, removed at the end when nothing failed].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Start a fresh data directory every this many rounds, so the check stays fast.
    #[arg(long, default_value_t = 25)]
    reset_every: u64,
    /// The server's `--segment-size`: small, so that load rolls segments over often.
    #[arg(long, default_value_t = 65_536)]
    segment_size: u64,
    /// The server's `--snapshot-interval`: short, so that snapshots are written often.
    #[arg(long, default_value = "100ms")]
    snapshot_interval: String,
    /// Concurrent clients of the load.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Load runs at least this long before a random kill, in milliseconds...
    #[arg(long, default_value_t = 200)]
    kill_after_min_ms: u64,
    /// ...and at most this long (a kill waiting for a roll-over or a snapshot waits
    /// twice as long before it gives up and kills anyway).
    #[arg(long, default_value_t = 1_200)]
    kill_after_max_ms: u64,
    /// Seed of the random choices (kill moments and kinds); the default is the clock.
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// The read models write their snapshot (`projections.snapshot`) to this file first,
/// sync it and rename it into place: while it exists, a snapshot is being written.
const SNAPSHOT_TEMPORARY_FILE: &str = "projections.tmp";

/// What a round's kill waited for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum KillAim {
    /// A random moment of the load.
    Random,
    /// A new segment file appearing.
    RollOver,
    /// The snapshot's temporary file appearing.
    Snapshot,
}

/// One acknowledged write: the log position and stream version the server answered.
#[derive(Clone, Debug)]
struct Ack {
    request: usize,
    position: u64,
    version: u64,
    event_type: &'static str,
    state: i32,
    round: u64,
}

/// One acknowledged submission, with what it takes to retry it and to look it up.
#[derive(Clone, Debug)]
struct Submitted {
    request_id: String,
    tracking_code: String,
    phone_last4: String,
    /// The resident client (and so the account) that submitted it.
    client: usize,
    call: SubmitRequestRequest,
    position: u64,
    round: u64,
}

/// Everything the server acknowledged on the current data directory.
#[derive(Default)]
struct Ledger {
    requests: Vec<Submitted>,
    acks: Vec<Ack>,
}

#[derive(Default)]
struct Summary {
    rounds: u64,
    data_dirs: u64,
    acknowledged: u64,
    ack_checks: u64,
    idempotent_retries: u64,
    status_checks: u64,
    verifies: u64,
    kills_random: u64,
    kills_aimed_roll_over: u64,
    kills_aimed_snapshot: u64,
    kills_during_roll_over: u64,
    kills_during_snapshot: u64,
    load_errors: u64,
    failures: Vec<String>,
}

/// A small xorshift generator: the campaign's choices need no more.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rounds.is_some() || args.duration.is_some(),
        "give --rounds N, --duration D, or both"
    );
    anyhow::ensure!(
        args.kill_after_min_ms <= args.kill_after_max_ms,
        "--kill-after-min-ms is above --kill-after-max-ms"
    );
    let duration = match &args.duration {
        Some(text) => {
            Some(anju_auth::parse_duration(text).map_err(|e| anyhow::anyhow!("--duration: {e}"))?)
        }
        None => None,
    };
    let (work_dir, temporary) = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            (dir.clone(), None)
        }
        None => {
            let dir = tempfile::Builder::new()
                .prefix("anju-soak-")
                .tempdir()
                .context("making a work directory")?;
            (dir.path().to_path_buf(), Some(dir))
        }
    };
    let cli = std::env::current_exe()?.with_file_name("anju");
    anyhow::ensure!(
        cli.exists(),
        "{} not found: build it with `cargo build --release -p anju-cli`",
        cli.display()
    );
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let mut random = Random(seed | 1);
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut epoch: Option<Epoch> = None;
    let mut round = 0u64;
    loop {
        let out_of_rounds = args.rounds.is_some_and(|rounds| round >= rounds);
        let out_of_time = duration.is_some_and(|d| started.elapsed() >= d);
        if out_of_rounds || out_of_time {
            break;
        }
        round += 1;
        let mut current = match epoch.take() {
            Some(current) => current,
            None => {
                summary.data_dirs += 1;
                Epoch::new(&work_dir, summary.data_dirs)?
            }
        };
        let result =
            match run_round(&args, &cli, &mut current, round, &mut random, &mut summary).await {
                // A directory's last kill is checked too before a fresh one is started.
                Ok(()) if current.rounds >= args.reset_every => {
                    final_check(&args, &cli, &mut current, round, &mut summary)
                        .await
                        .map(|()| None)
                }
                Ok(()) => Ok(Some(())),
                Err(failure) => Err(failure),
            };
        match result {
            Ok(Some(())) => epoch = Some(current),
            Ok(None) => current.discard(),
            Err(failure) => {
                let kept = current.keep(round);
                let text = format!(
                    "round {round}: {failure:#} (data directory kept at {})",
                    kept.display()
                );
                eprintln!("FAILURE {text}");
                summary.failures.push(text);
            }
        }
        summary.rounds = round;
        if !args.json && round.is_multiple_of(50) {
            eprintln!(
                "{round} rounds, {} acknowledged writes, {} failures, {:.0} s",
                summary.acknowledged,
                summary.failures.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    // What the last kill left is checked too, then the directory is closed down.
    if let Some(mut last) = epoch.take() {
        match final_check(&args, &cli, &mut last, round, &mut summary).await {
            Ok(()) => last.discard(),
            Err(failure) => {
                let kept = last.keep(round);
                let text = format!(
                    "after round {round}: {failure:#} (data directory kept at {})",
                    kept.display()
                );
                eprintln!("FAILURE {text}");
                summary.failures.push(text);
            }
        }
    }
    let elapsed = started.elapsed();
    print_summary(&args, &summary, seed, elapsed, &work_dir);
    if summary.failures.is_empty() {
        drop(temporary);
        Ok(())
    } else {
        if let Some(dir) = temporary {
            // Keep the failed data directories for inspection.
            let _ = dir.keep();
        }
        anyhow::bail!(
            "{} of {} rounds failed",
            summary.failures.len(),
            summary.rounds
        )
    }
}

/// One data directory and what was acknowledged on it.
struct Epoch {
    dir: PathBuf,
    rounds: u64,
    ledger: Arc<Mutex<Ledger>>,
    /// Whether a server was ever killed on it (then `anju log verify` runs before a start).
    killed: bool,
}

impl Epoch {
    fn new(work_dir: &Path, number: u64) -> anyhow::Result<Epoch> {
        let dir = work_dir.join(format!("data-{number:05}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Epoch {
            dir,
            rounds: 0,
            ledger: Arc::default(),
            killed: false,
        })
    }

    fn server_log(&self) -> PathBuf {
        self.dir.with_extension("server.log")
    }

    fn discard(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(self.server_log());
    }

    /// Renames the directory (and the server's log beside it) so that it is kept.
    fn keep(self, round: u64) -> PathBuf {
        let kept = self.dir.with_file_name(format!("failed-round-{round:05}"));
        if std::fs::rename(&self.dir, &kept).is_err() {
            return self.dir;
        }
        let _ = std::fs::rename(self.server_log(), kept.with_extension("server.log"));
        kept
    }
}

async fn run_round(
    args: &SoakArgs,
    cli: &Path,
    epoch: &mut Epoch,
    round: u64,
    random: &mut Random,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    epoch.rounds += 1;
    if epoch.killed {
        verify(cli, &epoch.dir)?;
        summary.verifies += 1;
    }
    let mut server = start(args, epoch)?;
    let channel = ready(&mut server).await?;
    check(&server, &channel, epoch, round, summary).await?;

    let aim = match random.below(4) {
        0 => KillAim::RollOver,
        1 => KillAim::Snapshot,
        _ => KillAim::Random,
    };
    let span = args.kill_after_max_ms - args.kill_after_min_ms;
    let kill_after = Duration::from_millis(args.kill_after_min_ms + random.below(span + 1));
    let give_up = Duration::from_millis(args.kill_after_max_ms * 2);

    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let channels = connect(&server.address, 2).await?;
    let mut load = tokio::task::JoinSet::new();
    for client in 0..args.clients {
        let worker = Worker {
            resident: ResidentServiceClient::new(channels[client % channels.len()].clone()),
            caseworker: CaseworkerServiceClient::new(channels[client % channels.len()].clone()),
            tokens: server.tokens.clone(),
            client,
            ledger: epoch.ledger.clone(),
            stop: stop.clone(),
            errors: errors.clone(),
            round,
        };
        load.spawn(worker.run());
    }

    let segments_dir = epoch.dir.join("log").join("segments");
    let snapshot_tmp = epoch.dir.join("log").join(SNAPSHOT_TEMPORARY_FILE);
    let segments_at_start = count_segments(&segments_dir);
    let load_started = Instant::now();
    let mut last_roll_over: Option<Instant> = None;
    let mut segments_seen = segments_at_start;
    // A temporary file left by an earlier kill stays until the next snapshot replaces
    // it: only one that appears after being seen absent is a snapshot being written.
    let mut snapshot_absent_seen = false;
    let mut snapshot_writing;
    loop {
        let snapshot_present = snapshot_tmp.exists();
        snapshot_writing = snapshot_present && snapshot_absent_seen;
        snapshot_absent_seen |= !snapshot_present;
        let segments = count_segments(&segments_dir);
        if segments != segments_seen {
            segments_seen = segments;
            last_roll_over = Some(Instant::now());
        }
        let elapsed = load_started.elapsed();
        let fire = match aim {
            KillAim::Random => elapsed >= kill_after,
            KillAim::RollOver => last_roll_over.is_some() || elapsed >= give_up,
            KillAim::Snapshot => snapshot_writing || elapsed >= give_up,
        };
        if fire {
            break;
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    // Calls failing from here on were cut by the kill.
    stop.store(true, Ordering::Relaxed);
    let killed_at = Instant::now();
    server.kill9();
    epoch.killed = true;
    match aim {
        KillAim::Random => summary.kills_random += 1,
        KillAim::RollOver => summary.kills_aimed_roll_over += 1,
        KillAim::Snapshot => summary.kills_aimed_snapshot += 1,
    }
    if snapshot_writing && snapshot_tmp.exists() {
        summary.kills_during_snapshot += 1;
    }
    if last_roll_over.is_some_and(|at| killed_at.duration_since(at) <= Duration::from_millis(5)) {
        summary.kills_during_roll_over += 1;
    }
    while let Some(result) = load.join_next().await {
        result.context("a load task panicked")?;
    }
    // Errors before the kill are counted; calls cut by the kill are expected.
    summary.load_errors += errors.load(Ordering::Relaxed);
    let ledger = epoch.ledger.lock().expect("ledger lock");
    summary.acknowledged += ledger.acks.iter().filter(|ack| ack.round == round).count() as u64;
    Ok(())
}

/// After the last round: verify what the kill left, start, check everything, kill.
async fn final_check(
    args: &SoakArgs,
    cli: &Path,
    epoch: &mut Epoch,
    round: u64,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    if epoch.killed {
        verify(cli, &epoch.dir)?;
        summary.verifies += 1;
    }
    let mut server = start(args, epoch)?;
    let channel = ready(&mut server).await?;
    check(&server, &channel, epoch, round + 1, summary).await?;
    server.kill9();
    Ok(())
}

fn count_segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_name().to_string_lossy().ends_with(".seg"))
                .count()
        })
        .unwrap_or(0)
}

/// A server of this campaign, its tokens and its address.
struct Server {
    process: SpawnedServer,
    address: String,
    tokens: Arc<CampaignTokens>,
}

impl Server {
    fn kill9(&mut self) {
        // `Child::kill` is SIGKILL on Unix: no shutdown code runs.
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
    }

    /// The process's exit, when it has stopped on its own.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.process.child.try_wait().ok().flatten()
    }
}

struct CampaignTokens {
    load: Tokens,
    admin: MetadataValue<Ascii>,
}

fn start(args: &SoakArgs, epoch: &Epoch) -> anyhow::Result<Server> {
    // The ports are chosen free but not held until the server binds them, so another
    // process on the machine can take one in between: that start is tried again on new
    // ports (it is the harness's race, not the server's fault). Anything else fails.
    let mut attempt = 1;
    loop {
        let logged_before = std::fs::metadata(epoch.server_log())
            .map(|metadata| metadata.len())
            .unwrap_or(0);
        match start_once(args, epoch) {
            Err(error) if attempt < 3 && port_taken(&epoch.server_log(), logged_before) => {
                eprintln!("a port was taken before anju-server bound it ({error:#}); starting again on other ports");
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Whether what the server logged after `offset` says an address was in use.
fn port_taken(log: &Path, offset: u64) -> bool {
    std::fs::read(log)
        .map(|bytes| {
            let start = (offset as usize).min(bytes.len());
            String::from_utf8_lossy(&bytes[start..]).contains("Address already in use")
        })
        .unwrap_or(false)
}

fn start_once(args: &SoakArgs, epoch: &Epoch) -> anyhow::Result<Server> {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(epoch.server_log())
        .with_context(|| format!("opening {}", epoch.server_log().display()))?;
    let options = ServerOptions {
        nats_url: None,
        node_id: "soak",
        extra_args: vec![
            "--segment-size".into(),
            args.segment_size.to_string(),
            "--snapshot-interval".into(),
            args.snapshot_interval.clone(),
        ],
        stderr: Stdio::from(stderr),
    };
    let (address, secret, process) = spawn_server_in(&epoch.dir, options)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = Claims {
        sub: "soak-admin".to_string(),
        role: Role::Admin,
        sites: vec!["*".to_string()],
        categories: Vec::new(),
        exp: now + 3600,
        iat: now,
    };
    let admin = format!("Bearer {}", anju_auth::issue(&secret, &claims))
        .parse()
        .expect("a token is ascii");
    let tokens = Arc::new(CampaignTokens {
        load: Tokens::new(&secret, args.clients),
        admin,
    });
    Ok(Server {
        process,
        address,
        tokens,
    })
}

/// Waits until the server answers a read (recovery and the read models' replay done).
async fn ready(server: &mut Server) -> anyhow::Result<Channel> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let channel = connect(&server.address, 1).await?.remove(0);
    let mut log = EventLogServiceClient::new(channel.clone());
    loop {
        let read = ReadAllRequest {
            from_position: 0,
            max_count: 1,
            ..Default::default()
        };
        match log.read_all(with_token(read, &server.tokens.admin)).await {
            Ok(_) => return Ok(channel),
            Err(status) if server.exited().is_some() => {
                anyhow::bail!(
                    "the server stopped after a restart, before answering ({status}): see its log"
                )
            }
            Err(status) if Instant::now() >= deadline => {
                anyhow::bail!("the server did not answer within 60 s after a restart: {status}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// `anju log verify` on the stopped server's data directory must exit 0 and say ok.
fn verify(cli: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let output = Command::new(cli)
        .args(["--json", "log", "verify", "--data-dir"])
        .arg(data_dir)
        .env("XDG_CONFIG_HOME", data_dir.join(".no-config"))
        .env_remove("ANJU_DATA_DIR")
        .env_remove("ANJU_CLI_CONFIG")
        .env_remove("ANJU_PROFILE")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", cli.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Option<serde_json::Value> = serde_json::from_str(stdout.trim()).ok();
    let ok = report.as_ref().and_then(|r| r["ok"].as_bool()) == Some(true);
    anyhow::ensure!(
        output.status.success() && ok,
        "`anju log verify` after the kill: {} {}{}",
        output.status,
        stdout.trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// Every event of the log, read through `EventLogService.ReadAll`.
struct LogEvent {
    stream_id: String,
    stream_version: u64,
    event_type: String,
}

async fn read_whole_log(server: &Server, channel: &Channel) -> anyhow::Result<Vec<LogEvent>> {
    let mut client =
        EventLogServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20);
    let mut events = Vec::new();
    let mut from = 1u64;
    loop {
        let read = ReadAllRequest {
            from_position: from,
            max_count: 500,
            ..Default::default()
        };
        let page = client
            .read_all(with_token(read, &server.tokens.admin))
            .await
            .with_context(|| format!("ReadAll from {from}"))?
            .into_inner();
        for event in &page.events {
            let expected = events.len() as u64 + 1;
            anyhow::ensure!(
                event.position == expected,
                "the log skips from position {} to {}",
                expected - 1,
                event.position
            );
            events.push(LogEvent {
                stream_id: event.stream_id.clone(),
                stream_version: event.stream_version,
                event_type: event.event_type.clone(),
            });
        }
        if page.events.is_empty() || page.next_position > page.head_position {
            anyhow::ensure!(
                events.len() as u64 == page.head_position,
                "ReadAll returned {} events but the head is {}",
                events.len(),
                page.head_position
            );
            return Ok(events);
        }
        from = page.next_position;
    }
}

/// Every acknowledged write is at the position it was acknowledged with, in its
/// stream at its version; streams have no gap and no repeat; submissions are in the log
/// once, and a retry of one with its idempotency key answers the same request; statuses
/// of the last round's requests show their last acknowledged state.
async fn check(
    server: &Server,
    channel: &Channel,
    epoch: &Epoch,
    round: u64,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let events = read_whole_log(server, channel).await?;
    let mut versions: HashMap<&str, u64> = HashMap::new();
    let mut submitted: HashMap<&str, u64> = HashMap::new();
    for (index, event) in events.iter().enumerate() {
        let version = versions.entry(event.stream_id.as_str()).or_insert(0);
        anyhow::ensure!(
            event.stream_version == *version + 1,
            "position {}: stream {} at version {} after version {}",
            index + 1,
            event.stream_id,
            event.stream_version,
            version
        );
        *version = event.stream_version;
        if event.event_type == "RequestSubmitted" {
            *submitted.entry(event.stream_id.as_str()).or_insert(0) += 1;
        }
    }
    let (requests, acks) = {
        let ledger = epoch.ledger.lock().expect("ledger lock");
        (ledger.requests.clone(), ledger.acks.clone())
    };
    for ack in &acks {
        let request = &requests[ack.request];
        let stream = format!("request-{}", request.request_id);
        let found = events.get(ack.position as usize - 1).with_context(|| {
            format!(
                "acknowledged {} of {stream} (round {}) at position {} is missing: the log ends at {}",
                ack.event_type,
                ack.round,
                ack.position,
                events.len()
            )
        })?;
        anyhow::ensure!(
            found.stream_id == stream && found.stream_version == ack.version && found.event_type == ack.event_type,
            "position {} holds {} of {} at version {}, not the acknowledged {} of {stream} at version {} (round {})",
            ack.position,
            found.event_type,
            found.stream_id,
            found.stream_version,
            ack.event_type,
            ack.version,
            ack.round
        );
    }
    for request in &requests {
        let stream = format!("request-{}", request.request_id);
        let count = submitted.get(stream.as_str()).copied().unwrap_or(0);
        anyhow::ensure!(
            count == 1,
            "{stream} was submitted {count} times in the log, acknowledged once"
        );
    }
    summary.ack_checks += acks.len() as u64;

    // The last round's submissions, retried and looked up.
    let mut last_position: BTreeMap<usize, &Ack> = BTreeMap::new();
    for ack in &acks {
        last_position.insert(ack.request, ack);
    }
    let mut resident = ResidentServiceClient::new(channel.clone());
    let recent: Vec<(usize, &Submitted)> = requests
        .iter()
        .enumerate()
        .filter(|(_, r)| r.round + 1 == round)
        .rev()
        .take(20)
        .collect();
    let mut looked_up = HashSet::new();
    for (index, request) in recent {
        let token =
            &server.tokens.load.residents[request.client % server.tokens.load.residents.len()];
        let again = resident
            .submit_request(with_token(request.call.clone(), token))
            .await
            .with_context(|| format!("retrying the submission of request {}", request.request_id))?
            .into_inner();
        anyhow::ensure!(
            again.replayed && again.request_id == request.request_id && again.position == request.position,
            "a retry of request {}'s submission (position {}) answered request {} at position {} (replayed: {})",
            request.request_id,
            request.position,
            again.request_id,
            again.position,
            again.replayed
        );
        summary.idempotent_retries += 1;
        let last = last_position[&index];
        let stream = format!("request-{}", request.request_id);
        // Only when the acknowledged write is the stream's last event: a write the kill
        // cut before its answer may still have reached the log, and that one wins.
        if versions.get(stream.as_str()).copied() == Some(last.version) && looked_up.insert(index) {
            let status = resident
                .get_request_status(with_token(
                    GetRequestStatusRequest {
                        tracking_code: request.tracking_code.clone(),
                        phone_last4: request.phone_last4.clone(),
                        min_position: events.len() as u64,
                    },
                    token,
                ))
                .await
                .with_context(|| format!("the status of request {}", request.request_id))?
                .into_inner()
                .status
                .context("a status answer without a status")?;
            anyhow::ensure!(
                status.state == last.state,
                "request {}'s status is {:?}, its last acknowledged write ({} at position {}) left it {:?}",
                request.request_id,
                RequestState::try_from(status.state),
                last.event_type,
                last.position,
                RequestState::try_from(last.state)
            );
            summary.status_checks += 1;
        }
    }
    Ok(())
}

/// One client of the load: submit, claim, a note or two, accept, read the status.
struct Worker {
    resident: ResidentServiceClient<Channel>,
    caseworker: CaseworkerServiceClient<Channel>,
    tokens: Arc<CampaignTokens>,
    client: usize,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
    round: u64,
}

impl Worker {
    async fn run(mut self) {
        let mut notes = self.client as u64;
        while !self.stop.load(Ordering::Relaxed) {
            if let Err(status) = self.one_request(&mut notes).await {
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                if self.errors.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("soak load call failed before the kill: {status}");
                }
            }
        }
    }

    fn record(
        &self,
        request: usize,
        position: u64,
        version: u64,
        event_type: &'static str,
        state: i32,
    ) {
        let ack = Ack {
            request,
            position,
            version,
            event_type,
            state,
            round: self.round,
        };
        self.ledger.lock().expect("ledger lock").acks.push(ack);
    }

    async fn one_request(&mut self, notes: &mut u64) -> Result<(), tonic::Status> {
        let resident_token =
            self.tokens.load.residents[self.client % self.tokens.load.residents.len()].clone();
        let caseworker_token = self.tokens.load.caseworker.clone();
        let call = submission("soak");
        let phone = call
            .applicant
            .as_ref()
            .map(|a| a.phone.clone())
            .unwrap_or_default();
        let submitted = self
            .resident
            .submit_request(with_token(call.clone(), &resident_token))
            .await?
            .into_inner();
        let request = {
            let mut ledger = self.ledger.lock().expect("ledger lock");
            ledger.requests.push(Submitted {
                request_id: submitted.request_id.clone(),
                tracking_code: submitted.tracking_code.clone(),
                phone_last4: phone[phone.len().saturating_sub(4)..].to_string(),
                client: self.client,
                call,
                position: submitted.position,
                round: self.round,
            });
            ledger.requests.len() - 1
        };
        self.record(
            request,
            submitted.position,
            1,
            "RequestSubmitted",
            submitted.state,
        );
        let request_id = submitted.request_id;
        let claimed = self
            .caseworker
            .claim_request(with_token(
                ClaimRequestRequest {
                    request_id: request_id.clone(),
                    ..Default::default()
                },
                &caseworker_token,
            ))
            .await?
            .into_inner();
        self.record(
            request,
            claimed.position,
            claimed.version,
            "RequestClaimed",
            claimed.state,
        );
        for _ in 0..(*notes % 3) {
            *notes += 1;
            let noted = self
                .caseworker
                .add_note(with_token(
                    AddNoteRequest {
                        request_id: request_id.clone(),
                        text: format!("soak note {notes}: called the resident, visit booked"),
                        internal: notes.is_multiple_of(2),
                        ..Default::default()
                    },
                    &caseworker_token,
                ))
                .await?
                .into_inner();
            self.record(
                request,
                noted.position,
                noted.version,
                "NoteAdded",
                noted.state,
            );
        }
        *notes += 1;
        let accepted = self
            .caseworker
            .accept_request(with_token(
                AcceptRequestRequest {
                    request_id: request_id.clone(),
                    ..Default::default()
                },
                &caseworker_token,
            ))
            .await?
            .into_inner();
        self.record(
            request,
            accepted.position,
            accepted.version,
            "RequestAccepted",
            accepted.state,
        );
        let status = self
            .resident
            .get_request_status(with_token(
                GetRequestStatusRequest {
                    tracking_code: submitted.tracking_code,
                    phone_last4: phone[phone.len().saturating_sub(4)..].to_string(),
                    min_position: accepted.position,
                },
                &resident_token,
            ))
            .await?
            .into_inner();
        let state = status.status.map(|s| s.state).unwrap_or_default();
        if state != accepted.state {
            // Read-your-writes broke while the server was up: counted with the errors.
            return Err(tonic::Status::internal(format!(
                "request {request_id} read back {state} at its acceptance's position, not {}",
                accepted.state
            )));
        }
        Ok(())
    }
}

fn print_summary(
    args: &SoakArgs,
    summary: &Summary,
    seed: u64,
    elapsed: Duration,
    work_dir: &Path,
) {
    if args.json {
        let report = serde_json::json!({
            "rounds": summary.rounds,
            "seconds": (elapsed.as_secs_f64() * 10.0).round() / 10.0,
            "seed": seed,
            "data_dirs": summary.data_dirs,
            "acknowledged_writes": summary.acknowledged,
            "acknowledged_write_checks": summary.ack_checks,
            "idempotent_retries": summary.idempotent_retries,
            "status_checks": summary.status_checks,
            "verifies": summary.verifies,
            "kills": {
                "aimed_random": summary.kills_random,
                "aimed_roll_over": summary.kills_aimed_roll_over,
                "aimed_snapshot": summary.kills_aimed_snapshot,
                "during_roll_over": summary.kills_during_roll_over,
                "during_snapshot": summary.kills_during_snapshot,
            },
            "load_errors": summary.load_errors,
            "failures": summary.failures,
        });
        println!("{report}");
        return;
    }
    println!(
        "soak: {} rounds in {:.0} s (seed {seed}, work directory {})",
        summary.rounds,
        elapsed.as_secs_f64(),
        work_dir.display()
    );
    println!("| measure | value |");
    println!("| --- | ---: |");
    println!("| rounds (kill -9 each) | {} |", summary.rounds);
    println!("| data directories | {} |", summary.data_dirs);
    println!("| acknowledged writes | {} |", summary.acknowledged);
    println!(
        "| acknowledged writes checked (summed over restarts) | {} |",
        summary.ack_checks
    );
    println!(
        "| submissions retried after a restart (same answer) | {} |",
        summary.idempotent_retries
    );
    println!(
        "| statuses read back after a restart | {} |",
        summary.status_checks
    );
    println!(
        "| `anju log verify` runs after a kill | {} |",
        summary.verifies
    );
    println!("| kills at a random moment | {} |", summary.kills_random);
    println!(
        "| kills aimed at a segment roll-over | {} |",
        summary.kills_aimed_roll_over
    );
    println!(
        "| kills aimed at a snapshot write | {} |",
        summary.kills_aimed_snapshot
    );
    println!(
        "| kills within 5 ms of a new segment appearing | {} |",
        summary.kills_during_roll_over
    );
    println!(
        "| kills with the snapshot's temporary file present | {} |",
        summary.kills_during_snapshot
    );
    println!(
        "| load calls failed before a kill | {} |",
        summary.load_errors
    );
    println!("| failures | {} |", summary.failures.len());
    for failure in &summary.failures {
        println!("FAILURE {failure}");
    }
}
