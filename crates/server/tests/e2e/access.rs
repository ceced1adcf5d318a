//! The role × site × method access matrix: every RPC called by every kind of caller —
//! no token, resident, kiosk of site A, caseworker of site A, caseworker of site B,
//! supervisor of site A, manager of site A, province manager, admin — against a
//! request of site A brought to the stage the method needs. Each cell names the one
//! outcome allowed.

use anju_proto::v1::*;
use tokio_stream::StreamExt;
use tonic::{Code, Status};

use super::{Form, Submitted, World};
use crate::helpers::authed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// OK.
    Ok,
    /// PERMISSION_DENIED.
    Denied,
    /// NOT_FOUND: the request is outside the caller's scope and stays invisible.
    Hidden,
    /// UNAUTHENTICATED.
    Unauth,
}
use Outcome::{Denied as D, Hidden as H, Ok as O, Unauth as U};

/// Callers, in the order of the table columns.
const CALLERS: [&str; 9] = [
    "none",
    "resident",
    "kiosk",
    "cw-a",
    "cw-b",
    "supervisor",
    "manager-a",
    "manager-*",
    "admin",
];

/// How far a fresh request is taken before the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Submitted,
    Claimed,
    AwaitingInfo,
    Accepted,
    ExtensionPending,
    InFulfilment,
    Fulfilled,
    RatedBadly,
    Appealed,
}

/// Medical-insurance enrolment: no approval levels, two steps.
fn form() -> Form {
    Form::text(
        "JY-YIBAO",
        &[("action", "新参保 new enrolment"), ("people", "2")],
    )
}

struct Matrix<'a> {
    world: &'a World,
    next: std::cell::Cell<u32>,
}

