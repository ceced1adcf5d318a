//! EventLogService handlers: read access to the event log for operators and tools.
//!
//! Temporary shell: each method checks the caller's role, then answers UNIMPLEMENTED
//! until the service issue wires in the domain and the event log. Fill a method by
//! replacing its `not_yet` with the real work; keep the role check first.

use anju_proto::v1::event_log_service_server::EventLogService;
use anju_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{not_yet, ResponseStream, EVENTLOG_ROLES, LOG_STATS_ROLES};
use crate::authn::require_role;
use crate::state::AppState;

/// Serves `anju.v1.EventLogService`; holds the shared [`AppState`].
#[derive(Debug, Clone)]
pub struct EventLogHandler {
    pub state: AppState,
}

impl EventLogHandler {
    pub fn new(state: AppState) -> EventLogHandler {
        EventLogHandler { state }
    }
}

#[tonic::async_trait]
impl EventLogService for EventLogHandler {
    async fn read_stream(
        &self,
        request: Request<ReadStreamRequest>,
    ) -> Result<Response<ReadStreamResponse>, Status> {
        require_role(&request, EVENTLOG_ROLES)?;
        not_yet("EventLogService.ReadStream")
    }

    async fn read_all(
        &self,
        request: Request<ReadAllRequest>,
    ) -> Result<Response<ReadAllResponse>, Status> {
        require_role(&request, EVENTLOG_ROLES)?;
        not_yet("EventLogService.ReadAll")
    }

    type SubscribeAllStream = ResponseStream<SubscribeAllResponse>;

    async fn subscribe_all(
        &self,
        request: Request<SubscribeAllRequest>,
    ) -> Result<Response<Self::SubscribeAllStream>, Status> {
        require_role(&request, EVENTLOG_ROLES)?;
        not_yet("EventLogService.SubscribeAll")
    }

    async fn get_log_stats(
        &self,
        request: Request<GetLogStatsRequest>,
    ) -> Result<Response<GetLogStatsResponse>, Status> {
        require_role(&request, LOG_STATS_ROLES)?;
        not_yet("EventLogService.GetLogStats")
    }
}
