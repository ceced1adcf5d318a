//! anju-insight's configuration: defaults, an optional TOML file, `ANJU_INSIGHT_*`
//! environment variables and command-line flags, later ones winning. The variables have
//! their own prefix so a shell or host that also runs anju-server (`ANJU_*`) never
//! points insight at the server's data directory by accident.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anju_server_core::LogFormat;
use serde::Deserialize;

/// The configuration anju-insight runs with, every value resolved. Its `Debug` shows
/// `nats_url` redacted.
#[derive(Clone, PartialEq)]
pub struct InsightConfig {
    /// Where the province-wide read models and each node's position live.
    pub data_dir: PathBuf,
    /// gRPC (and gRPC-Web) listener for ManagerService, health and reflection.
    pub grpc_addr: SocketAddr,
    /// Plain HTTP listener for `/metrics` and `/healthz`.
    pub http_addr: SocketAddr,
    /// NATS server(s) carrying `ANJU_EVENTS`; several separated by commas.
    pub nats_url: String,
    /// The durable JetStream consumer's name; two insight instances must not share one.
    pub consumer_name: String,
    /// The anju-server nodes' token secret; `None` means `<data_dir>/token-secret`.
    /// Never created here: a secret of insight's own would match no token.
    pub secret_file: Option<PathBuf>,
    pub log_format: LogFormat,
    /// tracing-subscriber filter, e.g. `info`.
    pub log_filter: String,
    /// Calls served at once; more get RESOURCE_EXHAUSTED.
    pub concurrency_limit: usize,
    /// Longest a call may run.
    pub request_timeout: Duration,
    /// Origins browsers may call gRPC-Web from; `*` allows any.
    pub cors_allowed_origins: Vec<String>,
    /// How long a stop waits for in-flight calls.
    pub shutdown_grace: Duration,
}

impl std::fmt::Debug for InsightConfig {
    /// As derived, with `nats_url`'s passwords and tokens as `***`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let InsightConfig {
            data_dir,
            grpc_addr,
            http_addr,
            nats_url,
            consumer_name,
            secret_file,
            log_format,
            log_filter,
            concurrency_limit,
            request_timeout,
            cors_allowed_origins,
            shutdown_grace,
        } = self;
        f.debug_struct("InsightConfig")
            .field("data_dir", data_dir)
            .field("grpc_addr", grpc_addr)
            .field("http_addr", http_addr)
            .field("nats_url", &anju_relay::shown_nats_url(nats_url))
            .field("consumer_name", consumer_name)
            .field("secret_file", secret_file)
            .field("log_format", log_format)
            .field("log_filter", log_filter)
            .field("concurrency_limit", concurrency_limit)
            .field("request_timeout", request_timeout)
            .field("cors_allowed_origins", cors_allowed_origins)
            .field("shutdown_grace", shutdown_grace)
            .finish()
    }
}

impl Default for InsightConfig {
    fn default() -> InsightConfig {
        InsightConfig {
            data_dir: PathBuf::from("./insight-data"),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50061)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 9465)),
            nats_url: "nats://127.0.0.1:4222".to_string(),
            consumer_name: "anju-insight".to_string(),
            secret_file: None,
            log_format: LogFormat::Text,
            log_filter: "info".to_string(),
            concurrency_limit: 256,
            request_timeout: Duration::from_secs(30),
            cors_allowed_origins: vec!["*".to_string()],
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

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

