//! The working-day calendar: weekends, public holidays and make-up working days (调休),
//! and the working-day arithmetic that time limits are counted in.
//!
//! The schedule is data: one file per year (the State Council publishes each year's
//! arrangement in the autumn before), shipped ones embedded in the binary and newer ones
//! installed while the server runs ([`Calendar::install`]). Clones are independent
//! values; the server shares one calendar through an `Arc`, so an installed year is
//! seen by every holder at once.

use crate::time::{CivilDate, Timestamp};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

const CHINA_2026: &str = include_str!("../data/calendar-cn-2026.toml");

/// The shipped year files, oldest first.
pub const SHIPPED_YEARS: [&str; 1] = [CHINA_2026];

/// Days before the end of a year from which a missing schedule for the next year is
/// reported ([`Calendar::missing_year`]).
pub const WARN_DAYS_BEFORE_YEAR_END: i64 = 60;

/// Public holidays fixed to a Gregorian date by 《全国年节及纪念日放假办法》 (as amended
/// in 2024): 元旦 1 January, 劳动节 1–2 May, 国庆节 1–3 October. Outside every installed
/// year these are still days off; the lunar holidays and the make-up working days are
/// known only from a year's file.
pub const FIXED_STATUTORY_HOLIDAYS: [(u32, u32); 6] =
    [(1, 1), (5, 1), (5, 2), (10, 1), (10, 2), (10, 3)];

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
    #[error("calendar name is empty: name the arrangement and its source")]
    NoName,
    #[error("a calendar year file covers one whole year (covers_from = \"YYYY-01-01\", covers_to = \"YYYY-12-31\"), not {from}..={to}")]
    NotOneYear { from: String, to: String },
    #[error("calendar {from}..={to} overlaps {other:?} ({other_from}..={other_to}) without covering exactly the same dates")]
    Overlaps {
        from: String,
        to: String,
        other: String,
        other_from: String,
        other_to: String,
    },
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

/// One published arrangement: the holidays and make-up working days of a covered range
/// of dates (for an installed year file, exactly one calendar year).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    name: String,
    covers_from: CivilDate,
    covers_to: CivilDate,
    holidays: BTreeSet<CivilDate>,
    workdays: BTreeSet<CivilDate>,
}

impl Schedule {
    /// Reads a calendar file in the shipped format (see `data/calendar-cn-2026.toml`).
    pub fn from_toml_str(text: &str) -> Result<Schedule, CalendarError> {
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
        if file.name.trim().is_empty() {
            return Err(CalendarError::NoName);
        }
        Ok(Schedule {
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

    pub fn covers_from(&self) -> CivilDate {
        self.covers_from
    }

    pub fn covers_to(&self) -> CivilDate {
        self.covers_to
    }

    pub fn holidays(&self) -> &BTreeSet<CivilDate> {
        &self.holidays
    }

    pub fn workdays(&self) -> &BTreeSet<CivilDate> {
        &self.workdays
    }

    /// The year this schedule covers when it covers exactly one whole calendar year
    /// (1 January to 31 December), as a year file must.
    pub fn year(&self) -> Option<i32> {
        let year = self.covers_from.year;
        (self.covers_from == first_of_year(year) && self.covers_to == last_of_year(year))
            .then_some(year)
    }

    /// The same, or an error naming the range when it is not one whole year.
    pub fn whole_year(&self) -> Result<i32, CalendarError> {
        self.year().ok_or_else(|| CalendarError::NotOneYear {
            from: self.covers_from.to_string(),
            to: self.covers_to.to_string(),
        })
    }
}

fn first_of_year(year: i32) -> CivilDate {
    CivilDate {
        year,
        month: 1,
        day: 1,
    }
}

fn last_of_year(year: i32) -> CivilDate {
    CivilDate {
        year,
        month: 12,
        day: 31,
    }
}

/// The schedules a calendar knows, by their first covered date. They never overlap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Schedules(BTreeMap<CivilDate, Arc<Schedule>>);

impl Schedules {
    /// The schedule covering `date`, if any.
    fn covering(&self, date: CivilDate) -> Option<&Schedule> {
        self.0
            .range(..=date)
            .next_back()
            .map(|(_, schedule)| schedule.as_ref())
            .filter(|schedule| date <= schedule.covers_to)
    }

    fn is_working_day(&self, date: CivilDate) -> bool {
        match self.covering(date) {
            Some(schedule) => {
                if schedule.workdays.contains(&date) {
                    true
                } else if schedule.holidays.contains(&date) {
                    false
                } else {
                    !date.is_weekend()
                }
            }
            None => {
                !date.is_weekend() && !FIXED_STATUTORY_HOLIDAYS.contains(&(date.month, date.day))
            }
        }
    }

    /// Adds `schedule`, replacing one with exactly the same range; refuses one that
    /// overlaps another partly.
    fn insert(&mut self, schedule: Schedule) -> Result<Option<Arc<Schedule>>, CalendarError> {
        if let Some(existing) = self.0.get(&schedule.covers_from) {
            if existing.covers_to == schedule.covers_to {
                return Ok(self.0.insert(schedule.covers_from, Arc::new(schedule)));
            }
        }
        if let Some(other) = self.0.values().find(|other| {
            other.covers_from <= schedule.covers_to && schedule.covers_from <= other.covers_to
        }) {
            return Err(CalendarError::Overlaps {
                from: schedule.covers_from.to_string(),
                to: schedule.covers_to.to_string(),
                other: other.name.clone(),
                other_from: other.covers_from.to_string(),
                other_to: other.covers_to.to_string(),
            });
        }
        self.0.insert(schedule.covers_from, Arc::new(schedule));
        Ok(None)
    }
}

/// Which days are working days. Inside a covered range the published schedule decides;
/// outside every one, Monday to Friday are working days except the fixed-date statutory
/// holidays ([`FIXED_STATUTORY_HOLIDAYS`]; see [`Calendar::covers`]).
pub struct Calendar {
    schedules: RwLock<Schedules>,
}

impl Clone for Calendar {
    fn clone(&self) -> Self {
        Calendar {
            schedules: RwLock::new(self.read().clone()),
        }
    }
}

impl PartialEq for Calendar {
    fn eq(&self, other: &Self) -> bool {
        *self.read() == *other.read()
    }
}

impl Eq for Calendar {}

impl std::fmt::Debug for Calendar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let schedules = self.read();
        f.debug_list()
            .entries(
                schedules
                    .0
                    .values()
                    .map(|s| (s.name.as_str(), s.covers_from, s.covers_to)),
            )
            .finish()
    }
}

impl Calendar {
    /// The shipped calendar: every year file embedded in the binary ([`SHIPPED_YEARS`];
    /// today 2026, from the State Council notice of 4 November 2025).
    pub fn china_2026() -> Calendar {
        let calendar = Calendar::weekdays_only();
        for text in SHIPPED_YEARS {
            // The embedded files are checked by a test, so this cannot fail in a build
            // that passed.
            if let Ok(schedule) = Schedule::from_toml_str(text) {
                let _ = calendar.install(schedule);
            }
        }
        calendar
    }

