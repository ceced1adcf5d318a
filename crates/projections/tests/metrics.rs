//! Manager figures on a small known scenario, every number worked out by hand from the
//! dates (2 March 2026 is a Monday; no holidays in March): throughput buckets, lead-time
//! percentiles in hours and working days, SLA counts, grades and remediation, backlog.

mod support;

use anju_domain::*;
use anju_projections::*;
use support::*;

/// Six requests:
/// - R1 SQ-WEIXIU site A: submitted Mon 2 09:00, accepted 11:00, reviewed (no approval
///   needed, so decided) Tue 3 10:00, fulfilled Wed 4 15:00 (on time: promised end of
///   Thu 5), rated 非常满意, closed Wed 4 17:00.
/// - R2 SQ-WEIXIU site A: submitted Mon 2 10:00, accepted Tue 3 09:00 (promised end of
///   Fri 6), warning fired Fri 6 08:00, yellow card Mon 9 08:00, decided Mon 9 10:00,
///   fulfilled Tue 10 12:00 (late), rated 不满意 Tue 10 13:00 (remediation due end of Tue 31).
/// - R3 MZ-LINSHI site B: submitted Mon 2 09:30, deemed accepted Tue 10 09:00.
/// - R4 SQ-SHESHI site A: submitted Wed 4 09:00, withdrawn 12:00.
/// - R5 SQ-WEIXIU site A: submitted Thu 5 09:00, refused 10:00.
/// - R6 SQ-SHESHI site A: submitted Wed 11 09:00.
async fn scenario(world: &World) {
    let (r1, r2, r3, r4, r5, r6) = (rid(1), rid(2), rid(3), rid(4), rid(5), rid(6));
    world
        .run(
            r1,
            resident(),
            march(2, 9),
            submission("SQ-WEIXIU", site_a(), 1),
        )
        .await;
    world
        .run(
            r3,
            resident(),
            march_min(2, 9, 30),
            submission("MZ-LINSHI", site_b(), 3),
        )
        .await;
    world
        .run(
            r2,
            resident(),
            march(2, 10),
            submission("SQ-WEIXIU", site_a(), 2),
        )
        .await;
    world
        .run(r1, caseworker(), march(2, 10), Action::Claim)
        .await;
    world
        .run(
            r1,
            caseworker(),
            march(2, 11),
            Action::Accept { comment: None },
        )
        .await;
    world
        .run(r2, caseworker(), march(3, 9), Action::Claim)
        .await;
    world
        .run(
            r2,
            caseworker(),
            march(3, 9),
            Action::Accept { comment: None },
        )
        .await;
    world
        .run(
            r1,
            caseworker(),
            march(3, 10),
            Action::Review {
                opinion: "ok".into(),
            },
        )
        .await;
    world
        .run(
            r1,
            caseworker(),
            march(3, 11),
            Action::StartFulfilment { note: None },
        )
        .await;
    world
        .run(
            r4,
            resident(),
            march(4, 9),
            submission("SQ-SHESHI", site_a(), 4),
        )
        .await;
    world
        .run(
            r4,
            resident(),
            march(4, 12),
            Action::Withdraw { reason: None },
        )
        .await;
    for step in ["inspect", "repair", "check"] {
        world
            .run(
                r1,
                caseworker(),
                march(4, 15),
                Action::CompleteStep {
                    step: step.into(),
                    note: None,
                },
            )
            .await;
    }
    world
        .run(
            r1,
            resident(),
            march(4, 16),
            Action::Rate {
                grade: Grade::VerySatisfied,
                comment: None,
            },
        )
        .await;
    world
        .run(r1, caseworker(), march(4, 17), Action::Close)
        .await;
    world
        .run(
            r5,
            resident(),
            march(5, 9),
            submission("SQ-WEIXIU", site_a(), 5),
        )
        .await;
    world
        .run(r5, caseworker(), march_min(5, 9, 30), Action::Claim)
        .await;
    world
        .run(
            r5,
            caseworker(),
            march(5, 10),
            Action::Refuse {
                reason: "重复 duplicate".into(),
                legal_basis: None,
            },
        )
        .await;
    world.fire_due(r2, march(6, 8)).await;
    world.fire_due(r2, march(9, 8)).await;
    world
        .run(
            r2,
            caseworker(),
            march(9, 10),
            Action::Review {
                opinion: "ok".into(),
            },
        )
        .await;
    world
        .run(
            r2,
            caseworker(),
            march(9, 11),
            Action::StartFulfilment { note: None },
        )
        .await;
    for step in ["inspect", "repair", "check"] {
        world
            .run(
                r2,
                caseworker(),
                march(10, 12),
                Action::CompleteStep {
                    step: step.into(),
                    note: None,
                },
            )
            .await;
    }
    world
        .run(
            r2,
            resident(),
            march(10, 13),
            Action::Rate {
                grade: Grade::Dissatisfied,
                comment: None,
            },
        )
        .await;
    world.fire_due(r3, march(10, 9)).await;
    world
        .run(
            r6,
            resident(),
            march(11, 9),
            submission("SQ-SHESHI", site_a(), 6),
        )
        .await;
    let r2_state = world.state(r2);
    let supervision = r2_state.supervision().unwrap();
    assert!(
        supervision.warning_at.is_some()
            && supervision.yellow_card_at.is_some()
            && supervision.red_card_at.is_none()
    );
    assert_eq!(
        world.state(r3).request().unwrap().accepted_at,
        Some(march(10, 9))
    );
}

