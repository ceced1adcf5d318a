//! `ReadModels`: the sled trees and the fold that keeps them, usable without the local
//! log (the insight service feeds it events of many nodes).
//!
//! Events are applied in chunks: each chunk loads the views it touches once, folds every
//! event in memory, and writes every part plus the checkpoint in one atomic sled batch
//! (all parts share one tree, see `store`), so a crash leaves them at a chunk boundary. A request view stores the stream version
//! it has reached and an event is applied only if it is the next of its stream, which
//! makes re-delivery (after a crash, or over NATS) a no-op.

use crate::keys;
use crate::model::{Applied, PartFootprint, QueueItem, RequestView, TimelineEntry, OPEN_STATUSES};
use crate::store::{MemPart, MemWrite, ModelBatch, Part, PartBatch};
use crate::views::LogViews;
use crate::ProjectionError;
use anju_domain::{
    next_due, try_evolve, ActorId, Calendar, Event, Grade, RemediationState, Request, RequestId,
    Status, Timestamp,
};
use anju_eventlog::EventLog;
use sled::Tree;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bump when the layout or the meaning of any `proj_` tree changes: the trees are then
/// cleared and rebuilt from position 0 on start.
pub const PROJECTION_VERSION: u64 = 8;

/// A snapshot of the in-memory models is written when this long has passed since the
/// last one and something changed (the default; see [`ReadModels::with_snapshot_interval`])...
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(60);
/// ...or when this many positions were applied since the last one (and at least
/// `SNAPSHOT_MIN_GAP` has passed), and always when the projections stop.
const SNAPSHOT_POSITIONS: u64 = 1_000_000;
const SNAPSHOT_MIN_GAP: Duration = Duration::from_secs(10);

/// The one sled tree that holds every part.
pub(crate) const MODELS_TREE: &str = "proj_models";
/// The separate trees of layout versions 1 and 2, dropped when found.
const LEGACY_TREES: [&str; 9] = [
    "proj_meta",
    "proj_requests",
    "proj_tracking",
    "proj_queue",
    "proj_timers",
    "proj_sites",
    "proj_counts",
    "proj_spans",
    "proj_remediations",
];

// The parts' names (as in `dump`), in prefix order from 1.
pub(crate) const TREE_META: &str = "proj_meta";
pub(crate) const TREE_REQUESTS: &str = "proj_requests";
pub(crate) const TREE_TRACKING: &str = "proj_tracking";
pub(crate) const TREE_QUEUE: &str = "proj_queue";
pub(crate) const TREE_TIMERS: &str = "proj_timers";
pub(crate) const TREE_SITES: &str = "proj_sites";
pub(crate) const TREE_COUNTS: &str = "proj_counts";
pub(crate) const TREE_SPANS: &str = "proj_spans";
pub(crate) const TREE_REMEDIATIONS: &str = "proj_remediations";
pub(crate) const TREE_IDENTITIES: &str = "proj_identities";

/// Every tree, in the order of `Trees::all`.
pub const TREE_NAMES: [&str; 10] = [
    TREE_META,
    TREE_REQUESTS,
    TREE_TRACKING,
    TREE_QUEUE,
    TREE_TIMERS,
    TREE_SITES,
    TREE_COUNTS,
    TREE_SPANS,
    TREE_REMEDIATIONS,
    TREE_IDENTITIES,
];

const META_VERSION: &[u8] = b"version";
const META_CHECKPOINT: &[u8] = b"checkpoint";
const META_DECODE_ERRORS: &[u8] = b"decode_errors";
const META_NOT_APPLICABLE: &[u8] = b"not_applicable";

// Kinds in `proj_counts` (the first key byte).
pub(crate) const K_SUBMITTED: u8 = 1;
pub(crate) const K_ACCEPTED: u8 = 2;
pub(crate) const K_APPROVED: u8 = 3;
pub(crate) const K_FULFILLED: u8 = 4;
pub(crate) const K_CLOSED: u8 = 5;
pub(crate) const K_REFUSED: u8 = 6;
pub(crate) const K_DENIED: u8 = 7;
pub(crate) const K_WITHDRAWN: u8 = 8;
pub(crate) const K_WARNING: u8 = 10;
pub(crate) const K_YELLOW: u8 = 11;
pub(crate) const K_RED: u8 = 12;
pub(crate) const K_ON_TIME: u8 = 13;
pub(crate) const K_LATE: u8 = 14;
/// Fulfilled and not rated, by fulfilment hour: +1 at fulfilment, -1 when rated.
pub(crate) const K_UNRATED: u8 = 15;
/// Plus the grade's index in `Grade::ALL`.
pub(crate) const K_GRADE: u8 = 20;
pub(crate) const K_REM_OPENED: u8 = 30;
pub(crate) const K_REM_RESOLVED: u8 = 31;
pub(crate) const K_REM_RESOLVED_LATE: u8 = 32;
pub(crate) const K_APPEALED: u8 = 33;
pub(crate) const K_APPEAL_UPHELD: u8 = 34;
pub(crate) const K_APPEAL_REJECTED: u8 = 35;
/// Open requests by status (plus the status byte), bucketed by submission hour.
pub(crate) const K_OPEN: u8 = 50;

// Kinds in `proj_spans`.
pub(crate) const S_SUBMIT_TO_ACCEPT: u8 = 1;
pub(crate) const S_ACCEPT_TO_DECISION: u8 = 2;
pub(crate) const S_DECISION_TO_FULFILLED: u8 = 3;
pub(crate) const S_SUBMIT_TO_FULFILLED: u8 = 4;

// Kind in `proj_remediations`: open remediations keyed by due instant.
pub(crate) const R_OPEN: u8 = 1;

/// Every tree's keys and values, by tree name (see [`ReadModels::dump`]).
pub type Dump = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

