//! Helpers of the process tests: start the real `anju-server` binary on a data
//! directory, connect to it, and sign tokens with the secret it created.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anju_auth::{Claims, Role};
use tonic::transport::Channel;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn start(data_dir: &std::path::Path, port: u16) -> Child {
    start_with_http(data_dir, port, 0)
}

/// Starts `anju-server` with `/healthz` and `/metrics` on `http_port` (0: any).
pub fn start_with_http(data_dir: &std::path::Path, port: u16, http_port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_anju-server"))
        .args([
            "--grpc-addr",
            &format!("127.0.0.1:{port}"),
            "--http-addr",
            &format!("127.0.0.1:{http_port}"),
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .env("ANJU_NATS_URL", "none")
        .env("ANJU_LOG", "warn")
        .env_remove("ANJU_CONFIG")
        .env_remove("ANJU_SECRET_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("anju-server starts")
}

pub async fn connect(port: u16) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let endpoint = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        assert!(
            Instant::now() < deadline,
            "anju-server never listened on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn token(data_dir: &std::path::Path, role: Role, subject: &str) -> String {
    let secret = anju_auth::read_secret_file(&data_dir.join(anju_auth::SECRET_FILE_NAME))
        .expect("the server created its secret");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    anju_auth::issue(
        &secret,
        &Claims {
            sub: subject.into(),
            role,
            sites: vec!["*".into()],
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
