//! ResidentService handlers: the resident's side: catalogue, submission, status, materials, withdrawal, rating.
//!
//! Temporary shell: each method checks the caller's role, then answers UNIMPLEMENTED
//! until the service issue wires in the domain and the event log. Fill a method by
//! replacing its `not_yet` with the real work; keep the role check first.

use anju_proto::v1::resident_service_server::ResidentService;
use anju_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{not_yet, ResponseStream, RESIDENT_ROLES};
use crate::authn::require_role;
use crate::state::AppState;

/// Serves `anju.v1.ResidentService`; holds the shared [`AppState`].
#[derive(Debug, Clone)]
pub struct ResidentHandler {
    pub state: AppState,
}

impl ResidentHandler {
    pub fn new(state: AppState) -> ResidentHandler {
        ResidentHandler { state }
    }
}

#[tonic::async_trait]
impl ResidentService for ResidentHandler {
    async fn list_services(
        &self,
        request: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesResponse>, Status> {
        require_role(&request, RESIDENT_ROLES)?;
        not_yet("ResidentService.ListServices")
    }

    async fn get_service_definition(
        &self,
        request: Request<GetServiceDefinitionRequest>,
    ) -> Result<Response<GetServiceDefinitionResponse>, Status> {
        require_role(&request, RESIDENT_ROLES)?;
        not_yet("ResidentService.GetServiceDefinition")
    }

    async fn submit_request(
        &self,
        request: Request<SubmitRequestRequest>,
    ) -> Result<Response<SubmitRequestResponse>, Status> {
        require_role(&request, RESIDENT_ROLES)?;
        not_yet("ResidentService.SubmitRequest")
    }

    async fn get_request_status(
        &self,
        request: Request<GetRequestStatusRequest>,
    ) -> Result<Response<GetRequestStatusResponse>, Status> {
        require_role(&request, RESIDENT_ROLES)?;
        not_yet("ResidentService.GetRequestStatus")
    }

    type WatchRequestStream = ResponseStream<WatchRequestResponse>;

    async fn watch_request(
        &self,
        request: Request<WatchRequestRequest>,
    ) -> Result<Response<Self::WatchRequestStream>, Status> {
        require_role(&request, RESIDENT_ROLES)?;
        not_yet("ResidentService.WatchRequest")
    }

    async fn provide_info(
        &self,
        request: Request<ProvideInfoRequest>,
    ) -> Result<Response<ProvideInfoResponse>, Status> {
        require_role(&request, RESIDENT_ROLES)?;
        not_yet("ResidentService.ProvideInfo")
    }

    async fn withdraw_request(
        &self,
        request: Request<WithdrawRequestRequest>,
    ) -> Result<Response<WithdrawRequestResponse>, Status> {
        require_role(&request, RESIDENT_ROLES)?;
        not_yet("ResidentService.WithdrawRequest")
    }

    async fn rate_request(
        &self,
        request: Request<RateRequestRequest>,
    ) -> Result<Response<RateRequestResponse>, Status> {
        require_role(&request, RESIDENT_ROLES)?;
        not_yet("ResidentService.RateRequest")
    }
}