/// One event to apply. `event` is `None` when the stored bytes could not be decoded: the
/// stream version still advances, so the rest of the stream is not blocked.
pub struct Input<'a> {
    pub stream_id: &'a str,
    pub stream_version: u64,
    pub position: u64,
    pub event_type: &'a str,
    pub event: Option<&'a Event>,
}

pub(crate) struct Trees {
    /// The sled tree of the sled backend; `None` in memory.
    pub models: Option<Tree>,
    pub meta: Part,
    pub requests: Part,
    pub tracking: Part,
    pub queue: Part,
    pub timers: Part,
    pub sites: Part,
    pub counts: Part,
    pub spans: Part,
    pub remediations: Part,
    /// Requests by identity-number digest: digest (32 bytes) and request id, no value.
    pub identities: Part,
}

impl Trees {
    /// Every part from `part(prefix)`, prefixes 1 to 10 in `TREE_NAMES` order.
    fn new(part: impl Fn(u8) -> Part, models: Option<Tree>) -> Trees {
        Trees {
            meta: part(1),
            requests: part(2),
            tracking: part(3),
            queue: part(4),
            timers: part(5),
            sites: part(6),
            counts: part(7),
            spans: part(8),
            remediations: part(9),
            identities: part(10),
            models,
        }
    }

    fn all(&self) -> [&Part; 10] {
        [
            &self.meta,
            &self.requests,
            &self.tracking,
            &self.queue,
            &self.timers,
            &self.sites,
            &self.counts,
            &self.spans,
            &self.remediations,
            &self.identities,
        ]
    }
}

pub(crate) struct Inner {
    pub trees: Trees,
    pub calendar: Arc<Calendar>,
    /// Serializes writers; queries do not take it.
    write: Mutex<()>,
    /// Site keys known to be in `proj_sites`, so a submission writes its site once.
    known_sites: Mutex<std::collections::HashSet<Vec<u8>>>,
    /// The memory backend's parts by prefix (empty for sled).
    memory: Vec<(u8, Arc<MemPart>)>,
    /// In memory, request views are folded from the log on demand (`views.rs`) and
    /// `proj_requests` stays empty.
    views: Option<LogViews>,
    snapshot: Option<SnapshotState>,
}

/// Where and when the memory backend writes its snapshots.
struct SnapshotState {
    path: PathBuf,
    /// When the last snapshot was written and the checkpoint it holds.
    last: Mutex<(Instant, u64)>,
    /// How long after the last snapshot the next one is due (when something changed).
    interval: Duration,
}

/// The read-model trees and their fold. Clones share them.
#[derive(Clone)]
pub struct ReadModels {
    pub(crate) inner: Arc<Inner>,
}

/// Counters kept in `proj_meta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelStats {
    pub checkpoint: u64,
    /// Events whose bytes could not be decoded (skipped, version advanced).
    pub decode_errors: u64,
    /// Events the domain fold refused (state unchanged, version advanced).
    pub not_applicable: u64,
    pub requests: u64,
}

/// One request's working copy during a chunk.
struct Pending {
    /// As stored before the chunk (its index keys are removed at the end).
    old: Option<RequestView>,
    new: Option<RequestView>,
}

/// Everything one chunk writes.
#[derive(Default)]
struct Work {
    pending: HashMap<RequestId, Pending>,
    counts: HashMap<Vec<u8>, i64>,
    tracking: PartBatch,
    sites: std::collections::BTreeSet<Vec<u8>>,
    spans: PartBatch,
    remediations: PartBatch,
    identities: PartBatch,
    decode_errors: u64,
    not_applicable: u64,
    /// Folding one request's stream to rebuild its view: nothing is counted or written.
    scratch: bool,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Corrupt(format!("{what}: {e}"))
}

/// The request id of a `request-<uuid>` stream.
pub fn request_id_of_stream(stream_id: &str) -> Option<RequestId> {
    let rest = stream_id.strip_prefix("request-")?;
    uuid::Uuid::parse_str(rest).ok().map(RequestId)
}

impl ReadModels {
    /// Opens (creating if needed) the models tree in `db`, dropping the separate trees
    /// of older layouts. Does not check the stored version: call
    /// [`ReadModels::ensure_version`] for that.
    pub fn open(db: &sled::Db, calendar: Arc<Calendar>) -> Result<ReadModels, ProjectionError> {
        let names = db.tree_names();
        for legacy in LEGACY_TREES {
            if names.iter().any(|n| n.as_ref() == legacy.as_bytes()) {
                db.drop_tree(legacy)?;
            }
        }
        let models = db.open_tree(MODELS_TREE)?;
        let trees = Trees::new(
            |prefix| Part::sled(models.clone(), prefix),
            Some(models.clone()),
        );
        Ok(ReadModels {
            inner: Arc::new(Inner {
                trees,
                calendar,
                write: Mutex::new(()),
                known_sites: Mutex::new(Default::default()),
                memory: Vec::new(),
                views: None,
                snapshot: None,
            }),
        })
    }