impl InsightConfig {
    /// Resolves flags and environment (merged by clap in `args`) over the TOML file
    /// named by `--config`, over the defaults.
    pub fn load(args: &InsightArgs) -> Result<InsightConfig, ConfigError> {
        let mut config = InsightConfig::default();
        if let Some(path) = &args.config {
            FileConfig::read(path)?.apply_to(&mut config)?;
        }
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
        let url = self.nats_url.trim();
        if url.is_empty() || url.eq_ignore_ascii_case("none") {
            return invalid(
                "nats_url",
                "anju-insight reads ANJU_EVENTS from NATS: name the server, e.g. nats://127.0.0.1:4222",
            );
        }
        if let Err(error) = anju_relay::NatsAddress::parse(url) {
            return invalid("nats_url", &error.to_string());
        }
        if self.consumer_name.is_empty()
            || !self
                .consumer_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return invalid(
                "consumer_name",
                "must be ASCII letters, digits, '-' or '_' (a JetStream durable name)",
            );
        }
        if self.concurrency_limit == 0 {
            return invalid("concurrency_limit", "must be at least 1");
        }
        if self.request_timeout.is_zero() {
            return invalid("request_timeout", "must be longer than zero");
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

fn duration_value(key: &'static str, text: &str) -> Result<Duration, ConfigError> {
    anju_auth::parse_duration(text).map_err(|error| ConfigError::Invalid {
        key,
        message: error.to_string(),
    })
}

fn set<T>(target: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *target = value;
    }
}

/// The keys of the TOML file (`deploy/systemd/insight.toml.example`); all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    grpc_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    nats_url: Option<String>,
    consumer_name: Option<String>,
    secret_file: Option<PathBuf>,
    log_format: Option<LogFormat>,
    log_filter: Option<String>,
    concurrency_limit: Option<usize>,
    request_timeout: Option<String>,
    cors_allowed_origins: Option<Vec<String>>,
    shutdown_grace: Option<String>,
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

    fn apply_to(self, config: &mut InsightConfig) -> Result<(), ConfigError> {
        set(&mut config.data_dir, self.data_dir);
        set(&mut config.grpc_addr, self.grpc_addr);
        set(&mut config.http_addr, self.http_addr);
        set(&mut config.nats_url, self.nats_url);
        set(&mut config.consumer_name, self.consumer_name);
        if self.secret_file.is_some() {
            config.secret_file = self.secret_file;
        }
        set(&mut config.log_format, self.log_format);
        set(&mut config.log_filter, self.log_filter);
        set(&mut config.concurrency_limit, self.concurrency_limit);
        if let Some(text) = self.request_timeout {
            config.request_timeout = duration_value("request_timeout", &text)?;
        }
        set(&mut config.cors_allowed_origins, self.cors_allowed_origins);
        if let Some(text) = self.shutdown_grace {
            config.shutdown_grace = duration_value("shutdown_grace", &text)?;
        }
        Ok(())
    }
}

/// Flags of `anju-insight`; each also reads an `ANJU_INSIGHT_*` variable. Unset ones
/// fall back to the config file, then to the defaults.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InsightArgs {
    /// TOML config file.
    #[arg(long, env = "ANJU_INSIGHT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory [default: ./insight-data].
    #[arg(long, env = "ANJU_INSIGHT_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50061].
    #[arg(long, env = "ANJU_INSIGHT_GRPC_ADDR", value_name = "HOST:PORT")]
    pub grpc_addr: Option<SocketAddr>,
    /// HTTP listen address for /metrics and /healthz [default: 127.0.0.1:9465].
    #[arg(long, env = "ANJU_INSIGHT_HTTP_ADDR", value_name = "HOST:PORT")]
    pub http_addr: Option<SocketAddr>,
    /// NATS server URL(s), comma-separated [default: nats://127.0.0.1:4222].
    #[arg(long, env = "ANJU_INSIGHT_NATS_URL", value_name = "URL")]
    pub nats_url: Option<String>,
    /// Durable JetStream consumer name [default: anju-insight].
    #[arg(long, env = "ANJU_INSIGHT_CONSUMER_NAME", value_name = "NAME")]
    pub consumer_name: Option<String>,
    /// The anju-server nodes' token secret [default: <data-dir>/token-secret].
    #[arg(long, env = "ANJU_INSIGHT_SECRET_FILE", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Log format [default: text].
    #[arg(long, env = "ANJU_INSIGHT_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, tracing-subscriber syntax [default: info].
    #[arg(long, env = "ANJU_INSIGHT_LOG", value_name = "FILTER")]
    pub log_filter: Option<String>,
    /// Calls served at once; more get RESOURCE_EXHAUSTED [default: 256].
    #[arg(long, env = "ANJU_INSIGHT_CONCURRENCY_LIMIT", value_name = "N")]
    pub concurrency_limit: Option<usize>,
    /// Longest a call may run, e.g. 30s [default: 30s].
    #[arg(long, env = "ANJU_INSIGHT_REQUEST_TIMEOUT", value_name = "DURATION")]
    pub request_timeout: Option<String>,
    /// Origins allowed to call gRPC-Web, comma-separated, or * [default: *].
    #[arg(
        long = "cors-allowed-origin",
        env = "ANJU_INSIGHT_CORS_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub cors_allowed_origins: Vec<String>,
    /// How long a stop waits for in-flight calls, e.g. 30s [default: 30s].
    #[arg(long, env = "ANJU_INSIGHT_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
}

