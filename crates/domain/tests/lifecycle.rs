//! Given/when/then scenarios for every transition of a request and every refusal:
//! wrong state, wrong role, wrong site, missing or invalid fields, second rating,
//! approval levels out of order.

mod support;

use anju_domain::*;
use support::*;

fn end_of(year: i32, month: u32, day: u32) -> Timestamp {
    Timestamp::cst_end_of(CivilDate::new(year, month, day).expect("real date"))
}

// ------------------------------------------------------------------ submission

#[test]
fn a_resident_submits_and_the_intake_clock_starts() {
    let state = given([])
        .when(cmd(
            resident(),
            march(2, 9),
            Action::Submit(submission("MZ-DIBAO")),
        ))
        .then(vec![Event::RequestSubmitted {
            request_id: request_id(),
            tracking_code: tracking_code(),
            site: site_a(),
            category: Category::CivilAffairs,
            service_code: code("MZ-DIBAO"),
            terms: ServiceTerms {
                version: 2,
                approval_levels: 2,
                promised_days: 15,
                statutory_days: 30,
                steps: vec![
                    "household-survey".into(),
                    "public-notice".into(),
                    "first-payment".into(),
                ],
            },
            answers: answers_for("MZ-DIBAO"),
            applicant: applicant(),
            submitted_by: id("res-1"),
            on_behalf_of: None,
            at: march(2, 9),
            // Five working days after Monday 2 March: 3, 4, 5, 6 and 9 March.
            intake_deadline: end_of(2026, 3, 9),
            materials: Default::default(),
        }]);
    assert_eq!(state.status(), Some(Status::Submitted));
    assert_eq!(state.request().unwrap().submitted_at, march(2, 9));
}

#[test]
fn kiosk_staff_submit_on_a_residents_behalf_and_it_is_recorded() {
    let mut s = submission("SQ-WEIXIU");
    s.on_behalf_of = Some(id("res-1"));
    let (events, state) = given([])
        .when(cmd(kiosk(), march(2, 9), Action::Submit(s)))
        .then_types(&["RequestSubmitted"]);
    let Event::RequestSubmitted {
        submitted_by,
        on_behalf_of,
        ..
    } = &events[0]
    else {
        unreachable!()
    };
    assert_eq!(submitted_by, &id("kiosk-1"));
    assert_eq!(on_behalf_of, &Some(id("res-1")));
    assert_eq!(state.request().unwrap().on_behalf_of, Some(id("res-1")));
}

#[test]
fn a_kiosk_submission_must_name_the_applicant() {
    given([])
        .when(cmd(
            kiosk(),
            march(2, 9),
            Action::Submit(submission("SQ-WEIXIU")),
        ))
        .then_error_like(is_invalid, "on_behalf_of");
}

#[test]
fn a_kiosk_cannot_submit_for_another_site() {
    let mut s = submission("SQ-WEIXIU");
    s.on_behalf_of = Some(id("res-1"));
    s.site = site_b();
    given([])
        .when(cmd(kiosk(), march(2, 9), Action::Submit(s)))
        .then_error_like(is_forbidden, "does not serve site scsite-b");
}

#[test]
fn staff_other_than_kiosks_cannot_submit() {
    for actor in [caseworker(), supervisor(), manager(), admin(), system()] {
        given([])
            .when(cmd(
                actor,
                march(2, 9),
                Action::Submit(submission("SQ-WEIXIU")),
            ))
            .then_error_like(is_forbidden, "cannot submit");
    }
}

#[test]
fn a_resident_submits_only_for_themselves() {
    given([])
        .when(cmd(
            other_resident(),
            march(2, 9),
            Action::Submit(submission("SQ-WEIXIU")),
        ))
        .then_error_like(is_forbidden, "only submit requests for themselves");
    let mut s = submission("SQ-WEIXIU");
    s.on_behalf_of = Some(id("res-1"));
    given([])
        .when(cmd(resident(), march(2, 9), Action::Submit(s)))
        .then_error_like(is_forbidden, "kiosk");
}

