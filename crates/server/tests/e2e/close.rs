//! `CloseRequest`: a fulfilled request is closed by its caseworker (or a supervisor of
//! its site, or an admin); the write answers its log position, the resident's status
//! and timeline show it, and closing in any other state is FAILED_PRECONDITION and
//! writes nothing.

use anju_proto::v1::*;
use tonic::Code;

use super::{assert_code, Form, Submitted, World};
use crate::helpers::authed;

/// Medical-insurance enrolment: no approval levels, two steps.
fn yibao() -> Form {
    Form::text(
        "JY-YIBAO",
        &[("action", "新参保 new enrolment"), ("people", "2")],
    )
}

fn close(request_id: &str) -> CloseRequestRequest {
    CloseRequestRequest {
        request_id: request_id.to_string(),
        ..Default::default()
    }
}

/// Submits, claims (caseworker A), accepts, reviews and starts fulfilment; completes
/// every step when `finish`.
async fn in_fulfilment(world: &World, key: &str, finish: bool) -> Submitted {
    let t = &world.tokens;
    let submitted = world
        .submit(&t.resident, &yibao(), key, "13900007777")
        .await
        .expect("submits");
    let id = submitted.request_id.clone();
    let mut cw = world.clients.caseworker.clone();
    let a = &t.caseworker_a;
    cw.claim_request(authed(
        ClaimRequestRequest {
            request_id: id.clone(),
            ..Default::default()
        },
        a,
    ))
    .await
    .expect("claim");
    cw.accept_request(authed(
        AcceptRequestRequest {
            request_id: id.clone(),
            ..Default::default()
        },
        a,
    ))
    .await
    .expect("accept");
    cw.approve_request(authed(
        ApproveRequestRequest {
            request_id: id.clone(),
            level: 0,
            comment: "核实无误".into(),
            ..Default::default()
        },
        a,
    ))
    .await
    .expect("review");
    cw.start_fulfilment(authed(
        StartFulfilmentRequest {
            request_id: id.clone(),
            ..Default::default()
        },
        a,
    ))
    .await
    .expect("start fulfilment");
    if finish {
        for step in ["register", "confirm-payment"] {
            cw.complete_fulfilment_step(authed(
                CompleteFulfilmentStepRequest {
                    request_id: id.clone(),
                    step_code: step.into(),
                    ..Default::default()
                },
                a,
            ))
            .await
            .expect("step");
        }
    }
    submitted
}

#[tokio::test]
async fn a_fulfilled_request_is_closed_once_and_the_resident_sees_it() {
    let world = World::new().await;
    let t = &world.tokens;
    let mut cw = world.clients.caseworker.clone();

    // Still in fulfilment: refused, nothing written.
    let open = in_fulfilment(&world, "close-open-0001", false).await;
    let head = world.head().await;
    let status = assert_code(
        cw.close_request(authed(close(&open.request_id), &t.caseworker_a))
            .await,
        Code::FailedPrecondition,
    );
    assert!(
        status.message().contains("in_fulfilment"),
        "the message names the state: {status:?}"
    );
    assert_eq!(world.head().await, head, "a refused close writes nothing");

    // Fulfilled: another caseworker of the site may not close it, the assignee may.
    let done = in_fulfilment(&world, "close-done-0001", true).await;
    let head = world.head().await;
    let before = world
        .detail(&t.caseworker_a, &done.request_id, head)
        .await
        .expect("detail");
    assert_eq!(before.state(), RequestState::Fulfilled);
    assert_code(
        cw.close_request(authed(close(&done.request_id), &t.caseworker_a2))
            .await,
        Code::Aborted,
    );
    assert_eq!(world.head().await, head);
    let closed = cw
        .close_request(authed(close(&done.request_id), &t.caseworker_a))
        .await
        .expect("the assignee closes")
        .into_inner();
    assert_eq!(closed.state(), RequestState::Closed);
    assert_eq!(closed.position, head + 1, "one event, at the next position");
    assert_eq!(closed.version, before.version + 1);
    assert_eq!(world.head().await, closed.position);

    let status = world.status(&done, closed.position).await;
    assert_eq!(status.state(), RequestState::Closed);
    let last = status.timeline.last().expect("a timeline");
    assert_eq!(last.event_type, "RequestClosed");
    assert_eq!(last.position, closed.position);
    let detail = world
        .detail(&t.caseworker_a, &done.request_id, closed.position)
        .await
        .expect("detail");
    assert_eq!(detail.state(), RequestState::Closed);
    assert_eq!(detail.version, closed.version);

    // Closing again: the workflow refuses, nothing written.
    let status = assert_code(
        cw.close_request(authed(close(&done.request_id), &t.caseworker_a))
            .await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("closed"), "{status:?}");
    assert_eq!(world.head().await, closed.position);

    // A closed request can still be rated.
    let rated = world
        .clients
        .resident
        .clone()
        .rate_request(authed(
            RateRequestRequest {
                tracking_code: done.tracking_code.clone(),
                phone_last4: done.phone_last4.clone(),
                grade: SatisfactionGrade::Satisfied as i32,
                ..Default::default()
            },
            &t.resident,
        ))
        .await
        .expect("rating a closed request")
        .into_inner();
    assert_eq!(rated.state(), RequestState::Closed);
}

#[tokio::test]
async fn supervisors_and_admins_close_and_bad_input_writes_nothing() {
    let world = World::new().await;
    let t = &world.tokens;
    let mut cw = world.clients.caseworker.clone();
    let by_supervisor = in_fulfilment(&world, "close-sup-0001", true).await;
    let closed = cw
        .close_request(authed(close(&by_supervisor.request_id), &t.supervisor_a))
        .await
        .expect("a supervisor of the site closes")
        .into_inner();
    assert_eq!(closed.state(), RequestState::Closed);
    let by_admin = in_fulfilment(&world, "close-adm-0001", true).await;
    let closed = cw
        .close_request(authed(close(&by_admin.request_id), &t.admin))
        .await
        .expect("an admin closes")
        .into_inner();
    assert_eq!(closed.state(), RequestState::Closed);

    let head = world.head().await;
    // A caseworker of another site does not see the request.
    let other = in_fulfilment(&world, "close-oth-0001", true).await;
    let head_after = world.head().await;
    assert!(head_after > head);
    assert_code(
        cw.close_request(authed(close(&other.request_id), &t.caseworker_b))
            .await,
        Code::NotFound,
    );
    // Residents and managers are turned away at the gate.
    for token in [&t.resident, &t.manager_a] {
        assert_code(
            cw.close_request(authed(close(&other.request_id), token))
                .await,
            Code::PermissionDenied,
        );
    }
    // Not a request id; a stale expected version.
    let status = assert_code(
        cw.close_request(authed(close("not-a-uuid"), &t.caseworker_a))
            .await,
        Code::InvalidArgument,
    );
    assert!(status.message().contains("request_id"), "{status:?}");
    let status = assert_code(
        cw.close_request(authed(
            CloseRequestRequest {
                request_id: other.request_id.clone(),
                expected_version: Some(3),
                idempotency_key: String::new(),
            },
            &t.caseworker_a,
        ))
        .await,
        Code::Aborted,
    );
    assert!(status.message().contains("version 3"), "{status:?}");
    assert_eq!(world.head().await, head_after, "nothing was written");
}
