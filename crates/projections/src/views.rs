//! Request views read from the log instead of stored: a request's view is the fold of
//! its own stream, so the in-memory read models keep no copy of it. Recently folded
//! views stay in a bounded cache (two generations: a hit in the older one moves the view
//! to the newer; when the newer is full it becomes the older and the oldest is dropped),
//! which serves the fold of the next event of a request and most status reads.

use crate::model::RequestView;
use anju_domain::RequestId;
use anju_eventlog::{Direction, EventLog, RecordedEvent};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Views per cache generation (a view of a request with a few events is 1–2 KB, so a
/// full cache holds about 8–16 MB). The fold of a request's next event usually comes
/// within seconds of the previous one; older requests are folded from the log.
const GENERATION: usize = 4 * 1024;

#[derive(Default)]
struct Cache {
    current: HashMap<RequestId, Arc<RequestView>>,
    previous: HashMap<RequestId, Arc<RequestView>>,
}

pub(crate) struct LogViews {
    pub log: EventLog,
    cache: Mutex<Cache>,
}

impl LogViews {
    pub fn new(log: EventLog) -> LogViews {
        LogViews {
            log,
            cache: Mutex::new(Cache::default()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn cached(&self, id: &RequestId) -> Option<Arc<RequestView>> {
        let mut cache = self.cache();
        if let Some(view) = cache.current.get(id) {
            return Some(view.clone());
        }
        let view = cache.previous.remove(id)?;
        Self::put(&mut cache, view.clone());
        Some(view)
    }

    /// Keeps `view` unless the cache already holds a later version of it.
    pub fn remember(&self, view: RequestView) {
        let mut cache = self.cache();
        let newer = cache
            .current
            .get(&view.request_id)
            .or_else(|| cache.previous.get(&view.request_id))
            .is_some_and(|held| held.version > view.version);
        if !newer {
            Self::put(&mut cache, Arc::new(view));
        }
    }

    fn put(cache: &mut Cache, view: Arc<RequestView>) {
        if cache.current.len() >= GENERATION && !cache.current.contains_key(&view.request_id) {
            cache.previous = std::mem::take(&mut cache.current);
        }
        cache.previous.remove(&view.request_id);
        cache.current.insert(view.request_id, view);
    }

    pub fn clear(&self) {
        let mut cache = self.cache();
        cache.current.clear();
        cache.previous.clear();
    }

    /// Every event of `stream` below log position `before`, in stream order.
    pub fn events_before(
        &self,
        stream: &str,
        before: u64,
    ) -> Result<Vec<RecordedEvent>, anju_eventlog::LogError> {
        let mut out = Vec::new();
        loop {
            let from = out.len() as u64;
            let page = self
                .log
                .read_stream_blocking(stream, from, Direction::Forwards, 4096)?;
            let full = !page.is_empty();
            for event in page {
                if event.position >= before {
                    return Ok(out);
                }
                out.push(event);
            }
            if !full {
                return Ok(out);
            }
        }
    }
}
