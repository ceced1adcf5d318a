//! The demo clock (`--demo-clock`) over the API: AdminService.AdvanceClock moves time
//! by working days, the scheduler fires what fell due before the call answers —
//! deemed acceptance, the warning, the yellow and the red card, each exactly once, in
//! the request's timeline and the SLA report — and queues and statuses read the new
//! now. Without the flag the call is refused and names it; only admins may call it;
//! a restart keeps the demo's time.

use anju_proto::v1::*;
use tonic::Code;

use super::{assert_code, Form, Submitted, World};
use crate::helpers::{authed, TestApp};

const DAY_MS: i64 = 86_400_000;
const CST_MS: i64 = 8 * 3_600_000;

/// Medical-insurance enrolment: promised in 5 working days, so the warning is due after
/// 4 (80%), the yellow card after 5 and the red card after 10.
fn yibao() -> Form {
    Form::text(
        "JY-YIBAO",
        &[("action", "新参保 new enrolment"), ("people", "2")],
    )
}

fn millis(at: &prost_types::Timestamp) -> i64 {
    at.seconds * 1000 + i64::from(at.nanos) / 1_000_000
}

async fn clock(world: &World) -> GetClockResponse {
    world
        .clients
        .admin
        .clone()
        .get_clock(authed(GetClockRequest {}, &world.tokens.admin))
        .await
        .expect("get clock")
        .into_inner()
}

async fn advance(world: &World, working_days: u32) -> AdvanceClockResponse {
    world
        .clients
        .admin
        .clone()
        .advance_clock(authed(
            AdvanceClockRequest {
                by: None,
                working_days,
            },
            &world.tokens.admin,
        ))
        .await
        .expect("advance clock")
        .into_inner()
}

async fn sla(world: &World, min_position: u64) -> SlaReportRow {
    world
        .clients
        .manager
        .clone()
        .get_sla_report(authed(
            GetSlaReportRequest {
                min_position,
                ..Default::default()
            },
            &world.tokens.manager_a,
        ))
        .await
        .expect("sla report")
        .into_inner()
        .total
        .expect("a total row")
}

fn count(status: &RequestStatus, event_type: &str) -> usize {
    status
        .timeline
        .iter()
        .filter(|entry| entry.event_type == event_type)
        .count()
}

async fn submit(world: &World, key: &str, phone: &str) -> Submitted {
    world
        .submit(&world.tokens.resident, &yibao(), key, phone)
        .await
        .expect("submits")
}

#[tokio::test]
async fn advancing_past_deadlines_fires_each_timer_once() {
    let world = World::on(TestApp::spawn_with(|config| config.demo_clock = true).await).await;
    let t = &world.tokens;
    let start = clock(&world).await;
    assert!(start.demo_clock);
    // Start at 09:00 Beijing time, so the steps below never straddle a midnight.
    let now = millis(start.now.as_ref().unwrap());
    let to_nine = (9 * 3_600_000 - (now + CST_MS).rem_euclid(DAY_MS)).rem_euclid(DAY_MS);
    let moved = world
        .clients
        .admin
        .clone()
        .advance_clock(authed(
            AdvanceClockRequest {
                by: Some(prost_types::Duration {
                    seconds: to_nine / 1000 + 1,
                    nanos: 0,
                }),
                working_days: 0,
            },
            &t.admin,
        ))
        .await
        .expect("advance by a duration")
        .into_inner();
    assert!(millis(moved.now.as_ref().unwrap()) >= now + to_nine);

    // A: accepted now. B: submitted and left alone.
    let a = submit(&world, "clock-a-0001", "13600001111").await;
    let mut cw = world.clients.caseworker.clone();
    for step in 0..2 {
        let request = ClaimRequestRequest {
            request_id: a.request_id.clone(),
            ..Default::default()
        };
        if step == 0 {
            cw.claim_request(authed(request, &t.caseworker_a))
                .await
                .expect("claim");
        } else {
            cw.accept_request(authed(
                AcceptRequestRequest {
                    request_id: a.request_id.clone(),
                    ..Default::default()
                },
                &t.caseworker_a,
            ))
            .await
            .expect("accept");
        }
    }
    let b = submit(&world, "clock-b-0001", "13600002222").await;

    // (working days to move, timers expected to fire)
    let steps = [
        // Day 4: 80% of A's 5 days are used, but the warning is due only once day 4 ends.
        (4, 0),
        // Day 5: A's warning.
        (1, 1),
        // Day 6: A's yellow card; B deemed accepted (5 days without an intake decision).
        (1, 2),
        // Day 11: A's red card (5 working days past its deadline); B's warning.
        (5, 2),
        // Day 12: B's yellow card.
        (1, 1),
        // Nothing more until B's red card.
        (2, 0),
    ];
    let mut previous = millis(moved.now.as_ref().unwrap());
    for (days, expected) in steps {
        let advanced = advance(&world, days).await;
        let now = millis(advanced.now.as_ref().unwrap());
        assert!(
            now > previous + (i64::from(days) - 1) * DAY_MS,
            "moved {days} working days"
        );
        assert_eq!(
            (now + CST_MS).rem_euclid(DAY_MS) / 60_000,
            (previous + CST_MS).rem_euclid(DAY_MS) / 60_000,
            "the same time of day"
        );
        previous = now;
        assert_eq!(
            advanced.timers_fired, expected,
            "after {days} more working days"
        );
        assert_eq!(advanced.position, world.head().await);
    }

    let position = world.head().await;
    let a_status = world.status(&a, position).await;
    for event_type in ["WarningRaised", "YellowCardIssued", "RedCardIssued"] {
        assert_eq!(count(&a_status, event_type), 1, "A: {event_type}");
    }
    let deadline = a_status.deadline.clone().expect("A's deadline");
    assert!(
        deadline.overdue && deadline.working_days_left < 0.0,
        "{deadline:?}"
    );
    let detail = world
        .detail(&t.caseworker_a, &a.request_id, position)
        .await
        .expect("A's detail");
    let deadline = detail.deadline.clone().expect("A's deadline");
    assert_eq!(deadline.sla_status(), SlaStatus::RedCard, "{deadline:?}");
    assert_eq!(
        detail
            .timeline
            .iter()
            .filter(|e| e.event_type == "RedCardIssued")
            .count(),
        1
    );
    let b_status = world.status(&b, position).await;
    assert_eq!(b_status.state(), RequestState::Accepted, "deemed accepted");
    for (event_type, n) in [
        ("RequestAccepted", 1),
        ("WarningRaised", 1),
        ("YellowCardIssued", 1),
        ("RedCardIssued", 0),
    ] {
        assert_eq!(count(&b_status, event_type), n, "B: {event_type}");
    }
    let report = sla(&world, position).await;
    assert_eq!(
        (report.warnings, report.yellow_cards, report.red_cards),
        (2, 2, 1),
        "{report:?}"
    );

    // The queue reads the new now: both are overdue.
    let queue = cw
        .list_queue(authed(
            ListQueueRequest {
                filter: Some(QueueFilter {
                    overdue_only: true,
                    ..Default::default()
                }),
                min_position: position,
                ..Default::default()
            },
            &t.caseworker_a,
        ))
        .await
        .expect("queue")
        .into_inner();
    let overdue: Vec<&str> = queue.items.iter().map(|i| i.request_id.as_str()).collect();
    assert!(
        overdue.contains(&a.request_id.as_str()) && overdue.contains(&b.request_id.as_str()),
        "{overdue:?}"
    );

    // A restart keeps the demo's time.
    let before = millis(clock(&world).await.now.as_ref().unwrap());
    let World { app, .. } = world;
    let data = app.stop_keeping_data().await;
    let world = World::on(TestApp::spawn_in(data, |config| config.demo_clock = true).await).await;
    let after = clock(&world).await;
    assert!(millis(after.now.as_ref().unwrap()) >= before);
    assert!(after.offset.unwrap().seconds >= 14 * 86_400);
    let report = sla(&world, world.head().await).await;
    assert_eq!(
        (report.warnings, report.yellow_cards, report.red_cards),
        (2, 2, 1),
        "nothing fired twice across the restart"
    );

    // Without the flag the same data directory is refused: its clock would run backwards.
    let World { app, .. } = world;
    let data = app.stop_keeping_data().await;
    let config = anju_server_core::Config::ephemeral(data.path().join("data"));
    let error = anju_server_core::App::build(config)
        .await
        .expect_err("a demo data directory needs --demo-clock");
    assert!(error.to_string().contains("--demo-clock"), "{error}");
}

