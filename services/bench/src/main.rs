//! anju-bench: measures anju's speeds on this machine (see docs/benchmarks.md).
//!
//! Each benchmark is a subcommand in its own module; `main` only parses and dispatches.

mod e2e;
mod log;
mod relay;
mod soak;

use clap::{Parser, Subcommand};

/// The load generator shares the machine with the server it measures; jemalloc keeps its
/// own allocation cost (and so its share of the CPU) down, as it does for anju-server.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "anju-bench", about = "measures anju's speeds on this machine")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// The event log: raw fdatasync rate, durable appends per second and latency,
    /// optionally against PostgreSQL on the same machine.
    Log(log::LogArgs),
    /// The NATS relay: a backlog published to JetStream with acknowledgements, with
    /// nats-server's default sync interval and with `sync_interval: always`.
    Relay(relay::RelayArgs),
    /// The whole service over gRPC: durable submissions per second and latency, a mixed
    /// workload, and the server's peak memory.
    E2e(e2e::E2eArgs),
    /// A fault campaign: rounds of mixed gRPC load against a real anju-server killed
    /// with SIGKILL (at random, at segment roll-overs, during snapshots), each restart
    /// checked for every acknowledged write exactly once and `anju log verify` passing;
    /// exits non-zero on any failure.
    Soak(soak::SoakArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.bench {
            Bench::Log(args) => log::run(args).await,
            Bench::Relay(args) => relay::run(args).await,
            Bench::E2e(args) => e2e::run(args).await,
            Bench::Soak(args) => soak::run(args).await,
        }
    })
}
