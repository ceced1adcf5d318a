//! Restart: stop the server and start it again on the same data directory (once
//! plainly, once after an offline rebuild of the read models); requests, queues and
//! manager figures answer exactly as before.

use anju_proto::v1::*;

use super::{dibao, one_per_category, Submitted, World};
use crate::helpers::{authed, TestApp};

/// Everything the test compares across a restart.
#[derive(Debug, PartialEq)]
struct Snapshot {
    head: u64,
    statuses: Vec<RequestStatus>,
    details: Vec<RequestDetail>,
    queue: Vec<QueueItem>,
    throughput: GetThroughputResponse,
    backlog: GetBacklogResponse,
    satisfaction: GetSatisfactionResponse,
    lead_times: GetLeadTimesResponse,
}

async fn snapshot(world: &World, requests: &[Submitted], head: u64) -> Snapshot {
    let t = &world.tokens;
    let mut statuses = Vec::new();
    let mut details = Vec::new();
    for submitted in requests {
        statuses.push(world.status(submitted, head).await);
        details.push(
            world
                .detail(&t.admin, &submitted.request_id, head)
                .await
                .unwrap(),
        );
    }
    let mut manager = world.clients.manager.clone();
    Snapshot {
        head: world.head().await,
        statuses,
        details,
        queue: world
            .clients
            .caseworker
            .clone()
            .list_queue(authed(
                ListQueueRequest {
                    min_position: head,
                    ..Default::default()
                },
                &t.caseworker_a,
            ))
            .await
            .unwrap()
            .into_inner()
            .items,
        throughput: manager
            .get_throughput(authed(
                GetThroughputRequest {
                    min_position: head,
                    ..Default::default()
                },
                &t.manager_all,
            ))
            .await
            .unwrap()
            .into_inner(),
        backlog: manager
            .get_backlog(authed(
                GetBacklogRequest {
                    min_position: head,
                    ..Default::default()
                },
                &t.manager_all,
            ))
            .await
            .unwrap()
            .into_inner(),
        satisfaction: manager
            .get_satisfaction(authed(
                GetSatisfactionRequest {
                    min_position: head,
                    ..Default::default()
                },
                &t.manager_a,
            ))
            .await
            .unwrap()
            .into_inner(),
        lead_times: manager
            .get_lead_times(authed(
                GetLeadTimesRequest {
                    min_position: head,
                    ..Default::default()
                },
                &t.manager_a,
            ))
            .await
            .unwrap()
            .into_inner(),
    }
}

#[tokio::test]
async fn a_restart_and_a_rebuild_keep_requests_queues_and_metrics() {
    let world = World::new().await;
    let t = &world.tokens;
    let mut requests = Vec::new();
    for (i, form) in one_per_category().iter().enumerate() {
        let phone = format!("1361111{:04}", i);
        requests.push(
            world
                .submit(&t.resident, form, &format!("restart-{i}-key"), &phone)
                .await
                .unwrap(),
        );
    }
    // Move some along: claimed, accepted, reviewed and fulfilled, rated.
    let mut cw = world.clients.caseworker.clone();
    let a = &t.caseworker_a;
    for (i, submitted) in requests.iter().enumerate().take(4) {
        let id = submitted.request_id.clone();
        cw.claim_request(authed(
            ClaimRequestRequest {
                request_id: id.clone(),
                ..Default::default()
            },
            a,
        ))
        .await
        .unwrap();
        if i >= 1 {
            cw.accept_request(authed(
                AcceptRequestRequest {
                    request_id: id.clone(),
                    ..Default::default()
                },
                a,
            ))
            .await
            .unwrap();
        }
    }
    // YL-JUJIA (index 1) has no approval levels: take it to the end and rate it.
    let jujia = &requests[1];
    let id = jujia.request_id.clone();
    cw.approve_request(authed(
        ApproveRequestRequest {
            request_id: id.clone(),
            level: 0,
            ..Default::default()
        },
        a,
    ))
    .await
    .unwrap();
    cw.start_fulfilment(authed(
        StartFulfilmentRequest {
            request_id: id.clone(),
            ..Default::default()
        },
        a,
    ))
    .await
    .unwrap();
    for step in ["assess", "visit"] {
        cw.complete_fulfilment_step(authed(
            CompleteFulfilmentStepRequest {
                request_id: id.clone(),
                step_code: step.into(),
                ..Default::default()
            },
            a,
        ))
        .await
        .unwrap();
    }
    world
        .clients
        .resident
        .clone()
        .rate_request(authed(
            RateRequestRequest {
                tracking_code: jujia.tracking_code.clone(),
                phone_last4: jujia.phone_last4.clone(),
                grade: SatisfactionGrade::Dissatisfied as i32,
                ..Default::default()
            },
            &t.resident,
        ))
        .await
        .unwrap();
    let head = world.head().await;
    let before = snapshot(&world, &requests, head).await;
    assert_eq!(
        before.queue.len(),
        8,
        "every request of site A is still open work (fulfilled ones wait to be closed)"
    );
    assert_eq!(before.throughput.total.as_ref().unwrap().submitted, 8);

    // A plain restart.
    let World { app, .. } = world;
    let data = app.stop_keeping_data().await;
    let world = World::on(TestApp::spawn_in(data, |_| {}).await).await;
    let after = snapshot(&world, &requests, head).await;
    assert_eq!(before, after);

    // An offline rebuild of the read models, then a start.
    let World { app, .. } = world;
    let data = app.stop_keeping_data().await;
    let config = anju_server_core::Config::ephemeral(data.path().join("data"));
    let report = anju_server_core::rebuild_projections(&config)
        .await
        .expect("rebuild");
    assert_eq!(report.log_events, head);
    assert_eq!(report.position_after, head);
    let world = World::on(TestApp::spawn_in(data, |_| {}).await).await;
    let rebuilt = snapshot(&world, &requests, head).await;
    assert_eq!(before, rebuilt);

    // And it keeps working: a new submission after the restarts.
    let next = world
        .submit(
            &world.tokens.resident,
            &dibao(),
            "restart-after-key",
            "13611119999",
        )
        .await
        .unwrap();
    assert_eq!(next.position, head + 1);
}
