//! A full disk (issue 15, found item 3), with the real `anju-server` on a small tmpfs:
//! once the disk is full, submissions are refused with UNAVAILABLE naming the disk's
//! error, gRPC health says NOT_SERVING, `/healthz` answers 503 and `/metrics` shows the
//! store unwritable; once space is freed the same process accepts submissions and
//! reports SERVING again; after a restart every acknowledged submission is there once.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use anju_auth::Role;
use anju_proto::v1::event_log_service_client::EventLogServiceClient;
use anju_proto::v1::resident_service_client::ResidentServiceClient;
use anju_proto::v1::*;
use anju_testkit::Tmpfs;
use support::{authed, connect, free_port, start_with_http, token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// The 64 MiB segment and the next one, made ahead, with room for the rest.
const DISK_BYTES: u64 = 160 << 20;

fn submission(key: &str, phone: &str) -> SubmitRequestRequest {
    SubmitRequestRequest {
        idempotency_key: key.into(),
        service_code: "SQ-WEIXIU".into(),
        site_id: "site-a".into(),
        applicant: Some(Applicant {
            name: "王".into(),
            phone: phone.into(),
            id_number: None,
        }),
        text_answers: [
            ("problem".to_string(), "漏水 leak".to_string()),
            ("location".to_string(), key.to_string()),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

async fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("http port answers");
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().expect("a status code");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, body.to_string())
}

async fn health(channel: &Channel, service: &str) -> ServingStatus {
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status()
}

#[tokio::test]
async fn a_full_disk_refuses_writes_until_space_is_freed_and_loses_nothing() {
    let disk = Tmpfs::mount(DISK_BYTES);
    let data_dir = disk.path().join("data");
    let (port, http_port) = (free_port(), free_port());
    let mut child = start_with_http(&data_dir, port, http_port);
    let channel = connect(port).await;
    let resident = token(&data_dir, Role::Resident, "resident-disk");
    let client = ResidentServiceClient::new(channel.clone());
    // Wait until the next segment is made ahead, so the filler takes the rest.
    let next = data_dir.join("log/segments/00000001.seg.tmp");
    while std::fs::metadata(&next).map_or(0, |m| m.len()) < 64 << 20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut acked: Vec<(String, u64)> = Vec::new();
    let submit = |n: usize| {
        let mut client = client.clone();
        let resident = resident.clone();
        async move {
            // A new phone number each time: each resident needs a new key.
            let request = submission(&format!("disk-{n:05}"), &format!("135{n:08}"));
            client
                .submit_request(authed(request, &resident))
                .await
                .map(|r| r.into_inner())
        }
    };
    for n in 0..10 {
        let response = submit(n).await.expect("submits before the disk is full");
        acked.push((response.request_id, response.position));
    }
    assert_eq!(health(&channel, "").await, ServingStatus::Serving);

    let filler = disk.fill("filler");
    let mut refused = None;
    for n in 10..400 {
        match submit(n).await {
            Ok(response) => acked.push((response.request_id, response.position)),
            Err(status) => {
                refused = Some((n, status));
                break;
            }
        }
    }
    let (refused_n, status) = refused.expect("a full disk refuses a submission");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("No space left on device"),
        "{status:?}"
    );
    assert_eq!(health(&channel, "").await, ServingStatus::NotServing);
    assert_eq!(
        health(&channel, "anju.v1.ResidentService").await,
        ServingStatus::NotServing
    );
    assert_eq!(
        health(&channel, "anju.v1.EventLogService").await,
        ServingStatus::Serving,
        "reads still work"
    );
    let (code, body) = http_get(http_port, "/healthz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("No space left on device"), "{body}");
    let (_, metrics) = http_get(http_port, "/metrics").await;
    assert!(
        metrics.contains("anju_store_writable{store=\"keys\"} 0")
            || metrics.contains("anju_store_writable{store=\"log\"} 0"),
        "{metrics}"
    );
    // Still refused while the disk stays full.
    assert!(submit(refused_n).await.is_err());

    std::fs::remove_file(filler).unwrap();
    // The refused submission, sent again, now goes through, then new ones too.
    for n in refused_n..refused_n + 20 {
        let response = submit(n).await.expect("space is back: submissions succeed");
        acked.push((response.request_id, response.position));
    }
    assert_eq!(health(&channel, "").await, ServingStatus::Serving);
    assert_eq!(
        health(&channel, "anju.v1.ResidentService").await,
        ServingStatus::Serving
    );
    let (code, body) = http_get(http_port, "/healthz").await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (_, metrics) = http_get(http_port, "/metrics").await;
    assert!(
        metrics.contains("anju_store_writable{store=\"keys\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("anju_log_writable 1"), "{metrics}");
    let failures_line = metrics
        .lines()
        .find(|l| l.starts_with("anju_store_write_failures_total{store=\"keys\"}"))
        .expect("a failure counter");
    assert_ne!(
        failures_line.rsplit(' ').next(),
        Some("0"),
        "{failures_line}"
    );

    // Restart after a kill: every acknowledged submission is there, once.
    child.kill().unwrap();
    child.wait().unwrap();
    let port = free_port();
    let mut child = start_with_http(&data_dir, port, free_port());
    let channel = connect(port).await;
    let admin = token(&data_dir, Role::Admin, "admin-disk");
    let mut log = EventLogServiceClient::new(channel);
    let mut submitted = Vec::new();
    let mut from = 0;
    loop {
        let page = log
            .read_all(authed(
                ReadAllRequest {
                    from_position: from,
                    max_count: 1000,
                    filter: Some(EventFilter {
                        stream_prefixes: vec![],
                        event_types: vec!["RequestSubmitted".into()],
                    }),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .expect("read after restart")
            .into_inner();
        if page.events.is_empty() {
            break;
        }
        submitted.extend(
            page.events
                .iter()
                .map(|e| (e.stream_id.clone(), e.position)),
        );
        from = page.next_position;
    }
    let expected: HashSet<(String, u64)> = acked
        .iter()
        .map(|(id, position)| (format!("request-{id}"), *position))
        .collect();
    assert_eq!(expected.len(), acked.len());
    assert_eq!(submitted.len(), expected.len(), "each submission once");
    assert_eq!(
        submitted.into_iter().collect::<HashSet<_>>(),
        expected,
        "exactly the acknowledged submissions"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
