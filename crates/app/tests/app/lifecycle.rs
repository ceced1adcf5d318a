//! Full request lifecycles through the application, one service of every category, and
//! the claim race.

use crate::helpers::*;
use anju_app::AppError;
use anju_domain::{Action, Category, Grade, ServiceCode, Status};

/// Submit, send back for materials, supply them, claim, accept, extend, review, every
/// approval level, fulfil every step, a bad rating with remediation, an appeal, close.
#[tokio::test]
async fn every_category_runs_its_whole_lifecycle() {
    let t = TestApp::start().await;
    let worker = caseworker("cw-1");
    let (sup1, sup2) = (supervisor("sup-1"), supervisor("sup-2"));
    for (index, category) in Category::ALL.into_iter().enumerate() {
        let definition = t
            .app
            .catalogue()
            .services_in(category)
            .next()
            .expect("a service per category")
            .clone();
        let code = definition.code.to_string();
        let submitted = t
            .submit(submission(&t.app, &code, &format!("lifecycle-key-{index}")))
            .await;
        assert!(submitted.created);
        let id = submitted.request_id;
        let status = t
            .app
            .resident_status(
                submitted.tracking_code.as_str(),
                &PHONE[7..],
                Some(submitted.position),
            )
            .await
            .unwrap();
        assert_eq!(status.status, Status::Submitted);

        t.run(id, &worker, Action::Claim).await;
        // 一次性告知: one complete list of missing materials, then the resident supplies them.
        t.run(
            id,
            &worker,
            Action::RequestInfo {
                missing: vec!["户口簿 household register".into()],
                message: None,
            },
        )
        .await;
        let asked = t
            .run(
                id,
                &resident(),
                Action::ProvideInfo {
                    note: Some("已补交".into()),
                    materials: Default::default(),
                },
            )
            .await;
        let status = t
            .app
            .resident_status(
                submitted.tracking_code.as_str(),
                &PHONE[7..],
                Some(asked.position),
            )
            .await
            .unwrap();
        assert_eq!(
            status.status,
            Status::Submitted,
            "{code}: back to intake after the materials"
        );
        let second_ask = t
            .app
            .execute(
                id,
                worker.clone(),
                Action::RequestInfo {
                    missing: vec!["more".into()],
                    message: None,
                },
            )
            .await;
        assert!(
            matches!(second_ask, Err(AppError::Conflict(_))),
            "{code}: materials are asked for only once"
        );

        t.run(id, &worker, Action::Accept { comment: None }).await;
        t.run(
            id,
            &worker,
            Action::RequestExtension {
                days: 3,
                reason: "需要入户核查".into(),
            },
        )
        .await;
        let extended = t
            .run(id, &sup1, Action::DecideExtension { approve: true })
            .await;
        assert_eq!(extended.events[0].event_type(), "ExtensionApproved");
        t.run(
            id,
            &worker,
            Action::Review {
                opinion: "符合条件".into(),
            },
        )
        .await;
        for level in 1..=definition.approval_levels {
            let approver = if level == 1 { &sup1 } else { &sup2 };
            t.run(
                id,
                approver,
                Action::Approve {
                    level,
                    comment: None,
                },
            )
            .await;
        }
        if definition.approval_levels == 2 {
            let again = t
                .app
                .execute(
                    id,
                    sup1.clone(),
                    Action::Approve {
                        level: 2,
                        comment: None,
                    },
                )
                .await;
            assert!(
                matches!(again, Err(AppError::WrongState { .. })),
                "{code}: approvals are complete"
            );
        }
        t.run(id, &worker, Action::StartFulfilment { note: None })
            .await;
        let mut last = None;
        for step in &definition.steps {
            last = Some(
                t.run(
                    id,
                    &worker,
                    Action::CompleteStep {
                        step: step.code.clone(),
                        note: None,
                    },
                )
                .await,
            );
        }
        assert_eq!(
            last.unwrap().events.last().unwrap().event_type(),
            "RequestFulfilled"
        );

        let rated = t
            .run(
                id,
                &resident(),
                Action::Rate {
                    grade: Grade::Dissatisfied,
                    comment: Some("太慢".into()),
                },
            )
            .await;
        assert_eq!(
            rated
                .events
                .iter()
                .map(|e| e.event_type())
                .collect::<Vec<_>>(),
            ["RequestRated", "RemediationOpened"]
        );
        t.run(
            id,
            &worker,
            Action::ResolveRemediation {
                summary: "已上门说明并加快办理".into(),
            },
        )
        .await;
        t.run(
            id,
            &worker,
            Action::AppealRating {
                reason: "评价与事实不符".into(),
            },
        )
        .await;
        t.run(id, &manager(), Action::DecideAppeal { uphold: true })
            .await;
        let closed = t.run(id, &worker, Action::Close).await;
        assert_eq!(closed.status, Status::Closed);

        let status = t
            .app
            .resident_status(
                submitted.tracking_code.as_str(),
                &PHONE[7..],
                Some(closed.position),
            )
            .await
            .unwrap();
        assert_eq!(status.status, Status::Closed, "{code}");
        assert_eq!(status.rating, Some(Grade::Dissatisfied));
        let detail = t
            .app
            .request_detail(&worker, id, Some(closed.position))
            .await
            .unwrap();
        assert_eq!(detail.request.status, Status::Closed);
        assert_eq!(
            detail.request.approvals.len(),
            definition.approval_levels as usize
        );
        assert_eq!(detail.request.deadlines.as_ref().unwrap().extension_days, 3);
        assert_eq!(
            detail.request.service_code,
            ServiceCode::parse(&code).unwrap()
        );
    }
    t.app.close().await.unwrap();
}

