//! Issue 16, "The record keeps every word", items 1 to 10: what people write and hand
//! over reaches the log and comes back in the views, through the gRPC API. One test per
//! item, named after it.

use std::collections::HashMap;

use anju_proto::v1::*;
use tonic::Code;

use super::{assert_code, dibao, Form, Submitted, World, SITE_A};
use crate::helpers::{authed, TestApp};

fn yibao() -> Form {
    Form::text(
        "JY-YIBAO",
        &[("action", "新参保 new enrolment"), ("people", "2")],
    )
}

fn attachment(reference: &str) -> AttachmentRef {
    AttachmentRef {
        reference: reference.into(),
        file_name: format!("{reference}.jpg"),
        media_type: "image/jpeg".into(),
        size_bytes: 2048,
        sha256: "ab".repeat(32),
    }
}

async fn claim(world: &World, id: &str) -> u64 {
    world
        .clients
        .caseworker
        .clone()
        .claim_request(authed(
            ClaimRequestRequest {
                request_id: id.into(),
                ..Default::default()
            },
            &world.tokens.caseworker_a,
        ))
        .await
        .expect("claim")
        .into_inner()
        .position
}

async fn accept(world: &World, id: &str, comment: &str) -> u64 {
    claim(world, id).await;
    world
        .clients
        .caseworker
        .clone()
        .accept_request(authed(
            AcceptRequestRequest {
                request_id: id.into(),
                comment: comment.into(),
                ..Default::default()
            },
            &world.tokens.caseworker_a,
        ))
        .await
        .expect("accept")
        .into_inner()
        .position
}

