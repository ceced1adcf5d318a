//! Runs the real `anju-server` binary: it starts on free ports with a temporary data
//! directory, serves a health check, and on SIGTERM stops gracefully with exit code 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[tokio::test]
async fn sigterm_stops_the_server_with_exit_code_zero() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_anju-server"))
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        // Environment variables fill options no flag sets.
        .env("ANJU_NATS_URL", "none")
        .env("ANJU_DATA_DIR", data_dir.path().join("data"))
        .env_remove("ANJU_CONFIG")
        .env_remove("ANJU_SECRET_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("anju-server starts");

    // The binary prints the bound address; read stderr until it does, and keep
    // draining it afterwards so the server never blocks on a full pipe.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (address_sender, address_receiver) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut printed = Vec::new();
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(rest) = line.split("grpc on ").nth(1) {
                let address = rest.split(',').next().unwrap_or_default().to_string();
                let _ = address_sender.send(address);
            }
            printed.push(line);
        }
        printed
    });
    let address = address_receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("anju-server prints its grpc address");

    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .expect("connects to anju-server");
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .expect("health check answers")
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);

    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());

    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("anju-server did not stop within 20s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let printed = reader.join().unwrap();
    assert_eq!(
        exit.code(),
        Some(0),
        "exit {exit:?}, stderr:\n{}",
        printed.join("\n")
    );
    assert!(
        printed.iter().any(|line| line.contains("stopped")),
        "{}",
        printed.join("\n")
    );
    assert!(
        data_dir.path().join("data/token-secret").exists(),
        "secret created in ANJU_DATA_DIR"
    );
    assert!(
        printed.iter().any(|line| line.contains("anju token issue")),
        "first start should say how to issue a token:\n{}",
        printed.join("\n")
    );
}
