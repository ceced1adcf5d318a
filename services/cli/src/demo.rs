//! `anju demo`: fills a server with a realistic mix of requests.

use clap::Args;

use crate::client::Context;

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub async fn run(_context: &Context, _args: DemoArgs) -> anyhow::Result<()> {
    Ok(())
}