impl Matrix<'_> {
    fn token(&self, caller: &str) -> Option<String> {
        let t = &self.world.tokens;
        Some(
            match caller {
                "none" => return None,
                "resident" => &t.resident,
                "kiosk" => &t.kiosk,
                "cw-a" => &t.caseworker_a,
                "cw-b" => &t.caseworker_b,
                "supervisor" => &t.supervisor_a,
                "manager-a" => &t.manager_a,
                "manager-*" => &t.manager_all,
                "admin" => &t.admin,
                other => panic!("unknown caller {other}"),
            }
            .clone(),
        )
    }

    /// A fresh request of site A, taken to `stage` by the resident and caseworker A.
    async fn prepare(&self, stage: Stage) -> Submitted {
        let n = self.next.get();
        self.next.set(n + 1);
        let w = self.world;
        let t = &w.tokens;
        let submitted = w
            .submit(
                &t.resident,
                &form(),
                &format!("matrix-{n:05}"),
                "13700001234",
            )
            .await
            .expect("submits");
        let id = submitted.request_id.clone();
        let mut cw = w.clients.caseworker.clone();
        let cw_call = |token: &str| token.to_string();
        let a = cw_call(&t.caseworker_a);
        if stage >= Stage::Claimed {
            cw.claim_request(authed(
                ClaimRequestRequest {
                    request_id: id.clone(),
                    ..Default::default()
                },
                &a,
            ))
            .await
            .unwrap();
        }
        if stage == Stage::AwaitingInfo {
            cw.request_info(authed(
                RequestInfoRequest {
                    request_id: id.clone(),
                    missing: vec![MissingMaterial {
                        material_code: "photo".into(),
                        description: String::new(),
                    }],
                    ..Default::default()
                },
                &a,
            ))
            .await
            .unwrap();
            return submitted;
        }
        if stage >= Stage::Accepted {
            cw.accept_request(authed(
                AcceptRequestRequest {
                    request_id: id.clone(),
                    ..Default::default()
                },
                &a,
            ))
            .await
            .unwrap();
        }
        if stage == Stage::ExtensionPending {
            cw.request_extension(authed(
                RequestExtensionRequest {
                    request_id: id.clone(),
                    working_days: 2,
                    reason: "waiting for the insurer".into(),
                    ..Default::default()
                },
                &a,
            ))
            .await
            .unwrap();
            return submitted;
        }
        if stage >= Stage::InFulfilment {
            cw.approve_request(authed(
                ApproveRequestRequest {
                    request_id: id.clone(),
                    level: 0,
                    ..Default::default()
                },
                &a,
            ))
            .await
            .unwrap();
            cw.start_fulfilment(authed(
                StartFulfilmentRequest {
                    request_id: id.clone(),
                    ..Default::default()
                },
                &a,
            ))
            .await
            .unwrap();
        }
        if stage >= Stage::Fulfilled {
            for step in ["register", "confirm-payment"] {
                cw.complete_fulfilment_step(authed(
                    CompleteFulfilmentStepRequest {
                        request_id: id.clone(),
                        step_code: step.into(),
                        ..Default::default()
                    },
                    &a,
                ))
                .await
                .unwrap();
            }
        }
        if stage >= Stage::RatedBadly {
            w.clients
                .resident
                .clone()
                .rate_request(authed(
                    RateRequestRequest {
                        tracking_code: submitted.tracking_code.clone(),
                        phone_last4: submitted.phone_last4.clone(),
                        grade: SatisfactionGrade::Dissatisfied as i32,
                        ..Default::default()
                    },
                    &t.resident,
                ))
                .await
                .unwrap();
        }
        if stage >= Stage::Appealed {
            cw.appeal_rating(authed(
                AppealRatingRequest {
                    request_id: id.clone(),
                    reason: "unfair".into(),
                    ..Default::default()
                },
                &a,
            ))
            .await
            .unwrap();
        }
        submitted
    }

    /// Calls `method` as `caller` on a request (fresh and at the right stage for writes).
    async fn call(&self, method: &str, caller: &str, shared: &Submitted) -> Result<(), Status> {
        let token = self.token(caller).unwrap_or_default();
        let w = self.world;
        let mut resident = w.clients.resident.clone();
        let mut cw = w.clients.caseworker.clone();
        let mut manager = w.clients.manager.clone();
        let mut log = w.clients.eventlog.clone();
        let mut admin = w.clients.admin.clone();
        let lookup = |s: &Submitted| (s.tracking_code.clone(), s.phone_last4.clone());
        let stage = |stage| self.prepare(stage);
        match method {
            "ListServices" => resident
                .list_services(req(&token, ListServicesRequest::default()))
                .await
                .map(drop),
            "GetServiceDefinition" => resident
                .get_service_definition(req(
                    &token,
                    GetServiceDefinitionRequest {
                        service_code: "JY-YIBAO".into(),
                        min_position: 0,
                    },
                ))
                .await
                .map(drop),
            "SubmitRequest" => {
                let n = self.next.get();
                self.next.set(n + 1);
                let mut request = form().request(&format!("matrix-submit-{n:05}"), "13700005678");
                if caller == "kiosk" {
                    request.on_behalf_of = Some(OnBehalfOf {
                        kiosk_id: "kiosk-a1".into(),
                        staff_name: "张".into(),
                        ..Default::default()
                    });
                }
                resident
                    .submit_request(req(&token, request))
                    .await
                    .map(drop)
            }
            "GetRequestStatus" => {
                let (tracking_code, phone_last4) = lookup(shared);
                resident
                    .get_request_status(req(
                        &token,
                        GetRequestStatusRequest {
                            tracking_code,
                            phone_last4,
                            min_position: 0,
                        },
                    ))
                    .await
                    .map(drop)
            }
            "WatchRequest" => {
                let (tracking_code, phone_last4) = lookup(shared);
                let mut stream = resident
                    .watch_request(req(
                        &token,
                        WatchRequestRequest {
                            tracking_code,
                            phone_last4,
                            after_position: 0,
                        },
                    ))
                    .await?
                    .into_inner();
                stream
                    .next()
                    .await
                    .expect("the current status comes first")
                    .map(drop)
            }
            "ProvideInfo" => {
                let (tracking_code, phone_last4) = lookup(&stage(Stage::AwaitingInfo).await);
                resident
                    .provide_info(req(
                        &token,
                        ProvideInfoRequest {
                            tracking_code,
                            phone_last4,
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(drop)
            }
            "WithdrawRequest" => {
                let (tracking_code, phone_last4) = lookup(&stage(Stage::Submitted).await);
                resident
                    .withdraw_request(req(
                        &token,
                        WithdrawRequestRequest {
                            tracking_code,
                            phone_last4,
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(drop)
            }
            "RateRequest" => {
                let (tracking_code, phone_last4) = lookup(&stage(Stage::Fulfilled).await);
                resident
                    .rate_request(req(
                        &token,
                        RateRequestRequest {
                            tracking_code,
                            phone_last4,
                            grade: SatisfactionGrade::Satisfied as i32,
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(drop)
            }
            "ListQueue" => cw
                .list_queue(req(&token, ListQueueRequest::default()))
                .await
                .map(drop),
            "GetRequest" => cw
                .get_request(req(
                    &token,
                    GetRequestRequest {
                        request_id: shared.request_id.clone(),
                        min_position: 0,
                    },
                ))
                .await
                .map(drop),
            "ClaimRequest" => {
                let request_id = stage(Stage::Submitted).await.request_id;
                cw.claim_request(req(
                    &token,
                    ClaimRequestRequest {
                        request_id,
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            }
            "AcceptRequest" => {
                let request_id = stage(Stage::Claimed).await.request_id;
                cw.accept_request(req(
                    &token,
                    AcceptRequestRequest {
                        request_id,
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            }
            "RefuseRequest" => {
                let request_id = stage(Stage::Claimed).await.request_id;
                cw.refuse_request(req(
                    &token,
                    RefuseRequestRequest {
                        request_id,
                        reason: "not resident here".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            }
            "RequestInfo" => {
                let request_id = stage(Stage::Claimed).await.request_id;
                cw.request_info(req(
                    &token,
                    RequestInfoRequest {
                        request_id,
                        missing: vec![MissingMaterial {
                            material_code: "photo".into(),
                            description: String::new(),
                        }],
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            }
            "ApproveRequest" => {
                let request_id = stage(Stage::Accepted).await.request_id;
                cw.approve_request(req(
                    &token,
                    ApproveRequestRequest {
                        request_id,
                        level: 0,
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            }
            "DenyRequest" => {
                let request_id = stage(Stage::Accepted).await.request_id;
                cw.deny_request(req(
                    &token,
                    DenyRequestRequest {
                        request_id,
                        reason: "not eligible".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            }
            "StartFulfilment" => {
                let submitted = stage(Stage::Accepted).await;
                cw.approve_request(authed(
                    ApproveRequestRequest {
                        request_id: submitted.request_id.clone(),
                        level: 0,
                        ..Default::default()
                    },
                    &w.tokens.caseworker_a,
                ))
                .await
                .unwrap();
                cw.start_fulfilment(req(
                    &token,
                    StartFulfilmentRequest {
                        request_id: submitted.request_id,
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            }
            "CompleteFulfilmentStep" => {
                let request_id = stage(Stage::InFulfilment).await.request_id;
                cw.complete_fulfilment_step(req(
                    &token,
                    CompleteFulfilmentStepRequest {
                        request_id,
                        step_code: "register".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            }
            "AddNote" => {
                let request_id = stage(Stage::Claimed).await.request_id;
                cw.add_note(req(
                    &token,
                    AddNoteRequest {
                        request_id,
                        text: "called the resident".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            }
            "ReassignRequest" => {
                let request_id = stage(Stage::Claimed).await.request_id;
                cw.reassign_request(req(
                    &token,
                    ReassignRequestRequest {
                        request_id,
                        new_assignee: "cw-chen".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            }
            "RequestExtension" => {
                let request_id = stage(Stage::Accepted).await.request_id;
                cw.request_extension(req(
                    &token,
                    RequestExtensionRequest {
                        request_id,
                        working_days: 2,
                        reason: "insurer".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            }
            "DecideExtension" => {
                let request_id = stage(Stage::ExtensionPending).await.request_id;
                cw.decide_extension(req(
                    &token,
                    DecideExtensionRequest {
                        request_id,
                        grant: true,
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            }
            "ResolveRemediation" => {
                let request_id = stage(Stage::RatedBadly).await.request_id;
                cw.resolve_remediation(req(
                    &token,
                    ResolveRemediationRequest {
                        request_id,
                        resolution: "apologised".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            }
            "AppealRating" => {
                let request_id = stage(Stage::RatedBadly).await.request_id;
                cw.appeal_rating(req(
                    &token,
                    AppealRatingRequest {
                        request_id,
                        reason: "unfair".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            }
            "DecideAppeal" => {
                let request_id = stage(Stage::Appealed).await.request_id;
                cw.decide_appeal(req(
                    &token,
                    DecideAppealRequest {
                        request_id,
                        uphold: false,
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            }
            "CloseRequest" => {
                let request_id = stage(Stage::Fulfilled).await.request_id;
                cw.close_request(req(
                    &token,
                    CloseRequestRequest {
                        request_id,
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
            }
            "GetClock" => admin
                .get_clock(req(&token, GetClockRequest {}))
                .await
                .map(drop),
            "AdvanceClock" => admin
                .advance_clock(req(
                    &token,
                    AdvanceClockRequest {
                        by: Some(prost_types::Duration {
                            seconds: 0,
                            nanos: 1_000_000,
                        }),
                        working_days: 0,
                    },
                ))
                .await
                .map(drop),
            "WatchQueue" => {
                let mut stream = cw
                    .watch_queue(req(&token, WatchQueueRequest::default()))
                    .await?
                    .into_inner();
                // The snapshot ends with CAUGHT_UP.
                while let Some(item) = stream.next().await {
                    if item?.kind() == QueueChangeKind::CaughtUp {
                        return Ok(());
                    }
                }
                panic!("the queue watch ended before CAUGHT_UP");
            }
            "GetThroughput" => manager
                .get_throughput(req(&token, GetThroughputRequest::default()))
                .await
                .map(drop),
            "GetLeadTimes" => manager
                .get_lead_times(req(&token, GetLeadTimesRequest::default()))
                .await
                .map(drop),
            "GetSlaReport" => manager
                .get_sla_report(req(&token, GetSlaReportRequest::default()))
                .await
                .map(drop),
            "GetSatisfaction" => manager
                .get_satisfaction(req(&token, GetSatisfactionRequest::default()))
                .await
                .map(drop),
            "GetBacklog" => manager
                .get_backlog(req(&token, GetBacklogRequest::default()))
                .await
                .map(drop),
            "ReadStream" => log
                .read_stream(req(
                    &token,
                    ReadStreamRequest {
                        stream_id: format!("request-{}", shared.request_id),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "ReadAll" => log
                .read_all(req(&token, ReadAllRequest::default()))
                .await
                .map(drop),
            "SubscribeAll" => {
                let mut stream = log
                    .subscribe_all(req(&token, SubscribeAllRequest::default()))
                    .await?
                    .into_inner();
                stream.next().await.expect("the first event").map(drop)
            }
            "GetLogStats" => log
                .get_log_stats(req(&token, GetLogStatsRequest::default()))
                .await
                .map(drop),
            other => panic!("no such method {other}"),
        }
    }
}

/// Expected outcomes per method, in the order of [`CALLERS`]:
/// none, resident, kiosk, cw-a, cw-b, supervisor, manager-a, manager-*, admin.
const TABLE: &[(&str, [Outcome; 9])] = &[
    // ResidentService: residents and kiosks; admins pass the gate.
    ("ListServices", [U, O, O, D, D, D, D, D, O]),
    ("GetServiceDefinition", [U, O, O, D, D, D, D, D, O]),
    // Only residents and kiosks submit.
    ("SubmitRequest", [U, O, O, D, D, D, D, D, D]),
    ("GetRequestStatus", [U, O, O, D, D, D, D, D, O]),
    ("WatchRequest", [U, O, O, D, D, D, D, D, O]),
    // Kiosk staff may hand in materials for residents of their site.
    ("ProvideInfo", [U, O, O, D, D, D, D, D, D]),
    // With the receipt (code and digits) a kiosk of the site acts for the resident at
    // it (issue 16, item 9).
    ("WithdrawRequest", [U, O, O, D, D, D, D, D, D]),
    ("RateRequest", [U, O, O, D, D, D, D, D, D]),
    // CaseworkerService: a caseworker of another site never sees the request.
    ("ListQueue", [U, D, D, O, O, O, D, D, O]),
    ("GetRequest", [U, D, D, O, H, O, D, D, O]),
    ("ClaimRequest", [U, D, D, O, H, D, D, D, D]),
    ("AcceptRequest", [U, D, D, O, H, D, D, D, D]),
    ("RefuseRequest", [U, D, D, O, H, D, D, D, D]),
    ("RequestInfo", [U, D, D, O, H, D, D, D, D]),
    // Level 0 is the caseworker's review.
    ("ApproveRequest", [U, D, D, O, H, D, D, D, D]),
    ("DenyRequest", [U, D, D, O, H, O, D, D, D]),
    ("StartFulfilment", [U, D, D, O, H, D, D, D, D]),
    ("CompleteFulfilmentStep", [U, D, D, O, H, D, D, D, D]),
    ("AddNote", [U, D, D, O, H, O, D, D, O]),
    ("ReassignRequest", [U, D, D, D, D, O, D, D, O]),
    ("RequestExtension", [U, D, D, O, H, D, D, D, D]),
    ("DecideExtension", [U, D, D, D, D, O, D, D, D]),
    ("ResolveRemediation", [U, D, D, O, H, O, D, D, D]),
    ("AppealRating", [U, D, D, O, H, D, D, D, D]),
    // Appeals are decided by managers of the site (the domain rule).
    ("DecideAppeal", [U, D, D, D, D, D, O, O, D]),
    // The assignee, a supervisor of the site or an admin closes a fulfilled request.
    ("CloseRequest", [U, D, D, O, H, O, D, D, O]),
    ("WatchQueue", [U, D, D, O, O, O, D, D, O]),
    // ManagerService.
    ("GetThroughput", [U, D, D, D, D, O, O, O, O]),
    ("GetLeadTimes", [U, D, D, D, D, O, O, O, O]),
    ("GetSlaReport", [U, D, D, D, D, O, O, O, O]),
    ("GetSatisfaction", [U, D, D, D, D, O, O, O, O]),
    ("GetBacklog", [U, D, D, D, D, O, O, O, O]),
    // EventLogService: admins; managers of every site see the stats (they count every
    // site of the node).
    ("ReadStream", [U, D, D, D, D, D, D, D, O]),
    ("ReadAll", [U, D, D, D, D, D, D, D, O]),
    ("SubscribeAll", [U, D, D, D, D, D, D, D, O]),
    ("GetLogStats", [U, D, D, D, D, D, D, O, O]),
    // AdminService: admins only (the matrix runs on the demo clock).
    ("GetClock", [U, D, D, D, D, D, D, D, O]),
    ("AdvanceClock", [U, D, D, D, D, D, D, D, O]),
];

/// A request with the caller's token, or none.
fn req<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if !token.is_empty() {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn outcome(result: &Result<(), Status>) -> Option<Outcome> {
    match result {
        Ok(()) => Some(O),
        Err(status) => match status.code() {
            Code::PermissionDenied => Some(D),
            Code::NotFound => Some(H),
            Code::Unauthenticated => Some(U),
            _ => None,
        },
    }
}

#[tokio::test]
async fn every_method_admits_exactly_the_roles_and_sites_it_should() {
    let world =
        World::on(crate::helpers::TestApp::spawn_with(|config| config.demo_clock = true).await)
            .await;
    let matrix = Matrix {
        world: &world,
        next: std::cell::Cell::new(0),
    };
    let shared = matrix.prepare(Stage::Claimed).await;
    // Reads of a settled log position.
    world.status(&shared, world.head().await).await;
    let mut failures = Vec::new();
    for (method, expected) in TABLE {
        for (caller, expected) in CALLERS.iter().zip(expected) {
            let result = matrix.call(method, caller, &shared).await;
            if outcome(&result) != Some(*expected) {
                failures.push(format!(
                    "{method} as {caller}: expected {expected:?}, got {result:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let covered: std::collections::BTreeSet<&str> = TABLE.iter().map(|(m, _)| *m).collect();
    assert_eq!(
        covered.len(),
        8 + 19 + 5 + 4 + 2,
        "every RPC of the five services is in the table"
    );
}

#[tokio::test]
async fn scope_is_checked_on_filters_and_status_look_ups() {
    let world = World::new().await;
    let t = &world.tokens;
    let submitted = world
        .submit(&t.resident, &form(), "scope-check-0001", "13700009999")
        .await
        .unwrap();
    // A manager of site A naming site B.
    let status = world
        .clients
        .manager
        .clone()
        .get_backlog(authed(
            GetBacklogRequest {
                filter: Some(ReportFilter {
                    site_ids: vec!["site-b".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
            &t.manager_a,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // A caseworker of site B asking for site A's queue.
    let status = world
        .clients
        .caseworker
        .clone()
        .list_queue(authed(
            ListQueueRequest {
                filter: Some(QueueFilter {
                    site_ids: vec!["site-a".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
            &t.caseworker_b,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // Site B's queue does not hold site A's request; site A's does.
    let queue = |token: String| {
        let mut client = world.clients.caseworker.clone();
        let min_position = submitted.position;
        async move {
            client
                .list_queue(authed(
                    ListQueueRequest {
                        min_position,
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .unwrap()
                .into_inner()
                .items
        }
    };
    assert!(queue(t.caseworker_b.clone()).await.is_empty());
    assert_eq!(queue(t.caseworker_a.clone()).await.len(), 1);
    // A wrong phone, a wrong code: NOT_FOUND, the same answer as for a code nobody has.
    let mut resident = world.clients.resident.clone();
    for (tracking_code, phone_last4) in [
        (submitted.tracking_code.clone(), "0000".to_string()),
        (
            "AJ-0000-0000-0000".to_string(),
            submitted.phone_last4.clone(),
        ),
    ] {
        let status = resident
            .get_request_status(authed(
                GetRequestStatusRequest {
                    tracking_code,
                    phone_last4,
                    min_position: submitted.position,
                },
                &t.resident,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert!(!status.message().contains(&submitted.phone_last4));
    }
    // A kiosk of another site does not find it either.
    let kiosk_b = world
        .app
        .token(anju_auth::Role::Kiosk, "kiosk-b1", &["site-b"], &[]);
    let status = resident
        .get_request_status(authed(
            GetRequestStatusRequest {
                tracking_code: submitted.tracking_code.clone(),
                phone_last4: submitted.phone_last4.clone(),
                min_position: 0,
            },
            &kiosk_b,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

#[tokio::test]
async fn status_look_ups_are_rate_limited_per_client() {
    let app =
        crate::helpers::TestApp::spawn_with(|config| config.status_lookups_per_minute = 5).await;
    let world = World::on(app).await;
    let t = &world.tokens;
    let submitted = world
        .submit(&t.resident, &form(), "rate-limit-0001", "13700008888")
        .await
        .unwrap();
    let mut resident = world.clients.resident.clone();
    let look = |token: &str| {
        authed(
            GetRequestStatusRequest {
                tracking_code: submitted.tracking_code.clone(),
                phone_last4: submitted.phone_last4.clone(),
                min_position: submitted.position,
            },
            token,
        )
    };
    for _ in 0..5 {
        resident
            .get_request_status(look(&t.resident))
            .await
            .unwrap();
    }
    let status = resident
        .get_request_status(look(&t.resident))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("5 per minute"),
        "{}",
        status.message()
    );
    // Another client has its own bucket.
    resident
        .get_request_status(look(&t.other_resident))
        .await
        .unwrap();
}
