//! ResidentService handlers: the resident's side: catalogue, submission, status,
//! materials, withdrawal, rating. Residents reach a request only by tracking code and
//! the last four phone digits; every miss is NOT_FOUND, and every call that takes them
//! counts against the per-client look-up limit, so the digits cannot be guessed.

use anju_app::{CommandOptions, ResidentStatus, SubmitInput};
use anju_domain::{Action, Actor, Category, Lookup, Role, ServiceCode, SiteId};
use anju_eventlog::Filter;
use anju_proto::v1::resident_service_server::ResidentService;
use anju_proto::v1::*;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use super::{caller, spawn_stream, ResponseStream, RESIDENT_ROLES};
use crate::convert::{self, api_position};
use crate::error::{ApiError, Violations};
use crate::state::{call_timeout, AppState};

/// Serves `anju.v1.ResidentService`; holds the shared [`AppState`].
#[derive(Debug, Clone)]
pub struct ResidentHandler {
    pub state: AppState,
}

impl ResidentHandler {
    pub fn new(state: AppState) -> ResidentHandler {
        ResidentHandler { state }
    }

    /// Who the status limiter counts: the token subject, else the peer address.
    fn client_key<T>(request: &Request<T>, actor: &Actor) -> String {
        if actor.id.0.is_empty() {
            request
                .remote_addr()
                .map(|addr| format!("peer:{}", addr.ip()))
                .unwrap_or_else(|| "peer:unknown".into())
        } else {
            format!("subject:{}", actor.id)
        }
    }

    /// The resident's view of a request found by tracking code and phone digits. A kiosk
    /// only finds requests of its sites; anything else is NOT_FOUND.
    async fn lookup<T>(
        &self,
        request: &Request<T>,
        actor: &Actor,
        tracking_code: &str,
        phone_last4: &str,
        min_position: u64,
    ) -> Result<ResidentStatus, ApiError> {
        let application = &self.state.application;
        // Writes look up what was just written: wait for the read models to reach the
        // log's head (or at least `min_position`).
        let head = application.log().head_position();
        let wanted = head.max(min_position);
        if wanted > 0 {
            let budget = call_timeout(request, self.state.config.request_timeout);
            application.wait_for(Some(wanted - 1), Some(budget)).await?;
        }
        let status = application
            .resident_status(tracking_code, phone_last4, None)
            .await?;
        if actor.role == Role::Kiosk && !actor.sites.contains(&status.site) {
            return Err(ApiError::NotFound("request".into()));
        }
        Ok(status)
    }

    /// Takes one look-up from the caller's bucket: every call that names a tracking code
    /// and phone digits counts, whatever it answers, so ten thousand guesses at the
    /// digits take days rather than seconds.
    fn count_look_up<T>(&self, request: &Request<T>, actor: &Actor) -> Result<(), ApiError> {
        self.state
            .status_limiter
            .check(&Self::client_key(request, actor))
    }

    /// A write on a request found by tracking code and digits: when a resident or a
    /// kiosk is refused, the refusal reads exactly like wrong digits (NOT_FOUND), or it
    /// would tell a guesser that the digits were right. Admins, who may read every
    /// request anyway, are told why.
    fn hide_refusal(actor: &Actor) -> impl FnOnce(anju_app::AppError) -> ApiError + '_ {
        move |error| match error {
            anju_app::AppError::Forbidden(_) if actor.role != Role::Admin => {
                ApiError::from(anju_app::AppError::NotFound)
            }
            other => ApiError::from(other),
        }
    }

    /// A resident write on the request a look-up found: the look-up goes with the
    /// command, so whoever holds the receipt may act as the applicant (a request made
    /// at a kiosk names a pseudonym no token carries).
    async fn execute_found(
        &self,
        status: &ResidentStatus,
        phone_last4: &str,
        actor: Actor,
        action: Action,
        idempotency_key: &str,
    ) -> Result<anju_app::Executed, ApiError> {
        let options = CommandOptions {
            idempotency_key: (!idempotency_key.is_empty()).then(|| idempotency_key.to_string()),
            lookup: Some(Lookup {
                tracking_code: status.tracking_code.clone(),
                phone_last4: phone_last4.to_string(),
            }),
        };
        let caller = actor.clone();
        self.state
            .application
            .execute_with(status.request_id, actor, action, options)
            .await
            .map_err(Self::hide_refusal(&caller))
    }

    fn status_message(&self, status: &ResidentStatus) -> RequestStatus {
        let application = &self.state.application;
        let name = application
            .catalogue()
            .get(&status.service_code)
            .map(|d| d.name_zh.clone())
            .unwrap_or_default();
        convert::resident_status(status, name, application.now(), application.calendar())
    }

    /// A pseudonymous resident id for a kiosk submission, keyed by the server secret so
    /// it cannot be reversed to the phone number.
    fn kiosk_resident_id(&self, phone: &str) -> String {
        let digits = anju_app::parse_phone("applicant.phone", phone).unwrap_or_default();
        let mut hash = Sha256::new();
        hash.update(self.state.resident_salt.as_slice());
        hash.update(digits.as_bytes());
        let digest = hash.finalize();
        let hex: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
        format!("resident-{hex}")
    }
}