    /// The shipped calendar (the same as [`Calendar::china_2026`], by its lasting name).
    pub fn shipped() -> Calendar {
        Calendar::china_2026()
    }

    /// A calendar that covers nothing: Monday to Friday are working days, except the
    /// fixed-date statutory holidays.
    pub fn weekdays_only() -> Calendar {
        Calendar {
            schedules: RwLock::new(Schedules::default()),
        }
    }

    /// A calendar of one file in the shipped format (see `data/calendar-cn-2026.toml`).
    pub fn from_toml_str(text: &str) -> Result<Calendar, CalendarError> {
        let calendar = Calendar::weekdays_only();
        calendar.install(Schedule::from_toml_str(text)?)?;
        Ok(calendar)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Schedules> {
        self.schedules.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a schedule (a newly published year) for every holder of this calendar.
    /// One with exactly the range of a known schedule replaces it (a corrected file),
    /// and the replaced one is returned; one overlapping another partly is refused.
    /// Deadlines already decided are carried in events and do not move; deadlines
    /// decided from now on, and working days counted from now on, use it.
    pub fn install(&self, schedule: Schedule) -> Result<Option<Arc<Schedule>>, CalendarError> {
        let mut schedules = self.schedules.write().unwrap_or_else(|e| e.into_inner());
        schedules.insert(schedule)
    }

    /// The known schedules, in date order.
    pub fn schedules(&self) -> Vec<Arc<Schedule>> {
        self.read().0.values().cloned().collect()
    }

    /// The first schedule's name ("monday to friday" for a calendar that covers nothing).
    pub fn name(&self) -> String {
        let schedules = self.read();
        match schedules.0.values().next() {
            None => "monday to friday".to_string(),
            Some(first) => first.name.clone(),
        }
    }

    /// The first and last covered dates (there may be gaps between schedules), or
    /// `None` for a calendar that covers nothing.
    pub fn coverage(&self) -> Option<(CivilDate, CivilDate)> {
        let schedules = self.read();
        let first = schedules.0.values().next()?;
        let last = schedules.0.values().next_back()?;
        Some((first.covers_from, last.covers_to))
    }

    /// Whether a published schedule is known for this date. When it is not, the
    /// calendar falls back to Monday-Friday without the fixed-date statutory holidays,
    /// which misses the lunar holidays and the make-up working days.
    pub fn covers(&self, date: CivilDate) -> bool {
        self.read().covering(date).is_some()
    }

    /// The year whose schedule is missing and should be installed now, seen on
    /// `today`: this year when today is not covered, else next year when it is not
    /// covered and today is within [`WARN_DAYS_BEFORE_YEAR_END`] days of 31 December.
    pub fn missing_year(&self, today: CivilDate) -> Option<i32> {
        let schedules = self.read();
        if schedules.covering(today).is_none() {
            return Some(today.year);
        }
        let days_left = last_of_year(today.year).day_number() - today.day_number();
        let next = today.year + 1;
        (days_left < WARN_DAYS_BEFORE_YEAR_END && schedules.covering(first_of_year(next)).is_none())
            .then_some(next)
    }

    pub fn is_working_day(&self, date: CivilDate) -> bool {
        self.read().is_working_day(date)
    }

    /// The end (23:59:59.999 CST) of the `n`th working day after the day `start` falls
    /// on. The start day itself is not counted, as in Chinese administrative practice
    /// (期间开始之日不计算在内). `n == 0` gives `start` unchanged.
    pub fn add_working_days(&self, start: Timestamp, n: u32) -> Timestamp {
        if n == 0 {
            return start;
        }
        let schedules = self.read();
        let mut date = start.cst_date();
        let mut counted = 0;
        while counted < n {
            date = date.next_day();
            if schedules.is_working_day(date) {
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
        let schedules = self.read();
        let mut date = from;
        let mut count = 0;
        while date < to {
            date = date.next_day();
            if schedules.is_working_day(date) {
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
        let schedule = Schedule::from_toml_str(CHINA_2026).expect("shipped calendar is valid");
        assert_eq!(schedule.holidays.len(), 33);
        assert_eq!(schedule.workdays.len(), 6);
        assert_eq!(schedule.year(), Some(2026));
        assert_eq!(Calendar::shipped().schedules().len(), SHIPPED_YEARS.len());
    }
}
