//! Submission: idempotent retries, content mismatches, and bad input that writes nothing.

use crate::helpers::*;
use anju_app::AppError;
use anju_domain::{Actor, SiteId};

#[tokio::test]
async fn a_retry_with_the_same_key_returns_the_original_request() {
    let t = TestApp::start().await;
    let input = submission(&t.app, "MZ-DIBAO", "retry-key-0001");
    let first = t.submit(input.clone()).await;
    assert!(first.created);
    let head = t.app.log().head_position();
    t.clock.advance(std::time::Duration::from_secs(30));
    let again = t.submit(input.clone()).await;
    assert!(!again.created);
    assert_eq!(
        (again.request_id, &again.tracking_code, again.position),
        (first.request_id, &first.tracking_code, first.position)
    );
    assert_eq!(t.app.log().head_position(), head, "a retry writes no event");

    let mut different = input.clone();
    different.applicant_name = "李强".into();
    assert_eq!(
        t.app.submit(different).await.unwrap_err(),
        AppError::IdempotencyMismatch
    );
    let mut other_phone = input.clone();
    other_phone.phone = "13700001111".into();
    assert_eq!(
        t.app.submit(other_phone).await.unwrap_err(),
        AppError::IdempotencyMismatch
    );
    let mut other_answer = input.clone();
    other_answer
        .answers
        .insert("household_size".into(), vec!["3".into()]);
    assert_eq!(
        t.app.submit(other_answer).await.unwrap_err(),
        AppError::IdempotencyMismatch
    );
    assert_eq!(t.app.log().head_position(), head);

    // The same key from another account is another request.
    let mut someone_else = input.clone();
    someone_else.actor = Actor::resident("resident-2");
    let other = t.submit(someone_else).await;
    assert!(other.created);
    assert_ne!(other.request_id, first.request_id);
    t.app.close().await.unwrap();
}

#[tokio::test]
async fn concurrent_retries_create_one_request() {
    let t = TestApp::start().await;
    let input = submission(&t.app, "YL-GAOLING", "concurrent-key-1");
    let results = futures_join(&t, &input).await;
    let created = results.iter().filter(|r| r.created).count();
    assert_eq!(created, 1, "{results:?}");
    assert!(results
        .iter()
        .all(|r| r.request_id == results[0].request_id
            && r.tracking_code == results[0].tracking_code));
    assert_eq!(
        t.count_events(results[0].request_id, "RequestSubmitted")
            .await,
        1
    );
    t.app.close().await.unwrap();
}

