//! CaseworkerService handlers: the caseworkers' side: queue, request detail and every
//! decision on a request. A request outside the caller's sites (and, for caseworkers,
//! categories) is NOT_FOUND for reads and writes alike, so its existence is not revealed.

use std::collections::{BTreeMap, HashSet};

use anju_app::{
    CommandOptions, Executed, QueueFilter as AppQueueFilter, ReassignTarget,
    RequestDetail as AppDetail,
};
use anju_domain::{
    Action, Actor, ActorId, Category, Event, RequestId, Role, Scope, SiteId, Status,
};
use anju_eventlog::Filter;
use anju_proto::v1::caseworker_service_server::CaseworkerService;
use anju_proto::v1::*;
use tonic::{Request, Response, Status as GrpcStatus};

use super::{
    caller, spawn_stream, ResponseStream, APPEAL_ROLES, CASEWORKER_ROLES, SUPERVISOR_ROLES,
};
use crate::convert::{self, api_position, api_version};
use crate::error::{ApiError, Violations};
use crate::state::{call_timeout, AppState};

/// Serves `anju.v1.CaseworkerService`; holds the shared [`AppState`].
#[derive(Debug, Clone)]
pub struct CaseworkerHandler {
    pub state: AppState,
}

/// A write's answer before it becomes the method's response message.
struct Written {
    executed: Executed,
    /// The request as the caller could see it just before the write.
    before: AppDetail,
}

impl Written {
    fn position(&self) -> u64 {
        api_position(self.executed.position)
    }
    fn version(&self) -> u64 {
        api_version(self.executed.version)
    }
    fn state(&self) -> i32 {
        convert::state_i32(self.executed.status)
    }
}

/// The queue filter as the application takes it, plus what is filtered here.
struct QueueSelection {
    query: AppQueueFilter,
    sites: Option<HashSet<String>>,
    categories: Option<HashSet<Category>>,
    assignee: Option<String>,
    unassigned_only: bool,
    sla_statuses: Vec<i32>,
}

impl CaseworkerHandler {
    pub fn new(state: AppState) -> CaseworkerHandler {
        CaseworkerHandler { state }
    }

    /// The request as `actor` may see it, after the read models reached the log head:
    /// NOT_FOUND when it does not exist or lies outside the caller's scope.
    async fn visible<T>(
        &self,
        request: &Request<T>,
        actor: &Actor,
        request_id: RequestId,
    ) -> Result<AppDetail, ApiError> {
        let application = &self.state.application;
        let head = application.log().head_position();
        if head > 0 {
            let budget = call_timeout(request, self.state.config.request_timeout);
            application.wait_for(Some(head - 1), Some(budget)).await?;
        }
        Ok(application.request_detail(actor, request_id, None).await?)
    }

    /// Checks scope and `expected_version`, then runs the command. A refused command
    /// writes nothing (the application decides before it appends). With an
    /// idempotency key, a retry answers what the first call wrote.
    async fn write<T>(
        &self,
        request: &Request<T>,
        actor: Actor,
        request_id: &str,
        expected_version: Option<u64>,
        idempotency_key: &str,
        action: Action,
    ) -> Result<Written, ApiError> {
        let request_id = convert::request_id(request_id)?;
        let before = self.visible(request, &actor, request_id).await?;
        let idempotency_key = (!idempotency_key.is_empty()).then(|| idempotency_key.to_string());
        if let Some(key) = &idempotency_key {
            // A retry whose first call was written: its answer, whatever happened since
            // (the expected version has moved on by the first call's own events).
            if let Some(executed) = self
                .state
                .application
                .earlier_answer(request_id, &actor, key)
                .await?
            {
                return Ok(Written { executed, before });
            }
        }
        if let Some(expected) = expected_version {
            let actual = self
                .state
                .application
                .log()
                .stream_version(&request_id.stream_name())
                .map_or(0, api_version);
            if expected != actual {
                return Err(ApiError::VersionConflict { expected, actual });
            }
        }
        let action_name = action.name();
        let executed = match action {
            Action::Reassign { to } => {
                let target = ReassignTarget {
                    id: to,
                    role: Role::Caseworker,
                    sites: Scope::only([before.request.site.clone()]),
                    categories: Scope::only([before.request.category]),
                };
                self.state
                    .application
                    .reassign(request_id, actor.clone(), target)
                    .await?
            }
            action => {
                let options = CommandOptions {
                    idempotency_key,
                    lookup: None,
                };
                self.state
                    .application
                    .execute_with(request_id, actor.clone(), action, options)
                    .await?
            }
        };
        tracing::info!(
            %request_id,
            action = action_name,
            by = %actor.id,
            status = %executed.status,
            "command executed"
        );
        Ok(Written { executed, before })
    }

