//! The timer scheduler: every interval (and at once on start, so what fell due while
//! the server was down fires) it asks the projections' timer index what is due and
//! fires it as the system actor; a clock that jumps forward (the demo clock) wakes it
//! at once. Firing is idempotent in the domain, so a timer fired
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
    // A clock that jumps (the demo clock) wakes the scheduler at once.
    let clock = application.inner.clock.clone();
    let mut jumps = clock.jumps();
    drop(application);
    let task = tokio::spawn(async move {
        loop {
            let Some(inner) = weak.upgrade() else { return };
            let application = Application { inner };
            let generation = jumps.as_mut().map(|jumps| *jumps.borrow_and_update());
            if generation.is_some() {
                // On a clock that jumps, the timer index first takes in everything
                // written so far, so a round right after a jump sees every timer due.
                if let Some(last) = application.inner.log.head_position().checked_sub(1) {
                    let _ = application
                        .inner
                        .projections
                        .wait_for(last, Duration::from_secs(5))
                        .await;
                }
            }
            let fired = match application.fire_due_timers().await {
                Ok(fired) => fired,
                Err(e) => {
                    tracing::warn!(error = %e, "timer round failed; trying again next round");
                    0
                }
            };
            drop(application);
            if let Some(generation) = generation {
                clock.timers_caught_up(generation, fired);
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stopped.changed() => return,
                _ = jumped(&mut jumps) => {}
            }
            if *stopped.borrow() {
                return;
            }
        }
    });
    SchedulerHandle { stop, task }
}

/// Resolves when the clock jumps; never for a clock that does not.
async fn jumped(jumps: &mut Option<watch::Receiver<u64>>) {
    match jumps {
        Some(jumps) => {
            if jumps.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
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
