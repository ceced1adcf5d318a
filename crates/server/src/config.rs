//! The server's configuration: defaults, an optional TOML file, `ANJU_*` environment
//! variables and command-line flags, later ones winning.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Value of `nats_url` that turns the NATS relay off.
pub const NATS_DISABLED: &str = "none";

/// The configuration the server runs with, every value resolved. Its `Debug` shows
/// `nats_url` redacted.
#[derive(Clone, PartialEq)]
pub struct Config {
    /// Where the event log, indexes and the token secret live.
    pub data_dir: PathBuf,
    /// gRPC and gRPC-Web listener; port 0 picks a free port.
    pub grpc_addr: SocketAddr,
    /// Plain HTTP listener for `/metrics` and `/healthz`; port 0 picks a free port.
    pub http_addr: SocketAddr,
    /// NATS server the relay publishes to; `None` when configured as `none`.
    pub nats_url: Option<String>,
    /// This node's name in NATS subjects and headers; unique among the nodes that share
    /// the stream.
    pub node_id: String,
    /// Replicas of the JetStream stream the relay creates (3 on a 3-node cluster).
    pub nats_replicas: usize,
    /// Token signing secret; `None` means `<data_dir>/token-secret`, created on first
    /// start.
    pub secret_file: Option<PathBuf>,
    pub log_format: LogFormat,
    /// tracing-subscriber filter, e.g. `info` or `anju_server_core=debug,info`.
    pub log_filter: String,
    /// Calls served at once across all connections; more are refused with
    /// RESOURCE_EXHAUSTED instead of queueing.
    pub concurrency_limit: usize,
    /// Longest a unary call may run (a shorter client deadline wins).
    pub request_timeout: Duration,
    /// Largest request or response message, in bytes.
    pub max_message_bytes: usize,
    /// Origins browsers may call gRPC-Web from; `*` allows any.
    pub cors_allowed_origins: Vec<String>,
    /// How long a stop waits for in-flight calls and streams before closing them.
    pub shutdown_grace: Duration,
    /// `GetRequestStatus` calls one client (token subject, else peer address) may make
    /// per minute; a burst of the same size is allowed. More get RESOURCE_EXHAUSTED.
    pub status_lookups_per_minute: u32,
    /// `FindRequestsByIdentity` calls one staff member (token subject) may make per
    /// minute; a burst of the same size is allowed. More get RESOURCE_EXHAUSTED.
    pub identity_lookups_per_minute: u32,
    /// Run on the demo clock: real time plus an offset an admin moves forward with
    /// `AdminService.AdvanceClock`, kept in `<data_dir>/demo-clock`. For demonstrations
    /// and training only; off, the server runs on the system clock.
    pub demo_clock: bool,
    /// A log segment file is closed and the next one started once it would grow past
    /// this many bytes.
    pub segment_size: u64,
    /// How often the read models write their snapshot (when something changed).
    pub snapshot_interval: Duration,
}

impl std::fmt::Debug for Config {
    /// As derived, with `nats_url`'s passwords and tokens as `***`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Config {
            data_dir,
            grpc_addr,
            http_addr,
            nats_url,
            node_id,
            nats_replicas,
            secret_file,
            log_format,
            log_filter,
            concurrency_limit,
            request_timeout,
            max_message_bytes,
            cors_allowed_origins,
            shutdown_grace,
            status_lookups_per_minute,
            identity_lookups_per_minute,
            demo_clock,
            segment_size,
            snapshot_interval,
        } = self;
        f.debug_struct("Config")
            .field("data_dir", data_dir)
            .field("grpc_addr", grpc_addr)
            .field("http_addr", http_addr)
            .field(
                "nats_url",
                &nats_url.as_deref().map(anju_relay::shown_nats_url),
            )
            .field("node_id", node_id)
            .field("nats_replicas", nats_replicas)
            .field("secret_file", secret_file)
            .field("log_format", log_format)
            .field("log_filter", log_filter)
            .field("concurrency_limit", concurrency_limit)
            .field("request_timeout", request_timeout)
            .field("max_message_bytes", max_message_bytes)
            .field("cors_allowed_origins", cors_allowed_origins)
            .field("shutdown_grace", shutdown_grace)
            .field("status_lookups_per_minute", status_lookups_per_minute)
            .field("identity_lookups_per_minute", identity_lookups_per_minute)
            .field("demo_clock", demo_clock)
            .field("segment_size", segment_size)
            .field("snapshot_interval", snapshot_interval)
            .finish()
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("./data"),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 9464)),
            nats_url: Some("nats://127.0.0.1:4222".to_string()),
            node_id: default_node_id(),
            nats_replicas: 1,
            secret_file: None,
            log_format: LogFormat::Text,
            log_filter: "info".to_string(),
            concurrency_limit: 256,
            request_timeout: Duration::from_secs(30),
            max_message_bytes: 4 * 1024 * 1024,
            cors_allowed_origins: vec!["*".to_string()],
            shutdown_grace: Duration::from_secs(30),
            status_lookups_per_minute: 60,
            identity_lookups_per_minute: 20,
            demo_clock: false,
            segment_size: 64 << 20,
            snapshot_interval: Duration::from_secs(60),
        }
    }
}