    /// Read models in memory over the local `log`: request views are folded from the
    /// log on demand, every other part lives in memory and is saved to `snapshot` (a
    /// file) from time to time and on [`ReadModels::save_snapshot`]. A whole snapshot of
    /// this version is loaded; anything else about it is logged and the models start
    /// empty, to be replayed from 0. Does not check the stored version: call
    /// [`ReadModels::ensure_version`] for that.
    pub fn open_memory(
        log: EventLog,
        calendar: Arc<Calendar>,
        snapshot: PathBuf,
    ) -> Result<ReadModels, ProjectionError> {
        let memory: Vec<(u8, Arc<MemPart>)> = (1..=TREE_NAMES.len() as u8)
            .map(|prefix| (prefix, Arc::new(MemPart::default())))
            .collect();
        match crate::snapshot::load(&snapshot, PROJECTION_VERSION) {
            Ok(None) => {}
            Ok(Some(parts)) => {
                for (prefix, map) in parts {
                    if let Some((_, part)) = memory.iter().find(|(p, _)| *p == prefix) {
                        *part.write() = map;
                    }
                }
            }
            // The parts are still empty: `load` fills nothing unless the whole file is good.
            Err(reason) => {
                tracing::warn!(path = %snapshot.display(), %reason, "read-model snapshot not used; the read models are rebuilt from the log");
            }
        }
        let trees = Trees::new(
            |prefix| Part::memory(memory[prefix as usize - 1].1.clone(), prefix),
            None,
        );
        let checkpoint = trees
            .meta
            .get(META_CHECKPOINT)?
            .and_then(|v| keys::read_u64(&v))
            .unwrap_or(0);
        Ok(ReadModels {
            inner: Arc::new(Inner {
                trees,
                calendar,
                write: Mutex::new(()),
                known_sites: Mutex::new(Default::default()),
                memory,
                views: Some(LogViews::new(log)),
                snapshot: Some(SnapshotState {
                    path: snapshot,
                    last: Mutex::new((Instant::now(), checkpoint)),
                    interval: SNAPSHOT_INTERVAL,
                }),
            }),
        })
    }

