//! Words for the enums and times the tables show, in Chinese or English.

use anju_proto::v1::{AppealStatus, RemediationStatus, RequestState, SatisfactionGrade, SlaStatus};

/// The language of table headers and labels (service names come from the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    /// Picks the English or the Chinese text.
    pub fn pick<'a>(self, en: &'a str, zh: &'a str) -> &'a str {
        match self {
            Lang::En => en,
            Lang::Zh => zh,
        }
    }
}

pub fn state(lang: Lang, value: i32) -> String {
    let state = RequestState::try_from(value).unwrap_or(RequestState::Unspecified);
    let (en, zh) = match state {
        RequestState::Unspecified => ("-", "-"),
        RequestState::Submitted => ("submitted", "待受理"),
        RequestState::InfoRequested => ("info requested", "待补正"),
        RequestState::Accepted => ("accepted", "已受理"),
        RequestState::Approved => ("approved", "已批准"),
        RequestState::InFulfilment => ("in fulfilment", "办理中"),
        RequestState::Fulfilled => ("fulfilled", "已办结"),
        RequestState::Closed => ("closed", "已关闭"),
        RequestState::Refused => ("refused", "不予受理"),
        RequestState::Denied => ("denied", "未批准"),
        RequestState::Withdrawn => ("withdrawn", "已撤回"),
    };
    lang.pick(en, zh).to_string()
}

pub fn sla(lang: Lang, value: i32) -> String {
    let status = SlaStatus::try_from(value).unwrap_or(SlaStatus::Unspecified);
    let (en, zh) = match status {
        SlaStatus::Unspecified => ("-", "-"),
        SlaStatus::OnTime => ("on time", "正常"),
        SlaStatus::Warning => ("warning", "预警"),
        SlaStatus::YellowCard => ("yellow card", "黄牌"),
        SlaStatus::RedCard => ("red card", "红牌"),
        SlaStatus::NotRunning => ("paused", "暂停"),
    };
    lang.pick(en, zh).to_string()
}

pub fn grade(lang: Lang, value: i32) -> String {
    let grade = SatisfactionGrade::try_from(value).unwrap_or(SatisfactionGrade::Unspecified);
    let (en, zh) = match grade {
        SatisfactionGrade::Unspecified => ("-", "-"),
        SatisfactionGrade::VerySatisfied => ("very satisfied", "非常满意"),
        SatisfactionGrade::Satisfied => ("satisfied", "满意"),
        SatisfactionGrade::Neutral => ("neutral", "基本满意"),
        SatisfactionGrade::Dissatisfied => ("dissatisfied", "不满意"),
        SatisfactionGrade::VeryDissatisfied => ("very dissatisfied", "非常不满意"),
    };
    lang.pick(en, zh).to_string()
}

pub fn remediation(lang: Lang, value: i32) -> String {
    let status = RemediationStatus::try_from(value).unwrap_or(RemediationStatus::Unspecified);
    let (en, zh) = match status {
        RemediationStatus::Unspecified => ("-", "-"),
        RemediationStatus::NotNeeded => ("not needed", "无需整改"),
        RemediationStatus::Open => ("open", "整改中"),
        RemediationStatus::Resolved => ("resolved", "已整改"),
        RemediationStatus::Overdue => ("overdue", "整改超期"),
    };
    lang.pick(en, zh).to_string()
}

pub fn appeal(lang: Lang, value: i32) -> String {
    let status = AppealStatus::try_from(value).unwrap_or(AppealStatus::Unspecified);
    let (en, zh) = match status {
        AppealStatus::Unspecified | AppealStatus::None => ("-", "-"),
        AppealStatus::Pending => ("pending", "申诉中"),
        AppealStatus::Upheld => ("upheld", "申诉成立"),
        AppealStatus::Rejected => ("rejected", "申诉驳回"),
    };
    lang.pick(en, zh).to_string()
}

/// A timestamp as `YYYY-MM-DD HH:MM` UTC, or "-" when unset.
pub fn time(value: Option<&prost_types::Timestamp>) -> String {
    match value {
        Some(ts) if ts.seconds != 0 || ts.nanos != 0 => {
            let days = ts.seconds.div_euclid(86_400);
            let secs = ts.seconds.rem_euclid(86_400);
            let (year, month, day) = civil_from_days(days);
            format!(
                "{year:04}-{month:02}-{day:02} {:02}:{:02}",
                secs / 3600,
                (secs % 3600) / 60
            )
        }
        _ => "-".to_string(),
    }
}

/// A date as `YYYY-MM-DD`, from days since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DD` into (year, month, day).
pub fn parse_date(text: &str) -> Option<(i32, u32, u32)> {
    let mut parts = text.trim().splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    (1..=days_in_month)
        .contains(&day)
        .then_some((year, month, day))
}

/// A deadline as "2026-12-03 (2.5 wd left)" or "overdue 3.0 wd".
pub fn deadline(lang: Lang, deadline: Option<&anju_proto::v1::Deadline>) -> String {
    match deadline {
        Some(d) if d.due_at.is_some() => {
            let when = time(d.due_at.as_ref());
            let date = when.split(' ').next().unwrap_or("-").to_string();
            if d.overdue || d.working_days_left < 0.0 {
                match lang {
                    Lang::En => format!("{date} overdue {:.1}d", -d.working_days_left),
                    Lang::Zh => format!("{date} 超期{:.1}天", -d.working_days_left),
                }
            } else {
                match lang {
                    Lang::En => format!("{date} ({:.1}d left)", d.working_days_left),
                    Lang::Zh => format!("{date} (剩{:.1}天)", d.working_days_left),
                }
            }
        }
        _ => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_through_day_numbers() {
        for (y, m, d) in [(1970, 1, 1), (2026, 2, 28), (2024, 2, 29), (2026, 12, 31)] {
            assert_eq!(civil_from_days(days_from_civil(y, m, d)), (y, m, d));
        }
        assert_eq!(
            time(Some(&prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0
            })),
            "2023-11-14 22:13"
        );
        assert_eq!(parse_date("2026-02-30"), None);
        assert_eq!(parse_date("2024-02-29"), Some((2024, 2, 29)));
    }
}
