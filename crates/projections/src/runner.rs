//! `Projections`: the read models plus a checkpointed reader of the local log.
//!
//! One tokio task subscribes to `request-` streams from the stored checkpoint, drains
//! whatever is available (up to `CHUNK` events), decodes each event once and applies the
//! chunk on a blocking thread together with the new checkpoint (one batch). The models
//! live in memory and are saved to a snapshot now and then and on stop.
//! `position()` is then published through a watch channel that `wait_for` listens to.

use crate::model::*;
use crate::read_models::{Input, ReadModels};
use crate::ProjectionError;
use anju_domain::{Calendar, DueTimer, Event, RequestId, Timestamp, TrackingCode};
use anju_eventlog::{EventLog, Filter, RecordedEvent, Subscription};
use futures::FutureExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Most events applied in one sled transaction.
const CHUNK: usize = 512;
const STREAM_PREFIX: &str = "request-";
/// The memory read models' snapshot, in the log's directory.
pub const SNAPSHOT_FILE: &str = "projections.snapshot";

enum Control {
    /// Clear the trees and restart from position 0; answers once cleared.
    Rebuild(oneshot::Sender<Result<(), ProjectionError>>),
    Stop,
}

struct Shared {
    models: ReadModels,
    position: watch::Sender<u64>,
    control: mpsc::Sender<Control>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    log: EventLog,
}

/// The read models kept up to date from the local log. Clones share them.
#[derive(Clone)]
pub struct Projections {
    shared: Arc<Shared>,
}

impl Projections {
    /// Opens the read models in memory from their snapshot (`projections.snapshot` in
    /// the log's directory), clears them if the snapshot is missing, damaged or not of
    /// [`crate::PROJECTION_VERSION`] (the runner then replays from 0), and spawns the
    /// runner on the current tokio runtime. The sled tree of older layouts is dropped.
    pub async fn start(
        log: EventLog,
        calendar: Arc<Calendar>,
    ) -> Result<Projections, ProjectionError> {
        Projections::start_with_snapshot_interval(log, calendar, crate::SNAPSHOT_INTERVAL).await
    }

    /// [`Projections::start`], writing a snapshot every `snapshot_interval` (when
    /// something changed) instead of every [`crate::SNAPSHOT_INTERVAL`].
    pub async fn start_with_snapshot_interval(
        log: EventLog,
        calendar: Arc<Calendar>,
        snapshot_interval: Duration,
    ) -> Result<Projections, ProjectionError> {
        let db = log.index_db().clone();
        let snapshot = log.directory().join(SNAPSHOT_FILE);
        let opened_log = log.clone();
        let models = tokio::task::spawn_blocking(move || -> Result<ReadModels, ProjectionError> {
            for old in ["proj_models"] {
                if db.tree_names().iter().any(|n| n.as_ref() == old.as_bytes()) {
                    db.drop_tree(old)?;
                }
            }
            let models = ReadModels::open_memory(opened_log, calendar, snapshot)?
                .with_snapshot_interval(snapshot_interval);
            models.ensure_version()?;
            Ok(models)
        })
        .await
        .map_err(|e| {
            ProjectionError::Corrupt(format!("opening the read models panicked: {e}"))
        })??;
        let checkpoint = models.checkpoint()?;
        let (position, _) = watch::channel(checkpoint);
        let (control, control_rx) = mpsc::channel(8);
        let shared = Arc::new(Shared {
            models,
            position,
            control,
            task: Mutex::new(None),
            log: log.clone(),
        });
        let runner = Runner {
            models: shared.models.clone(),
            position: shared.position.clone(),
            subscription: log.subscribe_all(checkpoint, Filter::stream_prefix(STREAM_PREFIX)),
            log,
            reached: checkpoint,
            in_flight: None,
        };
        let task = tokio::spawn(runner.run(control_rx));
        *shared.task.lock().map_err(|_| ProjectionError::Stopped)? = Some(task);
        Ok(Projections { shared })
    }

    /// The read models themselves (for queries not wrapped here, dumps and stats).
    pub fn models(&self) -> &ReadModels {
        &self.shared.models
    }

    /// The next log position not yet applied: every event below it is visible to queries.
    pub fn position(&self) -> u64 {
        *self.shared.position.borrow()
    }

