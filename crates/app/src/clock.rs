//! Where the application reads the time: the system clock in service, a manual one in
//! tests, and the demo clock (`anju-server --demo-clock`) that an admin moves forward so
//! a demonstration can show deadlines passing.

use crate::error::AppError;
use anju_domain::Timestamp;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// The source of "now" for commands and the timer scheduler.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// For a clock that can jump forward (the demo clock): a receiver whose value
    /// changes on every jump, so the timer scheduler wakes at once instead of sleeping
    /// out its interval. `None` (the default) for clocks that only follow real time.
    fn jumps(&self) -> Option<watch::Receiver<u64>> {
        None
    }

    /// Called by the timer scheduler after a round that began once jump `generation`
    /// had happened; `fired` timers produced events in it.
    fn timers_caught_up(&self, _generation: u64, _fired: usize) {}
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

fn system_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(system_millis())
    }
}

/// A clock that moves only when told to, so tests can make deadlines fall due.
#[derive(Debug, Default)]
pub struct ManualClock {
    millis: AtomicI64,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            millis: AtomicI64::new(start.0),
        }
    }

    pub fn set(&self, now: Timestamp) {
        self.millis.store(now.0, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        self.millis
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.millis.load(Ordering::SeqCst))
    }
}

/// The file in the data directory that keeps the demo clock's offset.
pub const DEMO_CLOCK_FILE: &str = "demo-clock";

/// The longest single advance of the demo clock.
pub const MAX_DEMO_ADVANCE: Duration = Duration::from_secs(366 * 24 * 3600);

/// What the demo clock file holds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoClockFile {
    /// Milliseconds added to real time.
    offset_ms: i64,
    /// The clock's reading just after the last advance: it never reads less again.
    floor_ms: i64,
}

/// The clock of a demonstration server: real time plus an offset that only grows.
/// [`DemoClock::advance`] writes the new offset durably to `data_dir/demo-clock` before
/// it takes effect, so a restart keeps the demo's time; the clock never reads less
/// than it did before (neither within a run nor below the reading at the last advance
/// after a restart). Never used unless the server is started with `--demo-clock`.
#[derive(Debug)]
pub struct DemoClock {
    path: PathBuf,
    offset_ms: AtomicI64,
    /// The latest reading handed out.
    last_ms: AtomicI64,
    advancing: Mutex<()>,
    jumps: watch::Sender<u64>,
    /// (latest jump generation the scheduler caught up with, timers fired in that round)
    caught_up: watch::Sender<(u64, usize)>,
}

/// What an advance did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advanced {
    /// The clock's reading right after the advance.
    pub now: Timestamp,
    /// The whole offset from real time now.
    pub offset: Duration,
    /// Pass to [`DemoClock::wait_caught_up`] to wait for the scheduler's round.
    pub generation: u64,
}

