//! Instants and civil dates: unix milliseconds, read in China Standard Time (UTC+8).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds in one day.
pub const MS_PER_DAY: i64 = 86_400_000;
/// China Standard Time is UTC+8 all year (no daylight saving since 1991).
pub const CST_OFFSET_MS: i64 = 8 * 3_600_000;

/// An instant as unix milliseconds. The domain never reads a clock: every instant
/// arrives inside a command or an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const fn from_unix_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub const fn as_unix_millis(self) -> i64 {
        self.0
    }

    /// The civil date of this instant in China Standard Time.
    pub fn cst_date(self) -> CivilDate {
        CivilDate::from_day_number((self.0 + CST_OFFSET_MS).div_euclid(MS_PER_DAY))
    }

    /// The first instant (00:00:00.000 CST) of a civil date.
    pub fn cst_start_of(date: CivilDate) -> Self {
        Timestamp(date.day_number() * MS_PER_DAY - CST_OFFSET_MS)
    }

    /// The last instant (23:59:59.999 CST) of a civil date; deadlines are these.
    pub fn cst_end_of(date: CivilDate) -> Self {
        Timestamp((date.day_number() + 1) * MS_PER_DAY - CST_OFFSET_MS - 1)
    }

    /// The next millisecond: the first instant at which a deadline has passed.
    pub fn next_millisecond(self) -> Self {
        Timestamp(self.0.saturating_add(1))
    }

    /// A CST wall-clock instant, handy in tests and fixtures.
    pub fn cst(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> Self {
        let date = CivilDate::new(year, month, day).unwrap_or(CivilDate {
            year: 1970,
            month: 1,
            day: 1,
        });
        Timestamp(
            Self::cst_start_of(date).0 + i64::from(hour) * 3_600_000 + i64::from(minute) * 60_000,
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let date = self.cst_date();
        let ms_of_day = (self.0 + CST_OFFSET_MS).rem_euclid(MS_PER_DAY);
        let (h, m, s) = (
            ms_of_day / 3_600_000,
            ms_of_day / 60_000 % 60,
            ms_of_day / 1000 % 60,
        );
        write!(f, "{date}T{h:02}:{m:02}:{s:02}+08:00")
    }
}

/// Day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

/// A date on the proleptic Gregorian calendar, without a time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CivilDate {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl CivilDate {
    /// A date, or `None` when it does not exist (e.g. 2026-02-29).
    pub fn new(year: i32, month: u32, day: u32) -> Option<Self> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(CivilDate { year, month, day })
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return None;
        }
        let digits = |range: std::ops::Range<usize>| -> Option<u32> {
            let part = &text[range];
            if part.bytes().all(|b| b.is_ascii_digit()) {
                part.parse().ok()
            } else {
                None
            }
        };
        let year = digits(0..4)? as i32;
        CivilDate::new(year, digits(5..7)?, digits(8..10)?)
    }

    /// Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    pub fn day_number(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` days after 1970-01-01 (Howard Hinnant's civil_from_days).
    pub fn from_day_number(days: i64) -> Self {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        CivilDate { year, month, day }
    }

    pub fn weekday(self) -> Weekday {
        // 1970-01-01 was a Thursday.
        match (self.day_number() + 3).rem_euclid(7) {
            0 => Weekday::Monday,
            1 => Weekday::Tuesday,
            2 => Weekday::Wednesday,
            3 => Weekday::Thursday,
            4 => Weekday::Friday,
            5 => Weekday::Saturday,
            _ => Weekday::Sunday,
        }
    }

    pub fn is_weekend(self) -> bool {
        matches!(self.weekday(), Weekday::Saturday | Weekday::Sunday)
    }

    pub fn next_day(self) -> Self {
        Self::from_day_number(self.day_number() + 1)
    }
}

impl fmt::Display for CivilDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_round_trip_and_weekdays_are_right() {
        for days in -1000..30_000 {
            assert_eq!(CivilDate::from_day_number(days).day_number(), days);
        }
        let new_year = CivilDate::new(2026, 1, 1).unwrap();
        assert_eq!(new_year.weekday(), Weekday::Thursday);
        assert_eq!(
            CivilDate::parse("2026-02-14").unwrap().weekday(),
            Weekday::Saturday
        );
        assert_eq!(CivilDate::parse("2026-02-29"), None);
    }

    #[test]
    fn cst_is_eight_hours_ahead_of_utc() {
        // 2026-01-01T00:00:00Z is 08:00 on 1 January in Beijing; 16:00Z is already 2 January.
        assert_eq!(
            Timestamp(1_767_225_600_000).cst_date().to_string(),
            "2026-01-01"
        );
        assert_eq!(
            Timestamp(1_767_225_600_000 + 16 * 3_600_000)
                .cst_date()
                .to_string(),
            "2026-01-02"
        );
        assert_eq!(
            Timestamp::cst(2026, 1, 1, 8, 0),
            Timestamp(1_767_225_600_000)
        );
    }
}
