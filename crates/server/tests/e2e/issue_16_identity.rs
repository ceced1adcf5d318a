//! Issue 16, item 19: a resident who lost the receipt is found again by identity
//! number. Staff who checked the card find that resident's requests within their own
//! scope; residents, kiosks and managers may not look; every look-up is limited per
//! staff member and recorded in the log's audit stream; and the number itself is in
//! no event, only a digest keyed with the node's secret.

use anju_auth::Role;
use anju_proto::v1::*;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::{assert_code, dibao, Form, Submitted, World, SAMPLE_ID_NUMBER, SITE_A, SITE_B};
use crate::helpers::{authed, TestApp};

/// Valid identity numbers (their check characters match) nobody else in these tests uses.
const SECOND_ID_NUMBER: &str = "513422195803120029";
const UNUSED_ID_NUMBER: &str = "513422198007150044";

const AUDIT_STREAM: &str = "audit-identity-lookups";

/// Medical-insurance enrolment at `site` with the applicant's identity number.
fn enrolment(site: &'static str, id_number: Option<&'static str>) -> Form {
    Form {
        site,
        id_number,
        ..Form::text(
            "JY-YIBAO",
            &[("action", "新参保 new enrolment"), ("people", "2")],
        )
    }
}

async fn find(
    world: &World,
    token: &str,
    identity_number: &str,
    reason: &str,
) -> Result<FindRequestsByIdentityResponse, Status> {
    world
        .clients
        .caseworker
        .clone()
        .find_requests_by_identity(authed(
            FindRequestsByIdentityRequest {
                identity_number: identity_number.to_string(),
                reason: reason.to_string(),
                min_position: 0,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

fn tracking_codes(response: &FindRequestsByIdentityResponse) -> Vec<String> {
    let mut codes: Vec<String> = response
        .requests
        .iter()
        .map(|r| r.tracking_code.clone())
        .collect();
    codes.sort();
    codes
}

fn codes_of(submitted: &[&Submitted]) -> Vec<String> {
    let mut codes: Vec<String> = submitted.iter().map(|s| s.tracking_code.clone()).collect();
    codes.sort();
    codes
}

async fn read_stream(world: &World, stream_id: &str) -> Vec<Event> {
    world
        .clients
        .eventlog
        .clone()
        .read_stream(authed(
            ReadStreamRequest {
                stream_id: stream_id.to_string(),
                max_count: 1000,
                ..Default::default()
            },
            &world.tokens.admin,
        ))
        .await
        .expect("read stream")
        .into_inner()
        .events
}

/// Asserts INVALID_ARGUMENT with a violation of `field`.
#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) {
    let status = assert_code(result, Code::InvalidArgument);
    let fields: Vec<String> = status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default();
    assert!(
        fields.iter().any(|f| f == field),
        "no violation of {field} in {fields:?}: {}",
        status.message()
    );
}

#[tokio::test]
async fn staff_find_a_residents_requests_by_identity_number_within_their_scope() {
    let world = World::new().await;
    let t = &world.tokens;
    // The applicant's number and the form's id_number answer name the same person.
    let dibao_a = world
        .submit(&t.resident, &dibao(), "identity-0001-key", "13800130427")
        .await
        .unwrap();
    let enrolment_a = world
        .submit(
            &t.resident,
            &enrolment(SITE_A, Some(SAMPLE_ID_NUMBER)),
            "identity-0002-key",
            "13800130427",
        )
        .await
        .unwrap();
    let enrolment_b = world
        .submit(
            &t.resident,
            &enrolment(SITE_B, Some(SAMPLE_ID_NUMBER)),
            "identity-0003-key",
            "13800130427",
        )
        .await
        .unwrap();
    let someone_else = world
        .submit(
            &t.other_resident,
            &enrolment(SITE_A, Some(SECOND_ID_NUMBER)),
            "identity-0004-key",
            "13900139999",
        )
        .await
        .unwrap();
    let without_number = world
        .submit(
            &t.resident,
            &enrolment(SITE_A, None),
            "identity-0005-key",
            "13800130427",
        )
        .await
        .unwrap();

    let reason = "resident lost the receipt";
    let found = find(&world, &t.caseworker_a, SAMPLE_ID_NUMBER, reason)
        .await
        .expect("a caseworker of site A looks up");
    assert_eq!(
        tracking_codes(&found),
        codes_of(&[&dibao_a, &enrolment_a]),
        "site A's requests of this resident, not site B's, not another number's, not \
         the one that named no number"
    );
    assert!(!tracking_codes(&found).contains(&without_number.tracking_code));
    let first = &found.requests[0];
    assert_eq!(first.request_id, dibao_a.request_id, "oldest first");
    assert_eq!(first.service_code, "MZ-DIBAO");
    assert!(!first.service_name.is_empty());
    assert_eq!(first.category, "civil_affairs");
    assert_eq!(first.site_id, SITE_A);
    assert_eq!(first.state, RequestState::Submitted as i32);
    assert_eq!(first.applicant_name_masked, "李**");
    assert!(first.submitted_at.is_some());
    assert!(first.deadline.is_some(), "the acceptance deadline runs");
    assert_eq!(first.version, 1);
    assert!(found.audit_position > dibao_a.position);
    // What the look-up found opens with GetRequest.
    world
        .detail(&t.caseworker_a, &first.request_id, 0)
        .await
        .expect("the request found opens");

    // The card's number as people type it: a lowercase x, spaces around.
    let typed = format!("  {}  ", SAMPLE_ID_NUMBER.to_lowercase());
    let again = find(&world, &t.caseworker_a, &typed, reason).await.unwrap();
    assert_eq!(tracking_codes(&again), tracking_codes(&found));

    let site_b = find(&world, &t.caseworker_b, SAMPLE_ID_NUMBER, reason)
        .await
        .unwrap();
    assert_eq!(tracking_codes(&site_b), codes_of(&[&enrolment_b]));
    let supervisor = find(&world, &t.supervisor_a, SAMPLE_ID_NUMBER, reason)
        .await
        .unwrap();
    assert_eq!(tracking_codes(&supervisor), tracking_codes(&found));
    let admin = find(&world, &t.admin, SAMPLE_ID_NUMBER, reason)
        .await
        .unwrap();
    assert_eq!(
        tracking_codes(&admin),
        codes_of(&[&dibao_a, &enrolment_a, &enrolment_b])
    );
    // A caseworker of one category sees that category only.
    let medical_only = world
        .app
        .token(Role::Caseworker, "cw-medical", &[SITE_A], &["medical"]);
    let medical = find(&world, &medical_only, SAMPLE_ID_NUMBER, reason)
        .await
        .unwrap();
    assert_eq!(tracking_codes(&medical), codes_of(&[&enrolment_a]));

    let other = find(&world, &t.caseworker_a, SECOND_ID_NUMBER, reason)
        .await
        .unwrap();
    assert_eq!(tracking_codes(&other), codes_of(&[&someone_else]));
    let nobody = find(&world, &t.caseworker_a, UNUSED_ID_NUMBER, reason)
        .await
        .expect("a valid number nobody named finds nothing, without an error");
    assert!(nobody.requests.is_empty(), "{nobody:?}");
}

#[tokio::test]
async fn only_staff_look_up_and_bad_input_is_refused_naming_the_field_and_writes_nothing() {
    let world = World::new().await;
    let t = &world.tokens;
    world
        .submit(&t.resident, &dibao(), "identity-0101-key", "13800130427")
        .await
        .unwrap();
    let reason = "resident lost the receipt";
    for (who, token) in [
        ("resident", &t.resident),
        ("kiosk", &t.kiosk),
        ("manager", &t.manager_a),
    ] {
        let refused = assert_code(
            find(&world, token, SAMPLE_ID_NUMBER, reason).await,
            Code::PermissionDenied,
        );
        assert!(!refused.message().contains(SAMPLE_ID_NUMBER), "{who}");
    }
    let head = world.head().await;
    let mistyped = "110105194912310021";
    for number in [mistyped, "11010519491231002", "", "1101051949123100XX"] {
        let result = find(&world, &t.caseworker_a, number, reason).await;
        if let Err(status) = &result {
            assert!(
                number.is_empty() || !status.message().contains(number),
                "the refusal repeats the number: {status:?}"
            );
        }
        assert_invalid(result, "identity_number");
    }
    assert_invalid(
        find(&world, &t.caseworker_a, SAMPLE_ID_NUMBER, " ").await,
        "reason",
    );
    assert_invalid(
        find(&world, &t.caseworker_a, SAMPLE_ID_NUMBER, &"因".repeat(201)).await,
        "reason",
    );
    assert_invalid(
        find(&world, &t.caseworker_a, SAMPLE_ID_NUMBER, "lost\u{1b}[2J").await,
        "reason",
    );
    // A number typed into the reason would end up in the audit record.
    assert_invalid(
        find(
            &world,
            &t.caseworker_a,
            SAMPLE_ID_NUMBER,
            &format!("card {SAMPLE_ID_NUMBER}"),
        )
        .await,
        "reason",
    );
    assert_eq!(world.head().await, head, "refused look-ups write nothing");
    assert!(read_stream(&world, AUDIT_STREAM).await.is_empty());
}

#[tokio::test]
async fn look_ups_by_identity_number_are_limited_per_staff_member() {
    let app = TestApp::spawn_with(|config| config.identity_lookups_per_minute = 3).await;
    let world = World::on(app).await;
    let t = &world.tokens;
    let reason = "resident lost the receipt";
    for _ in 0..3 {
        find(&world, &t.caseworker_a, SAMPLE_ID_NUMBER, reason)
            .await
            .expect("within the limit");
    }
    let limited = assert_code(
        find(&world, &t.caseworker_a, UNUSED_ID_NUMBER, reason).await,
        Code::ResourceExhausted,
    );
    assert!(
        limited.message().contains("identity number") && limited.message().contains("3 per minute"),
        "the refusal names the limit: {limited:?}"
    );
    // Invalid guesses count too, and are refused before validation once the bucket
    // is empty.
    assert_code(
        find(&world, &t.caseworker_a, "garbage", reason).await,
        Code::ResourceExhausted,
    );
    find(&world, &t.caseworker_a2, SAMPLE_ID_NUMBER, reason)
        .await
        .expect("another caseworker has a bucket of their own");
}

#[tokio::test]
async fn every_look_up_is_audited_and_the_number_is_in_no_event() {
    let world = World::new().await;
    let t = &world.tokens;
    let submitted = world
        .submit(&t.resident, &dibao(), "identity-0201-key", "13800130427")
        .await
        .unwrap();
    let reason = "帮办: 居民遗失回执";
    let found = find(&world, &t.caseworker_a, SAMPLE_ID_NUMBER, reason)
        .await
        .unwrap();
    let nothing = find(
        &world,
        &t.caseworker_b,
        SAMPLE_ID_NUMBER,
        "lost receipt, site B",
    )
    .await
    .unwrap();
    assert!(nothing.requests.is_empty());

    // The submission keeps a keyed digest of the number, never the number.
    let submission = &read_stream(&world, &format!("request-{}", submitted.request_id)).await[0];
    let event: serde_json::Value = serde_json::from_slice(&submission.payload).unwrap();
    let digests = event["applicant"]["id_number_digests"]
        .as_array()
        .expect("the submission keeps digests");
    assert_eq!(
        digests.len(),
        1,
        "the applicant's number and the form's are one person: {digests:?}"
    );
    let digest = digests[0].as_str().unwrap();
    assert!(
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "{digest}"
    );

    let audit = read_stream(&world, AUDIT_STREAM).await;
    assert_eq!(audit.len(), 2, "one record per look-up");
    assert_eq!(audit[0].event_type, "RequestsFoundByIdentity");
    assert_eq!(audit[0].position, found.audit_position);
    assert_eq!(audit[1].position, nothing.audit_position);
    let record: serde_json::Value = serde_json::from_slice(&audit[0].payload).unwrap();
    assert_eq!(record["by"], "cw-wang");
    assert_eq!(record["role"], "caseworker");
    assert_eq!(record["sites"], serde_json::json!({"only": [SITE_A]}));
    assert_eq!(record["reason"], reason);
    assert_eq!(record["found"], 1);
    assert_eq!(
        record["request_ids"],
        serde_json::json!([submitted.request_id])
    );
    assert!(record["at"].as_i64().unwrap() > 0);
    let second: serde_json::Value = serde_json::from_slice(&audit[1].payload).unwrap();
    assert_eq!(
        (second["by"].as_str(), second["found"].as_u64()),
        (Some("cw-liu"), Some(0))
    );
    for event in &audit {
        let text = String::from_utf8_lossy(&event.payload);
        assert!(
            !text.contains(SAMPLE_ID_NUMBER) && !text.contains(digest),
            "the audit record holds neither the number nor its digest: {text}"
        );
    }

    // Nothing the log holds, in any event or index byte, is the number in clear.
    let number = SAMPLE_ID_NUMBER.as_bytes();
    let lowercase = SAMPLE_ID_NUMBER.to_lowercase().into_bytes();
    let mut files = 0;
    let mut stack = vec![world.app.data_dir().join("log")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            files += 1;
            for needle in [number, lowercase.as_slice()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} holds the identity number in clear",
                    path.display()
                );
            }
        }
    }
    assert!(files > 0, "the log's files were read");
}
