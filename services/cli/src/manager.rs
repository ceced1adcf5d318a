//! Manager reports as aligned tables: throughput per time bucket, lead times, SLA
//! cards, satisfaction with remediation, and the backlog by state and age.

use anju_proto::v1::{
    BacklogRow, GetBacklogRequest, GetBacklogResponse, GetLeadTimesRequest, GetLeadTimesResponse,
    GetSatisfactionRequest, GetSatisfactionResponse, GetSlaReportRequest, GetSlaReportResponse,
    GetThroughputRequest, GetThroughputResponse, LeadTimeSegment, ReportFilter, ReportGrouping,
    SatisfactionGrade, SatisfactionRow, SlaReportRow, ThroughputBucket, TimeBucket, TimeRange,
};
use clap::{Args, Subcommand, ValueEnum};

use crate::client::{call, Context};
use crate::failure::Failure;
use crate::json;
use crate::labels::{self, Lang};
use crate::table::Table;

#[derive(Debug, Subcommand)]
pub enum Report {
    /// Requests submitted, accepted, approved, fulfilled, closed per hour, day or week.
    Throughput {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum, default_value = "day")]
        bucket: Bucket,
    },
    /// p50/p90 lead times in working days and hours, per segment.
    LeadTimes {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum, default_value = "category")]
        by: Grouping,
    },
    /// Warnings, yellow and red cards, deadlines met, overdue now.
    Sla {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum, default_value = "category")]
        by: Grouping,
    },
    /// Ratings by grade, satisfaction rate, remediation and appeals.
    Satisfaction {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum, default_value = "category")]
        by: Grouping,
    },
    /// Open requests by state and age (working days since submission).
    Backlog {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum, default_value = "category")]
        by: Grouping,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Bucket {
    Hour,
    Day,
    Week,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Grouping {
    None,
    Site,
    Category,
    Service,
}

impl Grouping {
    fn proto(self) -> i32 {
        match self {
            Grouping::None => ReportGrouping::None as i32,
            Grouping::Site => ReportGrouping::Site as i32,
            Grouping::Category => ReportGrouping::Category as i32,
            Grouping::Service => ReportGrouping::Service as i32,
        }
    }
}

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only this site; repeat for several.
    #[arg(long = "site")]
    sites: Vec<String>,
    /// Only this category; repeat for several.
    #[arg(long = "category")]
    categories: Vec<String>,
    /// Only this service code; repeat for several.
    #[arg(long = "service")]
    services: Vec<String>,
    /// From this date (YYYY-MM-DD, UTC, inclusive).
    #[arg(long)]
    from: Option<String>,
    /// Up to this date (YYYY-MM-DD, UTC, exclusive).
    #[arg(long)]
    to: Option<String>,
}

fn timestamp(flag: &str, text: &str) -> anyhow::Result<prost_types::Timestamp> {
    let (year, month, day) = labels::parse_date(text).ok_or_else(|| {
        Failure::usage(format!(
            "invalid {flag} {text:?}: expected a date YYYY-MM-DD"
        ))
    })?;
    Ok(prost_types::Timestamp {
        seconds: labels::days_from_civil(year as i64, month, day) * 86_400,
        nanos: 0,
    })
}

impl FilterArgs {
    fn proto(&self) -> anyhow::Result<ReportFilter> {
        let from = self
            .from
            .as_deref()
            .map(|t| timestamp("--from", t))
            .transpose()?;
        let to = self
            .to
            .as_deref()
            .map(|t| timestamp("--to", t))
            .transpose()?;
        Ok(ReportFilter {
            site_ids: self.sites.clone(),
            categories: self.categories.clone(),
            service_codes: self.services.clone(),
            time_range: (from.is_some() || to.is_some()).then_some(TimeRange { from, to }),
        })
    }
}