    /// The same models with snapshots due every `interval` instead of
    /// [`SNAPSHOT_INTERVAL`]; only for models just opened (clones share the setting).
    pub fn with_snapshot_interval(mut self, interval: Duration) -> ReadModels {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            if let Some(state) = &mut inner.snapshot {
                state.interval = interval;
            }
        }
        self
    }

    /// Writes a snapshot of the in-memory models now (a no-op for sled). Writers wait
    /// meanwhile, so the snapshot is one consistent checkpoint.
    /// The size of each in-memory part (none for the sled backend).
    pub fn memory_footprint(&self) -> Vec<PartFootprint> {
        self.inner
            .memory
            .iter()
            .map(|(prefix, part)| {
                let map = part.read();
                let (pages, used_bytes, allocated_bytes) = map.footprint();
                PartFootprint {
                    part: TREE_NAMES[*prefix as usize - 1],
                    entries: map.len(),
                    pages,
                    used_bytes,
                    allocated_bytes,
                }
            })
            .collect()
    }

    pub fn save_snapshot(&self) -> Result<(), ProjectionError> {
        let Some(state) = &self.inner.snapshot else {
            return Ok(());
        };
        let _guard = self
            .inner
            .write
            .lock()
            .map_err(|_| corrupt("write lock", "poisoned"))?;
        let checkpoint = self.checkpoint()?;
        let started = Instant::now();
        let entries = crate::snapshot::save(&state.path, PROJECTION_VERSION, &self.inner.memory)
            .map_err(|e| {
                ProjectionError::Corrupt(format!(
                    "writing the read-model snapshot {}: {e}",
                    state.path.display()
                ))
            })?;
        tracing::debug!(
            checkpoint,
            entries,
            ms = started.elapsed().as_millis() as u64,
            "read-model snapshot written"
        );
        if let Ok(mut last) = state.last.lock() {
            *last = (Instant::now(), checkpoint);
        }
        Ok(())
    }

    /// Writes a snapshot when one is due (every [`SNAPSHOT_INTERVAL`] or the interval
    /// set with [`ReadModels::with_snapshot_interval`]).
    pub fn snapshot_if_due(&self) -> Result<(), ProjectionError> {
        let Some(state) = &self.inner.snapshot else {
            return Ok(());
        };
        let (at, saved) = *state
            .last
            .lock()
            .map_err(|_| corrupt("snapshot state", "poisoned"))?;
        let checkpoint = self.checkpoint()?;
        let elapsed = at.elapsed();
        let due = checkpoint != saved
            && (elapsed >= state.interval
                || (checkpoint.saturating_sub(saved) >= SNAPSHOT_POSITIONS
                    && elapsed >= SNAPSHOT_MIN_GAP));
        if due {
            self.save_snapshot()?;
        }
        Ok(())
    }

    pub(crate) fn trees(&self) -> &Trees {
        &self.inner.trees
    }

    pub fn calendar(&self) -> &Calendar {
        &self.inner.calendar
    }

    /// The layout version the trees were written with, `None` when they are new.
    pub fn stored_version(&self) -> Result<Option<u64>, ProjectionError> {
        Ok(self
            .trees()
            .meta
            .get(META_VERSION)?
            .and_then(|v| keys::read_u64(&v)))
    }

    /// Clears every tree when the stored version is not [`PROJECTION_VERSION`] (new
    /// trees included); returns whether it did, i.e. whether a replay from 0 is needed.
    pub fn ensure_version(&self) -> Result<bool, ProjectionError> {
        let stored = self.stored_version()?;
        if stored == Some(PROJECTION_VERSION) {
            return Ok(false);
        }
        tracing::info!(
            ?stored,
            current = PROJECTION_VERSION,
            "projection version changed; rebuilding the read models"
        );
        self.reset()?;
        Ok(true)
    }

    /// Clears every tree and stamps the current version with checkpoint 0.
    pub fn reset(&self) -> Result<(), ProjectionError> {
        let _guard = self
            .inner
            .write
            .lock()
            .map_err(|_| corrupt("write lock", "poisoned"))?;
        if let Some(models) = &self.trees().models {
            models.clear()?;
        }
        for (_, part) in &self.inner.memory {
            part.write().clear();
        }
        if let Some(views) = &self.inner.views {
            views.clear();
        }
        self.inner
            .known_sites
            .lock()
            .map_err(|_| corrupt("site cache", "poisoned"))?
            .clear();
        self.trees()
            .meta
            .insert(META_VERSION, &PROJECTION_VERSION.to_be_bytes())?;
        self.trees()
            .meta
            .insert(META_CHECKPOINT, &0u64.to_be_bytes())?;
        Ok(())
    }

    /// The next log position to apply, as stored with the last chunk.
    pub fn checkpoint(&self) -> Result<u64, ProjectionError> {
        Ok(self
            .trees()
            .meta
            .get(META_CHECKPOINT)?
            .and_then(|v| keys::read_u64(&v))
            .unwrap_or(0))
    }

    /// Stores the checkpoint alone (for stretches of the log with no request events).
    pub fn set_checkpoint(&self, position: u64) -> Result<(), ProjectionError> {
        let _guard = self
            .inner
            .write
            .lock()
            .map_err(|_| corrupt("write lock", "poisoned"))?;
        self.trees()
            .meta
            .insert(META_CHECKPOINT, &position.to_be_bytes())?;
        Ok(())
    }

    pub fn stats(&self) -> Result<ModelStats, ProjectionError> {
        let meta = &self.trees().meta;
        let read = |key: &[u8]| -> Result<u64, ProjectionError> {
            Ok(meta.get(key)?.and_then(|v| keys::read_u64(&v)).unwrap_or(0))
        };
        Ok(ModelStats {
            checkpoint: read(META_CHECKPOINT)?,
            decode_errors: read(META_DECODE_ERRORS)?,
            not_applicable: read(META_NOT_APPLICABLE)?,
            requests: if self.inner.views.is_some() {
                self.trees().tracking.len() as u64
            } else {
                self.trees().requests.len() as u64
            },
        })
    }

    /// Applies one event of `request-<uuid>`; idempotent per stream (see [`Applied`]).
    pub fn apply(
        &self,
        stream_id: &str,
        stream_version: u64,
        position: u64,
        event: &Event,
    ) -> Result<Applied, ProjectionError> {
        let input = Input {
            stream_id,
            stream_version,
            position,
            event_type: event.event_type(),
            event: Some(event),
        };
        let mut applied = self.apply_all(&[input], None)?;
        Ok(applied.pop().unwrap_or(Applied::NotARequest))
    }

    /// Applies events in order in one sled transaction, storing `checkpoint` with them
    /// when given. Returns what happened to each.
    pub fn apply_all(
        &self,
        inputs: &[Input<'_>],
        checkpoint: Option<u64>,
    ) -> Result<Vec<Applied>, ProjectionError> {
        let _guard = self
            .inner
            .write
            .lock()
            .map_err(|_| corrupt("write lock", "poisoned"))?;
        let mut work = Work::default();
        work.pending.reserve(inputs.len());
        let mut results = Vec::with_capacity(inputs.len());
        for input in inputs {
            results.push(self.fold_one(&mut work, input)?);
        }
        self.commit(work, checkpoint)?;
        Ok(results)
    }

    /// The view of a request as applied before `input` (which is one of its events).
    fn load(
        &self,
        id: &RequestId,
        input: &Input<'_>,
    ) -> Result<Option<RequestView>, ProjectionError> {
        if let Some(views) = &self.inner.views {
            if let Some(view) = views.cached(id) {
                if view.version + 1 >= input.stream_version {
                    return Ok(Some((*view).clone()));
                }
            }
            if input.stream_version == 0 {
                return Ok(None);
            }
            return self.view_from_log(views, id, input.stream_id, input.position);
        }
        match self.trees().requests.get(keys::request(id))? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| corrupt("request view", e)),
        }
    }

    /// A request's view folded from its events in the log below position `before`
    /// (`None` when it has none there).
    pub(crate) fn view_from_log(
        &self,
        views: &LogViews,
        id: &RequestId,
        stream_id: &str,
        before: u64,
    ) -> Result<Option<RequestView>, ProjectionError> {
        let events = views.events_before(stream_id, before)?;
        if events.is_empty() {
            return Ok(None);
        }
        let decoded: Vec<Option<Event>> = events
            .iter()
            .map(|e| Event::from_json(&e.event_type, e.schema_version, &e.payload).ok())
            .collect();
        let mut work = Work {
            scratch: true,
            ..Work::default()
        };
        for (event, decoded) in events.iter().zip(&decoded) {
            self.fold_one(
                &mut work,
                &Input {
                    stream_id,
                    stream_version: event.stream_version,
                    position: event.position,
                    event_type: &event.event_type,
                    event: decoded.as_ref(),
                },
            )?;
        }
        Ok(work.pending.remove(id).and_then(|p| p.new))
    }

    /// A request's view as the read models have applied it.
    pub(crate) fn view(&self, id: &RequestId) -> Result<Option<RequestView>, ProjectionError> {
        match &self.inner.views {
            Some(views) => match views.cached(id) {
                Some(view) => Ok(Some((*view).clone())),
                None => self.view_from_log(views, id, &id.stream_name(), self.checkpoint()?),
            },
            None => match self.trees().requests.get(keys::request(id))? {
                None => Ok(None),
                Some(bytes) => serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| corrupt("request view", e)),
            },
        }
    }

    fn fold_one(&self, work: &mut Work, input: &Input<'_>) -> Result<Applied, ProjectionError> {
        let Some(id) = request_id_of_stream(input.stream_id) else {
            return Ok(Applied::NotARequest);
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = work.pending.entry(id) {
            let old = if work.scratch {
                None
            } else {
                self.load(&id, input)?
            };
            slot.insert(Pending {
                new: old.clone(),
                old,
            });
        }
        let current = work.pending.get(&id).and_then(|p| p.new.as_ref());
        let expected_version = current.map_or(0, |v| v.version + 1);
        if input.stream_version != expected_version {
            return Ok(Applied::Skipped { expected_version });
        }
        let before = current.map(|v| v.state.clone()).unwrap_or_default();
        let Some(event) = input.event else {
            work.decode_errors += 1;
            let (timers, timeline) = current
                .map(|v| (v.timers.clone(), v.timeline.clone()))
                .unwrap_or_default();
            let view = RequestView {
                request_id: id,
                state: before,
                version: input.stream_version,
                last_position: input.position,
                timers,
                timeline,
            };
            if let Some(p) = work.pending.get_mut(&id) {
                p.new = Some(view);
            }
            return Ok(Applied::NotApplicable);
        };
        let (after, applied) = match try_evolve(&before, event) {
            Ok(after) => (after, Applied::Applied),
            Err(e) => {
                if !work.scratch {
                    tracing::warn!(position = input.position, event_type = input.event_type, reason = %e, "event does not apply to its request; version advanced, state unchanged");
                }
                work.not_applicable += 1;
                (before.clone(), Applied::NotApplicable)
            }
        };
        let timeline = TimelineEntry {
            position: input.position,
            version: input.stream_version,
            event_type: event.event_type().to_string(),
            at: event.at(),
            actor: actor_of(event),
            summary: summary_of(event, applied == Applied::NotApplicable),
            status: after.status(),
            internal: is_internal(event),
            details: details_of(event),
        };
        if applied == Applied::Applied && !work.scratch {
            self.transitions(work, &id, before.request(), after.request(), event);
        }
        let timers = next_due(&after, &self.inner.calendar);
        if let Some(p) = work.pending.get_mut(&id) {
            let mut entries = p.new.take().map(|v| v.timeline).unwrap_or_default();
            entries.push(timeline);
            p.new = Some(RequestView {
                request_id: id,
                state: after,
                version: input.stream_version,
                last_position: input.position,
                timers,
                timeline: entries,
            });
        }
        Ok(applied)
    }

    /// Counters, spans, tracking codes, sites and remediations for one applied event.
    fn transitions(
        &self,
        work: &mut Work,
        id: &RequestId,
        old: Option<&Request>,
        new: Option<&Request>,
        event: &Event,
    ) {
        let Some(new) = new else { return };
        let site = keys::site(&new.site);
        let category = new.category;
        let at = event.at();
        // (kind, instant, delta) for `proj_counts`; (kind, start, end) for `proj_spans`.
        let mut deltas: Vec<(u8, Timestamp, i64)> = Vec::new();
        let mut spans: Vec<(u8, Timestamp, Timestamp)> = Vec::new();
        match old {
            None => {
                deltas.push((K_SUBMITTED, new.submitted_at, 1));
                deltas.push((K_OPEN + keys::status_byte(new.status), new.submitted_at, 1));
                work.tracking
                    .insert(keys::tracking(&new.tracking_code), &keys::request(id)[..]);
                for digest in &new.applicant.id_number_digests {
                    if let Some(key) = keys::identity(digest, id) {
                        work.identities.insert(key, &[][..]);
                    }
                }
                work.sites.insert(site.clone());
            }
            Some(old) => {
                if old.status != new.status {
                    if OPEN_STATUSES.contains(&old.status) {
                        deltas.push((K_OPEN + keys::status_byte(old.status), new.submitted_at, -1));
                    }
                    if OPEN_STATUSES.contains(&new.status) {
                        deltas.push((K_OPEN + keys::status_byte(new.status), new.submitted_at, 1));
                    }
                    match new.status {
                        Status::Approved => deltas.push((K_APPROVED, at, 1)),
                        Status::Closed => deltas.push((K_CLOSED, at, 1)),
                        Status::Refused => deltas.push((K_REFUSED, at, 1)),
                        Status::Denied => deltas.push((K_DENIED, at, 1)),
                        Status::Withdrawn => deltas.push((K_WITHDRAWN, at, 1)),
                        _ => {}
                    }
                }
                if old.accepted_at.is_none() {
                    if let Some(accepted) = new.accepted_at {
                        deltas.push((K_ACCEPTED, accepted, 1));
                        spans.push((S_SUBMIT_TO_ACCEPT, new.submitted_at, accepted));
                    }
                }
                if old.decided_at.is_none() {
                    if let (Some(decided), Some(accepted)) = (new.decided_at, new.accepted_at) {
                        spans.push((S_ACCEPT_TO_DECISION, accepted, decided));
                    }
                }
                if old.fulfilled_at.is_none() {
                    if let Some(fulfilled) = new.fulfilled_at {
                        deltas.push((K_FULFILLED, fulfilled, 1));
                        spans.push((S_SUBMIT_TO_FULFILLED, new.submitted_at, fulfilled));
                        if new.rating.is_none() {
                            deltas.push((K_UNRATED, fulfilled, 1));
                        }
                        if let Some(decided) = new.decided_at {
                            spans.push((S_DECISION_TO_FULFILLED, decided, fulfilled));
                        }
                    }
                }
                // Completion against the promised deadline: the clock finished by fulfilment or denial.
                let old_finished = old.deadlines.as_ref().and_then(|d| d.finished_at);
                if old_finished.is_none()
                    && matches!(new.status, Status::Fulfilled | Status::Denied)
                {
                    if let Some(d) = new.deadlines.as_ref() {
                        if let Some(finished) = d.finished_at {
                            let late = d.promised.is_some_and(|p| finished > p);
                            deltas.push((if late { K_LATE } else { K_ON_TIME }, finished, 1));
                        }
                    }
                }
                if old.supervision.warning_at.is_none() && new.supervision.warning_at.is_some() {
                    deltas.push((K_WARNING, at, 1));
                }
                if old.supervision.yellow_card_at.is_none()
                    && new.supervision.yellow_card_at.is_some()
                {
                    deltas.push((K_YELLOW, at, 1));
                }
                if old.supervision.red_card_at.is_none() && new.supervision.red_card_at.is_some() {
                    deltas.push((K_RED, at, 1));
                }
                let grade_kind =
                    |g: Grade| K_GRADE + Grade::ALL.iter().position(|x| *x == g).unwrap_or(0) as u8;
                match (&old.rating, &new.rating) {
                    (None, Some(rating)) => {
                        deltas.push((grade_kind(rating.grade), rating.at, 1));
                        if let Some(fulfilled) = old.fulfilled_at {
                            deltas.push((K_UNRATED, fulfilled, -1));
                        }
                    }
                    (Some(before), Some(rating)) => {
                        if !before.removed && rating.removed {
                            deltas.push((grade_kind(rating.grade), rating.at, -1));
                        }
                        let before_appeal = before.appeal.as_ref();
                        if let Some(appeal) = rating.appeal.as_ref() {
                            if before_appeal.is_none() {
                                deltas.push((K_APPEALED, appeal.at, 1));
                            }
                            if before_appeal.and_then(|a| a.upheld).is_none() {
                                match appeal.upheld {
                                    Some(true) => deltas.push((K_APPEAL_UPHELD, at, 1)),
                                    Some(false) => deltas.push((K_APPEAL_REJECTED, at, 1)),
                                    None => {}
                                }
                            }
                        }
                    }
                    _ => {}
                }
                match (&old.remediation, &new.remediation) {
                    (None, Some(r)) => {
                        deltas.push((K_REM_OPENED, r.opened_at, 1));
                        if r.state == RemediationState::Open {
                            work.remediations
                                .insert(keys::dated(R_OPEN, &site, category, r.due, id), &[][..]);
                        }
                    }
                    (Some(before), Some(r))
                        if before.state == RemediationState::Open
                            && r.state != RemediationState::Open =>
                    {
                        if let RemediationState::Resolved { at: resolved, .. } = &r.state {
                            deltas.push((K_REM_RESOLVED, *resolved, 1));
                            if *resolved > r.due {
                                deltas.push((K_REM_RESOLVED_LATE, *resolved, 1));
                            }
                        }
                        work.remediations
                            .remove(keys::dated(R_OPEN, &site, category, r.due, id));
                    }
                    _ => {}
                }
            }
        }
        for (kind, when, delta) in deltas {
            *work
                .counts
                .entry(keys::count(kind, &site, category, keys::hour_of(when)))
                .or_insert(0) += delta;
        }
        for (kind, start, end) in spans {
            let mut value = Vec::with_capacity(12);
            value.extend_from_slice(&(end.0 - start.0).to_be_bytes());
            value.extend_from_slice(
                &self
                    .inner
                    .calendar
                    .working_days_between(start, end)
                    .to_be_bytes(),
            );
            work.spans
                .insert(keys::dated(kind, &site, category, end, id), value);
        }
    }

    fn commit(&self, mut work: Work, checkpoint: Option<u64>) -> Result<(), ProjectionError> {
        let trees = self.trees();
        let mut batch = ModelBatch::default();
        let mut fresh_views = Vec::new();
        let pending_views = std::mem::take(&mut work.pending);
        for (id, pending) in &pending_views {
            let Some(new) = &pending.new else { continue };
            if pending.old.as_ref().map(|o| o.version) == Some(new.version) {
                continue;
            }
            let old_queue = pending.old.as_ref().and_then(queue_entry);
            let new_queue = queue_entry(new);
            if let Some((key, _)) = &old_queue {
                if new_queue.as_ref().map(|(k, _)| k) != Some(key) {
                    trees.queue.batch_remove(&mut batch, key);
                }
            }
            if let Some((key, item)) = new_queue {
                if old_queue.as_ref() != Some(&(key.clone(), item.clone())) {
                    trees.queue.batch_insert(&mut batch, &key, item.encode());
                }
            }
            let old_timers = pending
                .old
                .as_ref()
                .map(|o| o.timers.as_slice())
                .unwrap_or_default();
            for t in old_timers {
                if !new.timers.contains(t) {
                    trees
                        .timers
                        .batch_remove(&mut batch, &keys::timer(t.due_at, id, t.kind));
                }
            }
            for t in &new.timers {
                if !old_timers.contains(t) {
                    trees.timers.batch_insert(
                        &mut batch,
                        &keys::timer(t.due_at, id, t.kind),
                        &[][..],
                    );
                }
            }
            if self.inner.views.is_some() {
                fresh_views.push(*id);
            } else {
                trees.requests.batch_insert(
                    &mut batch,
                    &keys::request(id),
                    serde_json::to_vec(new).map_err(|e| corrupt("request view", e))?,
                );
            }
        }
        {
            let mut known = self
                .inner
                .known_sites
                .lock()
                .map_err(|_| corrupt("site cache", "poisoned"))?;
            for site in &work.sites {
                if !known.contains(site) {
                    if !trees.sites.contains_key(site)? {
                        trees.sites.batch_insert(&mut batch, site, &[][..]);
                    }
                    known.insert(site.clone());
                }
            }
        }
        for (key, delta) in &work.counts {
            if *delta == 0 {
                continue;
            }
            let current = trees
                .counts
                .get(key)?
                .and_then(|v| keys::read_i64(&v))
                .unwrap_or(0);
            let next = current + delta;
            if next == 0 {
                trees.counts.batch_remove(&mut batch, key);
            } else {
                trees
                    .counts
                    .batch_insert(&mut batch, key, &next.to_be_bytes()[..]);
            }
        }
        let bump = |key: &[u8], by: u64, batch: &mut ModelBatch| -> Result<(), ProjectionError> {
            if by > 0 {
                let current = trees
                    .meta
                    .get(key)?
                    .and_then(|v| keys::read_u64(&v))
                    .unwrap_or(0);
                trees
                    .meta
                    .batch_insert(batch, key, &(current + by).to_be_bytes()[..]);
            }
            Ok(())
        };
        bump(META_DECODE_ERRORS, work.decode_errors, &mut batch)?;
        bump(META_NOT_APPLICABLE, work.not_applicable, &mut batch)?;
        if let Some(position) = checkpoint {
            trees
                .meta
                .batch_insert(&mut batch, META_CHECKPOINT, &position.to_be_bytes()[..]);
        }
        work.tracking.apply_to(&trees.tracking, &mut batch);
        work.spans.apply_to(&trees.spans, &mut batch);
        work.remediations.apply_to(&trees.remediations, &mut batch);
        work.identities.apply_to(&trees.identities, &mut batch);
        match &trees.models {
            Some(models) => models.apply_batch(batch.sled)?,
            None => self.apply_memory(batch.memory),
        }
        if let Some(views) = &self.inner.views {
            let mut pending_views = pending_views;
            for id in fresh_views {
                if let Some(view) = pending_views.remove(&id).and_then(|p| p.new) {
                    views.remember(view);
                }
            }
        }
        Ok(())
    }

    /// Applies a chunk's writes to the memory parts, each part under its write lock once.
    fn apply_memory(&self, writes: Vec<(u8, MemWrite)>) {
        let mut by_part: Vec<Vec<MemWrite>> =
            (0..self.inner.memory.len()).map(|_| Vec::new()).collect();
        for (prefix, write) in writes {
            if let Some(slot) = by_part.get_mut(prefix as usize - 1) {
                slot.push(write);
            }
        }
        // The checkpoint (in meta, prefix 1) goes last, after every part it covers.
        for index in (0..by_part.len()).rev() {
            let mut writes = std::mem::take(&mut by_part[index]);
            if writes.is_empty() {
                continue;
            }
            // In key order (stable, so the later of two writes to a key still wins): a
            // chunk's keys then arrive in order at the pages, which stay full behind them
            // (in the order the fold collected them, the queue's pages were half empty).
            writes.sort_by(|a, b| a.key().cmp(b.key()));
            let mut map = self.inner.memory[index].1.write();
            for write in writes {
                map.apply(write);
            }
        }
    }

    /// Every key and value of every part, by part name, for comparing two stores.
    pub fn dump(&self) -> Result<Dump, ProjectionError> {
        let mut out = BTreeMap::new();
        for (name, tree) in TREE_NAMES.iter().zip(self.trees().all()) {
            let mut entries = BTreeMap::new();
            for item in tree.iter() {
                let (k, v) = item?;
                entries.insert(k.to_vec(), v.to_vec());
            }
            out.insert(name.to_string(), entries);
        }
        if let Some(views) = &self.inner.views {
            // The views the memory backend folds from the log, as sled would store them.
            let checkpoint = self.checkpoint()?;
            let mut entries = BTreeMap::new();
            for item in self.trees().tracking.iter() {
                let (_, value) = item?;
                let id = keys::read_request(&value)
                    .ok_or_else(|| corrupt("tracking entry", keys::hex(&value)))?;
                if let Some(view) = self.view_from_log(views, &id, &id.stream_name(), checkpoint)? {
                    entries.insert(
                        keys::request(&id).to_vec(),
                        serde_json::to_vec(&view).map_err(|e| corrupt("request view", e))?,
                    );
                }
            }
            out.insert(TREE_REQUESTS.to_string(), entries);
        }
        Ok(out)
    }
}