impl Config {
    /// Defaults with both listeners on loopback port 0 and the given data directory:
    /// what tests spawn.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            nats_url: None,
            shutdown_grace: Duration::from_secs(5),
            ..Config::default()
        }
    }

    /// Resolves flags and environment (already merged by clap in `args`) over the
    /// TOML file named by `--config`, over the defaults.
    pub fn load(args: &ServerArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        let mut config = Config::default();
        file.apply_to(&mut config)?;
        args.apply_to(&mut config)?;
        config.validate()?;
        Ok(config)
    }

    /// The token secret's file.
    pub fn secret_path(&self) -> PathBuf {
        self.secret_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join(anju_auth::SECRET_FILE_NAME))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_string(),
            })
        };
        if self.concurrency_limit == 0 {
            return invalid("concurrency_limit", "must be at least 1");
        }
        if self.node_id.is_empty()
            || !self
                .node_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return invalid(
                "node_id",
                "must be ASCII letters, digits, '-' or '_' (it is a NATS subject token)",
            );
        }
        if let Some(url) = &self.nats_url {
            if let Err(error) = anju_relay::NatsAddress::parse(url) {
                return Err(ConfigError::Invalid {
                    key: "nats_url",
                    message: format!("{error} (or `none` to publish nothing)"),
                });
            }
        }
        if !matches!(self.nats_replicas, 1..=5) {
            return invalid("nats_replicas", "must be between 1 and 5");
        }
        if self.max_message_bytes < 1024 {
            return invalid("max_message_bytes", "must be at least 1024");
        }
        if self.request_timeout.is_zero() {
            return invalid("request_timeout", "must be longer than zero");
        }
        if self.status_lookups_per_minute == 0 {
            return invalid("status_lookups_per_minute", "must be at least 1");
        }
        if self.identity_lookups_per_minute == 0 {
            return invalid("identity_lookups_per_minute", "must be at least 1");
        }
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&self.segment_size) {
            return invalid(
                "segment_size",
                "must be between 4096 (4 KiB) and 1099511627776 (1 TiB)",
            );
        }
        if self.snapshot_interval.is_zero() {
            return invalid("snapshot_interval", "must be longer than zero");
        }
        if self.cors_allowed_origins.is_empty() {
            return invalid(
                "cors_allowed_origins",
                "name at least one origin, or * for any",
            );
        }
        Ok(())
    }
}

/// The smallest and largest `segment_size` the event log accepts.
const MIN_SEGMENT_SIZE: u64 = 4096;
const MAX_SEGMENT_SIZE: u64 = 1 << 40;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn parse_duration_value(key: &'static str, text: &str) -> Result<Duration, ConfigError> {
    anju_auth::parse_duration(text).map_err(|error| ConfigError::Invalid {
        key,
        message: error.to_string(),
    })
}

/// The machine's host name made a NATS subject token (its first label, other characters
/// than letters, digits, `-` and `_` as `-`), or `anju-1` when it cannot be read.
fn default_node_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| node_id_from_host_name(&name))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "anju-1".to_string())
}

fn node_id_from_host_name(name: &str) -> String {
    name.trim()
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn nats_url_value(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.eq_ignore_ascii_case(NATS_DISABLED)).then(|| text.to_string())
}

