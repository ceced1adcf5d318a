//! The fault campaign, CI-sized: `anju-bench soak` runs a few rounds of load against the
//! real anju-server, each ended by SIGKILL, and every acknowledged write must come back
//! exactly once after each restart, with `anju log verify` passing (docs/faults.md).

use std::process::Command;

use anju_system_tests::workspace_binary;

#[test]
fn a_few_soak_rounds_lose_no_acknowledged_write() {
    let bench = workspace_binary("anju-bench", "ANJU_BENCH_BIN");
    let work = tempfile::tempdir().unwrap();
    let output = Command::new(&bench)
        .args([
            "soak",
            "--rounds",
            "4",
            "--reset-every",
            "3",
            "--seed",
            "15",
            "--json",
            "--work-dir",
        ])
        .arg(work.path())
        .output()
        .expect("anju-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "soak failed: {stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON summary");
    assert_eq!(report["rounds"], 4, "{report}");
    assert_eq!(
        report["failures"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    assert_eq!(
        report["data_dirs"], 2,
        "a fresh data directory after 3 rounds: {report}"
    );
    assert!(
        report["acknowledged_writes"].as_u64() > Some(0),
        "the load wrote nothing: {report}"
    );
    // Each restart but the first of a directory checks what came before, and finds it.
    assert!(
        report["acknowledged_write_checks"].as_u64() >= report["acknowledged_writes"].as_u64(),
        "{report}"
    );
    assert_eq!(
        report["verifies"], 4,
        "one verify after each kill: {report}"
    );
    // Nothing is left behind when nothing failed.
    let left: Vec<_> = std::fs::read_dir(work.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