async fn futures_join(t: &TestApp, input: &anju_app::SubmitInput) -> Vec<anju_app::Submitted> {
    let (a, b, c) = tokio::join!(
        t.app.submit(input.clone()),
        t.app.submit(input.clone()),
        t.app.submit(input.clone())
    );
    vec![a.unwrap(), b.unwrap(), c.unwrap()]
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let t = TestApp::start().await;
    let good = submission(&t.app, "MZ-DIBAO", "bad-input-key-1");
    let keys_file = t.data_dir().join("keys").join("keys.log");
    type Mutation = fn(&mut anju_app::SubmitInput);
    let cases: Vec<(&str, Mutation)> = vec![
        ("idempotency_key", |i| i.idempotency_key = "short".into()),
        ("applicant.phone", |i| i.phone = "12345".into()),
        ("applicant.phone", |i| i.phone = "23912345678".into()),
        ("applicant.id_number", |i| {
            i.id_number = Some("110105194912310021".into())
        }),
        ("applicant.display_name", |i| i.applicant_name = "  ".into()),
        ("service_code", |i| i.service_code = "NO-SUCH".into()),
        ("service_code", |i| i.service_code = "bad code".into()),
        ("household_size", |i| {
            i.answers
                .insert("household_size".into(), vec!["many".into()]);
        }),
        ("household_size", |i| {
            i.answers.remove("household_size");
        }),
        ("id_number", |i| {
            i.answers
                .insert("id_number".into(), vec!["110105194912310021".into()]);
        }),
        ("shoe_size", |i| {
            i.answers.insert("shoe_size".into(), vec!["42".into()]);
        }),
        ("site", |i| i.site = "".into()),
        ("on_behalf_of", |i| {
            i.on_behalf_of = Some("resident-9".into())
        }),
    ];
    for (field, mutate) in cases {
        let mut input = good.clone();
        mutate(&mut input);
        let head = t.app.log().head_position();
        let keys_before = std::fs::metadata(&keys_file).map(|m| m.len()).unwrap_or(0);
        match t.app.submit(input).await {
            Err(AppError::Invalid(violations)) => {
                assert!(
                    violations.iter().any(|v| v.field == field),
                    "{field}: {violations:?}"
                );
                let text = format!("{violations:?}");
                assert!(
                    !text.contains("110105194912310021") && !text.contains(PHONE),
                    "violations hide the values"
                );
            }
            other => panic!("{field}: expected invalid, got {other:?}"),
        }
        assert_eq!(
            t.app.log().head_position(),
            head,
            "{field}: nothing written to the log"
        );
        assert_eq!(
            std::fs::metadata(&keys_file).map(|m| m.len()).unwrap_or(0),
            keys_before,
            "{field}: no key written"
        );
    }

    // Every problem at once, each named.
    let mut input = good.clone();
    input.idempotency_key = "x".into();
    input.phone = "1".into();
    input.id_number = Some("123".into());
    let Err(AppError::Invalid(violations)) = t.app.submit(input).await else {
        panic!("expected invalid")
    };
    let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
    for field in ["idempotency_key", "applicant.phone", "applicant.id_number"] {
        assert!(fields.contains(&field), "{fields:?}");
    }

    // Roles and scope: refused before anything is written.
    let head = t.app.log().head_position();
    let mut by_caseworker = good.clone();
    by_caseworker.actor = caseworker("cw-1");
    assert!(matches!(
        t.app.submit(by_caseworker).await,
        Err(AppError::Forbidden(_))
    ));
    let mut kiosk_elsewhere = good.clone();
    kiosk_elsewhere.actor = Actor::kiosk("kiosk-1", [SiteId::new(OTHER_SITE)]);
    kiosk_elsewhere.on_behalf_of = Some("resident-1".into());
    assert!(matches!(
        t.app.submit(kiosk_elsewhere).await,
        Err(AppError::Forbidden(_))
    ));
    let mut kiosk_without_resident = good.clone();
    kiosk_without_resident.actor = Actor::kiosk("kiosk-1", [SiteId::new(SITE)]);
    assert!(matches!(
        t.app.submit(kiosk_without_resident).await,
        Err(AppError::Invalid(_))
    ));
    assert_eq!(t.app.log().head_position(), head);

    // And the good one still goes through, 帮办 included.
    let mut by_kiosk = good.clone();
    by_kiosk.actor = Actor::kiosk("kiosk-1", [SiteId::new(SITE)]);
    by_kiosk.on_behalf_of = Some("resident-1".into());
    let submitted = t.submit(by_kiosk).await;
    assert!(submitted.created);
    t.app.close().await.unwrap();
}

#[tokio::test]
async fn after_close_every_write_is_unavailable() {
    let t = TestApp::start().await;
    let submitted = t
        .submit(submission(&t.app, "SQ-WEIXIU", "closing-key-0001"))
        .await;
    assert!(submitted.intake_deadline > submitted.submitted_at);
    t.app.close().await.unwrap();
    let again = t
        .app
        .submit(submission(&t.app, "SQ-WEIXIU", "closing-key-0002"))
        .await;
    assert!(matches!(again, Err(AppError::Unavailable(_))), "{again:?}");
    let claim = t
        .app
        .execute(
            submitted.request_id,
            caseworker("cw-1"),
            anju_domain::Action::Claim,
        )
        .await;
    assert!(matches!(claim, Err(AppError::Unavailable(_))), "{claim:?}");
}
