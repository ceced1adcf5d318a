//! The documented JSON form of events (insta snapshots), the round trip through
//! `to_json`/`from_json`, and the upcast of an old schema version.

mod support;

use anju_domain::*;
use support::*;

/// One of every event type, from realistic histories.
fn one_of_each() -> Vec<Event> {
    let mut events = history(with(
        accepted("MZ-DIBAO"),
        [
            cmd(
                caseworker(),
                march(3, 9),
                Action::RequestInfo {
                    missing: vec!["收入证明 proof of income".into()],
                    message: None,
                },
            ),
            cmd(
                kiosk(),
                march(4, 9),
                Action::ProvideInfo {
                    note: Some("已补交".into()),
                    materials: Default::default(),
                },
            ),
            cmd(
                caseworker(),
                march(4, 10),
                Action::RequestExtension {
                    days: 5,
                    reason: "需入户核查".into(),
                },
            ),
            cmd(
                supervisor(),
                march(4, 11),
                Action::DecideExtension { approve: true },
            ),
            cmd(
                caseworker(),
                march(4, 12),
                Action::AddNote {
                    text: "已电话联系申请人".into(),
                    internal: true,
                },
            ),
            cmd(
                supervisor(),
                march(4, 14),
                Action::Reassign { to: id("cw-2") },
            ),
        ],
    ));
    events.extend(
        history(approved("MZ-LINSHI"))
            .into_iter()
            .filter(|e| e.event_type() == "RequestApproved"),
    );
    events.extend(history(with(
        fulfilled("SQ-WEIXIU"),
        [
            cmd(
                resident(),
                march(5, 9),
                Action::Rate {
                    grade: Grade::Dissatisfied,
                    comment: Some("还在漏".into()),
                },
            ),
            cmd(
                caseworker(),
                march(6, 9),
                Action::AppealRating {
                    reason: "非本次维修问题".into(),
                },
            ),
            cmd(
                manager(),
                march(9, 9),
                Action::DecideAppeal { uphold: true },
            ),
            cmd(
                caseworker(),
                march(10, 9),
                Action::ResolveRemediation {
                    summary: "已返修".into(),
                },
            ),
            cmd(caseworker(), march(10, 10), Action::Close),
        ],
    )));
    events.push(Event::RequestRefused {
        by: id("cw-1"),
        reason: "不属于本社区".into(),
        at: march(2, 11),
        legal_basis: None,
    });
    events.push(Event::RequestDenied {
        by: id("sup-1"),
        reason: "收入超标".into(),
        at: march(3, 11),
        legal_basis: None,
    });
    events.push(Event::RequestWithdrawn {
        by: id("res-1"),
        reason: None,
        at: march(3, 11),
    });
    events.push(Event::ExtensionRejected {
        by: id("sup-1"),
        at: march(3, 12),
    });
    let due = march(10, 0);
    events.push(Event::WarningRaised {
        due_at: due,
        at: due,
    });
    events.push(Event::YellowCardIssued {
        due_at: due,
        at: due,
    });
    events.push(Event::RedCardIssued {
        due_at: due,
        at: due,
    });
    let mut seen = std::collections::BTreeSet::new();
    events.retain(|e| seen.insert(e.event_type()));
    events
}

#[test]
fn every_event_type_is_covered() {
    let types: Vec<&str> = one_of_each().iter().map(Event::event_type).collect();
    let mut expected = EVENT_TYPES.to_vec();
    let mut got = types.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
}

#[test]
fn events_serialize_to_the_documented_json() {
    for event in one_of_each() {
        insta::assert_json_snapshot!(event.event_type(), event.to_json_value());
    }
}

#[test]
fn every_event_round_trips_through_stored_bytes() {
    for event in one_of_each() {
        let bytes = event.to_json();
        let back = Event::from_json(event.event_type(), event.schema_version(), &bytes)
            .expect("reads back");
        assert_eq!(back, event);
    }
}

#[test]
fn the_log_type_name_decides_over_the_stored_type_member() {
    // Stored bytes name another type than the log's frame: the frame's name is used,
    // as it always was (the direct read of current-version bytes must not change that).
    let bytes = br#"{"type":"RequestWithdrawn","by":"res-1","at":5}"#;
    let read = Event::from_json("RequestClaimed", 1, bytes).expect("reads as the frame's type");
    assert_eq!(
        read,
        Event::RequestClaimed {
            by: id("res-1"),
            at: Timestamp(5)
        }
    );
}

#[test]
fn a_version_one_rating_is_upcast() {
    let v1 = br#"{"type":"RequestRated","by":"res-1","score":2,"at":1772413200000}"#;
    let event = Event::from_json("RequestRated", 1, v1).expect("upcast");
    assert_eq!(
        event,
        Event::RequestRated {
            by: id("res-1"),
            grade: Grade::Dissatisfied,
            comment: None,
            at: Timestamp(1_772_413_200_000)
        }
    );
    assert_eq!(event.schema_version(), 2);
    // The type member may be absent from stored bytes; the log's type name decides.
    let bare = r#"{"by":"res-1","score":5,"comment":"好","at":1}"#.as_bytes();
    assert!(matches!(
        Event::from_json("RequestRated", 1, bare),
        Ok(Event::RequestRated {
            grade: Grade::VerySatisfied,
            ..
        })
    ));
}

#[test]
fn unreadable_events_give_clear_errors() {
    let err = |t: &str, v: u32, b: &[u8]| Event::from_json(t, v, b).unwrap_err().to_string();
    assert_eq!(
        err("RequestRated", 1, br#"{"by":"x","score":9,"at":1}"#),
        "event RequestRated schema version 1 cannot be upcast: score must be 1 to 5"
    );
    assert_eq!(
        err("RequestRated", 3, br#"{}"#),
        "event RequestRated has schema version 3, but this build knows only up to 2"
    );
    assert_eq!(
        err("RequestTeleported", 1, br#"{}"#),
        "unknown event type \"RequestTeleported\""
    );
    assert_eq!(
        err("RequestClaimed", 1, b"[1]"),
        "event json must be an object"
    );
    assert!(err("RequestClaimed", 1, b"{").starts_with("event json is malformed"));
}

/// Issue 16: events written before they carried the words (materials, messages,
/// opinions, notes, legal bases) still read, with nothing in the new fields, and an old
/// note is internal, as every note was then.
#[test]
fn events_from_before_issue_16_read_with_empty_words() {
    let note = br#"{"by":"cw-1","text":"t","at":1}"#;
    let Event::NoteAdded { internal, .. } = Event::from_json("NoteAdded", 1, note).unwrap() else {
        panic!("not a note");
    };
    assert!(
        internal,
        "a note written before the flag existed is internal"
    );
    let asked = br#"{"by":"cw-1","missing":["x"],"at":1,"working_days_used":0}"#;
    let Event::InfoRequested { message, .. } = Event::from_json("InfoRequested", 1, asked).unwrap()
    else {
        panic!("not an info request");
    };
    assert_eq!(message, None);
    let approved = br#"{"by":"sup-1","level":1,"at":1}"#;
    let Event::RequestApproved { comment, .. } =
        Event::from_json("RequestApproved", 1, approved).unwrap()
    else {
        panic!("not an approval");
    };
    assert_eq!(comment, None);
    // And a new event with words round-trips them.
    let public = Event::NoteAdded {
        by: id("cw-1"),
        text: "请带户口本".into(),
        at: march(2, 9),
        internal: false,
    };
    let back = Event::from_json("NoteAdded", 1, &public.to_json()).unwrap();
    assert_eq!(back, public);
}
