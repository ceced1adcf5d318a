//! What the process tests share: the real `anju-server` and `anju-insight` binaries on
//! free ports and temporary directories, tokens, gRPC clients, `/metrics`, and the two
//! sides of the relay's promise: the events of a node's log and the messages of the
//! ANJU_EVENTS stream.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anju_auth::{Claims, Role, Secret};
use anju_proto::v1::caseworker_service_client::CaseworkerServiceClient;
use anju_proto::v1::event_log_service_client::EventLogServiceClient;
use anju_proto::v1::resident_service_client::ResidentServiceClient;
use anju_proto::v1::*;
use anju_testkit::free_port;
use tonic::transport::Channel;

/// The `anju-server` binary: `ANJU_SERVER_BIN`, else the one cargo built beside
/// `anju-insight` (`cargo test --workspace`, or `-p anju-server -p anju-insight`).
pub fn anju_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("ANJU_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let beside = Path::new(env!("CARGO_BIN_EXE_anju-insight")).with_file_name("anju-server");
    assert!(
        beside.exists(),
        "{} is missing: build it with the same profile (`cargo build --release -p anju-server`), \
         run the whole suite (`./scripts/test`), or set ANJU_SERVER_BIN",
        beside.display()
    );
    beside
}

/// A child process killed (SIGKILL) when dropped.
pub struct Process {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &str, mut command: Command, log: PathBuf) -> Process {
        let file = std::fs::File::create(&log).expect("create the process log");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        Process {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// What the process wrote to stderr so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, and wait for it to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit code once it stopped (within 30 s).
    pub fn terminate(&mut self) -> Option<i32> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop within 30 s of SIGTERM:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A running `anju-server` node.
pub struct Node {
    pub process: Process,
    pub node_id: String,
    pub data_dir: PathBuf,
    pub secret_file: PathBuf,
    pub grpc_port: u16,
    pub http_port: u16,
    pub channel: Channel,
}

/// Writes a token secret every process of a test shares (the nodes and insight must
/// check tokens with the same one).
pub fn write_secret(path: &Path) {
    let bytes: Vec<u8> = (0..32u8)
        .map(|n| n.wrapping_mul(37).wrapping_add(11))
        .collect();
    std::fs::write(path, bytes).expect("write the token secret");
}

impl Node {
    /// Starts `anju-server` on free ports over `data_dir`, publishing to `nats_url`,
    /// checking tokens with `secret_file`.
    pub async fn start(data_dir: &Path, secret_file: &Path, node_id: &str, nats_url: &str) -> Node {
        let grpc_port = free_port();
        let http_port = free_port();
        let mut command = Command::new(anju_server_binary());
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--grpc-addr", &format!("127.0.0.1:{grpc_port}")])
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
            .args(["--nats-url", nats_url, "--node-id", node_id])
            .arg("--secret-file")
            .arg(secret_file)
            .args(["--concurrency-limit", "4096"])
            .args(["--status-lookups-per-minute", "100000"])
            .env("ANJU_LOG", "warn")
            .env_remove("ANJU_CONFIG");
        std::fs::create_dir_all(data_dir).unwrap();
        let log = data_dir.with_extension(format!("{}.log", now_nanos()));
        let process = Process::spawn(&format!("anju-server {node_id}"), command, log);
        let channel = connect(grpc_port, &process).await;
        Node {
            process,
            node_id: node_id.to_string(),
            data_dir: data_dir.to_path_buf(),
            secret_file: secret_file.to_path_buf(),
            grpc_port,
            http_port,
            channel,
        }
    }

    pub fn secret(&self) -> Secret {
        anju_auth::read_secret_file(&self.secret_file).expect("the shared token secret")
    }

    pub fn metrics(&self) -> String {
        http_get(self.http_port, "/metrics")
    }

    /// Every event of the node's log, in order.
    pub async fn log_events(&self) -> Vec<LoggedEvent> {
        let admin = token(&self.secret(), Role::Admin, "admin-test", &["*"]);
        let mut client = EventLogServiceClient::new(self.channel.clone());
        let mut events = Vec::new();
        let mut from = 1;
        loop {
            let response = client
                .read_all(authed(
                    ReadAllRequest {
                        from_position: from,
                        max_count: 1000,
                        ..Default::default()
                    },
                    &admin,
                ))
                .await
                .expect("read the log")
                .into_inner();
            for event in &response.events {
                events.push(LoggedEvent {
                    position: event.position,
                    event_id: event.event_id.clone(),
                });
            }
            if response.next_position > response.head_position || response.events.is_empty() {
                return events;
            }
            from = response.next_position;
        }
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A running `anju-insight`.
pub struct InsightProcess {
    pub process: Process,
    pub grpc_port: u16,
    pub http_port: u16,
    pub channel: Channel,
}

impl InsightProcess {
    pub async fn start(data_dir: &Path, secret_file: &Path, nats_url: &str) -> InsightProcess {
        let grpc_port = free_port();
        let http_port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_anju-insight"));
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--grpc-addr", &format!("127.0.0.1:{grpc_port}")])
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
            .args(["--nats-url", nats_url])
            .arg("--secret-file")
            .arg(secret_file)
            .env("ANJU_INSIGHT_LOG", "info")
            .env_remove("ANJU_INSIGHT_CONFIG");
        std::fs::create_dir_all(data_dir).unwrap();
        let log = data_dir.with_extension(format!("{}.log", now_nanos()));
        let process = Process::spawn("anju-insight", command, log);
        let channel = connect(grpc_port, &process).await;
        InsightProcess {
            process,
            grpc_port,
            http_port,
            channel,
        }
    }

    pub fn metrics(&self) -> String {
        http_get(self.http_port, "/metrics")
    }

    /// `anju_insight_node_position{node="..."}` of every node.
    pub fn node_positions(&self) -> BTreeMap<String, u64> {
        self.metrics()
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("anju_insight_node_position{node=\"")?;
                let (node, value) = rest.split_once("\"} ")?;
                Some((node.to_string(), value.trim().parse().ok()?))
            })
            .collect()
    }
}

async fn connect(port: u16, process: &Process) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let endpoint = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        assert!(
            Instant::now() < deadline,
            "{} never listened on {port}:\n{}",
            process.name,
            process.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One event of a node's log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LoggedEvent {
    /// API position (from 1).
    pub position: u64,
    pub event_id: String,
}

/// The messages of ANJU_EVENTS from `node`, in stream order, as
/// (API position = `Anju-Position` + 1, `Nats-Msg-Id`).
pub async fn stream_events(nats_url: &str, node: &str) -> Vec<LoggedEvent> {
    let client = async_nats::connect(nats_url)
        .await
        .expect("connect to nats");
    let context = async_nats::jetstream::new(client);
    let mut stream = context
        .get_stream("ANJU_EVENTS")
        .await
        .expect("the stream exists");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut events = Vec::new();
    if state.messages == 0 {
        return events;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        let message = stream
            .get_raw_message(sequence)
            .await
            .expect("read a message");
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|value| value.as_str().to_string())
                .unwrap_or_default()
        };
        if header(anju_relay::HEADER_NODE) != node {
            continue;
        }
        let body = anju_relay::EventMessage::decode(&message.payload).expect("the documented body");
        let position: u64 = header(anju_relay::HEADER_POSITION)
            .parse()
            .expect("a position header");
        assert_eq!(body.position, position, "header and body agree");
        let message_id = message
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|value| value.as_str().to_string());
        assert_eq!(
            message_id,
            Some(body.event_id.to_string()),
            "Nats-Msg-Id = event id"
        );
        events.push(LoggedEvent {
            position: position + 1,
            event_id: body.event_id.to_string(),
        });
    }
    events
}

