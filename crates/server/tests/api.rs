//! End-to-end tests of the server: a real `App` on free loopback ports with a
//! temporary data directory, called over gRPC, gRPC-Web (HTTP/1) and plain HTTP. The
//! workflow, access, input and restart tests are in `e2e/`.

mod e2e;
mod helpers;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anju_auth::{Claims, Role, Secret};
use anju_proto::v1::resident_service_client::ResidentServiceClient;
use anju_proto::v1::{ListServicesRequest, SubmitRequestRequest};
use helpers::TestApp;
use prost::Message;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(secret: &Secret, role: Role, exp: u64) -> String {
    let claims = Claims {
        sub: "test-user".into(),
        role,
        sites: vec!["site-1".into()],
        categories: vec![],
        exp,
        iat: now(),
    };
    anju_auth::issue(secret, &claims)
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn health_check_reports_serving_for_the_server_and_each_service() {
    let app = TestApp::spawn().await;
    let mut health = HealthClient::new(app.channel().await);
    for service in ["", "anju.v1.ResidentService", "anju.v1.EventLogService"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            response.status(),
            ServingStatus::Serving,
            "service {service:?}"
        );
    }
}

#[tokio::test]
async fn reflection_lists_the_anju_services_in_v1_and_v1alpha() {
    let app = TestApp::spawn().await;

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut client = ServerReflectionClient::new(app.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!(
            "expected a service list, got {:?}",
            response.message_response
        );
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in anju_proto::SERVICE_NAMES {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }

    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let mut alpha = AlphaClient::new(app.channel().await);
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::FileContainingSymbol(
            "anju.v1.ResidentService".into(),
        )),
    };
    let mut responses = alpha
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().expect("one response");
    assert!(
        matches!(response.message_response, Some(AlphaResponse::FileDescriptorResponse(ref files)) if !files.file_descriptor_proto.is_empty()),
        "{:?}",
        response.message_response
    );
}