#[test]
fn every_form_violation_is_named_at_submission() {
    let mut s = submission("MZ-DIBAO");
    s.answers.remove("household_size");
    s.answers
        .insert("monthly_income_yuan".into(), Answer::Text("a lot".into()));
    s.answers.insert(
        "income_sources".into(),
        Answer::Choices(vec!["彩票 lottery".into()]),
    );
    s.answers
        .insert("situation".into(), Answer::Text("很".repeat(501)));
    s.answers.insert(
        "id_number".into(),
        Answer::Text("510101199001011234".into()),
    );
    s.answers
        .insert("favourite_colour".into(), Answer::Text("red".into()));
    s.applicant.phone_last4 = "42".into();
    // Only keyed digests may stand for identity numbers; a clear one is refused.
    s.applicant.id_number_digests = vec!["7f".repeat(32), "510101199001011234".into()];
    let violations = match decide(
        &RequestState::default(),
        &cmd(resident(), march(2, 9), Action::Submit(s)),
        &ctx(),
    ) {
        Err(DomainError::Invalid(v)) => v,
        other => panic!("expected invalid, got {other:?}"),
    };
    let named: Vec<(String, String)> = violations
        .iter()
        .map(|v| {
            (
                v.field.clone(),
                serde_json::to_value(&v.problem).unwrap()["problem"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    let expect = |field: &str, problem: &str| {
        assert!(
            named.contains(&(field.to_string(), problem.to_string())),
            "{field} {problem} missing from {named:?}"
        )
    };
    expect("applicant.phone_last4", "other");
    expect("favourite_colour", "unknown_field");
    expect("household_size", "missing");
    expect("monthly_income_yuan", "wrong_type");
    expect("income_sources", "not_allowed");
    expect("id_number", "not_sealed");
    expect("situation", "too_long");
    expect("applicant.id_number_digests[1]", "other");
    assert_eq!(violations.len(), 8);
    // The clear identity number never appears in the error message.
    let message = DomainError::Invalid(violations).to_string();
    assert!(!message.contains("510101199001011234"));
}

#[test]
fn an_unknown_service_or_version_is_invalid() {
    let mut s = submission("SQ-WEIXIU");
    s.service_code = code("XX-NOPE");
    given([])
        .when(cmd(resident(), march(2, 9), Action::Submit(s)))
        .then_error_like(is_invalid, "no service XX-NOPE");
    let mut s = submission("SQ-WEIXIU");
    s.definition_version = 9;
    given([])
        .when(cmd(resident(), march(2, 9), Action::Submit(s)))
        .then_error_like(is_invalid, "has no version 9");
}

#[test]
fn a_request_keeps_the_definition_version_it_was_submitted_under() {
    let mut s = submission("MZ-DIBAO");
    s.definition_version = 1;
    s.answers.remove("income_sources"); // v1 did not ask for it
    let (_, state) = given([])
        .when(cmd(resident(), march(2, 9), Action::Submit(s)))
        .then_types(&["RequestSubmitted"]);
    let terms = &state.request().unwrap().terms;
    assert_eq!((terms.version, terms.promised_days), (1, 20));
    assert_eq!(CATALOGUE.get(&code("MZ-DIBAO")).unwrap().promised_days, 15);
}

#[test]
fn submitting_twice_with_the_same_id_conflicts() {
    given_commands(submitted("SQ-WEIXIU"))
        .when(cmd(
            resident(),
            march(2, 9),
            Action::Submit(submission("SQ-WEIXIU")),
        ))
        .then_error_like(is_conflict, "already exists");
}

#[test]
fn commands_on_a_missing_request_are_not_found() {
    given([])
        .when(cmd(caseworker(), march(2, 10), Action::Claim))
        .then_error(DomainError::NotFound);
}

// ------------------------------------------------------------------ claim and reassign

#[test]
fn a_caseworker_claims_a_request() {
    let state = given_commands(submitted("MZ-DIBAO"))
        .when(cmd(caseworker(), march(2, 10), Action::Claim))
        .then(vec![Event::RequestClaimed {
            by: id("cw-1"),
            at: march(2, 10),
        }]);
    assert_eq!(state.assignee(), Some(&id("cw-1")));
}

#[test]
fn claiming_again_is_a_no_op_and_another_caseworker_conflicts() {
    given_commands(claimed("MZ-DIBAO"))
        .when(cmd(caseworker(), march(2, 10), Action::Claim))
        .then(vec![]);
    given_commands(claimed("MZ-DIBAO"))
        .when(cmd(caseworker2(), march(2, 10), Action::Claim))
        .then_error_like(is_conflict, "already claimed by cw-1");
}

#[test]
fn caseworkers_outside_the_site_or_category_cannot_claim() {
    given_commands(submitted("MZ-DIBAO"))
        .when(cmd(site_b_caseworker(), march(2, 10), Action::Claim))
        .then_error_like(is_forbidden, "does not serve site scsite-a");
    given_commands(submitted("MZ-DIBAO"))
        .when(cmd(
            community_only_caseworker(),
            march(2, 10),
            Action::Claim,
        ))
        .then_error_like(is_forbidden, "does not handle category civil_affairs");
    given_commands(submitted("MZ-DIBAO"))
        .when(cmd(resident(), march(2, 10), Action::Claim))
        .then_error_like(is_forbidden, "a resident cannot claim");
}

#[test]
fn a_terminal_request_cannot_be_claimed() {
    given_commands(with(
        submitted("MZ-DIBAO"),
        [cmd(
            resident(),
            march(2, 10),
            Action::Withdraw { reason: None },
        )],
    ))
    .when(cmd(caseworker(), march(2, 11), Action::Claim))
    .then_error(wrong_state(Status::Withdrawn, "claim"));
}

#[test]
fn a_supervisor_or_admin_reassigns_and_the_assignee_may_hand_over() {
    let state = given_commands(claimed("MZ-DIBAO"))
        .when(cmd(
            supervisor(),
            march(2, 12),
            Action::Reassign { to: id("cw-2") },
        ))
        .then(vec![Event::RequestReassigned {
            by: id("sup-1"),
            from: Some(id("cw-1")),
            to: id("cw-2"),
            at: march(2, 12),
        }]);
    assert_eq!(state.assignee(), Some(&id("cw-2")));
    given_commands(claimed("MZ-DIBAO"))
        .when(cmd(
            admin(),
            march(2, 12),
            Action::Reassign { to: id("cw-2") },
        ))
        .then_types(&["RequestReassigned"]);
    given_commands(claimed("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(2, 12),
            Action::Reassign { to: id("cw-2") },
        ))
        .then_types(&["RequestReassigned"]);
    given_commands(claimed("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(2, 12),
            Action::Reassign { to: id("cw-1") },
        ))
        .then(vec![]);
}

#[test]
fn only_the_assignee_caseworker_reassigns_and_the_target_is_required() {
    given_commands(claimed("MZ-DIBAO"))
        .when(cmd(
            caseworker2(),
            march(2, 12),
            Action::Reassign { to: id("cw-2") },
        ))
        .then_error_like(is_conflict, "assigned to cw-1");
    given_commands(claimed("MZ-DIBAO"))
        .when(cmd(
            site_b_supervisor(),
            march(2, 12),
            Action::Reassign { to: id("cw-2") },
        ))
        .then_error_like(is_forbidden, "does not serve site");
    given_commands(claimed("MZ-DIBAO"))
        .when(cmd(
            supervisor(),
            march(2, 12),
            Action::Reassign { to: id(" ") },
        ))
        .then_error_like(is_invalid, "to is required");
}

// ------------------------------------------------------------------ intake

#[test]
fn accepting_starts_the_processing_clock_with_both_deadlines() {
    let state = given_commands(claimed("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(2, 11),
            Action::Accept { comment: None },
        ))
        .then(vec![Event::RequestAccepted {
            by: Some(id("cw-1")),
            deemed: false,
            at: march(2, 11),
            // 15 working days after Monday 2 March.
            promised_deadline: end_of(2026, 3, 23),
            // 30 working days, across the Qingming holiday of 4-6 April.
            statutory_deadline: end_of(2026, 4, 14),
            comment: None,
        }]);
    let deadlines = state.deadlines().unwrap();
    assert!(!deadlines.paused());
    assert_eq!(state.request().unwrap().accepted_at, Some(march(2, 11)));
}

#[test]
fn intake_needs_a_claim_by_this_caseworker() {
    given_commands(submitted("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(2, 11),
            Action::Accept { comment: None },
        ))
        .then_error_like(is_precondition, "must be claimed first");
    given_commands(claimed("MZ-DIBAO"))
        .when(cmd(
            caseworker2(),
            march(2, 11),
            Action::Accept { comment: None },
        ))
        .then_error_like(is_conflict, "assigned to cw-1");
    given_commands(claimed("MZ-DIBAO"))
        .when(cmd(
            supervisor(),
            march(2, 11),
            Action::Accept { comment: None },
        ))
        .then_error_like(is_forbidden, "a supervisor cannot accept");
}

#[test]
fn accepting_twice_is_the_wrong_state() {
    given_commands(accepted("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(2, 12),
            Action::Accept { comment: None },
        ))
        .then_error(wrong_state(Status::Accepted, "accept"));
    assert_eq!(
        wrong_state(Status::Accepted, "accept").to_string(),
        "cannot accept a request that is accepted"
    );
}

#[test]
fn refusing_at_intake_needs_a_reason_and_is_terminal() {
    let state = given_commands(claimed("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(2, 11),
            Action::Refuse {
                reason: "不属于本社区 not this community".into(),
                legal_basis: None,
            },
        ))
        .then(vec![Event::RequestRefused {
            by: id("cw-1"),
            reason: "不属于本社区 not this community".into(),
            at: march(2, 11),
            legal_basis: None,
        }]);
    assert_eq!(state.status(), Some(Status::Refused));
    assert_eq!(state.request().unwrap().decided_at, Some(march(2, 11)));
    given_commands(claimed("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(2, 11),
            Action::Refuse {
                reason: "  ".into(),
                legal_basis: None,
            },
        ))
        .then_error_like(is_invalid, "reason is required");
    given_commands(accepted("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(2, 12),
            Action::Refuse {
                reason: "late".into(),
                legal_basis: None,
            },
        ))
        .then_error(wrong_state(Status::Accepted, "refuse"));
}

#[test]
fn missing_materials_are_asked_for_once_with_a_complete_list() {
    let state = given_commands(claimed("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(2, 11),
            Action::RequestInfo {
                missing: vec![
                    "户口簿 household register".into(),
                    "收入证明 proof of income".into(),
                ],
                message: None,
            },
        ))
        .then(vec![Event::InfoRequested {
            by: id("cw-1"),
            missing: vec![
                "户口簿 household register".into(),
                "收入证明 proof of income".into(),
            ],
            at: march(2, 11),
            working_days_used: 0,
            message: None,
        }]);
    assert_eq!(state.status(), Some(Status::AwaitingInfo));
    let again = with(
        claimed("MZ-DIBAO"),
        [
            cmd(
                caseworker(),
                march(2, 11),
                Action::RequestInfo {
                    missing: vec!["户口簿".into()],
                    message: None,
                },
            ),
            cmd(
                resident(),
                march(3, 9),
                Action::ProvideInfo {
                    note: None,
                    materials: Default::default(),
                },
            ),
        ],
    );
    given_commands(again)
        .when(cmd(
            caseworker(),
            march(3, 10),
            Action::RequestInfo {
                missing: vec!["照片 photo".into()],
                message: None,
            },
        ))
        .then_error_like(is_conflict, "already asked for once");
    given_commands(claimed("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(2, 11),
            Action::RequestInfo {
                missing: vec![],
                message: None,
            },
        ))
        .then_error_like(is_invalid, "missing is required");
    given_commands(claimed("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(2, 11),
            Action::RequestInfo {
                missing: vec!["ok".into(), "".into()],
                message: None,
            },
        ))
        .then_error_like(is_invalid, "missing[1] is required");
}

#[test]
fn materials_supplied_at_intake_restart_the_five_day_intake_clock() {
    let asked = with(
        claimed("MZ-DIBAO"),
        [cmd(
            caseworker(),
            march(2, 11),
            Action::RequestInfo {
                missing: vec!["户口簿".into()],
                message: None,
            },
        )],
    );
    let state = given_commands(asked.clone())
        .when(cmd(
            resident(),
            march(5, 15),
            Action::ProvideInfo {
                note: Some("已补交 supplied".into()),
                materials: Default::default(),
            },
        ))
        .then(vec![Event::InfoProvided {
            by: id("res-1"),
            note: Some("已补交 supplied".into()),
            at: march(5, 15),
            intake_deadline: Some(end_of(2026, 3, 12)),
            promised_deadline: None,
            statutory_deadline: None,
            materials: Default::default(),
        }]);
    assert_eq!(state.status(), Some(Status::Submitted));
    given_commands(asked.clone())
        .when(cmd(
            kiosk(),
            march(5, 15),
            Action::ProvideInfo {
                note: None,
                materials: Default::default(),
            },
        ))
        .then_types(&["InfoProvided"]);
    given_commands(asked.clone())
        .when(cmd(
            other_resident(),
            march(5, 15),
            Action::ProvideInfo {
                note: None,
                materials: Default::default(),
            },
        ))
        .then_error_like(is_forbidden, "only the applicant");
    given_commands(claimed("MZ-DIBAO"))
        .when(cmd(
            resident(),
            march(5, 15),
            Action::ProvideInfo {
                note: None,
                materials: Default::default(),
            },
        ))
        .then_error(wrong_state(Status::Submitted, "provide_info"));
}

#[test]
fn materials_asked_after_acceptance_stop_the_clock_and_restart_it() {
    // Accepted Monday 2 March 11:00; asked Wednesday 4 March: 2 working days used (3 and 4 March).
    let asked = with(
        accepted("MZ-DIBAO"),
        [cmd(
            caseworker(),
            march(4, 16),
            Action::RequestInfo {
                missing: vec!["收入证明".into()],
                message: None,
            },
        )],
    );
    let events = history(asked.clone());
    assert!(matches!(
        events.last(),
        Some(Event::InfoRequested {
            working_days_used: 2,
            ..
        })
    ));
    let state = given(events.clone()).state().clone();
    assert!(state.deadlines().unwrap().paused());
    assert_eq!(state.deadlines().unwrap().promised, None);
    // Supplied Monday 9 March: 13 days are left, counted from 10 March -> 26 March.
    let state = given(events)
        .when(cmd(
            resident(),
            march(9, 10),
            Action::ProvideInfo {
                note: None,
                materials: Default::default(),
            },
        ))
        .then(vec![Event::InfoProvided {
            by: id("res-1"),
            note: None,
            at: march(9, 10),
            intake_deadline: None,
            promised_deadline: Some(end_of(2026, 3, 26)),
            statutory_deadline: Some(end_of(2026, 4, 17)),
            materials: Default::default(),
        }]);
    assert_eq!(state.status(), Some(Status::Accepted));
    assert!(!state.deadlines().unwrap().paused());
}

// ------------------------------------------------------------------ review and approval

#[test]
fn review_leads_to_approval_levels_or_straight_to_approved() {
    let state = given_commands(accepted("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(3, 9),
            Action::Review {
                opinion: "符合条件 eligible".into(),
            },
        ))
        .then(vec![Event::RequestReviewed {
            by: id("cw-1"),
            opinion: "符合条件 eligible".into(),
            at: march(3, 9),
        }]);
    assert_eq!(state.status(), Some(Status::Reviewed));
    let (_, state) = given_commands(accepted("SQ-WEIXIU"))
        .when(cmd(
            caseworker(),
            march(3, 9),
            Action::Review {
                opinion: "需维修 needs repair".into(),
            },
        ))
        .then_types(&["RequestReviewed"]);
    assert_eq!(state.status(), Some(Status::Approved));
    assert_eq!(state.request().unwrap().decided_at, Some(march(3, 9)));
    given_commands(claimed("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(3, 9),
            Action::Review {
                opinion: "x".into(),
            },
        ))
        .then_error(wrong_state(Status::Submitted, "review"));
    given_commands(accepted("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(3, 9),
            Action::Review { opinion: "".into() },
        ))
        .then_error_like(is_invalid, "opinion is required");
}

#[test]
fn approvals_go_level_by_level_by_different_supervisors() {
    let state = given_commands(reviewed("MZ-DIBAO"))
        .when(cmd(
            supervisor(),
            march(3, 11),
            Action::Approve {
                level: 1,
                comment: None,
            },
        ))
        .then(vec![Event::RequestApproved {
            by: id("sup-1"),
            level: 1,
            at: march(3, 11),
            comment: None,
        }]);
    assert_eq!(state.status(), Some(Status::Reviewed));
    let one = with(
        reviewed("MZ-DIBAO"),
        [cmd(
            supervisor(),
            march(3, 11),
            Action::Approve {
                level: 1,
                comment: None,
            },
        )],
    );
    let state = given_commands(one.clone())
        .when(cmd(
            supervisor2(),
            march(3, 12),
            Action::Approve {
                level: 2,
                comment: None,
            },
        ))
        .then(vec![Event::RequestApproved {
            by: id("sup-2"),
            level: 2,
            at: march(3, 12),
            comment: None,
        }]);
    assert_eq!(state.status(), Some(Status::Approved));
    assert_eq!(state.request().unwrap().decided_at, Some(march(3, 12)));
    given_commands(one)
        .when(cmd(
            supervisor(),
            march(3, 12),
            Action::Approve {
                level: 2,
                comment: None,
            },
        ))
        .then_error_like(is_forbidden, "different supervisor");
}

#[test]
fn approval_levels_out_of_order_are_refused() {
    given_commands(reviewed("MZ-DIBAO"))
        .when(cmd(
            supervisor(),
            march(3, 11),
            Action::Approve {
                level: 2,
                comment: None,
            },
        ))
        .then_error(DomainError::Precondition {
            reason: "approval level 2 is out of order: level 1 comes next".into(),
        });
    given_commands(reviewed("MZ-DIBAO"))
        .when(cmd(
            supervisor(),
            march(3, 11),
            Action::Approve {
                level: 3,
                comment: None,
            },
        ))
        .then_error_like(is_invalid, "approval levels 1 to 2, not 3");
    given_commands(approved("MZ-LINSHI"))
        .when(cmd(
            supervisor2(),
            march(3, 15),
            Action::Approve {
                level: 2,
                comment: None,
            },
        ))
        .then_error(wrong_state(Status::Approved, "approve"));
}

#[test]
fn approval_needs_a_supervisor_of_the_site_and_comes_after_review() {
    given_commands(reviewed("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(3, 11),
            Action::Approve {
                level: 1,
                comment: None,
            },
        ))
        .then_error_like(is_forbidden, "a caseworker cannot approve");
    given_commands(reviewed("MZ-DIBAO"))
        .when(cmd(
            site_b_supervisor(),
            march(3, 11),
            Action::Approve {
                level: 1,
                comment: None,
            },
        ))
        .then_error_like(is_forbidden, "does not serve site scsite-a");
    given_commands(accepted("MZ-DIBAO"))
        .when(cmd(
            supervisor(),
            march(3, 11),
            Action::Approve {
                level: 1,
                comment: None,
            },
        ))
        .then_error(wrong_state(Status::Accepted, "approve"));
    given_commands(submitted("MZ-DIBAO"))
        .when(cmd(
            supervisor(),
            march(3, 11),
            Action::Approve {
                level: 1,
                comment: None,
            },
        ))
        .then_error(wrong_state(Status::Submitted, "approve"));
}

#[test]
fn denial_needs_a_reason_and_ends_the_request() {
    let state = given_commands(reviewed("MZ-DIBAO"))
        .when(cmd(
            supervisor(),
            march(3, 11),
            Action::Deny {
                reason: "收入超标 income too high".into(),
                legal_basis: None,
            },
        ))
        .then(vec![Event::RequestDenied {
            by: id("sup-1"),
            reason: "收入超标 income too high".into(),
            at: march(3, 11),
            legal_basis: None,
        }]);
    assert_eq!(state.status(), Some(Status::Denied));
    given_commands(accepted("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(3, 11),
            Action::Deny {
                reason: "不符合 not eligible".into(),
                legal_basis: None,
            },
        ))
        .then_types(&["RequestDenied"]);
    given_commands(reviewed("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(3, 11),
            Action::Deny {
                reason: "x".into(),
                legal_basis: None,
            },
        ))
        .then_error(wrong_state(Status::Reviewed, "deny"));
    given_commands(reviewed("MZ-DIBAO"))
        .when(cmd(
            supervisor(),
            march(3, 11),
            Action::Deny {
                reason: "".into(),
                legal_basis: None,
            },
        ))
        .then_error_like(is_invalid, "reason is required");
    given_commands(approved("MZ-DIBAO"))
        .when(cmd(
            supervisor(),
            march(3, 15),
            Action::Deny {
                reason: "late".into(),
                legal_basis: None,
            },
        ))
        .then_error(wrong_state(Status::Approved, "deny"));
}

// ------------------------------------------------------------------ fulfilment

#[test]
fn fulfilment_runs_its_steps_and_the_last_step_fulfils() {
    let state = given_commands(approved("SQ-WEIXIU"))
        .when(cmd(
            caseworker(),
            march(4, 9),
            Action::StartFulfilment { note: None },
        ))
        .then(vec![Event::FulfilmentStarted {
            by: id("cw-1"),
            at: march(4, 9),
            note: None,
        }]);
    assert_eq!(state.status(), Some(Status::InFulfilment));
    let two_done = with(
        in_fulfilment("SQ-WEIXIU"),
        [
            cmd(
                caseworker(),
                march(4, 10),
                Action::CompleteStep {
                    step: "repair".into(),
                    note: None,
                },
            ),
            cmd(
                caseworker(),
                march(4, 11),
                Action::CompleteStep {
                    step: "inspect".into(),
                    note: None,
                },
            ),
        ],
    );
    let state = given_commands(two_done)
        .when(cmd(
            caseworker(),
            march(4, 12),
            Action::CompleteStep {
                step: "check".into(),
                note: None,
            },
        ))
        .then(vec![
            Event::StepCompleted {
                by: id("cw-1"),
                step: "check".into(),
                at: march(4, 12),
                note: None,
            },
            Event::RequestFulfilled { at: march(4, 12) },
        ]);
    assert_eq!(state.status(), Some(Status::Fulfilled));
    assert_eq!(state.request().unwrap().fulfilled_at, Some(march(4, 12)));
}

#[test]
fn steps_must_exist_and_be_done_once_during_fulfilment() {
    given_commands(in_fulfilment("SQ-WEIXIU"))
        .when(cmd(
            caseworker(),
            march(4, 10),
            Action::CompleteStep {
                step: "paint".into(),
                note: None,
            },
        ))
        .then_error_like(is_invalid, "\"paint\" is not allowed");
    let one = with(
        in_fulfilment("SQ-WEIXIU"),
        [cmd(
            caseworker(),
            march(4, 10),
            Action::CompleteStep {
                step: "inspect".into(),
                note: None,
            },
        )],
    );
    given_commands(one)
        .when(cmd(
            caseworker(),
            march(4, 11),
            Action::CompleteStep {
                step: "inspect".into(),
                note: None,
            },
        ))
        .then_error_like(is_conflict, "already completed");
    given_commands(approved("SQ-WEIXIU"))
        .when(cmd(
            caseworker(),
            march(4, 10),
            Action::CompleteStep {
                step: "inspect".into(),
                note: None,
            },
        ))
        .then_error(wrong_state(Status::Approved, "complete_step"));
    given_commands(reviewed("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(4, 9),
            Action::StartFulfilment { note: None },
        ))
        .then_error(wrong_state(Status::Reviewed, "start_fulfilment"));
    given_commands(approved("SQ-WEIXIU"))
        .when(cmd(
            caseworker2(),
            march(4, 9),
            Action::StartFulfilment { note: None },
        ))
        .then_error_like(is_conflict, "assigned to cw-1");
}

// ------------------------------------------------------------------ notes

#[test]
fn staff_add_notes_even_to_closed_requests_but_residents_do_not() {
    given_commands(closed("SQ-WEIXIU"))
        .when(cmd(
            supervisor(),
            march(6, 9),
            Action::AddNote {
                text: "回访满意 follow-up ok".into(),
                internal: true,
            },
        ))
        .then(vec![Event::NoteAdded {
            by: id("sup-1"),
            text: "回访满意 follow-up ok".into(),
            at: march(6, 9),
            internal: true,
        }]);
    given_commands(submitted("SQ-WEIXIU"))
        .when(cmd(
            kiosk(),
            march(2, 9),
            Action::AddNote {
                text: "老人行动不便".into(),
                internal: true,
            },
        ))
        .then_types(&["NoteAdded"]);
    given_commands(submitted("SQ-WEIXIU"))
        .when(cmd(
            resident(),
            march(2, 9),
            Action::AddNote {
                text: "hello".into(),
                internal: true,
            },
        ))
        .then_error_like(is_forbidden, "a resident cannot add_note");
    given_commands(submitted("SQ-WEIXIU"))
        .when(cmd(
            caseworker(),
            march(2, 9),
            Action::AddNote {
                text: "x".repeat(2001),
                internal: true,
            },
        ))
        .then_error_like(is_invalid, "too long");
}

// ------------------------------------------------------------------ extensions

#[test]
fn an_approved_extension_moves_both_deadlines() {
    let requested = with(
        accepted("MZ-DIBAO"),
        [cmd(
            caseworker(),
            march(3, 9),
            Action::RequestExtension {
                days: 5,
                reason: "需入户核查 home visit needed".into(),
            },
        )],
    );
    given_commands(accepted("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(3, 9),
            Action::RequestExtension {
                days: 5,
                reason: "需入户核查 home visit needed".into(),
            },
        ))
        .then(vec![Event::ExtensionRequested {
            by: id("cw-1"),
            days: 5,
            reason: "需入户核查 home visit needed".into(),
            at: march(3, 9),
        }]);
    let state = given_commands(requested.clone())
        .when(cmd(
            supervisor(),
            march(3, 10),
            Action::DecideExtension { approve: true },
        ))
        .then(vec![Event::ExtensionApproved {
            by: id("sup-1"),
            days: 5,
            at: march(3, 10),
            promised_deadline: Some(end_of(2026, 3, 30)),
            statutory_deadline: Some(end_of(2026, 4, 21)),
        }]);
    let d = state.deadlines().unwrap();
    assert_eq!(
        (d.promised_days, d.statutory_days, d.extension_days),
        (20, 35, 5)
    );
    let state = given_commands(requested)
        .when(cmd(
            supervisor(),
            march(3, 10),
            Action::DecideExtension { approve: false },
        ))
        .then(vec![Event::ExtensionRejected {
            by: id("sup-1"),
            at: march(3, 10),
        }]);
    assert_eq!(
        state.deadlines().unwrap().promised,
        Some(end_of(2026, 3, 23))
    );
}

#[test]
fn extension_refusals() {
    let requested = with(
        accepted("MZ-DIBAO"),
        [cmd(
            caseworker(),
            march(3, 9),
            Action::RequestExtension {
                days: 5,
                reason: "home visit".into(),
            },
        )],
    );
    given_commands(requested.clone())
        .when(cmd(
            caseworker(),
            march(3, 9),
            Action::RequestExtension {
                days: 2,
                reason: "again".into(),
            },
        ))
        .then_error_like(is_conflict, "already pending");
    given_commands(requested.clone())
        .when(cmd(
            caseworker(),
            march(3, 10),
            Action::DecideExtension { approve: true },
        ))
        .then_error_like(is_forbidden, "a caseworker cannot decide_extension");
    given_commands(requested)
        .when(cmd(
            site_b_supervisor(),
            march(3, 10),
            Action::DecideExtension { approve: true },
        ))
        .then_error_like(is_forbidden, "does not serve site");
    given_commands(accepted("MZ-DIBAO"))
        .when(cmd(
            supervisor(),
            march(3, 10),
            Action::DecideExtension { approve: true },
        ))
        .then_error_like(is_precondition, "no extension request is pending");
    given_commands(accepted("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(3, 9),
            Action::RequestExtension {
                days: 0,
                reason: "x".into(),
            },
        ))
        .then_error_like(is_invalid, "days value 0 is outside 1..=30");
    given_commands(accepted("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(3, 9),
            Action::RequestExtension {
                days: 3,
                reason: "".into(),
            },
        ))
        .then_error_like(is_invalid, "reason is required");
    given_commands(claimed("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(3, 9),
            Action::RequestExtension {
                days: 3,
                reason: "x".into(),
            },
        ))
        .then_error(wrong_state(Status::Submitted, "request_extension"));
}

// ------------------------------------------------------------------ ratings

#[test]
fn the_resident_rates_once_after_fulfilment() {
    let state = given_commands(fulfilled("SQ-WEIXIU"))
        .when(cmd(
            resident(),
            march(5, 9),
            Action::Rate {
                grade: Grade::VerySatisfied,
                comment: Some("很快 quick".into()),
            },
        ))
        .then(vec![Event::RequestRated {
            by: id("res-1"),
            grade: Grade::VerySatisfied,
            comment: Some("很快 quick".into()),
            at: march(5, 9),
        }]);
    assert_eq!(state.rating().unwrap().grade, Grade::VerySatisfied);
    assert_eq!(state.remediation(), None);
    let rated = with(
        fulfilled("SQ-WEIXIU"),
        [cmd(
            resident(),
            march(5, 9),
            Action::Rate {
                grade: Grade::Satisfied,
                comment: None,
            },
        )],
    );
    given_commands(rated)
        .when(cmd(
            resident(),
            march(5, 10),
            Action::Rate {
                grade: Grade::VeryDissatisfied,
                comment: None,
            },
        ))
        .then_error(DomainError::Conflict {
            reason: "the request has already been rated".into(),
        });
}

#[test]
fn a_closed_request_can_still_be_rated() {
    given_commands(closed("SQ-WEIXIU"))
        .when(cmd(
            resident(),
            march(6, 9),
            Action::Rate {
                grade: Grade::Neutral,
                comment: None,
            },
        ))
        .then_types(&["RequestRated"]);
}

#[test]
fn rating_refusals() {
    given_commands(in_fulfilment("SQ-WEIXIU"))
        .when(cmd(
            resident(),
            march(4, 9),
            Action::Rate {
                grade: Grade::Satisfied,
                comment: None,
            },
        ))
        .then_error(wrong_state(Status::InFulfilment, "rate"));
    given_commands(fulfilled("SQ-WEIXIU"))
        .when(cmd(
            other_resident(),
            march(5, 9),
            Action::Rate {
                grade: Grade::Satisfied,
                comment: None,
            },
        ))
        .then_error_like(is_forbidden, "only the applicant");
    given_commands(fulfilled("SQ-WEIXIU"))
        .when(cmd(
            caseworker(),
            march(5, 9),
            Action::Rate {
                grade: Grade::VerySatisfied,
                comment: None,
            },
        ))
        .then_error_like(is_forbidden, "a caseworker cannot rate");
    given_commands(fulfilled("SQ-WEIXIU"))
        // Without the receipt (issue 16, item 9: with it, the kiosk may).
        .when(cmd(
            kiosk(),
            march(5, 9),
            Action::Rate {
                grade: Grade::VerySatisfied,
                comment: None,
            },
        ))
        .then_error_like(is_forbidden, "only with its tracking code and phone digits");
}

fn badly_rated() -> Vec<Command> {
    with(
        fulfilled("SQ-WEIXIU"),
        [cmd(
            resident(),
            march(5, 9),
            Action::Rate {
                grade: Grade::Dissatisfied,
                comment: Some("还在漏 still leaks".into()),
            },
        )],
    )
}

#[test]
fn a_bad_rating_opens_a_fifteen_working_day_remediation() {
    given_commands(fulfilled("SQ-WEIXIU"))
        .when(cmd(
            resident(),
            march(5, 9),
            Action::Rate {
                grade: Grade::VeryDissatisfied,
                comment: None,
            },
        ))
        .then(vec![
            Event::RequestRated {
                by: id("res-1"),
                grade: Grade::VeryDissatisfied,
                comment: None,
                at: march(5, 9),
            },
            // 15 working days after Thursday 5 March.
            Event::RemediationOpened {
                at: march(5, 9),
                due: end_of(2026, 3, 26),
            },
        ]);
}

#[test]
fn a_caseworker_resolves_the_remediation_once() {
    let state = given_commands(badly_rated())
        .when(cmd(
            caseworker2(),
            march(9, 9),
            Action::ResolveRemediation {
                summary: "已返修 repaired again".into(),
            },
        ))
        .then(vec![Event::RemediationResolved {
            by: id("cw-2"),
            summary: "已返修 repaired again".into(),
            at: march(9, 9),
        }]);
    assert!(matches!(
        state.remediation().unwrap().state,
        RemediationState::Resolved { .. }
    ));
    let resolved = with(
        badly_rated(),
        [cmd(
            caseworker(),
            march(9, 9),
            Action::ResolveRemediation {
                summary: "ok".into(),
            },
        )],
    );
    given_commands(resolved)
        .when(cmd(
            caseworker(),
            march(9, 10),
            Action::ResolveRemediation {
                summary: "ok".into(),
            },
        ))
        .then_error_like(is_conflict, "already closed");
    given_commands(fulfilled("SQ-WEIXIU"))
        .when(cmd(
            caseworker(),
            march(9, 9),
            Action::ResolveRemediation {
                summary: "ok".into(),
            },
        ))
        .then_error_like(is_precondition, "no remediation");
    given_commands(badly_rated())
        .when(cmd(
            resident(),
            march(9, 9),
            Action::ResolveRemediation {
                summary: "ok".into(),
            },
        ))
        .then_error_like(is_forbidden, "a resident cannot resolve_remediation");
}

#[test]
fn a_rating_appeal_is_decided_by_a_manager() {
    let appealed = with(
        badly_rated(),
        [cmd(
            caseworker(),
            march(6, 9),
            Action::AppealRating {
                reason: "非本次服务问题 unrelated complaint".into(),
            },
        )],
    );
    given_commands(badly_rated())
        .when(cmd(
            caseworker(),
            march(6, 9),
            Action::AppealRating {
                reason: "非本次服务问题 unrelated complaint".into(),
            },
        ))
        .then(vec![Event::RatingAppealed {
            by: id("cw-1"),
            reason: "非本次服务问题 unrelated complaint".into(),
            at: march(6, 9),
        }]);
    let upheld = given_commands(appealed.clone())
        .when(cmd(
            manager(),
            march(9, 9),
            Action::DecideAppeal { uphold: true },
        ))
        .then(vec![Event::AppealDecided {
            by: id("mgr-1"),
            uphold: true,
            at: march(9, 9),
        }]);
    assert!(!upheld.rating().unwrap().removed);
    assert_eq!(upheld.remediation().unwrap().state, RemediationState::Open);
    let removed = given_commands(appealed.clone())
        .when(cmd(
            manager(),
            march(9, 9),
            Action::DecideAppeal { uphold: false },
        ))
        .then(vec![Event::AppealDecided {
            by: id("mgr-1"),
            uphold: false,
            at: march(9, 9),
        }]);
    assert!(removed.rating().unwrap().removed);
    assert_eq!(
        removed.remediation().unwrap().state,
        RemediationState::Cancelled { at: march(9, 9) }
    );
    // Removed ratings cannot be given again.
    given(removed_events(appealed.clone()))
        .when(cmd(
            resident(),
            march(9, 10),
            Action::Rate {
                grade: Grade::VerySatisfied,
                comment: None,
            },
        ))
        .then_error_like(is_conflict, "already been rated");
}

fn removed_events(appealed: Vec<Command>) -> Vec<Event> {
    history(with(
        appealed,
        [cmd(
            manager(),
            march(9, 9),
            Action::DecideAppeal { uphold: false },
        )],
    ))
}

#[test]
fn appeal_refusals() {
    let appealed = with(
        badly_rated(),
        [cmd(
            caseworker(),
            march(6, 9),
            Action::AppealRating {
                reason: "malicious".into(),
            },
        )],
    );
    given_commands(appealed.clone())
        .when(cmd(
            caseworker(),
            march(6, 10),
            Action::AppealRating {
                reason: "again".into(),
            },
        ))
        .then_error_like(is_conflict, "already been appealed");
    given_commands(appealed.clone())
        .when(cmd(
            site_b_manager(),
            march(9, 9),
            Action::DecideAppeal { uphold: false },
        ))
        .then_error_like(is_forbidden, "does not serve site scsite-a");
    given_commands(appealed.clone())
        .when(cmd(
            supervisor(),
            march(9, 9),
            Action::DecideAppeal { uphold: false },
        ))
        .then_error_like(is_forbidden, "a supervisor cannot decide_appeal");
    given_commands(badly_rated())
        .when(cmd(
            manager(),
            march(9, 9),
            Action::DecideAppeal { uphold: false },
        ))
        .then_error_like(is_precondition, "no appeal is pending");
    given(history(with(
        appealed,
        [cmd(
            manager(),
            march(9, 9),
            Action::DecideAppeal { uphold: true },
        )],
    )))
    .when(cmd(
        manager(),
        march(9, 10),
        Action::DecideAppeal { uphold: false },
    ))
    .then_error_like(is_conflict, "already been decided");
    given_commands(fulfilled("SQ-WEIXIU"))
        .when(cmd(
            caseworker(),
            march(6, 9),
            Action::AppealRating { reason: "x".into() },
        ))
        .then_error_like(is_precondition, "has not been rated");
}

#[test]
fn managers_are_read_only_apart_from_appeals() {
    for action in [
        Action::Claim,
        Action::Accept { comment: None },
        Action::AddNote {
            text: "x".into(),
            internal: true,
        },
        Action::Close,
        Action::Approve {
            level: 1,
            comment: None,
        },
    ] {
        given_commands(submitted("MZ-DIBAO"))
            .when(cmd(manager(), march(2, 10), action))
            .then_error_like(is_forbidden, "a manager cannot");
    }
}

// ------------------------------------------------------------------ withdrawal and closing

#[test]
fn the_resident_withdraws_before_a_decision() {
    for stage in [
        submitted("MZ-DIBAO"),
        accepted("MZ-DIBAO"),
        reviewed("MZ-DIBAO"),
    ] {
        let state = given_commands(stage)
            .when(cmd(
                resident(),
                march(3, 14),
                Action::Withdraw {
                    reason: Some("不需要了 no longer needed".into()),
                },
            ))
            .then(vec![Event::RequestWithdrawn {
                by: id("res-1"),
                reason: Some("不需要了 no longer needed".into()),
                at: march(3, 14),
            }]);
        assert_eq!(state.status(), Some(Status::Withdrawn));
    }
    given_commands(approved("MZ-DIBAO"))
        .when(cmd(
            resident(),
            march(3, 14),
            Action::Withdraw { reason: None },
        ))
        .then_error(wrong_state(Status::Approved, "withdraw"));
    given_commands(submitted("MZ-DIBAO"))
        .when(cmd(
            other_resident(),
            march(3, 14),
            Action::Withdraw { reason: None },
        ))
        .then_error_like(is_forbidden, "only the applicant");
    given_commands(submitted("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            march(3, 14),
            Action::Withdraw { reason: None },
        ))
        .then_error_like(is_forbidden, "a caseworker cannot withdraw");
}

#[test]
fn a_fulfilled_request_is_closed_and_stays_closed() {
    let state = given_commands(fulfilled("SQ-WEIXIU"))
        .when(cmd(caseworker(), march(5, 9), Action::Close))
        .then(vec![Event::RequestClosed {
            by: id("cw-1"),
            at: march(5, 9),
        }]);
    assert_eq!(state.status(), Some(Status::Closed));
    given_commands(in_fulfilment("SQ-WEIXIU"))
        .when(cmd(caseworker(), march(5, 9), Action::Close))
        .then_error(wrong_state(Status::InFulfilment, "close"));
    for (actor, action) in [
        (caseworker(), Action::Close),
        (caseworker(), Action::Accept { comment: None }),
        (resident(), Action::Withdraw { reason: None }),
        (caseworker(), Action::StartFulfilment { note: None }),
    ] {
        let name = action.name();
        given_commands(closed("SQ-WEIXIU"))
            .when(cmd(actor, march(6, 9), action))
            .then_error(wrong_state(Status::Closed, name));
    }
}

// ------------------------------------------------------------------ timers

#[test]
fn an_untouched_request_is_deemed_accepted_after_five_working_days() {
    let due = end_of(2026, 3, 9).next_millisecond();
    let given_state = given_commands(submitted("MZ-DIBAO"));
    assert_eq!(
        next_due(given_state.state(), &CALENDAR),
        vec![DueTimer {
            kind: TimerKind::DeemedAcceptance,
            due_at: due
        }]
    );
    let state = given_state
        .when(cmd(
            system(),
            due,
            Action::FireTimer {
                kind: TimerKind::DeemedAcceptance,
                due_at: due,
            },
        ))
        .then(vec![Event::RequestAccepted {
            by: None,
            deemed: true,
            at: due,
            promised_deadline: end_of(2026, 3, 31),
            statutory_deadline: end_of(2026, 4, 22),
            comment: None,
        }]);
    assert_eq!(state.status(), Some(Status::Accepted));
    assert!(state.request().unwrap().deemed_accepted);
    // Firing again does nothing.
    given(
        history(submitted("MZ-DIBAO"))
            .into_iter()
            .chain([Event::RequestAccepted {
                by: None,
                deemed: true,
                at: due,
                promised_deadline: end_of(2026, 3, 31),
                statutory_deadline: end_of(2026, 4, 22),
                comment: None,
            }]),
    )
    .when(cmd(
        system(),
        due,
        Action::FireTimer {
            kind: TimerKind::DeemedAcceptance,
            due_at: due,
        },
    ))
    .then(vec![]);
}

#[test]
fn timers_fired_early_or_by_anyone_but_the_scheduler_do_nothing() {
    let due = end_of(2026, 3, 9).next_millisecond();
    given_commands(submitted("MZ-DIBAO"))
        .when(cmd(
            system(),
            march(9, 23),
            Action::FireTimer {
                kind: TimerKind::DeemedAcceptance,
                due_at: due,
            },
        ))
        .then(vec![]);
    given_commands(submitted("MZ-DIBAO"))
        .when(cmd(
            caseworker(),
            due,
            Action::FireTimer {
                kind: TimerKind::DeemedAcceptance,
                due_at: due,
            },
        ))
        .then_error_like(is_forbidden, "only the scheduler");
    given_commands(claimed("MZ-DIBAO"))
        .when(cmd(
            system(),
            due,
            Action::FireTimer {
                kind: TimerKind::YellowCard,
                due_at: due,
            },
        ))
        .then(vec![]);
    given_commands(submitted("MZ-DIBAO"))
        .when(cmd(system(), due, Action::Claim))
        .then_error_like(is_forbidden, "a system cannot claim");
}

#[test]
fn supervision_warns_at_eighty_percent_then_yellow_then_red_each_once() {
    // SQ-WEIXIU: promised 3 working days; accepted Monday 2 March 11:00.
    let accepted_events = history(accepted("SQ-WEIXIU"));
    let state = given(accepted_events.clone()).state().clone();
    let warning = end_of(2026, 3, 4).next_millisecond(); // 80% of 3 = 2 days: 3 and 4 March
    let yellow = end_of(2026, 3, 5).next_millisecond();
    let red = end_of(2026, 3, 12).next_millisecond(); // 5 working days after 5 March
    assert_eq!(
        next_due(&state, &CALENDAR),
        vec![
            DueTimer {
                kind: TimerKind::Warning,
                due_at: warning
            },
            DueTimer {
                kind: TimerKind::YellowCard,
                due_at: yellow
            },
            DueTimer {
                kind: TimerKind::RedCard,
                due_at: red
            },
        ]
    );
    let warned = given(accepted_events.clone())
        .when(cmd(
            system(),
            warning,
            Action::FireTimer {
                kind: TimerKind::Warning,
                due_at: warning,
            },
        ))
        .then(vec![Event::WarningRaised {
            due_at: warning,
            at: warning,
        }]);
    assert_eq!(
        decide(
            &warned,
            &cmd(
                system(),
                warning,
                Action::FireTimer {
                    kind: TimerKind::Warning,
                    due_at: warning
                }
            ),
            &ctx()
        ),
        Ok(vec![])
    );
    let mut events = accepted_events;
    events.push(Event::WarningRaised {
        due_at: warning,
        at: warning,
    });
    let yellowed = given(events.clone())
        .when(cmd(
            system(),
            yellow,
            Action::FireTimer {
                kind: TimerKind::YellowCard,
                due_at: yellow,
            },
        ))
        .then(vec![Event::YellowCardIssued {
            due_at: yellow,
            at: yellow,
        }]);
    assert_eq!(
        next_due(&yellowed, &CALENDAR),
        vec![DueTimer {
            kind: TimerKind::RedCard,
            due_at: red
        }]
    );
    events.push(Event::YellowCardIssued {
        due_at: yellow,
        at: yellow,
    });
    let reddened = given(events)
        .when(cmd(
            system(),
            march(13, 8),
            Action::FireTimer {
                kind: TimerKind::RedCard,
                due_at: red,
            },
        ))
        .then(vec![Event::RedCardIssued {
            due_at: red,
            at: march(13, 8),
        }]);
    assert_eq!(next_due(&reddened, &CALENDAR), vec![]);
    assert!(reddened.supervision().unwrap().red_card_at.is_some());
}

#[test]
fn a_paused_clock_has_no_supervision_timers() {
    let asked = with(
        accepted("SQ-WEIXIU"),
        [cmd(
            caseworker(),
            march(3, 9),
            Action::RequestInfo {
                missing: vec!["照片 photo".into()],
                message: None,
            },
        )],
    );
    let state = given_commands(asked.clone()).state().clone();
    assert_eq!(next_due(&state, &CALENDAR), vec![]);
    given_commands(asked)
        .when(cmd(
            system(),
            march(20, 9),
            Action::FireTimer {
                kind: TimerKind::YellowCard,
                due_at: march(6, 0),
            },
        ))
        .then(vec![]);
}

#[test]
fn a_stale_timer_after_an_extension_does_nothing() {
    let extended = with(
        accepted("SQ-WEIXIU"),
        [
            cmd(
                caseworker(),
                march(3, 9),
                Action::RequestExtension {
                    days: 5,
                    reason: "配件 waiting for parts".into(),
                },
            ),
            cmd(
                supervisor(),
                march(3, 10),
                Action::DecideExtension { approve: true },
            ),
        ],
    );
    let old_yellow = end_of(2026, 3, 5).next_millisecond();
    given_commands(extended.clone())
        .when(cmd(
            system(),
            old_yellow,
            Action::FireTimer {
                kind: TimerKind::YellowCard,
                due_at: old_yellow,
            },
        ))
        .then(vec![]);
    let state = given_commands(extended).state().clone();
    let yellow = next_due(&state, &CALENDAR)
        .into_iter()
        .find(|t| t.kind == TimerKind::YellowCard)
        .unwrap();
    assert_eq!(yellow.due_at, end_of(2026, 3, 12).next_millisecond());
}

// ------------------------------------------------------------------ projections

#[test]
fn the_clock_is_paused_only_while_materials_are_awaited_and_finished_at_the_end() {
    let asked = with(
        accepted("SQ-WEIXIU"),
        [cmd(
            caseworker(),
            march(3, 9),
            Action::RequestInfo {
                missing: vec!["照片".into()],
                message: None,
            },
        )],
    );
    let d = given_commands(asked).state().deadlines().unwrap().clone();
    assert!(d.paused() && !d.running());
    let done = given_commands(fulfilled("SQ-WEIXIU"))
        .state()
        .deadlines()
        .unwrap()
        .clone();
    assert!(!done.paused() && !done.running());
    assert_eq!(done.finished_at, Some(march(4, 12)));
    assert_eq!(done.promised, Some(end_of(2026, 3, 5)));
}

#[test]
fn the_status_lookup_needs_the_tracking_code_and_the_phone_digits() {
    let state = given_commands(submitted("SQ-WEIXIU")).state().clone();
    let request = state.request().unwrap();
    assert!(request.matches_lookup(&tracking_code(), "0427"));
    assert!(!request.matches_lookup(&tracking_code(), "0428"));
    assert!(!request.matches_lookup(&tracking_code(), "04270"));
    assert!(!request.matches_lookup(&TrackingCode::from_random_bytes([1; 8]), "0427"));
    let names: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(names.len(), 11);
    assert_eq!(
        serde_json::to_value(Status::AwaitingInfo).unwrap(),
        "awaiting_info"
    );
}
