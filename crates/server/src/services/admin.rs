//! AdminService handlers: the server's clock. `AdvanceClock` moves the demo clock
//! (`--demo-clock`) forward and answers once the timer scheduler has fired what fell
//! due; without the flag the server is on the system clock and refuses. `Backup` takes
//! an online backup into a new directory on the server's host (`crate::backup`).
//! `GetCalendar` / `InstallCalendar`: the working-day calendar's known years, and a
//! newly published year installed while the server runs.

use std::time::Duration;

use anju_domain::{Calendar, CivilDate, Schedule, Timestamp};
use anju_proto::v1::admin_service_server::AdminService;
use anju_proto::v1::*;
use tonic::{Request, Response, Status as GrpcStatus};

use super::{caller, ADMIN_ROLES};
use crate::convert;
use crate::error::{ApiError, Violations};
use crate::state::{call_timeout, AppState};

/// The most working days one AdvanceClock may move.
pub const MAX_WORKING_DAYS: u32 = 250;

/// What AdvanceClock answers when the server runs on the system clock.
const NO_DEMO_CLOCK: &str = "the server runs on the system clock, which cannot be moved: start anju-server with --demo-clock (config demo_clock = true, or ANJU_DEMO_CLOCK=true) to advance it";

/// Serves `anju.v1.AdminService`; holds the shared [`AppState`].
#[derive(Debug, Clone)]
pub struct AdminHandler {
    pub state: AppState,
    /// Held while a backup runs: one at a time.
    backup_running: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl AdminHandler {
    pub fn new(state: AppState) -> AdminHandler {
        AdminHandler {
            state,
            backup_running: Default::default(),
        }
    }

    /// Waits until the read models (and so the timer index) hold the whole log.
    async fn settle<T>(&self, request: &Request<T>) -> Result<u64, ApiError> {
        let application = &self.state.application;
        let head = application.log().head_position();
        if let Some(last) = convert::log_position(head) {
            let budget = call_timeout(request, self.state.config.request_timeout);
            application.wait_for(Some(last), Some(budget)).await?;
        }
        Ok(head)
    }
}

/// `n` working days after `now` by `calendar`, at the same time of day (CST).
pub fn working_days_ahead(calendar: &Calendar, now: Timestamp, n: u32) -> Timestamp {
    let day = calendar.add_working_days(now, n).cst_date();
    let time_of_day = now.0 - Timestamp::cst_start_of(now.cst_date()).0;
    Timestamp(Timestamp::cst_start_of(day).0 + time_of_day)
}

fn date(day: CivilDate) -> Date {
    Date {
        year: day.year,
        month: day.month as i32,
        day: day.day as i32,
    }
}

fn calendar_year(schedule: &Schedule) -> CalendarYear {
    CalendarYear {
        year: schedule.covers_from().year,
        name: schedule.name().to_string(),
        holidays: schedule.holidays().iter().copied().map(date).collect(),
        workdays: schedule.workdays().iter().copied().map(date).collect(),
    }
}

#[tonic::async_trait]
impl AdminService for AdminHandler {
    async fn get_calendar(
        &self,
        request: Request<GetCalendarRequest>,
    ) -> Result<Response<GetCalendarResponse>, GrpcStatus> {
        caller(&request, ADMIN_ROLES)?;
        let application = &self.state.application;
        let today = application.now().cst_date();
        let calendar = application.calendar();
        Ok(Response::new(GetCalendarResponse {
            years: calendar
                .schedules()
                .iter()
                .map(|schedule| calendar_year(schedule))
                .collect(),
            missing_year: calendar.missing_year(today).unwrap_or(0),
            today: Some(date(today)),
        }))
    }

    async fn install_calendar(
        &self,
        request: Request<InstallCalendarRequest>,
    ) -> Result<Response<InstallCalendarResponse>, GrpcStatus> {
        let actor = caller(&request, ADMIN_ROLES)?;
        let text = request.into_inner().calendar_toml;
        if text.trim().is_empty() {
            let mut violations = Violations::new();
            violations.add(
                "calendar_toml",
                "is required: the year file's text (name, covers_from, covers_to, holidays, workdays)",
            );
            violations.into_result()?;
        }
        let application = &self.state.application;
        let installed = application
            .install_calendar(text)
            .await
            .map_err(ApiError::from)?;
        tracing::info!(
            admin = %actor.id,
            year = installed.year,
            replaced = installed.replaced,
            "calendar installed"
        );
        let calendar = application.calendar();
        let schedule = calendar
            .schedules()
            .into_iter()
            .find(|schedule| schedule.covers_from().year == installed.year)
            .ok_or_else(|| {
                ApiError::Unavailable("the installed year is not in the calendar".into())
            })?;
        Ok(Response::new(InstallCalendarResponse {
            installed: Some(calendar_year(&schedule)),
            replaced: installed.replaced,
            missing_year: calendar
                .missing_year(application.now().cst_date())
                .unwrap_or(0),
        }))
    }

    async fn get_clock(
        &self,
        request: Request<GetClockRequest>,
    ) -> Result<Response<GetClockResponse>, GrpcStatus> {
        caller(&request, ADMIN_ROLES)?;
        let offset = self
            .state
            .demo_clock
            .as_ref()
            .map_or(Duration::ZERO, |clock| clock.offset());
        Ok(Response::new(GetClockResponse {
            now: Some(convert::timestamp(self.state.application.now())),
            demo_clock: self.state.demo_clock.is_some(),
            offset: Some(convert::duration(offset)),
        }))
    }

