//! The durable event log: segment files are the record; the indexes over them are in
//! memory.
//!
//! Appends go through one writer thread that batches concurrent appends into one write
//! and one `fdatasync` (group commit) and acknowledges nothing before that sync; it then
//! adds the group to the in-memory stream index before it moves the head. On open one
//! scan of the segments builds the indexes again. A sled store beside the segments keeps
//! named checkpoints and other components' trees. See
//! `docs/adr/001-own-log-sled-index.md` and `docs/adr/005-log-index-in-memory.md`.

mod backup;
mod codec;
mod error;
mod event_ids;
mod examine;
mod health;
mod index;
mod offline;
mod recovery;
mod segment;
mod shared;
mod streams;
mod subscription;
mod types;
mod verify;
mod writer;

pub use backup::LogBackup;
pub use codec::MAX_WRITE_BYTES;
pub use error::{AppendError, LogError};
pub use health::WriteHealth;
pub use offline::{
    salvage, verify_directory, LostEvent, SalvageReport, LOST_EVENT_TYPE, LOST_STREAM,
};
pub use subscription::Subscription;
pub use types::{
    AppendResult, Direction, ExpectedVersion, Filter, LogOptions, LogStats, Metadata, NewEvent,
    RecordedEvent, VerifyReport,
};

use shared::Shared;
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{mpsc, oneshot, watch};
use writer::{Command, Writer};

/// Longest accepted stream id, in bytes.
pub const MAX_STREAM_ID_BYTES: usize = 256;
/// Longest accepted event type name or actor, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

/// A handle to an open log; clones share it.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<Command>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping the sender stops the writer; joining it releases the directory lock
        // and sled before a reopen in the same process.
        self.tx.take();
        for thread in self
            .threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default()
        {
            let _ = thread.join();
        }
    }
}

/// Runs `task` to completion on a new thread named `name`, with a single-threaded tokio
/// runtime of its own, and returns a receiver that fires once it has finished and its
/// runtime is gone. A reader of the log that must keep up under load (the NATS relay)
/// runs this way, so its wake-ups are scheduled by the kernel beside the server's
/// runtime workers instead of queueing behind its gRPC tasks. If no thread or runtime
/// can be made, the task runs on the current runtime instead.
pub fn spawn_on_own_thread<F>(name: &str, task: F) -> oneshot::Receiver<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (finished, done) = oneshot::channel();
    // The task waits here until its thread takes it; if the thread cannot be started it
    // is still here for the current runtime.
    let slot = Arc::new(Mutex::new(Some((task, finished))));
    let spawned = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|runtime| {
            let slot = slot.clone();
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || {
                    let taken = slot.lock().ok().and_then(|mut slot| slot.take());
                    if let Some((task, finished)) = taken {
                        runtime.block_on(task);
                        drop(runtime);
                        let _ = finished.send(());
                    }
                })
                .map_err(|e| e.to_string())
        });
    if let Err(reason) = spawned {
        tracing::warn!(thread = name, %reason, "no thread of its own; the task runs on the current runtime");
        let taken = slot.lock().ok().and_then(|mut slot| slot.take());
        if let Some((task, finished)) = taken {
            tokio::spawn(async move {
                task.await;
                let _ = finished.send(());
            });
        }
    }
    done
}