/// Two caseworkers claim at the same instant: exactly one wins, the other is told.
#[tokio::test]
async fn of_two_concurrent_claims_exactly_one_wins() {
    let t = TestApp::start().await;
    for round in 0..10 {
        let submitted = t
            .submit(submission(
                &t.app,
                "SQ-WEIXIU",
                &format!("claim-race-{round}"),
            ))
            .await;
        let id = submitted.request_id;
        let (a, b) = tokio::join!(
            t.app.execute(id, caseworker("cw-a"), Action::Claim),
            t.app.execute(id, caseworker("cw-b"), Action::Claim),
        );
        let wins = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Ok(e) if !e.events.is_empty()))
            .count();
        assert_eq!(wins, 1, "round {round}: {a:?} / {b:?}");
        let loser = if a.is_ok() { b } else { a };
        assert!(
            matches!(loser, Err(AppError::Conflict(_))),
            "round {round}: the loser gets a conflict, got {loser:?}"
        );
        assert_eq!(t.count_events(id, "RequestClaimed").await, 1);
    }
    t.app.close().await.unwrap();
}

/// A command that changes nothing writes nothing and answers the current position.
#[tokio::test]
async fn a_command_without_events_writes_nothing() {
    let t = TestApp::start().await;
    let submitted = t
        .submit(submission(&t.app, "SQ-WEIXIU", "no-op-claim-1"))
        .await;
    let claimed = t
        .run(submitted.request_id, &caseworker("cw-1"), Action::Claim)
        .await;
    let head = t.app.log().head_position();
    let again = t
        .run(submitted.request_id, &caseworker("cw-1"), Action::Claim)
        .await;
    assert!(again.events.is_empty());
    assert_eq!(again.position, claimed.position);
    assert_eq!(t.app.log().head_position(), head);
    let missing = t
        .app
        .execute(
            anju_domain::RequestId(uuid::Uuid::nil()),
            caseworker("cw-1"),
            Action::Claim,
        )
        .await;
    assert_eq!(missing.unwrap_err(), AppError::NotFound);
    t.app.close().await.unwrap();
}