/// The keys of the TOML file; every one is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    grpc_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    nats_url: Option<String>,
    node_id: Option<String>,
    nats_replicas: Option<usize>,
    secret_file: Option<PathBuf>,
    log_format: Option<LogFormat>,
    log_filter: Option<String>,
    concurrency_limit: Option<usize>,
    request_timeout: Option<String>,
    max_message_bytes: Option<usize>,
    cors_allowed_origins: Option<Vec<String>>,
    shutdown_grace: Option<String>,
    status_lookups_per_minute: Option<u32>,
    identity_lookups_per_minute: Option<u32>,
    demo_clock: Option<bool>,
    segment_size: Option<u64>,
    snapshot_interval: Option<String>,
}

impl FileConfig {
    fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    fn apply_to(self, config: &mut Config) -> Result<(), ConfigError> {
        set(&mut config.data_dir, self.data_dir);
        set(&mut config.grpc_addr, self.grpc_addr);
        set(&mut config.http_addr, self.http_addr);
        if let Some(url) = self.nats_url {
            config.nats_url = nats_url_value(&url);
        }
        set(&mut config.node_id, self.node_id);
        set(&mut config.nats_replicas, self.nats_replicas);
        if self.secret_file.is_some() {
            config.secret_file = self.secret_file;
        }
        set(&mut config.log_format, self.log_format);
        set(&mut config.log_filter, self.log_filter);
        set(&mut config.concurrency_limit, self.concurrency_limit);
        if let Some(text) = self.request_timeout {
            config.request_timeout = parse_duration_value("request_timeout", &text)?;
        }
        set(&mut config.max_message_bytes, self.max_message_bytes);
        set(&mut config.cors_allowed_origins, self.cors_allowed_origins);
        if let Some(text) = self.shutdown_grace {
            config.shutdown_grace = parse_duration_value("shutdown_grace", &text)?;
        }
        set(
            &mut config.status_lookups_per_minute,
            self.status_lookups_per_minute,
        );
        set(
            &mut config.identity_lookups_per_minute,
            self.identity_lookups_per_minute,
        );
        set(&mut config.demo_clock, self.demo_clock);
        set(&mut config.segment_size, self.segment_size);
        if let Some(text) = self.snapshot_interval {
            config.snapshot_interval = parse_duration_value("snapshot_interval", &text)?;
        }
        Ok(())
    }
}

fn set<T>(target: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *target = value;
    }
}

/// Command-line flags of `anju-server`; each also reads an `ANJU_*` variable. Unset
/// ones fall back to the config file, then to the defaults.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerArgs {
    /// TOML config file.
    #[arg(long, env = "ANJU_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory [default: ./data].
    #[arg(long, env = "ANJU_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051].
    #[arg(long, env = "ANJU_GRPC_ADDR", value_name = "HOST:PORT")]
    pub grpc_addr: Option<SocketAddr>,
    /// HTTP listen address for /metrics and /healthz [default: 127.0.0.1:9464].
    #[arg(long, env = "ANJU_HTTP_ADDR", value_name = "HOST:PORT")]
    pub http_addr: Option<SocketAddr>,
    /// NATS server URL, or `none` [default: nats://127.0.0.1:4222].
    #[arg(long, env = "ANJU_NATS_URL", value_name = "URL")]
    pub nats_url: Option<String>,
    /// This node's name in NATS subjects [default: the host name].
    #[arg(long, env = "ANJU_NODE_ID", value_name = "NAME")]
    pub node_id: Option<String>,
    /// Replicas of the ANJU_EVENTS stream [default: 1].
    #[arg(long, env = "ANJU_NATS_REPLICAS", value_name = "N")]
    pub nats_replicas: Option<usize>,
    /// Token secret file [default: <data-dir>/token-secret].
    #[arg(long, env = "ANJU_SECRET_FILE", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Log format [default: text].
    #[arg(long, env = "ANJU_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, tracing-subscriber syntax [default: info].
    #[arg(long, env = "ANJU_LOG", value_name = "FILTER")]
    pub log_filter: Option<String>,
    /// Calls served at once; more get RESOURCE_EXHAUSTED [default: 256].
    #[arg(long, env = "ANJU_CONCURRENCY_LIMIT", value_name = "N")]
    pub concurrency_limit: Option<usize>,
    /// Longest a call may run, e.g. 30s [default: 30s].
    #[arg(long, env = "ANJU_REQUEST_TIMEOUT", value_name = "DURATION")]
    pub request_timeout: Option<String>,
    /// Largest message in bytes [default: 4194304].
    #[arg(long, env = "ANJU_MAX_MESSAGE_BYTES", value_name = "BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Origins allowed to call gRPC-Web, comma-separated, or * [default: *].
    #[arg(
        long = "cors-allowed-origin",
        env = "ANJU_CORS_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub cors_allowed_origins: Vec<String>,
    /// How long a stop waits for in-flight calls, e.g. 30s [default: 30s].
    #[arg(long, env = "ANJU_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
    /// Status look-ups per client per minute [default: 60].
    #[arg(long, env = "ANJU_STATUS_LOOKUPS_PER_MINUTE", value_name = "N")]
    pub status_lookups_per_minute: Option<u32>,
    /// Identity-number look-ups per staff member per minute [default: 20].
    #[arg(long, env = "ANJU_IDENTITY_LOOKUPS_PER_MINUTE", value_name = "N")]
    pub identity_lookups_per_minute: Option<u32>,
    /// Demonstrations only: run on a clock admins can move forward
    /// (`anju demo`, AdminService.AdvanceClock); `--demo-clock=false` turns a config
    /// file's `demo_clock = true` off [default: false].
    #[arg(
        long,
        env = "ANJU_DEMO_CLOCK",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub demo_clock: Option<bool>,
    /// Bytes after which a log segment file is closed and the next one started
    /// [default: 67108864].
    #[arg(long, env = "ANJU_SEGMENT_SIZE", value_name = "BYTES")]
    pub segment_size: Option<u64>,
    /// How often the read models write their snapshot, e.g. 60s [default: 60s].
    #[arg(long, env = "ANJU_SNAPSHOT_INTERVAL", value_name = "DURATION")]
    pub snapshot_interval: Option<String>,
}

