//! Online backup and restore (issue 15) with the real binaries: `anju-server backup`
//! under submission and caseworker load, more load after it, then `anju-server restore`
//! into a new data directory and a server started on it, which must answer as the
//! original did at the backup's position: the same events byte for byte, the same
//! request details and statuses, residents' sealed data still readable (the key store
//! came along). Bad input is refused with a clear error and writes nothing.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anju_auth::Role;
use anju_proto::v1::admin_service_client::AdminServiceClient;
use anju_proto::v1::caseworker_service_client::CaseworkerServiceClient;
use anju_proto::v1::event_log_service_client::EventLogServiceClient;
use anju_proto::v1::resident_service_client::ResidentServiceClient;
use anju_proto::v1::*;
use anju_testkit::files_under;
use support::{authed, connect, free_port, start, token};
use tonic::transport::Channel;

/// A valid PRC identity number (checksum X): sealed with the resident's key.
const ID_NUMBER: &str = "11010519491231002X";

#[derive(Debug, Clone)]
struct Acked {
    request_id: String,
    tracking_code: String,
    phone_last4: String,
}

fn submission(key: &str, phone: &str) -> SubmitRequestRequest {
    SubmitRequestRequest {
        idempotency_key: key.into(),
        service_code: "SQ-WEIXIU".into(),
        site_id: "site-a".into(),
        applicant: Some(Applicant {
            name: "王".into(),
            phone: phone.into(),
            id_number: Some(ID_NUMBER.into()),
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

/// Submitters and caseworkers until `stop` is set; what was acknowledged goes to `acked`.
fn start_load(
    channel: &Channel,
    resident: &str,
    caseworker: &str,
    round: &'static str,
    acked: Arc<Mutex<Vec<Acked>>>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for writer in 0..6 {
        let mut client = ResidentServiceClient::new(channel.clone());
        let (acked, stop, resident) = (acked.clone(), stop.clone(), resident.to_string());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let phone = format!("135{writer:02}{n:06}");
                let key = format!("backup-{round}-{writer}-{n:06}");
                let response = client
                    .submit_request(authed(submission(&key, &phone), &resident))
                    .await
                    .expect("submission under load")
                    .into_inner();
                acked.lock().unwrap().push(Acked {
                    request_id: response.request_id,
                    tracking_code: response.tracking_code,
                    phone_last4: phone[7..].to_string(),
                });
            }
        }));
    }
    for worker in 0..3usize {
        let mut client = CaseworkerServiceClient::new(channel.clone());
        let (acked, stop, caseworker) = (acked.clone(), stop.clone(), caseworker.to_string());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // Work on an earlier request, different ones per worker.
                let target = {
                    let acked = acked.lock().unwrap();
                    if acked.len() < 10 {
                        None
                    } else {
                        let at = (n * 7919 + worker * 104_729) % acked.len();
                        Some(acked[at].request_id.clone())
                    }
                };
                let Some(request_id) = target else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let key = |what: &str| format!("cw-{round}-{worker}-{n}-{what}");
                // Claims and accepts of a request in the wrong state are refused; notes
                // are always taken. Both kinds of answer are part of the load.
                let _ = client
                    .claim_request(authed(
                        ClaimRequestRequest {
                            request_id: request_id.clone(),
                            idempotency_key: key("claim"),
                            ..Default::default()
                        },
                        &caseworker,
                    ))
                    .await;
                let _ = client
                    .accept_request(authed(
                        AcceptRequestRequest {
                            request_id: request_id.clone(),
                            idempotency_key: key("accept"),
                            ..Default::default()
                        },
                        &caseworker,
                    ))
                    .await;
                client
                    .add_note(authed(
                        AddNoteRequest {
                            request_id,
                            idempotency_key: key("note"),
                            text: format!("called back, round {round}, note {n}"),
                            internal: n.is_multiple_of(2),
                            ..Default::default()
                        },
                        &caseworker,
                    ))
                    .await
                    .expect("a note under load");
            }
        }));
    }
    tasks
}

/// Events at API positions `1..=to` (or up to the head), paged as a client would.
async fn read_all(channel: &Channel, admin: &str, to: u64) -> Vec<Event> {
    let mut log = EventLogServiceClient::new(channel.clone());
    let mut events = Vec::new();
    let mut from = 1;
    while from <= to {
        let page = log
            .read_all(authed(
                ReadAllRequest {
                    from_position: from,
                    max_count: 1000,
                    ..Default::default()
                },
                admin,
            ))
            .await
            .expect("read all")
            .into_inner();
        if page.events.is_empty() {
            break;
        }
        for event in page.events {
            if event.position <= to {
                events.push(event);
            }
        }
        from = page.next_position;
    }
    events
}