/// The queue key and item of a view, when the request is open.
pub(crate) fn queue_entry(view: &RequestView) -> Option<(Vec<u8>, QueueItem)> {
    let r = view.state.request()?;
    if !OPEN_STATUSES.contains(&r.status) {
        return None;
    }
    let deadline = match r.status {
        Status::Submitted => r.intake_deadline,
        Status::Accepted | Status::Reviewed | Status::Approved | Status::InFulfilment => {
            r.deadlines.as_ref().and_then(|d| d.promised)
        }
        _ => None,
    };
    let key = keys::queue(&keys::site(&r.site), deadline, &r.id);
    Some((
        key,
        QueueItem {
            request_id: r.id,
            tracking_code: r.tracking_code.clone(),
            site: r.site.clone(),
            category: r.category,
            service_code: r.service_code.clone(),
            status: r.status,
            assignee: r.assignee.clone(),
            deadline,
            submitted_at: r.submitted_at,
            warning: r.supervision.warning_at.is_some(),
            yellow_card: r.supervision.yellow_card_at.is_some(),
            red_card: r.supervision.red_card_at.is_some(),
            overdue: false,
        },
    ))
}

fn actor_of(event: &Event) -> Option<ActorId> {
    match event {
        Event::RequestSubmitted { submitted_by, .. } => Some(submitted_by.clone()),
        Event::RequestAccepted { by, .. } => by.clone(),
        Event::RequestClaimed { by, .. }
        | Event::RequestReassigned { by, .. }
        | Event::RequestRefused { by, .. }
        | Event::InfoRequested { by, .. }
        | Event::InfoProvided { by, .. }
        | Event::RequestReviewed { by, .. }
        | Event::RequestApproved { by, .. }
        | Event::RequestDenied { by, .. }
        | Event::FulfilmentStarted { by, .. }
        | Event::StepCompleted { by, .. }
        | Event::NoteAdded { by, .. }
        | Event::ExtensionRequested { by, .. }
        | Event::ExtensionApproved { by, .. }
        | Event::ExtensionRejected { by, .. }
        | Event::RequestRated { by, .. }
        | Event::RemediationResolved { by, .. }
        | Event::RatingAppealed { by, .. }
        | Event::AppealDecided { by, .. }
        | Event::RequestWithdrawn { by, .. }
        | Event::RequestClosed { by, .. } => Some(by.clone()),
        Event::RequestFulfilled { .. }
        | Event::RemediationOpened { .. }
        | Event::WarningRaised { .. }
        | Event::YellowCardIssued { .. }
        | Event::RedCardIssued { .. } => None,
    }
}

