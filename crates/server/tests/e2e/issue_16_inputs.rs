//! Issue 16, items 11 to 20: what the service must refuse or tell, through the gRPC API.
//! The phone digits are no oracle and their look-ups are limited (11), bad page tokens,
//! unknown enum values and backwards time ranges are INVALID_ARGUMENT naming the field
//! (14, 15), and the log totals are for managers of every site only (17). Control
//! characters, escapes and bidirectional overrides are refused naming the field (12);
//! typed answers must match their field's type and stay exact (13).

use anju_proto::v1::*;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::{assert_code, Form, World};
use crate::helpers::{authed, TestApp};

/// Medical-insurance enrolment at site A: no approval levels.
fn form_for_site_a() -> Form {
    Form::text(
        "JY-YIBAO",
        &[("action", "新参保 new enrolment"), ("people", "2")],
    )
}

/// Asserts a call failed with INVALID_ARGUMENT and a field violation of `field`.
#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) -> Status {
    let status = assert_code(result, Code::InvalidArgument);
    let details = status.get_error_details();
    let fields: Vec<String> = details
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default();
    assert!(
        fields.iter().any(|f| f == field),
        "no violation of {field} in {fields:?}: {}",
        status.message()
    );
    status
}

/// The three writes that find a request by tracking code and digits, as `token`.
async fn writes_by_code(
    world: &World,
    token: &str,
    tracking_code: &str,
    phone_last4: &str,
) -> Vec<(&'static str, Result<(), Status>)> {
    let mut resident = world.clients.resident.clone();
    let code = tracking_code.to_string();
    let digits = phone_last4.to_string();
    let provide = resident
        .provide_info(authed(
            ProvideInfoRequest {
                tracking_code: code.clone(),
                phone_last4: digits.clone(),
                message: "补充材料".into(),
                ..Default::default()
            },
            token,
        ))
        .await
        .map(drop);
    let rate = resident
        .rate_request(authed(
            RateRequestRequest {
                tracking_code: code.clone(),
                phone_last4: digits.clone(),
                grade: SatisfactionGrade::Satisfied as i32,
                ..Default::default()
            },
            token,
        ))
        .await
        .map(drop);
    let withdraw = resident
        .withdraw_request(authed(
            WithdrawRequestRequest {
                tracking_code: code,
                phone_last4: digits,
                ..Default::default()
            },
            token,
        ))
        .await
        .map(drop);
    vec![
        ("ProvideInfo", provide),
        ("RateRequest", rate),
        ("WithdrawRequest", withdraw),
    ]
}

/// Item 11: right digits from someone the request does not answer to must not read
/// differently from wrong digits, and wrong digits like an unknown code.
#[tokio::test]
async fn right_and_wrong_phone_digits_answer_alike_on_writes() {
    let world = World::new().await;
    let t = &world.tokens;
    let submitted = world
        .submit(
            &t.resident,
            &form_for_site_a(),
            "oracle-0001-key",
            "13700004321",
        )
        .await
        .unwrap();
    world.status(&submitted, submitted.position).await;
    let unknown = writes_by_code(&world, &t.other_resident, "AJ-0000-0000-0000", "4321").await;
    let wrong = writes_by_code(&world, &t.other_resident, &submitted.tracking_code, "1234").await;
    let right = writes_by_code(&world, &t.other_resident, &submitted.tracking_code, "4321").await;
    for ((method, unknown), ((_, wrong), (_, right))) in
        unknown.into_iter().zip(wrong.into_iter().zip(right))
    {
        let unknown = unknown.expect_err("an unknown code is not found");
        let wrong = wrong.expect_err("wrong digits are not found");
        assert_eq!(unknown.code(), Code::NotFound, "{method}: {unknown:?}");
        assert_eq!(
            (wrong.code(), wrong.message()),
            (unknown.code(), unknown.message()),
            "{method}: wrong digits answer like an unknown code"
        );
        if let Err(right) = right {
            assert_ne!(
                right.code(),
                Code::PermissionDenied,
                "{method}: right digits must not be told apart from wrong ones: {right:?}"
            );
            assert!(
                !right.message().contains("applicant"),
                "{method}: {right:?}"
            );
        }
    }
}