impl ServerArgs {
    fn apply_to(&self, config: &mut Config) -> Result<(), ConfigError> {
        set(&mut config.data_dir, self.data_dir.clone());
        set(&mut config.grpc_addr, self.grpc_addr);
        set(&mut config.http_addr, self.http_addr);
        if let Some(url) = &self.nats_url {
            config.nats_url = nats_url_value(url);
        }
        set(&mut config.node_id, self.node_id.clone());
        set(&mut config.nats_replicas, self.nats_replicas);
        if self.secret_file.is_some() {
            config.secret_file = self.secret_file.clone();
        }
        set(&mut config.log_format, self.log_format);
        set(&mut config.log_filter, self.log_filter.clone());
        set(&mut config.concurrency_limit, self.concurrency_limit);
        if let Some(text) = &self.request_timeout {
            config.request_timeout = parse_duration_value("request_timeout", text)?;
        }
        set(&mut config.max_message_bytes, self.max_message_bytes);
        if !self.cors_allowed_origins.is_empty() {
            config.cors_allowed_origins = self.cors_allowed_origins.clone();
        }
        if let Some(text) = &self.shutdown_grace {
            config.shutdown_grace = parse_duration_value("shutdown_grace", text)?;
        }
        set(
            &mut config.status_lookups_per_minute,
            self.status_lookups_per_minute,
        );
        set(
            &mut config.identity_lookups_per_minute,
            self.identity_lookups_per_minute,
        );
        set(&mut config.demo_clock, self.demo_clock);
        set(&mut config.segment_size, self.segment_size);
        if let Some(text) = &self.snapshot_interval {
            config.snapshot_interval = parse_duration_value("snapshot_interval", text)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_docs() {
        let config = Config::load(&ServerArgs::default()).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.grpc_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:9464");
        assert_eq!(config.nats_url.as_deref(), Some("nats://127.0.0.1:4222"));
        assert_eq!(config.secret_path(), PathBuf::from("./data/token-secret"));
        assert_eq!(config.segment_size, 64 << 20);
        assert_eq!(config.snapshot_interval, Duration::from_secs(60));
    }

    #[test]
    fn segment_size_and_snapshot_interval_are_read_and_checked() {
        let load = |segment_size: u64, snapshot_interval: &str| {
            Config::load(&ServerArgs {
                segment_size: Some(segment_size),
                snapshot_interval: Some(snapshot_interval.to_string()),
                ..ServerArgs::default()
            })
        };
        let config = load(65536, "250ms").unwrap();
        assert_eq!(config.segment_size, 65536);
        assert_eq!(config.snapshot_interval, Duration::from_millis(250));
        let small = load(4095, "1s").unwrap_err();
        assert!(small.to_string().contains("segment_size"), "{small}");
        let zero = load(65536, "0s").unwrap_err();
        assert!(zero.to_string().contains("snapshot_interval"), "{zero}");
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anju.toml");
        std::fs::write(
            &path,
            "data_dir = \"/srv/anju\"\ngrpc_addr = \"0.0.0.0:6000\"\nnats_url = \"none\"\nrequest_timeout = \"5s\"\n",
        )
        .unwrap();
        let args = ServerArgs {
            config: Some(path),
            grpc_addr: Some("127.0.0.1:7000".parse().unwrap()),
            ..ServerArgs::default()
        };
        let config = Config::load(&args).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/srv/anju"));
        assert_eq!(config.grpc_addr.to_string(), "127.0.0.1:7000");
        assert_eq!(config.nats_url, None);
        assert_eq!(config.request_timeout, Duration::from_secs(5));
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:9464");
    }

    #[test]
    fn nats_urls_take_lists_and_credentials_and_a_bad_one_is_refused_without_its_password() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            server: ServerArgs,
        }
        let parse = |url: &str| {
            Config::load(
                &Cli::try_parse_from(["anju-server", "--nats-url", url])
                    .unwrap()
                    .server,
            )
        };
        let listed = "nats://anju:pw@10.0.3.7:4222,nats://anju:pw@10.0.3.8:4222";
        let config = parse(listed).unwrap();
        assert_eq!(config.nats_url.as_deref(), Some(listed));
        let shown = format!("{config:?}");
        assert!(
            shown.contains("nats://anju:***@10.0.3.7:4222") && !shown.contains(":pw@"),
            "{shown}"
        );
        match parse("https://anju:hunter2@10.0.3.7:4222") {
            Err(ConfigError::Invalid { key, message }) => {
                assert_eq!(key, "nats_url");
                assert!(message.contains("scheme `https`"), "{message}");
                assert!(!message.contains("hunter2"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_default_node_id_is_the_host_name_made_a_subject_token() {
        assert_eq!(node_id_from_host_name("vm\n"), "vm");
        assert_eq!(node_id_from_host_name("anju-1.county.example\n"), "anju-1");
        assert_eq!(node_id_from_host_name("社区 kiosk"), "---kiosk");
        assert_eq!(node_id_from_host_name(""), "");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anju.toml");
        std::fs::write(&path, "grpc_port = 1\n").unwrap();
        let args = ServerArgs {
            config: Some(path),
            ..ServerArgs::default()
        };
        assert!(matches!(
            Config::load(&args),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn flags_parse_lists_and_none() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            server: ServerArgs,
        }
        let cli = Cli::try_parse_from([
            "anju-server",
            "--nats-url",
            "none",
            "--cors-allowed-origin",
            "https://a.example,https://b.example",
        ])
        .unwrap();
        let config = Config::load(&cli.server).unwrap();
        assert_eq!(config.nats_url, None);
        assert_eq!(
            config.cors_allowed_origins,
            vec!["https://a.example", "https://b.example"]
        );
        assert!(!config.demo_clock, "the system clock unless asked");
    }

    #[test]
    fn the_demo_clock_comes_from_the_flag_the_file_or_the_environment() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            server: ServerArgs,
        }
        let parse = |args: &[&str]| Config::load(&Cli::try_parse_from(args).unwrap().server);
        assert!(parse(&["anju-server", "--demo-clock"]).unwrap().demo_clock);
        assert!(
            !parse(&["anju-server", "--demo-clock=false"])
                .unwrap()
                .demo_clock
        );
        assert!(Cli::try_parse_from(["anju-server", "--demo-clock=soon"]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anju.toml");
        std::fs::write(&path, "demo_clock = true\n").unwrap();
        let file = path.to_str().unwrap();
        assert!(
            parse(&["anju-server", "--config", file])
                .unwrap()
                .demo_clock
        );
        assert!(
            !parse(&["anju-server", "--config", file, "--demo-clock=false"])
                .unwrap()
                .demo_clock,
            "the flag wins over the file"
        );
        std::fs::write(&path, "demo_clock = \"yes\"\n").unwrap();
        assert!(matches!(
            parse(&["anju-server", "--config", file]),
            Err(ConfigError::Parse { .. })
        ));
    }
}
