//! Rebuilds: a projection rebuilt from position 0 equals the one kept incrementally;
//! a restart resumes from the checkpoint without double counting (also when the
//! checkpoint lags the data, as after a crash); a version change rebuilds on start.

mod support;

use anju_projections::*;
use std::time::Duration;
use support::*;

use anju_projections::Dump;

fn submitted(projections: &Projections) -> u64 {
    projections
        .throughput(&all(), Bucket::Week)
        .unwrap()
        .iter()
        .map(|b| b.submitted)
        .sum()
}

async fn dump(projections: &Projections) -> Dump {
    projections.models().dump().unwrap()
}

#[tokio::test]
async fn a_rebuilt_projection_equals_the_incremental_one() {
    let world = World::new().await;
    let projections = Projections::start(world.log.clone(), calendar())
        .await
        .unwrap();
    mixed_workload(&world, 0, 60).await;
    caught_up(&projections, &world.log).await;
    let incremental = dump(&projections).await;
    assert_eq!(submitted(&projections), 60);
    assert_eq!(incremental["proj_requests"].len(), 60);
    assert!(
        world.log.head_position() > 300,
        "the workload is not trivial"
    );
    assert!(!incremental["proj_timers"].is_empty() && !incremental["proj_spans"].is_empty());
    assert!(!incremental["proj_remediations"].is_empty() || incremental["proj_counts"].len() > 50);

    projections.rebuild().await.expect("rebuild");
    assert_eq!(projections.position(), world.log.head_position());
    let rebuilt = dump(&projections).await;
    assert_eq!(
        rebuilt.keys().collect::<Vec<_>>(),
        incremental.keys().collect::<Vec<_>>()
    );
    for (tree, entries) in &incremental {
        assert_eq!(
            &rebuilt[tree], entries,
            "tree {tree} differs after the rebuild"
        );
    }

    // The same events fed to a separate store in one go give the same trees too.
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let other = ReadModels::open(&db, calendar()).unwrap();
    other.ensure_version().unwrap();
    let events = world
        .log
        .read_all(
            0,
            anju_eventlog::Direction::Forwards,
            &anju_eventlog::Filter::all(),
            usize::MAX,
        )
        .await
        .unwrap();
    let mut position = 0;
    let mut offset = 0;
    while offset < world.log.head_position() {
        let batch = world
            .log
            .read_all(
                offset,
                anju_eventlog::Direction::Forwards,
                &anju_eventlog::Filter::all(),
                4096,
            )
            .await
            .unwrap();
        let decoded: Vec<_> = batch
            .iter()
            .map(|e| {
                anju_domain::Event::from_json(&e.event_type, e.schema_version, &e.payload).ok()
            })
            .collect();
        let inputs: Vec<Input<'_>> = batch
            .iter()
            .zip(&decoded)
            .map(|(e, d)| Input {
                stream_id: &e.stream_id,
                stream_version: e.stream_version,
                position: e.position,
                event_type: &e.event_type,
                event: d.as_ref(),
            })
            .collect();
        position = batch.last().map_or(position, |e| e.position + 1);
        other.apply_all(&inputs, Some(position)).unwrap();
        offset = position;
    }
    assert!(!events.is_empty());
    assert_eq!(other.dump().unwrap(), incremental);
    projections.stop().await;
}

#[tokio::test]
async fn queries_keep_working_while_a_rebuild_runs() {
    let world = World::new().await;
    let projections = Projections::start(world.log.clone(), calendar())
        .await
        .unwrap();
    mixed_workload(&world, 0, 30).await;
    caught_up(&projections, &world.log).await;
    let before = dump(&projections).await;
    let rebuild = {
        let projections = projections.clone();
        tokio::spawn(async move { projections.rebuild().await })
    };
    for _ in 0..20 {
        projections
            .queue(&QueueQuery::new(anju_domain::Scope::All, march(20, 9)))
            .expect("queue during rebuild");
        projections
            .backlog(&all(), march(20, 9))
            .expect("backlog during rebuild");
        tokio::task::yield_now().await;
    }
    rebuild.await.unwrap().expect("rebuild");
    assert_eq!(dump(&projections).await, before);
    projections.stop().await;
}

#[tokio::test]
async fn a_restart_resumes_from_the_checkpoint_without_double_counting() {
    let world = World::new().await;
    let projections = Projections::start(world.log.clone(), calendar())
        .await
        .unwrap();
    mixed_workload(&world, 0, 25).await;
    caught_up(&projections, &world.log).await;
    let checkpoint = projections.models().checkpoint().unwrap();
    assert_eq!(checkpoint, world.log.head_position());
    projections.stop().await;

    // Events appended while the projections are down.
    mixed_workload(&world, 25, 40).await;
    let world = world.reopen().await;
    let projections = Projections::start(world.log.clone(), calendar())
        .await
        .unwrap();
    assert!(
        projections.position() >= checkpoint,
        "starts from the stored checkpoint"
    );
    mixed_workload(&world, 40, 50).await;
    caught_up(&projections, &world.log).await;
    assert_eq!(submitted(&projections), 50);
    let resumed = dump(&projections).await;

    // As after a crash: the data is ahead of the checkpoint. Replaying skips what the
    // request views already hold.
    projections.models().set_checkpoint(3).unwrap();
    projections.stop().await;
    let world = world.reopen().await;
    let projections = Projections::start(world.log.clone(), calendar())
        .await
        .unwrap();
    assert_eq!(projections.position(), 3);
    caught_up(&projections, &world.log).await;
    assert_eq!(
        dump(&projections).await,
        resumed,
        "replaying from an old checkpoint changed nothing"
    );
    assert_eq!(submitted(&projections), 50);

    projections.rebuild().await.unwrap();
    assert_eq!(
        dump(&projections).await,
        resumed,
        "the resumed projection equals a rebuilt one"
    );
    projections.stop().await;
}

#[tokio::test]
async fn a_version_change_rebuilds_on_start() {
    let world = World::new().await;
    let projections = Projections::start(world.log.clone(), calendar())
        .await
        .unwrap();
    mixed_workload(&world, 0, 20).await;
    caught_up(&projections, &world.log).await;
    let good = dump(&projections).await;
    projections.stop().await;

    // An older layout: another version number and stale data the new code would misread.
    let db = world.log.index_db().clone();
    db.open_tree("proj_meta")
        .unwrap()
        .insert("version", &0u64.to_be_bytes())
        .unwrap();
    db.open_tree("proj_counts")
        .unwrap()
        .insert(b"stale", &7i64.to_be_bytes())
        .unwrap();
    db.open_tree("proj_requests")
        .unwrap()
        .remove(good["proj_requests"].keys().next().unwrap())
        .unwrap();
    drop(db);

    let projections = Projections::start(world.log.clone(), calendar())
        .await
        .unwrap();
    assert_eq!(
        projections.models().stored_version().unwrap(),
        Some(PROJECTION_VERSION)
    );
    caught_up(&projections, &world.log).await;
    assert_eq!(dump(&projections).await, good);
    projections
        .wait_for(world.log.head_position() - 1, Duration::from_secs(1))
        .await
        .unwrap();
    projections.stop().await;
}
