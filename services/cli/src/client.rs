//! Where to connect and as whom: flags, then `ANJU_*` environment, then the chosen
//! profile of the config file, then defaults; and the connected clients of the four
//! anju.v1 services with the bearer token attached to every call.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anju_proto::v1::admin_service_client::AdminServiceClient;
use anju_proto::v1::caseworker_service_client::CaseworkerServiceClient;
use anju_proto::v1::event_log_service_client::EventLogServiceClient;
use anju_proto::v1::manager_service_client::ManagerServiceClient;
use anju_proto::v1::resident_service_client::ResidentServiceClient;
use anyhow::Context as _;
use base64::Engine as _;
use serde::Deserialize;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::failure::{Exit, Failure};
use crate::labels::Lang;

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// The config file: named profiles, e.g. one per site.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The profile used when neither --profile nor ANJU_PROFILE names one.
    pub default_profile: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// One profile: a server and an identity.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub server: Option<String>,
    pub token: Option<String>,
    /// A file holding the token (what `anju token issue > FILE` wrote).
    pub token_file: Option<PathBuf>,
    /// The server's data directory, for `anju demo` and `anju log verify`.
    pub data_dir: Option<PathBuf>,
    pub lang: Option<Lang>,
}

/// Where the config file is: the explicit path, else `$XDG_CONFIG_HOME/anju/config.toml`,
/// else `~/.config/anju/config.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("anju/config.toml"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config/anju/config.toml"))
}

/// Reads the profile to use. An explicit file must exist; the default one may not.
pub fn load_profile(explicit: Option<&Path>, name: Option<&str>) -> anyhow::Result<Profile> {
    let (path, must_exist) = match explicit {
        Some(path) => (Some(path.to_path_buf()), true),
        None => (default_config_path(), false),
    };
    let file = match &path {
        Some(path) if path.exists() => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the config file {}", path.display()))?;
            toml::from_str::<ConfigFile>(&text).map_err(|error| {
                Failure::usage(format!("config file {}: {error}", path.display()))
            })?
        }
        Some(path) if must_exist => {
            return Err(
                Failure::usage(format!("config file {} does not exist", path.display()))
                    .hint("create it (see docs/cli.md, \"profiles\") or leave out --config")
                    .into(),
            )
        }
        _ => ConfigFile::default(),
    };
    let chosen = name.map(str::to_string).or(file.default_profile.clone());
    match chosen {
        None => Ok(Profile::default()),
        Some(chosen) => match file.profiles.get(&chosen) {
            Some(profile) => Ok(profile.clone()),
            None => {
                let known: Vec<&str> = file.profiles.keys().map(String::as_str).collect();
                let where_ = path.map(|p| p.display().to_string()).unwrap_or_default();
                Err(Failure::usage(format!("no profile {chosen:?} in {where_}"))
                    .hint(if known.is_empty() {
                        "add a [profiles.NAME] table to the config file".to_string()
                    } else {
                        format!("known profiles: {}", known.join(", "))
                    })
                    .into())
            }
        },
    }
}

/// Everything a command needs to talk to the server and to print.
#[derive(Debug, Clone)]
pub struct Context {
    pub server: String,
    pub token: Option<String>,
    pub timeout: Duration,
    pub json: bool,
    pub lang: Lang,
    pub data_dir: Option<PathBuf>,
}

/// Connected clients sharing one channel.
#[derive(Clone)]
pub struct Session {
    pub context: Context,
    channel: Channel,
}

impl Context {
    /// Connects to the server, failing with [`Exit::Unavailable`] and a hint when nothing
    /// answers.
    pub async fn connect(&self) -> anyhow::Result<Session> {
        let endpoint = tonic::transport::Endpoint::from_shared(self.server.clone())
            .map_err(|_| {
                Failure::usage(format!(
                    "invalid server address {:?}: expected a URL like {DEFAULT_SERVER}",
                    self.server
                ))
            })?
            .connect_timeout(self.timeout.min(Duration::from_secs(5)))
            .timeout(self.timeout);
        let channel = endpoint.connect().await.map_err(|error| {
            Failure::new(
                Exit::Unavailable,
                format!("cannot reach anju-server at {}: {}", self.server, root_cause(&error)),
            )
            .hint("is anju-server running there? start it with `anju-server`, or point --server / ANJU_SERVER / a profile at it")
        })?;
        Ok(Session {
            context: self.clone(),
            channel,
        })
    }

