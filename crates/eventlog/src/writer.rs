//! The single writer thread: group commit. It drains all queued appends, checks expected
//! versions and event-id duplicates against its in-memory state, encodes every accepted
//! event into one buffer, writes it with one call and syncs it with one `fdatasync`, and
//! only then answers the callers and hands the new entries to the indexer.
//!
//! A failed write or sync is not forever. After one, the writer refuses the group and
//! remembers it; the next append first cuts the segment back to the end of the last
//! group whose sync succeeded (`write_offset`): it truncates the file there and extends
//! it again to its length (the cut part reads as zeros, the end of the log), syncs that,
//! and only then writes the new group from that offset and syncs it. So nothing written
//! after a failed sync is trusted: after a failed `fsync` Linux may hold pages marked
//! clean that never reached the disk (the PostgreSQL "fsyncgate" case), and a later
//! sync would not write them again, so every byte after the last durable offset is
//! written again and synced before anything is acknowledged.

use crate::codec::{encode_frame, frame_len, FrameFields, MAX_WRITE_BYTES};
use crate::error::{AppendError, LogError};
use crate::event_ids::EventIds;
use crate::index::{encode_location, SPARSE_STRIDE};
use crate::segment::{Segment, SEGMENT_HEADER_LEN};
use crate::shared::Shared;
use crate::types::{AppendResult, ExpectedVersion, NewEvent};
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub(crate) type Reply = oneshot::Sender<Result<AppendResult, AppendError>>;

pub(crate) enum Command {
    Append {
        stream: String,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        reply: Reply,
    },
    Close {
        done: oneshot::Sender<()>,
    },
    /// The position of a committed event id (the writer holds every one in memory).
    Lookup {
        event_id: Uuid,
        reply: oneshot::Sender<Result<Option<u64>, LogError>>,
    },
}

pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    /// Every committed event id's fingerprint and position.
    pub ids: EventIds,
    pub segment: Arc<Segment>,
    /// Where the next frame goes in the active segment: the end of the last group whose
    /// sync succeeded.
    pub write_offset: u64,
    /// How far writes since the last successful sync may have reached; beyond
    /// `write_offset` only after a failed write or sync.
    pub dirty_end: u64,
    /// Why the last write failed; while set, the next append first cuts the segment back
    /// to `write_offset` (see the module comment).
    pub failure: Option<String>,
    /// The next segment file, being zero-filled in the background so a rollover only has
    /// to write a header and rename it.
    pub prepared: Option<std::thread::JoinHandle<Result<std::fs::File, LogError>>>,
}

/// An event accepted into the current group but not yet durable.
struct PendingId {
    position: u64,
    version: u64,
    index: u32,
    remaining: u32,
    stream: Arc<str>,
}

/// What the writer owes a caller once the group is durable.
enum Outcome {
    Written(AppendResult),
    Failed(AppendError),
}

#[derive(Default)]
struct Group {
    buf: Vec<u8>,
    versions: HashMap<Arc<str>, u64>,
    ids: HashMap<Uuid, PendingId>,
    sparse: Vec<u64>,
    /// (stream, version, position) of each accepted event, in order.
    entries: Vec<(Arc<str>, u64, u64)>,
    replies: Vec<(Reply, Outcome)>,
}

/// The refusal of an append some of whose events are stored (`stored`: where each is).
fn partially_duplicate(stream: &str, events: &[NewEvent], stored: &[Option<u64>]) -> AppendError {
    AppendError::PartiallyDuplicate {
        stream: stream.to_string(),
        already_stored: events
            .iter()
            .zip(stored)
            .filter(|(_, position)| position.is_some())
            .map(|(event, _)| event.event_id)
            .collect(),
    }
}

