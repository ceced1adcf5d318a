//! kill -9 under load: the real `anju-server` binary takes concurrent submissions, is
//! killed with SIGKILL mid-stream, and after a restart on the same data directory every
//! submission it acknowledged is there.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anju_auth::Role;
use anju_proto::v1::event_log_service_client::EventLogServiceClient;
use anju_proto::v1::resident_service_client::ResidentServiceClient;
use anju_proto::v1::*;
use support::{authed, connect, free_port, start, token};

/// What the server acknowledged.
#[derive(Debug, Clone)]
struct Acked {
    request_id: String,
    tracking_code: String,
    position: u64,
}

#[tokio::test]
async fn every_acknowledged_submission_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let port = free_port();
    let mut child = start(&data_dir, port);
    let channel = connect(port).await;
    let resident = token(&data_dir, Role::Resident, "resident-kill9");

    let acked: Arc<Mutex<Vec<Acked>>> = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for writer in 0..16 {
        let mut client = ResidentServiceClient::new(channel.clone());
        let acked = acked.clone();
        let resident = resident.clone();
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let request = SubmitRequestRequest {
                    idempotency_key: format!("kill9-{writer:02}-{n:06}"),
                    service_code: "SQ-WEIXIU".into(),
                    site_id: "site-a".into(),
                    applicant: Some(Applicant {
                        name: "王".into(),
                        phone: "13512340000".into(),
                        id_number: None,
                    }),
                    text_answers: [
                        ("problem".to_string(), "漏水 leak".to_string()),
                        ("location".to_string(), format!("{writer}-{n}")),
                    ]
                    .into_iter()
                    .collect(),
                    ..Default::default()
                };
                match client.submit_request(authed(request, &resident)).await {
                    Ok(response) => {
                        let response = response.into_inner();
                        acked.lock().unwrap().push(Acked {
                            request_id: response.request_id,
                            tracking_code: response.tracking_code,
                            position: response.position,
                        });
                    }
                    // The server is gone.
                    Err(_) => return,
                }
            }
        }));
    }
    // Let the load run, then kill the server in the middle of it.
    let started = Instant::now();
    while acked.lock().unwrap().len() < 200 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 200,
        "only {} acknowledged before the kill",
        acked.len()
    );

    // Restart on the same data directory and look every acknowledged request up.
    let port = free_port();
    let mut child = start(&data_dir, port);
    let channel = connect(port).await;
    let admin = token(&data_dir, Role::Admin, "admin-kill9");
    let mut log = EventLogServiceClient::new(channel.clone());
    let highest = acked.iter().map(|a| a.position).max().unwrap();
    for submission in &acked {
        let response = log
            .read_stream(authed(
                ReadStreamRequest {
                    stream_id: format!("request-{}", submission.request_id),
                    min_position: highest,
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .expect("read stream")
            .into_inner();
        assert!(response.stream_version >= 1, "{submission:?} is missing");
        let first = &response.events[0];
        assert_eq!(first.event_type, "RequestSubmitted");
        assert_eq!(first.position, submission.position);
    }
    // The read models were rebuilt or caught up too: residents find theirs.
    let mut resident_client = ResidentServiceClient::new(channel);
    for submission in acked.iter().take(20) {
        let status = resident_client
            .get_request_status(authed(
                GetRequestStatusRequest {
                    tracking_code: submission.tracking_code.clone(),
                    phone_last4: "0000".into(),
                    min_position: highest,
                },
                &resident,
            ))
            .await
            .expect("status after the restart")
            .into_inner()
            .status
            .unwrap();
        assert_eq!(status.tracking_code, submission.tracking_code);
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
