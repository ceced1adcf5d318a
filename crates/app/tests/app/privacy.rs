//! Personal data: sealed at the source, never in the log or log lines in clear,
//! unreadable after erasure (crypto-shredding), readable by authorised staff before,
//! and found by identity number only until erasure.

use crate::helpers::*;
use anju_app::AppError;
use anju_domain::{Answer, Event};

#[tokio::test]
async fn phone_and_identity_numbers_never_reach_the_log_in_clear() {
    let t = TestApp::start().await;
    let mut ids = Vec::new();
    for (i, code) in ["MZ-DIBAO", "YL-GAOLING", "TY-BUTIE", "ZC-LIANGXIANG"]
        .iter()
        .enumerate()
    {
        let submitted = t
            .submit(submission(&t.app, code, &format!("privacy-key-{i}")))
            .await;
        ids.push(submitted.request_id);
    }
    // A bad submission's violations do not carry the values either.
    let mut bad = submission(&t.app, "MZ-DIBAO", "privacy-bad-1");
    bad.answers
        .insert("id_number".into(), vec!["11010519491231002Y".into()]);
    let _ = t.app.submit(bad).await;
    let head = t.app.log().head_position();
    t.app.wait_for(Some(head - 1), None).await.unwrap();

    for id in &ids {
        let Event::RequestSubmitted {
            applicant, answers, ..
        } = t.events(*id).await.remove(0)
        else {
            panic!("first event")
        };
        assert_eq!(applicant.phone_last4, &PHONE[7..]);
        assert!(applicant.sealed_contact.starts_with("s1."));
        for (name, answer) in answers {
            if name.contains("id_number") {
                assert!(matches!(answer, Answer::Sealed { .. }), "{name} is sealed");
            }
        }
    }
    t.app.close().await.unwrap();
    for (path, bytes) in all_file_bytes(&t.data_dir()) {
        assert!(
            !contains(&bytes, PHONE.as_bytes()),
            "{} holds the phone in clear",
            path.display()
        );
        assert!(
            !contains(&bytes, ID_NUMBER.as_bytes()),
            "{} holds the identity number in clear",
            path.display()
        );
    }
    let logs = captured_logs();
    assert!(!logs.is_empty(), "log lines were captured");
    assert!(
        !contains(&logs, PHONE.as_bytes()) && !contains(&logs, ID_NUMBER.as_bytes()),
        "log lines hold no personal data"
    );
}

#[tokio::test]
async fn erasing_a_resident_makes_their_sealed_data_unreadable() {
    let t = TestApp::start().await;
    let submitted = t
        .submit(submission(&t.app, "MZ-DIBAO", "erasure-key-0001"))
        .await;
    let id = submitted.request_id;
    let worker = caseworker("cw-1");

    let contact = t
        .app
        .unseal_contact(&worker, id)
        .await
        .unwrap()
        .expect("readable before erasure");
    assert_eq!(contact.phone, PHONE);
    assert_eq!(contact.id_number.as_deref(), Some(ID_NUMBER));
    assert!(
        !format!("{contact:?}").contains(PHONE),
        "debug output masks the phone"
    );
    let answers = t.app.unseal_answers(&worker, id).await.unwrap();
    assert_eq!(
        answers.get("id_number"),
        Some(&Answer::Text(ID_NUMBER.into()))
    );

    // Only staff in scope may unseal; only admins erase.
    let outsider = anju_domain::Actor::caseworker(
        "cw-x",
        [anju_domain::SiteId::new(OTHER_SITE)],
        anju_domain::Category::ALL,
    );
    assert!(matches!(
        t.app.unseal_contact(&outsider, id).await,
        Err(AppError::Forbidden(_))
    ));
    assert!(matches!(
        t.app.unseal_contact(&resident(), id).await,
        Err(AppError::Forbidden(_))
    ));
    assert!(matches!(
        t.app.erase_resident(&worker, PHONE).await,
        Err(AppError::Forbidden(_))
    ));

    // Staff who checked the card find the request by the number, until erasure.
    let head = t.app.log().head_position();
    t.app.wait_for(Some(head - 1), None).await.unwrap();
    let found = t
        .app
        .find_by_identity(&worker, ID_NUMBER, "lost the receipt")
        .await
        .unwrap();
    let found_ids: Vec<_> = found.requests.iter().map(|m| m.request.id).collect();
    assert_eq!(found_ids, vec![id]);

    let head = t.app.log().head_position();
    let report = t.app.erase_resident(&admin(), PHONE).await.unwrap();
    assert!(report.key_erased);
    assert_eq!(
        t.app.log().head_position(),
        head,
        "the log is left as it is"
    );
    assert_eq!(t.app.unseal_contact(&worker, id).await.unwrap(), None);
    assert!(t.app.unseal_answers(&worker, id).await.unwrap().is_empty());
    let after = t
        .app
        .find_by_identity(&worker, ID_NUMBER, "lost the receipt")
        .await
        .unwrap();
    assert!(
        after.requests.is_empty(),
        "an erased resident is not found by their number"
    );
    assert!(
        !t.app
            .erase_resident(&admin(), PHONE)
            .await
            .unwrap()
            .key_erased,
        "a second erasure finds nothing"
    );

    // The workflow goes on without the personal data, and the log is sound.
    t.run(id, &worker, anju_domain::Action::Claim).await;
    assert!(t.app.log().verify().await.unwrap().is_ok());

    // Erasure survives a restart and compaction drops the key from disk.
    let t = t.reopen().await;
    assert_eq!(t.app.unseal_contact(&worker, id).await.unwrap(), None);
    let stats = t.app.compact_keys().await.unwrap();
    assert_eq!(stats.live_keys, 0);
    assert_eq!(
        std::fs::metadata(t.data_dir().join("keys/keys.log"))
            .unwrap()
            .len(),
        0
    );

    // The same resident may come back; a new key seals the new request.
    let again = t
        .submit(submission(&t.app, "MZ-DIBAO", "erasure-key-0002"))
        .await;
    assert!(t
        .app
        .unseal_contact(&worker, again.request_id)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        t.app.unseal_contact(&worker, id).await.unwrap(),
        None,
        "the old data stays shredded"
    );
    t.app.close().await.unwrap();
}

