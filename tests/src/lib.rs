//! Support for anju's system tests: the released binaries, run as processes from a
//! working directory of their own, the way an operator runs them.
//!
//! The binaries are the ones `cargo test --workspace` (`./scripts/test`) builds beside
//! this package's test executables, in the same profile; `ANJU_SERVER_BIN` and
//! `ANJU_CLI_BIN` name others.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A binary of the workspace: `variable` if set, else `name` in the directory cargo put
/// this test executable's parent in (`target/<profile>/`).
pub fn workspace_binary(name: &str, variable: &str) -> PathBuf {
    if let Ok(path) = std::env::var(variable) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lies in target/<profile>/deps");
    let binary = profile_dir.join(name);
    assert!(
        binary.exists(),
        "{} is missing: run the whole suite (`./scripts/test`, which builds every binary \
         of the workspace in this profile), build it (`cargo build --release --bin {name}`), \
         or set {variable}",
        binary.display()
    );
    binary
}

/// A command with no `ANJU_*` variable inherited from the machine running the tests, so
/// the process sees only what the test gives it.
pub fn clean_command(program: &Path, working_dir: &Path) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ANJU_") {
            command.env_remove(name);
        }
    }
    // No CLI profile file of the machine's user either.
    command.env("XDG_CONFIG_HOME", working_dir.join(".no-config"));
    command.env("HOME", working_dir);
    command.current_dir(working_dir);
    command
}

/// The environment of an anju-server started from `home` with the embedded defaults
/// (`./data`), listening on free ports and publishing to `nats_url` (`none`: no NATS).
pub fn server_command(binary: &Path, home: &Path, nats_url: &str) -> Command {
    let mut command = clean_command(binary, home);
    command
        .env("ANJU_GRPC_ADDR", "127.0.0.1:0")
        .env("ANJU_HTTP_ADDR", "127.0.0.1:0")
        .env("ANJU_NATS_URL", nats_url);
    command
}

/// Starts anju-server from `home` (see [`server_command`]) and waits until it listens.
pub fn start_server(binary: &Path, home: &Path, nats_url: &str) -> ServerProcess {
    ServerProcess::start(server_command(binary, home, nats_url))
}

/// Runs `anju token issue ARGS...` from `home`; returns the token.
pub fn issue_token(cli: &Path, home: &Path, args: &[&str]) -> String {
    let output = clean_command(cli, home)
        .args(["token", "issue"])
        .args(args)
        .output()
        .expect("anju token issue runs");
    assert!(
        output.status.success(),
        "anju token issue {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// A running anju-server; its stderr is collected line by line. Killed (SIGKILL) if the
/// test drops it still running.
pub struct ServerProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// The gRPC address the server printed, as `http://HOST:PORT`.
    pub grpc_url: String,
    /// The metrics address the server printed, as `HOST:PORT`.
    pub http_addr: String,
}

impl ServerProcess {
    /// Starts `command` and waits until the server prints where it listens.
    pub fn start(mut command: Command) -> ServerProcess {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("anju-server starts");
        let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (addresses_tx, addresses_rx) = mpsc::channel();
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in stderr.lines().map_while(Result::ok) {
                    // "anju-server: grpc on HOST:PORT, metrics on http://HOST:PORT/metrics"
                    if let Some(rest) = line.split("grpc on ").nth(1) {
                        let grpc = rest.split(',').next().unwrap_or_default().to_string();
                        let http = rest
                            .split("metrics on http://")
                            .nth(1)
                            .and_then(|r| r.split('/').next())
                            .unwrap_or_default()
                            .to_string();
                        let _ = addresses_tx.send((grpc, http));
                    }
                    lines.lock().unwrap().push(line);
                }
            })
        };
        let (grpc, http) = match addresses_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addresses) => addresses,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "anju-server did not print its addresses within 60 s; it printed:\n{}",
                    lines.lock().unwrap().join("\n")
                );
            }
        };
        ServerProcess {
            child,
            lines,
            reader: Some(reader),
            grpc_url: format!("http://{grpc}"),
            http_addr: http,
        }
    }

    /// What the server printed on stderr so far.
    pub fn printed(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits (up to `within`) for the process to exit; returns its
    /// status and everything it printed.
    pub fn terminate(mut self, within: Duration) -> (ExitStatus, Vec<String>) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for anju-server") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "anju-server did not stop within {within:?} of SIGTERM; it printed:\n{}",
                    self.printed().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (status, self.printed())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `anju` CLI, run from one working directory against one server.
pub struct Cli {
    pub binary: PathBuf,
    pub working_dir: PathBuf,
    pub server: String,
}

impl Cli {
    /// Runs `anju --server URL [--token T] ARGS...`.
    pub fn run(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut command = clean_command(&self.binary, &self.working_dir);
        command.arg("--server").arg(&self.server);
        if let Some(token) = token {
            command.arg("--token").arg(token);
        }
        command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("anju runs")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, token: Option<&str>, args: &[&str]) -> String {
        let output = self.run(token, args);
        assert!(
            output.status.success(),
            "anju {args:?} failed with {}:\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("anju prints UTF-8")
    }

    /// Runs a command with `--json` that must succeed; returns its answer.
    pub fn json(&self, token: &str, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.ok(Some(token), &all);
        serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("anju {args:?} printed no JSON ({e}): {text}"))
    }

    /// The code of the first choice of `field` in `service`'s definition
    /// (`anju services show`).
    pub fn first_choice(&self, token: &str, service: &str, field: &str) -> String {
        let definition = self.json(token, &["services", "show", service]);
        definition["fields"]
            .as_array()
            .and_then(|fields| fields.iter().find(|f| f["key"] == field))
            .and_then(|field| field["choices"][0]["code"].as_str())
            .unwrap_or_else(|| panic!("{service} has no choice for `{field}`: {definition}"))
            .to_string()
    }
}

/// `GET path` over plain HTTP/1.0; returns the status line and the body.
pub fn http_get(address: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).expect("connect to the HTTP port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, body.to_string())
}

/// The value of an unlabelled Prometheus sample, if `body` has it.
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok())?
        })
}

/// Splits a command line printed for people to copy: words separated by spaces, with
/// single quotes grouping (as a shell would read `--site '*'`).
pub fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_group_single_quotes_and_drop_them() {
        assert_eq!(
            shell_words("  anju token issue --site '*' --subject 'a b'  "),
            ["anju", "token", "issue", "--site", "*", "--subject", "a b"]
        );
        assert_eq!(shell_words("--site ''"), ["--site", ""]);
    }

    #[test]
    fn metric_reads_unlabelled_samples_only() {
        let body =
            "# HELP anju_up up\n# TYPE anju_up gauge\nanju_up 1\nanju_x{a=\"b\"} 2\nanju_pos 41\n";
        assert_eq!(metric(body, "anju_up"), Some(1.0));
        assert_eq!(metric(body, "anju_pos"), Some(41.0));
        assert_eq!(metric(body, "anju_x"), None);
        assert_eq!(metric(body, "anju_missing"), None);
    }
}