pub async fn run(context: &Context, report: Report) -> anyhow::Result<()> {
    let session = context.connect().await?;
    let mut client = session.manager();
    let lang = context.lang;
    let text = match report {
        Report::Throughput { filter, bucket } => {
            let bucket = match bucket {
                Bucket::Hour => TimeBucket::Hour,
                Bucket::Day => TimeBucket::Day,
                Bucket::Week => TimeBucket::Week,
            } as i32;
            let r = call(
                "reading throughput",
                client.get_throughput(session.request(GetThroughputRequest {
                    filter: Some(filter.proto()?),
                    bucket,
                    min_position: 0,
                })?),
            )
            .await?;
            if context.json {
                return json::print("GetThroughputResponse", &r);
            }
            render_throughput(lang, &r)
        }
        Report::LeadTimes { filter, by } => {
            let r = call(
                "reading lead times",
                client.get_lead_times(session.request(GetLeadTimesRequest {
                    filter: Some(filter.proto()?),
                    grouping: by.proto(),
                    min_position: 0,
                })?),
            )
            .await?;
            if context.json {
                return json::print("GetLeadTimesResponse", &r);
            }
            render_lead_times(lang, &r)
        }
        Report::Sla { filter, by } => {
            let r = call(
                "reading the SLA report",
                client.get_sla_report(session.request(GetSlaReportRequest {
                    filter: Some(filter.proto()?),
                    grouping: by.proto(),
                    min_position: 0,
                })?),
            )
            .await?;
            if context.json {
                return json::print("GetSlaReportResponse", &r);
            }
            render_sla(lang, &r)
        }
        Report::Satisfaction { filter, by } => {
            let r = call(
                "reading satisfaction",
                client.get_satisfaction(session.request(GetSatisfactionRequest {
                    filter: Some(filter.proto()?),
                    grouping: by.proto(),
                    min_position: 0,
                })?),
            )
            .await?;
            if context.json {
                return json::print("GetSatisfactionResponse", &r);
            }
            render_satisfaction(lang, &r)
        }
        Report::Backlog { filter, by } => {
            let r = call(
                "reading the backlog",
                client.get_backlog(session.request(GetBacklogRequest {
                    filter: Some(filter.proto()?),
                    grouping: by.proto(),
                    min_position: 0,
                })?),
            )
            .await?;
            if context.json {
                return json::print("GetBacklogResponse", &r);
            }
            render_backlog(lang, &r)
        }
    };
    print!("{text}");
    Ok(())
}

fn group_name(lang: Lang, group: &str) -> String {
    if group.is_empty() {
        lang.pick("all", "全部").to_string()
    } else {
        group.to_string()
    }
}

fn total_label(lang: Lang) -> String {
    lang.pick("total", "合计").to_string()
}

fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

pub fn render_throughput(lang: Lang, response: &GetThroughputResponse) -> String {
    let mut table = Table::new(&[
        lang.pick("from", "起"),
        lang.pick("submitted", "提交"),
        lang.pick("accepted", "受理"),
        lang.pick("approved", "批准"),
        lang.pick("fulfilled", "办结"),
        lang.pick("closed", "关闭"),
        lang.pick("ended unserved", "未办理结束"),
    ])
    .right(&[1, 2, 3, 4, 5, 6]);
    let cells = |label: String, b: &ThroughputBucket| {
        vec![
            label,
            b.submitted.to_string(),
            b.accepted.to_string(),
            b.approved.to_string(),
            b.fulfilled.to_string(),
            b.closed.to_string(),
            b.ended_without_service.to_string(),
        ]
    };
    for bucket in &response.buckets {
        table.row(cells(labels::time(bucket.start.as_ref()), bucket));
    }
    if let Some(total) = &response.total {
        table.total(cells(total_label(lang), total));
    }
    table.render()
}

fn segment_name(lang: Lang, segment: i32) -> &'static str {
    match LeadTimeSegment::try_from(segment).unwrap_or(LeadTimeSegment::Unspecified) {
        LeadTimeSegment::Unspecified => "-",
        LeadTimeSegment::SubmitToAccept => lang.pick("submit→accept", "提交→受理"),
        LeadTimeSegment::AcceptToDecision => lang.pick("accept→decision", "受理→决定"),
        LeadTimeSegment::DecisionToFulfilled => lang.pick("decision→fulfilled", "决定→办结"),
        LeadTimeSegment::SubmitToFulfilled => lang.pick("submit→fulfilled", "提交→办结"),
    }
}