/// Drives an accepted request to FULFILLED with a word at every sign-off; returns the
/// last position.
async fn fulfil(world: &World, id: &str) -> u64 {
    let t = &world.tokens;
    let mut cw = world.clients.caseworker.clone();
    let detail = world.detail(&t.caseworker_a, id, 0).await.unwrap();
    let levels = detail.approval_levels_required;
    for level in 0..=levels {
        let token = match level {
            0 => &t.caseworker_a,
            1 => &t.supervisor_a,
            _ => &t.supervisor_a2,
        };
        cw.approve_request(authed(
            ApproveRequestRequest {
                request_id: id.into(),
                level,
                comment: format!("level {level} opinion 意见"),
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap_or_else(|e| panic!("level {level}: {e:?}"));
    }
    let started = cw
        .start_fulfilment(authed(
            StartFulfilmentRequest {
                request_id: id.into(),
                note: "已联系申请人上门".into(),
                ..Default::default()
            },
            &t.caseworker_a,
        ))
        .await
        .expect("start fulfilment")
        .into_inner();
    let mut last = started.position;
    for step in &detail.fulfilment_steps {
        last = cw
            .complete_fulfilment_step(authed(
                CompleteFulfilmentStepRequest {
                    request_id: id.into(),
                    step_code: step.code.clone(),
                    note: format!("{} done 已办", step.code),
                    ..Default::default()
                },
                &t.caseworker_a,
            ))
            .await
            .expect("complete step")
            .into_inner()
            .position;
    }
    last
}

async fn request_info(world: &World, id: &str, message: &str) -> u64 {
    world
        .clients
        .caseworker
        .clone()
        .request_info(authed(
            RequestInfoRequest {
                request_id: id.into(),
                missing: vec![MissingMaterial {
                    material_code: "hukou".into(),
                    description: "户口本首页".into(),
                }],
                message: message.into(),
                ..Default::default()
            },
            &world.tokens.caseworker_a,
        ))
        .await
        .expect("request info")
        .into_inner()
        .position
}

#[tokio::test]
async fn issue_16_item_1_the_resident_reads_the_info_request_message() {
    let world = World::new().await;
    let submitted = world
        .submit(
            &world.tokens.resident,
            &yibao(),
            "i16-1-0001",
            "13812340001",
        )
        .await
        .unwrap();
    claim(&world, &submitted.request_id).await;
    let message = "请一次性补交户口本首页复印件，周一至周五到社区服务中心窗口";
    let position = request_info(&world, &submitted.request_id, message).await;
    let status = world.status(&submitted, position).await;
    assert_eq!(status.state(), RequestState::InfoRequested);
    assert_eq!(status.info_request_message, message);
    let entry = status.timeline.last().unwrap();
    assert_eq!(entry.event_type, "InfoRequested");
    assert_eq!(
        entry.details.get("message").map(String::as_str),
        Some(message)
    );
}

#[tokio::test]
async fn issue_16_item_2_a_public_note_reaches_the_resident_and_an_internal_one_does_not() {
    let world = World::new().await;
    let t = &world.tokens;
    let submitted = world
        .submit(&t.resident, &yibao(), "i16-2-0001", "13812340002")
        .await
        .unwrap();
    claim(&world, &submitted.request_id).await;
    let mut cw = world.clients.caseworker.clone();
    let mut last = 0;
    for (text, internal) in [("请周三上午来窗口签字", false), ("申请人电话未接通", true)]
    {
        last = cw
            .add_note(authed(
                AddNoteRequest {
                    request_id: submitted.request_id.clone(),
                    text: text.into(),
                    internal,
                    ..Default::default()
                },
                &t.caseworker_a,
            ))
            .await
            .expect("add note")
            .into_inner()
            .position;
    }
    let detail = world
        .detail(&t.caseworker_a, &submitted.request_id, last)
        .await
        .unwrap();
    let flags: Vec<(&str, bool)> = detail
        .notes
        .iter()
        .map(|n| (n.text.as_str(), n.internal))
        .collect();
    assert_eq!(
        flags,
        [("请周三上午来窗口签字", false), ("申请人电话未接通", true)]
    );
    let status = world.status(&submitted, last).await;
    let notes: Vec<&str> = status
        .timeline
        .iter()
        .filter(|e| e.event_type == "NoteAdded")
        .map(|e| e.details.get("text").map(String::as_str).unwrap_or(""))
        .collect();
    assert_eq!(notes, ["请周三上午来窗口签字"], "only the public note");
    assert!(status.timeline.iter().all(|e| !e.internal));
}

#[tokio::test]
async fn issue_16_item_3_sign_off_opinions_and_the_legal_basis_are_kept() {
    let world = World::new().await;
    let t = &world.tokens;
    let submitted = world
        .submit(&t.resident, &dibao(), "i16-3-0001", "13812340003")
        .await
        .unwrap();
    let id = submitted.request_id.clone();
    accept(&world, &id, "材料齐全，予以受理").await;
    let last = fulfil(&world, &id).await;
    let detail = world.detail(&t.caseworker_a, &id, last).await.unwrap();
    let opinions: Vec<(u32, &str)> = detail
        .approvals
        .iter()
        .map(|a| (a.level, a.comment.as_str()))
        .collect();
    assert_eq!(
        opinions,
        [
            (0, "level 0 opinion 意见"),
            (1, "level 1 opinion 意见"),
            (2, "level 2 opinion 意见")
        ]
    );
    for step in &detail.fulfilment_steps {
        assert_eq!(step.note, format!("{} done 已办", step.code));
    }
    let detail_of = |event_type: &str, name: &str| {
        detail
            .timeline
            .iter()
            .find(|e| e.event_type == event_type)
            .and_then(|e| e.details.get(name).cloned())
    };
    assert_eq!(
        detail_of("RequestAccepted", "comment").as_deref(),
        Some("材料齐全，予以受理")
    );
    assert_eq!(
        detail_of("FulfilmentStarted", "note").as_deref(),
        Some("已联系申请人上门")
    );
    // The review opinion is a staff opinion: not in the resident's timeline.
    let status = world.status(&submitted, last).await;
    assert!(status
        .timeline
        .iter()
        .all(|e| !e.details.contains_key("opinion") && !e.details.contains_key("comment")));

    // A refusal keeps its reason and its legal basis apart, for staff and resident.
    let refused = world
        .submit(&t.resident, &yibao(), "i16-3-0002", "13812340013")
        .await
        .unwrap();
    claim(&world, &refused.request_id).await;
    let position = world
        .clients
        .caseworker
        .clone()
        .refuse_request(authed(
            RefuseRequestRequest {
                request_id: refused.request_id.clone(),
                reason: "不属于本社区受理范围".into(),
                legal_basis: "《行政许可法》第三十二条".into(),
                ..Default::default()
            },
            &t.caseworker_a,
        ))
        .await
        .expect("refuse")
        .into_inner()
        .position;
    let detail = world
        .detail(&t.caseworker_a, &refused.request_id, position)
        .await
        .unwrap();
    assert_eq!(detail.decision_reason, "不属于本社区受理范围");
    assert_eq!(detail.legal_basis, "《行政许可法》第三十二条");
    let status = world.status(&refused, position).await;
    assert_eq!(status.decision_reason, "不属于本社区受理范围");
    assert_eq!(status.legal_basis, "《行政许可法》第三十二条");
}

#[tokio::test]
async fn issue_16_item_4_materials_handed_over_are_kept() {
    let world = World::new().await;
    let t = &world.tokens;
    let mut request = yibao().request("i16-4-0001", "13812340004");
    request.materials = HashMap::from([("id_card".to_string(), attachment("upload-1"))]);
    let submitted = world
        .clients
        .resident
        .clone()
        .submit_request(authed(request, &t.resident))
        .await
        .expect("submit with materials")
        .into_inner();
    let id = submitted.request_id.clone();
    claim(&world, &id).await;
    request_info(&world, &id, "请补交户口本").await;
    let mut resident = world.clients.resident.clone();
    // A bad material is refused with its field named, and writes nothing.
    let before = world.head().await;
    let mut bad = attachment("upload-2");
    bad.sha256 = "not-hex".into();
    let refused = resident
        .provide_info(authed(
            ProvideInfoRequest {
                tracking_code: submitted.tracking_code.clone(),
                phone_last4: "0004".into(),
                materials: HashMap::from([("hukou".to_string(), bad)]),
                ..Default::default()
            },
            &t.resident,
        ))
        .await;
    let status = assert_code(refused, Code::InvalidArgument);
    assert!(
        status.message().contains("materials[hukou].sha256"),
        "{status:?}"
    );
    assert_eq!(world.head().await, before);
    let provided = resident
        .provide_info(authed(
            ProvideInfoRequest {
                tracking_code: submitted.tracking_code.clone(),
                phone_last4: "0004".into(),
                materials: HashMap::from([("hukou".to_string(), attachment("upload-2"))]),
                message: "已上传".into(),
                ..Default::default()
            },
            &t.resident,
        ))
        .await
        .expect("provide info")
        .into_inner();
    let detail = world
        .detail(&t.caseworker_a, &id, provided.position)
        .await
        .unwrap();
    let mut codes: Vec<(&str, &str)> = detail
        .materials
        .iter()
        .map(|(code, a)| (code.as_str(), a.reference.as_str()))
        .collect();
    codes.sort();
    assert_eq!(codes, [("hukou", "upload-2"), ("id_card", "upload-1")]);
    assert_eq!(detail.materials["id_card"], attachment("upload-1"));
}

#[tokio::test]
async fn issue_16_item_5_timeline_entries_carry_the_state_after_them() {
    let world = World::new().await;
    let submitted = world
        .submit(
            &world.tokens.resident,
            &yibao(),
            "i16-5-0001",
            "13812340005",
        )
        .await
        .unwrap();
    let position = accept(&world, &submitted.request_id, "").await;
    let detail = world
        .detail(&world.tokens.caseworker_a, &submitted.request_id, position)
        .await
        .unwrap();
    let states: Vec<(&str, RequestState)> = detail
        .timeline
        .iter()
        .map(|e| (e.event_type.as_str(), e.state()))
        .collect();
    assert_eq!(
        states,
        [
            ("RequestSubmitted", RequestState::Submitted),
            ("RequestClaimed", RequestState::Submitted),
            ("RequestAccepted", RequestState::Accepted),
        ]
    );
    let status = world.status(&submitted, position).await;
    assert_eq!(
        status.timeline.last().map(|e| e.state()),
        Some(RequestState::Accepted)
    );
}

#[tokio::test]
async fn issue_16_item_6_an_overdue_resident_sees_the_yellow_card_staff_see() {
    let world = World::on(TestApp::spawn_with(|config| config.demo_clock = true).await).await;
    let submitted = world
        .submit(
            &world.tokens.resident,
            &yibao(),
            "i16-6-0001",
            "13812340006",
        )
        .await
        .unwrap();
    let id = submitted.request_id.clone();
    let accepted = accept(&world, &id, "").await;
    let promised = world
        .detail(&world.tokens.caseworker_a, &id, accepted)
        .await
        .unwrap()
        .deadline
        .unwrap();
    let days = promised.working_days_left as u32 + 1;
    let advanced = world
        .clients
        .admin
        .clone()
        .advance_clock(authed(
            AdvanceClockRequest {
                by: None,
                working_days: days,
            },
            &world.tokens.admin,
        ))
        .await
        .expect("advance clock")
        .into_inner();
    let staff = world
        .detail(&world.tokens.caseworker_a, &id, advanced.position)
        .await
        .unwrap()
        .deadline
        .unwrap();
    assert_eq!(staff.sla_status(), SlaStatus::YellowCard);
    let resident = world
        .status(&submitted, advanced.position)
        .await
        .deadline
        .unwrap();
    assert_eq!(resident.sla_status(), SlaStatus::YellowCard);
    assert!(resident.overdue);
    assert_eq!(resident.kind, staff.kind);
}

#[tokio::test]
async fn issue_16_item_7_the_queue_counts_all_pages_and_fills_every_column() {
    let world = World::new().await;
    let t = &world.tokens;
    let mut ids = Vec::new();
    for n in 0..3 {
        let submitted = world
            .submit(
                &t.resident,
                &yibao(),
                &format!("i16-7-000{n}"),
                &format!("1381234007{n}"),
            )
            .await
            .unwrap();
        ids.push(submitted.request_id);
    }
    accept(&world, &ids[0], "").await;
    let position = world
        .clients
        .caseworker
        .clone()
        .request_extension(authed(
            RequestExtensionRequest {
                request_id: ids[0].clone(),
                working_days: 3,
                reason: "需入户核查".into(),
                ..Default::default()
            },
            &t.caseworker_a,
        ))
        .await
        .expect("extension")
        .into_inner()
        .position;
    let mut cw = world.clients.caseworker.clone();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = cw
            .list_queue(authed(
                ListQueueRequest {
                    filter: Some(QueueFilter {
                        site_ids: vec![SITE_A.into()],
                        ..Default::default()
                    }),
                    page_size: 1,
                    page_token: token.clone(),
                    min_position: position,
                },
                &t.caseworker_a,
            ))
            .await
            .expect("queue")
            .into_inner();
        assert_eq!(page.total_size, 3, "every page counts all matching items");
        seen.extend(page.items);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 3);
    for item in &seen {
        let detail = world
            .detail(&t.caseworker_a, &item.request_id, 0)
            .await
            .unwrap();
        assert_eq!(item.version, detail.version, "{}", item.request_id);
        assert_eq!(item.applicant_name_masked, "李**");
        assert_eq!(
            item.awaiting_supervisor,
            item.request_id == ids[0],
            "only the request with a pending extension waits for a supervisor"
        );
    }
}

#[tokio::test]
async fn issue_16_item_9_a_kiosk_request_is_withdrawn_and_rated_with_the_receipt() {
    let world = World::new().await;
    let t = &world.tokens;
    let kiosk_submit = |key: &'static str, phone: &'static str| {
        let mut request = yibao().request(key, phone);
        request.on_behalf_of = Some(OnBehalfOf {
            kiosk_id: "kiosk-a1".into(),
            staff_name: "张".into(),
            ..Default::default()
        });
        let mut resident = world.clients.resident.clone();
        let token = t.kiosk.clone();
        async move {
            let response = resident
                .submit_request(authed(request, &token))
                .await
                .expect("kiosk submits")
                .into_inner();
            Submitted {
                request_id: response.request_id,
                tracking_code: response.tracking_code,
                position: response.position,
                phone_last4: phone[phone.len() - 4..].to_string(),
                token,
                replayed: false,
            }
        }
    };
    let mut resident = world.clients.resident.clone();

    // The resident, with their own account, withdraws with the receipt's code and digits.
    let withdrawn = kiosk_submit("i16-9-0001", "13812340009").await;
    let wrong_digits = resident
        .withdraw_request(authed(
            WithdrawRequestRequest {
                tracking_code: withdrawn.tracking_code.clone(),
                phone_last4: "1111".into(),
                ..Default::default()
            },
            &t.resident,
        ))
        .await;
    let wrong = assert_code(wrong_digits, Code::NotFound);
    let unknown = resident
        .withdraw_request(authed(
            WithdrawRequestRequest {
                tracking_code: "AJ-AAAA-AAAA-AAAA".into(),
                phone_last4: "0009".into(),
                ..Default::default()
            },
            &t.resident,
        ))
        .await;
    let unknown = assert_code(unknown, Code::NotFound);
    assert_eq!(
        wrong.message(),
        unknown.message(),
        "digits are not told apart"
    );
    let answer = resident
        .withdraw_request(authed(
            WithdrawRequestRequest {
                tracking_code: withdrawn.tracking_code.clone(),
                phone_last4: "0009".into(),
                reason: "不需要了".into(),
                ..Default::default()
            },
            &t.resident,
        ))
        .await
        .expect("withdraw with the receipt")
        .into_inner();
    assert_eq!(answer.state(), RequestState::Withdrawn);

    // The kiosk rates a fulfilled request for the resident standing at it.
    let rated = kiosk_submit("i16-9-0002", "13812340019").await;
    accept(&world, &rated.request_id, "").await;
    fulfil(&world, &rated.request_id).await;
    let mut kiosk = world.clients.resident.clone();
    let answer = kiosk
        .rate_request(authed(
            RateRequestRequest {
                tracking_code: rated.tracking_code.clone(),
                phone_last4: "0019".into(),
                grade: SatisfactionGrade::VerySatisfied as i32,
                comment: "办得快".into(),
                ..Default::default()
            },
            &t.kiosk,
        ))
        .await
        .expect("the kiosk rates with the receipt")
        .into_inner();
    let status = world.status(&rated, answer.position).await;
    assert_eq!(
        status.rating.map(|r| r.grade),
        Some(SatisfactionGrade::VerySatisfied as i32)
    );
}

#[tokio::test]
async fn issue_16_item_10_a_retried_caseworker_write_answers_the_first_call() {
    let world = World::new().await;
    let t = &world.tokens;
    let submitted = world
        .submit(&t.resident, &yibao(), "i16-10-0001", "13812340010")
        .await
        .unwrap();
    let id = submitted.request_id.clone();
    let claimed = claim(&world, &id).await;
    let version = world
        .detail(&t.caseworker_a, &id, claimed)
        .await
        .unwrap()
        .version;
    let note = || AddNoteRequest {
        request_id: id.clone(),
        expected_version: Some(version),
        idempotency_key: "note-retry-0001".into(),
        text: "已电话联系".into(),
        internal: true,
    };
    let mut cw = world.clients.caseworker.clone();
    let first = cw
        .add_note(authed(note(), &t.caseworker_a))
        .await
        .expect("first note")
        .into_inner();
    // The retry carries the same expected version, which the first call moved on.
    let again = cw
        .add_note(authed(note(), &t.caseworker_a))
        .await
        .expect("the retry answers")
        .into_inner();
    assert_eq!(again, first);
    let detail = world
        .detail(&t.caseworker_a, &id, again.position)
        .await
        .unwrap();
    assert_eq!(detail.notes.len(), 1, "one note, not two");
    // A different key is a different note.
    let other = cw
        .add_note(authed(
            AddNoteRequest {
                expected_version: None,
                idempotency_key: "note-retry-0002".into(),
                ..note()
            },
            &t.caseworker_a,
        ))
        .await
        .expect("second note")
        .into_inner();
    assert!(other.position > first.position);
}

#[tokio::test]
async fn issue_16_item_8_reports_give_age_buckets_oldest_unrated_and_the_whole_wait() {
    let world = World::new().await;
    let t = &world.tokens;
    let submitted = world
        .submit(&t.resident, &yibao(), "i16-8-0001", "13812340008")
        .await
        .unwrap();
    accept(&world, &submitted.request_id, "").await;
    let position = fulfil(&world, &submitted.request_id).await;
    let open = world
        .submit(&t.resident, &yibao(), "i16-8-0002", "13812340018")
        .await
        .unwrap();
    let position = position.max(open.position);
    let mut manager = world.clients.manager.clone();
    let filter = || {
        Some(ReportFilter {
            site_ids: vec![SITE_A.into()],
            ..Default::default()
        })
    };
    let backlog = manager
        .get_backlog(authed(
            GetBacklogRequest {
                filter: filter(),
                grouping: ReportGrouping::None as i32,
                min_position: position,
            },
            &t.manager_a,
        ))
        .await
        .expect("backlog")
        .into_inner();
    let cells: Vec<&BacklogCell> = backlog.rows.iter().flat_map(|r| r.cells.iter()).collect();
    assert!(!cells.is_empty());
    for cell in &cells {
        assert!(
            ["0-1", "2-5", "6-10", "11+"].contains(&cell.age_bucket.as_str()),
            "{cell:?}"
        );
        let oldest = cell
            .oldest_submitted_at
            .as_ref()
            .expect("oldest submission");
        assert!(oldest.seconds > 0, "{cell:?}");
    }
    let satisfaction = manager
        .get_satisfaction(authed(
            GetSatisfactionRequest {
                filter: filter(),
                grouping: ReportGrouping::None as i32,
                min_position: position,
            },
            &t.manager_a,
        ))
        .await
        .expect("satisfaction")
        .into_inner();
    let total = satisfaction.total.expect("a total row");
    assert_eq!((total.rated, total.unrated), (0, 1));
    let lead = manager
        .get_lead_times(authed(
            GetLeadTimesRequest {
                filter: filter(),
                grouping: ReportGrouping::None as i32,
                min_position: position,
            },
            &t.manager_a,
        ))
        .await
        .expect("lead times")
        .into_inner();
    let whole = lead
        .rows
        .iter()
        .flat_map(|r| r.segments.iter())
        .find(|s| s.segment() == LeadTimeSegment::SubmitToFulfilled)
        .expect("the submit-to-fulfilled segment");
    assert_eq!(whole.count, 1);
}
