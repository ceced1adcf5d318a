//! The event log: `anju tail` follows it live, `anju log stats` asks the server for its
//! sizes and lags, `anju log verify` opens a stopped server's data directory and checks
//! every frame.

use std::path::PathBuf;

use anju_proto::v1::subscribe_all_response::Message;
use anju_proto::v1::{EventFilter, GetLogStatsRequest, SubscribeAllRequest};
use clap::{Args, Subcommand};

use crate::client::{call, Context};
use crate::failure::{Exit, Failure};
use crate::json;
use crate::labels;
use crate::table::{key_values, Table};

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Only streams whose id starts with this (e.g. request-); repeat.
    #[arg(long = "prefix")]
    prefixes: Vec<String>,
    /// Only this event type (e.g. RequestSubmitted); repeat.
    #[arg(long = "type")]
    types: Vec<String>,
    /// First position to show; 0 starts at the beginning [default: only new events].
    #[arg(long)]
    from: Option<u64>,
    /// Stop after this many events.
    #[arg(long)]
    limit: Option<u64>,
    /// Stop once history up to now is shown, instead of following.
    #[arg(long)]
    no_follow: bool,
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// The log's head, size, segments and how far each reader has got (server).
    Stats,
    /// Checks every frame's CRC, position and version contiguity, unique event ids and
    /// the index (offline: stop anju-server first).
    Verify {
        /// The server's data directory [default: the profile's, else ./data].
        #[arg(long, env = "ANJU_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

pub async fn tail(context: &Context, args: TailArgs) -> anyhow::Result<()> {
    let session = context.connect().await?;
    let mut from = args.from;
    if from.is_none() {
        // Only new events: start after the head the server reports now.
        let stats = call(
            "reading the log head",
            session
                .eventlog()
                .get_log_stats(session.request(GetLogStatsRequest { min_position: 0 })?),
        )
        .await?;
        from = Some(stats.head_position + 1);
    }
    let mut stream = call(
        "following the event log",
        session
            .eventlog()
            .subscribe_all(session.stream_request(SubscribeAllRequest {
                from_position: from.unwrap_or(0),
                filter: Some(EventFilter {
                    stream_prefixes: args.prefixes,
                    event_types: args.types,
                }),
            })?),
    )
    .await?;
    let mut shown = 0u64;
    if args.limit == Some(0) {
        return Ok(());
    }
    loop {
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) => return Ok(()),
            Err(status) => {
                return Err(crate::failure::from_status("following the event log", &status).into())
            }
        };
        match message.message {
            Some(Message::Event(event)) => {
                if context.json {
                    let mut value = json::to_value("Event", &event)?;
                    // The payload is JSON already; show it as such rather than base64.
                    if let Ok(payload) = serde_json::from_slice::<serde_json::Value>(&event.payload)
                    {
                        value["payload"] = payload;
                    }
                    println!("{}", serde_json::to_string(&value)?);
                } else {
                    println!(
                        "{:>8}  {}  {:<28}  {:<48}  {}",
                        event.position,
                        labels::time(event.recorded_at.as_ref()),
                        event.event_type,
                        event.stream_id,
                        event.actor
                    );
                }
                shown += 1;
                if args.limit.is_some_and(|limit| shown >= limit) {
                    return Ok(());
                }
            }
            Some(Message::CaughtUp(_)) if args.no_follow => return Ok(()),
            Some(Message::CaughtUp(_)) | Some(Message::Checkpoint(_)) | None => {}
        }
    }
}

