//! The demo clock under a running application: an advance wakes the timer scheduler at
//! once (its interval here is an hour, so only the wake can fire anything), what fell
//! due fires exactly once, and a reopened application keeps the demo's time.

use crate::helpers::*;
use anju_app::{Application, DemoClock};
use std::sync::Arc;
use std::time::Duration;

async fn open(dir: &std::path::Path) -> (Application, Arc<DemoClock>) {
    let clock = Arc::new(DemoClock::open(dir).expect("demo clock opens"));
    let mut config = config(dir);
    config.timer_interval = Duration::from_secs(3600);
    let app = Application::open(config, clock.clone())
        .await
        .expect("application opens");
    (app, clock)
}

#[tokio::test]
async fn an_advance_wakes_the_scheduler_and_fires_what_fell_due_once() {
    let dir = tempfile::tempdir().unwrap();
    let (app, clock) = open(dir.path()).await;
    let t = TestApp {
        app,
        clock: Arc::new(anju_app::ManualClock::default()),
        dir,
    };
    let submitted = t
        .submit(submission(&t.app, "YL-GAOLING", "demo-clock-0001"))
        .await;
    let id = submitted.request_id;
    t.app
        .wait_for(Some(submitted.position), None)
        .await
        .unwrap();

    // Three weeks on: deemed acceptance (5 working days) is due; nothing else yet.
    let advanced = clock.advance(Duration::from_secs(21 * 86_400)).unwrap();
    assert!(
        t.app.now().0 >= advanced.now.0,
        "the application reads the demo clock"
    );
    let fired = clock
        .wait_caught_up(advanced.generation, Duration::from_secs(10))
        .await
        .expect("the scheduler woke up within seconds, not an hour");
    assert_eq!(fired, 1, "the deemed acceptance");
    assert_eq!(t.count_events(id, "RequestAccepted").await, 1);

    // Four more weeks: the processing clock (10 working days) ran out long ago.
    let advanced = clock.advance(Duration::from_secs(28 * 86_400)).unwrap();
    let fired = clock
        .wait_caught_up(advanced.generation, Duration::from_secs(10))
        .await
        .expect("the scheduler caught up");
    assert_eq!(fired, 3, "warning, yellow and red card");
    for event_type in ["WarningRaised", "YellowCardIssued", "RedCardIssued"] {
        assert_eq!(t.count_events(id, event_type).await, 1, "{event_type}");
    }

    // More advances and rounds fire nothing again.
    let advanced = clock.advance(Duration::from_secs(86_400)).unwrap();
    assert_eq!(
        clock
            .wait_caught_up(advanced.generation, Duration::from_secs(10))
            .await,
        Some(0)
    );
    t.app.fire_due_timers().await.unwrap();
    for event_type in [
        "RequestAccepted",
        "WarningRaised",
        "YellowCardIssued",
        "RedCardIssued",
    ] {
        assert_eq!(t.count_events(id, event_type).await, 1, "{event_type}");
    }

    // Reopened, the application is still on the demo's time.
    let before = t.app.now();
    let TestApp { app, dir, .. } = t;
    app.close().await.unwrap();
    drop(app);
    drop(clock);
    let (app, clock) = open(dir.path()).await;
    assert!(app.now().0 >= before.0);
    assert!(clock.offset() >= Duration::from_secs(50 * 86_400));
    app.close().await.unwrap();
}

/// The satisfaction report counts an open remediation overdue by the application's
/// clock, not the wall clock: on a clock set back in March nothing is overdue until
/// the clock passes its 15 working days.
#[tokio::test]
async fn open_remediations_are_overdue_by_the_application_clock() {
    use anju_app::MetricsQuery;
    use anju_domain::{Action, Grade};
    let t = TestApp::start().await;
    let submitted = t
        .submit(submission(&t.app, "JY-QIANYUE", "remediation-clock-0001"))
        .await;
    let id = submitted.request_id;
    let worker = caseworker("cw-1");
    t.run(id, &worker, Action::Claim).await;
    t.run(id, &worker, Action::Accept { comment: None }).await;
    t.run(
        id,
        &worker,
        Action::Review {
            opinion: "符合条件".into(),
        },
    )
    .await;
    t.run(id, &worker, Action::StartFulfilment { note: None })
        .await;
    let code = anju_domain::ServiceCode::parse("JY-QIANYUE").unwrap();
    let steps: Vec<String> = t
        .app
        .catalogue()
        .get(&code)
        .unwrap()
        .steps
        .iter()
        .map(|s| s.code.clone())
        .collect();
    for step in steps {
        t.run(id, &worker, Action::CompleteStep { step, note: None })
            .await;
    }
    let rated = t
        .run(
            id,
            &resident(),
            Action::Rate {
                grade: Grade::VeryDissatisfied,
                comment: None,
            },
        )
        .await;
    let query = || MetricsQuery {
        sites: None,
        category: None,
        from: None,
        to: None,
        bucket: anju_projections::Bucket::Day,
    };
    let now = t
        .app
        .metrics(&manager(), query(), Some(rated.position))
        .await
        .unwrap();
    assert_eq!(now.satisfaction.remediations_open, 1);
    assert_eq!(
        now.satisfaction.remediations_overdue, 0,
        "due in 15 working days"
    );
    t.clock.advance(Duration::from_secs(30 * 86_400));
    let later = t.app.metrics(&manager(), query(), None).await.unwrap();
    assert_eq!(later.satisfaction.remediations_overdue, 1);
    t.app.close().await.unwrap();
}