/// Answers every caller of a group that was not written: a wrong expected version keeps
/// its own error, the rest get the write's failure.
fn refuse(group: Group, message: &str) {
    for (reply, outcome) in group.replies {
        let _ = reply.send(Err(match outcome {
            Outcome::Failed(error @ AppendError::WrongExpectedVersion { .. }) => error,
            _ => AppendError::Io(message.to_string()),
        }));
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

impl Writer {
    pub fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        self.prepare_next();
        let mut commands = Vec::new();
        let mut close_waiters = Vec::new();
        'outer: while let Some(first) = rx.blocking_recv() {
            commands.push(first);
            let mut bytes = 0usize;
            while bytes < self.shared.options.max_commit_bytes {
                match rx.try_recv() {
                    Ok(command) => {
                        if let Command::Append { events, .. } = &command {
                            bytes += events.iter().map(|e| e.payload.len() + 100).sum::<usize>();
                        }
                        commands.push(command);
                    }
                    Err(_) => break,
                }
            }
            let appends = commands
                .iter()
                .any(|command| matches!(command, Command::Append { .. }));
            if appends && self.failure.is_some() {
                match self.cut_back() {
                    Ok(()) => {
                        tracing::info!(
                            "the event log writer cut back its failed write; writing again"
                        );
                        self.failure = None;
                    }
                    Err(e) => self.fail(&e.to_string()),
                }
            }
            let mut group = Group::default();
            let mut head = self.shared.head();
            let recorded_at = now_micros();
            for command in commands.drain(..) {
                match command {
                    Command::Close { done } => {
                        close_waiters.push(done);
                    }
                    Command::Lookup { event_id, reply } => {
                        let _ = reply.send(self.committed(&event_id));
                    }
                    Command::Append { reply, .. } if !close_waiters.is_empty() => {
                        let _ = reply.send(Err(AppendError::Closed));
                    }
                    Command::Append { reply, .. } if self.failure.is_some() => {
                        let _ = reply.send(Err(AppendError::Io(
                            self.failure.clone().unwrap_or_default(),
                        )));
                    }
                    Command::Append {
                        stream,
                        expected,
                        events,
                        reply,
                    } => {
                        let outcome = match self.accept(
                            &mut group,
                            &mut head,
                            recorded_at,
                            &stream,
                            expected,
                            &events,
                        ) {
                            Ok(result) => Outcome::Written(result),
                            Err(error) => Outcome::Failed(error),
                        };
                        group.replies.push((reply, outcome));
                    }
                }
            }
            if self.failure.is_none() {
                match self.flush(&mut group.buf) {
                    Ok(()) if !group.entries.is_empty() => self.shared.write_health.succeeded(),
                    Ok(()) => {}
                    Err(e) => self.fail(&e.to_string()),
                }
            }
            match self.failure.clone() {
                Some(message) => refuse(group, &message),
                None => self.publish(group, head),
            }
            if !close_waiters.is_empty() {
                break 'outer;
            }
        }
        rx.close();
        while let Ok(command) = rx.try_recv() {
            match command {
                Command::Append { reply, .. } => {
                    let _ = reply.send(Err(AppendError::Closed));
                }
                Command::Close { done } => close_waiters.push(done),
                Command::Lookup { event_id, reply } => {
                    let _ = reply.send(self.committed(&event_id));
                }
            }
        }
        if let Some(thread) = self.prepared.take() {
            let _ = thread.join();
        }
        self.shared.closed.store(true, Ordering::Release);
        self.shared.head_tx.send_modify(|_| {});
        for done in close_waiters {
            let _ = done.send(());
        }
    }

    /// Checks one append against committed and pending state and encodes it into the group.
    fn accept(
        &mut self,
        group: &mut Group,
        head: &mut u64,
        recorded_at: i64,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendError> {
        // The common case, no id stored yet, allocates nothing; a re-sent append looks
        // each of its ids up once.
        let mut any_stored = false;
        for event in events {
            if self.stored_position(group, &event.event_id)?.is_some() {
                any_stored = true;
                break;
            }
        }
        if any_stored {
            let stored = events
                .iter()
                .map(|event| self.stored_position(group, &event.event_id))
                .collect::<Result<Vec<_>, _>>()?;
            return match stored.iter().copied().collect::<Option<Vec<u64>>>() {
                Some(positions) => self.original_result(group, stream, events, &positions),
                None => Err(partially_duplicate(stream, events, &stored)),
            };
        }
        let current = match group.versions.get(stream) {
            Some(v) => Some(*v),
            None => self.shared.stream_version(stream),
        };
        let matches = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current.is_none(),
            ExpectedVersion::StreamExists => current.is_some(),
            ExpectedVersion::Exact(n) => current == Some(n),
        };
        if !matches {
            return Err(AppendError::WrongExpectedVersion {
                stream: stream.to_string(),
                expected,
                actual: current,
            });
        }
        let size: usize = events
            .iter()
            .map(|e| frame_len(stream, &e.event_type, &e.metadata, e.payload.len()))
            .sum();
        let end = self.write_offset + group.buf.len() as u64;
        if end + size as u64 > self.shared.options.segment_size && end > SEGMENT_HEADER_LEN {
            // The events accepted so far go into the full segment and are acknowledged
            // on their own, so a failed roll refuses only what comes after them.
            let mut full = std::mem::take(group);
            if let Err(e) = self.flush(&mut full.buf) {
                let message = e.to_string();
                self.fail(&message);
                refuse(full, &message);
                return Err(AppendError::Io(message));
            }
            if !full.entries.is_empty() {
                self.shared.write_health.succeeded();
            }
            self.publish(full, *head);
            if let Err(e) = self.roll(*head) {
                let message = e.to_string();
                self.fail(&message);
                return Err(AppendError::Io(message));
            }
        } else if (group.buf.len() + size) as u64 > MAX_WRITE_BYTES {
            // Recovery bounds an unfinished write by this size (ADR 007): a larger group
            // goes to disk as several synced writes.
            if let Err(e) = self.flush(&mut group.buf) {
                let message = e.to_string();
                self.fail(&message);
                return Err(AppendError::Io(message));
            }
        }
        // The frames of one write carry the offset where it starts, which recovery uses
        // to tell the last, possibly unfinished, write from durable ones (ADR 007).
        let write_start = self.write_offset;
        let stream_arc: Arc<str> = Arc::from(stream);
        let first_version = current.map_or(0, |v| v + 1);
        let first_position = *head;
        let count = events.len() as u64;
        for (i, event) in events.iter().enumerate() {
            let position = first_position + i as u64;
            let version = first_version + i as u64;
            let offset = self.write_offset + group.buf.len() as u64;
            encode_frame(
                &mut group.buf,
                &FrameFields {
                    position,
                    stream_version: version,
                    recorded_at_micros: recorded_at,
                    event_id: event.event_id,
                    schema_version: event.schema_version,
                    index_in_append: i as u32,
                    remaining_in_append: (count - 1 - i as u64) as u32,
                    correlation_id: event.metadata.correlation_id,
                    causation_id: event.metadata.causation_id,
                    write_start: Some(write_start),
                    stream_id: stream,
                    event_type: &event.event_type,
                    actor: &event.metadata.actor,
                    payload: &event.payload,
                },
            );
            let location = position
                .is_multiple_of(SPARSE_STRIDE)
                .then(|| encode_location(self.segment.index, offset));
            if let Some(location) = location {
                group.sparse.push(location);
            }
            group.ids.insert(
                event.event_id,
                PendingId {
                    position,
                    version,
                    index: i as u32,
                    remaining: (count - 1 - i as u64) as u32,
                    stream: stream_arc.clone(),
                },
            );
            group.entries.push((stream_arc.clone(), version, position));
        }
        *head += count;
        let last_version = first_version + count - 1;
        group.versions.insert(stream_arc, last_version);
        Ok(AppendResult {
            first_position,
            last_position: first_position + count - 1,
            stream_version: last_version,
        })
    }

    /// Where an id is stored: pending in this group, or committed (the events stored
    /// under its fingerprint are read to find the one that is really it).
    fn stored_position(&self, group: &Group, id: &Uuid) -> Result<Option<u64>, AppendError> {
        match group.ids.get(id) {
            Some(pending) => Ok(Some(pending.position)),
            None => self
                .committed(id)
                .map_err(|e| AppendError::Io(format!("reading a stored event id failed: {e}"))),
        }
    }

    /// The position of a committed event id.
    fn committed(&self, id: &Uuid) -> Result<Option<u64>, LogError> {
        for position in self.ids.candidates(id) {
            if self.shared.read_frame(position)?.event.event_id == *id {
                return Ok(Some(position));
            }
        }
        Ok(None)
    }

    /// The result of the earlier append these events came from, if they are exactly one
    /// earlier append to this stream (the idempotent-retry case).
    /// `positions` are where each of the events is stored.
    fn original_result(
        &self,
        group: &Group,
        stream: &str,
        events: &[NewEvent],
        positions: &[u64],
    ) -> Result<AppendResult, AppendError> {
        let first = positions[0];
        let last = *positions.last().expect("an append has events");
        let in_order = positions
            .iter()
            .enumerate()
            .all(|(i, p)| *p == first + i as u64);
        // The first and last frames say which stream they belong to and how many events of
        // their append precede and follow them, which pins down the boundaries of the original append.
        let describe =
            |id: &Uuid, position: u64| -> Result<(Arc<str>, u64, u32, u32), AppendError> {
                match group.ids.get(id) {
                    Some(p) => Ok((p.stream.clone(), p.version, p.index, p.remaining)),
                    None => match self.shared.read_frame(position) {
                        Ok(frame) => Ok((
                            Arc::from(frame.event.stream_id.as_str()),
                            frame.event.stream_version,
                            frame.index_in_append,
                            frame.remaining_in_append,
                        )),
                        Err(e) => Err(AppendError::Io(format!(
                            "reading the original append failed: {e}"
                        ))),
                    },
                }
            };
        let (first_stream, _, first_index, _) = describe(&events[0].event_id, first)?;
        let (last_stream, last_version, _, last_remaining) =
            describe(&events.last().expect("an append has events").event_id, last)?;
        let whole_append = first_index == 0 && last_remaining == 0;
        if in_order && whole_append && &*first_stream == stream && &*last_stream == stream {
            Ok(AppendResult {
                first_position: first,
                last_position: last,
                stream_version: last_version,
            })
        } else {
            let stored: Vec<Option<u64>> = positions.iter().copied().map(Some).collect();
            Err(partially_duplicate(stream, events, &stored))
        }
    }

    /// Remembers a failed write: appends are refused until the next one cuts back.
    fn fail(&mut self, message: &str) {
        tracing::error!(error = %message, "the event log writer failed; appends are refused until a write succeeds again");
        self.shared.write_health.failed(message);
        self.failure = Some(message.to_string());
    }

    /// Cuts whatever was written after the last successful sync off the active segment
    /// and syncs the cut, so the next group is written and synced from `write_offset`
    /// onto a file that holds nothing after it. Truncating needs no free space; the
    /// length is restored as a hole, which reads as zeros (the end of the log).
    fn cut_back(&mut self) -> Result<(), LogError> {
        if self.dirty_end > self.write_offset {
            let path = &self.segment.path;
            let file = &self.segment.file;
            let len = file
                .metadata()
                .map_err(|e| LogError::io(path.display(), e))?
                .len();
            file.set_len(self.write_offset)
                .and_then(|()| {
                    if len > self.write_offset {
                        file.set_len(len)
                    } else {
                        Ok(())
                    }
                })
                .and_then(|()| file.sync_all())
                .map_err(|e| LogError::io(path.display(), e))?;
            self.dirty_end = self.write_offset;
        }
        Ok(())
    }

    fn flush(&mut self, buf: &mut Vec<u8>) -> Result<(), LogError> {
        if buf.is_empty() {
            return Ok(());
        }
        self.dirty_end = self.dirty_end.max(self.write_offset + buf.len() as u64);
        let path = &self.segment.path;
        self.segment
            .file
            .write_all_at(buf, self.write_offset)
            .map_err(|e| LogError::io(path.display(), e))?;
        self.segment
            .file
            .sync_data()
            .map_err(|e| LogError::io(path.display(), e))?;
        self.write_offset += buf.len() as u64;
        self.dirty_end = self.write_offset;
        buf.clear();
        Ok(())
    }

    fn roll(&mut self, first_position: u64) -> Result<(), LogError> {
        let dir = &self.shared.segment_dir;
        let index = self.segment.index + 1;
        let prepared = match self.prepared.take().map(|thread| thread.join()) {
            Some(Ok(Ok(file))) => file,
            Some(Ok(Err(e))) => {
                tracing::warn!(error = %e, "preparing the next segment failed; trying again");
                crate::segment::prepare_segment_file(dir, index, self.preallocate_to())?
            }
            _ => crate::segment::prepare_segment_file(dir, index, self.preallocate_to())?,
        };
        let segment = Arc::new(crate::segment::finish_segment(
            dir,
            index,
            prepared,
            first_position,
        )?);
        self.shared
            .segments
            .write()
            .expect("segment list lock poisoned")
            .push(segment.clone());
        self.segment = segment;
        self.write_offset = SEGMENT_HEADER_LEN;
        self.dirty_end = SEGMENT_HEADER_LEN;
        self.prepare_next();
        Ok(())
    }

    fn preallocate_to(&self) -> u64 {
        let options = &self.shared.options;
        if options.preallocate {
            options.segment_size
        } else {
            SEGMENT_HEADER_LEN
        }
    }

    /// Starts zero-filling the segment after the active one in the background.
    pub fn prepare_next(&mut self) {
        let dir = self.shared.segment_dir.clone();
        let index = self.segment.index + 1;
        let size = self.preallocate_to();
        self.prepared = std::thread::Builder::new()
            .name("anju-eventlog-prepare".into())
            .spawn(move || crate::segment::prepare_segment_file(&dir, index, size))
            .ok();
    }

    /// Makes a durable group visible: in-memory state, then the head, then the callers.
    fn publish(&mut self, group: Group, head: u64) {
        if !group.entries.is_empty() {
            let mut streams = self
                .shared
                .streams
                .write()
                .expect("stream index lock poisoned");
            for (stream, version, position) in &group.entries {
                streams.push(stream, *version, *position);
            }
        }
        if !group.sparse.is_empty() {
            self.shared
                .sparse
                .write()
                .expect("sparse index lock poisoned")
                .extend(group.sparse);
        }
        for (id, pending) in group.ids {
            self.ids.insert(&id, pending.position);
        }
        self.shared.head.store(head, Ordering::Release);
        self.shared.head_tx.send_replace(head);
        for (reply, outcome) in group.replies {
            let _ = reply.send(match outcome {
                Outcome::Written(result) => Ok(result),
                Outcome::Failed(error) => Err(error),
            });
        }
    }
}
