//! `anju relay check`: compares a node's event log, read from its running server, with
//! the node's messages in the JetStream stream, and counts what is missing, stored twice,
//! stored out of log order or stored with another event's id.

use std::time::Duration;

use anju_proto::v1::ReadAllRequest;
use anju_relay::check::{check_stream, CheckError, CheckTarget};
use clap::{Args, Subcommand};

use crate::client::{call, Context};
use crate::failure::{Exit, Failure};
use crate::table::key_values;

#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// Compares the node's log (read from the server, role admin) with its messages in
    /// the JetStream stream; exits 1 when anything is missing, twice, out of log order
    /// or mismatched. Run it once the relay has caught up (`anju log stats`).
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The NATS server(s), as anju-server's --nats-url.
    #[arg(long, env = "ANJU_NATS_URL", value_name = "URL")]
    nats_url: String,
    /// The node whose messages are compared, as anju-server's --node-id.
    #[arg(long, env = "ANJU_NODE_ID", value_name = "NAME")]
    node_id: String,
    /// The JetStream stream.
    #[arg(long, default_value = "ANJU_EVENTS")]
    stream: String,
    /// The subject prefix (subjects are <prefix>.<node>.<site>.<category>.<type>).
    #[arg(long, default_value = "anju.events")]
    subject_prefix: String,
}

pub async fn run(context: &Context, command: RelayCommand) -> anyhow::Result<()> {
    match command {
        RelayCommand::Check(args) => check(context, args).await,
    }
}

/// Events a page of the log read brings at most.
const PAGE: u32 = 1000;

async fn check(context: &Context, args: CheckArgs) -> anyhow::Result<()> {
    let session = context.connect().await?;
    let mut log = Vec::new();
    // Positions in the API start at 1; the log's (and Anju-Position's) at 0.
    let mut from = 1u64;
    loop {
        let page = call(
            "reading the event log",
            session.eventlog().read_all(session.request(ReadAllRequest {
                from_position: from,
                max_count: PAGE,
                filter: None,
                min_position: 0,
            })?),
        )
        .await?;
        for event in &page.events {
            let id = uuid::Uuid::parse_str(&event.event_id).map_err(|error| {
                Failure::new(
                    Exit::Other,
                    format!(
                        "event at position {}: bad event id: {error}",
                        event.position
                    ),
                )
            })?;
            if event.position != log.len() as u64 + 1 {
                return Err(Failure::new(
                    Exit::Other,
                    format!(
                        "the server returned position {} where {} was next",
                        event.position,
                        log.len() + 1
                    ),
                )
                .into());
            }
            log.push(id);
        }
        if page.events.is_empty() || page.next_position <= from {
            break;
        }
        from = page.next_position;
    }
    let target = CheckTarget {
        nats_url: args.nats_url,
        stream_name: args.stream,
        subject_prefix: args.subject_prefix,
        node_id: args.node_id,
        timeout: context.timeout.max(Duration::from_secs(1)),
    };
    let report = check_stream(&target, &log)
        .await
        .map_err(|error| match error {
            CheckError::Address(_) => Failure::new(Exit::Usage, error.to_string()),
            CheckError::Connect { .. } => Failure::new(Exit::Unavailable, error.to_string())
                .hint("is nats-server running at that address, and is --nats-url right?"),
            CheckError::NoStream { .. } => Failure::new(Exit::NotFound, error.to_string())
                .hint("anju-server's relay creates it on its first connection; check --stream"),
            CheckError::Stream { .. } => Failure::new(Exit::Unavailable, error.to_string()),
        })?;
    if context.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let rows = vec![
            ("node".to_string(), report.node.clone()),
            ("stream".to_string(), report.stream.clone()),
            ("log events".to_string(), report.log_events.to_string()),
            (
                "stream messages".to_string(),
                report.stream_messages.to_string(),
            ),
            ("missing".to_string(), report.missing.to_string()),
            (
                "  of which after the last message".to_string(),
                report.missing_after_last_message.to_string(),
            ),
            ("duplicate".to_string(), report.duplicate.to_string()),
            ("out of order".to_string(), report.out_of_order.to_string()),
            ("mismatched".to_string(), report.mismatched.to_string()),
        ];
        print!("{}", key_values(&rows));
        for example in &report.examples {
            println!("  {example}");
        }
    }
    if report.is_clean() {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::Other,
            format!(
                "the stream differs from the log of node {}: {} missing, {} duplicate, {} out of order, {} mismatched",
                report.node, report.missing, report.duplicate, report.out_of_order, report.mismatched
            ),
        )
        .into())
    }
}
