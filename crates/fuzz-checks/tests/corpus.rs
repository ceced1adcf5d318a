//! Replays every committed fuzz input (`fuzz/corpus/<target>/`) through its property, so
//! that the suite keeps what the fuzzers found without needing cargo-fuzz.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a corpus entry").path();
            let bytes = std::fs::read(&path).expect("read a corpus input");
            (path, bytes)
        })
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 10,
        "the {target} corpus has only {} inputs",
        inputs.len()
    );
    inputs
}

fn replay(target: &str, check: fn(&[u8])) {
    for (path, bytes) in corpus(target) {
        let outcome = std::panic::catch_unwind(|| check(&bytes));
        assert!(outcome.is_ok(), "{} fails its property", path.display());
    }
}

#[test]
fn the_segment_corpus_holds() {
    replay("segment", anju_fuzz_checks::segment);
}

#[test]
fn the_event_json_corpus_holds() {
    replay("event_json", anju_fuzz_checks::event_json);
}

#[test]
fn the_submission_form_corpus_holds() {
    replay("submission_form", anju_fuzz_checks::submission_form);
}
