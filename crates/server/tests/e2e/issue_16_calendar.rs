//! Issue 16 item 20: the working-day calendar is data. GetCalendar says which years the
//! server knows and which one is missing, `/metrics` shows it, InstallCalendar adds a
//! newly published year that deadlines and demo-clock advances use at once, the year
//! survives a restart, and a bad file or a caller who is not an admin is refused with
//! nothing written.

use anju_domain::{CivilDate, Timestamp};
use anju_proto::v1::*;
use tonic::Code;

use super::{assert_code, World};
use crate::helpers::{authed, TestApp};

async fn calendar(world: &World) -> GetCalendarResponse {
    world
        .clients
        .admin
        .clone()
        .get_calendar(authed(GetCalendarRequest {}, &world.tokens.admin))
        .await
        .expect("get calendar")
        .into_inner()
}

async fn install(world: &World, text: &str) -> Result<InstallCalendarResponse, tonic::Status> {
    world
        .clients
        .admin
        .clone()
        .install_calendar(authed(
            InstallCalendarRequest {
                calendar_toml: text.to_string(),
            },
            &world.tokens.admin,
        ))
        .await
        .map(tonic::Response::into_inner)
}

fn year_file(year: i32, holidays: &[CivilDate]) -> String {
    let days: Vec<String> = holidays
        .iter()
        .filter(|d| d.year == year)
        .map(|d| format!("\"{d}\""))
        .collect();
    format!(
        "name = \"test arrangement {year}\"\ncovers_from = \"{year}-01-01\"\ncovers_to = \"{year}-12-31\"\nholidays = [{}]\n",
        days.join(", ")
    )
}

fn metric(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
        .to_string()
}

fn millis(at: &prost_types::Timestamp) -> i64 {
    at.seconds * 1000 + i64::from(at.nanos) / 1_000_000
}

#[tokio::test]
async fn a_published_year_is_installed_used_at_once_and_kept() {
    let world = World::on(TestApp::spawn_with(|config| config.demo_clock = true).await).await;
    let before = calendar(&world).await;
    let today = before.today.expect("today");
    let today = CivilDate::new(today.year, today.month as u32, today.day as u32).unwrap();
    assert_eq!(
        before.years.iter().map(|y| y.year).collect::<Vec<_>>(),
        vec![2026],
        "the shipped year"
    );
    assert_eq!(before.years[0].holidays.len(), 33);
    assert_eq!(before.years[0].workdays.len(), 6);
    // These tests run on or after 5 December 2026: 2027 (or a later year) is missing.
    assert!(today >= CivilDate::new(2026, 12, 5).unwrap());
    let expected_missing = if today.year == 2026 { 2027 } else { today.year };
    assert_eq!(before.missing_year, expected_missing);
    let metrics = world.app.http_get("/metrics").await;
    assert_eq!(metric(&metrics, "anju_calendar_year_missing"), "1");
    assert_eq!(metric(&metrics, "anju_calendar_covered_until_year"), "2026");

    // The next ten days are declared holidays in this year's and next year's files.
    let mut holidays = Vec::new();
    let mut day = today;
    for _ in 0..10 {
        day = day.next_day();
        holidays.push(day);
    }
    let this_year = install(&world, &year_file(today.year, &holidays))
        .await
        .expect("install this year");
    assert_eq!(this_year.replaced, today.year == 2026);
    let next = install(&world, &year_file(today.year + 1, &holidays))
        .await
        .expect("install next year");
    assert!(!next.replaced);
    assert_eq!(next.missing_year, 0);
    let installed = next.installed.expect("the installed year");
    assert_eq!(installed.year, today.year + 1);
    assert_eq!(installed.name, format!("test arrangement {}", today.year + 1));
    let after = calendar(&world).await;
    assert_eq!(after.missing_year, 0);
    let metrics = world.app.http_get("/metrics").await;
    assert_eq!(metric(&metrics, "anju_calendar_year_missing"), "0");
    assert_eq!(
        metric(&metrics, "anju_calendar_covered_until_year"),
        (today.year + 1).to_string()
    );

    // One working day from now skips the ten new holidays (and any weekend after them).
    let advanced = world
        .clients
        .admin
        .clone()
        .advance_clock(authed(
            AdvanceClockRequest {
                by: None,
                working_days: 1,
            },
            &world.tokens.admin,
        ))
        .await
        .expect("advance")
        .into_inner();
    let landed = Timestamp(millis(advanced.now.as_ref().unwrap())).cst_date();
    assert!(
        landed.day_number() - today.day_number() >= 11,
        "one working day after {today} landed on {landed}, inside the installed holidays"
    );
    assert!(!landed.is_weekend());

    // Restarted, the server reads the installed years again.
    let World { app, .. } = world;
    let data = app.stop_keeping_data().await;
    assert!(data
        .path()
        .join(format!("data/calendar/{}.toml", today.year + 1))
        .exists());
    let world = World::on(TestApp::spawn_in(data, |config| config.demo_clock = true).await).await;
    let restarted = calendar(&world).await;
    let years: Vec<i32> = restarted.years.iter().map(|y| y.year).collect();
    assert!(years.contains(&today.year) && years.contains(&(today.year + 1)), "{years:?}");
    assert_eq!(
        restarted
            .years
            .iter()
            .find(|y| y.year == today.year + 1)
            .unwrap()
            .name,
        format!("test arrangement {}", today.year + 1)
    );
}

#[tokio::test]
async fn a_bad_year_file_or_a_caller_not_an_admin_is_refused_and_nothing_is_written() {
    let world = World::new().await;
    let before = calendar(&world).await;
    for (text, says) in [
        ("", "is required"),
        ("name = 3", "not valid toml"),
        (
            "name = \"half\"\ncovers_from = \"2027-01-01\"\ncovers_to = \"2027-06-30\"\n",
            "one whole year",
        ),
        (
            "name = \"x\"\ncovers_from = \"2027-01-01\"\ncovers_to = \"2027-12-31\"\nworkdays = [\"2027-03-03\"]\n",
            "2027-03-03 is not a weekend day",
        ),
        (
            "name = \"x\"\ncovers_from = \"2027-01-01\"\ncovers_to = \"2027-12-31\"\nholidays = [\"2027-02-30\"]\n",
            "bad date \"2027-02-30\"",
        ),
    ] {
        let status = assert_code(install(&world, text).await, Code::InvalidArgument);
        assert!(status.message().contains("calendar_toml"), "{status:?}");
        assert!(
            status.message().contains(says),
            "{text:?}: {} should say {says}",
            status.message()
        );
    }
    let long = format!(
        "name = \"{}\"\ncovers_from = \"2027-01-01\"\ncovers_to = \"2027-12-31\"\n",
        "x".repeat(70_000)
    );
    let status = assert_code(install(&world, &long).await, Code::InvalidArgument);
    assert!(status.message().contains("at most 65536"), "{status:?}");
    assert!(!world.app.data_dir().join("calendar").exists());
    assert_eq!(calendar(&world).await.years.len(), before.years.len());

    let good = "name = \"x\"\ncovers_from = \"2027-01-01\"\ncovers_to = \"2027-12-31\"\n";
    for token in [&world.tokens.caseworker_a, &world.tokens.manager_a, &world.tokens.kiosk] {
        let refused = world
            .clients
            .admin
            .clone()
            .install_calendar(authed(
                InstallCalendarRequest {
                    calendar_toml: good.to_string(),
                },
                token,
            ))
            .await;
        assert_code(refused, Code::PermissionDenied);
    }
    assert!(!world.app.data_dir().join("calendar").exists());
}
