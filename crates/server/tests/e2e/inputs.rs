//! Bad inputs, each answered with its own error and none of them writing an event:
//! missing, unknown and mistyped form fields, oversized strings and messages, invalid
//! UTF-8 on the wire, unknown and malformed service codes, malformed tracking codes and
//! request ids, and expired and forged tokens.

use anju_auth::Role;
use anju_proto::v1::*;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::{dibao, Form, World};
use crate::helpers::{authed, token_with, TestApp};

/// What a bad call must get: its code and, for INVALID_ARGUMENT, the field named in
/// the google.rpc.BadRequest details.
struct Expect {
    code: Code,
    field: Option<&'static str>,
}

fn invalid(field: &'static str) -> Expect {
    Expect {
        code: Code::InvalidArgument,
        field: Some(field),
    }
}

fn code(code: Code) -> Expect {
    Expect { code, field: None }
}

fn weixiu(answers: &[(&'static str, &'static str)]) -> Form {
    Form::text("SQ-WEIXIU", answers)
}

fn check(name: &str, result: Result<(), Status>, expect: &Expect) -> Option<String> {
    let status = match result {
        Ok(()) => return Some(format!("{name}: expected {:?}, got OK", expect.code)),
        Err(status) => status,
    };
    if status.code() != expect.code {
        return Some(format!(
            "{name}: expected {:?}, got {status:?}",
            expect.code
        ));
    }
    if let Some(field) = expect.field {
        let details = status.get_error_details();
        let fields: Vec<String> = details
            .bad_request()
            .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
            .unwrap_or_default();
        if !fields.iter().any(|f| f.contains(field)) {
            return Some(format!(
                "{name}: no violation of {field} in {fields:?} ({})",
                status.message()
            ));
        }
    }
    if status.message().contains("13812345678") {
        return Some(format!(
            "{name}: the phone number leaked into {:?}",
            status.message()
        ));
    }
    None
}

/// A SubmitRequestRequest whose `service_code` (field 2) carries raw bytes, so the
/// server receives a string field that is not UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct RawSubmit {
    #[prost(string, tag = "1")]
    idempotency_key: String,
    #[prost(bytes = "vec", tag = "2")]
    service_code: Vec<u8>,
    #[prost(string, tag = "3")]
    site_id: String,
}

async fn submit_raw(app: &TestApp, token: &str, raw: RawSubmit) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(app.channel().await);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<RawSubmit, SubmitRequestResponse>::default();
    let path = http::uri::PathAndQuery::from_static("/anju.v1.ResidentService/SubmitRequest");
    grpc.unary(authed(raw, token), path, codec).await.map(drop)
}