    /// Waits until the event at `min_position` is applied (`position() > min_position`),
    /// or `timeout` passes.
    pub async fn wait_for(
        &self,
        min_position: u64,
        timeout: Duration,
    ) -> Result<(), ProjectionError> {
        let mut rx = self.shared.position.subscribe();
        let wait = async {
            loop {
                if *rx.borrow_and_update() > min_position {
                    return Ok(());
                }
                if rx.changed().await.is_err() {
                    return Err(ProjectionError::Stopped);
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(result) => result,
            Err(_) => Err(ProjectionError::NotReached {
                wanted: min_position,
                reached: self.position(),
            }),
        }
    }

    pub fn request(&self, id: &RequestId) -> Result<Option<RequestView>, ProjectionError> {
        self.shared.models.request(id)
    }

    pub fn request_id_by_tracking(
        &self,
        code: &TrackingCode,
    ) -> Result<Option<RequestId>, ProjectionError> {
        self.shared.models.request_id_by_tracking(code)
    }

    /// See [`ReadModels::request_ids_by_identity`].
    pub fn request_ids_by_identity(&self, digest: &str) -> Result<Vec<RequestId>, ProjectionError> {
        self.shared.models.request_ids_by_identity(digest)
    }

    pub fn timeline(&self, id: &RequestId) -> Result<Vec<TimelineEntry>, ProjectionError> {
        self.shared.models.timeline(id)
    }

    pub fn queue(&self, query: &QueueQuery) -> Result<QueuePage, ProjectionError> {
        self.shared.models.queue(query)
    }

    pub fn due_timers(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(RequestId, DueTimer)>, ProjectionError> {
        self.shared.models.due_timers(now, limit)
    }

    pub fn next_timer(&self) -> Result<Option<(RequestId, DueTimer)>, ProjectionError> {
        self.shared.models.next_timer()
    }

    pub fn throughput(
        &self,
        filter: &MetricsFilter,
        bucket: Bucket,
    ) -> Result<Vec<ThroughputBucket>, ProjectionError> {
        self.shared.models.throughput(filter, bucket)
    }

    pub fn lead_times(&self, filter: &MetricsFilter) -> Result<LeadTimes, ProjectionError> {
        self.shared.models.lead_times(filter)
    }

    pub fn sla_report(&self, filter: &MetricsFilter) -> Result<SlaReport, ProjectionError> {
        self.shared.models.sla_report(filter)
    }

    pub fn satisfaction(
        &self,
        filter: &MetricsFilter,
        now: Timestamp,
    ) -> Result<Satisfaction, ProjectionError> {
        self.shared.models.satisfaction(filter, now)
    }

    pub fn backlog(
        &self,
        filter: &MetricsFilter,
        now: Timestamp,
    ) -> Result<Backlog, ProjectionError> {
        self.shared.models.backlog(filter, now)
    }

    /// Clears the trees and replays the log from 0 while running; returns once the replay
    /// has passed the head as it was when called. Queries keep working meanwhile but see
    /// partial data, and `position()` restarts from 0 (so `wait_for` waits for the replay).
    pub async fn rebuild(&self) -> Result<(), ProjectionError> {
        let head = self.shared.log.head_position();
        let (reply, answer) = oneshot::channel();
        self.shared
            .control
            .send(Control::Rebuild(reply))
            .await
            .map_err(|_| ProjectionError::Stopped)?;
        answer.await.map_err(|_| ProjectionError::Stopped)??;
        let mut rx = self.shared.position.subscribe();
        loop {
            if *rx.borrow_and_update() >= head {
                return Ok(());
            }
            rx.changed().await.map_err(|_| ProjectionError::Stopped)?;
        }
    }

    /// Stops the runner after the chunk in progress and writes a snapshot of the read
    /// models, so the next start replays only what comes after.
    pub async fn stop(self) {
        let _ = self.shared.control.send(Control::Stop).await;
        let task = self.shared.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
        let models = self.shared.models.clone();
        match tokio::task::spawn_blocking(move || models.save_snapshot()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "writing the read-model snapshot on stop failed; the next start replays the log")
            }
            Err(e) => {
                tracing::error!(error = %e, "writing the read-model snapshot on stop panicked")
            }
        }
        let db = self.shared.log.index_db().clone();
        let _ = tokio::task::spawn_blocking(move || db.flush()).await;
    }
}

struct Runner {
    models: ReadModels,
    position: watch::Sender<u64>,
    subscription: Subscription,
    log: EventLog,
    /// Every position below this is applied (mirrors `position`).
    reached: u64,
    /// The chunk being applied on a blocking thread while the next one is decoded.
    in_flight: Option<InFlight>,
}

/// A decoded chunk and the apply running for it.
struct InFlight {
    events: Arc<Vec<RecordedEvent>>,
    decoded: Arc<Vec<Option<Event>>>,
    reached: u64,
    handle: tokio::task::JoinHandle<Result<(), ProjectionError>>,
}

/// What draining the subscription without waiting found.
enum Drained {
    /// Nothing more is available now: everything below `next_position()` was delivered.
    Idle,
    /// The chunk is full; more may be available.
    Full,
    /// The log is closed and everything was delivered.
    Ended,
    Failed(anju_eventlog::LogError),
}

impl Runner {
    async fn run(mut self, mut control: mpsc::Receiver<Control>) {
        let mut chunk: Vec<RecordedEvent> = Vec::with_capacity(CHUNK);
        let mut ended = false;
        loop {
            let drained = if ended {
                Drained::Ended
            } else {
                self.drain(&mut chunk)
            };
            if !chunk.is_empty() {
                let mut reached = chunk.last().map_or(self.reached, |e| e.position + 1);
                if matches!(drained, Drained::Idle) {
                    reached = reached.max(self.subscription.next_position());
                }
                let events = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                self.submit(events, reached).await;
            }
            if !matches!(drained, Drained::Full) {
                // Nothing more to decode now: complete what is in flight.
                self.finish().await;
            }
            if matches!(drained, Drained::Idle) && self.reached < self.subscription.next_position()
            {
                // Only other streams (or nothing) since the last chunk.
                let scanned = self.subscription.next_position();
                if scanned > self.reached {
                    if let Err(e) = self.models.set_checkpoint(scanned) {
                        tracing::error!(error = %e, "storing the projection checkpoint failed");
                    }
                    self.advance(scanned);
                }
            }
            match drained {
                Drained::Full => {
                    // Let control messages in between chunks.
                    match control.try_recv() {
                        Ok(Control::Stop) | Err(mpsc::error::TryRecvError::Disconnected) => {
                            self.finish().await;
                            return;
                        }
                        Ok(Control::Rebuild(reply)) => {
                            self.finish().await;
                            self.rebuild(reply, &mut chunk, &mut ended).await
                        }
                        Err(mpsc::error::TryRecvError::Empty) => {}
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
                Drained::Failed(e) => {
                    tracing::error!(error = %e, position = self.reached, "reading the log for projections failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    self.resubscribe(self.reached);
                    continue;
                }
                Drained::Ended => ended = true,
                Drained::Idle => {}
            }
            // Wait for a control message or for the head to move past what the
            // subscription has scanned (which may be events of other streams only: the
            // next drain then moves the position past them).
            let log = self.log.clone();
            let scanned = self.subscription.next_position();
            tokio::select! {
                message = control.recv() => match message {
                    None | Some(Control::Stop) => return,
                    Some(Control::Rebuild(reply)) => self.rebuild(reply, &mut chunk, &mut ended).await,
                },
                head = log.wait_for_position(scanned), if !ended => {
                    if head.is_err() {
                        // Closed: the next drain delivers the rest and reports the end.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
    }

    /// Takes what the subscription has without waiting, up to a full chunk.
    fn drain(&mut self, chunk: &mut Vec<RecordedEvent>) -> Drained {
        while chunk.len() < CHUNK {
            // `Subscription::next` only awaits the head watch, so polling it once and
            // dropping the future loses nothing.
            match self.subscription.next().now_or_never() {
                None => return Drained::Idle,
                Some(None) => return Drained::Ended,
                Some(Some(Err(e))) => return Drained::Failed(e),
                Some(Some(Ok(event))) => chunk.push(event),
            }
        }
        Drained::Full
    }

    fn resubscribe(&mut self, from: u64) {
        self.subscription = self
            .log
            .subscribe_all(from, Filter::stream_prefix(STREAM_PREFIX));
    }

    fn advance(&mut self, reached: u64) {
        self.reached = reached;
        self.position.send_replace(reached);
    }

    async fn rebuild(
        &mut self,
        reply: oneshot::Sender<Result<(), ProjectionError>>,
        chunk: &mut Vec<RecordedEvent>,
        ended: &mut bool,
    ) {
        chunk.clear();
        let models = self.models.clone();
        let result = tokio::task::spawn_blocking(move || models.reset())
            .await
            .unwrap_or_else(|e| {
                Err(ProjectionError::Corrupt(format!(
                    "clearing the read models panicked: {e}"
                )))
            });
        if result.is_ok() {
            tracing::info!("rebuilding the read models from position 0");
            self.advance(0);
            *ended = false;
            self.resubscribe(0);
        }
        let _ = reply.send(result);
    }

    /// Decodes a chunk (while the previous one is still being applied), then waits for
    /// the previous one and starts applying this one.
    async fn submit(&mut self, events: Vec<RecordedEvent>, reached: u64) {
        let events = Arc::new(events);
        let to_decode = events.clone();
        let decoded = match tokio::task::spawn_blocking(move || decode(&to_decode)).await {
            Ok(decoded) => Arc::new(decoded),
            Err(e) => {
                tracing::error!(error = %e, "decoding events panicked; decoding again in place");
                Arc::new(decode(&events))
            }
        };
        self.finish().await;
        let handle = self.spawn_apply(&events, &decoded, reached);
        self.in_flight = Some(InFlight {
            events,
            decoded,
            reached,
            handle,
        });
    }

    fn spawn_apply(
        &self,
        events: &Arc<Vec<RecordedEvent>>,
        decoded: &Arc<Vec<Option<Event>>>,
        reached: u64,
    ) -> tokio::task::JoinHandle<Result<(), ProjectionError>> {
        let (models, events, decoded) = (self.models.clone(), events.clone(), decoded.clone());
        tokio::task::spawn_blocking(move || apply_decoded(&models, &events, &decoded, reached))
    }

    /// Waits for the chunk in flight, retrying it (never skipping) when the store fails,
    /// and publishes the position it reached.
    async fn finish(&mut self) {
        let Some(mut in_flight) = self.in_flight.take() else {
            return;
        };
        loop {
            match (&mut in_flight.handle).await {
                Ok(Ok(())) => {
                    self.advance(in_flight.reached);
                    return;
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, position = self.reached, "applying events to the read models failed; retrying")
                }
                Err(e) => {
                    tracing::error!(error = %e, position = self.reached, "applying events to the read models panicked; retrying")
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            in_flight.handle =
                self.spawn_apply(&in_flight.events, &in_flight.decoded, in_flight.reached);
        }
    }
}

/// Decodes each event of a request stream once; `None` for an event that cannot be
/// read (logged) and, silently, for events of other streams (the audit records of
/// identity look-ups, `$lost`), which the read models pass over.
fn decode(events: &[RecordedEvent]) -> Vec<Option<Event>> {
    events
        .iter()
        .map(|e| {
            crate::request_id_of_stream(&e.stream_id)?;
            decode_one(e)
        })
        .collect()
}

fn decode_one(e: &RecordedEvent) -> Option<Event> {
    match Event::from_json(&e.event_type, e.schema_version, &e.payload) {
        Ok(event) => Some(event),
        Err(error) => {
            // Never the payload, nor a JSON error, which can quote payload values.
            let reason = match &error {
                anju_domain::EventDecodeError::Json(_) => {
                    "the json does not match the event type".to_string()
                }
                other => other.to_string(),
            };
            tracing::error!(position = e.position, event_type = %e.event_type, schema_version = e.schema_version, %reason, "event could not be decoded; skipped");
            None
        }
    }
}

/// Applies a decoded chunk with its checkpoint in one transaction.
fn apply_decoded(
    models: &ReadModels,
    events: &[RecordedEvent],
    decoded: &[Option<Event>],
    checkpoint: u64,
) -> Result<(), ProjectionError> {
    let inputs: Vec<Input<'_>> = events
        .iter()
        .zip(decoded)
        .map(|(e, d)| Input {
            stream_id: &e.stream_id,
            stream_version: e.stream_version,
            position: e.position,
            event_type: &e.event_type,
            event: d.as_ref(),
        })
        .collect();
    models.apply_all(&inputs, Some(checkpoint))?;
    if let Err(e) = models.snapshot_if_due() {
        // The models are fine in memory; a later snapshot (or a replay) makes up for it.
        tracing::error!(error = %e, "writing the read-model snapshot failed");
    }
    Ok(())
}
