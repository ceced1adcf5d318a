//! Property test: random appends, reads and reopens against an in-memory model.

use crate::helpers::{event, small_options};
use anju_eventlog::{AppendError, Direction, EventLog, ExpectedVersion, Filter, NewEvent};
use proptest::prelude::*;
use std::collections::HashMap;

#[derive(Debug, Clone)]
enum Op {
    Append {
        stream: u8,
        expected: u8,
        count: u8,
    },
    Retry {
        back: u8,
    },
    ReadStream {
        stream: u8,
        from: u8,
        forwards: bool,
        max: u8,
    },
    ReadAll {
        from: u8,
        forwards: bool,
        prefix: bool,
        max: u8,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..4u8, 0..6u8, 1..4u8).prop_map(|(stream, expected, count)| Op::Append { stream, expected, count }),
        1 => (0..10u8).prop_map(|back| Op::Retry { back }),
        2 => (0..4u8, 0..12u8, any::<bool>(), 1..8u8).prop_map(|(stream, from, forwards, max)| Op::ReadStream { stream, from, forwards, max }),
        2 => (0..40u8, any::<bool>(), any::<bool>(), 1..20u8).prop_map(|(from, forwards, prefix, max)| Op::ReadAll { from, forwards, prefix, max }),
        1 => Just(Op::Reopen),
    ]
}

/// An acknowledged append: stream, events, and (first position, last position, version).
type Acknowledged = (String, Vec<NewEvent>, (u64, u64, u64));

/// What the log should hold: every event as (stream, version, id, payload), in position order.
#[derive(Default)]
struct Model {
    events: Vec<(String, u64, NewEvent)>,
    versions: HashMap<String, u64>,
    appends: Vec<Acknowledged>,
}

fn stream_name(n: u8) -> String {
    if n == 3 {
        "timer-3".to_string()
    } else {
        format!("request-{n}")
    }
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = small_options();
    options.segment_size = 8192;
    let mut log = EventLog::open(dir.path(), options.clone()).await.unwrap();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Append {
                stream,
                expected,
                count,
            } => {
                let name = stream_name(stream);
                let current = model.versions.get(&name).copied();
                let expected = match expected {
                    0 => ExpectedVersion::Any,
                    1 => ExpectedVersion::NoStream,
                    2 => ExpectedVersion::StreamExists,
                    3 => ExpectedVersion::Exact(current.unwrap_or(0)),
                    4 => ExpectedVersion::Exact(current.map_or(0, |v| v + 1)),
                    _ => ExpectedVersion::Exact(current.unwrap_or(0).saturating_sub(1)),
                };
                let should_pass = match expected {
                    ExpectedVersion::Any => true,
                    ExpectedVersion::NoStream => current.is_none(),
                    ExpectedVersion::StreamExists => current.is_some(),
                    ExpectedVersion::Exact(n) => current == Some(n),
                };
                let batch: Vec<NewEvent> = (0..count)
                    .map(|i| event("Modelled", &format!("{name}-{i}")))
                    .collect();
                match log.append(&name, expected, batch.clone()).await {
                    Ok(result) => {
                        assert!(
                            should_pass,
                            "append with {expected:?} at {current:?} should fail"
                        );
                        let first_version = current.map_or(0, |v| v + 1);
                        assert_eq!(result.first_position, model.events.len() as u64);
                        assert_eq!(result.stream_version, first_version + count as u64 - 1);
                        for (i, e) in batch.iter().enumerate() {
                            model
                                .events
                                .push((name.clone(), first_version + i as u64, e.clone()));
                        }
                        model.versions.insert(name.clone(), result.stream_version);
                        model.appends.push((
                            name,
                            batch,
                            (
                                result.first_position,
                                result.last_position,
                                result.stream_version,
                            ),
                        ));
                    }
                    Err(AppendError::WrongExpectedVersion { actual, .. }) => {
                        assert!(
                            !should_pass,
                            "append with {expected:?} at {current:?} should pass"
                        );
                        assert_eq!(actual, current);
                    }
                    Err(e) => panic!("unexpected append error {e}"),
                }
            }
            Op::Retry { back } => {
                if model.appends.is_empty() {
                    continue;
                }
                let index = model.appends.len() - 1 - (back as usize % model.appends.len());
                let (name, batch, original) = model.appends[index].clone();
                let result = log
                    .append(&name, ExpectedVersion::NoStream, batch)
                    .await
                    .unwrap();
                assert_eq!(
                    (
                        result.first_position,
                        result.last_position,
                        result.stream_version
                    ),
                    original
                );
            }
            Op::ReadStream {
                stream,
                from,
                forwards,
                max,
            } => {
                let name = stream_name(stream);
                let direction = if forwards {
                    Direction::Forwards
                } else {
                    Direction::Backwards
                };
                let got = log
                    .read_stream(&name, from as u64, direction, max as usize)
                    .await
                    .unwrap();
                let mut want: Vec<_> = model.events.iter().filter(|(s, _, _)| *s == name).collect();
                if forwards {
                    want.retain(|(_, v, _)| *v >= from as u64);
                } else {
                    want.retain(|(_, v, _)| *v <= from as u64);
                    want.reverse();
                }
                want.truncate(max as usize);
                let got: Vec<_> = got.iter().map(|e| (e.stream_version, e.event_id)).collect();
                let want: Vec<_> = want.iter().map(|(_, v, e)| (*v, e.event_id)).collect();
                assert_eq!(got, want);
            }
            Op::ReadAll {
                from,
                forwards,
                prefix,
                max,
            } => {
                let filter = if prefix {
                    Filter::stream_prefix("request-")
                } else {
                    Filter::all()
                };
                let direction = if forwards {
                    Direction::Forwards
                } else {
                    Direction::Backwards
                };
                let got = log
                    .read_all(from as u64, direction, &filter, max as usize)
                    .await
                    .unwrap();
                let mut want: Vec<(u64, &NewEvent)> = model
                    .events
                    .iter()
                    .enumerate()
                    .filter(|(_, (s, _, _))| !prefix || s.starts_with("request-"))
                    .map(|(p, (_, _, e))| (p as u64, e))
                    .collect();
                if forwards {
                    want.retain(|(p, _)| *p >= from as u64);
                } else {
                    want.retain(|(p, _)| *p <= from as u64);
                    want.reverse();
                }
                want.truncate(max as usize);
                let got: Vec<_> = got
                    .iter()
                    .map(|e| (e.position, e.event_id, e.payload.clone()))
                    .collect();
                let want: Vec<_> = want
                    .iter()
                    .map(|(p, e)| (*p, e.event_id, e.payload.clone()))
                    .collect();
                assert_eq!(got, want);
            }
            Op::Reopen => {
                log.close().await.unwrap();
                log = EventLog::open(dir.path(), options.clone()).await.unwrap();
                assert_eq!(log.head_position(), model.events.len() as u64);
            }
        }
        for (name, version) in &model.versions {
            assert_eq!(log.stream_version(name), Some(*version));
        }
    }
    let report = log.verify().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.events, model.events.len() as u64);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]
    #[test]
    fn the_log_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(ops));
    }
}