#[tonic::async_trait]
impl ResidentService for ResidentHandler {
    async fn list_services(
        &self,
        request: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesResponse>, Status> {
        let actor = caller(&request, RESIDENT_ROLES)?;
        let message = request.get_ref();
        if !message.site_id.is_empty() && !actor.sites.contains(&SiteId::new(&message.site_id)) {
            return Err(ApiError::PermissionDenied(format!(
                "token does not cover site {:?}",
                message.site_id
            ))
            .into());
        }
        let category = match message.category.trim() {
            "" => None,
            text => Some(
                Category::parse(text)
                    .ok_or_else(|| ApiError::invalid("category", "is not a service category"))?,
            ),
        };
        self.state
            .wait_for_min_position(&request, message.min_position)
            .await?;
        let services = self
            .state
            .application
            .catalogue()
            .services()
            .filter(|d| category.is_none_or(|c| d.category == c))
            .filter(|d| message.site_id.is_empty() || d.offered_at(&message.site_id))
            .map(convert::service_summary)
            .collect();
        Ok(Response::new(ListServicesResponse { services }))
    }

    async fn get_service_definition(
        &self,
        request: Request<GetServiceDefinitionRequest>,
    ) -> Result<Response<GetServiceDefinitionResponse>, Status> {
        caller(&request, RESIDENT_ROLES)?;
        let message = request.get_ref();
        let code = ServiceCode::parse(message.service_code.trim())
            .map_err(|e| ApiError::invalid("service_code", e.to_string()))?;
        self.state
            .wait_for_min_position(&request, message.min_position)
            .await?;
        let definition = self
            .state
            .application
            .catalogue()
            .get(&code)
            .ok_or_else(|| ApiError::NotFound(format!("service {code}")))?;
        Ok(Response::new(GetServiceDefinitionResponse {
            service: Some(convert::service_definition(definition)),
        }))
    }

    async fn submit_request(
        &self,
        request: Request<SubmitRequestRequest>,
    ) -> Result<Response<SubmitRequestResponse>, Status> {
        let actor = caller(&request, RESIDENT_ROLES)?;
        let message = request.into_inner();
        let definition = ServiceCode::parse(message.service_code.trim())
            .ok()
            .and_then(|code| self.state.application.catalogue().get(&code).cloned());
        let answers =
            convert::answers(&message.answers, &message.text_answers, definition.as_ref())?;
        let applicant = message.applicant.unwrap_or_default();
        let on_behalf_of = match (actor.role, &message.on_behalf_of) {
            (Role::Kiosk, _) => Some(self.kiosk_resident_id(&applicant.phone)),
            (_, Some(_)) => {
                return Err(ApiError::invalid(
                    "on_behalf_of",
                    "only kiosk staff submit on a resident's behalf",
                )
                .into())
            }
            _ => None,
        };
        let input = SubmitInput {
            actor: actor.clone(),
            idempotency_key: message.idempotency_key,
            site: message.site_id,
            service_code: message.service_code,
            definition_version: None,
            answers,
            applicant_name: applicant.name,
            phone: applicant.phone,
            id_number: applicant.id_number,
            on_behalf_of,
            materials: convert::materials(&message.materials),
        };
        let submitted = self
            .state
            .application
            .submit(input)
            .await
            .map_err(ApiError::from)?;
        tracing::info!(
            request_id = %submitted.request_id,
            tracking_code = %submitted.tracking_code,
            replayed = !submitted.created,
            "submit answered"
        );
        let application = &self.state.application;
        Ok(Response::new(SubmitRequestResponse {
            position: api_position(submitted.position),
            request_id: submitted.request_id.to_string(),
            tracking_code: submitted.tracking_code.to_string(),
            state: RequestState::Submitted as i32,
            submitted_at: Some(convert::timestamp(submitted.submitted_at)),
            acceptance_deadline: Some(convert::deadline(
                "acceptance",
                submitted.intake_deadline,
                application.now(),
                application.calendar(),
                0,
                SlaStatus::OnTime,
            )),
            replayed: !submitted.created,
        }))
    }

    async fn get_request_status(
        &self,
        request: Request<GetRequestStatusRequest>,
    ) -> Result<Response<GetRequestStatusResponse>, Status> {
        let actor = caller(&request, RESIDENT_ROLES)?;
        self.count_look_up(&request, &actor)?;
        let message = request.get_ref();
        self.state
            .wait_for_min_position(&request, message.min_position)
            .await?;
        let status = self
            .lookup(
                &request,
                &actor,
                &message.tracking_code,
                &message.phone_last4,
                0,
            )
            .await?;
        Ok(Response::new(GetRequestStatusResponse {
            status: Some(self.status_message(&status)),
        }))
    }

    type WatchRequestStream = ResponseStream<WatchRequestResponse>;

    async fn watch_request(
        &self,
        request: Request<WatchRequestRequest>,
    ) -> Result<Response<Self::WatchRequestStream>, Status> {
        let actor = caller(&request, RESIDENT_ROLES)?;
        self.count_look_up(&request, &actor)?;
        let message = request.get_ref().clone();
        let first = self
            .lookup(
                &request,
                &actor,
                &message.tracking_code,
                &message.phone_last4,
                0,
            )
            .await?;
        let handler = self.clone();
        let stream = spawn_stream(&self.state, move |sender| async move {
            let application = handler.state.application.clone();
            let current = api_position(first.position);
            if message.after_position < current {
                let update = WatchRequestResponse {
                    position: current,
                    event_type: first
                        .timeline
                        .last()
                        .map(|e| e.event_type.clone())
                        .unwrap_or_default(),
                    status: Some(handler.status_message(&first)),
                };
                if sender.send(Ok(update)).await.is_err() {
                    return;
                }
            }
            // API position p is log position p - 1, so the next log position is p.
            let from = message.after_position.max(current);
            let stream_id = first.request_id.stream_name();
            let mut subscription = application
                .log()
                .subscribe_all(from, Filter::stream_prefix(stream_id.clone()));
            while let Some(next) = subscription.next().await {
                let recorded = match next {
                    Ok(recorded) if recorded.stream_id == stream_id => recorded,
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = sender.send(Err(ApiError::from(e).into())).await;
                        return;
                    }
                };
                let wait = application
                    .wait_for(Some(recorded.position), None)
                    .await
                    .map_err(ApiError::from);
                let status = match wait {
                    Ok(()) => application
                        .resident_status(&message.tracking_code, &message.phone_last4, None)
                        .await
                        .map_err(ApiError::from),
                    Err(e) => Err(e),
                };
                let item = status.map(|status| WatchRequestResponse {
                    position: api_position(recorded.position),
                    event_type: recorded.event_type.clone(),
                    status: Some(handler.status_message(&status)),
                });
                if sender.send(item.map_err(Status::from)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn provide_info(
        &self,
        request: Request<ProvideInfoRequest>,
    ) -> Result<Response<ProvideInfoResponse>, Status> {
        let actor = caller(&request, RESIDENT_ROLES)?;
        self.count_look_up(&request, &actor)?;
        let message = request.get_ref();
        let mut violations = Violations::new();
        let note = convert::text(&mut violations, "message", &message.message);
        if !message.answers.is_empty() {
            violations.add(
                "answers",
                "answers cannot be changed after submission; describe the correction in message",
            );
        }
        violations.into_result()?;
        let status = self
            .lookup(
                &request,
                &actor,
                &message.tracking_code,
                &message.phone_last4,
                0,
            )
            .await?;
        let action = Action::ProvideInfo {
            note,
            materials: convert::materials(&message.materials),
        };
        let executed = self
            .execute_found(
                &status,
                &message.phone_last4,
                actor,
                action,
                &message.idempotency_key,
            )
            .await?;
        Ok(Response::new(ProvideInfoResponse {
            position: api_position(executed.position),
            state: convert::state_i32(executed.status),
        }))
    }

    async fn withdraw_request(
        &self,
        request: Request<WithdrawRequestRequest>,
    ) -> Result<Response<WithdrawRequestResponse>, Status> {
        let actor = caller(&request, RESIDENT_ROLES)?;
        self.count_look_up(&request, &actor)?;
        let message = request.get_ref();
        let mut violations = Violations::new();
        let reason = convert::text(&mut violations, "reason", &message.reason);
        violations.into_result()?;
        let status = self
            .lookup(
                &request,
                &actor,
                &message.tracking_code,
                &message.phone_last4,
                0,
            )
            .await?;
        let executed = self
            .execute_found(
                &status,
                &message.phone_last4,
                actor,
                Action::Withdraw { reason },
                &message.idempotency_key,
            )
            .await?;
        Ok(Response::new(WithdrawRequestResponse {
            position: api_position(executed.position),
            state: convert::state_i32(executed.status),
        }))
    }

    async fn rate_request(
        &self,
        request: Request<RateRequestRequest>,
    ) -> Result<Response<RateRequestResponse>, Status> {
        let actor = caller(&request, RESIDENT_ROLES)?;
        self.count_look_up(&request, &actor)?;
        let message = request.get_ref();
        let mut violations = Violations::new();
        let comment = convert::text(&mut violations, "comment", &message.comment);
        violations.into_result()?;
        let grade = convert::from_grade(message.grade)?;
        let status = self
            .lookup(
                &request,
                &actor,
                &message.tracking_code,
                &message.phone_last4,
                0,
            )
            .await?;
        let executed = self
            .execute_found(
                &status,
                &message.phone_last4,
                actor,
                Action::Rate { grade, comment },
                &message.idempotency_key,
            )
            .await?;
        let remediation = if grade.is_bad() {
            RemediationStatus::Open
        } else {
            RemediationStatus::NotNeeded
        };
        Ok(Response::new(RateRequestResponse {
            position: api_position(executed.position),
            state: convert::state_i32(executed.status),
            remediation: remediation as i32,
        }))
    }
}
