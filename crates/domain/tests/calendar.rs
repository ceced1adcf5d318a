//! Working-day arithmetic on real 2026 dates: public holidays, make-up working days
//! (调休), deadlines that span them, pauses across weekends, and the fallback outside
//! the covered year.

mod support;

use anju_domain::*;
use support::*;

fn date(text: &str) -> CivilDate {
    CivilDate::parse(text).expect("test date is valid")
}

fn at(text: &str, hour: u32) -> Timestamp {
    let d = date(text);
    Timestamp::cst(d.year, d.month, d.day, hour, 0)
}

fn end_of(text: &str) -> Timestamp {
    Timestamp::cst_end_of(date(text))
}

#[test]
fn the_2026_schedule_matches_the_state_council_notice() {
    let cal = Calendar::china_2026();
    for holiday in [
        "2026-01-01",
        "2026-01-02",
        "2026-02-16",
        "2026-02-20",
        "2026-02-23",
        "2026-04-06",
        "2026-05-04",
        "2026-05-05",
        "2026-06-19",
        "2026-09-25",
        "2026-10-01",
        "2026-10-07",
    ] {
        assert!(
            !cal.is_working_day(date(holiday)),
            "{holiday} is a public holiday"
        );
    }
    for make_up in [
        "2026-01-04",
        "2026-02-14",
        "2026-02-28",
        "2026-05-09",
        "2026-09-20",
        "2026-10-10",
    ] {
        assert!(date(make_up).is_weekend(), "{make_up} is a weekend day");
        assert!(
            cal.is_working_day(date(make_up)),
            "{make_up} is a make-up working day"
        );
    }
    assert!(cal.is_working_day(date("2026-03-02")));
    assert!(!cal.is_working_day(date("2026-03-07")));
    let (from, to) = cal.coverage().unwrap();
    assert_eq!(
        (from.to_string(), to.to_string()),
        ("2026-01-01".to_string(), "2026-12-31".to_string())
    );
}

#[test]
fn a_deadline_spans_the_spring_festival_and_its_make_up_days() {
    let cal = Calendar::china_2026();
    // Accepted Thursday 12 February. Working days after it: Fri 13, Sat 14 (调休),
    // then the holiday 15-23 February, then Tue 24, Wed 25, Thu 26, Fri 27, Sat 28 (调休).
    let accepted = at("2026-02-12", 10);
    assert_eq!(cal.add_working_days(accepted, 2), end_of("2026-02-14"));
    assert_eq!(cal.add_working_days(accepted, 3), end_of("2026-02-24"));
    assert_eq!(cal.add_working_days(accepted, 7), end_of("2026-02-28"));
    assert_eq!(cal.add_working_days(accepted, 8), end_of("2026-03-02"));
    assert_eq!(cal.working_days_between(accepted, at("2026-03-02", 9)), 8);
    // Without the calendar the same 7 days would end on Monday 23 February.
    assert_eq!(
        Calendar::weekdays_only().add_working_days(accepted, 7),
        end_of("2026-02-23")
    );
}

#[test]
fn national_day_week_with_make_up_days_on_both_sides() {
    let cal = Calendar::china_2026();
    // Fri 18 September: Sun 20 (调休) counts, the 25-27 and 1-7 October holidays do not, Sat 10 counts.
    let start = at("2026-09-18", 15);
    assert_eq!(cal.add_working_days(start, 1), end_of("2026-09-20"));
    assert_eq!(cal.add_working_days(start, 5), end_of("2026-09-24"));
    assert_eq!(cal.add_working_days(start, 6), end_of("2026-09-28"));
    assert_eq!(cal.add_working_days(start, 8), end_of("2026-09-30"));
    assert_eq!(cal.add_working_days(start, 9), end_of("2026-10-08"));
    assert_eq!(cal.add_working_days(start, 11), end_of("2026-10-10"));
}