    fn service_name(&self, code: &anju_domain::ServiceCode) -> String {
        self.state
            .application
            .catalogue()
            .get(code)
            .map(|d| d.name_zh.clone())
            .unwrap_or_default()
    }

    fn queue_selection(
        &self,
        actor: &Actor,
        filter: Option<QueueFilter>,
        page_size: u32,
        page_token: String,
    ) -> Result<QueueSelection, ApiError> {
        let filter = filter.unwrap_or_default();
        let mut violations = Violations::new();
        let mut categories = HashSet::new();
        for (i, text) in filter.categories.iter().enumerate() {
            match Category::parse(text) {
                Some(category) => {
                    categories.insert(category);
                }
                None => violations.add(
                    format!("filter.categories[{i}]"),
                    "is not a service category",
                ),
            }
        }
        let mut statuses = Vec::new();
        for (i, state) in filter.states.iter().enumerate() {
            match convert::statuses(*state, &format!("filter.states[{i}]")) {
                Ok(mut more) => statuses.append(&mut more),
                Err(ApiError::InvalidArgument(mut v)) => {
                    for violation in v.drain(..) {
                        violations.add(violation.field, violation.description);
                    }
                }
                Err(other) => return Err(other),
            }
        }
        for (i, sla) in filter.sla_statuses.iter().enumerate() {
            if !matches!(SlaStatus::try_from(*sla), Ok(s) if s != SlaStatus::Unspecified) {
                violations.add(
                    format!("filter.sla_statuses[{i}]"),
                    format!("{sla} is not an SLA status"),
                );
            }
        }
        if page_size > 500 {
            violations.add("page_size", "is at most 500");
        }
        violations.into_result()?;
        for site in &filter.site_ids {
            if !actor.sites.contains(&SiteId::new(site)) {
                return Err(ApiError::PermissionDenied(format!(
                    "token does not cover site {site:?}"
                )));
            }
        }
        for category in &categories {
            if !actor.categories.contains(category) {
                return Err(ApiError::PermissionDenied(format!(
                    "token does not cover category {:?}",
                    category.as_str()
                )));
            }
        }
        let assignee = match filter.assignee.trim() {
            "" => None,
            "me" => Some(actor.id.to_string()),
            other => Some(other.to_string()),
        };
        let mine_only = assignee.as_deref() == Some(actor.id.0.as_str());
        let query = AppQueueFilter {
            site: (filter.site_ids.len() == 1).then(|| SiteId::new(&filter.site_ids[0])),
            category: if categories.len() == 1 {
                categories.iter().next().copied()
            } else {
                None
            },
            statuses,
            mine_only,
            overdue_only: filter.overdue_only,
            page_size: page_size as usize,
            page_token: (!page_token.is_empty()).then_some(page_token),
        };
        Ok(QueueSelection {
            query,
            sites: (filter.site_ids.len() > 1).then(|| filter.site_ids.into_iter().collect()),
            categories: (categories.len() > 1).then_some(categories),
            assignee: assignee.filter(|_| !mine_only),
            unassigned_only: filter.unassigned_only,
            sla_statuses: filter.sla_statuses,
        })
    }

    fn keep(selection: &QueueSelection, item: &QueueItem) -> bool {
        selection
            .sites
            .as_ref()
            .is_none_or(|sites| sites.contains(&item.site_id))
            && selection.categories.as_ref().is_none_or(|categories| {
                Category::parse(&item.category).is_some_and(|c| categories.contains(&c))
            })
            && selection
                .assignee
                .as_ref()
                .is_none_or(|who| *who == item.assignee)
            && (!selection.unassigned_only || item.assignee.is_empty())
            && (selection.sla_statuses.is_empty()
                || item
                    .deadline
                    .as_ref()
                    .is_some_and(|d| selection.sla_statuses.contains(&d.sla_status)))
    }

