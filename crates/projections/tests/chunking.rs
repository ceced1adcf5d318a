//! The fold does not depend on how events are grouped: applying a mixed workload in
//! randomly sized chunks gives exactly the trees of applying it one event at a time.

mod support;

use anju_eventlog::{Direction, Filter, RecordedEvent};
use anju_projections::*;
use proptest::prelude::*;
use std::sync::LazyLock;
use support::*;

/// The recorded events of a mixed workload, made once.
static EVENTS: LazyLock<Vec<RecordedEvent>> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let world = World::new().await;
        mixed_workload(&world, 0, 30).await;
        world
            .log
            .read_all(0, Direction::Forwards, &Filter::all(), 4096)
            .await
            .unwrap()
    })
});

fn fold_in_chunks(sizes: &[usize]) -> Dump {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let models = ReadModels::open(&db, calendar()).unwrap();
    models.ensure_version().unwrap();
    let events = &*EVENTS;
    let decoded: Vec<_> = events
        .iter()
        .map(|e| anju_domain::Event::from_json(&e.event_type, e.schema_version, &e.payload).ok())
        .collect();
    let mut start = 0;
    let mut sizes = sizes.iter().cycle();
    while start < events.len() {
        let end = (start + sizes.next().copied().unwrap_or(1)).min(events.len());
        let inputs: Vec<Input<'_>> = events[start..end]
            .iter()
            .zip(&decoded[start..end])
            .map(|(e, d)| Input {
                stream_id: &e.stream_id,
                stream_version: e.stream_version,
                position: e.position,
                event_type: &e.event_type,
                event: d.as_ref(),
            })
            .collect();
        models
            .apply_all(&inputs, Some(events[end - 1].position + 1))
            .unwrap();
        start = end;
    }
    models.dump().unwrap()
}

static ONE_BY_ONE: LazyLock<Dump> = LazyLock::new(|| fold_in_chunks(&[1]));

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn chunk_boundaries_do_not_matter(sizes in proptest::collection::vec(1usize..80, 1..6)) {
        prop_assert!(EVENTS.len() > 150);
        prop_assert_eq!(&fold_in_chunks(&sizes), &*ONE_BY_ONE);
    }
}
