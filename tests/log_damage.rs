//! Damage and torn writes in the event log, with the real binaries (issue 15): a flipped
//! byte, a zeroed length and a garbage frame in the middle of the last segment stop
//! anju-server at start with the place named and the segment unchanged; `anju log verify`
//! reports them, exits non-zero and changes nothing; `anju log salvage` keeps what it
//! says it keeps and the server starts again; a torn final write (cut mid-frame, or
//! zero-filled) is still cut and every earlier acknowledged request is still there.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use anju_system_tests::{
    issue_token, server_command, start_server, workspace_binary, Cli, ServerProcess,
};

const SITE: &str = "xingfu";
const REQUESTS: usize = 20;

/// What one acknowledged submission left: its tracking code and the log position of its
/// first event.
#[derive(Debug, Clone)]
struct Submitted {
    tracking_code: String,
    position: u64,
}

struct Fixture {
    server_binary: PathBuf,
    cli_binary: PathBuf,
    /// A home whose `data/` holds a stopped server's data directory with REQUESTS requests.
    pristine: tempfile::TempDir,
    submitted: Vec<Submitted>,
    admin: String,
    resident: String,
}

fn segment(home: &Path) -> PathBuf {
    home.join("data/log/segments/00000000.seg")
}

/// One frame of a segment file: its offset, its length and the position it holds.
#[derive(Debug, Clone, Copy)]
struct Frame {
    offset: u64,
    len: u64,
    position: u64,
}

/// The frames of a segment, read from their length fields until the zeros after the data.
fn frames(path: &Path) -> Vec<Frame> {
    let bytes = std::fs::read(path).unwrap();
    let mut found = Vec::new();
    let mut offset = 32;
    loop {
        let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        if len == 0 {
            return found;
        }
        let position = u64::from_le_bytes(bytes[offset + 8..offset + 16].try_into().unwrap());
        found.push(Frame {
            offset: offset as u64,
            len: 8 + len as u64,
            position,
        });
        offset += 8 + len;
    }
}

/// Starts a server in a new home, submits REQUESTS requests as a resident, and stops it.
async fn fixture() -> Fixture {
    let server_binary = workspace_binary("anju-server", "ANJU_SERVER_BIN");
    let cli_binary = workspace_binary("anju", "ANJU_CLI_BIN");
    let pristine = tempfile::tempdir().unwrap();
    let home = pristine.path();
    let server = start_server(&server_binary, home, "none");
    let data = ["--data-dir", "./data"];
    let admin = issue_token(
        &cli_binary,
        home,
        &[
            &["--role", "admin", "--site", "*", "--subject", "operator"][..],
            &data,
        ]
        .concat(),
    );
    let resident = issue_token(
        &cli_binary,
        home,
        &[
            &["--role", "resident", "--subject", "resident-1"][..],
            &data,
        ]
        .concat(),
    );
    let cli = Cli {
        binary: cli_binary.clone(),
        working_dir: home.to_path_buf(),
        server: server.grpc_url.clone(),
    };
    let problem = cli.first_choice(&resident, "SQ-WEIXIU", "problem");
    let mut submitted = Vec::new();
    for n in 0..REQUESTS {
        let answer = cli.json(
            &resident,
            &[
                "submit",
                "SQ-WEIXIU",
                "--site",
                SITE,
                "--name",
                "王芳",
                "--phone",
                "13800001234",
                "--field",
                &format!("problem={problem}"),
                "--field",
                &format!("location=3栋{n}单元"),
            ],
        );
        submitted.push(Submitted {
            tracking_code: answer["tracking_code"].as_str().unwrap().to_string(),
            // The API counts positions from 1 (docs/api.md); the log from 0.
            position: answer["position"]
                .as_str()
                .and_then(|p| p.parse::<u64>().ok())
                .or_else(|| answer["position"].as_u64())
                .unwrap_or_else(|| panic!("no position in {answer}"))
                - 1,
        });
    }
    let (exit, printed) = server.terminate(Duration::from_secs(30));
    assert_eq!(exit.code(), Some(0), "{printed:?}");
    Fixture {
        server_binary,
        cli_binary,
        pristine,
        submitted,
        admin,
        resident,
    }
}

