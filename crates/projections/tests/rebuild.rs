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
    let snapshot = world.log.directory().join(anju_projections::SNAPSHOT_FILE);
    let first_snapshot = std::fs::read(&snapshot).expect("stop writes a snapshot");

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

    // As after a crash that came before any later snapshot: the next start finds the
    // first snapshot and replays everything after its checkpoint, counting it once.
    projections.stop().await;
    std::fs::write(&snapshot, &first_snapshot).unwrap();
    let world = world.reopen().await;
    let projections = Projections::start(world.log.clone(), calendar())
        .await
        .unwrap();
    assert_eq!(projections.position(), checkpoint);
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

    // A snapshot of an older layout (another version number) is not used, and neither
    // is the sled tree of the layout before the memory backend.
    let snapshot = world.log.directory().join(anju_projections::SNAPSHOT_FILE);
    let mut bytes = std::fs::read(&snapshot).expect("stop writes a snapshot");
    bytes[8..16].copy_from_slice(&(PROJECTION_VERSION - 1).to_le_bytes());
    std::fs::write(&snapshot, &bytes).unwrap();
    let db = world.log.index_db().clone();
    db.open_tree("proj_models")
        .unwrap()
        .insert(b"\x07stale", &7i64.to_be_bytes())
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
    assert!(!world
        .log
        .index_db()
        .tree_names()
        .iter()
        .any(|name| name.as_ref() == b"proj_models"));

    // A damaged snapshot (one byte flipped in the middle) is not used either.
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&snapshot, &bytes).unwrap();
    let projections = Projections::start(world.log.clone(), calendar())
        .await
        .unwrap();
    assert_eq!(projections.position(), 0, "replays from 0");
    caught_up(&projections, &world.log).await;
    assert_eq!(dump(&projections).await, good);
    projections.stop().await;
}