#[test]
fn a_pause_across_a_weekend_does_not_count() {
    // Accepted Monday 9 March, 10-day limit. Sent back Thursday 12 March (3 days used:
    // 10, 11, 12), materials back Monday 16 March. Seven days left from Tue 17 -> Wed 25.
    let mut commands = accepted("SQ-SHESHI");
    commands[0] = cmd(
        resident(),
        march(9, 9),
        Action::Submit(submission("SQ-SHESHI")),
    );
    commands[1] = cmd(caseworker(), march(9, 10), Action::Claim);
    commands[2] = cmd(caseworker(), march(9, 11), Action::Accept { comment: None });
    commands.push(cmd(
        caseworker(),
        march(12, 16),
        Action::RequestInfo {
            missing: vec!["照片 photo".into()],
            message: None,
        },
    ));
    commands.push(cmd(
        resident(),
        march(16, 9),
        Action::ProvideInfo {
            note: None,
            materials: Default::default(),
        },
    ));
    let state = given_commands(commands).state().clone();
    let deadlines = state.deadlines().unwrap();
    assert_eq!(deadlines.working_days_used, 3);
    // SQ-SHESHI promises 5 days: 2 left after the pause -> 17 and 18 March.
    assert_eq!(deadlines.promised, Some(end_of("2026-03-18")));
    // Statutory 10: 7 left -> 17, 18, 19, 20, 23, 24, 25 March.
    assert_eq!(deadlines.statutory, Some(end_of("2026-03-25")));
    // Without the pause the statutory deadline would have been Monday 23 March.
    assert_eq!(
        CALENDAR.add_working_days(march(9, 11), 10),
        end_of("2026-03-23")
    );
}

#[test]
fn the_start_day_does_not_count_and_days_are_read_in_beijing_time() {
    let cal = Calendar::china_2026();
    // 16:30 UTC on Friday 6 March is already Saturday 7 March in Beijing.
    let late_friday_utc = Timestamp(at("2026-03-06", 0).0 + (24 + 8 + 16) * 3_600_000 / 2);
    assert_eq!(late_friday_utc.cst_date(), date("2026-03-07"));
    assert_eq!(
        cal.add_working_days(late_friday_utc, 1),
        end_of("2026-03-09")
    );
    assert_eq!(
        cal.add_working_days(at("2026-03-06", 9), 1),
        end_of("2026-03-09")
    );
    assert_eq!(
        cal.add_working_days(at("2026-03-06", 9), 0),
        at("2026-03-06", 9)
    );
    assert_eq!(
        cal.working_days_between(at("2026-03-06", 9), at("2026-03-06", 17)),
        0
    );
    assert_eq!(
        cal.working_days_between(at("2026-03-09", 9), at("2026-03-06", 17)),
        0
    );
}

#[test]
fn outside_the_installed_years_only_weekends_and_the_fixed_statutory_holidays_are_off() {
    let cal = Calendar::china_2026();
    assert!(!cal.covers(date("2027-01-01")));
    assert!(cal.covers(date("2026-12-31")));
    // 1 January 2027 is a Friday and, by law, always a holiday: the fallback knows it
    // even without the 2027 file (it used to count it as a working day).
    assert!(!cal.is_working_day(date("2027-01-01")));
    assert!(!cal.is_working_day(date("2027-01-02")));
    for fixed in [
        "2027-05-03",
        "2028-05-01",
        "2028-05-02",
        "2027-10-01",
        "2027-10-04",
    ] {
        let d = date(fixed);
        let fixed_holiday = (d.month == 5 && d.day <= 2) || (d.month == 10 && d.day <= 3);
        assert_eq!(
            cal.is_working_day(d),
            !d.is_weekend() && !fixed_holiday,
            "{fixed}"
        );
    }
    // The lunar holidays are unknown without the year's file: the Spring Festival of
    // 2027 (6 February is 初一) counts Monday 8 February as a working day.
    assert!(cal.is_working_day(date("2027-02-08")));
    // A deadline crossing the year end uses the 2026 data, then the fallback.
    assert_eq!(
        cal.add_working_days(at("2026-12-30", 9), 3),
        end_of("2027-01-05")
    );
}

const TEST_2027: &str = r#"name = "test 2027"
covers_from = "2027-01-01"
covers_to = "2027-12-31"
holidays = ["2027-01-01", "2027-02-08", "2027-02-09"]
workdays = ["2027-02-20"]"#;

#[test]
fn an_installed_year_is_seen_by_every_holder_and_replaces_only_the_same_range() {
    let shared = std::sync::Arc::new(Calendar::china_2026());
    let holder = shared.clone();
    let independent = (*shared).clone();
    assert!(holder.is_working_day(date("2027-02-08")));
    let replaced = shared
        .install(Schedule::from_toml_str(TEST_2027).unwrap())
        .unwrap();
    assert!(replaced.is_none());
    assert!(holder.covers(date("2027-06-30")));
    assert!(!holder.is_working_day(date("2027-02-08")));
    assert!(
        holder.is_working_day(date("2027-02-20")),
        "a make-up working day"
    );
    // A clone taken before is a value of its own.
    assert!(!independent.covers(date("2027-06-30")));
    // The same range again replaces the schedule (a corrected file).
    let corrected = TEST_2027.replace("\"2027-02-09\"", "\"2027-02-10\"");
    let replaced = shared
        .install(Schedule::from_toml_str(&corrected).unwrap())
        .unwrap()
        .expect("replaced");
    assert_eq!(replaced.name(), "test 2027");
    assert!(holder.is_working_day(date("2027-02-09")));
    assert!(!holder.is_working_day(date("2027-02-10")));
    // A partly overlapping range is refused and changes nothing.
    let overlapping = Schedule::from_toml_str(
        r#"name = "half"
covers_from = "2027-07-01"
covers_to = "2028-06-30""#,
    )
    .unwrap();
    let error = shared.install(overlapping).unwrap_err().to_string();
    assert!(error.contains("overlaps \"test 2027\""), "{error}");
    assert_eq!(shared.schedules().len(), 2);
    assert_eq!(
        shared
            .coverage()
            .map(|(a, b)| (a.to_string(), b.to_string())),
        Some(("2026-01-01".into(), "2027-12-31".into()))
    );
}