impl InsightArgs {
    fn apply_to(&self, config: &mut InsightConfig) -> Result<(), ConfigError> {
        set(&mut config.data_dir, self.data_dir.clone());
        set(&mut config.grpc_addr, self.grpc_addr);
        set(&mut config.http_addr, self.http_addr);
        set(&mut config.nats_url, self.nats_url.clone());
        set(&mut config.consumer_name, self.consumer_name.clone());
        if self.secret_file.is_some() {
            config.secret_file = self.secret_file.clone();
        }
        set(&mut config.log_format, self.log_format);
        set(&mut config.log_filter, self.log_filter.clone());
        set(&mut config.concurrency_limit, self.concurrency_limit);
        if let Some(text) = &self.request_timeout {
            config.request_timeout = duration_value("request_timeout", text)?;
        }
        if !self.cors_allowed_origins.is_empty() {
            config.cors_allowed_origins = self.cors_allowed_origins.clone();
        }
        if let Some(text) = &self.shutdown_grace {
            config.shutdown_grace = duration_value("shutdown_grace", text)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_docs() {
        let config = InsightConfig::load(&InsightArgs::default()).unwrap();
        assert_eq!(config, InsightConfig::default());
        assert_eq!(config.grpc_addr.to_string(), "127.0.0.1:50061");
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:9465");
        assert_eq!(config.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(
            config.secret_path(),
            PathBuf::from("./insight-data/token-secret")
        );
    }

    #[test]
    fn the_shipped_example_file_loads_and_flags_win_over_it() {
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd/insight.toml.example");
        let args = InsightArgs {
            config: Some(example),
            grpc_addr: Some("127.0.0.1:7000".parse().unwrap()),
            ..InsightArgs::default()
        };
        let config = InsightConfig::load(&args).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/anju-insight"));
        assert_eq!(config.grpc_addr.to_string(), "127.0.0.1:7000");
        assert_eq!(config.http_addr.to_string(), "0.0.0.0:9465");
        assert_eq!(
            config.secret_path(),
            PathBuf::from("/etc/anju/token-secret")
        );
        assert_eq!(config.log_format, LogFormat::Json);
        assert!(config.nats_url.contains("nats-2.anju.internal"));
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("insight.toml");
        std::fs::write(&path, "grpc_port = 1\n").unwrap();
        let args = InsightArgs {
            config: Some(path),
            ..InsightArgs::default()
        };
        assert!(matches!(
            InsightConfig::load(&args),
            Err(ConfigError::Parse { .. })
        ));
        for (args, key) in [
            (
                InsightArgs {
                    nats_url: Some("none".into()),
                    ..InsightArgs::default()
                },
                "nats_url",
            ),
            (
                InsightArgs {
                    nats_url: Some("http://anju:hunter2@nats-1:4222".into()),
                    ..InsightArgs::default()
                },
                "nats_url",
            ),
            (
                InsightArgs {
                    consumer_name: Some("a.b".into()),
                    ..InsightArgs::default()
                },
                "consumer_name",
            ),
            (
                InsightArgs {
                    request_timeout: Some("soon".into()),
                    ..InsightArgs::default()
                },
                "request_timeout",
            ),
        ] {
            let error = InsightConfig::load(&args).unwrap_err();
            assert!(error.to_string().contains(key), "{error}");
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
        let config = InsightConfig::load(&InsightArgs {
            nats_url: Some("nats://anju:hunter2@nats-1:4222".into()),
            ..InsightArgs::default()
        })
        .unwrap();
        let shown = format!("{config:?}");
        assert!(
            shown.contains("nats://anju:***@nats-1:4222") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
