//! Concurrency at the edge: two caseworkers claiming one request at once (exactly one
//! wins, the other gets ABORTED), and submission retries with one idempotency key
//! (same request, same position, no new event).

use anju_proto::v1::*;
use tonic::Code;

use super::{dibao, World};
use crate::helpers::authed;

#[tokio::test]
async fn two_caseworkers_claim_at_once_and_exactly_one_wins() {
    let world = World::new().await;
    let t = &world.tokens;
    for round in 0..5 {
        let submitted = world
            .submit(
                &t.resident,
                &dibao(),
                &format!("claim-race-{round}-key"),
                "13900001111",
            )
            .await
            .unwrap();
        let claim = |token: String| {
            let mut client = world.clients.caseworker.clone();
            let id = submitted.request_id.clone();
            async move {
                client
                    .claim_request(authed(
                        ClaimRequestRequest {
                            request_id: id,
                            ..Default::default()
                        },
                        &token,
                    ))
                    .await
            }
        };
        let (a, b) = tokio::join!(
            claim(t.caseworker_a.clone()),
            claim(t.caseworker_a2.clone())
        );
        let (winner, loser) = match (a, b) {
            (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won.into_inner(), lost),
            other => panic!("exactly one claim must win: {other:?}"),
        };
        assert_eq!(loser.code(), Code::Aborted, "{loser:?}");
        assert!(loser.message().contains("claimed"), "{}", loser.message());
        let detail = world
            .detail(&t.caseworker_a, &submitted.request_id, winner.position)
            .await
            .unwrap();
        assert_eq!(detail.assignee, winner.assignee);
        let claims = detail
            .timeline
            .iter()
            .filter(|e| e.event_type == "RequestClaimed")
            .count();
        assert_eq!(claims, 1, "one claim event only");
    }
}

#[tokio::test]
async fn a_stale_expected_version_is_aborted_and_writes_nothing() {
    let world = World::new().await;
    let t = &world.tokens;
    let submitted = world
        .submit(&t.resident, &dibao(), "stale-version-key", "13900002222")
        .await
        .unwrap();
    let head = world.head().await;
    let status = world
        .clients
        .caseworker
        .clone()
        .claim_request(authed(
            ClaimRequestRequest {
                request_id: submitted.request_id.clone(),
                expected_version: Some(7),
                ..Default::default()
            },
            &t.caseworker_a,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert!(
        status.message().contains("version 1"),
        "{}",
        status.message()
    );
    assert_eq!(world.head().await, head);
}

#[tokio::test]
async fn submission_retries_with_one_key_answer_the_first_request() {
    let world = World::new().await;
    let t = &world.tokens;
    let first = world
        .submit(&t.resident, &dibao(), "idem-key-0001", "13900003333")
        .await
        .unwrap();
    assert!(!first.replayed);
    let head = world.head().await;
    for _ in 0..3 {
        let again = world
            .submit(&t.resident, &dibao(), "idem-key-0001", "13900003333")
            .await
            .unwrap();
        assert!(again.replayed);
        assert_eq!(again.request_id, first.request_id);
        assert_eq!(again.tracking_code, first.tracking_code);
        assert_eq!(again.position, first.position);
    }
    // Concurrent retries too.
    let form = dibao();
    let retries = (0..4).map(|_| world.submit(&t.resident, &form, "idem-key-0001", "13900003333"));
    for again in futures::future::join_all(retries).await {
        let again = again.unwrap();
        assert_eq!(again.tracking_code, first.tracking_code);
        assert_eq!(again.position, first.position);
    }
    assert_eq!(world.head().await, head, "retries write no event");

    // The same key with different content is ALREADY_EXISTS, and writes nothing.
    let mut changed = dibao();
    changed.typed_answers[0].1 = form_value::Value::Integer(5);
    let status = world
        .submit(&t.resident, &changed, "idem-key-0001", "13900003333")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    assert_eq!(world.head().await, head);

    // Another resident's same key is their own request.
    let other = world
        .submit(&t.other_resident, &dibao(), "idem-key-0001", "13900004444")
        .await
        .unwrap();
    assert_ne!(other.request_id, first.request_id);
    assert_eq!(world.head().await, head + 1);
}