/// Internal notes and rating appeals are for staff only.
fn is_internal(event: &Event) -> bool {
    match event {
        Event::NoteAdded { internal, .. } => *internal,
        Event::RatingAppealed { .. } | Event::AppealDecided { .. } => true,
        _ => false,
    }
}

/// The words an event carries, by name, for timelines.
fn details_of(event: &Event) -> BTreeMap<String, String> {
    let mut details = BTreeMap::new();
    let mut put = |name: &str, value: Option<&String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            details.insert(name.to_string(), value.clone());
        }
    };
    match event {
        Event::RequestSubmitted { materials, .. } | Event::InfoProvided { materials, .. }
            if !materials.is_empty() =>
        {
            let codes = materials.keys().cloned().collect::<Vec<_>>().join(",");
            put("materials", Some(&codes));
            if let Event::InfoProvided { note, .. } = event {
                put("note", note.as_ref());
            }
        }
        Event::InfoProvided { note, .. } => put("note", note.as_ref()),
        Event::RequestAccepted { comment, .. } => put("comment", comment.as_ref()),
        Event::RequestRefused {
            reason,
            legal_basis,
            ..
        }
        | Event::RequestDenied {
            reason,
            legal_basis,
            ..
        } => {
            put("reason", Some(reason));
            put("legal_basis", legal_basis.as_ref());
        }
        Event::InfoRequested { message, .. } => put("message", message.as_ref()),
        Event::RequestReviewed { opinion, .. } => put("opinion", Some(opinion)),
        Event::RequestApproved { level, comment, .. } => {
            put("level", Some(&level.to_string()));
            put("comment", comment.as_ref());
        }
        Event::FulfilmentStarted { note, .. } => put("note", note.as_ref()),
        Event::StepCompleted { step, note, .. } => {
            put("step", Some(step));
            put("note", note.as_ref());
        }
        Event::NoteAdded { text, .. } => put("text", Some(text)),
        Event::ExtensionRequested { reason, .. } | Event::RatingAppealed { reason, .. } => {
            put("reason", Some(reason))
        }
        Event::RequestWithdrawn { reason, .. } => put("reason", reason.as_ref()),
        _ => {}
    }
    details
}

