//! ManagerService handlers: the managers' reports: throughput, lead times, SLA cards, satisfaction, backlog.
//!
//! Temporary shell: each method checks the caller's role, then answers UNIMPLEMENTED
//! until the service issue wires in the domain and the event log. Fill a method by
//! replacing its `not_yet` with the real work; keep the role check first.

use anju_proto::v1::manager_service_server::ManagerService;
use anju_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{not_yet, MANAGER_ROLES};
use crate::authn::require_role;
use crate::state::AppState;

/// Serves `anju.v1.ManagerService`; holds the shared [`AppState`].
#[derive(Debug, Clone)]
pub struct ManagerHandler {
    pub state: AppState,
}

impl ManagerHandler {
    pub fn new(state: AppState) -> ManagerHandler {
        ManagerHandler { state }
    }
}

#[tonic::async_trait]
impl ManagerService for ManagerHandler {
    async fn get_throughput(
        &self,
        request: Request<GetThroughputRequest>,
    ) -> Result<Response<GetThroughputResponse>, Status> {
        require_role(&request, MANAGER_ROLES)?;
        not_yet("ManagerService.GetThroughput")
    }

    async fn get_lead_times(
        &self,
        request: Request<GetLeadTimesRequest>,
    ) -> Result<Response<GetLeadTimesResponse>, Status> {
        require_role(&request, MANAGER_ROLES)?;
        not_yet("ManagerService.GetLeadTimes")
    }

    async fn get_sla_report(
        &self,
        request: Request<GetSlaReportRequest>,
    ) -> Result<Response<GetSlaReportResponse>, Status> {
        require_role(&request, MANAGER_ROLES)?;
        not_yet("ManagerService.GetSlaReport")
    }

    async fn get_satisfaction(
        &self,
        request: Request<GetSatisfactionRequest>,
    ) -> Result<Response<GetSatisfactionResponse>, Status> {
        require_role(&request, MANAGER_ROLES)?;
        not_yet("ManagerService.GetSatisfaction")
    }

    async fn get_backlog(
        &self,
        request: Request<GetBacklogRequest>,
    ) -> Result<Response<GetBacklogResponse>, Status> {
        require_role(&request, MANAGER_ROLES)?;
        not_yet("ManagerService.GetBacklog")
    }
}
