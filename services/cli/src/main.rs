//! anju: the command-line client and admin tool. Issues tokens from the server's
//! secret, drives every resident and caseworker action of the API, prints the manager
//! reports, follows and checks the event log, and fills a server with a demo.

mod caseworker;
mod client;
mod clock;
mod demo;
mod eventlog;
mod failure;
mod form;
mod json;
mod labels;
mod manager;
mod relay;
mod resident;
mod table;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anju_auth::{Claims, Role};
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::client::{Context, DEFAULT_SERVER};
use crate::failure::{Exit, Failure};
use crate::labels::Lang;

#[derive(Debug, Parser)]
#[command(
    name = "anju",
    version,
    about = "anju (安居): command-line client and admin tool",
    after_help = "Exit codes: 0 ok, 1 other error, 2 invalid input, 3 not found, 4 token missing/expired/forbidden, 5 conflict or wrong state, 6 server unreachable/busy, 7 not implemented by the server. See docs/cli.md."
)]
struct Cli {
    /// gRPC address of anju-server [default: http://127.0.0.1:50051].
    #[arg(long, global = true, env = "ANJU_SERVER")]
    server: Option<String>,
    /// Bearer token for calls that need one (see `anju token issue`).
    #[arg(long, global = true, env = "ANJU_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Profile of the config file to use (server, token, data dir, language).
    #[arg(long, global = true, env = "ANJU_PROFILE")]
    profile: Option<String>,
    /// Config file with profiles [default: ~/.config/anju/config.toml].
    #[arg(long, global = true, env = "ANJU_CLI_CONFIG")]
    config: Option<PathBuf>,
    /// Print the server's answer as JSON (one object per line) instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Language of table headers and labels.
    #[arg(long, global = true, env = "ANJU_LANG", value_enum)]
    lang: Option<Lang>,
    /// Deadline of each call.
    #[arg(long, global = true, default_value = "10s", value_parser = anju_auth::parse_duration)]
    timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Asks the server's grpc.health.v1 service whether it is serving.
    Health {
        /// A service name, e.g. anju.v1.ResidentService; empty asks about the server.
        #[arg(long, default_value = "")]
        service: String,
    },
    /// The service catalogue: `anju services`, `anju services show CODE`.
    Services(resident::ServicesArgs),
    #[command(flatten)]
    Resident(resident::ResidentCommand),
    #[command(flatten)]
    Caseworker(caseworker::CaseworkerCommand),
    /// Manager reports: throughput, lead times, SLA, satisfaction, backlog.
    Report {
        #[command(subcommand)]
        report: manager::Report,
    },
    /// Follows the event log live (admin).
    Tail(eventlog::TailArgs),
    /// The event log: stats from the server, verify offline.
    Log {
        #[command(subcommand)]
        command: eventlog::LogCommand,
    },
    /// The NATS relay: `relay check` compares a node's log with the JetStream stream.
    Relay {
        #[command(subcommand)]
        command: relay::RelayCommand,
    },
    /// Fills a server with a realistic mix of requests across sites and categories.
    Demo(demo::DemoArgs),
    /// The server's clock; `clock advance` moves a --demo-clock server's time (admin).
    Clock {
        #[command(subcommand)]
        command: Option<clock::ClockCommand>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Signs a token with the server's secret and prints it.
    Issue {
        /// resident, kiosk, caseworker, supervisor, manager or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Site the token covers; repeat for several; '*' for the whole province.
        #[arg(long = "site", value_name = "SITE")]
        sites: Vec<String>,
        /// Service category the token covers (civil_affairs, elderly_care, childcare,
        /// medical, schooling, disability, employment, community, or the Chinese name);
        /// repeat for several; none means all.
        #[arg(long = "category", value_name = "CATEGORY", value_parser = parse_category)]
        categories: Vec<String>,
        /// Who the token is for (login, kiosk id).
        #[arg(long)]
        subject: String,
        /// Lifetime, e.g. 30m, 8h, 7d.
        #[arg(long, default_value = "8h", value_parser = anju_auth::parse_duration)]
        ttl: Duration,
        /// The server's data directory; the secret is read from <DIR>/token-secret.
        #[arg(
            long,
            env = "ANJU_DATA_DIR",
            default_value = "./data",
            conflicts_with = "secret_file"
        )]
        data_dir: PathBuf,
        /// The secret file itself, when the server runs with --secret-file.
        #[arg(long, env = "ANJU_SECRET_FILE")]
        secret_file: Option<PathBuf>,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        format!("unknown role {text:?}: use one of {}", names.join(", "))
    })
}