/// A short English summary with no free text, answers or contact data in it.
fn summary_of(event: &Event, not_applicable: bool) -> String {
    let text = match event {
        Event::RequestSubmitted {
            service_code,
            site,
            on_behalf_of,
            ..
        } => {
            if on_behalf_of.is_some() {
                format!(
                    "submitted {service_code} at {site} by kiosk staff on the resident's behalf"
                )
            } else {
                format!("submitted {service_code} at {site}")
            }
        }
        Event::RequestClaimed { .. } => "claimed".to_string(),
        Event::RequestReassigned { to, .. } => format!("reassigned to {to}"),
        Event::RequestAccepted {
            deemed: true,
            promised_deadline,
            ..
        } => {
            format!("deemed accepted (no intake decision in 5 working days); promised by {promised_deadline}")
        }
        Event::RequestAccepted {
            promised_deadline, ..
        } => format!("accepted; promised by {promised_deadline}"),
        Event::RequestRefused { .. } => "refused".to_string(),
        Event::InfoRequested { missing, .. } => format!(
            "materials requested ({} item(s)); clock stopped",
            missing.len()
        ),
        Event::InfoProvided { .. } => "materials provided; clock restarted".to_string(),
        Event::RequestReviewed { .. } => "reviewed".to_string(),
        Event::RequestApproved { level, .. } => format!("approved at level {level}"),
        Event::RequestDenied { .. } => "denied".to_string(),
        Event::FulfilmentStarted { .. } => "fulfilment started".to_string(),
        Event::StepCompleted { step, .. } => format!("step {step} completed"),
        Event::RequestFulfilled { .. } => "fulfilled".to_string(),
        Event::NoteAdded { .. } => "note added".to_string(),
        Event::ExtensionRequested { days, .. } => {
            format!("extension of {days} working day(s) requested")
        }
        Event::ExtensionApproved { days, .. } => {
            format!("extension of {days} working day(s) approved")
        }
        Event::ExtensionRejected { .. } => "extension rejected".to_string(),
        Event::RequestRated { grade, .. } => format!("rated {}", grade.name_zh()),
        Event::RemediationOpened { due, .. } => format!("remediation opened, due {due}"),
        Event::RemediationResolved { .. } => "remediation resolved".to_string(),
        Event::RatingAppealed { .. } => "rating appealed".to_string(),
        Event::AppealDecided { uphold: true, .. } => "appeal decided: rating upheld".to_string(),
        Event::AppealDecided { uphold: false, .. } => "appeal decided: rating removed".to_string(),
        Event::RequestWithdrawn { .. } => "withdrawn".to_string(),
        Event::RequestClosed { .. } => "closed".to_string(),
        Event::WarningRaised { .. } => "warning raised (80% of the promised time used)".to_string(),
        Event::YellowCardIssued { .. } => {
            "yellow card issued (promised deadline passed)".to_string()
        }
        Event::RedCardIssued { .. } => {
            "red card issued (5 working days past the promised deadline)".to_string()
        }
    };
    if not_applicable {
        format!("{text} (did not apply; ignored)")
    } else {
        text
    }
}