/// Reassignment goes only to a caseworker of the request's site and category.
#[tokio::test]
async fn reassignment_checks_the_new_caseworker() {
    use anju_app::ReassignTarget;
    use anju_domain::{ActorId, Role, Scope, SiteId};
    let t = TestApp::start().await;
    let submitted = t
        .submit(submission(&t.app, "SQ-WEIXIU", "reassign-key-1"))
        .await;
    let id = submitted.request_id;
    let target = |sites: &str, category: Category| ReassignTarget {
        id: ActorId::new("cw-2"),
        role: Role::Caseworker,
        sites: Scope::only([SiteId::new(sites)]),
        categories: Scope::only([category]),
    };
    let elsewhere = t
        .app
        .reassign(
            id,
            supervisor("sup-1"),
            target(OTHER_SITE, Category::Community),
        )
        .await;
    assert!(
        matches!(elsewhere, Err(AppError::Invalid(_))),
        "{elsewhere:?}"
    );
    let wrong_category = t
        .app
        .reassign(id, supervisor("sup-1"), target(SITE, Category::Medical))
        .await;
    assert!(matches!(wrong_category, Err(AppError::Invalid(_))));
    let done = t
        .app
        .reassign(id, supervisor("sup-1"), target(SITE, Category::Community))
        .await
        .unwrap();
    assert_eq!(done.events[0].event_type(), "RequestReassigned");
    let through_execute = t
        .app
        .execute(
            id,
            supervisor("sup-1"),
            Action::Reassign {
                to: ActorId::new("x"),
            },
        )
        .await;
    assert!(matches!(through_execute, Err(AppError::Invalid(_))));
    t.app.close().await.unwrap();
}

/// Refusal at intake, denial after review, withdrawal by the resident: each terminal,
/// each refusing further work with WrongState.
#[tokio::test]
async fn refused_denied_and_withdrawn_requests_stay_ended() {
    let t = TestApp::start().await;
    let worker = caseworker("cw-1");
    let refused = t
        .submit(submission(&t.app, "MZ-LINSHI", "terminal-key-1"))
        .await
        .request_id;
    t.run(refused, &worker, Action::Claim).await;
    let done = t
        .run(
            refused,
            &worker,
            Action::Refuse {
                reason: "不属于本社区".into(),
                legal_basis: None,
            },
        )
        .await;
    assert_eq!(done.status, Status::Refused);

    let denied = t
        .submit(submission(&t.app, "MZ-LINSHI", "terminal-key-2"))
        .await
        .request_id;
    t.run(denied, &worker, Action::Claim).await;
    t.run(denied, &worker, Action::Accept { comment: None })
        .await;
    t.run(
        denied,
        &worker,
        Action::Review {
            opinion: "材料不实".into(),
        },
    )
    .await;
    let done = t
        .run(
            denied,
            &supervisor("sup-1"),
            Action::Deny {
                reason: "收入超过标准".into(),
                legal_basis: None,
            },
        )
        .await;
    assert_eq!(done.status, Status::Denied);

    let withdrawn = t
        .submit(submission(&t.app, "MZ-LINSHI", "terminal-key-3"))
        .await
        .request_id;
    // 帮办: kiosk staff may supply materials for the resident, but only the resident withdraws.
    let kiosk = anju_domain::Actor::kiosk("kiosk-1", [anju_domain::SiteId::new(SITE)]);
    let by_kiosk = t
        .app
        .execute(withdrawn, kiosk, Action::Withdraw { reason: None })
        .await;
    assert!(matches!(by_kiosk, Err(AppError::Forbidden(_))));
    let done = t
        .run(
            withdrawn,
            &resident(),
            Action::Withdraw {
                reason: Some("已自行解决".into()),
            },
        )
        .await;
    assert_eq!(done.status, Status::Withdrawn);

    for id in [refused, denied, withdrawn] {
        let again = t
            .app
            .execute(id, worker.clone(), Action::Accept { comment: None })
            .await;
        assert!(
            matches!(again, Err(AppError::WrongState { .. })),
            "{again:?}"
        );
    }
    t.app.close().await.unwrap();
}
