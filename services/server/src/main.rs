//! anju-server: the service binary. Parses the configuration and runs the server
//! until SIGTERM or Ctrl-C; all logic lives in `anju-server-core`.

use anju_server_core::{telemetry, App, Config, ServerArgs};
use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "anju-server",
    version,
    about = "anju (安居): the workflow service for resettlement communities"
)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(&cli.server).context("loading configuration")?;
    telemetry::init_tracing(&config);
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
    app.run_until_stopped().await.context("serving")?;
    Ok(())
}