#[test]
fn a_missing_year_is_reported_within_sixty_days_of_the_year_end() {
    let cal = Calendar::china_2026();
    // 1 November 2026 is 60 days before 31 December: not yet.
    assert_eq!(cal.missing_year(date("2026-11-01")), None);
    assert_eq!(cal.missing_year(date("2026-11-02")), Some(2027));
    assert_eq!(cal.missing_year(date("2026-12-31")), Some(2027));
    // On a day no schedule covers, this year is the missing one.
    assert_eq!(cal.missing_year(date("2027-01-01")), Some(2027));
    assert_eq!(cal.missing_year(date("2025-06-01")), Some(2025));
    cal.install(Schedule::from_toml_str(TEST_2027).unwrap())
        .unwrap();
    assert_eq!(cal.missing_year(date("2026-12-31")), None);
    assert_eq!(cal.missing_year(date("2027-11-01")), None);
    assert_eq!(cal.missing_year(date("2027-12-01")), Some(2028));
}

#[test]
fn a_year_file_covers_exactly_one_year() {
    let schedule = Schedule::from_toml_str(TEST_2027).unwrap();
    assert_eq!(schedule.whole_year(), Ok(2027));
    let half = Schedule::from_toml_str(
        r#"name = "half"
covers_from = "2027-01-01"
covers_to = "2027-06-30""#,
    )
    .unwrap();
    assert_eq!(
        half.whole_year().unwrap_err().to_string(),
        "a calendar year file covers one whole year (covers_from = \"YYYY-01-01\", covers_to = \"YYYY-12-31\"), not 2027-01-01..=2027-06-30"
    );
    assert!(Schedule::from_toml_str(
        r#"name = " "
covers_from = "2027-01-01"
covers_to = "2027-12-31""#
    )
    .unwrap_err()
    .to_string()
    .contains("name is empty"));
}

#[test]
fn working_days_between_inverts_add_working_days() {
    let cal = Calendar::china_2026();
    let mut start = at("2026-01-01", 12);
    while start < at("2026-12-31", 0) {
        for n in [1, 5, 15, 30] {
            let end = cal.add_working_days(start, n);
            assert_eq!(
                cal.working_days_between(start, end),
                n,
                "from {start} plus {n}"
            );
        }
        start = Timestamp(start.0 + 86_400_000);
    }
}

#[test]
fn calendar_files_are_validated() {
    let err = |text: &str| Calendar::from_toml_str(text).unwrap_err().to_string();
    assert_eq!(
        err(r#"name = "x"
covers_from = "2026-01-01"
covers_to = "2026-12-31"
holidays = ["2026-02-30"]"#),
        "calendar holidays has a bad date \"2026-02-30\" (expected YYYY-MM-DD)"
    );
    assert!(err(r#"name = "x"
covers_from = "2026-01-01"
covers_to = "2026-12-31"
workdays = ["2026-03-03"]"#)
    .contains("2026-03-03 is not a weekend day"));
    assert!(err(r#"name = "x"
covers_from = "2026-01-01"
covers_to = "2026-06-30"
holidays = ["2026-10-01"]"#)
    .contains("outside the covered range"));
    assert_eq!(
        err(r#"name = "x"
covers_from = "2026-01-01"
covers_to = "2026-12-31"
holidays = ["2026-01-04"]
workdays = ["2026-01-04"]"#),
        "calendar date 2026-01-04 is listed both as a holiday and as a make-up working day"
    );
    assert!(err("name = 3").starts_with("calendar file is not valid toml"));
    let custom = Calendar::from_toml_str(
        r#"name = "test"
covers_from = "2027-01-01"
covers_to = "2027-01-31"
holidays = ["2027-01-01"]"#,
    )
    .unwrap();
    assert!(!custom.is_working_day(date("2027-01-01")));
    assert_eq!(custom.name(), "test");
}