pub async fn run(context: &Context, command: LogCommand) -> anyhow::Result<()> {
    match command {
        LogCommand::Stats => {
            let session = context.connect().await?;
            let stats = call(
                "reading the log stats",
                session
                    .eventlog()
                    .get_log_stats(session.request(GetLogStatsRequest { min_position: 0 })?),
            )
            .await?;
            if context.json {
                return json::print("GetLogStatsResponse", &stats);
            }
            let lang = context.lang;
            print!(
                "{}",
                key_values(&[
                    (
                        lang.pick("head position", "最新位置").into(),
                        stats.head_position.to_string()
                    ),
                    (
                        lang.pick("events", "事件数").into(),
                        stats.event_count.to_string()
                    ),
                    (
                        lang.pick("streams", "流数").into(),
                        stats.stream_count.to_string()
                    ),
                    (
                        lang.pick("segments", "段文件").into(),
                        stats.segment_count.to_string()
                    ),
                    (
                        lang.pick("size", "大小").into(),
                        format!("{:.1} KiB", stats.size_bytes as f64 / 1024.0)
                    ),
                    (
                        lang.pick("first event", "最早事件").into(),
                        labels::time(stats.first_recorded_at.as_ref())
                    ),
                    (
                        lang.pick("last event", "最新事件").into(),
                        labels::time(stats.last_recorded_at.as_ref())
                    ),
                ])
            );
            if !stats.readers.is_empty() {
                println!();
                let mut table = Table::new(&[
                    lang.pick("reader", "读者"),
                    lang.pick("position", "位置"),
                    lang.pick("lag", "落后"),
                    lang.pick("connected", "已连接"),
                ])
                .right(&[1, 2]);
                for reader in &stats.readers {
                    table.row(vec![
                        reader.name.clone(),
                        reader.position.to_string(),
                        reader.lag.to_string(),
                        if reader.name.contains("relay") {
                            reader.connected.to_string()
                        } else {
                            "-".into()
                        },
                    ]);
                }
                print!("{}", table.render());
            }
            Ok(())
        }
        LogCommand::Verify { data_dir } => {
            let data_dir = data_dir
                .or_else(|| context.data_dir.clone())
                .unwrap_or_else(|| PathBuf::from("./data"));
            verify(context, data_dir).await
        }
    }
}

async fn verify(context: &Context, data_dir: PathBuf) -> anyhow::Result<()> {
    let log_dir = data_dir.join("log");
    if !log_dir.is_dir() {
        return Err(Failure::new(Exit::NotFound, format!("no event log at {}", log_dir.display()))
            .hint("pass the server's data directory with --data-dir (the one anju-server was started with)")
            .into());
    }
    let log = match anju_eventlog::EventLog::open(&log_dir, anju_eventlog::LogOptions::default())
        .await
    {
        Ok(log) => log,
        Err(error) => {
            let text = error.to_string();
            if text.contains("in use") || text.contains("LOCK") {
                return Err(Failure::new(
                    Exit::Conflict,
                    format!("the event log at {} is in use by a running anju-server", log_dir.display()),
                )
                .hint("stop anju-server first, or run `anju log stats` to ask the running server instead")
                .into());
            }
            return Err(Failure::new(
                Exit::Other,
                format!("opening the event log at {}: {text}", log_dir.display()),
            )
            .into());
        }
    };
    let report = log.verify().await.map_err(|error| {
        Failure::new(
            Exit::Other,
            format!("verifying {}: {error}", log_dir.display()),
        )
    })?;
    drop(log);
    if context.json {
        println!(
            "{}",
            serde_json::json!({
                "ok": report.is_ok(),
                "events": report.events,
                "streams": report.streams,
                "segments": report.segments,
                "bytes": report.bytes,
                "problems": report.problems,
            })
        );
    } else {
        let lang = context.lang;
        print!(
            "{}",
            key_values(&[
                (
                    lang.pick("log", "日志").into(),
                    log_dir.display().to_string()
                ),
                (
                    lang.pick("events", "事件数").into(),
                    report.events.to_string()
                ),
                (
                    lang.pick("streams", "流数").into(),
                    report.streams.to_string()
                ),
                (
                    lang.pick("segments", "段文件").into(),
                    report.segments.to_string()
                ),
                (lang.pick("bytes", "字节").into(), report.bytes.to_string()),
                (
                    lang.pick("result", "结果").into(),
                    if report.is_ok() {
                        lang.pick("ok: the log is sound", "完好").into()
                    } else {
                        format!(
                            "{} {}",
                            report.problems.len(),
                            lang.pick("problems", "个问题")
                        )
                    }
                ),
            ])
        );
        for problem in &report.problems {
            println!("  {problem}");
        }
    }
    if report.is_ok() {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::Other,
            format!(
                "the event log at {} has {} problems",
                log_dir.display(),
                report.problems.len()
            ),
        )
        .into())
    }
}