/// Item 11: every call that takes a tracking code and digits counts against the one
/// look-up limit, so ten thousand guesses cannot be made in a burst.
#[tokio::test]
async fn writes_by_tracking_code_count_against_the_look_up_limit() {
    let app = TestApp::spawn_with(|config| config.status_lookups_per_minute = 5).await;
    let world = World::on(app).await;
    let t = &world.tokens;
    let submitted = world
        .submit(
            &t.resident,
            &form_for_site_a(),
            "oracle-0002-key",
            "13700004321",
        )
        .await
        .unwrap();
    world.status(&submitted, submitted.position).await;
    // Two rounds of three writes with wrong digits: the sixth is past the limit.
    let mut outcomes =
        writes_by_code(&world, &t.other_resident, &submitted.tracking_code, "0000").await;
    outcomes
        .extend(writes_by_code(&world, &t.other_resident, &submitted.tracking_code, "0001").await);
    let codes: Vec<Code> = outcomes
        .iter()
        .map(|(_, r)| r.as_ref().unwrap_err().code())
        .collect();
    assert_eq!(codes[..5], [Code::NotFound; 5], "{outcomes:?}");
    let (method, last) = &outcomes[5];
    let last = last.as_ref().unwrap_err();
    assert_eq!(last.code(), Code::ResourceExhausted, "{method}: {last:?}");
    assert!(
        last.message().contains("5 per minute"),
        "{}",
        last.message()
    );
    // The status look-up shares the bucket.
    let status = world
        .clients
        .resident
        .clone()
        .get_request_status(authed(
            GetRequestStatusRequest {
                tracking_code: submitted.tracking_code.clone(),
                phone_last4: "4321".into(),
                min_position: 0,
            },
            &t.other_resident,
        ))
        .await;
    assert_code(status, Code::ResourceExhausted);
}

/// Item 15: a page token the server never issued is the caller's mistake, not an outage.
#[tokio::test]
async fn a_garbage_page_token_is_invalid_argument() {
    let world = World::new().await;
    let result = world
        .clients
        .caseworker
        .clone()
        .list_queue(authed(
            ListQueueRequest {
                page_token: "not-a-token".into(),
                ..Default::default()
            },
            &world.tokens.caseworker_a,
        ))
        .await;
    assert_invalid(result, "page_token");
}

/// Item 14: enum values the API does not define, and a time range that ends before it
/// starts, are refused naming the field instead of being read as a default.
#[tokio::test]
async fn unknown_enum_values_and_backward_ranges_are_refused() {
    let world = World::new().await;
    let t = &world.tokens;
    let mut manager = world.clients.manager.clone();
    let result = manager
        .get_throughput(authed(
            GetThroughputRequest {
                bucket: 42,
                ..Default::default()
            },
            &t.manager_all,
        ))
        .await;
    assert_invalid(result, "bucket");
    let result = manager
        .get_sla_report(authed(
            GetSlaReportRequest {
                grouping: 42,
                ..Default::default()
            },
            &t.manager_all,
        ))
        .await;
    assert_invalid(result, "grouping");
    let backwards = ReportFilter {
        time_range: Some(TimeRange {
            from: Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            to: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
        }),
        ..Default::default()
    };
    let result = manager
        .get_backlog(authed(
            GetBacklogRequest {
                filter: Some(backwards),
                ..Default::default()
            },
            &t.manager_all,
        ))
        .await;
    assert_invalid(result, "filter.time_range");
    let result = world
        .clients
        .eventlog
        .clone()
        .read_stream(authed(
            ReadStreamRequest {
                stream_id: "request-0190f0a2-0000-7000-8000-000000000000".into(),
                direction: 9,
                ..Default::default()
            },
            &t.admin,
        ))
        .await;
    assert_invalid(result, "direction");
    let result = world
        .clients
        .caseworker
        .clone()
        .list_queue(authed(
            ListQueueRequest {
                filter: Some(QueueFilter {
                    sla_statuses: vec![SlaStatus::Warning as i32, 77],
                    ..Default::default()
                }),
                ..Default::default()
            },
            &t.caseworker_a,
        ))
        .await;
    assert_invalid(result, "filter.sla_statuses[1]");
}

