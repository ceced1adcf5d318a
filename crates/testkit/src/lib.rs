//! Test helpers shared by anju's crates: a real `nats-server` with JetStream on a free
//! port and a temporary store, which a test can kill, restart and wipe; and a small
//! tmpfs to fill for full-disk tests; and the bytes of every file under a directory, to
//! show that something wrote nothing.

mod tmpfs;
pub use tmpfs::Tmpfs;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Finds the pinned nats-server: `ANJU_NATS_SERVER` (set by `scripts/test`), else the copy
/// `scripts/test` installs under `.tools/`, else `nats-server` on the PATH.
pub fn nats_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("ANJU_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let pinned = workspace.join(".tools/nats-2.15.1/bin/nats-server");
    if pinned.exists() {
        return pinned;
    }
    PathBuf::from("nats-server")
}

/// A port nobody listens on right now. The small race between returning it and the
/// caller binding it is acceptable in tests.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// A nats-server child process with JetStream on, on its own port and store directory.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    extra_args: Vec<String>,
}

impl NatsServer {
    /// Starts a nats-server with JetStream and waits until it accepts connections.
    pub fn start() -> NatsServer {
        NatsServer::start_with_args(&[])
    }

    /// Starts with extra settings inside the configuration's `jetstream { }` block, for
    /// example `sync_interval: always`.
    pub fn start_with_jetstream_settings(settings: &str) -> NatsServer {
        let store = tempfile::tempdir().expect("temporary JetStream store");
        let config = store.path().join("nats.conf");
        let store_dir = store.path().join("store");
        std::fs::write(
            &config,
            format!(
                "jetstream {{\n  store_dir: {:?}\n  {settings}\n}}\n",
                store_dir
            ),
        )
        .expect("write the nats-server configuration");
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            store,
            extra_args: vec!["-c".to_string(), config.display().to_string()],
        };
        server.spawn();
        server
    }

    /// Starts with extra command-line arguments (for example a config file).
    pub fn start_with_args(extra_args: &[&str]) -> NatsServer {
        let store = tempfile::tempdir().expect("temporary JetStream store");
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            store,
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let binary = nats_server_binary();
        let child = Command::new(&binary)
            .arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-js")
            .args(self.store_args())
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start {}: {error}; run the tests with scripts/test, which installs the pinned nats-server",
                    binary.display()
                )
            });
        self.child = Some(child);
        self.wait_until_listening();
    }

    /// `-sd <store>` unless a configuration file names the store itself.
    fn store_args(&self) -> Vec<String> {
        if self.extra_args.iter().any(|arg| arg == "-c") {
            Vec::new()
        } else {
            vec!["-sd".to_string(), self.store.path().display().to_string()]
        }
    }

    fn wait_until_listening(&self) {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nats-server did not listen on {address} within 20 s");
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// Kills the server with SIGKILL and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Kills the server, deletes its whole store, and starts it again empty.
    pub fn wipe_and_restart(&mut self) {
        self.kill();
        let entries = std::fs::read_dir(self.store.path()).expect("read the JetStream store");
        for entry in entries.flatten() {
            let path = entry.path();
            if path
                .extension()
                .is_some_and(|extension| extension == "conf")
            {
                continue;
            }
            if path.is_dir() {
                std::fs::remove_dir_all(&path).expect("remove a store directory");
            } else {
                std::fs::remove_file(&path).expect("remove a store file");
            }
        }
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every file under `dir` with its bytes, to compare before and after a command that must
/// write nothing.
pub fn files_under(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut found = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_server_starts_restarts_and_wipes() {
        let mut server = NatsServer::start();
        assert!(server.is_running());
        let address = SocketAddr::from(([127, 0, 0, 1], server.port()));
        assert!(TcpStream::connect(address).is_ok());
        server.kill();
        assert!(!server.is_running());
        assert!(
            TcpStream::connect(address).is_err(),
            "killed server still listens"
        );
        server.wipe_and_restart();
        assert!(server.is_running());
        assert!(TcpStream::connect(address).is_ok());
    }

    #[test]
    fn nats_server_takes_jetstream_settings_from_a_configuration_file() {
        let mut server = NatsServer::start_with_jetstream_settings("sync_interval: always");
        assert!(server.is_running());
        assert!(server.store_dir().join("nats.conf").exists());
        server.wipe_and_restart();
        assert!(server.is_running(), "the configuration survives a wipe");
    }
}
