//! EventLogService handlers: read access to the event log for operators and tools.
//! Positions and versions are the API's (from 1); see `convert`.

use std::time::Duration;

use anju_eventlog::{Direction, Filter, RecordedEvent};
use anju_proto::v1::event_log_service_server::EventLogService;
use anju_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{caller, spawn_stream, ResponseStream, EVENTLOG_ROLES, LOG_STATS_ROLES};
use crate::convert::{self, api_version};
use crate::error::ApiError;
use crate::state::{call_timeout, AppState};

/// Serves `anju.v1.EventLogService`; holds the shared [`AppState`].
#[derive(Debug, Clone)]
pub struct EventLogHandler {
    pub state: AppState,
}

const DEFAULT_MAX_COUNT: usize = 100;
const MAX_COUNT: usize = 1000;
/// A checkpoint goes out after this many filtered-out events in a row.
const CHECKPOINT_EVERY: u64 = 256;

/// Room left in a page for the response's other fields (positions, version, flag) and
/// gRPC's framing, so a page of events never pushes the message past `max_message_bytes`.
const PAGE_OVERHEAD_BYTES: usize = 64;

/// What one event adds to a response as an element of its `repeated Event events = 1`.
fn encoded_event_len(event: &Event) -> usize {
    let len = prost::Message::encoded_len(event);
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// Collects events into a page no larger than `budget` bytes once encoded: a page
/// always takes its first event (a single event larger than the budget fails at encoding
/// with `OUT_OF_RANGE`, as any oversize message does) and stops before one that would
/// pass the budget.
struct Page {
    events: Vec<Event>,
    bytes: usize,
    budget: usize,
}

impl Page {
    fn new(max_message_bytes: usize) -> Page {
        Page {
            events: Vec::new(),
            bytes: 0,
            budget: max_message_bytes.saturating_sub(PAGE_OVERHEAD_BYTES),
        }
    }

    /// Adds the event if it fits; false (and the event is not added) when it does not.
    fn push(&mut self, event: Event) -> bool {
        let len = encoded_event_len(&event);
        if !self.events.is_empty() && self.bytes + len > self.budget {
            return false;
        }
        self.bytes += len;
        self.events.push(event);
        true
    }
}

fn max_count(asked: u32) -> usize {
    match asked as usize {
        0 => DEFAULT_MAX_COUNT,
        n => n.min(MAX_COUNT),
    }
}

/// An API event filter as a predicate over recorded events.
fn matches(filter: &EventFilter, event: &RecordedEvent) -> bool {
    (filter.stream_prefixes.is_empty()
        || filter
            .stream_prefixes
            .iter()
            .any(|p| event.stream_id.starts_with(p.as_str())))
        && (filter.event_types.is_empty() || filter.event_types.contains(&event.event_type))
}

impl EventLogHandler {
    pub fn new(state: AppState) -> EventLogHandler {
        EventLogHandler { state }
    }

    /// Waits until the log has committed the API position `min_position`.
    async fn wait_committed<T>(
        &self,
        request: &Request<T>,
        min_position: u64,
    ) -> Result<(), ApiError> {
        let Some(position) = convert::log_position(min_position) else {
            return Ok(());
        };
        let log = self.state.application.log();
        let budget = call_timeout(request, self.state.config.request_timeout)
            .saturating_sub(Duration::from_millis(20));
        match tokio::time::timeout(budget, log.wait_for_position(position)).await {
            Ok(result) => result.map(|_| ()).map_err(ApiError::from),
            Err(_) => Err(ApiError::PositionNotReached {
                wanted: min_position,
                reached: log.head_position(),
            }),
        }
    }
}

#[tonic::async_trait]
impl EventLogService for EventLogHandler {
    async fn read_stream(
        &self,
        request: Request<ReadStreamRequest>,
    ) -> Result<Response<ReadStreamResponse>, Status> {
        caller(&request, EVENTLOG_ROLES)?;
        let message = request.get_ref();
        if message.stream_id.trim().is_empty() {
            return Err(ApiError::invalid("stream_id", "stream_id is required").into());
        }
        self.wait_committed(&request, message.min_position).await?;
        let log = self.state.application.log();
        let max = max_count(message.max_count);
        let backwards = match ReadDirection::try_from(message.direction) {
            Ok(direction) => direction == ReadDirection::Backward,
            Err(_) => {
                return Err(ApiError::invalid(
                    "direction",
                    format!(
                        "{} is not a read direction (FORWARD or BACKWARD)",
                        message.direction
                    ),
                )
                .into())
            }
        };
        let (from, direction) = if backwards {
            let from = match message.from_version {
                0 => u64::MAX,
                v => v - 1,
            };
            (from, Direction::Backwards)
        } else {
            (message.from_version.saturating_sub(1), Direction::Forwards)
        };
        let events = log
            .read_stream(&message.stream_id, from, direction, max)
            .await
            .map_err(ApiError::from)?;
        let stream_version = log
            .stream_version(&message.stream_id)
            .map_or(0, api_version);
        let read = events.len();
        let mut page = Page::new(self.state.config.max_message_bytes);
        let mut full = false;
        for event in &events {
            if !page.push(convert::event(event)) {
                full = true;
                break;
            }
        }
        Ok(Response::new(ReadStreamResponse {
            end_of_stream: read < max && !full,
            events: page.events,
            stream_version,
        }))
    }

    async fn read_all(
        &self,
        request: Request<ReadAllRequest>,
    ) -> Result<Response<ReadAllResponse>, Status> {
        caller(&request, EVENTLOG_ROLES)?;
        let message = request.get_ref();
        self.wait_committed(&request, message.min_position).await?;
        let log = self.state.application.log();
        let max = max_count(message.max_count);
        let filter = message.filter.clone().unwrap_or_default();
        let head = log.head_position();
        let mut from = message.from_position.max(1) - 1;
        let mut page = Page::new(self.state.config.max_message_bytes);
        let mut full = false;
        // Read in batches and filter here, so several prefixes work and the scan
        // position is known. `from` moves past an event only once it is in the page (or
        // filtered out), so the next page starts at the first event this one left out.
        while from < head && page.events.len() < max && !full {
            let batch = log
                .read_all(from, Direction::Forwards, &Filter::all(), MAX_COUNT)
                .await
                .map_err(ApiError::from)?;
            if batch.is_empty() {
                break;
            }
            for event in batch {
                if matches(&filter, &event) {
                    if !page.push(convert::event(&event)) {
                        full = true;
                        break;
                    }
                    from = event.position + 1;
                    if page.events.len() == max {
                        break;
                    }
                } else {
                    from = event.position + 1;
                }
            }
        }
        Ok(Response::new(ReadAllResponse {
            events: page.events,
            // The next log position to read is `from`, which is API position from + 1.
            next_position: from + 1,
            head_position: head,
        }))
    }

    type SubscribeAllStream = ResponseStream<SubscribeAllResponse>;

    async fn subscribe_all(
        &self,
        request: Request<SubscribeAllRequest>,
    ) -> Result<Response<Self::SubscribeAllStream>, Status> {
        caller(&request, EVENTLOG_ROLES)?;
        let message = request.into_inner();
        let filter = message.filter.unwrap_or_default();
        let log = self.state.application.log().clone();
        let from = message.from_position.max(1) - 1;
        let stream = spawn_stream(&self.state, move |sender| async move {
            use subscribe_all_response::Message;
            let caught_up_at = log.head_position();
            let mut caught_up = from >= caught_up_at;
            if caught_up {
                let item = SubscribeAllResponse {
                    message: Some(Message::CaughtUp(CaughtUp {
                        head_position: caught_up_at,
                    })),
                };
                if sender.send(Ok(item)).await.is_err() {
                    return;
                }
            }
            let mut subscription = log.subscribe_all(from, Filter::all());
            let mut skipped = 0u64;
            while let Some(next) = subscription.next().await {
                let event = match next {
                    Ok(event) => event,
                    Err(e) => {
                        let _ = sender.send(Err(ApiError::from(e).into())).await;
                        return;
                    }
                };
                let mut out = Vec::new();
                if matches(&filter, &event) {
                    skipped = 0;
                    out.push(Message::Event(convert::event(&event)));
                } else {
                    skipped += 1;
                }
                let reached_head = !caught_up && event.position + 1 >= caught_up_at;
                if (skipped >= CHECKPOINT_EVERY) || (reached_head && skipped > 0) {
                    skipped = 0;
                    out.push(Message::Checkpoint(Checkpoint {
                        position: convert::api_position(event.position),
                    }));
                }
                if reached_head {
                    caught_up = true;
                    out.push(Message::CaughtUp(CaughtUp {
                        head_position: caught_up_at,
                    }));
                }
                for message in out {
                    let item = SubscribeAllResponse {
                        message: Some(message),
                    };
                    if sender.send(Ok(item)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn get_log_stats(
        &self,
        request: Request<GetLogStatsRequest>,
    ) -> Result<Response<GetLogStatsResponse>, Status> {
        let actor = caller(&request, LOG_STATS_ROLES)?;
        // The totals count every site this node serves, so only a token for every site
        // may read them: a manager of one site would learn the others' volumes.
        if actor.sites != anju_domain::Scope::All {
            return Err(ApiError::PermissionDenied(
                "log totals cover every site of this node: they need a token for all sites (\"*\")"
                    .into(),
            )
            .into());
        }
        let message = request.get_ref();
        self.wait_committed(&request, message.min_position).await?;
        let application = &self.state.application;
        let log = application.log();
        let stats = log.stats().await;
        let head = log.head_position();
        let first = log
            .read_all(0, Direction::Forwards, &Filter::all(), 1)
            .await
            .map_err(ApiError::from)?;
        let last = log
            .read_all(u64::MAX, Direction::Backwards, &Filter::all(), 1)
            .await
            .map_err(ApiError::from)?;
        let recorded =
            |events: &[RecordedEvent]| events.first().and_then(|e| convert::event(e).recorded_at);
        let projections = application.projections().position();
        Ok(Response::new(GetLogStatsResponse {
            head_position: head,
            event_count: stats.events,
            stream_count: stats.streams,
            segment_count: stats.segments as u32,
            size_bytes: stats.bytes,
            first_recorded_at: recorded(&first),
            last_recorded_at: recorded(&last),
            readers: vec![ReaderStatus {
                name: "projections".into(),
                position: projections,
                lag: head.saturating_sub(projections),
                connected: true,
            }],
        }))
    }
}