/// Item 17: log totals count every site of the node, so a manager of one site may not
/// read them; a manager of every site may.
#[tokio::test]
async fn log_stats_are_for_managers_of_every_site() {
    let world = World::new().await;
    let t = &world.tokens;
    let mut eventlog = world.clients.eventlog.clone();
    let result = eventlog
        .get_log_stats(authed(GetLogStatsRequest::default(), &t.manager_a))
        .await;
    let status = assert_code(result, Code::PermissionDenied);
    assert!(
        status.message().contains("every site"),
        "{}",
        status.message()
    );
    eventlog
        .get_log_stats(authed(GetLogStatsRequest::default(), &t.manager_all))
        .await
        .expect("a province-wide manager reads the totals");
}

/// A form of typed answers for `service_code` at site A.
fn typed(service_code: &'static str, answers: Vec<(&'static str, form_value::Value)>) -> Form {
    Form {
        service_code,
        site: super::SITE_A,
        text_answers: Vec::new(),
        typed_answers: answers,
        id_number: None,
    }
}

/// Item 12: control characters, terminal escapes, NUL and bidirectional overrides in
/// names, answers, notes and material codes are refused naming the field, and nothing
/// is written.
#[tokio::test]
async fn control_characters_and_bidi_overrides_are_refused_at_the_edge() {
    let world = World::new().await;
    let t = &world.tokens;
    let submitted = world
        .submit(
            &t.resident,
            &form_for_site_a(),
            "unprint-0001-key",
            "13700001111",
        )
        .await
        .unwrap();
    let head = world.head().await;
    let mut resident = world.clients.resident.clone();

    let mut request = form_for_site_a().request("unprint-0002-key", "13700001111");
    request.applicant.as_mut().unwrap().name = "\u{1b}[2J李秀英".into();
    let status = assert_invalid(
        resident.submit_request(authed(request, &t.resident)).await,
        "applicant.display_name",
    );
    assert!(status.message().contains("U+001B"), "{}", status.message());
    assert!(
        !status.message().contains('\u{1b}'),
        "{:?}",
        status.message()
    );

    let weixiu = Form::text(
        "SQ-WEIXIU",
        &[("problem", "漏水 leak"), ("location", "3-2-501\u{202E}10")],
    );
    let request = weixiu.request("unprint-0003-key", "13700001111");
    let status = assert_invalid(
        resident.submit_request(authed(request, &t.resident)).await,
        "location",
    );
    assert!(status.message().contains("U+202E"), "{}", status.message());

    let mut caseworker = world.clients.caseworker.clone();
    let result = caseworker
        .add_note(authed(
            AddNoteRequest {
                request_id: submitted.request_id.clone(),
                text: "电话已联系\0".into(),
                ..Default::default()
            },
            &t.caseworker_a,
        ))
        .await;
    assert_invalid(result, "text");
    let result = caseworker
        .request_info(authed(
            RequestInfoRequest {
                request_id: submitted.request_id.clone(),
                missing: vec![MissingMaterial {
                    material_code: "hukou\u{1b}]0;pwned\u{7}".into(),
                    description: String::new(),
                }],
                ..Default::default()
            },
            &t.caseworker_a,
        ))
        .await;
    assert_invalid(result, "missing[0].material_code");
    let result = resident
        .withdraw_request(authed(
            WithdrawRequestRequest {
                tracking_code: submitted.tracking_code.clone(),
                phone_last4: submitted.phone_last4.clone(),
                reason: "不需要了\u{2066}".into(),
                ..Default::default()
            },
            &t.resident,
        ))
        .await;
    assert_invalid(result, "reason");
    assert_eq!(world.head().await, head, "a refused call wrote an event");

    // A multi-line note is still free text.
    caseworker
        .add_note(authed(
            AddNoteRequest {
                request_id: submitted.request_id.clone(),
                text: "第一行\n第二行".into(),
                ..Default::default()
            },
            &t.admin,
        ))
        .await
        .expect("line breaks are allowed in a note");
}