#[tokio::test]
async fn call_without_token_is_unauthenticated_and_says_how_to_get_one() {
    let app = TestApp::spawn().await;
    let mut client = ResidentServiceClient::new(app.channel().await);
    let status = client
        .list_services(ListServicesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("anju token issue"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn forged_token_is_unauthenticated() {
    let app = TestApp::spawn().await;
    let forger = Secret::from_bytes(vec![9; 32]);
    let forged = token(&forger, Role::Admin, now() + 3600);
    let mut client = ResidentServiceClient::new(app.channel().await);
    let status = client
        .list_services(with_token(ListServicesRequest::default(), &forged))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("signature"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn expired_token_is_unauthenticated_naming_expiry() {
    let app = TestApp::spawn().await;
    let expired = token(&app.secret, Role::Resident, now() - 1);
    let mut client = ResidentServiceClient::new(app.channel().await);
    let status = client
        .list_services(with_token(ListServicesRequest::default(), &expired))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("expired"), "{}", status.message());
    assert!(
        status.message().contains("anju token issue"),
        "{}",
        status.message()
    );

    let metrics = app.http_get("/metrics").await;
    assert!(
        metrics.contains("anju_auth_failures_total{reason=\"expired\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn valid_token_reaches_the_handler_which_checks_the_role() {
    let app = TestApp::spawn().await;
    let mut client = ResidentServiceClient::new(app.channel().await);

    let resident = token(&app.secret, Role::Resident, now() + 3600);
    let services = client
        .list_services(with_token(ListServicesRequest::default(), &resident))
        .await
        .expect("a resident lists the catalogue")
        .into_inner()
        .services;
    assert_eq!(services.len(), 18, "every service of the shipped catalogue");

    let manager = token(&app.secret, Role::Manager, now() + 3600);
    let status = client
        .list_services(with_token(ListServicesRequest::default(), &manager))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

#[tokio::test]
async fn oversized_message_is_refused() {
    let app = TestApp::spawn_with(|config| config.max_message_bytes = 4096).await;
    let mut client = ResidentServiceClient::new(app.channel().await);
    let resident = token(&app.secret, Role::Resident, now() + 3600);
    let big = SubmitRequestRequest {
        idempotency_key: "x".repeat(10_000),
        ..SubmitRequestRequest::default()
    };
    let status = client
        .submit_request(with_token(big, &resident))
        .await
        .unwrap_err();
    // tonic answers a message over the decoding limit with OUT_OF_RANGE.
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn grpc_web_over_http1_answers_cors_preflight_and_calls() {
    let app = TestApp::spawn().await;
    let path = "/grpc.health.v1.Health/Check";

    let preflight = app
        .http1_exchange(
            &format!(
                "OPTIONS {path} HTTP/1.1\r\nhost: localhost\r\norigin: https://kiosk.example\r\n\
             access-control-request-method: POST\r\n\
             access-control-request-headers: content-type,x-grpc-web,authorization\r\n\
             connection: close\r\n\r\n"
            )
            .into_bytes(),
        )
        .await;
    assert!(
        preflight.status_line.contains(" 200 ") || preflight.status_line.contains(" 204 "),
        "{}",
        preflight.status_line
    );
    assert_eq!(
        preflight.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    let allowed = preflight
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_lowercase();
    for header in ["x-grpc-web", "content-type", "authorization"] {
        assert!(allowed.contains(header), "{header} not in {allowed}");
    }
    assert!(preflight
        .header("access-control-allow-methods")
        .unwrap_or_default()
        .contains("POST"));

    let message = HealthCheckRequest {
        service: String::new(),
    }
    .encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let mut call = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\norigin: https://kiosk.example\r\n\
         content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\naccept: application/grpc-web+proto\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        frame.len()
    )
    .into_bytes();
    call.extend_from_slice(&frame);
    let response = app.http1_exchange(&call).await;
    assert!(
        response.status_line.contains(" 200 "),
        "{}",
        response.status_line
    );
    assert!(response
        .header("content-type")
        .unwrap_or_default()
        .starts_with("application/grpc-web"));
    assert_eq!(
        response.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    let exposed = response
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_lowercase();
    assert!(exposed.contains("grpc-status"), "{exposed}");

    // The body is a data frame (flag 0) with the response, then a trailer frame
    // (flag 0x80) with grpc-status.
    let body = &response.body;
    assert!(body.len() > 5, "body {body:?}");
    assert_eq!(body[0], 0);
    let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    let reply = HealthCheckResponse::decode(&body[5..5 + length]).unwrap();
    assert_eq!(reply.status(), ServingStatus::Serving);
    let trailer = &body[5 + length..];
    assert_eq!(trailer[0], 0x80);
    let trailer_text = String::from_utf8_lossy(&trailer[5..]).to_lowercase();
    assert!(trailer_text.contains("grpc-status:0"), "{trailer_text}");
}

#[tokio::test]
async fn metrics_and_healthz_are_served_over_plain_http() {
    let app = TestApp::spawn().await;
    let mut health = HealthClient::new(app.channel().await);
    health.check(HealthCheckRequest::default()).await.unwrap();
    let metrics = app.http_get("/metrics").await;
    assert!(metrics.contains("anju_up 1"), "{metrics}");
    assert!(
        metrics.contains("anju_grpc_requests_total{method=\"/grpc.health.v1.Health/Check\"} 1"),
        "{metrics}"
    );
    assert_eq!(app.http_get("/healthz").await, "ok\n");
}

#[tokio::test]
async fn stopping_ends_the_run_and_closes_the_listener() {
    let app = TestApp::spawn().await;
    let channel = app.channel().await;
    let finished = app.stop().await;
    assert!(finished.is_ok(), "{finished:?}");
    // The listener is closed: a new call cannot connect.
    let mut health = HealthClient::new(channel);
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        health.check(HealthCheckRequest::default()),
    )
    .await;
    assert!(!matches!(result, Ok(Ok(_))), "still serving after stop");
}

#[tokio::test]
async fn first_start_creates_the_secret_and_a_given_secret_file_is_used() {
    let app = TestApp::spawn().await;
    let secret_path = app.data_dir().join(anju_auth::SECRET_FILE_NAME);
    assert_eq!(
        anju_auth::read_secret_file(&secret_path).unwrap(),
        app.secret
    );

    let other = tempfile::tempdir().unwrap();
    let given = other.path().join("my-secret");
    std::fs::write(&given, [5u8; 32]).unwrap();
    let app = TestApp::spawn_with(|config| config.secret_file = Some(given.clone())).await;
    assert_eq!(app.secret.as_bytes(), &[5u8; 32]);
    assert!(!app.data_dir().join(anju_auth::SECRET_FILE_NAME).exists());
}

#[tokio::test]
async fn calls_over_the_concurrency_limit_are_shed_with_resource_exhausted() {
    let app = TestApp::spawn_with(|config| config.concurrency_limit = 1).await;
    // A gRPC-Web call whose body never completes holds the only slot: the handler
    // is still waiting for its request message.
    let mut stalled = tokio::net::TcpStream::connect(app.grpc_addr).await.unwrap();
    let head = "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nhost: localhost\r\n\
                content-type: application/grpc-web+proto\r\ncontent-length: 100\r\n\r\n\0\0\0";
    tokio::io::AsyncWriteExt::write_all(&mut stalled, head.as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut health = HealthClient::new(app.channel().await);
    let status = health
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // Closing the stalled connection frees the slot.
    drop(stalled);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match health.check(HealthCheckRequest::default()).await {
            Ok(_) => break,
            Err(status) if std::time::Instant::now() < deadline => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("slot never freed: {status:?}"),
        }
    }
}

#[tokio::test]
async fn a_stop_lets_the_call_in_flight_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn().await;
    // Start a gRPC-Web health check and send only part of its body, so the call is
    // in flight when the stop comes.
    let message = HealthCheckRequest {
        service: String::new(),
    }
    .encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let head = format!(
        "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nhost: localhost\r\n\
         content-type: application/grpc-web+proto\r\ncontent-length: {}\r\n\r\n",
        frame.len()
    );
    let mut stream = tokio::net::TcpStream::connect(app.grpc_addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&frame[..2]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !stopping.is_finished(),
        "the stop must wait for the call in flight"
    );

    stream.write_all(&frame[2..]).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the call is answered")
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("grpc-status:0"), "{text}");
    let finished = tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the stop completes after the call")
        .unwrap();
    assert!(finished.is_ok(), "{finished:?}");
}
