//! CaseworkerService handlers: the caseworkers' side: queue, request detail and every decision on a request.
//!
//! Temporary shell: each method checks the caller's role, then answers UNIMPLEMENTED
//! until the service issue wires in the domain and the event log. Fill a method by
//! replacing its `not_yet` with the real work; keep the role check first.

use anju_proto::v1::caseworker_service_server::CaseworkerService;
use anju_proto::v1::*;
use tonic::{Request, Response, Status};

use super::{not_yet, ResponseStream, CASEWORKER_ROLES, SUPERVISOR_ROLES};
use crate::authn::require_role;
use crate::state::AppState;

/// Serves `anju.v1.CaseworkerService`; holds the shared [`AppState`].
#[derive(Debug, Clone)]
pub struct CaseworkerHandler {
    pub state: AppState,
}

impl CaseworkerHandler {
    pub fn new(state: AppState) -> CaseworkerHandler {
        CaseworkerHandler { state }
    }
}

#[tonic::async_trait]
impl CaseworkerService for CaseworkerHandler {
    async fn list_queue(
        &self,
        request: Request<ListQueueRequest>,
    ) -> Result<Response<ListQueueResponse>, Status> {
        require_role(&request, CASEWORKER_ROLES)?;
        not_yet("CaseworkerService.ListQueue")
    }

    async fn get_request(
        &self,
        request: Request<GetRequestRequest>,
    ) -> Result<Response<GetRequestResponse>, Status> {
        require_role(&request, CASEWORKER_ROLES)?;
        not_yet("CaseworkerService.GetRequest")
    }

    async fn claim_request(
        &self,
        request: Request<ClaimRequestRequest>,
    ) -> Result<Response<ClaimRequestResponse>, Status> {
        require_role(&request, CASEWORKER_ROLES)?;
        not_yet("CaseworkerService.ClaimRequest")
    }

    async fn accept_request(
        &self,
        request: Request<AcceptRequestRequest>,
    ) -> Result<Response<AcceptRequestResponse>, Status> {
        require_role(&request, CASEWORKER_ROLES)?;
        not_yet("CaseworkerService.AcceptRequest")
    }

    async fn refuse_request(
        &self,
        request: Request<RefuseRequestRequest>,
    ) -> Result<Response<RefuseRequestResponse>, Status> {
        require_role(&request, CASEWORKER_ROLES)?;
        not_yet("CaseworkerService.RefuseRequest")
    }

    async fn request_info(
        &self,
        request: Request<RequestInfoRequest>,
    ) -> Result<Response<RequestInfoResponse>, Status> {
        require_role(&request, CASEWORKER_ROLES)?;
        not_yet("CaseworkerService.RequestInfo")
    }

    async fn approve_request(
        &self,
        request: Request<ApproveRequestRequest>,
    ) -> Result<Response<ApproveRequestResponse>, Status> {
        require_role(&request, CASEWORKER_ROLES)?;
        not_yet("CaseworkerService.ApproveRequest")
    }

    async fn deny_request(
        &self,
        request: Request<DenyRequestRequest>,
    ) -> Result<Response<DenyRequestResponse>, Status> {
        require_role(&request, CASEWORKER_ROLES)?;
        not_yet("CaseworkerService.DenyRequest")
    }

    async fn start_fulfilment(
        &self,
        request: Request<StartFulfilmentRequest>,
    ) -> Result<Response<StartFulfilmentResponse>, Status> {
        require_role(&request, CASEWORKER_ROLES)?;
        not_yet("CaseworkerService.StartFulfilment")
    }

    async fn complete_fulfilment_step(
        &self,
        request: Request<CompleteFulfilmentStepRequest>,
    ) -> Result<Response<CompleteFulfilmentStepResponse>, Status> {
        require_role(&request, CASEWORKER_ROLES)?;
        not_yet("CaseworkerService.CompleteFulfilmentStep")
    }

    async fn add_note(
        &self,
        request: Request<AddNoteRequest>,
    ) -> Result<Response<AddNoteResponse>, Status> {
        require_role(&request, CASEWORKER_ROLES)?;
        not_yet("CaseworkerService.AddNote")
    }

    async fn reassign_request(
        &self,
        request: Request<ReassignRequestRequest>,
    ) -> Result<Response<ReassignRequestResponse>, Status> {
        require_role(&request, SUPERVISOR_ROLES)?;
        not_yet("CaseworkerService.ReassignRequest")
    }

    async fn request_extension(
        &self,
        request: Request<RequestExtensionRequest>,
    ) -> Result<Response<RequestExtensionResponse>, Status> {
        require_role(&request, CASEWORKER_ROLES)?;
        not_yet("CaseworkerService.RequestExtension")
    }

    async fn decide_extension(
        &self,
        request: Request<DecideExtensionRequest>,
    ) -> Result<Response<DecideExtensionResponse>, Status> {
        require_role(&request, SUPERVISOR_ROLES)?;
        not_yet("CaseworkerService.DecideExtension")
    }

    async fn resolve_remediation(
        &self,
        request: Request<ResolveRemediationRequest>,
    ) -> Result<Response<ResolveRemediationResponse>, Status> {
        require_role(&request, CASEWORKER_ROLES)?;
        not_yet("CaseworkerService.ResolveRemediation")
    }

    async fn appeal_rating(
        &self,
        request: Request<AppealRatingRequest>,
    ) -> Result<Response<AppealRatingResponse>, Status> {
        require_role(&request, CASEWORKER_ROLES)?;
        not_yet("CaseworkerService.AppealRating")
    }

    async fn decide_appeal(
        &self,
        request: Request<DecideAppealRequest>,
    ) -> Result<Response<DecideAppealResponse>, Status> {
        require_role(&request, SUPERVISOR_ROLES)?;
        not_yet("CaseworkerService.DecideAppeal")
    }

    type WatchQueueStream = ResponseStream<WatchQueueResponse>;

    async fn watch_queue(
        &self,
        request: Request<WatchQueueRequest>,
    ) -> Result<Response<Self::WatchQueueStream>, Status> {
        require_role(&request, CASEWORKER_ROLES)?;
        not_yet("CaseworkerService.WatchQueue")
    }
}