pub fn render_lead_times(lang: Lang, response: &GetLeadTimesResponse) -> String {
    let mut table = Table::new(&[
        lang.pick("group", "分组"),
        lang.pick("segment", "环节"),
        lang.pick("count", "件数"),
        lang.pick("p50 wd", "p50工作日"),
        lang.pick("p90 wd", "p90工作日"),
        lang.pick("p50 h", "p50小时"),
        lang.pick("p90 h", "p90小时"),
    ])
    .right(&[2, 3, 4, 5, 6]);
    for row in &response.rows {
        for (index, stats) in row.segments.iter().enumerate() {
            table.row(vec![
                if index == 0 {
                    group_name(lang, &row.group)
                } else {
                    String::new()
                },
                segment_name(lang, stats.segment).to_string(),
                stats.count.to_string(),
                format!("{:.1}", stats.p50_working_days),
                format!("{:.1}", stats.p90_working_days),
                format!("{:.1}", stats.p50_hours),
                format!("{:.1}", stats.p90_hours),
            ]);
        }
    }
    table.render()
}

pub fn render_sla(lang: Lang, response: &GetSlaReportResponse) -> String {
    let mut table = Table::new(&[
        lang.pick("group", "分组"),
        lang.pick("warnings", "预警"),
        lang.pick("yellow", "黄牌"),
        lang.pick("red", "红牌"),
        lang.pick("due", "到期"),
        lang.pick("met", "按时"),
        lang.pick("on time", "按时率"),
        lang.pick("overdue now", "当前超期"),
    ])
    .right(&[1, 2, 3, 4, 5, 6, 7]);
    let cells = |label: String, r: &SlaReportRow| {
        vec![
            label,
            r.warnings.to_string(),
            r.yellow_cards.to_string(),
            r.red_cards.to_string(),
            r.deadlines_due.to_string(),
            r.deadlines_met.to_string(),
            percent(r.on_time_rate),
            r.overdue_now.to_string(),
        ]
    };
    for row in &response.rows {
        table.row(cells(group_name(lang, &row.group), row));
    }
    if let Some(total) = &response.total {
        table.total(cells(total_label(lang), total));
    }
    table.render()
}

pub fn render_satisfaction(lang: Lang, response: &GetSatisfactionResponse) -> String {
    let grades = [
        SatisfactionGrade::VerySatisfied,
        SatisfactionGrade::Satisfied,
        SatisfactionGrade::Neutral,
        SatisfactionGrade::Dissatisfied,
        SatisfactionGrade::VeryDissatisfied,
    ];
    let mut headers = vec![lang.pick("group", "分组").to_string()];
    headers.extend(grades.iter().map(|g| labels::grade(lang, *g as i32)));
    headers.extend(
        [
            lang.pick("rated", "已评"),
            lang.pick("unrated", "未评"),
            lang.pick("satisfied", "满意率"),
            lang.pick("remedy open", "整改中"),
            lang.pick("resolved", "已整改"),
            lang.pick("overdue", "整改超期"),
            lang.pick("appeals", "申诉待定"),
        ]
        .map(str::to_string),
    );
    let mut table = Table::new(&headers).right(&(1..headers.len()).collect::<Vec<_>>());
    let cells = |label: String, r: &SatisfactionRow| {
        let mut cells = vec![label];
        for grade in grades {
            let count = r
                .grades
                .iter()
                .find(|g| g.grade == grade as i32)
                .map_or(0, |g| g.count);
            cells.push(count.to_string());
        }
        let remediation = r.remediation.unwrap_or_default();
        cells.extend([
            r.rated.to_string(),
            r.unrated.to_string(),
            percent(r.satisfaction_rate),
            remediation.open.to_string(),
            remediation.resolved.to_string(),
            remediation.overdue.to_string(),
            remediation.appeals_pending.to_string(),
        ]);
        cells
    };
    for row in &response.rows {
        table.row(cells(group_name(lang, &row.group), row));
    }
    if let Some(total) = &response.total {
        table.total(cells(total_label(lang), total));
    }
    table.render()
}