    /// The token, checked for presence and expiry before it is sent.
    pub fn bearer(&self) -> anyhow::Result<String> {
        let Some(token) = self
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Err(Failure::new(Exit::Auth, "missing token: this command needs a bearer token")
                .hint("pass --token TOKEN, set ANJU_TOKEN, or add token = ... to a profile; issue one with `anju token issue --role ROLE --site SITE --subject NAME --data-dir DATA_DIR`")
                .into());
        };
        if let Some(claims) = peek_claims(token) {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if let Some(exp) = claims.get("exp").and_then(|e| e.as_u64()) {
                if exp <= now {
                    let role = claims
                        .get("role")
                        .and_then(|r| r.as_str())
                        .unwrap_or("ROLE");
                    let subject = claims.get("sub").and_then(|r| r.as_str()).unwrap_or("NAME");
                    let sites: Vec<String> = claims
                        .get("sites")
                        .and_then(|s| s.as_array())
                        .map(|sites| {
                            sites
                                .iter()
                                .filter_map(|s| s.as_str())
                                .map(|s| format!("--site '{s}'"))
                                .collect()
                        })
                        .unwrap_or_default();
                    return Err(Failure::new(
                        Exit::Auth,
                        format!(
                            "token expired {} ago",
                            human_duration(Duration::from_secs(now - exp))
                        ),
                    )
                    .hint(format!(
                        "token expired: run `anju token issue --role {role} {} --subject {subject} --data-dir DATA_DIR` and pass the new token with --token or ANJU_TOKEN",
                        sites.join(" ")
                    ))
                    .into());
                }
            }
        }
        Ok(token.to_string())
    }
}

/// The claims of a JWT, read without checking the signature (only the server can).
pub fn peek_claims(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

impl Session {
    /// `message` as a call carrying the bearer token and the deadline.
    pub fn request<T>(&self, message: T) -> anyhow::Result<tonic::Request<T>> {
        let token = self.context.bearer()?;
        let mut request = tonic::Request::new(message);
        let value: MetadataValue<_> = format!("Bearer {token}").parse().map_err(|_| {
            Failure::new(
                Exit::Auth,
                "the token holds characters a header cannot carry",
            )
            .hint("pass the token exactly as `anju token issue` printed it")
        })?;
        request.metadata_mut().insert("authorization", value);
        request.set_timeout(self.context.timeout);
        Ok(request)
    }

    /// A streaming call: the token but no deadline.
    pub fn stream_request<T>(&self, message: T) -> anyhow::Result<tonic::Request<T>> {
        let mut request = self.request(message)?;
        request.metadata_mut().remove("grpc-timeout");
        Ok(request)
    }

    pub fn resident(&self) -> ResidentServiceClient<Channel> {
        ResidentServiceClient::new(self.channel.clone())
    }

    pub fn caseworker(&self) -> CaseworkerServiceClient<Channel> {
        CaseworkerServiceClient::new(self.channel.clone())
    }

    pub fn manager(&self) -> ManagerServiceClient<Channel> {
        ManagerServiceClient::new(self.channel.clone())
    }

    pub fn eventlog(&self) -> EventLogServiceClient<Channel> {
        EventLogServiceClient::new(self.channel.clone())
    }

    pub fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel.clone())
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }
}

/// Runs a call and turns its status into a [`Failure`] naming `action`.
pub async fn call<T, F>(action: &str, future: F) -> anyhow::Result<T>
where
    F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    match future.await {
        Ok(response) => Ok(response.into_inner()),
        Err(status) => Err(crate::failure::from_status(action, &status).into()),
    }
}