#[tokio::test]
async fn bad_inputs_get_their_own_error_and_write_nothing() {
    let app = TestApp::spawn_with(|config| config.max_message_bytes = 64 * 1024).await;
    let world = World::on(app).await;
    let t = &world.tokens;
    // One good request to aim the request-level calls at.
    let good = world
        .submit(&t.resident, &dibao(), "inputs-good-0001", "13812345678")
        .await
        .unwrap();
    world.status(&good, good.position).await;
    let head = world.head().await;
    let mut resident = world.clients.resident.clone();
    let mut cw = world.clients.caseworker.clone();
    let mut failures = Vec::new();

    let submit_cases: Vec<(&str, SubmitRequestRequest, Expect)> = vec![
        (
            "missing form field",
            weixiu(&[("problem", "漏水 leak")]).request("inputs-0001", "13812345678"),
            invalid("location"),
        ),
        (
            "unknown form field",
            weixiu(&[
                ("problem", "漏水 leak"),
                ("location", "1-1"),
                ("colour", "red"),
            ])
            .request("inputs-0002", "13812345678"),
            invalid("colour"),
        ),
        (
            "text in a number field",
            Form::text(
                "JY-YIBAO",
                &[("action", "新参保 new enrolment"), ("people", "two")],
            )
            .request("inputs-0003", "13812345678"),
            invalid("people"),
        ),
        (
            "oversized answer",
            weixiu(&[
                ("problem", "漏水 leak"),
                (
                    "location",
                    "0123456789012345678901234567890123456789012345678901234567890",
                ),
            ])
            .request("inputs-0004", "13812345678"),
            invalid("location"),
        ),
        (
            "choice not offered",
            weixiu(&[("problem", "fire"), ("location", "1-1")])
                .request("inputs-0005", "13812345678"),
            invalid("problem"),
        ),
        (
            "unknown service code",
            Form::text("XX-NOPE", &[]).request("inputs-0006", "13812345678"),
            invalid("service_code"),
        ),
        (
            "malformed service code",
            Form::text("bad code!", &[]).request("inputs-0007", "13812345678"),
            invalid("service_code"),
        ),
        (
            "bad phone",
            weixiu(&[("problem", "漏水 leak"), ("location", "1-1")])
                .request("inputs-0008", "12345"),
            invalid("applicant.phone"),
        ),
        (
            "missing idempotency key",
            weixiu(&[("problem", "漏水 leak"), ("location", "1-1")]).request("", "13812345678"),
            invalid("idempotency_key"),
        ),
        (
            "oversized applicant name",
            {
                let mut r = weixiu(&[("problem", "漏水 leak"), ("location", "1-1")])
                    .request("inputs-0010", "13812345678");
                r.applicant.as_mut().unwrap().name = "名".repeat(41);
                r
            },
            invalid("applicant.display_name"),
        ),
        (
            "mistyped identity number",
            {
                let mut form = dibao();
                form.id_number = Some("110105194912310021");
                form.request("inputs-0011", "13812345678")
            },
            invalid("applicant.id_number"),
        ),
        (
            "answers and text answers together",
            {
                let mut r = dibao().request("inputs-0012", "13812345678");
                r.text_answers.insert("situation".into(), "x".into());
                r
            },
            invalid("answers"),
        ),
        (
            "oversized message",
            {
                let mut r = weixiu(&[("problem", "漏水 leak"), ("location", "1-1")])
                    .request("inputs-0013", "13812345678");
                r.text_answers
                    .insert("details".into(), "x".repeat(100 * 1024));
                r
            },
            code(Code::OutOfRange),
        ),
    ];
    for (name, request, expect) in submit_cases {
        let result = resident
            .submit_request(authed(request, &t.resident))
            .await
            .map(drop);
        failures.extend(check(name, result, &expect));
    }

    let lookup = |tracking_code: &str, phone_last4: &str| GetRequestStatusRequest {
        tracking_code: tracking_code.into(),
        phone_last4: phone_last4.into(),
        min_position: 0,
    };
    let result = resident
        .get_request_status(authed(lookup("hello", "5678"), &t.resident))
        .await
        .map(drop);
    failures.extend(check(
        "malformed tracking code",
        result,
        &invalid("tracking_code"),
    ));
    let result = resident
        .get_request_status(authed(lookup(&good.tracking_code, "56a8"), &t.resident))
        .await
        .map(drop);
    failures.extend(check(
        "phone digits not digits",
        result,
        &invalid("phone_last4"),
    ));
    let result = resident
        .withdraw_request(authed(
            WithdrawRequestRequest {
                tracking_code: "AJ-??".into(),
                phone_last4: "5678".into(),
                ..Default::default()
            },
            &t.resident,
        ))
        .await
        .map(drop);
    failures.extend(check(
        "malformed tracking code on a write",
        result,
        &invalid("tracking_code"),
    ));
    let result = resident
        .rate_request(authed(
            RateRequestRequest {
                tracking_code: good.tracking_code.clone(),
                phone_last4: good.phone_last4.clone(),
                ..Default::default()
            },
            &t.resident,
        ))
        .await
        .map(drop);
    failures.extend(check("no grade", result, &invalid("grade")));
    let result = cw
        .get_request(authed(
            GetRequestRequest {
                request_id: "not-a-uuid".into(),
                min_position: 0,
            },
            &t.caseworker_a,
        ))
        .await
        .map(drop);
    failures.extend(check(
        "malformed request id",
        result,
        &invalid("request_id"),
    ));
    let result = cw
        .refuse_request(authed(
            RefuseRequestRequest {
                request_id: good.request_id.clone(),
                ..Default::default()
            },
            &t.caseworker_a,
        ))
        .await
        .map(drop);
    failures.extend(check(
        "refusal without a reason",
        result,
        &invalid("reason"),
    ));
    let result = cw
        .add_note(authed(
            AddNoteRequest {
                request_id: good.request_id.clone(),
                text: "长".repeat(3000),
                ..Default::default()
            },
            &t.caseworker_a,
        ))
        .await
        .map(drop);
    failures.extend(check("oversized note", result, &invalid("text")));
    let result = cw
        .accept_request(authed(
            AcceptRequestRequest {
                request_id: good.request_id.clone(),
                ..Default::default()
            },
            &t.caseworker_a,
        ))
        .await
        .map(drop);
    failures.extend(check(
        "accept before claiming",
        result,
        &code(Code::FailedPrecondition),
    ));

    // Invalid UTF-8 in a string field: prost refuses to decode the message, and tonic
    // answers INTERNAL before any handler runs.
    let raw = RawSubmit {
        idempotency_key: "inputs-raw-0001".into(),
        service_code: vec![b'M', b'Z', 0xff, 0xfe, b'-'],
        site_id: "site-a".into(),
    };
    let result = submit_raw(&world.app, &t.resident, raw).await;
    failures.extend(check("invalid utf-8", result, &code(Code::Internal)));

    // Tokens: expired, and forged with another secret.
    let expired = token_with(
        &world.app.secret,
        Role::Resident,
        "resident-li",
        &[],
        &[],
        1_000,
    );
    let forged = token_with(
        &anju_auth::Secret::from_bytes(vec![7; 32]),
        Role::Admin,
        "mallory",
        &["*"],
        &[],
        crate::helpers::now() + 3600,
    );
    for (name, token) in [("expired token", expired), ("forged token", forged)] {
        let result = resident
            .submit_request(authed(
                dibao().request("inputs-token-0001", "13812345678"),
                &token,
            ))
            .await
            .map(drop);
        failures.extend(check(name, result, &code(Code::Unauthenticated)));
    }

    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(world.head().await, head, "no bad input wrote an event");
}