/// The age buckets docs/api.md names, in order; a server may use other labels, which
/// then come after these in the order they first appear.
const AGE_BUCKETS: [&str; 4] = ["0-1", "2-5", "6-10", "11+"];

pub fn render_backlog(lang: Lang, response: &GetBacklogResponse) -> String {
    let mut buckets: Vec<String> = Vec::new();
    for cell in response
        .rows
        .iter()
        .chain(response.total.iter())
        .flat_map(|r| r.cells.iter())
    {
        if !buckets.contains(&cell.age_bucket) {
            buckets.push(cell.age_bucket.clone());
        }
    }
    buckets.sort_by_key(|b| {
        AGE_BUCKETS
            .iter()
            .position(|known| known == b)
            .unwrap_or(AGE_BUCKETS.len())
    });
    if buckets.is_empty() {
        buckets = AGE_BUCKETS.iter().map(|b| b.to_string()).collect();
    }
    let mut headers = vec![
        lang.pick("group", "分组").to_string(),
        lang.pick("state", "状态").to_string(),
    ];
    headers.extend(buckets.iter().map(|b| {
        if AGE_BUCKETS.contains(&b.as_str()) {
            format!("{b}{}", lang.pick("d", "天"))
        } else {
            b.clone()
        }
    }));
    headers.push(lang.pick("oldest", "最早提交").to_string());
    let mut table = Table::new(&headers).right(&(2..2 + buckets.len()).collect::<Vec<_>>());
    let add = |table: &mut Table, label: String, row: &BacklogRow, total: bool| {
        let mut states: Vec<i32> = row.cells.iter().map(|c| c.state).collect();
        states.sort_unstable();
        states.dedup();
        for (index, state) in states.iter().enumerate() {
            let mut cells = vec![
                if index == 0 {
                    label.clone()
                } else {
                    String::new()
                },
                labels::state(lang, *state),
            ];
            for bucket in &buckets {
                let count: u64 = row
                    .cells
                    .iter()
                    .filter(|c| c.state == *state && &c.age_bucket == bucket)
                    .map(|c| c.count)
                    .sum();
                cells.push(if count == 0 {
                    "·".into()
                } else {
                    count.to_string()
                });
            }
            let oldest = row
                .cells
                .iter()
                .filter(|c| c.state == *state && c.count > 0)
                .filter_map(|c| c.oldest_submitted_at.as_ref())
                .min_by_key(|t| (t.seconds, t.nanos));
            cells.push(labels::time(oldest));
            table.row(cells);
        }
        let summary = vec![
            if states.is_empty() {
                label
            } else {
                String::new()
            },
            format!(
                "{} {} / {} {}",
                lang.pick("open", "在办"),
                row.open,
                lang.pick("overdue", "超期"),
                row.overdue
            ),
        ];
        if total {
            table.total(summary);
        } else {
            table.row(summary);
        }
    };
    for row in &response.rows {
        add(&mut table, group_name(lang, &row.group), row, false);
    }
    let mut out = table.render();
    if let Some(total) = &response.total {
        out.push_str(&format!(
            "{}: {} {}, {} {}\n",
            total_label(lang),
            lang.pick("open", "在办"),
            total.open,
            lang.pick("overdue", "超期"),
            total.overdue
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use anju_proto::v1::{
        BacklogCell, GradeCount, LeadTimeRow, LeadTimeStats, RemediationSummary, RequestState,
    };

    fn ts(day: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp {
            seconds: 1_764_288_000 + day * 86_400,
            nanos: 0,
        })
    }

    fn throughput() -> GetThroughputResponse {
        let bucket = |day: i64, submitted: u64| ThroughputBucket {
            start: ts(day),
            end: ts(day + 1),
            submitted,
            accepted: submitted.saturating_sub(1),
            approved: submitted / 2,
            fulfilled: submitted / 3,
            closed: submitted / 4,
            ended_without_service: 1,
        };
        GetThroughputResponse {
            buckets: vec![bucket(0, 12), bucket(1, 7), bucket(2, 0)],
            total: Some(bucket(0, 19)),
        }
    }

    #[test]
    fn throughput_in_english_and_chinese() {
        insta::assert_snapshot!("throughput_en", render_throughput(Lang::En, &throughput()));
        insta::assert_snapshot!("throughput_zh", render_throughput(Lang::Zh, &throughput()));
    }

    #[test]
    fn lead_times_by_site() {
        let stats = |segment: LeadTimeSegment, count, p50| LeadTimeStats {
            segment: segment as i32,
            count,
            p50_working_days: p50,
            p90_working_days: p50 * 2.5,
            p50_hours: p50 * 24.0,
            p90_hours: p50 * 60.0,
        };
        let response = GetLeadTimesResponse {
            rows: vec![LeadTimeRow {
                group: "安宁社区".into(),
                segments: vec![
                    stats(LeadTimeSegment::SubmitToAccept, 40, 0.5),
                    stats(LeadTimeSegment::AcceptToDecision, 31, 2.0),
                    stats(LeadTimeSegment::SubmitToFulfilled, 22, 6.5),
                ],
            }],
        };
        insta::assert_snapshot!("lead_times_zh", render_lead_times(Lang::Zh, &response));
    }

    #[test]
    fn sla_and_satisfaction_and_backlog() {
        let sla_row = |group: &str, red| SlaReportRow {
            group: group.into(),
            warnings: 5,
            yellow_cards: 2,
            red_cards: red,
            deadlines_due: 30,
            deadlines_met: 27,
            on_time_rate: 0.9,
            overdue_now: 2,
        };
        let sla = GetSlaReportResponse {
            rows: vec![sla_row("site-anning", 1), sla_row("site-xingfu", 0)],
            total: Some(sla_row("", 1)),
        };
        insta::assert_snapshot!("sla_en", render_sla(Lang::En, &sla));

        let satisfaction_row = |group: &str| SatisfactionRow {
            group: group.into(),
            grades: (1..=5)
                .map(|g| GradeCount {
                    grade: g,
                    count: (6 - g) as u64,
                })
                .collect(),
            rated: 15,
            unrated: 3,
            satisfaction_rate: 0.8,
            remediation: Some(RemediationSummary {
                open: 1,
                resolved: 2,
                overdue: 0,
                appeals_pending: 1,
                appeals_upheld: 0,
                appeals_rejected: 0,
            }),
        };
        let satisfaction = GetSatisfactionResponse {
            rows: vec![satisfaction_row("民政")],
            total: Some(satisfaction_row("")),
        };
        insta::assert_snapshot!(
            "satisfaction_zh",
            render_satisfaction(Lang::Zh, &satisfaction)
        );

        let backlog = GetBacklogResponse {
            rows: vec![BacklogRow {
                group: "site-anning".into(),
                cells: vec![
                    BacklogCell {
                        state: RequestState::Submitted as i32,
                        age_bucket: "0-1".into(),
                        count: 4,
                        oldest_submitted_at: ts(0),
                    },
                    BacklogCell {
                        state: RequestState::Submitted as i32,
                        age_bucket: "11+".into(),
                        count: 1,
                        oldest_submitted_at: ts(-20),
                    },
                    BacklogCell {
                        state: RequestState::InfoRequested as i32,
                        age_bucket: "2-5".into(),
                        count: 2,
                        oldest_submitted_at: ts(-3),
                    },
                ],
                open: 7,
                overdue: 1,
            }],
            total: Some(BacklogRow {
                group: String::new(),
                cells: vec![],
                open: 7,
                overdue: 1,
            }),
        };
        insta::assert_snapshot!("backlog_en", render_backlog(Lang::En, &backlog));
    }
}
