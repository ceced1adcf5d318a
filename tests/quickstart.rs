//! The README's quick start, done with the real binaries the way an operator and the
//! people they serve would: `anju-server` started with no flags in an empty directory
//! (embedded defaults: `./data`, a token secret created on first start), the `anju token
//! issue` command it prints, run as printed, then a resident's submission and a
//! caseworker's claim and acceptance through the `anju` CLI, the events on a real
//! JetStream, `/metrics`, SIGTERM, and a second start that finds everything as it was.
//!
//! Only the listen ports (0: any free one, since tests run side by side) and the NATS
//! address (a nats-server of this test's own) differ from the defaults.

use std::time::{Duration, Instant};

use anju_system_tests::{
    http_get, issue_token, metric, shell_words, start_server, workspace_binary, Cli,
};
use anju_testkit::NatsServer;
use async_nats::jetstream;

const PHONE: &str = "13800001234";
const ID_NUMBER: &str = "11010519491231002X";
const SITE: &str = "xingfu";

/// Every message of `ANJU_EVENTS` once it holds `count` (or whatever it holds after 60 s).
async fn stream_messages(url: &str, count: u64) -> Vec<jetstream::message::StreamMessage> {
    let client = async_nats::connect(url).await.expect("connect to nats");
    let context = jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut stream = loop {
        match context.get_stream("ANJU_EVENTS").await {
            Ok(stream) => break stream,
            Err(error) if Instant::now() > deadline => {
                panic!("the relay never created ANJU_EVENTS: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    loop {
        let messages = stream.info().await.expect("stream info").state.messages;
        if messages >= count || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = stream.info().await.expect("stream info").state.clone();
    let mut messages = Vec::new();
    for sequence in state.first_sequence..=state.last_sequence {
        if state.messages == 0 {
            break;
        }
        messages.push(
            stream
                .get_raw_message(sequence)
                .await
                .unwrap_or_else(|e| panic!("stream message {sequence}: {e}")),
        );
    }
    messages
}

fn event_count(cli: &Cli, admin: &str) -> u64 {
    let stats = cli.json(admin, &["log", "stats"]);
    stats["event_count"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("log stats has no event_count: {stats}"))
}

fn assert_no_personal_data(what: &str, text: &str) {
    for secret in [PHONE, ID_NUMBER] {
        assert!(
            !text.contains(secret),
            "{what} holds personal data in clear ({secret}):\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_start_serves_a_request_from_submission_to_acceptance_and_keeps_it_across_a_restart(
) {
    let server_binary = workspace_binary("anju-server", "ANJU_SERVER_BIN");
    let cli_binary = workspace_binary("anju", "ANJU_CLI_BIN");
    let nats = NatsServer::start();
    let home = tempfile::tempdir().unwrap();
    let home = home.path();

    // First start in an empty directory: the data directory and the token secret appear,
    // and the server says how to issue a token.
    let server = start_server(&server_binary, home, &nats.url());
    assert!(
        home.join("data/token-secret").is_file(),
        "no ./data/token-secret after the first start; the directory holds {:?}",
        std::fs::read_dir(home)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect::<Vec<_>>()
    );
    let printed = server.printed();
    assert!(
        printed
            .iter()
            .any(|l| l.contains("first start, created the token secret")),
        "{printed:?}"
    );
    let how = printed
        .iter()
        .find(|l| l.trim_start().starts_with("anju token issue"))
        .unwrap_or_else(|| panic!("the server printed no `anju token issue` line: {printed:?}"));
    let words: Vec<String> = shell_words(how)
        .into_iter()
        .skip(3)
        .map(|w| {
            if w == "<your-name>" {
                "operator".to_string()
            } else {
                w
            }
        })
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let admin = issue_token(&cli_binary, home, &words);
    let resident = issue_token(
        &cli_binary,
        home,
        &[
            "--role",
            "resident",
            "--subject",
            "resident-1",
            "--data-dir",
            "./data",
        ],
    );
    let caseworker = issue_token(
        &cli_binary,
        home,
        &[
            "--role",
            "caseworker",
            "--site",
            SITE,
            "--subject",
            "cw-1",
            "--data-dir",
            "./data",
        ],
    );

    let cli = Cli {
        binary: cli_binary.clone(),
        working_dir: home.to_path_buf(),
        server: server.grpc_url.clone(),
    };
    assert_eq!(cli.ok(None, &["health"]).trim(), "SERVING");

    // A resident submits a repair request; a caseworker of the site claims and accepts it.
    let problem = cli.first_choice(&resident, "SQ-WEIXIU", "problem");
    let problem_field = format!("problem={problem}");
    let submit = [
        "submit",
        "SQ-WEIXIU",
        "--site",
        SITE,
        "--name",
        "王芳",
        "--phone",
        PHONE,
        "--id-number",
        ID_NUMBER,
        "--field",
        &problem_field,
        "--field",
        "location=3栋2单元501",
        "--idempotency-key",
        "kiosk-visit-1",
    ];
    let submitted = cli.json(&resident, &submit);
    assert_eq!(submitted["state"], "REQUEST_STATE_SUBMITTED", "{submitted}");
    let id = submitted["request_id"].as_str().unwrap().to_string();
    let tracking = submitted["tracking_code"].as_str().unwrap().to_string();
    assert_no_personal_data("the submission's answer", &submitted.to_string());

    let queue = cli.json(&caseworker, &["queue", "--site", SITE]);
    assert!(queue.to_string().contains(&id), "{queue}");
    assert_eq!(cli.json(&caseworker, &["claim", &id])["assignee"], "cw-1");
    let accepted = cli.json(&caseworker, &["accept", &id, "--comment", "材料齐全"]);
    assert_eq!(accepted["state"], "REQUEST_STATE_ACCEPTED", "{accepted}");
    let status = cli.json(&resident, &["status", &tracking, "--phone-last4", "1234"]);
    assert_eq!(status["state"], "REQUEST_STATE_ACCEPTED", "{status}");
    assert_no_personal_data("the status answer", &status.to_string());

    // Every event of the log reaches JetStream, none with the phone or identity number
    // in clear.
    let events = event_count(&cli, &admin);
    assert!(
        events >= 3,
        "submit, claim and accept wrote {events} events"
    );
    let messages = stream_messages(&nats.url(), events).await;
    assert_eq!(
        messages.len() as u64,
        events,
        "the stream holds other than the log's events"
    );
    let mut types = Vec::new();
    for message in &messages {
        assert!(
            message.subject.starts_with("anju.events."),
            "{}",
            message.subject
        );
        let payload = String::from_utf8_lossy(&message.payload);
        assert_no_personal_data(
            &format!("the NATS message on {}", message.subject),
            &payload,
        );
        types.push(message.subject.rsplit('.').next().unwrap().to_string());
    }
    assert!(
        types.iter().any(|t| t == "RequestSubmitted")
            && types.iter().any(|t| t == "RequestAccepted"),
        "{types:?}"
    );

    // /metrics on the HTTP port shows the server up, the relay connected and caught up,
    // and the read models at the log's head.
    let (status_line, body) = http_get(&server.http_addr, "/metrics");
    assert!(status_line.contains("200"), "{status_line}");
    assert_eq!(metric(&body, "anju_up"), Some(1.0), "{body}");
    assert_eq!(metric(&body, "anju_relay_connected"), Some(1.0), "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http_get(&server.http_addr, "/metrics");
        if metric(&body, "anju_relay_lag_events") == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay's lag never reached 0:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        metric(&body, "anju_projection_position").unwrap_or(0.0) >= events as f64,
        "{body}"
    );

    // SIGTERM: a graceful stop, exit code 0; the logs never held personal data.
    let (exit, printed) = server.terminate(Duration::from_secs(30));
    assert_eq!(exit.code(), Some(0), "{printed:?}");
    let log = printed.join("\n");
    assert!(log.contains("request submitted"), "{log}");
    assert_no_personal_data("the server's log", &log);

    // Second start from the same directory: the secret is kept (the old tokens work),
    // and the request, its queue entry and the log are as they were, with nothing
    // published twice.
    let server = start_server(&server_binary, home, &nats.url());
    let printed = server.printed();
    assert!(
        !printed.iter().any(|l| l.contains("first start")),
        "a second start created a new secret: {printed:?}"
    );
    let cli = Cli {
        server: server.grpc_url.clone(),
        ..cli
    };
    let status = cli.json(&resident, &["status", &tracking, "--phone-last4", "1234"]);
    assert_eq!(status["state"], "REQUEST_STATE_ACCEPTED", "{status}");
    let queue = cli.json(&caseworker, &["queue", "--site", SITE]);
    assert!(queue.to_string().contains(&id), "{queue}");
    let again = cli.json(&resident, &submit);
    assert_eq!(
        again["request_id"],
        id.as_str(),
        "a retry after the restart made a new request: {again}"
    );
    assert_eq!(event_count(&cli, &admin), events);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stream_messages(&nats.url(), events).await.len() as u64,
        events
    );
    let (exit, printed) = server.terminate(Duration::from_secs(30));
    assert_eq!(exit.code(), Some(0), "{printed:?}");
    assert_no_personal_data("the server's log", &printed.join("\n"));
}
