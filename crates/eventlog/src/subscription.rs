//! Catch-up subscriptions to `$all`: read history from the segments in batches, then wait
//! for the committed head to move and read again. Every read is by position, so the
//! switch from history to live has no gap and no duplicate, and a slow subscriber only
//! falls behind: it never holds up the writer or other subscribers.

use crate::error::LogError;
use crate::types::{Filter, RecordedEvent};
use crate::EventLog;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use tokio::sync::watch;

/// How many positions one history read scans at most, so a filter that matches little
/// still yields control regularly.
const SCAN_POSITIONS: u64 = 4096;
const BATCH_EVENTS: usize = 512;

pub struct Subscription {
    log: EventLog,
    next_position: u64,
    filter: Filter,
    buffer: VecDeque<RecordedEvent>,
    head_rx: watch::Receiver<u64>,
    failed: bool,
}

impl Subscription {
    pub(crate) fn new(log: EventLog, from_position: u64, filter: Filter) -> Subscription {
        let head_rx = log.inner.shared.head_tx.subscribe();
        Subscription {
            log,
            next_position: from_position,
            filter,
            buffer: VecDeque::new(),
            head_rx,
            failed: false,
        }
    }

    /// The position the subscription will read next (after any buffered events).
    pub fn next_position(&self) -> u64 {
        self.next_position
    }

    /// The next matching event; `None` once the log is closed and every committed event
    /// has been delivered, or after an error has been returned.
    pub async fn next(&mut self) -> Option<Result<RecordedEvent, LogError>> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some(Ok(event));
            }
            if self.failed {
                return None;
            }
            let shared = &self.log.inner.shared;
            let head = *self.head_rx.borrow_and_update();
            if self.next_position < head {
                let to = head.min(self.next_position.saturating_add(SCAN_POSITIONS));
                match shared.read_forwards(self.next_position, to, &self.filter, BATCH_EVENTS) {
                    Ok((events, next)) => {
                        self.buffer.extend(events);
                        self.next_position = next;
                    }
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
                continue;
            }
            if shared.closed.load(Ordering::Acquire) && self.next_position >= shared.head() {
                return None;
            }
            if self.head_rx.changed().await.is_err() {
                return None;
            }
        }
    }

    /// The subscription as a `futures::Stream`.
    pub fn into_stream(
        self,
    ) -> impl futures::Stream<Item = Result<RecordedEvent, LogError>> + Send {
        futures::stream::unfold(self, |mut subscription| async move {
            subscription.next().await.map(|item| (item, subscription))
        })
    }
}
