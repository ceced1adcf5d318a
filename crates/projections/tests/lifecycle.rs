//! A request's whole life through the real log and the projection runner: status,
//! tracking-code lookup, timeline, queue entry and timers index at each stage; wait_for;
//! undecodable events; and `ReadModels::apply` idempotence without a log.

mod support;

use anju_domain::*;
use anju_projections::*;
use std::time::Duration;
use support::*;

fn supervisor2() -> Actor {
    Actor::supervisor("sup-a2", [site_a()])
}

async fn start(world: &World) -> Projections {
    Projections::start(world.log.clone(), calendar())
        .await
        .expect("start projections")
}

fn queue_ids(
    projections: &Projections,
    now: Timestamp,
) -> Vec<(RequestId, Option<Timestamp>, Status)> {
    let page = projections
        .queue(&QueueQuery::new(Scope::All, now))
        .expect("queue");
    page.items
        .iter()
        .map(|i| (i.request_id, i.deadline, i.status))
        .collect()
}

#[tokio::test]
async fn a_request_is_followed_through_its_whole_life() {
    let world = World::new().await;
    let projections = start(&world).await;
    let id = rid(1);
    let cal = Calendar::china_2026();

    let p = world
        .run(
            id,
            resident(),
            march(2, 9),
            submission("MZ-DIBAO", site_a(), 1),
        )
        .await;
    projections
        .wait_for(p, Duration::from_secs(10))
        .await
        .unwrap();
    let view = projections
        .request(&id)
        .unwrap()
        .expect("view after submit");
    let request = view.state.request().unwrap();
    assert_eq!(request.status, Status::Submitted);
    assert_eq!((view.version, view.last_position), (0, p));
    assert_eq!(
        projections.request_id_by_tracking(&tracking(1)).unwrap(),
        Some(id)
    );
    assert_eq!(
        projections.request_id_by_tracking(&tracking(2)).unwrap(),
        None
    );
    let intake = cal.add_working_days(march(2, 9), 5);
    assert_eq!(
        queue_ids(&projections, march(2, 12)),
        vec![(id, Some(intake), Status::Submitted)]
    );
    let deemed = DueTimer {
        kind: TimerKind::DeemedAcceptance,
        due_at: intake.next_millisecond(),
    };
    assert_eq!(view.timers, vec![deemed]);
    assert!(
        projections.due_timers(intake, 10).unwrap().is_empty(),
        "not due before the deadline passes"
    );
    assert_eq!(
        projections
            .due_timers(intake.next_millisecond(), 10)
            .unwrap(),
        vec![(id, deemed)]
    );

    world
        .run(id, caseworker(), march(2, 10), Action::Claim)
        .await;
    let p = world
        .run(
            id,
            caseworker(),
            march(2, 11),
            Action::Accept { comment: None },
        )
        .await;
    projections
        .wait_for(p, Duration::from_secs(10))
        .await
        .unwrap();
    let view = projections.request(&id).unwrap().unwrap();
    let promised = view.state.deadlines().unwrap().promised.unwrap();
    assert_eq!(promised, cal.add_working_days(march(2, 11), 15));
    assert_eq!(view.timers, next_due(&world.state(id), &cal));
    assert_eq!(
        view.timers.iter().map(|t| t.kind).collect::<Vec<_>>(),
        [
            TimerKind::Warning,
            TimerKind::YellowCard,
            TimerKind::RedCard
        ]
    );
    let all_timers = projections
        .due_timers(Timestamp(i64::MAX - 1), 100)
        .unwrap();
    assert_eq!(
        all_timers.len(),
        3,
        "the deemed-acceptance timer was removed: {all_timers:?}"
    );
    assert_eq!(
        projections.next_timer().unwrap().map(|t| t.1.kind),
        Some(TimerKind::Warning)
    );
    assert_eq!(
        queue_ids(&projections, march(2, 12)),
        vec![(id, Some(promised), Status::Accepted)]
    );

    // Sent back for materials: the clock stops, so no timers and no deadline.
    world
        .run(
            id,
            caseworker(),
            march(3, 10),
            Action::RequestInfo {
                missing: vec!["户口本 household register".into()],
                message: None,
            },
        )
        .await;
    let p = world.log.head_position() - 1;
    projections
        .wait_for(p, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(projections
        .due_timers(Timestamp(i64::MAX - 1), 100)
        .unwrap()
        .is_empty());
    assert_eq!(
        queue_ids(&projections, march(3, 12)),
        vec![(id, None, Status::AwaitingInfo)]
    );

    world
        .run(
            id,
            resident(),
            march(5, 9),
            Action::ProvideInfo {
                note: None,
                materials: Default::default(),
            },
        )
        .await;
    world
        .run(
            id,
            caseworker(),
            march(6, 10),
            Action::Review {
                opinion: "符合条件".into(),
            },
        )
        .await;
    world
        .run(
            id,
            supervisor(),
            march(9, 10),
            Action::Approve {
                level: 1,
                comment: None,
            },
        )
        .await;
    world
        .run(
            id,
            supervisor2(),
            march(9, 15),
            Action::Approve {
                level: 2,
                comment: None,
            },
        )
        .await;
    world
        .run(
            id,
            caseworker(),
            march(10, 9),
            Action::StartFulfilment { note: None },
        )
        .await;
    for step in ["household-survey", "public-notice", "first-payment"] {
        world
            .run(
                id,
                caseworker(),
                march(11, 9),
                Action::CompleteStep {
                    step: step.into(),
                    note: None,
                },
            )
            .await;
    }
    let p = world.log.head_position() - 1;
    projections
        .wait_for(p, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        queue_ids(&projections, march(11, 12)),
        vec![(id, None, Status::Fulfilled)]
    );
    assert!(projections
        .due_timers(Timestamp(i64::MAX - 1), 100)
        .unwrap()
        .is_empty());

    world
        .run(
            id,
            resident(),
            march(11, 15),
            Action::Rate {
                grade: Grade::Satisfied,
                comment: Some("快".into()),
            },
        )
        .await;
    let p = world
        .run(id, caseworker(), march(11, 16), Action::Close)
        .await;
    projections
        .wait_for(p, Duration::from_secs(10))
        .await
        .unwrap();

    let view = projections.request(&id).unwrap().unwrap();
    assert_eq!(
        view.state,
        world.state(id),
        "the view holds exactly the folded state"
    );
    assert_eq!(view.state.status(), Some(Status::Closed));
    assert_eq!((view.version, view.last_position), (14, p));
    assert!(
        queue_ids(&projections, march(11, 17)).is_empty(),
        "a closed request leaves the queue"
    );

    let timeline = projections.timeline(&id).unwrap();
    let types: Vec<&str> = timeline.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "RequestSubmitted",
            "RequestClaimed",
            "RequestAccepted",
            "InfoRequested",
            "InfoProvided",
            "RequestReviewed",
            "RequestApproved",
            "RequestApproved",
            "FulfilmentStarted",
            "StepCompleted",
            "StepCompleted",
            "StepCompleted",
            "RequestFulfilled",
            "RequestRated",
            "RequestClosed",
        ]
    );
    assert_eq!(
        timeline.iter().map(|e| e.version).collect::<Vec<_>>(),
        (0..15).collect::<Vec<_>>()
    );
    assert!(timeline.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(timeline[0].summary, "submitted MZ-DIBAO at site-a");
    assert_eq!(timeline[0].actor, Some(ActorId::new("res-1")));
    assert_eq!(timeline[0].at, march(2, 9));
    assert_eq!(timeline[2].actor, Some(ActorId::new("cw-a")));
    assert_eq!(timeline[7].summary, "approved at level 2");
    assert_eq!(
        timeline[12].actor, None,
        "fulfilment after the last step is the system's"
    );
    // The words people wrote are in `details` (issue 16), never in the summaries.
    let summaries: Vec<&str> = timeline.iter().map(|e| e.summary.as_str()).collect();
    for word in ["户口本", "符合条件", "快"] {
        assert!(summaries.iter().all(|s| !s.contains(word)), "{word}");
    }
    assert_eq!(
        timeline[5].details.get("opinion").map(String::as_str),
        Some("符合条件")
    );
    let text = serde_json::to_string(&timeline).unwrap();
    for secret in ["sealed", "contact-secret", "id-secret", "0427", "王秀英"] {
        assert!(
            !text.contains(secret),
            "the timeline must not carry {secret:?}: {text}"
        );
    }
    projections.stop().await;
}

