//! `anju clock`: the server's clock, and moving the demo clock of a server started with
//! `--demo-clock` (admin). The timer scheduler fires what fell due before `advance`
//! returns, so the queue and reports read right after it show the new state.

use std::time::Duration;

use anju_proto::v1::{AdvanceClockRequest, GetClockRequest};
use clap::Subcommand;

use crate::client::{call, Context};
use crate::json;
use crate::labels;
use crate::table::key_values;

#[derive(Debug, Subcommand)]
pub enum ClockCommand {
    /// The server's now and how far the demo clock is ahead of real time (admin).
    Show,
    /// Moves the demo clock forward (admin; the server must run with --demo-clock).
    /// Not idempotent: a retry moves the clock again.
    #[command(group(
        clap::ArgGroup::new("how_far")
            .required(true)
            .args(["by", "working_days"])
    ))]
    Advance {
        /// How far, e.g. 90m, 8h, 3d.
        #[arg(long, value_parser = anju_auth::parse_duration)]
        by: Option<Duration>,
        /// Working days by the server's calendar, to the same time of day.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=250))]
        working_days: Option<u32>,
    },
}

fn days(offset: Option<&prost_types::Duration>) -> String {
    let seconds = offset.map_or(0, |d| d.seconds);
    format!("{:.1}", seconds as f64 / 86_400.0)
}

pub async fn run(context: &Context, command: Option<ClockCommand>) -> anyhow::Result<()> {
    let session = context.connect().await?;
    let lang = context.lang;
    match command.unwrap_or(ClockCommand::Show) {
        ClockCommand::Show => {
            let r = call(
                "reading the server's clock",
                session
                    .admin()
                    .get_clock(session.request(GetClockRequest {})?),
            )
            .await?;
            if context.json {
                return json::print("GetClockResponse", &r);
            }
            let kind = if r.demo_clock {
                match lang {
                    labels::Lang::En => format!(
                        "demo clock, {} days ahead of real time",
                        days(r.offset.as_ref())
                    ),
                    labels::Lang::Zh => {
                        format!("演示时钟，比真实时间快 {} 天", days(r.offset.as_ref()))
                    }
                }
            } else {
                lang.pick("system clock", "系统时钟").to_string()
            };
            print!(
                "{}",
                key_values(&[
                    (
                        lang.pick("now (UTC)", "当前 (UTC)").to_string(),
                        labels::time(r.now.as_ref())
                    ),
                    (lang.pick("clock", "时钟").to_string(), kind),
                ])
            );
            Ok(())
        }
        ClockCommand::Advance { by, working_days } => {
            let r = call(
                "advancing the demo clock",
                session
                    .admin()
                    .advance_clock(session.request(AdvanceClockRequest {
                        by: by.map(|by| prost_types::Duration {
                            seconds: by.as_secs() as i64,
                            nanos: by.subsec_nanos() as i32,
                        }),
                        working_days: working_days.unwrap_or(0),
                    })?),
            )
            .await?;
            if context.json {
                return json::print("AdvanceClockResponse", &r);
            }
            print!(
                "{}",
                key_values(&[
                    (
                        lang.pick("now (UTC)", "当前 (UTC)").to_string(),
                        labels::time(r.now.as_ref())
                    ),
                    (
                        lang.pick("days ahead", "超前天数").to_string(),
                        days(r.offset.as_ref())
                    ),
                    (
                        lang.pick("timers fired", "触发督办").to_string(),
                        r.timers_fired.to_string()
                    ),
                    (
                        lang.pick("position", "日志位置").to_string(),
                        r.position.to_string()
                    ),
                ])
            );
            Ok(())
        }
    }
}
