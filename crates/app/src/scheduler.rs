//! The timer scheduler: every interval (and at once on start, so what fell due while
//! the server was down fires) it asks the projections' timer index what is due and
//! fires it as the system actor. Firing is idempotent in the domain, so a timer fired
//! again before the index catches up produces nothing.

use crate::app::Application;
use crate::error::AppError;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Most index queries in one round when every answer is a full batch.
const MAX_PASSES_PER_ROUND: usize = 16;

pub(crate) struct SchedulerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SchedulerHandle {
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

pub(crate) fn start(application: Application) -> SchedulerHandle {
    let (stop, mut stopped) = watch::channel(false);
    // The task holds only a weak reference, so an application dropped without close()
    // does not keep itself alive through its own scheduler.
    let weak = std::sync::Arc::downgrade(&application.inner);
    let interval = application.inner.config.timer_interval;
    drop(application);
    let task = tokio::spawn(async move {
        loop {
            let Some(inner) = weak.upgrade() else { return };
            let application = Application { inner };
            if let Err(e) = application.fire_due_timers().await {
                tracing::warn!(error = %e, "timer round failed; trying again next round");
            }
            drop(application);
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stopped.changed() => return,
            }
            if *stopped.borrow() {
                return;
            }
        }
    });
    SchedulerHandle { stop, task }
}

impl Application {
    /// One scheduler round: fires every timer due at the clock's now; returns how many
    /// produced events. The scheduler calls this on its own; tests and admin tools may too.
    pub async fn fire_due_timers(&self) -> Result<usize, AppError> {
        let batch = self.inner.config.timer_batch.max(1);
        let mut fired = 0;
        for _ in 0..MAX_PASSES_PER_ROUND {
            let now = self.now();
            let due = self.inner.projections.due_timers(now, batch).map_err(|e| {
                AppError::unavailable(format!("reading the timer index failed: {e}"))
            })?;
            let full = due.len() >= batch;
            let mut last_position = None;
            for (request_id, timer) in due {
                match self.fire_timer(request_id, timer.kind, timer.due_at).await {
                    Ok(executed) if !executed.events.is_empty() => {
                        fired += 1;
                        last_position = Some(executed.position);
                    }
                    Ok(_) => {}
                    Err(AppError::Unavailable(e)) => return Err(AppError::Unavailable(e)),
                    Err(e) => {
                        tracing::warn!(%request_id, kind = timer.kind.as_str(), error = %e, "timer not fired")
                    }
                }
            }
            let Some(position) = last_position.filter(|_| full) else {
                break;
            };
            // A full batch: let the index take in what was fired before asking again.
            let _ = self
                .inner
                .projections
                .wait_for(position, Duration::from_secs(2))
                .await;
        }
        Ok(fired)
    }
}
