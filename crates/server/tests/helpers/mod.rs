//! Test helpers: spawn the real `App` on free ports with a temporary data directory
//! (and again on the same one), issue tokens, make the generated clients, and speak
//! raw HTTP/1 to it.

use std::net::SocketAddr;
use std::path::Path;

use anju_auth::Secret;
use anju_proto::v1::admin_service_client::AdminServiceClient;
use anju_proto::v1::caseworker_service_client::CaseworkerServiceClient;
use anju_proto::v1::event_log_service_client::EventLogServiceClient;
use anju_proto::v1::manager_service_client::ManagerServiceClient;
use anju_proto::v1::resident_service_client::ResidentServiceClient;
use anju_server_core::{App, Config, ServeError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A running server; stopped when dropped (its task ends with the test runtime).
pub struct TestApp {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The secret the server verifies tokens with.
    pub secret: Secret,
    data_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

/// The generated clients, sharing one channel.
#[derive(Clone)]
pub struct Clients {
    pub resident: ResidentServiceClient<Channel>,
    pub caseworker: CaseworkerServiceClient<Channel>,
    pub manager: ManagerServiceClient<Channel>,
    pub eventlog: EventLogServiceClient<Channel>,
    pub admin: AdminServiceClient<Channel>,
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token with the given claims and expiry.
pub fn token_with(
    secret: &Secret,
    role: anju_auth::Role,
    subject: &str,
    sites: &[&str],
    categories: &[&str],
    exp: u64,
) -> String {
    let claims = anju_auth::Claims {
        sub: subject.into(),
        role,
        sites: sites.iter().map(|s| s.to_string()).collect(),
        categories: categories.iter().map(|s| s.to_string()).collect(),
        exp,
        iat: now().min(exp),
    };
    anju_auth::issue(secret, &claims)
}

/// A request carrying `authorization: Bearer <token>`.
pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// A parsed HTTP/1 response.
pub struct HttpResponse {
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    /// Spawns with the ephemeral config changed by `adjust`.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let data_dir = tempfile::tempdir().expect("temporary data directory");
        TestApp::spawn_in(data_dir, adjust).await
    }

    /// Spawns on an existing temporary directory, e.g. one a stopped server left.
    pub async fn spawn_in(
        data_dir: tempfile::TempDir,
        adjust: impl FnOnce(&mut Config),
    ) -> TestApp {
        let mut config = Config::ephemeral(data_dir.path().join("data"));
        adjust(&mut config);
        let secret_path = config.secret_path();
        let app = App::build(config).await.expect("app builds");
        let secret = anju_auth::read_secret_file(&secret_path).expect("secret exists after build");
        let (grpc_addr, http_addr) = (app.grpc_addr(), app.http_addr());
        assert_ne!(grpc_addr.port(), 0);
        assert_ne!(http_addr.port(), 0);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        TestApp {
            grpc_addr,
            http_addr,
            secret,
            data_dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        Path::new(self.data_dir.path()).join("data")
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc_addr))
            .unwrap()
            .connect()
            .await
            .expect("connects to the test server")
    }

    /// Stops the server and hands back its data directory for a restart.
    pub async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().expect("not stopped yet").send(());
        self.task
            .take()
            .expect("running")
            .await
            .expect("server task joins")
            .expect("server stops cleanly");
        let placeholder = tempfile::tempdir().expect("temporary directory");
        std::mem::replace(&mut self.data_dir, placeholder)
    }

    /// A token signed with the server's secret, valid for an hour.
    pub fn token(
        &self,
        role: anju_auth::Role,
        subject: &str,
        sites: &[&str],
        categories: &[&str],
    ) -> String {
        token_with(&self.secret, role, subject, sites, categories, now() + 3600)
    }

    /// Clients of the five anju services over one connection.
    pub async fn clients(&self) -> Clients {
        let channel = self.channel().await;
        Clients {
            resident: ResidentServiceClient::new(channel.clone()),
            caseworker: CaseworkerServiceClient::new(channel.clone()),
            manager: ManagerServiceClient::new(channel.clone()),
            eventlog: EventLogServiceClient::new(channel.clone()),
            admin: AdminServiceClient::new(channel),
        }
    }

    /// Sends the stop signal and waits for the run to return.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        let _ = self.stop.take().expect("not stopped yet").send(());
        self.task
            .take()
            .expect("running")
            .await
            .expect("server task joins")
    }

    /// GET on the plain HTTP port; returns the body.
    pub async fn http_get(&self, path: &str) -> String {
        let request =
            format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
        let response = exchange(self.http_addr, request.as_bytes()).await;
        String::from_utf8(response.body).unwrap()
    }

    /// Writes raw bytes to the gRPC port and reads the HTTP/1 response.
    pub async fn http1_exchange(&self, request: &[u8]) -> HttpResponse {
        exchange(self.grpc_addr, request).await
    }
}

async fn exchange(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut raw),
    )
    .await
    .expect("response within 10s")
    .unwrap();
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response has a head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status_line,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        data = &data[line_end + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}
