//! anju: the command-line client and admin tool. Issues tokens from the server's
//! secret and talks to a running anju-server.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anju_auth::{Claims, Role};
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[derive(Debug, Parser)]
#[command(
    name = "anju",
    version,
    about = "anju (安居): command-line client and admin tool"
)]
struct Cli {
    /// gRPC address of anju-server.
    #[arg(
        long,
        global = true,
        env = "ANJU_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Bearer token for calls that need one (see `anju token issue`).
    #[arg(long, global = true, env = "ANJU_TOKEN", hide_env_values = true)]
    token: Option<String>,
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
        /// Give up after this long.
        #[arg(long, default_value = "5s", value_parser = anju_auth::parse_duration)]
        timeout: Duration,
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
        /// Service category the token covers; repeat for several; none means all.
        #[arg(long = "category", value_name = "CATEGORY")]
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Token {
            command:
                TokenCommand::Issue {
                    role,
                    sites,
                    categories,
                    subject,
                    ttl,
                    data_dir,
                    secret_file,
                },
        } => {
            let path = secret_file.unwrap_or_else(|| data_dir.join(anju_auth::SECRET_FILE_NAME));
            let secret = anju_auth::read_secret_file(&path).context(
                "reading the server's token secret (start anju-server once to create it, or pass --data-dir / --secret-file)",
            )?;
            if subject.trim().is_empty() {
                bail!("--subject must not be empty");
            }
            if sites.is_empty() && !matches!(role, Role::Resident) {
                bail!(
                    "role {role} needs at least one --site (or --site '*' for the whole province)"
                );
            }
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .context("reading the clock")?
                .as_secs();
            let claims = Claims {
                sub: subject,
                role,
                sites,
                categories,
                exp: now + ttl.as_secs(),
                iat: now,
            };
            println!("{}", anju_auth::issue(&secret, &claims));
        }
        Command::Health { service, timeout } => {
            let status = health(&cli.server, &service, timeout).await?;
            println!("{}", status.as_str_name());
            if status != ServingStatus::Serving {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

async fn health(server: &str, service: &str, timeout: Duration) -> anyhow::Result<ServingStatus> {
    let endpoint = tonic::transport::Endpoint::from_shared(server.to_string())
        .with_context(|| {
            format!("invalid --server {server:?}: expected a URL like http://127.0.0.1:50051")
        })?
        .connect_timeout(timeout)
        .timeout(timeout);
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to {server}"))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .with_context(|| format!("health check of {server}"))?;
    Ok(response.into_inner().status())
}