    async fn advance_clock(
        &self,
        request: Request<AdvanceClockRequest>,
    ) -> Result<Response<AdvanceClockResponse>, GrpcStatus> {
        let actor = caller(&request, ADMIN_ROLES)?;
        let Some(clock) = self.state.demo_clock.clone() else {
            return Err(ApiError::FailedPrecondition(NO_DEMO_CLOCK.into()).into());
        };
        let message = request.get_ref();
        let application = &self.state.application;
        let mut violations = Violations::new();
        let by = match (&message.by, message.working_days) {
            (Some(_), days) if days > 0 => {
                violations.add("by", "give either by or working_days, not both");
                None
            }
            (None, 0) => {
                violations.add(
                    "by",
                    "by (a duration) or working_days is required: how far to move the clock",
                );
                None
            }
            (Some(by), _) => Some(convert::from_duration(by, "by")?),
            (None, days) if days > MAX_WORKING_DAYS => {
                violations.add(
                    "working_days",
                    format!("is at most {MAX_WORKING_DAYS} per call"),
                );
                None
            }
            (None, days) => {
                let now = application.now();
                let target = working_days_ahead(application.calendar(), now, days);
                Some(Duration::from_millis((target.0 - now.0).max(1) as u64))
            }
        };
        violations.into_result()?;
        let by = by.expect("checked above");
        // Everything written so far is in the timer index before time moves, so the
        // scheduler's round after the jump sees every timer that falls due.
        self.settle(&request).await?;
        let advanced = clock.advance(by).map_err(ApiError::from)?;
        tracing::info!(
            by_seconds = by.as_secs(),
            working_days = message.working_days,
            now = advanced.now.0,
            admin = %actor.id,
            "demo clock advanced"
        );
        let budget = call_timeout(&request, self.state.config.request_timeout);
        let fired = clock
            .wait_caught_up(advanced.generation, budget)
            .await
            .ok_or_else(|| {
                ApiError::Unavailable(
                    "the clock moved, but the timer scheduler did not finish its round before the deadline; read GetClock and the reports again shortly (do not advance again to retry)".into(),
                )
            })?;
        let position = self.settle(&request).await?;
        Ok(Response::new(AdvanceClockResponse {
            now: Some(convert::timestamp(advanced.now)),
            offset: Some(convert::duration(advanced.offset)),
            timers_fired: fired as u64,
            position,
        }))
    }

    async fn backup(
        &self,
        request: Request<BackupRequest>,
    ) -> Result<Response<BackupResponse>, GrpcStatus> {
        let actor = caller(&request, ADMIN_ROLES)?;
        let to_dir = request.get_ref().to_dir.clone();
        let mut violations = Violations::new();
        if to_dir.is_empty() {
            violations.add(
                "to_dir",
                "is required: a new directory on the server's host",
            );
        } else if let Err(problem) =
            crate::backup::check_new_directory(std::path::Path::new(&to_dir), "directory")
        {
            violations.add("to_dir", problem);
        }
        violations.into_result()?;
        let Ok(_running) = self.backup_running.try_lock() else {
            return Err(ApiError::FailedPrecondition(
                "another backup is running; wait for it to finish".into(),
            )
            .into());
        };
        let config = &self.state.config;
        let token_secret = match &config.secret_file {
            Some(_) => None,
            None => Some(config.data_dir.join(anju_auth::SECRET_FILE_NAME)),
        };
        let taken = crate::backup::take_backup(
            &self.state.application,
            token_secret.as_deref(),
            &config.node_id,
            std::path::Path::new(&to_dir),
        )
        .await;
        let manifest = match taken {
            Ok(manifest) => manifest,
            Err(crate::backup::BackupError::Target(problem)) => {
                let mut violations = Violations::new();
                violations.add("to_dir", problem);
                return Err(violations.into_result().unwrap_err().into());
            }
            Err(e @ crate::backup::BackupError::Failed(_)) => {
                tracing::error!(error = %e, "backup failed");
                return Err(ApiError::Unavailable(e.to_string()).into());
            }
        };
        tracing::info!(
            admin = %actor.id,
            position = manifest.position,
            files = manifest.files.len(),
            bytes = manifest.bytes(),
            elapsed_ms = manifest.elapsed_ms,
            "backup taken"
        );
        Ok(Response::new(BackupResponse {
            position: manifest.position,
            to_dir,
            files: manifest.files.len() as u32,
            bytes: manifest.bytes(),
            elapsed: Some(convert::duration(Duration::from_millis(
                manifest.elapsed_ms,
            ))),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_days_keep_the_time_of_day_and_skip_weekends_and_holidays() {
        let calendar = Calendar::china_2026();
        // Friday 27 November 2026, 09:30 → Monday 30 November, 09:30.
        let friday = Timestamp::cst(2026, 11, 27, 9, 30);
        assert_eq!(
            working_days_ahead(&calendar, friday, 1),
            Timestamp::cst(2026, 11, 30, 9, 30)
        );
        // Wednesday 30 September 2026 → the National Day holiday is skipped; Saturday
        // 10 October is a make-up working day.
        let before_holiday = Timestamp::cst(2026, 9, 30, 14, 0);
        assert_eq!(
            working_days_ahead(&calendar, before_holiday, 1),
            Timestamp::cst(2026, 10, 8, 14, 0)
        );
        assert_eq!(
            working_days_ahead(&calendar, before_holiday, 3),
            Timestamp::cst(2026, 10, 10, 14, 0)
        );
    }
}
