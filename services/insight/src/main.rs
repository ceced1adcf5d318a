//! anju-insight: consumes `ANJU_EVENTS` from every anju-server node with a durable pull
//! consumer, folds the events into province-wide read models (`anju-insight-core`), and
//! serves them as `anju.v1.ManagerService` with the same tokens, scope rules and answers
//! as the nodes' own, plus gRPC health, reflection and `/metrics`.
//!
//! A `min_position` other than 0 is refused with INVALID_ARGUMENT: it names a position
//! in one node's log, which a merge of many logs cannot wait for.

mod config;
mod serve;

use anyhow::Context;
use clap::Parser;

use crate::config::{InsightArgs, InsightConfig};

#[derive(Debug, Parser)]
#[command(
    name = "anju-insight",
    version,
    about = "anju-insight: province-wide manager figures from the events of every anju-server node"
)]
struct Cli {
    #[command(flatten)]
    insight: InsightArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = InsightConfig::load(&cli.insight).context("loading configuration")?;
    anju_server_core::telemetry::init_tracing_with(config.log_format, &config.log_filter);
    let service = serve::Insight::build(config)
        .await
        .context("starting anju-insight")?;
    eprintln!(
        "anju-insight: grpc on {}, metrics on http://{}/metrics",
        service.grpc_addr(),
        service.http_addr()
    );
    service.run_until_stopped().await.context("serving")?;
    Ok(())
}
