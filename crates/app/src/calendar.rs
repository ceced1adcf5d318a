//! The working-day calendar as data: the shipped year files, the years installed in
//! `<data_dir>/calendar/<year>.toml` (read at start), and installing a newly published
//! year while the server runs.

use std::io::Write;
use std::path::{Path, PathBuf};

use anju_domain::{Calendar, Schedule};

use crate::app::{AppConfig, Application};
use crate::error::AppError;

/// The folder of the data directory that holds installed year files.
pub const CALENDAR_DIR: &str = "calendar";

/// The field an installed file's problems are reported against.
const FIELD: &str = "calendar_toml";

/// Largest calendar file accepted (a year's file is about 2 KiB).
pub const MAX_CALENDAR_BYTES: usize = 64 * 1024;

/// What installing a year did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarInstalled {
    pub year: i32,
    pub name: String,
    /// True when the year was known before (shipped or installed) and is now replaced.
    pub replaced: bool,
    /// The file written.
    pub path: PathBuf,
}

/// The calendar a server starts with: `calendar_file` (or the shipped years), then every
/// `<year>.toml` in `<data_dir>/calendar/`, which replace a shipped file of their year.
pub(crate) fn load(config: &AppConfig) -> Result<Calendar, AppError> {
    let calendar = match &config.calendar_file {
        None => Calendar::shipped(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                AppError::Unavailable(format!("cannot read calendar {}: {e}", path.display()))
            })?;
            Calendar::from_toml_str(&text)
                .map_err(|e| AppError::Unavailable(format!("calendar {}: {e}", path.display())))?
        }
    };
    let dir = config.data_dir.join(CALENDAR_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(calendar),
        Err(e) => {
            return Err(AppError::Unavailable(format!(
                "cannot read the calendar folder {}: {e}",
                dir.display()
            )))
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| AppError::Unavailable(format!("cannot read {}: {e}", dir.display())))?
            .path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            files.push(path);
        }
    }
    files.sort();
    for path in files {
        let bad = |what: String| {
            AppError::Unavailable(format!(
                "calendar year file {}: {what}; fix it, or move it out of {} and install the year again with AdminService.InstallCalendar",
                path.display(),
                dir.display()
            ))
        };
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let schedule = Schedule::from_toml_str(&text).map_err(|e| bad(e.to_string()))?;
        let year = schedule.whole_year().map_err(|e| bad(e.to_string()))?;
        if path.file_name() != Some(std::ffi::OsStr::new(&format!("{year}.toml"))) {
            return Err(bad(format!(
                "it covers {year}, so it must be named {year}.toml"
            )));
        }
        calendar.install(schedule).map_err(|e| bad(e.to_string()))?;
    }
    Ok(calendar)
}

/// Writes `text` to `dir/<year>.toml` so that a crash leaves the old file or the new
/// one, never a part: a temporary file, fsync, rename, fsync of the folder.
fn write_year_file(dir: &Path, year: i32, text: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{year}.toml"));
    let temporary = dir.join(format!(".{year}.toml.tmp"));
    {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(path)
}

/// Copies the installed year files into the backup `to` (as `calendar/<year>.toml`),
/// returning the paths written. Each file is replaced whole by a rename, so a copy is
/// never a part of one.
pub(crate) fn backup(data_dir: &Path, to: &Path) -> Result<Vec<String>, AppError> {
    let from = data_dir.join(CALENDAR_DIR);
    let entries = match std::fs::read_dir(&from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(AppError::unavailable(format!(
                "reading {}: {e}",
                from.display()
            )))
        }
    };
    let mut written = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| AppError::unavailable(format!("reading {}: {e}", from.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".toml") || name.starts_with('.') {
            continue;
        }
        std::fs::create_dir_all(to.join(CALENDAR_DIR))
            .and_then(|()| std::fs::copy(entry.path(), to.join(CALENDAR_DIR).join(&name)))
            .map_err(|e| {
                AppError::unavailable(format!("copying {}: {e}", entry.path().display()))
            })?;
        written.push(format!("{CALENDAR_DIR}/{name}"));
    }
    written.sort();
    Ok(written)
}

impl Application {
    /// Installs a newly published year: `text` is a year file in the shipped format
    /// covering 1 January to 31 December of one year. It is checked, written to
    /// `<data_dir>/calendar/<year>.toml` (read again at every start) and then used by
    /// every deadline and working-day count from now on; deadlines already decided are
    /// carried in events and do not move. A year already known is replaced. Nothing is
    /// written when the file is refused.
    pub async fn install_calendar(&self, text: String) -> Result<CalendarInstalled, AppError> {
        if text.len() > MAX_CALENDAR_BYTES {
            return Err(AppError::invalid(
                FIELD,
                format!(
                    "is {} bytes; a calendar file is at most {MAX_CALENDAR_BYTES}",
                    text.len()
                ),
            ));
        }
        let schedule =
            Schedule::from_toml_str(&text).map_err(|e| AppError::invalid(FIELD, e.to_string()))?;
        let year = schedule
            .whole_year()
            .map_err(|e| AppError::invalid(FIELD, e.to_string()))?;
        let application = self.clone();
        tokio::task::spawn_blocking(move || {
            let inner = &application.inner;
            let _one_at_a_time = inner
                .calendar_install
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            // Tried on a copy first, so a refused file changes neither the disk nor
            // the live calendar.
            let trial = (*inner.calendar).clone();
            trial
                .install(schedule.clone())
                .map_err(|e| AppError::invalid(FIELD, e.to_string()))?;
            let dir = inner.config.data_dir.join(CALENDAR_DIR);
            let path = write_year_file(&dir, year, &text).map_err(|e| {
                AppError::Unavailable(format!(
                    "cannot write the calendar file into {}: {e}",
                    dir.display()
                ))
            })?;
            let name = schedule.name().to_string();
            let replaced = inner
                .calendar
                .install(schedule)
                .map_err(|e| AppError::invalid(FIELD, e.to_string()))?
                .is_some();
            tracing::info!(year, name = %name, replaced, path = %path.display(), "calendar year installed");
            Ok(CalendarInstalled {
                year,
                name,
                replaced,
                path,
            })
        })
        .await
        .map_err(|e| AppError::unavailable(format!("installing the calendar panicked: {e}")))?
    }
}
