//! The timer scheduler: deemed acceptance and supervision cards fire when the clock
//! passes their due instants, exactly once, also across a close and reopen.

use crate::helpers::*;
use anju_domain::{Action, Event, TimerKind, Timestamp};

async fn due_at(t: &TestApp, id: anju_domain::RequestId, kind: TimerKind) -> Timestamp {
    let detail = t
        .app
        .request_detail(
            &admin(),
            id,
            Some(t.app.log().head_position().saturating_sub(1)),
        )
        .await
        .unwrap();
    detail
        .timers
        .iter()
        .find(|timer| timer.kind == kind)
        .unwrap_or_else(|| panic!("{kind:?} is scheduled"))
        .due_at
}

#[tokio::test]
async fn deemed_acceptance_and_cards_fire_once_each() {
    let t = TestApp::start().await;
    let submitted = t
        .submit(submission(&t.app, "YL-GAOLING", "timer-key-0001"))
        .await;
    let id = submitted.request_id;

    // Nobody acts for 5 working days: deemed accepted, once.
    let deemed_at = due_at(&t, id, TimerKind::DeemedAcceptance).await;
    t.clock.set(Timestamp(deemed_at.0 - 1));
    t.app.fire_due_timers().await.unwrap();
    assert_eq!(
        t.count_events(id, "RequestAccepted").await,
        0,
        "not before the due instant"
    );
    t.clock.set(deemed_at);
    t.wait_for_event(id, "RequestAccepted", 1).await;
    let deemed = t
        .events(id)
        .await
        .into_iter()
        .find(|e| e.event_type() == "RequestAccepted")
        .unwrap();
    assert!(matches!(
        deemed,
        Event::RequestAccepted {
            deemed: true,
            by: None,
            ..
        }
    ));

    // Warning and yellow card as the clock passes each.
    for (kind, event_type) in [
        (TimerKind::Warning, "WarningRaised"),
        (TimerKind::YellowCard, "YellowCardIssued"),
    ] {
        let due = due_at(&t, id, kind).await;
        t.clock.set(due);
        t.wait_for_event(id, event_type, 1).await;
    }
    assert_eq!(t.count_events(id, "RedCardIssued").await, 0);
    let red_due = due_at(&t, id, TimerKind::RedCard).await;

    // The red card falls due while the server is down and fires on start.
    let t = t.reopen().await;
    t.clock.set(red_due.next_millisecond());
    let t = t.reopen().await;
    t.wait_for_event(id, "RedCardIssued", 1).await;

    // More rounds and another restart change nothing.
    for _ in 0..3 {
        t.app.fire_due_timers().await.unwrap();
    }
    let t = t.reopen().await;
    t.app.fire_due_timers().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for event_type in [
        "RequestAccepted",
        "WarningRaised",
        "YellowCardIssued",
        "RedCardIssued",
    ] {
        assert_eq!(
            t.count_events(id, event_type).await,
            1,
            "{event_type} fired exactly once"
        );
    }
    // Firing by hand as the system is also a no-op now.
    let again = t
        .app
        .fire_timer(id, TimerKind::RedCard, red_due)
        .await
        .unwrap();
    assert!(again.events.is_empty());
    // Only the scheduler fires timers.
    let by_hand = t
        .app
        .execute(
            id,
            caseworker("cw-1"),
            Action::FireTimer {
                kind: TimerKind::RedCard,
                due_at: red_due,
            },
        )
        .await;
    assert!(matches!(by_hand, Err(anju_app::AppError::Forbidden(_))));
    t.app.close().await.unwrap();
}