#[tokio::test]
async fn wait_for_returns_when_reached_and_times_out_with_a_typed_error() {
    let world = World::new().await;
    let projections = start(&world).await;
    let p = world
        .run(
            rid(1),
            resident(),
            march(2, 9),
            submission("SQ-WEIXIU", site_a(), 1),
        )
        .await;
    projections
        .wait_for(p, Duration::from_secs(10))
        .await
        .expect("reached");
    assert_eq!(projections.position(), p + 1);
    match projections.wait_for(p + 5, Duration::from_millis(50)).await {
        Err(ProjectionError::NotReached { wanted, reached }) => {
            assert_eq!((wanted, reached), (p + 5, p + 1))
        }
        other => panic!("expected NotReached, got {other:?}"),
    }
    // A waiter is released by a later append.
    let waiter = {
        let projections = projections.clone();
        tokio::spawn(async move { projections.wait_for(p + 1, Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    world
        .run(rid(1), caseworker(), march(2, 10), Action::Claim)
        .await;
    waiter.await.unwrap().expect("released by the append");
    let error = ProjectionError::NotReached {
        wanted: 9,
        reached: 3,
    };
    assert_eq!(
        error.to_string(),
        "projections reached position 3, not past the wanted position 9"
    );
    projections.stop().await;
}

#[tokio::test]
async fn other_streams_advance_the_position_and_undecodable_events_are_skipped_and_counted() {
    let world = World::new().await;
    let projections = start(&world).await;
    let id = rid(7);
    world
        .run(
            id,
            resident(),
            march(2, 9),
            submission("SQ-WEIXIU", site_a(), 7),
        )
        .await;
    // Garbage in the request's stream: skipped, counted, the stream continues.
    world
        .append_raw(&id.stream_name(), "RequestClaimed", b"{not json")
        .await;
    world
        .append_raw(&id.stream_name(), "NoSuchEvent", b"{}")
        .await;
    world
        .run(id, caseworker(), march(2, 10), Action::Claim)
        .await;
    // A stream the projections do not read, at the head.
    let other = world.append_raw("relay-meta", "Whatever", b"{}").await;
    projections
        .wait_for(other, Duration::from_secs(10))
        .await
        .expect("position passes other streams");
    let stats = projections.models().stats().unwrap();
    assert_eq!(stats.decode_errors, 2);
    assert_eq!(stats.checkpoint, other + 1);
    let view = projections.request(&id).unwrap().unwrap();
    assert_eq!(view.version, 3);
    assert_eq!(view.state.assignee(), Some(&ActorId::new("cw-a")));
    assert_eq!(
        projections.timeline(&id).unwrap().len(),
        2,
        "unreadable events have no timeline entry"
    );
    projections.stop().await;
}

#[tokio::test]
async fn apply_without_a_log_is_idempotent_per_stream() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let models = ReadModels::open(&db, calendar()).unwrap();
    assert!(models.ensure_version().unwrap(), "new trees need a replay");
    assert!(!models.ensure_version().unwrap());
    let id = rid(3);
    let ctx = Context {
        catalogue: &CATALOGUE,
        calendar: &Calendar::china_2026(),
    };
    let mut state = RequestState::default();
    let mut events = Vec::new();
    for (actor, at, action) in [
        (
            resident(),
            march(2, 9),
            submission("SQ-WEIXIU", site_a(), 3),
        ),
        (caseworker(), march(2, 10), Action::Claim),
        (caseworker(), march(2, 11), Action::Accept { comment: None }),
    ] {
        for event in decide(&state, &Command::new(actor, at, id, action), &ctx).unwrap() {
            state = evolve(state, &event);
            events.push(event);
        }
    }
    let stream = id.stream_name();
    // Position numbers are whatever the feeding node used; they are only recorded.
    for (version, event) in events.iter().enumerate() {
        assert_eq!(
            models
                .apply(&stream, version as u64, 100 + version as u64, event)
                .unwrap(),
            Applied::Applied
        );
    }
    let once = models.dump().unwrap();
    for (version, event) in events.iter().enumerate() {
        assert_eq!(
            models
                .apply(&stream, version as u64, 100 + version as u64, event)
                .unwrap(),
            Applied::Skipped {
                expected_version: 3
            }
        );
    }
    assert_eq!(
        models.apply(&stream, 9, 200, &events[1]).unwrap(),
        Applied::Skipped {
            expected_version: 3
        },
        "a gap is skipped"
    );
    assert_eq!(
        models.apply("relay-x", 0, 1, &events[0]).unwrap(),
        Applied::NotARequest
    );
    assert_eq!(
        models.dump().unwrap(),
        once,
        "applying again changed nothing"
    );
    assert_eq!(models.request(&id).unwrap().unwrap().state, state);
    let throughput = models.throughput(&all(), Bucket::Day).unwrap();
    assert_eq!((throughput[0].submitted, throughput[0].accepted), (1, 1));
}
