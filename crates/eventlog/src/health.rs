//! Whether a store's writes succeed, for health checks and metrics: the failure of the
//! last write (cleared once a write succeeds again) and how many writes have failed.
//! The event log and the key store each keep one.

use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::watch;

#[derive(Debug)]
pub struct WriteHealth {
    failure: watch::Sender<Option<String>>,
    failures: AtomicU64,
}

impl Default for WriteHealth {
    fn default() -> Self {
        WriteHealth {
            failure: watch::channel(None).0,
            failures: AtomicU64::new(0),
        }
    }
}

impl WriteHealth {
    /// Records a failed write (or a failed attempt to clean up after one).
    pub fn failed(&self, message: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.failure.send_replace(Some(message.to_string()));
    }

    /// Records a write that succeeded.
    pub fn succeeded(&self) {
        self.failure
            .send_if_modified(|failure| failure.take().is_some());
    }

    /// Why writes fail now; `None` while they succeed.
    pub fn failure(&self) -> Option<String> {
        self.failure.borrow().clone()
    }

    /// Writes (and clean-ups) that have failed since the store was opened.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Follows the failure as it is set and cleared.
    pub fn subscribe(&self) -> watch::Receiver<Option<String>> {
        self.failure.subscribe()
    }
}
