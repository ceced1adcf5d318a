//! Runs the real `anju` binary: token issue against a secret file, every error path
//! with its message and exit code, each subcommand's happy path against a server
//! spawned in this process (on port 0 with a temporary data directory), `--json`
//! parsed back, and `anju demo` against a fresh server.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use anju_auth::{Claims, Role, Secret};
use serde_json::Value;

fn anju() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_anju"));
    for name in [
        "ANJU_SERVER",
        "ANJU_TOKEN",
        "ANJU_DATA_DIR",
        "ANJU_SECRET_FILE",
        "ANJU_PROFILE",
        "ANJU_CLI_CONFIG",
        "ANJU_LANG",
    ] {
        command.env_remove(name);
    }
    // No profile file from the machine running the tests.
    command.env("XDG_CONFIG_HOME", "/nonexistent-anju-test-config");
    command
}

/// A server running on a thread of its own until the test ends.
struct Server {
    address: SocketAddr,
    data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        Server::start_with(false)
    }

    /// A server on the demo clock (`--demo-clock`) or the system clock.
    fn start_with(demo_clock: bool) -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut config = anju_server_core::Config::ephemeral(data.path());
        config.demo_clock = demo_clock;
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = anju_server_core::App::build(config).await.unwrap();
                address_tx.send(app.grpc_addr()).unwrap();
                app.run_until(async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
        });
        let address = address_rx.recv().unwrap();
        Server {
            address,
            data,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn token(&self, role: &str, sites: &[&str], subject: &str) -> String {
        let mut command = anju();
        command.args([
            "token",
            "issue",
            "--role",
            role,
            "--subject",
            subject,
            "--data-dir",
        ]);
        command.arg(self.data.path());
        for site in sites {
            command.args(["--site", site]);
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout).trim().to_string()
    }

    /// Runs `anju` against this server with `token`.
    fn run(&self, token: &str, args: &[&str]) -> Output {
        anju()
            .env("ANJU_SERVER", self.url())
            .env("ANJU_TOKEN", token)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs with --json, expects success, and parses stdout.
    fn json(&self, token: &str, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let output = self.run(token, &all);
        assert!(
            output.status.success(),
            "anju {args:?} failed: {}",
            text(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "anju {args:?} printed no JSON ({e}): {}",
                text(&output.stdout)
            )
        })
    }

    fn ok(&self, token: &str, args: &[&str]) -> String {
        let output = self.run(token, args);
        assert!(
            output.status.success(),
            "anju {args:?} failed: {}",
            text(&output.stderr)
        );
        text(&output.stdout)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts the exit code and that stderr mentions every one of `needles`.
fn assert_fails(output: &Output, code: i32, needles: &[&str]) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn token_issue_signs_with_the_data_directory_secret() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = anju_auth::load_or_create_secret(dir.path()).unwrap();
    let output = anju()
        .args([
            "token",
            "issue",
            "--role",
            "caseworker",
            "--site",
            "site-1",
            "--site",
            "site-2",
        ])
        .args([
            "--category",
            "elderly_care",
            "--category",
            "民政",
            "--subject",
            "wang.fang",
            "--ttl",
            "2h",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let token = String::from_utf8(output.stdout).unwrap();
    let claims = anju_auth::verify(&loaded.secret, token.trim(), now()).unwrap();
    assert_eq!(claims.role, Role::Caseworker);
    assert_eq!(claims.sub, "wang.fang");
    assert_eq!(claims.sites, vec!["site-1", "site-2"]);
    assert_eq!(claims.categories, vec!["elderly_care", "civil_affairs"]);
    assert!(
        claims.exp >= now() + 7100 && claims.exp <= now() + 7300,
        "exp {}",
        claims.exp
    );
    assert!(anju_auth::verify(&Secret::from_bytes(vec![0; 32]), token.trim(), now()).is_err());
}

#[test]
fn token_issue_explains_a_missing_secret_and_an_unknown_role() {
    let dir = tempfile::tempdir().unwrap();
    let output = anju()
        .args([
            "token",
            "issue",
            "--role",
            "admin",
            "--site",
            "*",
            "--subject",
            "me",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_fails(&output, 2, &["start anju-server once"]);

    let output = anju()
        .args(["token", "issue", "--role", "root", "--subject", "me"])
        .output()
        .unwrap();
    assert_fails(&output, 2, &["unknown role"]);
}

/// Issue 16, item 16: docs/api.md's own example said `--category elderly-care`, which
/// issued a token covering nothing (the API says `elderly_care`). Unknown categories
/// are refused, with the name meant when it is only the hyphen.
#[test]
fn token_issue_refuses_unknown_categories() {
    let dir = tempfile::tempdir().unwrap();
    anju_auth::load_or_create_secret(dir.path()).unwrap();
    for (category, expected) in [
        ("elderly-care", "did you mean elderly_care"),
        ("pets", "civil_affairs, elderly_care"),
    ] {
        let output = anju()
            .args(["token", "issue", "--role", "caseworker", "--site", "site-1"])
            .args([
                "--category",
                category,
                "--subject",
                "wang.fang",
                "--data-dir",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert_fails(&output, 2, &["unknown category", expected]);
        assert!(output.stdout.is_empty(), "no token is printed");
    }
}

#[test]
fn an_unreachable_server_exits_6_with_what_to_do() {
    // Bind and drop a listener to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("http://127.0.0.1:{port}");
    let output = anju()
        .args(["health", "--timeout", "2s", "--server", &server])
        .output()
        .unwrap();
    assert_fails(
        &output,
        6,
        &["cannot reach anju-server at", "is anju-server running"],
    );
    let output = anju()
        .args(["--server", &server, "--token", "x.y.z", "queue"])
        .output()
        .unwrap();
    assert_fails(&output, 6, &["cannot reach anju-server"]);
}

#[test]
fn profiles_pick_server_and_token_and_unknown_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "default_profile = \"xingfu\"\n[profiles.xingfu]\nserver = \"http://127.0.0.1:1\"\ntoken = \"a.b.c\"\nlang = \"zh\"\n",
    )
    .unwrap();
    let output = anju()
        .args(["--config"])
        .arg(&config)
        .args(["--timeout", "1s", "queue"])
        .output()
        .unwrap();
    // The profile's server is used: nothing listens on port 1.
    assert_fails(&output, 6, &["http://127.0.0.1:1"]);
    let output = anju()
        .args(["--config"])
        .arg(&config)
        .args(["--profile", "anning", "queue"])
        .output()
        .unwrap();
    assert_fails(
        &output,
        2,
        &["no profile \"anning\"", "known profiles: xingfu"],
    );
}

fn seed_secret(path: &Path) -> Secret {
    anju_auth::load_or_create_secret(path).unwrap().secret
}

#[test]
fn every_subcommand_against_a_real_server() {
    let server = Server::start();
    let site = "xingfu";
    let resident = server.token("resident", &[], "resident-1");
    let caseworker = server.token("caseworker", &[site], "cw-1");
    let supervisor = server.token("supervisor", &[site], "sup-1");
    let manager = server.token("manager", &["*"], "mgr");
    let admin = server.token("admin", &["*"], "root");

    // health and the catalogue
    assert_eq!(server.ok("", &["health"]).trim(), "SERVING");
    let services = server.ok(&resident, &["services"]);
    assert!(
        services.contains("SQ-WEIXIU") && services.contains("MZ-DIBAO"),
        "{services}"
    );
    let listed = server.json(&resident, &["services", "--category", "community"]);
    assert!(listed["services"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["category"] == "community"));
    let definition = server.json(&resident, &["services", "show", "MZ-DIBAO"]);
    assert_eq!(definition["code"], "MZ-DIBAO");
    assert_eq!(definition["approval_levels"], 2);
    let shown = server.ok(&resident, &["--lang", "zh", "services", "show", "MZ-DIBAO"]);
    assert!(
        shown.contains("审批层级") && shown.contains("household_size"),
        "{shown}"
    );

    // errors: missing token, invalid field, unknown service, forbidden, expired, not found
    assert_fails(
        &server.run("", &["queue"]),
        4,
        &["missing token", "anju token issue"],
    );
    let invalid = server.run(
        &resident,
        &[
            "submit",
            "SQ-WEIXIU",
            "--site",
            site,
            "--name",
            "王芳",
            "--phone",
            "13800001234",
            "--field",
            "problem=lottery",
            "--field",
            "colour=blue",
        ],
    );
    assert_fails(
        &invalid,
        2,
        &[
            "field problem",
            "field colour",
            "field location: required",
            "anju services show SQ-WEIXIU",
        ],
    );
    assert_fails(
        &server.run(
            &resident,
            &[
                "submit",
                "NO-SUCH",
                "--site",
                site,
                "--name",
                "王芳",
                "--phone",
                "13800001234",
            ],
        ),
        3,
        &["no service \"NO-SUCH\"", "anju services"],
    );
    assert_fails(&server.run(&resident, &["queue"]), 4, &["forbidden"]);
    let secret = seed_secret(server.data.path());
    let expired = anju_auth::issue(
        &secret,
        &Claims {
            sub: "cw-1".into(),
            role: Role::Caseworker,
            sites: vec![site.into()],
            categories: vec![],
            exp: now() - 3600,
            iat: now() - 7200,
        },
    );
    assert_fails(
        &server.run(&expired, &["queue"]),
        4,
        &[
            "token expired",
            "anju token issue --role caseworker --site 'xingfu' --subject cw-1",
        ],
    );
    assert_fails(
        &server.run(
            &caseworker,
            &["show", "0190f0a2-0000-7000-8000-000000000000"],
        ),
        3,
        &["not found"],
    );

    // a resident submits; the caseworker works it through to the end
    let problem = definition_choice(&server, &resident, "SQ-WEIXIU", "problem");
    let submitted = server.json(
        &resident,
        &[
            "submit",
            "SQ-WEIXIU",
            "--site",
            site,
            "--name",
            "王芳",
            "--phone",
            "13800001234",
            "--field",
            &format!("problem={problem}"),
            "--field",
            "location=3栋2单元501",
        ],
    );
    let id = submitted["request_id"].as_str().unwrap().to_string();
    let tracking = submitted["tracking_code"].as_str().unwrap().to_string();
    assert_eq!(submitted["state"], "REQUEST_STATE_SUBMITTED");
    let status = server.json(&resident, &["status", &tracking, "--phone-last4", "1234"]);
    assert_eq!(status["tracking_code"], tracking.as_str());
    assert_fails(
        &server.run(&resident, &["status", &tracking, "--phone-last4", "9999"]),
        3,
        &["not found"],
    );

    let queue = server.json(&caseworker, &["queue", "--site", site]);
    assert!(
        queue["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["request_id"] == id.as_str()),
        "{queue}"
    );
    let table = server.ok(&caseworker, &["--lang", "zh", "queue"]);
    assert!(
        table.contains("受理编号") && table.contains(&tracking),
        "{table}"
    );

    assert_eq!(
        server.json(&caseworker, &["claim", &id])["assignee"],
        "cw-1"
    );
    assert_eq!(
        server.json(&caseworker, &["note", &id, "called the resident"])["state"],
        "REQUEST_STATE_SUBMITTED"
    );
    server.json(
        &caseworker,
        &[
            "request-info",
            &id,
            "--missing",
            "photo of the leak",
            "--message",
            "please bring it",
        ],
    );
    server.json(
        &resident,
        &[
            "provide-info",
            &tracking,
            "--phone-last4",
            "1234",
            "--message",
            "brought it",
        ],
    );
    let accepted = server.json(&caseworker, &["accept", &id, "--comment", "ok"]);
    assert_eq!(accepted["state"], "REQUEST_STATE_ACCEPTED");
    // accepting twice is a conflict
    assert_fails(
        &server.run(&caseworker, &["accept", &id]),
        5,
        &["not allowed now"],
    );
    // a stale expected version is a conflict too
    assert_fails(
        &server.run(&caseworker, &["note", &id, "x", "--expected-version", "1"]),
        5,
        &["conflict"],
    );
    server.json(
        &caseworker,
        &["review", &id, "--opinion", "verified on site"],
    );
    let started = server.json(&caseworker, &["fulfil", "start", &id]);
    assert_eq!(started["state"], "REQUEST_STATE_IN_FULFILMENT");
    let extension = server.json(
        &caseworker,
        &[
            "extension",
            "request",
            &id,
            "--days",
            "2",
            "--reason",
            "parts on order",
        ],
    );
    let extension_id = extension["extension_id"].as_str().unwrap().to_string();
    server.json(
        &supervisor,
        &["extension", "decide", &id, &extension_id, "--grant"],
    );
    server.json(
        &supervisor,
        &["reassign", &id, "--to", "cw-1", "--reason", "same person"],
    );
    let detail = server.json(&caseworker, &["show", &id]);
    for step in detail["fulfilment_steps"].as_array().unwrap() {
        server.json(
            &caseworker,
            &["fulfil", "step", &id, step["code"].as_str().unwrap()],
        );
    }
    let rated = server.json(
        &resident,
        &[
            "rate",
            &tracking,
            "--phone-last4",
            "1234",
            "--grade",
            "very-dissatisfied",
            "--comment",
            "slow",
        ],
    );
    assert_eq!(rated["remediation"], "REMEDIATION_STATUS_OPEN");
    server.json(
        &caseworker,
        &[
            "remediate",
            &id,
            "--resolution",
            "apologised, fixed",
            "--contacted",
            "--agrees",
        ],
    );
    server.json(
        &caseworker,
        &[
            "appeal",
            "file",
            &id,
            "--reason",
            "the leak was the neighbour's",
        ],
    );
    server.json(
        &manager,
        &[
            "appeal",
            "decide",
            &id,
            "--reject",
            "--comment",
            "rating stands",
        ],
    );
    // fulfilled: the caseworker closes it, once
    let closed = server.ok(&caseworker, &["close", &id]);
    assert!(
        closed.starts_with(&format!("{id}: state closed, version ")),
        "{closed}"
    );
    assert_fails(
        &server.run(&caseworker, &["close", &id]),
        5,
        &["closing the request", "closed"],
    );
    let shown = server.ok(&caseworker, &["show", &id]);
    assert!(
        shown.contains("RequestSubmitted")
            && shown.contains("RequestClosed")
            && shown.contains(&tracking),
        "{shown}"
    );

    // a second request: refused; a third: withdrawn
    let second = server.json(
        &resident,
        &[
            "submit",
            "SQ-WEIXIU",
            "--site",
            site,
            "--name",
            "李强",
            "--phone",
            "13900005678",
            "--field",
            &format!("problem={problem}"),
            "--field",
            "location=1栋",
        ],
    );
    let second_id = second["request_id"].as_str().unwrap();
    server.json(&caseworker, &["claim", second_id]);
    assert_eq!(
        server.json(
            &caseworker,
            &["refuse", second_id, "--reason", "not our estate"]
        )["state"],
        "REQUEST_STATE_REFUSED"
    );
    // a refused request cannot be closed
    assert_fails(
        &server.run(&caseworker, &["close", second_id]),
        5,
        &["cannot close a request that is refused"],
    );
    let third = server.json(
        &resident,
        &[
            "submit",
            "SQ-WEIXIU",
            "--site",
            site,
            "--name",
            "李强",
            "--phone",
            "13900005678",
            "--field",
            &format!("problem={problem}"),
            "--field",
            "location=2栋",
        ],
    );
    let third_tracking = third["tracking_code"].as_str().unwrap();
    assert_eq!(
        server.json(
            &resident,
            &["withdraw", third_tracking, "--phone-last4", "5678"]
        )["state"],
        "REQUEST_STATE_WITHDRAWN"
    );

    // manager reports, as tables and as JSON
    for report in ["throughput", "lead-times", "sla", "satisfaction", "backlog"] {
        let table = server.ok(&manager, &["report", report]);
        assert!(table.lines().count() >= 2, "{report}: {table}");
        server.json(&manager, &["report", report]);
    }
    let throughput = server.json(&manager, &["report", "throughput", "--bucket", "week"]);
    assert_eq!(throughput["total"]["submitted"], "3");
    assert_fails(
        &server.run(&manager, &["report", "sla", "--from", "2026-13-01"]),
        2,
        &["invalid --from"],
    );

    // the clock: a server without --demo-clock says so and refuses to move
    let clock = server.ok(&admin, &["clock"]);
    assert!(clock.contains("system clock"), "{clock}");
    assert_fails(
        &server.run(&admin, &["clock", "advance", "--working-days", "1"]),
        5,
        &["--demo-clock"],
    );
    assert_fails(
        &server.run(&caseworker, &["clock", "advance", "--by", "1d"]),
        4,
        &["permission denied"],
    );
    assert_fails(
        &server.run(&admin, &["clock", "advance"]),
        2,
        &["--working-days"],
    );

    // the event log
    let stats = server.json(&admin, &["log", "stats"]);
    assert!(
        stats["head_position"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 10,
        "{stats}"
    );
    let tail = server.run(
        &admin,
        &[
            "--json",
            "tail",
            "--from",
            "0",
            "--prefix",
            "request-",
            "--type",
            "RequestSubmitted",
            "--limit",
            "3",
        ],
    );
    assert!(tail.status.success(), "{}", text(&tail.stderr));
    let events: Vec<Value> = text(&tail.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    assert!(events
        .iter()
        .all(|e| e["event_type"] == "RequestSubmitted" && e["payload"].is_object()));
    let verify = anju()
        .args(["log", "verify", "--data-dir"])
        .arg(server.data.path())
        .output()
        .unwrap();
    assert_fails(
        &verify,
        5,
        &["in use by a running anju-server", "stop anju-server first"],
    );
}

/// The first choice code of a field, from the server's definition.
/// Issue 16, item 19: `anju find-by-identity` reads the number from standard input and
/// refuses it on the command line, where `ps` and the shell history would show it.
#[test]
fn find_by_identity_reads_the_number_from_standard_input_only() {
    use std::io::Write;
    let server = Server::start();
    let site = "site-a";
    let resident = server.token("resident", &[], "resident-1");
    let caseworker = server.token("caseworker", &[site], "cw-1");
    let id_number = "11010519491231002X";
    let problem = definition_choice(&server, &resident, "SQ-WEIXIU", "problem");
    let submitted = server.json(
        &resident,
        &[
            "submit",
            "SQ-WEIXIU",
            "--site",
            site,
            "--name",
            "王芳",
            "--phone",
            "13800001234",
            "--id-number",
            id_number,
            "--field",
            &format!("problem={problem}"),
            "--field",
            "location=3栋2单元501",
        ],
    );
    let tracking = submitted["tracking_code"].as_str().unwrap().to_string();
    let find = |stdin: &str, extra: &[&str]| {
        let mut child = anju()
            .env("ANJU_SERVER", server.url())
            .env("ANJU_TOKEN", &caseworker)
            .args(["find-by-identity", "--reason", "resident lost the receipt"])
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let found = find(&format!("{id_number}\n"), &[]);
    assert!(found.status.success(), "{}", text(&found.stderr));
    let table = text(&found.stdout);
    assert!(table.contains(&tracking), "{table}");
    assert!(table.contains("王*"), "{table}");
    assert!(!table.contains(id_number), "{table}");
    let json = find(&format!("{id_number}\n"), &["--json"]);
    let answer: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(answer["requests"][0]["tracking_code"], tracking.as_str());
    // uint64 is a string in proto3 JSON.
    let audit_position: u64 = answer["audit_position"].as_str().unwrap().parse().unwrap();
    assert!(audit_position > 0, "{answer}");
    assert_fails(&find("", &[]), 2, &["no identity number on standard input"]);
    assert_fails(&find("110105194912310021\n", &[]), 2, &["identity_number"]);
    // Not on the command line: an argument is refused before anything is sent.
    assert_fails(&find(&format!("{id_number}\n"), &[id_number]), 2, &[]);
}

fn definition_choice(server: &Server, token: &str, code: &str, field: &str) -> String {
    let definition = server.json(token, &["services", "show", code]);
    let field = definition["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == field)
        .unwrap();
    field["choices"][0]["code"].as_str().unwrap().to_string()
}

#[test]
fn demo_fills_a_fresh_server_with_every_category_and_state() {
    let server = Server::start_with(true);
    let started = std::time::Instant::now();
    let output = anju()
        .env("ANJU_SERVER", server.url())
        .args([
            "--json",
            "demo",
            "--seed",
            "7",
            "--requests",
            "40",
            "--data-dir",
        ])
        .arg(server.data.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let elapsed = started.elapsed();
    let demo: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(demo["demo_clock"], true, "{demo}");
    assert_eq!(demo["working_days"], 22);
    let requests = demo["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 40);
    let categories: std::collections::BTreeSet<&str> = requests
        .iter()
        .map(|r| r["category"].as_str().unwrap())
        .collect();
    assert_eq!(categories.len(), 8, "{categories:?}");
    let states: std::collections::BTreeSet<&str> = requests
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    for state in [
        "SUBMITTED",
        "INFO_REQUESTED",
        "ACCEPTED",
        "APPROVED",
        "IN_FULFILMENT",
        "FULFILLED",
        "CLOSED",
        "REFUSED",
        "DENIED",
        "WITHDRAWN",
    ] {
        assert!(
            states.contains(format!("REQUEST_STATE_{state}").as_str()),
            "{state} missing from {states:?}"
        );
    }
    let plans: std::collections::BTreeSet<&str> = requests
        .iter()
        .map(|r| r["plan"].as_str().unwrap())
        .collect();
    for plan in [
        "rated badly, remediated",
        "approved at every level",
        "approved at level 1 of 2",
        "rated well, closed",
        "left alone: deemed accepted",
        "accepted, long past its deadline",
    ] {
        assert!(plans.contains(plan), "{plan} missing from {plans:?}");
    }
    // Overdue ones: deemed accepted, warned, carded, as each request's timeline shows.
    let with_timer = |timer: &str| {
        requests
            .iter()
            .filter(|r| {
                r["timers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t.as_str() == Some(timer))
            })
            .count()
    };
    let (warnings, yellow, red) = (
        with_timer("WarningRaised"),
        with_timer("YellowCardIssued"),
        with_timer("RedCardIssued"),
    );
    assert!(warnings >= 1 && yellow >= 1 && red >= 1, "{demo}");
    let deemed = requests
        .iter()
        .filter(|r| r["deemed_accepted"] == true)
        .count();
    assert!(deemed >= 1, "{demo}");
    assert_eq!(demo["red_cards"], red);
    let long_overdue = requests
        .iter()
        .find(|r| r["plan"] == "accepted, long past its deadline")
        .unwrap();
    assert_eq!(
        long_overdue["sla_status"], "SLA_STATUS_RED_CARD",
        "{long_overdue}"
    );
    // The requests still waiting arrived recently: not deemed accepted.
    for waiting in requests.iter().filter(|r| r["plan"] == "waiting") {
        assert_eq!(waiting["state"], "REQUEST_STATE_SUBMITTED", "{waiting}");
    }
    assert!(
        elapsed < std::time::Duration::from_secs(60),
        "the demo took {elapsed:?}"
    );

    // The manager reports show them.
    let manager = server.token("manager", &["*"], "mgr");
    let sla = server.json(&manager, &["report", "sla"]);
    let total = &sla["total"];
    assert_eq!(total["warnings"], warnings.to_string(), "{sla}");
    assert_eq!(total["yellow_cards"], yellow.to_string(), "{sla}");
    assert_eq!(total["red_cards"], red.to_string(), "{sla}");
    let satisfaction = server.json(&manager, &["report", "satisfaction"]);
    let remediation = &satisfaction["total"]["remediation"];
    assert_ne!(remediation["resolved"], "0", "{satisfaction}");
    let backlog = server.json(&manager, &["report", "backlog"]);
    assert_ne!(backlog["total"]["open"], "0", "{backlog}");
    let throughput = server.json(&manager, &["report", "throughput"]);
    assert_eq!(throughput["total"]["submitted"], "40");
    assert_ne!(throughput["total"]["closed"], "0", "{throughput}");
    let table = server.ok(&manager, &["--lang", "zh", "report", "satisfaction"]);
    assert!(
        table.contains("非常不满意") && table.contains("合计"),
        "{table}"
    );
    let table = server.ok(&manager, &["report", "sla"]);
    assert!(table.lines().count() >= 3, "{table}");

    // The overdue queue of the long-overdue request's site holds it.
    let site = long_overdue["site_id"].as_str().unwrap();
    let supervisor = server.token("supervisor", &[site], "sup-check");
    let overdue = server.json(&supervisor, &["queue", "--overdue", "--site", site]);
    assert!(
        overdue
            .to_string()
            .contains(long_overdue["request_id"].as_str().unwrap()),
        "{overdue}"
    );

    // The clock says where the demo left it; the same seed gives the same mix again.
    let admin = server.token("admin", &["*"], "ops");
    let clock = server.ok(&admin, &["clock"]);
    assert!(clock.contains("demo clock"), "{clock}");
    let again = anju()
        .env("ANJU_SERVER", server.url())
        .args([
            "--json",
            "demo",
            "--seed",
            "7",
            "--requests",
            "40",
            "--data-dir",
        ])
        .arg(server.data.path())
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", text(&again.stderr));
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    let mix = |demo: &Value| -> Vec<(String, String, String, String)> {
        let mut mix: Vec<_> = demo["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["plan"].to_string(),
                    r["service_code"].to_string(),
                    r["site_id"].to_string(),
                    r["state"].to_string(),
                )
            })
            .collect();
        mix.sort();
        mix
    };
    assert_eq!(mix(&demo), mix(&again), "the same seed, the same mix");
}

#[test]
fn demo_on_the_system_clock_says_what_it_cannot_show() {
    let server = Server::start();
    let output = anju()
        .env("ANJU_SERVER", server.url())
        .args(["--json", "demo", "--requests", "22", "--data-dir"])
        .arg(server.data.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let notes: Vec<String> = text(&output.stderr)
        .lines()
        .filter(|l| l.contains("anju-server --demo-clock"))
        .map(str::to_string)
        .collect();
    assert_eq!(notes.len(), 1, "one line says so: {}", text(&output.stderr));
    let demo: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(demo["demo_clock"], false);
    assert_eq!(demo["red_cards"], 0);
    let requests = demo["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 22);
    let states: std::collections::BTreeSet<&str> = requests
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    for state in [
        "SUBMITTED",
        "CLOSED",
        "DENIED",
        "IN_FULFILMENT",
        "WITHDRAWN",
    ] {
        assert!(
            states.contains(format!("REQUEST_STATE_{state}").as_str()),
            "{state} missing from {states:?}"
        );
    }
    // Left alone, but nobody waited five working days.
    let deemed = requests
        .iter()
        .find(|r| r["plan"] == "left alone: deemed accepted")
        .unwrap();
    assert_eq!(deemed["state"], "REQUEST_STATE_SUBMITTED");
    assert_eq!(deemed["deemed_accepted"], false);
}

#[test]
fn relay_check_says_when_nats_is_unreachable_or_the_stream_missing() {
    let server = Server::start();
    let admin = server.token("admin", &["*"], "ops");
    let closed = format!("nats://127.0.0.1:{}", anju_testkit::free_port());
    let output = server.run(
        &admin,
        &[
            "relay",
            "check",
            "--nats-url",
            &closed,
            "--node-id",
            "node-1",
        ],
    );
    assert_fails(
        &output,
        6,
        &["cannot connect to nats", "is nats-server running"],
    );
    assert!(
        output.stdout.is_empty(),
        "no report: {}",
        text(&output.stdout)
    );

    let nats = anju_testkit::NatsServer::start();
    let output = server.run(
        &admin,
        &[
            "relay",
            "check",
            "--nats-url",
            &nats.url(),
            "--node-id",
            "node-1",
        ],
    );
    assert_fails(&output, 3, &["stream ANJU_EVENTS does not exist"]);
    let output = server.run(
        &admin,
        &[
            "relay",
            "check",
            "--nats-url",
            "nats://[::1",
            "--node-id",
            "node-1",
        ],
    );
    assert_fails(&output, 2, &["invalid nats address"]);
}