/// What a caseworker and (for `with_status`; a server takes 60 status look-ups a minute
/// from a client) a resident are told about a request once the server has applied
/// position `min_position`, without the working days left on its deadline, which are
/// counted from the moment of the call.
async fn answers(
    channel: &Channel,
    caseworker: &str,
    resident: &str,
    request: &Acked,
    min_position: u64,
    with_status: bool,
) -> (RequestDetail, Option<RequestStatus>) {
    let mut detail = CaseworkerServiceClient::new(channel.clone())
        .get_request(authed(
            GetRequestRequest {
                request_id: request.request_id.clone(),
                min_position,
            },
            caseworker,
        ))
        .await
        .expect("request detail")
        .into_inner()
        .request
        .expect("a detail");
    if !with_status {
        if let Some(deadline) = detail.deadline.as_mut() {
            deadline.working_days_left = 0.0;
        }
        return (detail, None);
    }
    let mut status = ResidentServiceClient::new(channel.clone())
        .get_request_status(authed(
            GetRequestStatusRequest {
                tracking_code: request.tracking_code.clone(),
                phone_last4: request.phone_last4.clone(),
                min_position,
            },
            resident,
        ))
        .await
        .expect("request status")
        .into_inner()
        .status
        .expect("a status");
    for deadline in [detail.deadline.as_mut(), status.deadline.as_mut()]
        .into_iter()
        .flatten()
    {
        deadline.working_days_left = 0.0;
    }
    (detail, Some(status))
}

fn anju_server(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_anju-server"))
        .args(args)
        .env("ANJU_NATS_URL", "none")
        .env("ANJU_LOG", "warn")
        .env_remove("ANJU_CONFIG")
        .env_remove("ANJU_SECRET_FILE")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("anju-server runs")
}

