//! Opening with a custom catalogue and calendar, and refusing bad ones.

use crate::helpers::*;
use anju_app::{AppError, Application, ManualClock};
use anju_domain::Timestamp;
use std::sync::Arc;

const CATALOGUE: &str = r#"
[[service]]
code = "ZZ-TEST"
version = 1
category = "社区"
name_zh = "测试服务"
name_en = "test service"
description_zh = "只用于测试"
description_en = "for tests only"
approval_levels = 0
promised_days = 2
statutory_days = 4

[[service.field]]
name = "note"
label_zh = "说明"
label_en = "note"
kind = "string"
required = true
max_length = 20

[[service.step]]
code = "do"
name_zh = "办理"
name_en = "do it"
"#;

const CALENDAR: &str = r#"
name = "test calendar"
covers_from = "2026-01-01"
covers_to = "2026-12-31"
holidays = ["2026-03-03", "2026-03-04"]
workdays = []
"#;

#[tokio::test]
async fn custom_catalogue_and_calendar_files_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let catalogue = dir.path().join("catalogue.toml");
    let calendar = dir.path().join("calendar.toml");
    std::fs::write(&catalogue, CATALOGUE).unwrap();
    std::fs::write(&calendar, CALENDAR).unwrap();
    let mut config = config(&dir.path().join("data"));
    config.catalogue_file = Some(catalogue.clone());
    config.calendar_file = Some(calendar);
    let clock = Arc::new(ManualClock::new(start_time()));
    let app = Application::open(config.clone(), clock.clone())
        .await
        .unwrap();
    assert_eq!(app.catalogue().services().count(), 1);
    let mut input = submission(&app, "ZZ-TEST", "custom-files-key-1");
    input.id_number = None;
    let submitted = app.submit(input).await.unwrap();
    // Monday 2 March + 5 working days, with 3 and 4 March off: the end of Wednesday 11 March.
    assert_eq!(
        submitted.intake_deadline,
        Timestamp::cst(2026, 3, 12, 0, 0)
            .0
            .checked_sub(1)
            .map(Timestamp)
            .unwrap()
    );
    app.close().await.unwrap();
    drop(app);

    std::fs::write(&catalogue, "[[service]]\ncode = \"broken\"").unwrap();
    let refused = Application::open(config, clock).await;
    assert!(
        matches!(refused, Err(AppError::Unavailable(ref m)) if m.contains("catalogue")),
        "{:?}",
        refused.err()
    );
}