/// Item 13: a typed answer must be of its field's type (common.proto), a NaN is not
/// "a text", and an integer too large to be kept exactly is refused without being
/// echoed rounded.
#[tokio::test]
async fn typed_answers_must_match_their_field_types_and_stay_exact() {
    let world = World::new().await;
    let t = &world.tokens;
    let head = world.head().await;
    let submit = |form: Form, key: &'static str| {
        let world = &world;
        async move { world.submit(&t.resident, &form, key, "13700002222").await }
    };
    use form_value::Value;
    let status = assert_invalid(
        submit(
            typed(
                "JY-YIBAO",
                vec![
                    ("action", Value::Choice("新参保 new enrolment".into())),
                    ("people", Value::Text("2".into())),
                ],
            ),
            "kind-0001-key",
        )
        .await,
        "answers[people]",
    );
    assert!(
        status.message().contains("got a text"),
        "{}",
        status.message()
    );
    assert_invalid(
        submit(
            typed(
                "JX-ZHUANXUE",
                vec![
                    ("current_school", Value::Integer(3)),
                    ("current_grade", Value::Integer(3)),
                ],
            ),
            "kind-0002-key",
        )
        .await,
        "answers[current_school]",
    );
    let status = assert_invalid(
        submit(
            typed(
                "JY-YIBAO",
                vec![
                    ("action", Value::Choice("新参保 new enrolment".into())),
                    ("people", Value::Decimal(f64::NAN)),
                ],
            ),
            "kind-0003-key",
        )
        .await,
        "answers[people]",
    );
    assert!(status.message().contains("finite"), "{}", status.message());
    assert!(!status.message().contains("a text"), "{}", status.message());
    let status = assert_invalid(
        submit(
            typed(
                "JY-YIBAO",
                vec![
                    ("action", Value::Choice("新参保 new enrolment".into())),
                    ("people", Value::Integer(i64::MAX)),
                ],
            ),
            "kind-0004-key",
        )
        .await,
        "people",
    );
    assert!(
        !status.message().contains("9223372036854776000"),
        "{}",
        status.message()
    );
    assert_eq!(
        world.head().await,
        head,
        "a refused submission wrote an event"
    );
    // Integers and decimals both fill a number field.
    submit(
        typed(
            "JY-YIBAO",
            vec![
                ("action", Value::Choice("新参保 new enrolment".into())),
                ("people", Value::Integer(2)),
            ],
        ),
        "kind-0005-key",
    )
    .await
    .expect("an integer for a number field");
}

/// Item 18: a kiosk draws its form and tells residents what to bring from the service
/// definition alone: every service lists its materials with descriptions and the sites
/// offering it, number fields their range and text fields their lengths.
#[tokio::test]
async fn service_definitions_carry_materials_ranges_and_sites() {
    let world = World::new().await;
    let t = &world.tokens;
    let mut resident = world.clients.resident.clone();
    let services = resident
        .list_services(authed(
            ListServicesRequest {
                site_id: super::SITE_A.into(),
                ..Default::default()
            },
            &t.kiosk,
        ))
        .await
        .expect("services of site A")
        .into_inner()
        .services;
    assert!(services.len() >= 16, "{} services", services.len());
    for summary in services {
        let service = resident
            .get_service_definition(authed(
                GetServiceDefinitionRequest {
                    service_code: summary.code.clone(),
                    min_position: 0,
                },
                &t.kiosk,
            ))
            .await
            .expect("a definition")
            .into_inner()
            .service
            .expect("a service");
        let code = &service.code;
        assert!(!service.materials.is_empty(), "{code} lists no materials");
        for material in &service.materials {
            assert!(
                !material.code.is_empty()
                    && !material.name.is_empty()
                    && !material.description.is_empty()
                    && material.description != material.name,
                "{code}: {material:?}"
            );
        }
        assert!(service.materials.iter().any(|m| m.required), "{code}");
        assert!(
            service
                .site_ids
                .iter()
                .any(|s| s == "*" || s == super::SITE_A),
            "{code} offered at {:?}",
            service.site_ids
        );
        for field in &service.fields {
            if field.r#type == FieldType::Decimal as i32 {
                assert!(
                    field.min.is_some() && field.max.is_some(),
                    "{code}.{} has no range",
                    field.key
                );
            }
        }
        if code == "MZ-DIBAO" {
            let id = service
                .fields
                .iter()
                .find(|f| f.key == "id_number")
                .unwrap();
            assert_eq!((id.min_length, id.max_length), (18, 18), "{code}");
            let size = service
                .fields
                .iter()
                .find(|f| f.key == "household_size")
                .unwrap();
            assert_eq!((size.min, size.max), (Some(1.0), Some(20.0)));
        }
    }
}
