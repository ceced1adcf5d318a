//! cargo-fuzz target: the property `anju_fuzz_checks::event_json` (crates/fuzz-checks) over
//! libFuzzer's inputs. Run with `scripts/fuzz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| anju_fuzz_checks::event_json(data));
