//! Two anju nodes (each its own log, its own sites) publish through their relays into one
//! nats-server; insight's figures per site equal each node's own, also after insight is
//! stopped mid-stream and started again, and a malformed message is set aside.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anju_app::{AppConfig, Application, ManualClock, SubmitInput};
use anju_domain::{Action, Actor, Calendar, Category, SiteId, Timestamp};
use anju_insight::{ConsumerConfig, Insight};
use anju_projections::{Bucket, MetricsFilter, ReadModels};
use anju_relay::RelayConfig;
use anju_testkit::NatsServer;

async fn node(dir: &std::path::Path, clock: Arc<ManualClock>) -> Application {
    Application::open(AppConfig::new(dir), clock)
        .await
        .expect("open a node")
}

/// Submits `count` repair requests at `site`, accepting every other one.
async fn drive(app: &Application, site: &str, from: usize, count: usize) {
    let caseworker = Actor::caseworker(format!("cw-{site}"), [SiteId::new(site)], Category::ALL);
    for n in from..from + count {
        let mut answers = BTreeMap::new();
        answers.insert("problem".to_string(), vec!["漏水 leak".to_string()]);
        answers.insert("location".to_string(), vec![format!("{n}栋1单元")]);
        let submitted = app
            .submit(SubmitInput {
                actor: Actor::resident(format!("res-{site}-{n}")),
                idempotency_key: format!("key-{site}-{n:06}"),
                site: site.to_string(),
                service_code: "SQ-WEIXIU".to_string(),
                definition_version: None,
                answers,
                applicant_name: "王秀英".to_string(),
                phone: format!("1380000{n:04}"),
                id_number: None,
                on_behalf_of: None,
                materials: Default::default(),
            })
            .await
            .expect("submit");
        if n % 2 == 0 {
            app.execute(submitted.request_id, caseworker.clone(), Action::Claim)
                .await
                .expect("claim");
            app.execute(
                submitted.request_id,
                caseworker.clone(),
                Action::Accept { comment: None },
            )
            .await
            .expect("accept");
        }
    }
}

fn figures(models: &ReadModels, site: &str, now: Timestamp) -> String {
    let filter = MetricsFilter {
        sites: Some(vec![SiteId::new(site)]),
        ..MetricsFilter::default()
    };
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        models.throughput(&filter, Bucket::Day).unwrap(),
        models.lead_times(&filter).unwrap(),
        models.sla_report(&filter).unwrap(),
        models.satisfaction(&filter, now).unwrap(),
        models.backlog(&filter, now).unwrap(),
    )
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insight_figures_equal_the_nodes_figures_across_a_restart() {
    let nats = NatsServer::start();
    let clock = Arc::new(ManualClock::new(Timestamp::cst(2026, 3, 2, 9, 0)));
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let dir_insight = tempfile::tempdir().unwrap();
    let node_a = node(dir_a.path(), clock.clone()).await;
    let node_b = node(dir_b.path(), clock.clone()).await;
    let relay_a = anju_relay::start(
        node_a.log().clone(),
        RelayConfig::new(nats.url(), "node-a"),
        Arc::new(anju_relay::route_from_json),
    );
    let relay_b = anju_relay::start(
        node_b.log().clone(),
        RelayConfig::new(nats.url(), "node-b"),
        Arc::new(anju_relay::route_from_json),
    );

    drive(&node_a, "site-a", 0, 40).await;
    drive(&node_b, "site-b", 0, 30).await;

    let calendar = Arc::new(Calendar::china_2026());
    let insight = Insight::open(dir_insight.path(), calendar.clone()).unwrap();
    let consumer = insight.start(ConsumerConfig::new(nats.url()));
    // Stop insight part-way, while the nodes keep producing.
    wait_until("insight to apply some events", || {
        insight.status().applied() > 20
    })
    .await;
    consumer.stop().await;
    drive(&node_a, "site-a", 40, 20).await;
    drop(insight);

    let insight = Insight::open(dir_insight.path(), calendar.clone()).unwrap();
    let consumer = insight.start(ConsumerConfig::new(nats.url()));
    drive(&node_b, "site-b", 30, 10).await;

    let head_a = node_a.log().head_position();
    let head_b = node_b.log().head_position();
    wait_until("insight to reach both nodes' heads", || {
        let positions = insight.node_positions().unwrap();
        positions.get("node-a") == Some(&head_a) && positions.get("node-b") == Some(&head_b)
    })
    .await;
    node_a
        .projections()
        .wait_for(head_a - 1, Duration::from_secs(10))
        .await
        .unwrap();
    node_b
        .projections()
        .wait_for(head_b - 1, Duration::from_secs(10))
        .await
        .unwrap();

    let now = clock_now(&node_a);
    assert_eq!(
        figures(insight.models(), "site-a", now),
        figures(node_a.projections().models(), "site-a", now)
    );
    assert_eq!(
        figures(insight.models(), "site-b", now),
        figures(node_b.projections().models(), "site-b", now)
    );
    let all = MetricsFilter::default();
    let submitted: u64 = insight
        .models()
        .throughput(&all, Bucket::Week)
        .unwrap()
        .iter()
        .map(|b| b.submitted)
        .sum();
    assert_eq!(submitted, 100, "60 requests at site-a and 40 at site-b");
    assert_eq!(insight.status().set_aside(), 0);

    // A malformed message on the stream is set aside, and later events still arrive.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let context = async_nats::jetstream::new(client);
    context
        .publish(
            "anju.events.node-x.site-x.community.Garbage",
            "not json".into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    drive(&node_a, "site-a", 60, 2).await;
    let head_a = node_a.log().head_position();
    wait_until("insight to pass the malformed message", || {
        insight.node_positions().unwrap().get("node-a") == Some(&head_a)
    })
    .await;
    assert_eq!(insight.status().set_aside(), 1);

    consumer.stop().await;
    relay_a.stop().await;
    relay_b.stop().await;
    node_a.close().await.unwrap();
    node_b.close().await.unwrap();
}

fn clock_now(app: &Application) -> Timestamp {
    app.now()
}
