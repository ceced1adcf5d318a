//! The working-day calendar: weekends, public holidays and make-up working days (调休),
//! and the working-day arithmetic that time limits are counted in.

use crate::time::{CivilDate, Timestamp};
use serde::Deserialize;
use std::collections::BTreeSet;

const CHINA_2026: &str = include_str!("../data/calendar-cn-2026.toml");

/// Why a calendar file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("calendar file is not valid toml: {0}")]
    Toml(String),
    #[error("calendar {field} has a bad date {value:?} (expected YYYY-MM-DD)")]
    BadDate { field: &'static str, value: String },
    #[error("calendar covers_to {to} is before covers_from {from}")]
    EmptyCoverage { from: String, to: String },
    #[error("calendar date {date} in {field} is outside the covered range {from}..={to}")]
    OutsideCoverage {
        field: &'static str,
        date: String,
        from: String,
        to: String,
    },
    #[error("calendar date {0} is listed both as a holiday and as a make-up working day")]
    BothHolidayAndWorkday(String),
    #[error("calendar make-up working day {0} is not a weekend day")]
    WorkdayNotOnWeekend(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    name: String,
    covers_from: String,
    covers_to: String,
    #[serde(default)]
    holidays: Vec<String>,
    #[serde(default)]
    workdays: Vec<String>,
}

/// Which days are working days. Inside the covered range the official schedule
/// decides; outside it, Monday to Friday are working days and nothing else is
/// (see [`Calendar::covers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    name: String,
    covers_from: CivilDate,
    covers_to: CivilDate,
    holidays: BTreeSet<CivilDate>,
    workdays: BTreeSet<CivilDate>,
}

impl Calendar {
    /// The shipped 2026 China calendar (State Council notice of 4 November 2025),
    /// covering 2026-01-01 to 2026-12-31.
    pub fn china_2026() -> Calendar {
        // The embedded file is checked by a test, so this cannot fail in a build that passed.
        Calendar::from_toml_str(CHINA_2026).unwrap_or_else(|_| Calendar::weekdays_only())
    }

    /// A calendar with no holidays: Monday to Friday are working days. It covers nothing.
    pub fn weekdays_only() -> Calendar {
        let epoch = CivilDate {
            year: 1970,
            month: 1,
            day: 1,
        };
        Calendar {
            name: "monday to friday".to_string(),
            covers_from: epoch.next_day(),
            covers_to: epoch,
            holidays: BTreeSet::new(),
            workdays: BTreeSet::new(),
        }
    }

    /// Loads a calendar file in the shipped format (see `data/calendar-cn-2026.toml`).
    pub fn from_toml_str(text: &str) -> Result<Calendar, CalendarError> {
        let file: CalendarFile =
            toml::from_str(text).map_err(|e| CalendarError::Toml(e.message().to_string()))?;
        let date = |field: &'static str, value: &str| {
            CivilDate::parse(value).ok_or_else(|| CalendarError::BadDate {
                field,
                value: value.to_string(),
            })
        };
        let covers_from = date("covers_from", &file.covers_from)?;
        let covers_to = date("covers_to", &file.covers_to)?;
        if covers_to < covers_from {
            return Err(CalendarError::EmptyCoverage {
                from: covers_from.to_string(),
                to: covers_to.to_string(),
            });
        }
        let read = |field: &'static str,
                    values: &[String]|
         -> Result<BTreeSet<CivilDate>, CalendarError> {
            let mut set = BTreeSet::new();
            for value in values {
                let day = date(field, value)?;
                if day < covers_from || day > covers_to {
                    return Err(CalendarError::OutsideCoverage {
                        field,
                        date: day.to_string(),
                        from: covers_from.to_string(),
                        to: covers_to.to_string(),
                    });
                }
                set.insert(day);
            }
            Ok(set)
        };
        let holidays = read("holidays", &file.holidays)?;
        let workdays = read("workdays", &file.workdays)?;
        if let Some(both) = holidays.intersection(&workdays).next() {
            return Err(CalendarError::BothHolidayAndWorkday(both.to_string()));
        }
        if let Some(weekday) = workdays.iter().find(|d| !d.is_weekend()) {
            return Err(CalendarError::WorkdayNotOnWeekend(weekday.to_string()));
        }
        Ok(Calendar {
            name: file.name,
            covers_from,
            covers_to,
            holidays,
            workdays,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first and last covered dates, or `None` for a calendar that covers nothing.
    pub fn coverage(&self) -> Option<(CivilDate, CivilDate)> {
        (self.covers_from <= self.covers_to).then_some((self.covers_from, self.covers_to))
    }

    /// Whether the official schedule is known for this date. When it is not, the
    /// calendar falls back to Monday-Friday, which ignores public holidays.
    pub fn covers(&self, date: CivilDate) -> bool {
        self.covers_from <= date && date <= self.covers_to
    }

    pub fn is_working_day(&self, date: CivilDate) -> bool {
        if self.workdays.contains(&date) {
            return true;
        }
        if self.holidays.contains(&date) {
            return false;
        }
        !date.is_weekend()
    }

    /// The end (23:59:59.999 CST) of the `n`th working day after the day `start` falls
    /// on. The start day itself is not counted, as in Chinese administrative practice
    /// (期间开始之日不计算在内). `n == 0` gives `start` unchanged.
    pub fn add_working_days(&self, start: Timestamp, n: u32) -> Timestamp {
        if n == 0 {
            return start;
        }
        let mut date = start.cst_date();
        let mut counted = 0;
        while counted < n {
            date = date.next_day();
            if self.is_working_day(date) {
                counted += 1;
            }
        }
        Timestamp::cst_end_of(date)
    }

    /// Working days on the dates after `a`'s date up to and including `b`'s date (CST);
    /// zero when `b` is not after `a`. For `n >= 1`,
    /// `working_days_between(t, add_working_days(t, n)) == n`.
    pub fn working_days_between(&self, a: Timestamp, b: Timestamp) -> u32 {
        let (from, to) = (a.cst_date(), b.cst_date());
        let mut date = from;
        let mut count = 0;
        while date < to {
            date = date.next_day();
            if self.is_working_day(date) {
                count += 1;
            }
        }
        count
    }
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar::china_2026()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_calendar_loads() {
        let calendar = Calendar::from_toml_str(CHINA_2026).expect("shipped calendar is valid");
        assert_eq!(calendar.holidays.len(), 33);
        assert_eq!(calendar.workdays.len(), 6);
    }
}
