//! The event log: `anju tail` follows it live, `anju log stats` asks the server for its
//! sizes and lags, `anju log verify` reads a stopped server's data directory and checks
//! every frame without writing a byte, and `anju log salvage` moves damaged segments
//! aside and keeps every event it can prove intact (ADR 007).

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
    /// whole appends, and reports each problem with its file, byte offset and positions;
    /// exits non-zero if there is one. Reads only: never changes a byte (offline: stop
    /// anju-server first).
    Verify {
        /// The server's data directory [default: the profile's, else ./data].
        #[arg(long, env = "ANJU_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// After damage that anju-server refuses to start with: moves the damaged segment and
    /// every later one aside into log/damaged/<unix seconds>/ (never deleting them) and
    /// writes them again with every event that is provably intact at its own position; each
    /// other position gets a placeholder event in stream $lost, and every lost position is
    /// listed (offline: stop anju-server first; prefer restoring a backup).
    Salvage {
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
        LogCommand::Verify { data_dir } => verify(context, log_dir(context, data_dir)?),
        LogCommand::Salvage { data_dir } => salvage(context, log_dir(context, data_dir)?),
    }
}

/// The `log` directory of the server's data directory, which must exist.
fn log_dir(context: &Context, data_dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let data_dir = data_dir
        .or_else(|| context.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("./data"));
    let log_dir = data_dir.join("log");
    if !log_dir.join("segments").is_dir() {
        return Err(Failure::new(Exit::NotFound, format!("no event log at {}", log_dir.display()))
            .hint("pass the server's data directory with --data-dir (the one anju-server was started with)")
            .into());
    }
    Ok(log_dir)
}

/// The failure for a log directory that cannot be read or changed.
fn log_failure(log_dir: &std::path::Path, doing: &str, error: anju_eventlog::LogError) -> Failure {
    let text = error.to_string();
    if text.contains("in use") {
        return Failure::new(
            Exit::Conflict,
            format!(
                "the event log at {} is in use by a running anju-server",
                log_dir.display()
            ),
        )
        .hint("stop anju-server first, or run `anju log stats` to ask the running server instead");
    }
    Failure::new(
        Exit::Other,
        format!("{doing} the event log at {}: {text}", log_dir.display()),
    )
}

fn verify(context: &Context, log_dir: PathBuf) -> anyhow::Result<()> {
    let report = anju_eventlog::verify_directory(&log_dir)
        .map_err(|error| log_failure(&log_dir, "verifying", error))?;
    if context.json {
        println!(
            "{}",
            serde_json::json!({
                "ok": report.is_ok(),
                "events": report.events,
                "streams": report.streams,
                "segments": report.segments,
                "bytes": report.bytes,
                "problems_found": report.problems_found,
                "problems": report.problems,
                "torn_tail": report.torn_tail,
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
                            report.problems_found,
                            lang.pick("problems", "个问题")
                        )
                    }
                ),
            ])
        );
        for problem in &report.problems {
            println!("  {problem}");
        }
        if let Some(torn) = &report.torn_tail {
            println!(
                "{}: {torn}",
                lang.pick(
                    "unfinished last write (not a problem)",
                    "未完成的最后一次写入（不是问题）"
                )
            );
        }
    }
    if report.is_ok() {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::Other,
            format!(
                "the event log at {} has {} problems; nothing was changed",
                log_dir.display(),
                report.problems_found
            ),
        )
        .hint("restore the data directory from a backup, or run `anju log salvage` with anju-server stopped")
        .into())
    }
}

/// Lost positions as ranges: `[first, last]` pairs.
fn ranges(positions: impl Iterator<Item = u64>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for position in positions {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == position => *last = position,
            _ => out.push((position, position)),
        }
    }
    out
}

fn salvage(context: &Context, log_dir: PathBuf) -> anyhow::Result<()> {
    let report = anju_eventlog::salvage(&log_dir)
        .map_err(|error| log_failure(&log_dir, "salvaging", error))?;
    let lost_ranges = ranges(report.lost.iter().map(|lost| lost.position));
    if context.json {
        let lost: Vec<serde_json::Value> = report
            .lost
            .iter()
            .map(|lost| {
                serde_json::json!({
                    "position": lost.position,
                    "reason": lost.reason,
                    "stream_id": lost.stream_id,
                    "stream_version": lost.stream_version,
                    "event_id": lost.event_id.map(|id| id.to_string()),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "salvaged": report.moved_to.is_some(),
                "moved_to": report.moved_to,
                "moved": report.moved,
                "damage": report.damage,
                "kept": report.kept,
                "lost_positions": lost_ranges,
                "lost": lost,
                "cut_from": report.cut_from,
                "head": report.head,
                "placeholder_stream": anju_eventlog::LOST_STREAM,
            })
        );
        return Ok(());
    }
    let lang = context.lang;
    let Some(moved_to) = &report.moved_to else {
        println!(
            "{}",
            lang.pick(
                "no damage found: nothing was changed",
                "未发现损坏：没有做任何改动"
            )
        );
        return Ok(());
    };
    for damage in &report.damage {
        println!("{}: {damage}", lang.pick("damage", "损坏"));
    }
    let shown: Vec<String> = lost_ranges
        .iter()
        .map(|(first, last)| {
            if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            }
        })
        .collect();
    print!(
        "{}",
        key_values(&[
            (
                lang.pick("moved aside to", "原文件移至").into(),
                moved_to.display().to_string()
            ),
            (
                lang.pick("events kept", "保留事件").into(),
                report.kept.to_string()
            ),
            (
                lang.pick("positions lost", "丢失位置").into(),
                if shown.is_empty() {
                    "-".into()
                } else {
                    shown.join(", ")
                }
            ),
            (
                lang.pick("log ends before", "日志结束于").into(),
                report.head.to_string()
            ),
        ])
    );
    if let Some(cut_from) = report.cut_from {
        println!(
            "{} {cut_from}",
            lang.pick(
                "nothing intact follows the damage at the end of the last segment; the log now ends at position",
                "最后一个段末尾的损坏之后没有完好的事件；日志现在结束于位置"
            )
        );
    }
    for lost in &report.lost {
        match (&lost.stream_id, lost.stream_version) {
            (Some(stream), Some(version)) => {
                println!("  {}: {stream}@{version}: {}", lost.position, lost.reason)
            }
            _ => println!("  {}: {}", lost.position, lost.reason),
        }
    }
    Ok(())
}