/// Asserts that the stream holds exactly the log's events: each once, none missing,
/// with the log's positions and ids.
pub fn assert_stream_equals_log(log: &[LoggedEvent], stream: &[LoggedEvent]) {
    let mut seen = std::collections::HashSet::new();
    let twice: Vec<&LoggedEvent> = stream
        .iter()
        .filter(|e| !seen.insert(e.event_id.clone()))
        .collect();
    assert!(
        twice.is_empty(),
        "{} events are in the stream twice, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(3)]
    );
    let mut sorted = stream.to_vec();
    sorted.sort();
    let in_stream: std::collections::HashSet<&LoggedEvent> = sorted.iter().collect();
    let missing: Vec<&LoggedEvent> = log.iter().filter(|e| !in_stream.contains(e)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} log events are missing from the stream, e.g. {:?}",
        missing.len(),
        log.len(),
        &missing[..missing.len().min(3)]
    );
    assert_eq!(
        sorted.len(),
        log.len(),
        "the stream holds events the log does not"
    );
    assert_eq!(sorted, log, "positions and ids match");
}

/// Waits for `what` for up to `seconds`.
pub async fn wait_until(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {seconds} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of an unlabelled metric.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// GET `path` on 127.0.0.1:`port`; the body.
pub fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the http port");
    write!(stream, "GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

pub fn token(secret: &Secret, role: Role, subject: &str, sites: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    anju_auth::issue(
        secret,
        &Claims {
            sub: subject.into(),
            role,
            sites: sites.iter().map(|s| s.to_string()).collect(),
            categories: vec![],
            exp: now + 3600,
            iat: now,
        },
    )
}

pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// A community repair request at `site`; `n` makes it unique.
pub fn repair(site: &str, key: &str, n: u64) -> SubmitRequestRequest {
    SubmitRequestRequest {
        idempotency_key: format!("{key}-{n:06}"),
        service_code: "SQ-WEIXIU".into(),
        site_id: site.into(),
        applicant: Some(Applicant {
            name: "王秀英".into(),
            phone: format!("1380013{:04}", n % 10_000),
            id_number: None,
        }),
        text_answers: [
            ("problem".to_string(), "漏水 leak".to_string()),
            (
                "location".to_string(),
                format!("{}栋{}单元", n % 30 + 1, n % 4 + 1),
            ),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

/// Clients of one node with a resident's and a caseworker's token.
pub struct Actors {
    pub resident: ResidentServiceClient<Channel>,
    pub caseworker: CaseworkerServiceClient<Channel>,
    pub resident_token: String,
    pub caseworker_token: String,
}

impl Actors {
    pub fn new(node: &Node, site: &str) -> Actors {
        let secret = node.secret();
        Actors {
            resident: ResidentServiceClient::new(node.channel.clone()),
            caseworker: CaseworkerServiceClient::new(node.channel.clone()),
            resident_token: token(&secret, Role::Resident, &format!("resident-{site}"), &[]),
            caseworker_token: token(&secret, Role::Caseworker, &format!("cw-{site}"), &[site]),
        }
    }
}