    async fn queue_page(
        &self,
        actor: &Actor,
        selection: &QueueSelection,
        page_token: Option<String>,
    ) -> Result<(Vec<QueueItem>, Option<String>), ApiError> {
        let application = &self.state.application;
        let mut query = selection.query.clone();
        query.page_token = page_token;
        let page = application.queue(actor, query, None).await?;
        let now = application.now();
        let items = page
            .items
            .iter()
            .map(|item| {
                let mut shown = convert::queue_item(
                    item,
                    self.service_name(&item.service_code),
                    now,
                    application.calendar(),
                );
                self.complete_queue_item(&mut shown, item.request_id);
                shown
            })
            .filter(|item| Self::keep(selection, item))
            .collect();
        Ok((items, page.next_page_token))
    }

    /// What the queue index does not keep: the request's version, the masked applicant
    /// name and whether a supervisor's decision is waiting, from the request's view.
    fn complete_queue_item(&self, item: &mut QueueItem, request_id: RequestId) {
        let Ok(Some(view)) = self.state.application.projections().request(&request_id) else {
            return;
        };
        if let Some(request) = view.state.request() {
            item.version = api_version(view.version);
            item.applicant_name_masked = convert::mask_name(&request.applicant.display_name);
            item.awaiting_supervisor = awaiting_supervisor(request);
        }
    }

    /// Every item matching the selection, over all pages.
    async fn queue_total(
        &self,
        actor: &Actor,
        selection: &QueueSelection,
    ) -> Result<u32, ApiError> {
        let application = &self.state.application;
        let mut query = selection.query.clone();
        query.page_size = anju_projections::MAX_PAGE_SIZE;
        query.page_token = None;
        let now = application.now();
        let mut total = 0u32;
        loop {
            let page = application.queue(actor, query.clone(), None).await?;
            total += page
                .items
                .iter()
                .map(|item| convert::queue_item(item, String::new(), now, application.calendar()))
                .filter(|item| Self::keep(selection, item))
                .count() as u32;
            match page.next_page_token {
                Some(token) => query.page_token = Some(token),
                None => return Ok(total),
            }
        }
    }
}

fn required(violations: Violations) -> Result<(), ApiError> {
    violations.into_result()
}

/// A supervisor's decision is waiting: an extension asked for, or a rating appealed.
fn awaiting_supervisor(request: &anju_domain::Request) -> bool {
    request.pending_extension.is_some()
        || request
            .rating
            .as_ref()
            .and_then(|r| r.appeal.as_ref())
            .is_some_and(|a| a.upheld.is_none())
}