impl DemoClock {
    /// Opens the demo clock of `data_dir`: the kept offset, or none on first use.
    pub fn open(data_dir: &Path) -> Result<DemoClock, AppError> {
        let path = data_dir.join(DEMO_CLOCK_FILE);
        let kept = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<DemoClockFile>(&bytes).map_err(|e| {
                AppError::Unavailable(format!(
                    "the demo clock file {} is damaged ({e}); it holds {{\"offset_ms\": N, \"floor_ms\": N}}",
                    path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DemoClockFile::default(),
            Err(e) => {
                return Err(AppError::Unavailable(format!(
                    "cannot read the demo clock file {}: {e}",
                    path.display()
                )))
            }
        };
        if kept.offset_ms < 0 {
            return Err(AppError::Unavailable(format!(
                "the demo clock file {} holds a negative offset; the demo clock only moves forward",
                path.display()
            )));
        }
        Ok(DemoClock {
            path,
            offset_ms: AtomicI64::new(kept.offset_ms),
            last_ms: AtomicI64::new(kept.floor_ms),
            advancing: Mutex::new(()),
            jumps: watch::Sender::new(0),
            caught_up: watch::Sender::new((0, 0)),
        })
    }

    /// How far ahead of real time the clock is.
    pub fn offset(&self) -> Duration {
        Duration::from_millis(self.offset_ms.load(Ordering::SeqCst).max(0) as u64)
    }

    /// Moves the clock forward by `by` (at least a millisecond, at most
    /// [`MAX_DEMO_ADVANCE`]) and wakes the timer scheduler. The new offset is on disk
    /// before the clock reads it.
    pub fn advance(&self, by: Duration) -> Result<Advanced, AppError> {
        if by.is_zero() || by > MAX_DEMO_ADVANCE {
            return Err(AppError::invalid(
                "by",
                format!(
                    "advance the clock by at least 1 ms and at most {} days",
                    MAX_DEMO_ADVANCE.as_secs() / 86_400
                ),
            ));
        }
        let by_ms = by.as_millis() as i64;
        let _advancing = self.advancing.lock().unwrap_or_else(|e| e.into_inner());
        let system = system_millis();
        let base = self.now().0;
        // The floor folds into the offset, so the advance is exactly `by` from the
        // reading before it even if real time stepped back.
        let offset_ms = base - system + by_ms;
        let now = base + by_ms;
        let file = DemoClockFile {
            offset_ms,
            floor_ms: now,
        };
        write_durably(
            &self.path,
            &serde_json::to_vec(&file).expect("two integers"),
        )
        .map_err(|e| {
            AppError::Unavailable(format!(
                "cannot write the demo clock file {}: {e}",
                self.path.display()
            ))
        })?;
        self.offset_ms.store(offset_ms, Ordering::SeqCst);
        self.last_ms.fetch_max(now, Ordering::SeqCst);
        let mut generation = 0;
        self.jumps.send_modify(|g| {
            *g += 1;
            generation = *g;
        });
        Ok(Advanced {
            now: Timestamp(now),
            offset: Duration::from_millis(offset_ms as u64),
            generation,
        })
    }

    /// Waits until the timer scheduler finished a round begun after jump `generation`;
    /// the timers it fired in that round, or `None` when `timeout` passed first (or no
    /// scheduler runs).
    pub async fn wait_caught_up(&self, generation: u64, timeout: Duration) -> Option<usize> {
        let mut caught_up = self.caught_up.subscribe();
        let waited =
            tokio::time::timeout(timeout, caught_up.wait_for(|(done, _)| *done >= generation))
                .await;
        match waited {
            Ok(Ok(seen)) => Some(seen.1),
            _ => None,
        }
    }
}

impl Clock for DemoClock {
    fn now(&self) -> Timestamp {
        let reading = system_millis() + self.offset_ms.load(Ordering::SeqCst);
        let previous = self.last_ms.fetch_max(reading, Ordering::SeqCst);
        Timestamp(reading.max(previous))
    }

    fn jumps(&self) -> Option<watch::Receiver<u64>> {
        Some(self.jumps.subscribe())
    }

    fn timers_caught_up(&self, generation: u64, fired: usize) {
        self.caught_up.send_if_modified(|seen| {
            if generation > seen.0 {
                *seen = (generation, fired);
                true
            } else {
                false
            }
        });
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old or the new content: a
/// temporary file, fsync'd, renamed over, and the directory fsync'd.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let directory = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(directory)?;
    let temporary = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(directory)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_clock_moves_forward_only_and_keeps_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let clock = DemoClock::open(dir.path()).unwrap();
        assert_eq!(clock.offset(), Duration::ZERO);
        let before = clock.now();
        let advanced = clock.advance(Duration::from_secs(3 * 86_400)).unwrap();
        assert!(advanced.now.0 >= before.0 + 3 * 86_400_000);
        assert!(clock.now().0 >= advanced.now.0);
        assert_eq!(advanced.generation, 1);
        assert!(clock.offset() >= Duration::from_secs(3 * 86_400));
        for bad in [Duration::ZERO, MAX_DEMO_ADVANCE + Duration::from_millis(1)] {
            let error = clock.advance(bad).unwrap_err();
            assert!(error.to_string().contains("by"), "{error}");
        }
        drop(clock);
        let reopened = DemoClock::open(dir.path()).unwrap();
        assert!(
            reopened.now().0 >= advanced.now.0,
            "a restart keeps the demo's time"
        );
        assert!(reopened.offset() >= Duration::from_secs(3 * 86_400));
    }

    #[test]
    fn a_damaged_or_negative_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DEMO_CLOCK_FILE), "soon").unwrap();
        let error = DemoClock::open(dir.path()).unwrap_err();
        assert!(error.to_string().contains(DEMO_CLOCK_FILE), "{error}");
        std::fs::write(
            dir.path().join(DEMO_CLOCK_FILE),
            r#"{"offset_ms": -5, "floor_ms": 0}"#,
        )
        .unwrap();
        let error = DemoClock::open(dir.path()).unwrap_err();
        assert!(error.to_string().contains("forward"), "{error}");
    }
}