impl EventLog {
    /// Opens (creating if needed) the log in `dir`: segments in `dir/segments`, the sled
    /// store in `dir/index`.
    pub async fn open(dir: impl AsRef<Path>, options: LogOptions) -> Result<EventLog, LogError> {
        let dir = dir.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(&dir, options))
            .await
            .map_err(|e| LogError::Corrupt(format!("opening the log panicked: {e}")))?
    }

    fn open_blocking(dir: &Path, options: LogOptions) -> Result<EventLog, LogError> {
        if options.segment_size < 4096 || options.segment_size > (1 << 40) {
            return Err(LogError::Invalid(
                "segment_size must be between 4 KiB and 1 TiB".into(),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| LogError::io(dir.display(), e))?;
        let lock_path = dir.join("LOCK");
        let dir_lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| LogError::io(lock_path.display(), e))?;
        dir_lock.try_lock().map_err(|e| {
            LogError::io(
                lock_path.display(),
                std::io::Error::other(format!("log directory is in use: {e:?}")),
            )
        })?;
        let segment_dir = dir.join("segments");
        let started = std::time::Instant::now();
        let recovered = recovery::recover(&segment_dir, &dir.join("index"), &options)?;
        tracing::info!(
            dir = %dir.display(),
            events = recovered.head,
            streams = recovered.loaded.streams.len(),
            segments = recovered.segments.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "event log open: every segment scanned and the indexes built"
        );
        let active = recovered
            .segments
            .last()
            .expect("there is always a segment")
            .clone();
        let (head_tx, _) = watch::channel(recovered.head);
        let shared = Arc::new(Shared {
            segment_dir,
            options,
            _dir_lock: dir_lock,
            segments: RwLock::new(recovered.segments),
            sparse: RwLock::new(recovered.loaded.sparse),
            head: AtomicU64::new(recovered.head),
            head_tx,
            streams: RwLock::new(recovered.loaded.streams),
            closed: AtomicBool::new(false),
            index: recovered.index,
            write_health: Arc::new(WriteHealth::default()),
        });
        // An id may be stored once: the events whose id shares a fingerprint with an
        // earlier one's are read back and compared.
        for (position, id, earlier) in &recovered.loaded.suspects {
            for earlier in earlier {
                if shared.read_frame(*earlier)?.event.event_id == *id {
                    return Err(LogError::Corrupt(format!(
                        "position {position} repeats the event id of position {earlier}"
                    )));
                }
            }
        }
        let (tx, rx) = mpsc::channel(16 * 1024);
        let writer = Writer {
            shared: shared.clone(),
            ids: recovered.loaded.ids,
            segment: active,
            write_offset: recovered.write_offset,
            dirty_end: recovered.write_offset,
            failure: None,
            prepared: None,
        };
        let writer = std::thread::Builder::new()
            .name("anju-eventlog-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| LogError::io("writer thread", e))?;
        Ok(EventLog {
            inner: Arc::new(Inner {
                shared,
                tx: Some(tx),
                threads: Mutex::new(vec![writer]),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Appends `events` to `stream` atomically if `expected` holds; returns after fdatasync.
    /// Re-sending an append whose event ids are all stored returns its original result.
    pub async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        self.validate(stream, &events)?;
        let (reply, answer) = oneshot::channel();
        let tx = self.inner.tx.as_ref().ok_or(AppendError::Closed)?;
        tx.send(Command::Append {
            stream: stream.to_string(),
            expected,
            events,
            reply,
        })
        .await
        .map_err(|_| AppendError::Closed)?;
        answer.await.map_err(|_| AppendError::Closed)?
    }

    fn validate(&self, stream: &str, events: &[NewEvent]) -> Result<(), AppendError> {
        let options = &self.shared().options;
        let invalid = |m: String| Err(AppendError::Invalid(m));
        if stream.is_empty() || stream.len() > MAX_STREAM_ID_BYTES {
            return invalid(format!(
                "stream id must be 1 to {MAX_STREAM_ID_BYTES} bytes"
            ));
        }
        if stream.starts_with('$') || stream.chars().any(char::is_control) {
            return invalid(format!(
                "stream id {stream:?} is reserved or has control characters"
            ));
        }
        if events.is_empty() {
            return invalid("an append needs at least one event".into());
        }
        if events.len() > options.max_events_per_append {
            return invalid(format!(
                "an append may hold at most {} events",
                options.max_events_per_append
            ));
        }
        let bytes: usize = events
            .iter()
            .map(|e| codec::frame_len(stream, &e.event_type, &e.metadata, e.payload.len()))
            .sum();
        if bytes as u64 > codec::MAX_WRITE_BYTES {
            return invalid(format!(
                "an append may take at most {} bytes on disk, this one takes {bytes}",
                codec::MAX_WRITE_BYTES
            ));
        }
        let mut ids = HashSet::with_capacity(events.len());
        for event in events {
            if event.event_id.is_nil() || !ids.insert(event.event_id) {
                return invalid(format!(
                    "event id {} is nil or repeated in the append",
                    event.event_id
                ));
            }
            if event.event_type.is_empty() || event.event_type.len() > MAX_NAME_BYTES {
                return invalid(format!("event type must be 1 to {MAX_NAME_BYTES} bytes"));
            }
            if event.metadata.actor.len() > MAX_NAME_BYTES {
                return invalid(format!("actor must be at most {MAX_NAME_BYTES} bytes"));
            }
            if event.payload.len() > options.max_event_bytes {
                return invalid(format!(
                    "payload of {} bytes is larger than the limit of {}",
                    event.payload.len(),
                    options.max_event_bytes
                ));
            }
        }
        Ok(())
    }

    /// Events of `stream` from `from_version` (inclusive) in `direction`; `u64::MAX`
    /// backwards means from the newest. At most `max` (and `max_read_batch`) events.
    pub async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        direction: Direction,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        self.read_stream_blocking(stream, from_version, direction, max)
    }

    /// [`EventLog::read_stream`] for callers on a blocking thread: it reads the page
    /// cache with `pread` and never waits on the runtime.
    pub fn read_stream_blocking(
        &self,
        stream: &str,
        from_version: u64,
        direction: Direction,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let shared = self.shared();
        let max = max.min(shared.options.max_read_batch);
        if max == 0 {
            return Ok(Vec::new());
        }
        let positions =
            shared.stream_positions(stream, from_version, direction == Direction::Forwards, max);
        let mut events = Vec::with_capacity(positions.len());
        for (version, position) in positions {
            let event = shared.read_one(position)?;
            if event.stream_id != stream || event.stream_version != version {
                return Err(LogError::Corrupt(format!(
                    "the index maps {stream}@{version} to position {position}, which holds {}@{}",
                    event.stream_id, event.stream_version
                )));
            }
            events.push(event);
        }
        Ok(events)
    }

    /// Events of the whole log from `from_position` (inclusive) that match `filter`;
    /// backwards from `u64::MAX` means from the newest.
    pub async fn read_all(
        &self,
        from_position: u64,
        direction: Direction,
        filter: &Filter,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let shared = self.shared();
        let max = max.min(shared.options.max_read_batch);
        match direction {
            Direction::Forwards => Ok(shared
                .read_forwards(from_position, u64::MAX, filter, max)?
                .0),
            Direction::Backwards => shared.read_backwards(from_position, filter, max),
        }
    }

    /// A subscription to every matching event from `from_position` on: history first,
    /// then live events as they commit, with no gap and no duplicate.
    pub fn subscribe_all(&self, from_position: u64, filter: Filter) -> Subscription {
        Subscription::new(self.clone(), from_position, filter)
    }

    /// Whether appends succeed: after a failed write or sync the log refuses appends
    /// until the next append finds the disk writable again (see `writer.rs`).
    pub fn write_health(&self) -> Arc<WriteHealth> {
        self.shared().write_health.clone()
    }

    /// The next position to be written, which is also the number of events in the log.
    pub fn head_position(&self) -> u64 {
        self.shared().head()
    }

    /// Waits until the event at `position` is committed (the head is past it) and
    /// returns the head; `Closed` if the log closes first.
    pub async fn wait_for_position(&self, position: u64) -> Result<u64, LogError> {
        let shared = self.shared();
        let mut rx = shared.head_tx.subscribe();
        loop {
            let head = *rx.borrow_and_update();
            if head > position {
                return Ok(head);
            }
            if shared.closed.load(std::sync::atomic::Ordering::Acquire) {
                return Err(LogError::Closed);
            }
            rx.changed().await.map_err(|_| LogError::Closed)?;
        }
    }

    /// The version of the stream's last committed event, `None` if it has none.
    pub fn stream_version(&self, stream: &str) -> Option<u64> {
        self.shared().stream_version(stream)
    }

    /// The position of the committed event with this id, `None` if there is none. Asks
    /// the writer, which holds every committed id's fingerprint in memory (the dedupe
    /// set) and reads the events stored under it.
    pub async fn event_position(&self, event_id: uuid::Uuid) -> Result<Option<u64>, LogError> {
        let closed = || LogError::Closed;
        let tx = self.inner.tx.as_ref().ok_or_else(closed)?;
        let (reply, answer) = oneshot::channel();
        tx.send(Command::Lookup { event_id, reply })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// The position stored under `name`, e.g. how far a projection has read.
    pub fn checkpoint(&self, name: &str) -> Result<Option<u64>, LogError> {
        self.shared().index.checkpoint(name)
    }

    /// Stores a checkpoint in sled; like the rest of sled it reaches disk within about
    /// half a second, so a reader must tolerate re-reading a little after a crash.
    pub fn set_checkpoint(&self, name: &str, position: u64) -> Result<(), LogError> {
        self.shared().index.set_checkpoint(name, position)
    }

    /// The directory the log was opened in (it holds `segments/` and `index/`); other
    /// components may keep their own files beside them.
    pub fn directory(&self) -> std::path::PathBuf {
        let segments = &self.shared().segment_dir;
        segments.parent().unwrap_or(segments).to_path_buf()
    }

    /// The sled store that holds the indexes; other components may keep their own trees in it.
    pub fn index_db(&self) -> &sled::Db {
        &self.shared().index.db
    }

    /// Copies the segments up to the head into `to/segments/` while appends go on: the
    /// copy ends exactly after the last event committed when it started (see
    /// `docs/adr/009-online-backup-to-a-durable-log-position.md`). `to/segments` must not
    /// exist yet. The checkpoints in sled are not copied: they are rebuilt from the log.
    pub async fn backup(&self, to: impl AsRef<Path>) -> Result<LogBackup, LogError> {
        let shared = self.inner.shared.clone();
        let to = to.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || backup::backup(&shared, &to))
            .await
            .map_err(|e| LogError::Corrupt(format!("the backup panicked: {e}")))?
    }

    /// Checks every frame's CRC, position and version contiguity, and that the in-memory
    /// indexes agree with the segments.
    pub async fn verify(&self) -> Result<VerifyReport, LogError> {
        let shared = self.inner.shared.clone();
        let head = shared.head();
        tokio::task::spawn_blocking(move || verify::verify(&shared, head))
            .await
            .map_err(|e| LogError::Corrupt(format!("verify panicked: {e}")))?
    }

    pub async fn stats(&self) -> LogStats {
        let shared = self.shared();
        let segments = shared.segments.read().expect("segment list lock poisoned");
        LogStats {
            events: shared.head(),
            streams: shared
                .streams
                .read()
                .expect("stream index lock poisoned")
                .len() as u64,
            segments: segments.len() as u64,
            bytes: segments
                .iter()
                .filter_map(|s| s.file.metadata().ok())
                .map(|m| m.len())
                .sum(),
        }
    }

    /// Stops the writer after the appends already queued and flushes sled. Other clones
    /// of this handle get `Closed` from then on.
    pub async fn close(self) -> Result<(), LogError> {
        let shared = self.inner.shared.clone();
        if let Some(tx) = &self.inner.tx {
            let (done, closed) = oneshot::channel();
            if tx.send(Command::Close { done }).await.is_ok() {
                let _ = closed.await;
            }
        }
        let flushed = tokio::task::spawn_blocking(move || shared.index.flush())
            .await
            .map_err(|e| LogError::Corrupt(format!("flushing the sled store panicked: {e}")))?;
        drop(self);
        flushed
    }
}
