//! The properties anju's fuzz targets check, one function per target, each panicking on
//! a violation. `fuzz/fuzz_targets/*.rs` feed them libFuzzer's inputs (`scripts/fuzz`);
//! `tests/corpus.rs` replays the committed corpus (`fuzz/corpus/<target>/`) through them
//! in the ordinary test suite, so that every input a fuzzer once found interesting stays
//! a regression test. docs/faults.md, "Fuzzing", has the run times.

use std::sync::OnceLock;

use anju_domain::catalogue::{validate_form, Catalogue, FormAnswers, ServiceDefinition};
use anju_domain::{Event, EVENT_TYPES};
use anju_eventlog::{verify_directory, EventLog, LogOptions};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// The frame decoder and recovery over arbitrary bytes of the last segment
/// (`segments/00000000.seg`, its header included): `verify_directory` never writes and
/// never panics; where it finds problems (or cannot read the log), opening the log
/// refuses and leaves the file as it was; where it finds none, opening succeeds with
/// exactly the events it counted, and after that open (which may cut a torn tail) the log
/// verifies clean with the same count.
pub fn segment(data: &[u8]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let segments = dir.path().join("segments");
    std::fs::create_dir(&segments).expect("create segments/");
    let segment = segments.join("00000000.seg");
    std::fs::write(&segment, data).expect("write the segment");
    let unchanged = |what: &str| {
        assert!(
            std::fs::read(&segment).expect("read the segment") == data,
            "{what} changed the segment"
        );
    };

    let report = verify_directory(dir.path());
    unchanged("verify");
    let options = LogOptions {
        segment_size: 64 << 10,
        preallocate: false,
        ..LogOptions::default()
    };
    let opened = runtime().block_on(EventLog::open(dir.path(), options));
    match (&report, opened) {
        (Ok(report), Ok(log)) if report.is_ok() => {
            assert_eq!(
                log.head_position(),
                report.events,
                "open kept another number of events than verify counted: {report:?}"
            );
            runtime().block_on(log.close()).expect("close the log");
            let again = verify_directory(dir.path()).expect("verify after open");
            assert!(again.is_ok(), "clean before open, not after: {again:?}");
            assert!(
                again.torn_tail.is_none(),
                "open left a torn tail: {again:?}"
            );
            assert_eq!(again.events, report.events);
        }
        (Ok(report), Ok(log)) => panic!(
            "open accepted a log verify found damaged ({report:?}), head {}",
            log.head_position()
        ),
        (Err(error), Ok(log)) => panic!(
            "open accepted a log verify could not read ({error}), head {}",
            log.head_position()
        ),
        (Ok(report), Err(error)) if report.is_ok() => {
            panic!("verify found no problem ({report:?}) but open refused: {error}")
        }
        (_, Err(_)) => unchanged("a refused open"),
    }
}

/// Event decoding over arbitrary stored bytes. The first byte picks the event type (one
/// past the list: a type no build knows), the second the schema version (0 to 3), the
/// rest are the stored JSON. `Event::from_json` never panics, and what it accepts writes
/// back (`to_json`) to bytes that read as the same event under its current version.
pub fn event_json(data: &[u8]) {
    let [kind, version, bytes @ ..] = data else {
        return;
    };
    let event_type = EVENT_TYPES
        .get(*kind as usize % (EVENT_TYPES.len() + 1))
        .copied()
        .unwrap_or("NoSuchEvent");
    let Ok(event) = Event::from_json(event_type, u32::from(*version % 4), bytes) else {
        return;
    };
    assert_eq!(event.event_type(), event_type);
    let written = event.to_json();
    let read = Event::from_json(event.event_type(), event.schema_version(), &written)
        .unwrap_or_else(|error| {
            panic!(
                "an accepted event does not read back: {error}: {}",
                String::from_utf8_lossy(&written)
            )
        });
    assert_eq!(read, event);
}

fn services() -> &'static [ServiceDefinition] {
    static SERVICES: OnceLock<Vec<ServiceDefinition>> = OnceLock::new();
    SERVICES.get_or_init(|| Catalogue::shipped().services().cloned().collect())
}

/// The submission form's validation over arbitrary answers. The first byte picks a
/// service of the shipped catalogue (in code order), the rest are the answers as JSON.
/// Validation never panics; what it accepts names only the definition's fields and
/// answers every required one; accepted answers validate again unchanged.
pub fn submission_form(data: &[u8]) {
    let [which, json @ ..] = data else {
        return;
    };
    let services = services();
    let definition = &services[*which as usize % services.len()];
    let Ok(answers) = serde_json::from_slice::<FormAnswers>(json) else {
        return;
    };
    let Ok(validated) = validate_form(definition, &answers) else {
        return;
    };
    for key in validated.answers().keys() {
        assert!(
            definition.fields.iter().any(|field| &field.name == key),
            "accepted an answer to {key}, which {} does not have",
            definition.code
        );
    }
    for field in definition.fields.iter().filter(|field| field.required) {
        assert!(
            validated.answers().contains_key(&field.name),
            "accepted a form without the required {}",
            field.name
        );
    }
    let again = validate_form(definition, validated.answers())
        .unwrap_or_else(|problems| panic!("accepted answers fail again: {problems:?}"));
    assert_eq!(again.answers(), validated.answers());
}
