//! Runs the real `anju` binary: token issue against a secret file, and the health
//! check against an address nothing listens on.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anju_auth::{Role, Secret};

fn anju() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_anju"));
    for name in [
        "ANJU_SERVER",
        "ANJU_TOKEN",
        "ANJU_DATA_DIR",
        "ANJU_SECRET_FILE",
    ] {
        command.env_remove(name);
    }
    command
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
            "elderly-care",
            "--subject",
            "wang.fang",
            "--ttl",
            "2h",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = anju_auth::verify(&loaded.secret, token.trim(), now).unwrap();
    assert_eq!(claims.role, Role::Caseworker);
    assert_eq!(claims.sub, "wang.fang");
    assert_eq!(claims.sites, vec!["site-1", "site-2"]);
    assert_eq!(claims.categories, vec!["elderly-care"]);
    assert!(
        claims.exp >= now + 7100 && claims.exp <= now + 7300,
        "exp {}",
        claims.exp
    );
    assert!(anju_auth::verify(&Secret::from_bytes(vec![0; 32]), token.trim(), now).is_err());
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
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("start anju-server once"), "{stderr}");

    let output = anju()
        .args(["token", "issue", "--role", "root", "--subject", "me"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown role"));
}

#[test]
fn health_fails_clearly_when_nothing_listens() {
    // Bind and drop a listener to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = anju()
        .args([
            "health",
            "--timeout",
            "2s",
            "--server",
            &format!("http://127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("connecting to"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