fn restore(from: &Path, data_dir: &Path) -> std::process::Output {
    anju_server(&[
        "restore".as_ref(),
        "--from".as_ref(),
        from.as_os_str(),
        "--data-dir".as_ref(),
        data_dir.as_os_str(),
    ])
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn a_backup_under_load_restores_to_a_server_that_answers_as_the_original_did() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let backup_dir = dir.path().join("backup");
    let port = free_port();
    let mut original = start(&data_dir, port);
    let channel = connect(port).await;
    let resident = token(&data_dir, Role::Resident, "resident-backup");
    let caseworker = token(&data_dir, Role::Caseworker, "caseworker-backup");
    let admin = token(&data_dir, Role::Admin, "admin-backup");

    // Load, a backup in the middle of it, more load.
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(
        &channel,
        &resident,
        &caseworker,
        "a",
        acked.clone(),
        stop.clone(),
    );
    let started = Instant::now();
    while acked.lock().unwrap().len() < 300 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let grpc_addr = format!("127.0.0.1:{port}");
    let taken = anju_server(&[
        "--grpc-addr".as_ref(),
        grpc_addr.as_ref(),
        "--data-dir".as_ref(),
        data_dir.as_os_str(),
        "backup".as_ref(),
        "--to".as_ref(),
        backup_dir.as_os_str(),
    ]);
    assert!(taken.status.success(), "backup failed: {}", text(&taken));
    let acked_at_backup = acked.lock().unwrap().len();
    let started = Instant::now();
    while acked.lock().unwrap().len() < acked_at_backup + 200
        && started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup_dir.join("manifest.json")).unwrap()).unwrap();
    let position = manifest["position"].as_u64().unwrap();
    let head = EventLogServiceClient::new(channel.clone())
        .get_log_stats(authed(GetLogStatsRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    eprintln!("backup at position {position}; original head {head:?}");
    assert!(position > 300, "the backup holds {position} events");
    assert!(
        String::from_utf8_lossy(&taken.stdout).contains(&format!("positions 1 to {position} ")),
        "{}",
        text(&taken)
    );

    // The original's answers: every event, and, for the requests no event after the
    // backup touched, what staff and residents are told.
    let original_events = read_all(&channel, &admin, u64::MAX >> 1).await;
    assert!(
        original_events.len() as u64 > position,
        "the load went on after the backup"
    );
    let last_touch: HashMap<String, u64> =
        original_events
            .iter()
            .fold(HashMap::new(), |mut last, event| {
                last.insert(event.stream_id.clone(), event.position);
                last
            });
    let acked = acked.lock().unwrap().clone();
    let in_backup: Vec<&Acked> = acked
        .iter()
        .filter(|a| {
            let first = original_events
                .iter()
                .find(|e| e.stream_id == format!("request-{}", a.request_id))
                .unwrap();
            first.position <= position
        })
        .collect();
    let untouched: Vec<&Acked> = in_backup
        .iter()
        .copied()
        .filter(|a| last_touch[&format!("request-{}", a.request_id)] <= position)
        .collect();
    let touched_later: Vec<&Acked> = in_backup
        .iter()
        .copied()
        .filter(|a| last_touch[&format!("request-{}", a.request_id)] > position)
        .collect();
    assert!(untouched.len() >= 50, "{} untouched", untouched.len());
    assert!(
        !touched_later.is_empty(),
        "no request in the backup was worked on after it"
    );
    let mut original_answers = BTreeMap::new();
    for (n, request) in untouched.iter().enumerate() {
        original_answers.insert(
            request.request_id.clone(),
            answers(&channel, &caseworker, &resident, request, position, n < 40).await,
        );
    }
    original.kill().unwrap();
    original.wait().unwrap();

    // Restore into a new data directory and serve it.
    let restored_dir = dir.path().join("restored");
    let restored = restore(&backup_dir, &restored_dir);
    assert!(
        restored.status.success(),
        "restore failed: {}",
        text(&restored)
    );
    assert!(text(&restored).contains("verified"), "{}", text(&restored));
    let port = free_port();
    let mut server = start(&restored_dir, port);
    let channel = connect(port).await;

    // The same events 1..=P byte for byte, and nothing after them.
    let events = read_all(&channel, &admin, u64::MAX >> 1).await;
    assert_eq!(events.len() as u64, position);
    assert!(
        events == original_events[..position as usize],
        "the restored log differs from the original's first {position} events"
    );
    // Tokens of the original still work (the token secret came along) and the answers
    // are the same, the masked identity number included (the key store came along).
    for (n, request) in untouched.iter().enumerate() {
        let (detail, status) =
            answers(&channel, &caseworker, &resident, request, position, n < 40).await;
        let (want_detail, want_status) = &original_answers[&request.request_id];
        assert_eq!(&detail, want_detail, "detail of {}", request.request_id);
        assert_eq!(&status, want_status, "status of {}", request.request_id);
        let shown = detail.applicant.unwrap().id_number.unwrap_or_default();
        assert!(
            shown.len() == ID_NUMBER.len() && shown.ends_with('X') && shown != ID_NUMBER,
            "the identity number is shown masked from the unsealed contact: {shown:?}"
        );
    }
    // A request worked on after the backup stands at its last event up to P.
    for request in &touched_later {
        let stream = format!("request-{}", request.request_id);
        let versions = events.iter().filter(|e| e.stream_id == stream).count() as u64;
        let detail = CaseworkerServiceClient::new(channel.clone())
            .get_request(authed(
                GetRequestRequest {
                    request_id: request.request_id.clone(),
                    min_position: position,
                },
                &caseworker,
            ))
            .await
            .unwrap()
            .into_inner()
            .request
            .unwrap();
        assert_eq!(detail.version, versions, "version of {stream}");
    }
    // The restored server takes new work after P.
    let next = ResidentServiceClient::new(channel.clone())
        .submit_request(authed(
            submission("backup-after-restore", "13599990000"),
            &resident,
        ))
        .await
        .expect("a submission to the restored server")
        .into_inner();
    assert_eq!(next.position, position + 1);

    // Bad input: a backup into a directory that is not empty.
    let full_dir = dir.path().join("full");
    std::fs::create_dir(&full_dir).unwrap();
    std::fs::write(full_dir.join("keep.txt"), b"mine").unwrap();
    let before = files_under(&full_dir);
    let refused = AdminServiceClient::new(channel.clone())
        .backup(authed(
            BackupRequest {
                to_dir: full_dir.display().to_string(),
            },
            &admin,
        ))
        .await
        .expect_err("a non-empty to_dir is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("to_dir") && refused.message().contains("not empty"),
        "{}",
        refused.message()
    );
    assert_eq!(files_under(&full_dir), before, "nothing was written");
    // A relative to_dir, and a caller who is not an admin.
    let relative = AdminServiceClient::new(channel.clone())
        .backup(authed(
            BackupRequest {
                to_dir: "backups/today".into(),
            },
            &admin,
        ))
        .await
        .expect_err("a relative to_dir is refused");
    assert_eq!(relative.code(), tonic::Code::InvalidArgument);
    assert!(
        relative.message().contains("absolute"),
        "{}",
        relative.message()
    );
    let denied = AdminServiceClient::new(channel.clone())
        .backup(authed(
            BackupRequest {
                to_dir: dir.path().join("by-caseworker").display().to_string(),
            },
            &caseworker,
        ))
        .await
        .expect_err("a caseworker may not take backups");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert!(!dir.path().join("by-caseworker").exists());
    server.kill().unwrap();
    server.wait().unwrap();

    // Restore into a directory that is not empty.
    let refused = restore(&backup_dir, &full_dir);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("not empty"), "{}", text(&refused));
    assert_eq!(files_under(&full_dir), before, "nothing was written");

    // A tampered backup: one byte of a segment changed.
    let tampered_dir = dir.path().join("tampered");
    std::fs::create_dir(&tampered_dir).unwrap();
    for (path, bytes) in files_under(&backup_dir) {
        let target = tampered_dir.join(path.strip_prefix(&backup_dir).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, bytes).unwrap();
    }
    let segment = tampered_dir.join("log/segments/00000000.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&segment, bytes).unwrap();
    let target = dir.path().join("from-tampered");
    let refused = restore(&tampered_dir, &target);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("log/segments/00000000.seg does not match the manifest"),
        "{}",
        text(&refused)
    );
    assert!(!target.exists(), "nothing was written");

    // A backup without its manifest (one that did not finish).
    std::fs::remove_file(tampered_dir.join("manifest.json")).unwrap();
    let refused = restore(&tampered_dir, &target);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("no manifest.json"),
        "{}",
        text(&refused)
    );
    assert!(!target.exists(), "nothing was written");
}