#[tonic::async_trait]
impl CaseworkerService for CaseworkerHandler {
    async fn list_queue(
        &self,
        request: Request<ListQueueRequest>,
    ) -> Result<Response<ListQueueResponse>, GrpcStatus> {
        let actor = caller(&request, CASEWORKER_ROLES)?;
        let message = request.get_ref().clone();
        self.state
            .wait_for_min_position(&request, message.min_position)
            .await?;
        let selection = self.queue_selection(
            &actor,
            message.filter,
            message.page_size,
            message.page_token.clone(),
        )?;
        let token = (!message.page_token.is_empty()).then_some(message.page_token);
        let (items, next) = self.queue_page(&actor, &selection, token).await?;
        let total_size = self.queue_total(&actor, &selection).await?;
        Ok(Response::new(ListQueueResponse {
            total_size,
            items,
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn get_request(
        &self,
        request: Request<GetRequestRequest>,
    ) -> Result<Response<GetRequestResponse>, GrpcStatus> {
        let actor = caller(&request, CASEWORKER_ROLES)?;
        let message = request.get_ref();
        let request_id = convert::request_id(&message.request_id)?;
        self.state
            .wait_for_min_position(&request, message.min_position)
            .await?;
        let application = &self.state.application;
        let detail = application
            .request_detail(&actor, request_id, None)
            .await
            .map_err(ApiError::from)?;
        let contact = application
            .unseal_contact(&actor, request_id)
            .await
            .ok()
            .flatten();
        let definition = application
            .catalogue()
            .get_version(&detail.request.service_code, detail.request.terms.version);
        let step_names: BTreeMap<String, String> = definition
            .map(|d| {
                d.steps
                    .iter()
                    .map(|s| (s.code.clone(), s.name_zh.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let message = convert::request_detail(
            &detail,
            contact.as_ref(),
            definition.map(|d| d.name_zh.clone()).unwrap_or_default(),
            &step_names,
            application.now(),
            application.calendar(),
        );
        Ok(Response::new(GetRequestResponse {
            request: Some(message),
        }))
    }

    async fn claim_request(
        &self,
        request: Request<ClaimRequestRequest>,
    ) -> Result<Response<ClaimRequestResponse>, GrpcStatus> {
        let actor = caller(&request, CASEWORKER_ROLES)?;
        let message = request.get_ref();
        let assignee = actor.id.to_string();
        let written = self
            .write(
                &request,
                actor,
                &message.request_id,
                message.expected_version,
                &message.idempotency_key,
                Action::Claim,
            )
            .await?;
        Ok(Response::new(ClaimRequestResponse {
            position: written.position(),
            version: written.version(),
            state: written.state(),
            assignee,
        }))
    }

    async fn accept_request(
        &self,
        request: Request<AcceptRequestRequest>,
    ) -> Result<Response<AcceptRequestResponse>, GrpcStatus> {
        let actor = caller(&request, CASEWORKER_ROLES)?;
        let message = request.get_ref();
        let mut violations = Violations::new();
        let comment = convert::text(&mut violations, "comment", &message.comment);
        required(violations)?;
        let written = self
            .write(
                &request,
                actor,
                &message.request_id,
                message.expected_version,
                &message.idempotency_key,
                Action::Accept { comment },
            )
            .await?;
        let application = &self.state.application;
        let deadline = written
            .executed
            .events
            .iter()
            .find_map(|event| match event {
                Event::RequestAccepted {
                    promised_deadline, ..
                } => Some(convert::deadline(
                    "decision",
                    *promised_deadline,
                    application.now(),
                    application.calendar(),
                    0,
                    SlaStatus::OnTime,
                )),
                _ => None,
            });
        Ok(Response::new(AcceptRequestResponse {
            position: written.position(),
            version: written.version(),
            state: written.state(),
            decision_deadline: deadline,
        }))
    }

    async fn refuse_request(
        &self,
        request: Request<RefuseRequestRequest>,
    ) -> Result<Response<RefuseRequestResponse>, GrpcStatus> {
        let actor = caller(&request, CASEWORKER_ROLES)?;
        let message = request.get_ref();
        let mut violations = Violations::new();
        let reason = convert::required_text(&mut violations, "reason", &message.reason);
        let legal_basis = convert::text(&mut violations, "legal_basis", &message.legal_basis);
        required(violations)?;
        let action = Action::Refuse {
            reason,
            legal_basis,
        };
        let written = self
            .write(
                &request,
                actor,
                &message.request_id,
                message.expected_version,
                &message.idempotency_key,
                action,
            )
            .await?;
        Ok(Response::new(RefuseRequestResponse {
            position: written.position(),
            version: written.version(),
            state: written.state(),
        }))
    }

    async fn request_info(
        &self,
        request: Request<RequestInfoRequest>,
    ) -> Result<Response<RequestInfoResponse>, GrpcStatus> {
        let actor = caller(&request, CASEWORKER_ROLES)?;
        let message = request.get_ref();
        let mut violations = Violations::new();
        if message.missing.is_empty() {
            violations.add(
                "missing",
                "missing is required: list every missing item at once",
            );
        }
        let mut missing = Vec::new();
        for (i, item) in message.missing.iter().enumerate() {
            let description = convert::text(
                &mut violations,
                &format!("missing[{i}].description"),
                &item.description,
            );
            let code = item.material_code.trim();
            convert::printable(
                &mut violations,
                &format!("missing[{i}].material_code"),
                code,
                anju_domain::Lines::One,
            );
            match (code.is_empty(), description) {
                (true, None) => violations.add(
                    format!("missing[{i}]"),
                    "name a material code or describe what is missing",
                ),
                (true, Some(d)) => missing.push(d),
                (false, None) => missing.push(code.to_string()),
                (false, Some(d)) => missing.push(format!("{code}: {d}")),
            }
        }
        let info_message = convert::text(&mut violations, "message", &message.message);
        required(violations)?;
        let written = self
            .write(
                &request,
                actor,
                &message.request_id,
                message.expected_version,
                &message.idempotency_key,
                Action::RequestInfo {
                    missing,
                    message: info_message,
                },
            )
            .await?;
        Ok(Response::new(RequestInfoResponse {
            position: written.position(),
            version: written.version(),
            state: written.state(),
        }))
    }

    async fn approve_request(
        &self,
        request: Request<ApproveRequestRequest>,
    ) -> Result<Response<ApproveRequestResponse>, GrpcStatus> {
        let actor = caller(&request, CASEWORKER_ROLES)?;
        let message = request.get_ref();
        let mut violations = Violations::new();
        let comment = convert::text(&mut violations, "comment", &message.comment);
        if message.level > 2 {
            violations.add("level", "level is 0 (the caseworker's review), 1 or 2");
        }
        required(violations)?;
        // Level 0 is the caseworker's review opinion (审核); levels 1 and 2 are the
        // supervisors' sign-offs.
        let action = if message.level == 0 {
            Action::Review {
                opinion: comment.unwrap_or_else(|| "reviewed".to_string()),
            }
        } else {
            Action::Approve {
                level: message.level as u8,
                comment,
            }
        };
        let written = self
            .write(
                &request,
                actor,
                &message.request_id,
                message.expected_version,
                &message.idempotency_key,
                action,
            )
            .await?;
        let levels = u32::from(written.before.request.terms.approval_levels);
        let levels_remaining = if written.executed.status == Status::Approved
            || written.executed.status.is_terminal()
        {
            0
        } else {
            levels.saturating_sub(message.level)
        };
        Ok(Response::new(ApproveRequestResponse {
            position: written.position(),
            version: written.version(),
            state: written.state(),
            levels_remaining,
        }))
    }

    async fn deny_request(
        &self,
        request: Request<DenyRequestRequest>,
    ) -> Result<Response<DenyRequestResponse>, GrpcStatus> {
        let actor = caller(&request, CASEWORKER_ROLES)?;
        let message = request.get_ref();
        let mut violations = Violations::new();
        let reason = convert::required_text(&mut violations, "reason", &message.reason);
        let legal_basis = convert::text(&mut violations, "legal_basis", &message.legal_basis);
        required(violations)?;
        let action = Action::Deny {
            reason,
            legal_basis,
        };
        let written = self
            .write(
                &request,
                actor,
                &message.request_id,
                message.expected_version,
                &message.idempotency_key,
                action,
            )
            .await?;
        Ok(Response::new(DenyRequestResponse {
            position: written.position(),
            version: written.version(),
            state: written.state(),
        }))
    }

    async fn start_fulfilment(
        &self,
        request: Request<StartFulfilmentRequest>,
    ) -> Result<Response<StartFulfilmentResponse>, GrpcStatus> {
        let actor = caller(&request, CASEWORKER_ROLES)?;
        let message = request.get_ref();
        let mut violations = Violations::new();
        let note = convert::text(&mut violations, "note", &message.note);
        required(violations)?;
        let written = self
            .write(
                &request,
                actor,
                &message.request_id,
                message.expected_version,
                &message.idempotency_key,
                Action::StartFulfilment { note },
            )
            .await?;
        let application = &self.state.application;
        let deadline = convert::request_deadline(
            &written.before.request,
            application.now(),
            application.calendar(),
        )
        .map(|mut d| {
            d.kind = "fulfilment".into();
            d
        });
        Ok(Response::new(StartFulfilmentResponse {
            position: written.position(),
            version: written.version(),
            state: written.state(),
            fulfilment_deadline: deadline,
        }))
    }

    async fn complete_fulfilment_step(
        &self,
        request: Request<CompleteFulfilmentStepRequest>,
    ) -> Result<Response<CompleteFulfilmentStepResponse>, GrpcStatus> {
        let actor = caller(&request, CASEWORKER_ROLES)?;
        let message = request.get_ref();
        let mut violations = Violations::new();
        let step = convert::required_text(&mut violations, "step_code", &message.step_code);
        let note = convert::text(&mut violations, "note", &message.note);
        required(violations)?;
        let written = self
            .write(
                &request,
                actor,
                &message.request_id,
                message.expected_version,
                &message.idempotency_key,
                Action::CompleteStep {
                    step: step.clone(),
                    note,
                },
            )
            .await?;
        let steps_remaining = written
            .before
            .request
            .steps_remaining()
            .into_iter()
            .filter(|s| *s != step)
            .map(str::to_string)
            .collect();
        Ok(Response::new(CompleteFulfilmentStepResponse {
            position: written.position(),
            version: written.version(),
            state: written.state(),
            steps_remaining,
        }))
    }

    async fn add_note(
        &self,
        request: Request<AddNoteRequest>,
    ) -> Result<Response<AddNoteResponse>, GrpcStatus> {
        let actor = caller(&request, CASEWORKER_ROLES)?;
        let message = request.get_ref();
        let mut violations = Violations::new();
        let text = convert::required_text(&mut violations, "text", &message.text);
        required(violations)?;
        let written = self
            .write(
                &request,
                actor,
                &message.request_id,
                message.expected_version,
                &message.idempotency_key,
                Action::AddNote {
                    text,
                    internal: message.internal,
                },
            )
            .await?;
        Ok(Response::new(AddNoteResponse {
            position: written.position(),
            version: written.version(),
            state: written.state(),
        }))
    }

    async fn reassign_request(
        &self,
        request: Request<ReassignRequestRequest>,
    ) -> Result<Response<ReassignRequestResponse>, GrpcStatus> {
        let actor = caller(&request, SUPERVISOR_ROLES)?;
        let message = request.get_ref();
        let mut violations = Violations::new();
        let to = convert::required_text(&mut violations, "new_assignee", &message.new_assignee);
        convert::text(&mut violations, "reason", &message.reason);
        required(violations)?;
        let written = self
            .write(
                &request,
                actor,
                &message.request_id,
                message.expected_version,
                &message.idempotency_key,
                Action::Reassign {
                    to: ActorId::new(to.clone()),
                },
            )
            .await?;
        Ok(Response::new(ReassignRequestResponse {
            position: written.position(),
            version: written.version(),
            state: written.state(),
            assignee: to,
        }))
    }

    async fn request_extension(
        &self,
        request: Request<RequestExtensionRequest>,
    ) -> Result<Response<RequestExtensionResponse>, GrpcStatus> {
        let actor = caller(&request, CASEWORKER_ROLES)?;
        let message = request.get_ref();
        let mut violations = Violations::new();
        let reason = convert::required_text(&mut violations, "reason", &message.reason);
        if message.working_days == 0 {
            violations.add("working_days", "working_days is required: at least 1");
        }
        required(violations)?;
        let written = self
            .write(
                &request,
                actor,
                &message.request_id,
                message.expected_version,
                &message.idempotency_key,
                Action::RequestExtension {
                    days: message.working_days,
                    reason,
                },
            )
            .await?;
        let extension_id = written
            .executed
            .events
            .iter()
            .find_map(|event| match event {
                Event::ExtensionRequested { at, .. } => Some(format!("ext-{}", at.0)),
                _ => None,
            })
            .unwrap_or_default();
        Ok(Response::new(RequestExtensionResponse {
            position: written.position(),
            version: written.version(),
            state: written.state(),
            extension_id,
        }))
    }

    async fn decide_extension(
        &self,
        request: Request<DecideExtensionRequest>,
    ) -> Result<Response<DecideExtensionResponse>, GrpcStatus> {
        let actor = caller(&request, SUPERVISOR_ROLES)?;
        let message = request.get_ref();
        let mut violations = Violations::new();
        convert::text(&mut violations, "comment", &message.comment);
        required(violations)?;
        let request_id = convert::request_id(&message.request_id)?;
        let before = self.visible(&request, &actor, request_id).await?;
        if let Some(pending) = &before.request.pending_extension {
            let id = format!("ext-{}", pending.at.0);
            if !message.extension_id.is_empty() && message.extension_id != id {
                return Err(
                    ApiError::NotFound(format!("extension {:?}", message.extension_id)).into(),
                );
            }
            if message.grant
                && message.granted_working_days != 0
                && message.granted_working_days != pending.days
            {
                return Err(ApiError::invalid(
                    "granted_working_days",
                    "partial grants are not supported: grant the days asked for (0) or reject",
                )
                .into());
            }
        }
        let written = self
            .write(
                &request,
                actor,
                &message.request_id,
                message.expected_version,
                &message.idempotency_key,
                Action::DecideExtension {
                    approve: message.grant,
                },
            )
            .await?;
        let application = &self.state.application;
        let deadline = written
            .executed
            .events
            .iter()
            .find_map(|event| match event {
                Event::ExtensionApproved {
                    promised_deadline: Some(due),
                    days,
                    ..
                } => Some(convert::deadline(
                    "decision",
                    *due,
                    application.now(),
                    application.calendar(),
                    *days,
                    SlaStatus::OnTime,
                )),
                _ => None,
            });
        Ok(Response::new(DecideExtensionResponse {
            position: written.position(),
            version: written.version(),
            state: written.state(),
            deadline,
        }))
    }

    async fn resolve_remediation(
        &self,
        request: Request<ResolveRemediationRequest>,
    ) -> Result<Response<ResolveRemediationResponse>, GrpcStatus> {
        let actor = caller(&request, CASEWORKER_ROLES)?;
        let message = request.get_ref();
        let mut violations = Violations::new();
        let resolution = convert::required_text(&mut violations, "resolution", &message.resolution);
        required(violations)?;
        let summary = format!(
            "{resolution} (resident contacted: {}, agrees: {})",
            message.resident_contacted, message.resident_agrees
        );
        let written = self
            .write(
                &request,
                actor,
                &message.request_id,
                message.expected_version,
                &message.idempotency_key,
                Action::ResolveRemediation { summary },
            )
            .await?;
        Ok(Response::new(ResolveRemediationResponse {
            position: written.position(),
            version: written.version(),
            state: written.state(),
            remediation: RemediationStatus::Resolved as i32,
        }))
    }

    async fn appeal_rating(
        &self,
        request: Request<AppealRatingRequest>,
    ) -> Result<Response<AppealRatingResponse>, GrpcStatus> {
        let actor = caller(&request, CASEWORKER_ROLES)?;
        let message = request.get_ref();
        let mut violations = Violations::new();
        let reason = convert::required_text(&mut violations, "reason", &message.reason);
        required(violations)?;
        let written = self
            .write(
                &request,
                actor,
                &message.request_id,
                message.expected_version,
                &message.idempotency_key,
                Action::AppealRating { reason },
            )
            .await?;
        Ok(Response::new(AppealRatingResponse {
            position: written.position(),
            version: written.version(),
            state: written.state(),
            appeal: AppealStatus::Pending as i32,
        }))
    }

    async fn decide_appeal(
        &self,
        request: Request<DecideAppealRequest>,
    ) -> Result<Response<DecideAppealResponse>, GrpcStatus> {
        let actor = caller(&request, APPEAL_ROLES)?;
        let message = request.get_ref();
        let mut violations = Violations::new();
        convert::text(&mut violations, "comment", &message.comment);
        required(violations)?;
        // The API's `uphold` upholds the appeal (the rating is removed); the domain's
        // keeps the rating.
        let written = self
            .write(
                &request,
                actor,
                &message.request_id,
                message.expected_version,
                &message.idempotency_key,
                Action::DecideAppeal {
                    uphold: !message.uphold,
                },
            )
            .await?;
        let appeal = if message.uphold {
            AppealStatus::Upheld
        } else {
            AppealStatus::Rejected
        };
        Ok(Response::new(DecideAppealResponse {
            position: written.position(),
            version: written.version(),
            state: written.state(),
            appeal: appeal as i32,
        }))
    }

    async fn close_request(
        &self,
        request: Request<CloseRequestRequest>,
    ) -> Result<Response<CloseRequestResponse>, GrpcStatus> {
        let actor = caller(&request, CASEWORKER_ROLES)?;
        let message = request.get_ref();
        let written = self
            .write(
                &request,
                actor,
                &message.request_id,
                message.expected_version,
                &message.idempotency_key,
                Action::Close,
            )
            .await?;
        Ok(Response::new(CloseRequestResponse {
            position: written.position(),
            version: written.version(),
            state: written.state(),
        }))
    }

    type WatchQueueStream = ResponseStream<WatchQueueResponse>;

    async fn find_requests_by_identity(
        &self,
        request: Request<FindRequestsByIdentityRequest>,
    ) -> Result<Response<FindRequestsByIdentityResponse>, GrpcStatus> {
        let actor = caller(&request, CASEWORKER_ROLES)?;
        // Every call counts, valid or not: a checksum-valid guess is still a guess.
        self.state
            .identity_limiter
            .check(&format!("subject:{}", actor.id))?;
        let message = request.get_ref();
        self.state
            .wait_for_min_position(&request, message.min_position)
            .await?;
        // A request submitted a moment ago is found: wait for the read models to reach
        // the log's head.
        let application = &self.state.application;
        let head = application.log().head_position();
        if head > 0 {
            let budget = call_timeout(&request, self.state.config.request_timeout);
            application
                .wait_for(Some(head - 1), Some(budget))
                .await
                .map_err(ApiError::from)?;
        }
        let found = application
            .find_by_identity(&actor, &message.identity_number, &message.reason)
            .await
            .map_err(ApiError::from)?;
        let now = application.now();
        let requests = found
            .requests
            .iter()
            .map(|m| {
                convert::found_request(
                    m,
                    self.service_name(&m.request.service_code),
                    now,
                    application.calendar(),
                )
            })
            .collect();
        Ok(Response::new(FindRequestsByIdentityResponse {
            requests,
            audit_position: api_position(found.audit_position),
        }))
    }

    async fn watch_queue(
        &self,
        request: Request<WatchQueueRequest>,
    ) -> Result<Response<Self::WatchQueueStream>, GrpcStatus> {
        let actor = caller(&request, CASEWORKER_ROLES)?;
        let message = request.get_ref().clone();
        let selection = self.queue_selection(&actor, message.filter, 500, String::new())?;
        let handler = self.clone();
        let stream = spawn_stream(&self.state, move |sender| async move {
            let application = handler.state.application.clone();
            let mut members: HashSet<String> = HashSet::new();
            // The snapshot is taken at the read models' position; live changes follow
            // from there, so nothing is missed between the two.
            let start = message
                .after_position
                .max(application.projections().position());
            let mut token = None;
            loop {
                match handler.queue_page(&actor, &selection, token.take()).await {
                    Ok((items, next)) => {
                        for item in items {
                            members.insert(item.request_id.clone());
                            if message.after_position == 0 {
                                let change = WatchQueueResponse {
                                    position: start,
                                    kind: QueueChangeKind::Added as i32,
                                    item: Some(item),
                                };
                                if sender.send(Ok(change)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        match next {
                            Some(next) => token = Some(next),
                            None => break,
                        }
                    }
                    Err(e) => {
                        let _ = sender.send(Err(e.into())).await;
                        return;
                    }
                }
            }
            let caught_up = WatchQueueResponse {
                position: start,
                kind: QueueChangeKind::CaughtUp as i32,
                item: None,
            };
            if sender.send(Ok(caught_up)).await.is_err() {
                return;
            }
            let mut subscription = application
                .log()
                .subscribe_all(start, Filter::stream_prefix("request-"));
            while let Some(next) = subscription.next().await {
                let recorded = match next {
                    Ok(recorded) => recorded,
                    Err(e) => {
                        let _ = sender.send(Err(ApiError::from(e).into())).await;
                        return;
                    }
                };
                let Ok(request_id) = convert::request_id(&recorded.stream_id) else {
                    continue;
                };
                if application
                    .wait_for(Some(recorded.position), None)
                    .await
                    .is_err()
                {
                    continue;
                }
                let position = api_position(recorded.position);
                let key = request_id.to_string();
                let item = match application.request_detail(&actor, request_id, None).await {
                    Ok(detail) => {
                        let request = &detail.request;
                        let open = anju_projections::OPEN_STATUSES.contains(&request.status);
                        let selected = open
                            && selection
                                .query
                                .statuses
                                .iter()
                                .chain(
                                    selection
                                        .query
                                        .statuses
                                        .is_empty()
                                        .then_some(&request.status),
                                )
                                .any(|s| *s == request.status)
                            && selection
                                .query
                                .site
                                .as_ref()
                                .is_none_or(|site| *site == request.site)
                            && selection
                                .query
                                .category
                                .is_none_or(|category| category == request.category)
                            && (!selection.query.mine_only
                                || request.assignee.as_ref() == Some(&actor.id));
                        let now = application.now();
                        let item = QueueItem {
                            request_id: key.clone(),
                            tracking_code: request.tracking_code.to_string(),
                            service_code: request.service_code.to_string(),
                            service_name: handler.service_name(&request.service_code),
                            category: request.category.as_str().to_string(),
                            site_id: request.site.to_string(),
                            state: convert::state_i32(request.status),
                            assignee: request
                                .assignee
                                .as_ref()
                                .map(ToString::to_string)
                                .unwrap_or_default(),
                            applicant_name_masked: convert::mask_name(
                                &request.applicant.display_name,
                            ),
                            submitted_at: Some(convert::timestamp(request.submitted_at)),
                            deadline: convert::request_deadline(
                                request,
                                now,
                                application.calendar(),
                            ),
                            version: api_version(detail.version),
                            awaiting_supervisor: awaiting_supervisor(request),
                        };
                        (selected && Self::keep(&selection, &item)).then_some(item)
                    }
                    Err(_) => None,
                };
                let change = match (item, members.contains(&key)) {
                    (Some(item), true) => Some((QueueChangeKind::Updated, item)),
                    (Some(item), false) => {
                        members.insert(key.clone());
                        Some((QueueChangeKind::Added, item))
                    }
                    (None, true) => {
                        members.remove(&key);
                        Some((
                            QueueChangeKind::Removed,
                            QueueItem {
                                request_id: key.clone(),
                                ..QueueItem::default()
                            },
                        ))
                    }
                    (None, false) => None,
                };
                if let Some((kind, item)) = change {
                    let change = WatchQueueResponse {
                        position,
                        kind: kind as i32,
                        item: Some(item),
                    };
                    if sender.send(Ok(change)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }
}