fn day(d: u32) -> Timestamp {
    Timestamp::cst(2026, 3, d, 0, 0)
}

fn bucket(start: Timestamp, counts: [u64; 8]) -> ThroughputBucket {
    let [submitted, accepted, approved, fulfilled, closed, refused, denied, withdrawn] = counts;
    ThroughputBucket {
        start,
        submitted,
        accepted,
        approved,
        fulfilled,
        closed,
        refused,
        denied,
        withdrawn,
    }
}

fn site(s: SiteId) -> MetricsFilter {
    MetricsFilter {
        sites: Some(vec![s]),
        ..MetricsFilter::default()
    }
}

fn stats(
    count: u64,
    p50_hours: f64,
    p90_hours: f64,
    p50_working_days: u32,
    p90_working_days: u32,
) -> SpanStats {
    SpanStats {
        count,
        p50_hours,
        p90_hours,
        p50_working_days,
        p90_working_days,
    }
}

#[tokio::test]
async fn manager_figures_match_the_hand_computed_ones() {
    let world = World::new().await;
    let projections = Projections::start(world.log.clone(), calendar())
        .await
        .unwrap();
    scenario(&world).await;
    caught_up(&projections, &world.log).await;

    // Throughput by CST day, week and hour.
    assert_eq!(
        projections.throughput(&all(), Bucket::Day).unwrap(),
        vec![
            bucket(day(2), [3, 1, 0, 0, 0, 0, 0, 0]),
            bucket(day(3), [0, 1, 1, 0, 0, 0, 0, 0]),
            bucket(day(4), [1, 0, 0, 1, 1, 0, 0, 1]),
            bucket(day(5), [1, 0, 0, 0, 0, 1, 0, 0]),
            bucket(day(9), [0, 0, 1, 0, 0, 0, 0, 0]),
            bucket(day(10), [0, 1, 0, 1, 0, 0, 0, 0]),
            bucket(day(11), [1, 0, 0, 0, 0, 0, 0, 0]),
        ]
    );
    assert_eq!(
        projections.throughput(&all(), Bucket::Week).unwrap(),
        vec![
            bucket(day(2), [5, 2, 1, 1, 1, 1, 0, 1]),
            bucket(day(9), [1, 1, 1, 1, 0, 0, 0, 0])
        ]
    );
    let monday_morning = MetricsFilter {
        from: Some(day(2)),
        to: Some(march(2, 12)),
        ..MetricsFilter::default()
    };
    assert_eq!(
        projections
            .throughput(&monday_morning, Bucket::Hour)
            .unwrap(),
        vec![
            bucket(march(2, 9), [2, 0, 0, 0, 0, 0, 0, 0]),
            bucket(march(2, 10), [1, 0, 0, 0, 0, 0, 0, 0]),
            bucket(march(2, 11), [0, 1, 0, 0, 0, 0, 0, 0]),
        ]
    );
    let site_b_days = projections
        .throughput(&site(site_b()), Bucket::Day)
        .unwrap();
    assert_eq!(
        site_b_days,
        vec![
            bucket(day(2), [1, 0, 0, 0, 0, 0, 0, 0]),
            bucket(day(10), [0, 1, 0, 0, 0, 0, 0, 0])
        ]
    );
    let civil = MetricsFilter {
        category: Some(Category::CivilAffairs),
        ..MetricsFilter::default()
    };
    assert_eq!(
        projections.throughput(&civil, Bucket::Week).unwrap(),
        vec![
            bucket(day(2), [1, 0, 0, 0, 0, 0, 0, 0]),
            bucket(day(9), [0, 1, 0, 0, 0, 0, 0, 0])
        ]
    );

    // Lead times: submit→accept R1 2 h/0 wd, R2 23 h/1 wd, R3 191.5 h/6 wd;
    // accept→decision R1 23 h/1, R2 145 h/4; decision→fulfilled R1 29 h/1, R2 26 h/1.
    let lead = projections.lead_times(&all()).unwrap();
    assert_eq!(lead.submit_to_accept, stats(3, 23.0, 191.5, 1, 6));
    assert_eq!(lead.accept_to_decision, stats(2, 23.0, 145.0, 1, 4));
    assert_eq!(lead.decision_to_fulfilled, stats(2, 26.0, 29.0, 1, 1));
    let lead_a = projections.lead_times(&site(site_a())).unwrap();
    assert_eq!(lead_a.submit_to_accept, stats(2, 2.0, 23.0, 0, 1));
    assert_eq!(
        projections.lead_times(&civil).unwrap().submit_to_accept,
        stats(1, 191.5, 191.5, 6, 6)
    );
    let later = MetricsFilter {
        from: Some(day(3)),
        to: Some(day(11)),
        ..MetricsFilter::default()
    };
    assert_eq!(
        projections.lead_times(&later).unwrap().submit_to_accept,
        stats(2, 23.0, 191.5, 1, 6)
    );
    let nothing = MetricsFilter {
        sites: Some(vec![SiteId::new("nowhere")]),
        ..MetricsFilter::default()
    };
    assert_eq!(
        projections.lead_times(&nothing).unwrap(),
        LeadTimes::default()
    );

    // SLA: R2 had the warning and the yellow card; R1 on time, R2 late.
    let sla = projections.sla_report(&all()).unwrap();
    assert_eq!(
        sla,
        SlaReport {
            warnings: 1,
            yellow_cards: 1,
            red_cards: 0,
            completed_on_time: 1,
            completed_late: 1,
            on_time_rate: Some(0.5)
        }
    );
    assert_eq!(
        projections.sla_report(&site(site_b())).unwrap(),
        SlaReport::default()
    );

    // Satisfaction: one 非常满意, one 不满意 with an open remediation due end of 31 March.
    let march_20 = MetricsFilter {
        to: Some(day(20)),
        ..MetricsFilter::default()
    };
    let s = projections.satisfaction(&march_20, day(20)).unwrap();
    assert_eq!(
        s.grades,
        vec![
            (Grade::VerySatisfied, 1),
            (Grade::Satisfied, 0),
            (Grade::Neutral, 0),
            (Grade::Dissatisfied, 1),
            (Grade::VeryDissatisfied, 0)
        ]
    );
    assert_eq!(
        (
            s.rated,
            s.bad,
            s.remediations_opened,
            s.remediations_open,
            s.remediations_overdue
        ),
        (2, 1, 1, 1, 0)
    );
    // The same open remediation (due end of 31 March) is overdue once `now` is past it,
    // and not while `now` is before it, whatever the range.
    let everything = MetricsFilter::default();
    assert_eq!(
        projections
            .satisfaction(&everything, Timestamp::cst(2026, 4, 2, 0, 0))
            .unwrap()
            .remediations_overdue,
        1
    );
    assert_eq!(
        projections
            .satisfaction(&everything, day(20))
            .unwrap()
            .remediations_overdue,
        0
    );
    let april = MetricsFilter {
        to: Some(Timestamp::cst(2026, 4, 2, 0, 0)),
        ..MetricsFilter::default()
    };
    assert_eq!(
        projections
            .satisfaction(&april, Timestamp::cst(2026, 4, 2, 0, 0))
            .unwrap()
            .remediations_overdue,
        1
    );

    // The appeal removes the bad rating and cancels its remediation.
    world
        .run(
            rid(2),
            caseworker(),
            march(11, 10),
            Action::AppealRating {
                reason: "误评 mistaken".into(),
            },
        )
        .await;
    world
        .run(
            rid(2),
            manager(),
            march(11, 11),
            Action::DecideAppeal { uphold: false },
        )
        .await;
    caught_up(&projections, &world.log).await;
    let s = projections.satisfaction(&march_20, day(20)).unwrap();
    assert_eq!(s.grades[3], (Grade::Dissatisfied, 0));
    assert_eq!(
        (s.rated, s.bad, s.remediations_opened, s.remediations_open),
        (1, 0, 1, 0)
    );
    assert_eq!(
        (s.appeals, s.appeals_rating_kept, s.appeals_rating_removed),
        (1, 0, 1)
    );

    // Backlog at Wed 11 12:00: R2 fulfilled and R3 accepted, both 7 working days old;
    // R6 submitted this morning.
    let now = march(11, 12);
    let backlog = projections.backlog(&all(), now).unwrap();
    assert_eq!(backlog.total, 3);
    let cells: Vec<(Status, AgeBand, u64)> = backlog
        .cells
        .iter()
        .map(|c| (c.status, c.age, c.count))
        .collect();
    assert_eq!(
        cells,
        vec![
            (Status::Submitted, AgeBand::ZeroToOneDays, 1),
            (Status::Accepted, AgeBand::SixToTenDays, 1),
            (Status::Fulfilled, AgeBand::SixToTenDays, 1),
        ]
    );
    // Each cell names its oldest submission hour: R6 came in this morning.
    let submitted_hour = backlog.cells[0].oldest_submitted_hour;
    assert!(
        submitted_hour <= now && now.0 - submitted_hour.0 < 24 * 3_600_000,
        "{submitted_hour:?}"
    );
    assert!(backlog.cells[1].oldest_submitted_hour < submitted_hour);
    assert_eq!(backlog.by_status.iter().filter(|(_, n)| *n > 0).count(), 3);
    assert_eq!(
        backlog.by_age[AgeBand::SixToTenDays as usize],
        (AgeBand::SixToTenDays, 2)
    );
    assert_eq!(projections.backlog(&site(site_a()), now).unwrap().total, 2);
    let community = MetricsFilter {
        category: Some(Category::Community),
        ..MetricsFilter::default()
    };
    assert_eq!(projections.backlog(&community, now).unwrap().total, 2);
    let recent = MetricsFilter {
        from: Some(day(3)),
        ..MetricsFilter::default()
    };
    assert_eq!(projections.backlog(&recent, now).unwrap().total, 1);
    // A month later the same requests are older.
    // Nothing open is past its deadline on Wed 11: R2 is fulfilled (no deadline), R3 was
    // deemed accepted yesterday, R6 came in this morning.
    assert_eq!(backlog.overdue, 0);
    let backlog = projections
        .backlog(&all(), Timestamp::cst(2026, 4, 13, 9, 0))
        .unwrap();
    assert_eq!(
        backlog.by_age[AgeBand::ElevenDaysOrMore as usize],
        (AgeBand::ElevenDaysOrMore, 3)
    );
    // A month later R3's five promised working days and R6's intake deadline have passed;
    // R2 has no deadline. Site A holds only R6.
    assert_eq!(backlog.overdue, 2);
    assert_eq!(
        projections
            .backlog(&site(site_a()), Timestamp::cst(2026, 4, 13, 9, 0))
            .unwrap()
            .overdue,
        1
    );
    projections.stop().await;
}