#[tokio::test]
async fn keys_are_durable_across_restarts_and_shared_per_resident() {
    let t = TestApp::start().await;
    let a = t
        .submit(submission(&t.app, "MZ-DIBAO", "durable-key-0001"))
        .await;
    let b = t
        .submit(submission(&t.app, "YL-GAOLING", "durable-key-0002"))
        .await;
    let sealed = |events: Vec<Event>| match &events[0] {
        Event::RequestSubmitted { applicant, .. } => applicant.sealed_contact.clone(),
        _ => panic!("first event"),
    };
    let (sa, sb) = (
        sealed(t.events(a.request_id).await),
        sealed(t.events(b.request_id).await),
    );
    assert_eq!(
        anju_app::Application::sealed_key_id(&sa),
        anju_app::Application::sealed_key_id(&sb),
        "one key per resident"
    );
    assert_ne!(sa, sb, "fresh nonces");
    let t = t.reopen().await;
    let contact = t
        .app
        .unseal_contact(&admin(), a.request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(contact.phone, PHONE);
    t.app.close().await.unwrap();
}

/// Many residents submitting at once: each gets a key, new keys are group-committed, and
/// every key is back after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_of_many_residents_each_get_a_durable_key() {
    let t = TestApp::start().await;
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..400u32 {
        let app = t.app.clone();
        let mut input = submission(&t.app, "SQ-WEIXIU", &format!("many-residents-{i:04}"));
        input.phone = format!("139{:08}", 10_000 + i);
        input.actor = anju_domain::Actor::resident(format!("resident-{i}"));
        tasks.spawn(async move { app.submit(input).await.map(|s| (s.request_id, i)) });
    }
    let submitted: Vec<_> = tasks
        .join_all()
        .await
        .into_iter()
        .map(|r| r.expect("submits"))
        .collect();
    eprintln!("400 submissions with new keys took {:?}", started.elapsed());
    let records = std::fs::metadata(t.data_dir().join("keys/keys.log"))
        .unwrap()
        .len()
        / 53;
    assert_eq!(records, 400, "one key per resident, no more");
    let t = t.reopen().await;
    for (request_id, i) in submitted.iter().step_by(37) {
        let contact = t
            .app
            .unseal_contact(&admin(), *request_id)
            .await
            .unwrap()
            .expect("readable after restart");
        assert_eq!(contact.phone, format!("139{:08}", 10_000 + i));
    }
    t.app.close().await.unwrap();
}
