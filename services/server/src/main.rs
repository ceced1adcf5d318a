//! anju-server: the service binary. Parses the configuration and runs the server
//! until SIGTERM or Ctrl-C, rebuilds the read models offline, asks the running server
//! for an online backup, or restores one into a new data directory; all logic lives in
//! `anju-server-core`.

use anju_server_core::{telemetry, App, Config, ServerArgs};
use anyhow::Context;
use clap::{Parser, Subcommand};

/// jemalloc instead of glibc's allocator: under the end-to-end load glibc's malloc and
/// free were a fifth of the server's CPU samples, and its sixteen arenas held about a
/// quarter of the heap as free chunks (docs/benchmarks.md). Two arenas and a background thread that
/// returns pages unused for a second keep the footprint near glibc's (373 against 367 MB
/// after 1,000,000 submissions).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read when it starts (the `_RJEM_MALLOC_CONF` environment
/// variable still overrides them). Exporting the symbol jemalloc looks for is the one
/// unsafe-flagged item of the project: a pointer to a NUL-terminated constant (jemalloc's
/// `const char *malloc_conf`), read once.
#[allow(non_upper_case_globals, unsafe_code)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &u8 =
    &b"narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0,background_thread:true\0"[0];

#[derive(Debug, Parser)]
#[command(
    name = "anju-server",
    version,
    about = "anju (安居): the workflow service for resettlement communities"
)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Rebuilds the read models (status, queues, timers, metrics) from the event log,
    /// offline: stop the server first. Reads the same --config and ANJU_* settings as
    /// serving.
    RebuildProjections {
        /// Data directory [default: the configured one, ./data].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<std::path::PathBuf>,
    },
    /// Takes an online backup of the anju-server running with this configuration on
    /// this host, while it keeps serving: calls its AdminService.Backup at the
    /// configured gRPC address with a short-lived admin token made from the token
    /// secret. The server writes DIR, which must be new or empty: the log up to the
    /// position the backup starts at, the key store, the token secret and a
    /// manifest.json with every file's size and SHA-256. Read models are not copied;
    /// a restored server rebuilds them from the log.
    Backup {
        /// Where the server writes the backup: a new or empty directory on this host
        /// (made absolute against the current directory).
        #[arg(long, value_name = "DIR")]
        to: std::path::PathBuf,
    },
    /// Restores a backup into a new data directory, offline: checks every file against
    /// the manifest and the log as `anju log verify` does before writing anything, then
    /// copies. Start anju-server on NEW afterwards; it rebuilds its read models from the
    /// log and answers as the backed-up server did at the backup's position. Needs no
    /// configuration.
    Restore {
        /// The backup directory (the one holding manifest.json).
        #[arg(long, value_name = "DIR")]
        from: std::path::PathBuf,
        /// The data directory to create: must not exist yet, or be empty.
        #[arg(long, value_name = "NEW")]
        data_dir: std::path::PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    if let Some(Command::Restore { from, data_dir }) = &cli.command {
        return restore(from, data_dir);
    }
    if let Some(Command::RebuildProjections {
        data_dir: Some(dir),
    }) = &cli.command
    {
        cli.server.data_dir = Some(dir.clone());
    }
    let config = Config::load(&cli.server).context("loading configuration")?;
    telemetry::init_tracing(&config);
    match &cli.command {
        Some(Command::RebuildProjections { .. }) => return rebuild(&config).await,
        Some(Command::Backup { to }) => return backup(&config, to).await,
        _ => {}
    }
    let data_dir = config.data_dir.clone();
    let app = App::build(config).await.context("starting anju-server")?;
    if app.secret_created() {
        eprintln!(
            "anju-server: first start, created the token secret {}\n\
             issue a token with:\n  anju token issue --role admin --site '*' --subject <your-name> --ttl 8h --data-dir {}",
            app.secret_path().display(),
            data_dir.display()
        );
    }
    eprintln!(
        "anju-server: grpc on {}, metrics on http://{}/metrics",
        app.grpc_addr(),
        app.http_addr()
    );
    if let Some(clock) = &app.state().demo_clock {
        eprintln!(
            "anju-server: demo clock, {:.1} days ahead of real time; an admin moves it with `anju clock advance` (never use for real requests)",
            clock.offset().as_secs_f64() / 86_400.0
        );
    }
    app.run_until_stopped().await.context("serving")?;
    Ok(())
}

async fn rebuild(config: &Config) -> anyhow::Result<()> {
    println!(
        "rebuilding the read models in {} from the event log",
        config.data_dir.display()
    );
    let report = anju_server_core::rebuild_projections(config)
        .await
        .context(
            "rebuilding the read models (is the server still running on this data directory?)",
        )?;
    println!(
        "log holds {} events; read models were at position {}, rebuilt to {} in {:.2}s",
        report.log_events,
        report.position_before,
        report.position_after,
        report.elapsed.as_secs_f64()
    );
    Ok(())
}

async fn backup(config: &Config, to: &std::path::Path) -> anyhow::Result<()> {
    let taken = anju_server_core::backup::backup_via_rpc(config, to)
        .await
        .map_err(|e| anyhow::anyhow!("backup refused or failed: {e}"))?;
    let elapsed = taken
        .elapsed
        .map_or(0.0, |d| d.seconds as f64 + f64::from(d.nanos) / 1e9);
    println!(
        "backup of the log's positions 1 to {} in {}: {} files, {} bytes, {elapsed:.2}s",
        taken.position, taken.to_dir, taken.files, taken.bytes
    );
    Ok(())
}

fn restore(from: &std::path::Path, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let report = anju_server_core::backup::restore(from, data_dir)
        .with_context(|| format!("restoring {} into {}", from.display(), data_dir.display()))?;
    let manifest = &report.manifest;
    println!(
        "restored and verified the backup of node {} taken at {}: {} events (positions 1 to {}), {} files, {} bytes, in {:.2}s; start anju-server with --data-dir {}",
        manifest.node_id,
        manifest.started_at,
        manifest.position,
        manifest.position,
        manifest.files.len(),
        manifest.bytes(),
        report.elapsed.as_secs_f64(),
        data_dir.display()
    );
    Ok(())
}
