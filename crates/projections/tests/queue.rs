//! Caseworker queues: ordering by (deadline, request id) across sites with stopped clocks
//! last, the site, category, status, assignee and overdue filters, and pagination.

mod support;

use anju_domain::*;
use anju_projections::*;
use std::collections::BTreeSet;
use std::sync::Arc;
use support::*;

fn site_c() -> SiteId {
    SiteId::new("site-c")
}

async fn scenario(world: &World) {
    let cw_b = caseworker_b();
    world
        .run(
            rid(1),
            resident(),
            march(2, 9),
            submission("SQ-WEIXIU", site_a(), 1),
        )
        .await;
    world
        .run(
            rid(2),
            resident(),
            march(3, 9),
            submission("MZ-LINSHI", site_b(), 2),
        )
        .await;
    world
        .run(
            rid(3),
            resident(),
            march(4, 9),
            submission("SQ-SHESHI", site_a(), 3),
        )
        .await;
    world
        .run(
            rid(4),
            resident(),
            march(2, 10),
            submission("SQ-WEIXIU", site_b(), 4),
        )
        .await;
    world
        .run(
            rid(5),
            resident(),
            march(2, 11),
            submission("SQ-WEIXIU", site_a(), 5),
        )
        .await;
    world
        .run(rid(5), caseworker(), march(2, 12), Action::Claim)
        .await;
    world
        .run(
            rid(5),
            caseworker(),
            march(2, 12),
            Action::Accept { comment: None },
        )
        .await;
    world
        .run(
            rid(6),
            resident(),
            march(2, 11),
            submission("SQ-WEIXIU", site_a(), 6),
        )
        .await;
    world
        .run(rid(6), caseworker(), march(2, 12), Action::Claim)
        .await;
    world
        .run(
            rid(6),
            caseworker(),
            march(2, 12),
            Action::Accept { comment: None },
        )
        .await;
    world
        .run(
            rid(6),
            caseworker(),
            march(2, 13),
            Action::RequestInfo {
                missing: vec!["照片 photo".into()],
                message: None,
            },
        )
        .await;
    world
        .run(
            rid(7),
            resident(),
            march(5, 9),
            submission("SQ-WEIXIU", site_c(), 7),
        )
        .await;
    world
        .run(
            rid(8),
            resident(),
            march(5, 9),
            submission("SQ-WEIXIU", site_a(), 8),
        )
        .await;
    world
        .run(
            rid(8),
            resident(),
            march(5, 10),
            Action::Withdraw { reason: None },
        )
        .await;
    world.run(rid(4), cw_b, march(3, 8), Action::Claim).await;
}

fn ids(page: &QueuePage) -> Vec<u128> {
    page.items
        .iter()
        .map(|i| i.request_id.0.as_u128() & 0xff)
        .collect()
}

fn query(sites: Scope<SiteId>) -> QueueQuery {
    QueueQuery::new(sites, march(10, 12))
}