#[tokio::test]
async fn only_admins_advance_and_only_with_the_flag() {
    let world = World::new().await;
    let t = &world.tokens;
    let mut admin = world.clients.admin.clone();
    let request = || AdvanceClockRequest {
        by: None,
        working_days: 1,
    };
    for token in [
        &t.caseworker_a,
        &t.supervisor_a,
        &t.manager_all,
        &t.resident,
    ] {
        assert_code(
            admin.advance_clock(authed(request(), token)).await,
            Code::PermissionDenied,
        );
        assert_code(
            admin.get_clock(authed(GetClockRequest {}, token)).await,
            Code::PermissionDenied,
        );
    }
    let status = assert_code(
        admin.advance_clock(authed(request(), &t.admin)).await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("--demo-clock"), "{status:?}");
    let system = clock(&world).await;
    assert!(!system.demo_clock);
    assert_eq!(system.offset.unwrap_or_default().seconds, 0);
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!((millis(system.now.as_ref().unwrap()) - real).abs() < 60_000);

    // With the flag: bad requests are named and move nothing.
    let world = World::on(TestApp::spawn_with(|config| config.demo_clock = true).await).await;
    let mut admin = world.clients.admin.clone();
    let token = &world.tokens.admin;
    for (bad, field) in [
        (
            AdvanceClockRequest {
                by: None,
                working_days: 0,
            },
            "by",
        ),
        (
            AdvanceClockRequest {
                by: Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 0,
                }),
                working_days: 1,
            },
            "by",
        ),
        (
            AdvanceClockRequest {
                by: Some(prost_types::Duration {
                    seconds: -60,
                    nanos: 0,
                }),
                working_days: 0,
            },
            "by",
        ),
        (
            AdvanceClockRequest {
                by: None,
                working_days: 251,
            },
            "working_days",
        ),
        (
            AdvanceClockRequest {
                by: Some(prost_types::Duration {
                    seconds: 400 * 86_400,
                    nanos: 0,
                }),
                working_days: 0,
            },
            "by",
        ),
    ] {
        let status = assert_code(
            admin.advance_clock(authed(bad, token)).await,
            Code::InvalidArgument,
        );
        assert!(status.message().contains(field), "{bad:?}: {status:?}");
    }
    assert_eq!(clock(&world).await.offset.unwrap_or_default().seconds, 0);
    assert_code(
        admin
            .advance_clock(authed(request(), &world.tokens.caseworker_a))
            .await,
        Code::PermissionDenied,
    );
    let moved = admin
        .advance_clock(authed(request(), token))
        .await
        .expect("an admin advances")
        .into_inner();
    assert!(moved.offset.unwrap().seconds > 0);
}