impl Fixture {
    /// A copy of the stopped server's home to damage.
    fn copy(&self) -> tempfile::TempDir {
        let copy = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(self.pristine.path().join("data"))
            .arg(copy.path())
            .status()
            .unwrap();
        assert!(status.success());
        copy
    }

    fn cli(&self, home: &Path, server: &ServerProcess) -> Cli {
        Cli {
            binary: self.cli_binary.clone(),
            working_dir: home.to_path_buf(),
            server: server.grpc_url.clone(),
        }
    }

    /// Runs `anju ARGS...` offline from `home` (no server needed).
    fn offline(&self, home: &Path, args: &[&str]) -> Output {
        Cli {
            binary: self.cli_binary.clone(),
            working_dir: home.to_path_buf(),
            server: "http://127.0.0.1:1".into(),
        }
        .run(None, args)
    }

    /// Starts anju-server on `home` and expects it to refuse: returns what it printed.
    fn refused_start(&self, home: &Path) -> String {
        let mut child = server_command(&self.server_binary, home, "none")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("anju-server kept running on a damaged log");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child.wait_with_output().unwrap();
        assert!(
            !output.status.success(),
            "anju-server exited 0 on a damaged log"
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    fn status_found(&self, cli: &Cli, submission: &Submitted) -> bool {
        cli.run(
            Some(&self.resident),
            &[
                "--json",
                "status",
                &submission.tracking_code,
                "--phone-last4",
                "1234",
            ],
        )
        .status
        .success()
    }

    fn event_count(&self, cli: &Cli) -> u64 {
        let stats = cli.json(&self.admin, &["log", "stats"]);
        stats["event_count"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("log stats has no event_count: {stats}"))
    }
}

fn write_at(path: &Path, bytes: &[u8], offset: u64) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
    file.sync_all().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_the_last_segment_is_refused_reported_and_salvaged_and_a_torn_write_is_cut() {
    let fixture = fixture().await;
    let all = frames(&segment(fixture.pristine.path()));
    let total = all.len() as u64;
    assert!(total >= REQUESTS as u64, "{total} frames");
    // The frame holding the 10th request's first event, in the middle of the segment.
    let target = *all
        .iter()
        .find(|f| f.position == fixture.submitted[9].position)
        .expect("the 10th request's frame");

    type Damage = fn(&Path, Frame);
    let damages: [(&str, Damage); 3] = [
        ("a flipped byte", |path, frame| {
            let mut byte = [0u8; 1];
            let file = std::fs::File::open(path).unwrap();
            file.read_exact_at(&mut byte, frame.offset + frame.len / 2)
                .unwrap();
            write_at(path, &[byte[0] ^ 0x08], frame.offset + frame.len / 2);
        }),
        ("a zeroed length", |path, frame| {
            write_at(path, &[0u8; 4], frame.offset)
        }),
        ("a garbage frame", |path, frame| {
            let garbage: Vec<u8> = (0..frame.len).map(|i| (i * 131 + 7) as u8).collect();
            write_at(path, &garbage, frame.offset)
        }),
    ];
    for (what, damage) in damages {
        let home = fixture.copy();
        let path = segment(home.path());
        damage(&path, target);
        let before = std::fs::read(&path).unwrap();

        // anju-server refuses to start, names the place, and leaves the file as it was.
        let printed = fixture.refused_start(home.path());
        for expected in [
            format!("byte offset {}:", target.offset),
            format!("position {} was expected", target.position),
            "00000000.seg".to_string(),
            "anju log salvage".to_string(),
        ] {
            assert!(
                printed.contains(&expected),
                "{what}: no {expected:?} in {printed}"
            );
        }
        assert!(
            std::fs::read(&path).unwrap() == before,
            "{what}: starting changed the segment"
        );

        // verify reports it, exits non-zero and writes nothing anywhere in the log.
        let log_files = anju_testkit::files_under(&home.path().join("data/log"));
        let output = fixture.offline(
            home.path(),
            &["--json", "log", "verify", "--data-dir", "./data"],
        );
        assert_eq!(output.status.code(), Some(1), "{what}: {output:?}");
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{what}: verify printed no JSON ({e}): {output:?}"));
        assert_eq!(report["ok"], false, "{what}: {report}");
        assert!(
            report["problems"][0]
                .as_str()
                .is_some_and(|p| p.contains(&format!("byte offset {}:", target.offset))),
            "{what}: {report}"
        );
        assert!(
            anju_testkit::files_under(&home.path().join("data/log")) == log_files,
            "{what}: verify changed the log directory"
        );

        // salvage keeps every other request and names exactly what it lost.
        let output = fixture.offline(
            home.path(),
            &["--json", "log", "salvage", "--data-dir", "./data"],
        );
        assert!(output.status.success(), "{what}: {output:?}");
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let lost: Vec<u64> = report["lost"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["position"].as_u64().unwrap())
            .collect();
        let damaged_append: Vec<u64> = fixture
            .submitted
            .get(10)
            .map_or(total, |next| next.position)
            .checked_sub(target.position)
            .map(|n| (target.position..target.position + n).collect())
            .unwrap();
        assert_eq!(lost, damaged_append, "{what}: {report}");
        assert_eq!(
            report["kept"].as_u64(),
            Some(total - lost.len() as u64),
            "{what}"
        );
        assert_eq!(report["head"].as_u64(), Some(total), "{what}");
        // Relative to the working directory, as --data-dir was given.
        let moved_to = home.path().join(report["moved_to"].as_str().unwrap());
        assert!(
            std::fs::read(moved_to.join("00000000.seg")).unwrap() == before,
            "{what}: the damaged segment is kept aside as it was"
        );

        let server = start_server(&fixture.server_binary, home.path(), "none");
        let cli = fixture.cli(home.path(), &server);
        assert_eq!(fixture.event_count(&cli), total, "{what}");
        for (n, submission) in fixture.submitted.iter().enumerate() {
            assert_eq!(
                fixture.status_found(&cli, submission),
                n != 9,
                "{what}: request {n} ({submission:?}); salvage said {report}"
            );
        }
        let (exit, printed) = server.terminate(Duration::from_secs(30));
        assert_eq!(exit.code(), Some(0), "{printed:?}");
        let output = fixture.offline(home.path(), &["log", "verify", "--data-dir", "./data"]);
        assert!(output.status.success(), "{what}: after salvage: {output:?}");
    }

    // A torn final write, cut mid-frame or zero-filled, is cut on start and every earlier
    // acknowledged request is kept.
    let last_request = fixture.submitted.last().unwrap().position;
    let last_frames: Vec<Frame> = all
        .iter()
        .copied()
        .filter(|f| f.position >= last_request)
        .collect();
    let tail_start = last_frames[0].offset;
    let tail_end = last_frames.last().map(|f| f.offset + f.len).unwrap();
    type Tear = fn(&Path, u64, u64);
    let tears: [(&str, Tear); 2] = [
        ("cut mid-frame", |path, start, end| {
            let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            file.set_len(start + (end - start) / 2).unwrap();
        }),
        ("zero-filled", |path, start, end| {
            write_at(path, &vec![0u8; ((end - start) / 2) as usize], start)
        }),
    ];
    for (what, tear) in tears {
        let home = fixture.copy();
        let path = segment(home.path());
        tear(&path, tail_start, tail_end);
        // A crash tears only a write that was never acknowledged, so no read-model
        // snapshot can hold it; this one was taken after it, at the clean stop.
        let snapshot = home.path().join("data/log/projections.snapshot");
        if snapshot.exists() {
            std::fs::remove_file(snapshot).unwrap();
        }
        let output = fixture.offline(
            home.path(),
            &["--json", "log", "verify", "--data-dir", "./data"],
        );
        assert!(
            output.status.success(),
            "{what}: a torn write is no problem: {output:?}"
        );
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(report["torn_tail"].is_string(), "{what}: {report}");

        let server = start_server(&fixture.server_binary, home.path(), "none");
        let cli = fixture.cli(home.path(), &server);
        assert_eq!(fixture.event_count(&cli), last_request, "{what}");
        for (n, submission) in fixture.submitted.iter().enumerate() {
            assert_eq!(
                fixture.status_found(&cli, submission),
                n + 1 < REQUESTS,
                "{what}: request {n}"
            );
        }
        let (exit, printed) = server.terminate(Duration::from_secs(30));
        assert_eq!(exit.code(), Some(0), "{printed:?}");
        let output = fixture.offline(home.path(), &["log", "verify", "--data-dir", "./data"]);
        assert!(output.status.success(), "{what}: after the cut: {output:?}");
    }
}
