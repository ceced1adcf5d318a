//! Queries and their access rules: the resident lookup, staff detail, queues, metrics.

use crate::helpers::*;
use anju_app::{AppError, MetricsQuery, QueueFilter};
use anju_domain::{Action, Actor, Category, Scope, SiteId, Status};
use anju_projections::Bucket;

#[tokio::test]
async fn the_resident_lookup_needs_the_code_and_the_phone() {
    let t = TestApp::start().await;
    let submitted = t
        .submit(submission(&t.app, "JY-QIANYUE", "lookup-key-0001"))
        .await;
    let code = submitted.tracking_code.as_str().to_string();
    let status = t
        .app
        .resident_status(&code.to_lowercase(), &PHONE[7..], Some(submitted.position))
        .await
        .unwrap();
    assert_eq!(status.request_id, submitted.request_id);
    assert_eq!(status.status, Status::Submitted);
    assert!(status.can_withdraw && !status.can_rate);
    assert!(status.deadline.is_some());
    assert_eq!(
        t.app
            .resident_status(&code, "0000", None)
            .await
            .unwrap_err(),
        AppError::NotFound
    );
    assert_eq!(
        t.app
            .resident_status("AJ-0000-0000-0000", &PHONE[7..], None)
            .await
            .unwrap_err(),
        AppError::NotFound
    );
    assert!(matches!(
        t.app.resident_status("nonsense", "1234", None).await,
        Err(AppError::Invalid(_))
    ));
    assert!(matches!(
        t.app.resident_status(&code, "12a4", None).await,
        Err(AppError::Invalid(_))
    ));
    t.app.close().await.unwrap();
}

#[tokio::test]
async fn staff_see_only_their_sites_and_categories() {
    let t = TestApp::start().await;
    let submitted = t
        .submit(submission(&t.app, "JY-QIANYUE", "scope-key-0001"))
        .await;
    let id = submitted.request_id;
    let claimed = t.run(id, &caseworker("cw-1"), Action::Claim).await;
    let at = Some(claimed.position);

    let medical = Actor::caseworker("cw-med", [SiteId::new(SITE)], [Category::Medical]);
    let schooling = Actor::caseworker("cw-school", [SiteId::new(SITE)], [Category::Schooling]);
    let elsewhere = Actor::caseworker("cw-b", [SiteId::new(OTHER_SITE)], Category::ALL);
    assert_eq!(
        t.app
            .request_detail(&medical, id, at)
            .await
            .unwrap()
            .request
            .assignee
            .unwrap()
            .0,
        "cw-1"
    );
    assert_eq!(
        t.app.request_detail(&schooling, id, at).await.unwrap_err(),
        AppError::NotFound
    );
    assert_eq!(
        t.app.request_detail(&elsewhere, id, at).await.unwrap_err(),
        AppError::NotFound
    );
    assert_eq!(
        t.app
            .request_detail(&Actor::resident("someone-else"), id, at)
            .await
            .unwrap_err(),
        AppError::NotFound
    );
    assert!(t.app.request_detail(&resident(), id, at).await.is_ok());
    assert!(t.app.request_detail(&manager(), id, at).await.is_ok());

    let page = t
        .app
        .queue(&medical, QueueFilter::default(), at)
        .await
        .unwrap();
    assert!(page.items.iter().any(|item| item.request_id == id));
    let page = t
        .app
        .queue(&schooling, QueueFilter::default(), at)
        .await
        .unwrap();
    assert!(
        page.items.is_empty(),
        "another category's request is not in the queue"
    );
    let mine = QueueFilter {
        mine_only: true,
        ..QueueFilter::default()
    };
    assert_eq!(
        t.app
            .queue(&caseworker("cw-1"), mine.clone(), at)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(t
        .app
        .queue(&caseworker("cw-2"), mine, at)
        .await
        .unwrap()
        .items
        .is_empty());
    let outside = QueueFilter {
        site: Some(SiteId::new(OTHER_SITE)),
        ..QueueFilter::default()
    };
    assert!(matches!(
        t.app.queue(&medical, outside, at).await,
        Err(AppError::Forbidden(_))
    ));
    let other_category = QueueFilter {
        category: Some(Category::Schooling),
        ..QueueFilter::default()
    };
    assert!(matches!(
        t.app.queue(&medical, other_category, at).await,
        Err(AppError::Forbidden(_))
    ));
    assert!(matches!(
        t.app.queue(&resident(), QueueFilter::default(), at).await,
        Err(AppError::Forbidden(_))
    ));

    let query = |sites: Option<Vec<SiteId>>| MetricsQuery {
        sites,
        category: None,
        from: None,
        to: None,
        bucket: Bucket::Day,
    };
    let metrics = t.app.metrics(&manager(), query(None), at).await.unwrap();
    assert_eq!(metrics.backlog.total, 1);
    assert!(matches!(
        t.app
            .metrics(&manager(), query(Some(vec![SiteId::new(OTHER_SITE)])), at)
            .await,
        Err(AppError::Forbidden(_))
    ));
    let province = Actor::manager("province", Scope::All);
    assert_eq!(
        t.app
            .metrics(&province, query(None), at)
            .await
            .unwrap()
            .backlog
            .total,
        1
    );
    assert!(matches!(
        t.app.metrics(&caseworker("cw-1"), query(None), at).await,
        Err(AppError::Forbidden(_))
    ));

    // A position the log never reaches is reported, not waited on forever.
    let far = t.app.log().head_position() + 1000;
    let started = std::time::Instant::now();
    let missed = t
        .app
        .wait_for(Some(far), Some(std::time::Duration::from_millis(200)))
        .await;
    assert!(matches!(missed, Err(AppError::NotReached { wanted, .. }) if wanted == far));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    t.app.close().await.unwrap();
}
