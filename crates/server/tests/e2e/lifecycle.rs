//! The full life of one request of every category: submission, send-back for
//! materials and provide-info, acceptance, an extension asked for and granted, review
//! and one or two approval levels (two different supervisors), fulfilment step by
//! step, rating; for dibao a bad rating opens a remediation that is resolved, and an
//! appeal is decided. Status and timeline are checked after every step with the
//! write's position as `min_position`.

use std::time::Duration;

use anju_proto::v1::*;
use tokio_stream::StreamExt;
use tonic::Code;

use super::{assert_code, one_per_category, World};
use crate::helpers::authed;

fn state_of(status: &RequestStatus) -> RequestState {
    RequestState::try_from(status.state).unwrap()
}

#[tokio::test]
async fn every_category_goes_through_its_whole_life() {
    // One resident follows eight requests step by step: about a hundred look-ups by
    // tracking code (status, materials, rating) in a few seconds, past the default
    // per-client limit of 60 a minute (every call taking a code and digits counts).
    let world = World::on(
        crate::helpers::TestApp::spawn_with(|config| config.status_lookups_per_minute = 1000).await,
    )
    .await;
    let t = &world.tokens;
    let mut cw = world.clients.caseworker.clone();
    let mut resident = world.clients.resident.clone();
    let mut watched = None;
    let forms = one_per_category();
    for (i, form) in forms.iter().enumerate() {
        let code = form.service_code;
        let phone = format!("1381234{:04}", 4270 + i);
        let submitted = world
            .submit(&t.resident, form, &format!("lifecycle-{code}-0001"), &phone)
            .await
            .unwrap_or_else(|e| panic!("{code} submits: {e:?}"));
        assert!(submitted.position >= 1);
        let status = world.status(&submitted, submitted.position).await;
        assert_eq!(state_of(&status), RequestState::Submitted, "{code}");
        assert_eq!(status.service_code, code);
        assert_eq!(status.timeline.len(), 1);
        assert_eq!(status.timeline[0].event_type, "RequestSubmitted");
        assert_eq!(status.timeline[0].position, submitted.position);
        assert!(status.can_withdraw);
        assert!(status.deadline.is_some(), "the acceptance deadline runs");
        let id = submitted.request_id.clone();

        if i == 0 {
            // Watch the first request from the start; checked at the end.
            let stream = resident
                .watch_request(authed(
                    WatchRequestRequest {
                        tracking_code: submitted.tracking_code.clone(),
                        phone_last4: submitted.phone_last4.clone(),
                        after_position: 0,
                    },
                    &t.resident,
                ))
                .await
                .expect("watch starts")
                .into_inner();
            watched = Some(stream);
        }

        // Claim, then check the detail (phone masked, id number masked).
        let claimed = cw
            .claim_request(authed(
                ClaimRequestRequest {
                    request_id: id.clone(),
                    expected_version: Some(1),
                    idempotency_key: String::new(),
                },
                &t.caseworker_a,
            ))
            .await
            .expect("claim")
            .into_inner();
        assert_eq!(claimed.assignee, "cw-wang");
        assert_eq!(claimed.version, 2);
        let detail = world
            .detail(&t.caseworker_a, &id, claimed.position)
            .await
            .expect("detail");
        assert_eq!(detail.assignee, "cw-wang");
        assert_eq!(detail.version, 2);
        let applicant = detail.applicant.clone().unwrap();
        assert_eq!(applicant.phone, format!("138****{}", &phone[7..]));
        if let Some(id_number) = &applicant.id_number {
            assert_eq!(id_number, "1****************X");
        }

        // Send back for materials, then the resident provides them.
        let asked = cw
            .request_info(authed(
                RequestInfoRequest {
                    request_id: id.clone(),
                    missing: vec![MissingMaterial {
                        material_code: "hukou".into(),
                        description: "户口本复印件".into(),
                    }],
                    message: "请补交户口本".into(),
                    ..Default::default()
                },
                &t.caseworker_a,
            ))
            .await
            .expect("request info")
            .into_inner();
        assert_eq!(asked.state(), RequestState::InfoRequested);
        let status = world.status(&submitted, asked.position).await;
        assert_eq!(state_of(&status), RequestState::InfoRequested);
        assert_eq!(status.missing_materials.len(), 1, "{code}");
        let provided = resident
            .provide_info(authed(
                ProvideInfoRequest {
                    tracking_code: submitted.tracking_code.clone(),
                    phone_last4: submitted.phone_last4.clone(),
                    message: "已补交".into(),
                    ..Default::default()
                },
                &t.resident,
            ))
            .await
            .expect("provide info")
            .into_inner();
        assert_eq!(provided.state(), RequestState::Submitted);
        assert!(provided.position > asked.position);
        let status = world.status(&submitted, provided.position).await;
        assert_eq!(state_of(&status), RequestState::Submitted);
        assert!(status.missing_materials.is_empty());

        // Accept.
        let accepted = cw
            .accept_request(authed(
                AcceptRequestRequest {
                    request_id: id.clone(),
                    ..Default::default()
                },
                &t.caseworker_a,
            ))
            .await
            .expect("accept")
            .into_inner();
        assert_eq!(accepted.state(), RequestState::Accepted);
        assert!(accepted.decision_deadline.is_some());
        let status = world.status(&submitted, accepted.position).await;
        assert_eq!(state_of(&status), RequestState::Accepted);

        // An extension asked for and granted by a supervisor.
        let extension = cw
            .request_extension(authed(
                RequestExtensionRequest {
                    request_id: id.clone(),
                    working_days: 3,
                    reason: "需入户核实".into(),
                    ..Default::default()
                },
                &t.caseworker_a,
            ))
            .await
            .expect("request extension")
            .into_inner();
        assert!(!extension.extension_id.is_empty());
        let detail = world
            .detail(&t.supervisor_a, &id, extension.position)
            .await
            .unwrap();
        assert_eq!(detail.extensions.len(), 1, "the extension is pending");
        let decided = cw
            .decide_extension(authed(
                DecideExtensionRequest {
                    request_id: id.clone(),
                    extension_id: extension.extension_id.clone(),
                    grant: true,
                    ..Default::default()
                },
                &t.supervisor_a,
            ))
            .await
            .expect("decide extension")
            .into_inner();
        assert_eq!(
            decided
                .deadline
                .as_ref()
                .map(|d| d.extended_by_working_days),
            Some(3)
        );
        let detail = world
            .detail(&t.caseworker_a, &id, decided.position)
            .await
            .unwrap();
        assert!(
            detail.extensions.is_empty(),
            "no extension pending any more"
        );
        assert_eq!(detail.deadline.unwrap().extended_by_working_days, 3);

        // The caseworker's review (level 0), then the supervisors' levels.
        let levels = detail.approval_levels_required;
        let reviewed = cw
            .approve_request(authed(
                ApproveRequestRequest {
                    request_id: id.clone(),
                    level: 0,
                    comment: "材料齐全，符合条件".into(),
                    ..Default::default()
                },
                &t.caseworker_a,
            ))
            .await
            .expect("review")
            .into_inner();
        assert_eq!(reviewed.levels_remaining, levels, "{code}");
        let mut last = reviewed.position;
        for level in 1..=levels {
            if level == 2 {
                // The same supervisor may not sign both levels.
                let again = cw
                    .approve_request(authed(
                        ApproveRequestRequest {
                            request_id: id.clone(),
                            level,
                            ..Default::default()
                        },
                        &t.supervisor_a,
                    ))
                    .await;
                assert_code(again, Code::PermissionDenied);
            }
            let supervisor = if level == 1 {
                &t.supervisor_a
            } else {
                &t.supervisor_a2
            };
            let approved = cw
                .approve_request(authed(
                    ApproveRequestRequest {
                        request_id: id.clone(),
                        level,
                        ..Default::default()
                    },
                    supervisor,
                ))
                .await
                .unwrap_or_else(|e| panic!("{code} level {level}: {e:?}"))
                .into_inner();
            assert_eq!(approved.levels_remaining, levels - level);
            last = approved.position;
        }
        let status = world.status(&submitted, last).await;
        assert_eq!(state_of(&status), RequestState::Approved, "{code}");
        assert!(!status.can_withdraw);

        // Fulfilment, step by step.
        let started = cw
            .start_fulfilment(authed(
                StartFulfilmentRequest {
                    request_id: id.clone(),
                    ..Default::default()
                },
                &t.caseworker_a,
            ))
            .await
            .expect("start fulfilment")
            .into_inner();
        assert_eq!(started.state(), RequestState::InFulfilment);
        let detail = world
            .detail(&t.caseworker_a, &id, started.position)
            .await
            .unwrap();
        let steps: Vec<String> = detail
            .fulfilment_steps
            .iter()
            .map(|s| s.code.clone())
            .collect();
        assert!(!steps.is_empty());
        let mut done = None;
        for (n, step) in steps.iter().enumerate() {
            let completed = cw
                .complete_fulfilment_step(authed(
                    CompleteFulfilmentStepRequest {
                        request_id: id.clone(),
                        step_code: step.clone(),
                        ..Default::default()
                    },
                    &t.caseworker_a,
                ))
                .await
                .expect("complete step")
                .into_inner();
            assert_eq!(completed.steps_remaining.len(), steps.len() - n - 1);
            done = Some(completed);
        }
        let done = done.unwrap();
        assert_eq!(done.state(), RequestState::Fulfilled);
        let status = world.status(&submitted, done.position).await;
        assert_eq!(state_of(&status), RequestState::Fulfilled);
        assert!(status.can_rate);

        // Rating; dibao gets a bad one, a remediation and an appeal.
        let bad = i == 0;
        let grade = if bad {
            SatisfactionGrade::VeryDissatisfied
        } else {
            SatisfactionGrade::Satisfied
        };
        let rated = resident
            .rate_request(authed(
                RateRequestRequest {
                    tracking_code: submitted.tracking_code.clone(),
                    phone_last4: submitted.phone_last4.clone(),
                    grade: grade as i32,
                    comment: "等待时间太长".into(),
                    ..Default::default()
                },
                &t.resident,
            ))
            .await
            .expect("rate")
            .into_inner();
        let status = world.status(&submitted, rated.position).await;
        assert_eq!(status.rating.as_ref().map(|r| r.grade), Some(grade as i32));
        assert!(!status.can_rate);
        if !bad {
            assert_eq!(rated.remediation(), RemediationStatus::NotNeeded);
            continue;
        }
        assert_eq!(rated.remediation(), RemediationStatus::Open);
        let detail = world
            .detail(&t.caseworker_a, &id, rated.position)
            .await
            .unwrap();
        assert_eq!(
            detail.rating.unwrap().remediation(),
            RemediationStatus::Open
        );
        let resolved = cw
            .resolve_remediation(authed(
                ResolveRemediationRequest {
                    request_id: id.clone(),
                    resolution: "上门致歉并说明办理进度".into(),
                    resident_contacted: true,
                    resident_agrees: true,
                    ..Default::default()
                },
                &t.caseworker_a,
            ))
            .await
            .expect("resolve remediation")
            .into_inner();
        assert_eq!(resolved.remediation(), RemediationStatus::Resolved);
        let appealed = cw
            .appeal_rating(authed(
                AppealRatingRequest {
                    request_id: id.clone(),
                    reason: "延期已获批准，办理在承诺时限内".into(),
                    ..Default::default()
                },
                &t.caseworker_a,
            ))
            .await
            .expect("appeal")
            .into_inner();
        assert_eq!(appealed.appeal(), AppealStatus::Pending);
        let detail = world
            .detail(&t.caseworker_a, &id, appealed.position)
            .await
            .unwrap();
        let rating = detail.rating.unwrap();
        assert_eq!(rating.remediation(), RemediationStatus::Resolved);
        assert_eq!(rating.appeal(), AppealStatus::Pending);
        let decided = cw
            .decide_appeal(authed(
                DecideAppealRequest {
                    request_id: id.clone(),
                    uphold: true,
                    comment: "延期合规".into(),
                    ..Default::default()
                },
                &t.manager_a,
            ))
            .await
            .expect("decide appeal")
            .into_inner();
        assert_eq!(decided.appeal(), AppealStatus::Upheld);
        let detail = world
            .detail(&t.caseworker_a, &id, decided.position)
            .await
            .unwrap();
        assert_eq!(detail.rating.unwrap().appeal(), AppealStatus::Upheld);
        let types: Vec<&str> = detail
            .timeline
            .iter()
            .map(|e| e.event_type.as_str())
            .collect();
        for expected in [
            "RequestSubmitted",
            "RequestClaimed",
            "InfoRequested",
            "InfoProvided",
            "RequestAccepted",
            "ExtensionRequested",
            "ExtensionApproved",
            "RequestReviewed",
            "RequestApproved",
            "FulfilmentStarted",
            "StepCompleted",
            "RequestFulfilled",
            "RequestRated",
            "RemediationOpened",
            "RemediationResolved",
            "RatingAppealed",
            "AppealDecided",
        ] {
            assert!(
                types.contains(&expected),
                "{expected} missing from {types:?}"
            );
        }
        let positions: Vec<u64> = detail.timeline.iter().map(|e| e.position).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        // The resident's timeline leaves the internal entries out.
        let status = world.status(&submitted, decided.position).await;
        assert!(status
            .timeline
            .iter()
            .all(|e| e.event_type != "RatingAppealed" && e.event_type != "AppealDecided"));
    }

    // The watch on the first request saw every change, in order, ending fulfilled.
    let mut watched = watched.unwrap();
    let mut updates = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(2), watched.next()).await {
            Ok(Some(Ok(update))) => updates.push(update),
            Ok(Some(Err(e))) => panic!("watch failed: {e:?}"),
            Ok(None) | Err(_) => break,
        }
    }
    assert!(updates.len() >= 15, "{} updates", updates.len());
    assert!(updates.windows(2).all(|w| w[0].position < w[1].position));
    assert!(updates
        .iter()
        .any(|u| u.status.as_ref().unwrap().state() == RequestState::Fulfilled));

    // The managers see the eight requests.
    let head = world.head().await;
    let throughput = world
        .clients
        .manager
        .clone()
        .get_throughput(authed(
            GetThroughputRequest {
                bucket: TimeBucket::Day as i32,
                min_position: head,
                ..Default::default()
            },
            &t.manager_a,
        ))
        .await
        .expect("throughput")
        .into_inner();
    let total = throughput.total.unwrap();
    assert_eq!(total.submitted, forms.len() as u64);
    assert_eq!(total.fulfilled, forms.len() as u64);
    let satisfaction = world
        .clients
        .manager
        .clone()
        .get_satisfaction(authed(
            GetSatisfactionRequest {
                min_position: head,
                grouping: ReportGrouping::Category as i32,
                ..Default::default()
            },
            &t.manager_all,
        ))
        .await
        .expect("satisfaction")
        .into_inner();
    let total = satisfaction.total.unwrap();
    assert_eq!(total.remediation.unwrap().appeals_upheld, 1);
    assert_eq!(satisfaction.rows.len(), 8, "one row per category");
}