#[tokio::test]
async fn queues_are_ordered_filtered_and_paginated() {
    let world = World::new().await;
    let projections = Projections::start(world.log.clone(), calendar())
        .await
        .unwrap();
    scenario(&world).await;
    caught_up(&projections, &world.log).await;

    // R5's promised deadline (Thu 5) comes first; R1 and R4 share Mon 9 (id order);
    // R6 waits for materials (no deadline) and comes last; R8 was withdrawn.
    let everything = projections.queue(&query(Scope::All)).unwrap();
    assert_eq!(ids(&everything), [5, 1, 4, 2, 3, 7, 6]);
    assert_eq!(everything.next_page_token, None);
    let first = &everything.items[0];
    assert_eq!(
        (first.status, first.site.clone(), first.category),
        (Status::Accepted, site_a(), Category::Community)
    );
    assert_eq!(
        first.deadline,
        Some(Calendar::china_2026().add_working_days(march(2, 12), 3))
    );
    assert_eq!(first.assignee, Some(ActorId::new("cw-a")));
    assert_eq!(first.tracking_code, tracking(5));
    assert_eq!(everything.items[6].deadline, None);

    let only_a = projections.queue(&query(Scope::only([site_a()]))).unwrap();
    assert_eq!(ids(&only_a), [5, 1, 3, 6]);
    assert_eq!(
        ids(&projections
            .queue(&query(Scope::only([site_a(), site_b()])))
            .unwrap()),
        [5, 1, 4, 2, 3, 6]
    );
    assert!(projections
        .queue(&query(Scope::none()))
        .unwrap()
        .items
        .is_empty());
    assert!(projections
        .queue(&query(Scope::only([SiteId::new("nowhere")])))
        .unwrap()
        .items
        .is_empty());

    let mut q = query(Scope::All);
    q.category = Some(Category::Community);
    assert_eq!(ids(&projections.queue(&q).unwrap()), [5, 1, 4, 3, 7, 6]);
    let mut q = query(Scope::All);
    q.statuses = vec![Status::Submitted];
    assert_eq!(ids(&projections.queue(&q).unwrap()), [1, 4, 2, 3, 7]);
    q.statuses = vec![Status::Accepted, Status::AwaitingInfo];
    assert_eq!(ids(&projections.queue(&q).unwrap()), [5, 6]);
    q.statuses = vec![Status::Withdrawn];
    assert!(
        projections.queue(&q).unwrap().items.is_empty(),
        "closed requests are not in queues"
    );
    let mut q = query(Scope::All);
    q.assignee = Some(ActorId::new("cw-a"));
    assert_eq!(ids(&projections.queue(&q).unwrap()), [5, 6]);

    // Overdue at Tue 10 12:00: R5 (Thu 5) and the two intake deadlines of Mon 9;
    // R2's intake deadline is the end of Tue 10.
    let mut q = query(Scope::All);
    q.overdue_only = true;
    let overdue = projections.queue(&q).unwrap();
    assert_eq!(ids(&overdue), [5, 1, 4]);
    assert!(overdue.items.iter().all(|i| i.overdue));
    q.now = march(2, 10);
    assert!(
        projections.queue(&q).unwrap().items.is_empty(),
        "overdue is computed against the query's now"
    );
    let all_now = projections.queue(&query(Scope::All)).unwrap();
    assert_eq!(
        all_now.items.iter().map(|i| i.overdue).collect::<Vec<_>>(),
        [true, true, true, false, false, false, false]
    );

    // Pages of two, following the tokens.
    let mut q = query(Scope::All);
    q.page_size = 2;
    let mut pages = Vec::new();
    loop {
        let page = projections.queue(&q).unwrap();
        pages.push(ids(&page));
        match page.next_page_token {
            Some(token) => q.page_token = Some(token),
            None => break,
        }
    }
    assert_eq!(pages, vec![vec![5, 1], vec![4, 2], vec![3, 7], vec![6]]);
    let mut q = query(Scope::All);
    q.page_size = 7;
    assert_eq!(
        projections.queue(&q).unwrap().next_page_token,
        None,
        "an exactly full last page has no token"
    );
    q.page_token = Some("not-a-token".into());
    assert!(matches!(
        projections.queue(&q),
        Err(ProjectionError::BadPageToken)
    ));
    assert_eq!(
        ProjectionError::BadPageToken.to_string(),
        "page token is not valid"
    );

    // A token stays valid while the queue changes: R3 moving ahead does not repeat R5/R1.
    let mut q = query(Scope::All);
    q.page_size = 2;
    let page = projections.queue(&q).unwrap();
    world
        .run(rid(3), caseworker(), march(4, 10), Action::Claim)
        .await;
    let p = world
        .run(
            rid(3),
            caseworker(),
            march(4, 10),
            Action::Accept { comment: None },
        )
        .await;
    projections
        .wait_for(p, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    q.page_token = page.next_page_token;
    let next = projections.queue(&q).unwrap();
    assert!(
        ids(&next).iter().all(|id| ![5, 1].contains(id)),
        "{:?}",
        ids(&next)
    );
    projections.stop().await;
}

#[test]
fn page_size_is_capped_at_500() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let models = ReadModels::open(&db, Arc::new(Calendar::china_2026())).unwrap();
    models.ensure_version().unwrap();
    let ctx = Context {
        catalogue: &CATALOGUE,
        calendar: &Calendar::china_2026(),
    };
    for n in 0..520u128 {
        let id = rid(1000 + n);
        let command = Command::new(
            resident(),
            march(2, 9),
            id,
            submission("SQ-WEIXIU", site_a(), (n % 250) as u8),
        );
        let events = decide(&RequestState::default(), &command, &ctx).unwrap();
        assert_eq!(
            models
                .apply(&id.stream_name(), 0, n as u64, &events[0])
                .unwrap(),
            Applied::Applied
        );
    }
    let mut q = QueueQuery::new(Scope::All, march(2, 10));
    q.page_size = 10_000;
    let page = models.queue(&q).unwrap();
    assert_eq!(page.items.len(), MAX_PAGE_SIZE);
    assert!(page.next_page_token.is_some());
    q.page_token = page.next_page_token.clone();
    let rest = models.queue(&q).unwrap();
    assert_eq!(rest.items.len(), 20);
    let seen: BTreeSet<RequestId> = page
        .items
        .iter()
        .chain(&rest.items)
        .map(|i| i.request_id)
        .collect();
    assert_eq!(seen.len(), 520);
    q.page_size = 0;
    q.page_token = None;
    assert_eq!(models.queue(&q).unwrap().items.len(), DEFAULT_PAGE_SIZE);
}