/// A category by its API name or its Chinese name, as the API name: a token naming a
/// category the server does not know would cover nothing.
fn parse_category(text: &str) -> Result<String, String> {
    if let Some(category) = anju_domain::Category::parse(text.trim()) {
        return Ok(category.as_str().to_string());
    }
    let names: Vec<&str> = anju_domain::Category::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    let hint = anju_domain::Category::parse(&text.trim().replace('-', "_"))
        .map(|c| format!(" (did you mean {}?)", c.as_str()))
        .unwrap_or_default();
    Err(format!(
        "unknown category {text:?}{hint}: use one of {}, or the Chinese name",
        names.join(", ")
    ))
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            std::process::exit(Exit::Other as i32);
        }
    };
    let result = runtime.block_on(run(cli));
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        if let Some(hint) = failure::hint(&error) {
            eprintln!("  what to do: {hint}");
        }
        std::process::exit(failure::exit_code(&error) as i32);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let profile = client::load_profile(cli.config.as_deref(), cli.profile.as_deref())?;
    let token = match (cli.token, &profile.token, &profile.token_file) {
        (Some(token), _, _) => Some(token),
        (None, Some(token), _) => Some(token.clone()),
        (None, None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the profile's token_file {}", path.display()))?
                .trim()
                .to_string(),
        ),
        (None, None, None) => None,
    };
    let context = Context {
        server: cli
            .server
            .or(profile.server.clone())
            .unwrap_or_else(|| DEFAULT_SERVER.to_string()),
        token,
        timeout: cli.timeout,
        json: cli.json,
        lang: cli.lang.or(profile.lang).unwrap_or(Lang::En),
        data_dir: profile.data_dir.clone(),
    };
    match cli.command {
        Command::Token { command } => token_issue(command),
        Command::Health { service } => health(&context, &service).await,
        Command::Services(args) => resident::services(&context, args).await,
        Command::Resident(command) => resident::run(&context, command).await,
        Command::Caseworker(command) => caseworker::run(&context, command).await,
        Command::Report { report } => manager::run(&context, report).await,
        Command::Tail(args) => eventlog::tail(&context, args).await,
        Command::Log { command } => eventlog::run(&context, command).await,
        Command::Relay { command } => relay::run(&context, command).await,
        Command::Demo(args) => demo::run(&context, args).await,
        Command::Clock { command } => clock::run(&context, command).await,
    }
}

fn token_issue(command: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Issue {
        role,
        sites,
        categories,
        subject,
        ttl,
        data_dir,
        secret_file,
    } = command;
    let path = secret_file.unwrap_or_else(|| data_dir.join(anju_auth::SECRET_FILE_NAME));
    let secret = anju_auth::read_secret_file(&path).map_err(|error| {
        Failure::usage(format!(
            "reading the server's token secret {}: {error}",
            path.display()
        ))
        .hint("start anju-server once to create it, or pass --data-dir / --secret-file")
    })?;
    if subject.trim().is_empty() {
        return Err(Failure::usage("--subject must not be empty").into());
    }
    if sites.is_empty() && !matches!(role, Role::Resident) {
        return Err(Failure::usage(format!(
            "role {role} needs at least one --site (or --site '*' for the whole province)"
        ))
        .into());
    }
    let claims = claims(role, sites, categories, subject, ttl)?;
    println!("{}", anju_auth::issue(&secret, &claims));
    Ok(())
}

/// Claims for a token issued now that lives `ttl`.
pub fn claims(
    role: Role,
    sites: Vec<String>,
    categories: Vec<String>,
    subject: String,
    ttl: Duration,
) -> anyhow::Result<Claims> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("reading the clock")?
        .as_secs();
    Ok(Claims {
        sub: subject,
        role,
        sites,
        categories,
        exp: now + ttl.as_secs(),
        iat: now,
    })
}

async fn health(context: &Context, service: &str) -> anyhow::Result<()> {
    let session = context.connect().await?;
    let response = client::call(
        "asking the server's health",
        HealthClient::new(session.channel()).check(HealthCheckRequest {
            service: service.to_string(),
        }),
    )
    .await?;
    let status = response.status();
    if context.json {
        println!("{}", serde_json::json!({ "status": status.as_str_name() }));
    } else {
        println!("{}", status.as_str_name());
    }
    if status != ServingStatus::Serving {
        // docs/configuration.md promises exit 1 for any status but SERVING.
        return Err(Failure::new(
            Exit::Other,
            format!("the server answers {}", status.as_str_name()),
        )
        .into());
    }
    Ok(())
}
