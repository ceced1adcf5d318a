//! Queries with their access rules: thin over the projections, but who may see what is
//! decided here.
//!
//! - Resident status: tracking code plus the phone's last four digits, compared in
//!   constant time; any miss is `NotFound`, whether the code exists or not.
//! - Request detail (staff): a request outside the caller's sites or categories is
//!   `NotFound`, not `Forbidden`, so its existence is not revealed; a role that may
//!   never read details (system) is `Forbidden`.
//! - Queue: caseworkers see their sites and categories; naming a site or category
//!   outside their scope is `Forbidden`. Supervisors, managers and admins see their
//!   sites, all categories. Residents, kiosks and the system have no queue.
//! - Metrics: managers and admins, for their sites (`Scope::All` = every site); naming
//!   a site outside scope is `Forbidden`.
//!
//! Every query takes `min_position` and waits, up to a timeout, until the read models
//! have applied that log position (read your own writes).

use crate::app::Application;
use crate::error::AppError;
use anju_domain::{
    Actor, Category, Grade, Request, RequestId, Role, Scope, ServiceCode, SiteId, Status,
    Timestamp, TrackingCode,
};
pub use anju_projections::{
    Backlog, Bucket, LeadTimes, MetricsFilter, QueueItem, QueuePage, QueueQuery, Satisfaction,
    SlaReport, ThroughputBucket, TimelineEntry,
};
use std::time::Duration;

/// What a resident sees of their request: no notes, no personal data.
#[derive(Debug, Clone, PartialEq)]
pub struct ResidentStatus {
    pub request_id: RequestId,
    pub tracking_code: TrackingCode,
    pub service_code: ServiceCode,
    pub site: SiteId,
    pub category: Category,
    pub status: Status,
    pub submitted_at: Timestamp,
    /// The deadline now running: intake while submitted, the promised one while the
    /// processing clock runs; `None` while it is stopped or the work is done.
    pub deadline: Option<Timestamp>,
    pub missing_materials: Vec<String>,
    /// The caseworker's message with the missing materials, while they are awaited.
    pub info_request_message: Option<String>,
    /// The reason given with a refusal, denial or withdrawal.
    pub outcome_reason: Option<String>,
    /// The rule a refusal or denial rests on.
    pub legal_basis: Option<String>,
    /// Supervision raised on the request (warning, yellow and red cards), as staff see it.
    pub supervision: anju_domain::Supervision,
    /// Whether the processing clock runs now.
    pub clock_running: bool,
    /// Working days added by granted extensions.
    pub extension_days: u32,
    pub rating: Option<Grade>,
    pub can_withdraw: bool,
    pub can_rate: bool,
    /// Public entries only (internal notes are left out).
    pub timeline: Vec<TimelineEntry>,
    /// Stream version of the request's last event.
    pub version: u64,
    /// Log position of the request's last event.
    pub position: u64,
}

/// What staff see of a request. Contact details and sensitive answers stay sealed;
/// [`Application::unseal_contact`] opens them for those allowed.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestDetail {
    pub request: Request,
    pub version: u64,
    pub position: u64,
    pub timers: Vec<anju_domain::DueTimer>,
    pub timeline: Vec<TimelineEntry>,
}

/// A queue request as a caller asks for it; the scope comes from the actor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueFilter {
    /// One site; `None` = every site in the caller's scope.
    pub site: Option<SiteId>,
    pub category: Option<Category>,
    /// Empty = every open status.
    pub statuses: Vec<Status>,
    /// Only requests assigned to the caller.
    pub mine_only: bool,
    pub overdue_only: bool,
    pub page_size: usize,
    pub page_token: Option<String>,
}

/// Which figures a manager asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsQuery {
    /// `None` = every site in the caller's scope.
    pub sites: Option<Vec<SiteId>>,
    pub category: Option<Category>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub bucket: Bucket,
}

/// The manager figures for one filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub throughput: Vec<ThroughputBucket>,
    pub lead_times: LeadTimes,
    pub sla: SlaReport,
    pub satisfaction: Satisfaction,
    pub backlog: Backlog,
}

fn projection_error(error: impl std::fmt::Display) -> AppError {
    AppError::unavailable(format!("read models failed: {error}"))
}

impl Application {
    /// Waits until the read models have applied `min_position` (if given).
    pub async fn wait_for(
        &self,
        min_position: Option<u64>,
        timeout: Option<Duration>,
    ) -> Result<(), AppError> {
        let Some(wanted) = min_position else {
            return Ok(());
        };
        let timeout = timeout.unwrap_or(self.inner.config.query_timeout);
        let projections = &self.inner.projections;
        match projections.wait_for(wanted, timeout).await {
            Ok(_) => Ok(()),
            Err(_) => Err(AppError::NotReached {
                wanted,
                reached: projections.position(),
            }),
        }
    }

    /// The resident status lookup by tracking code and the phone's last four digits.
    pub async fn resident_status(
        &self,
        tracking_code: &str,
        phone_last4: &str,
        min_position: Option<u64>,
    ) -> Result<ResidentStatus, AppError> {
        let code = TrackingCode::parse(tracking_code)
            .map_err(|e| AppError::invalid("tracking_code", e.to_string()))?;
        if phone_last4.len() != 4 || !phone_last4.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AppError::invalid("phone_last4", "must be exactly 4 digits"));
        }
        self.wait_for(min_position, None).await?;
        let projections = &self.inner.projections;
        let Some(request_id) = projections
            .request_id_by_tracking(&code)
            .map_err(projection_error)?
        else {
            return Err(AppError::NotFound);
        };
        let Some(view) = projections.request(&request_id).map_err(projection_error)? else {
            return Err(AppError::NotFound);
        };
        let Some(request) = view.state.request() else {
            return Err(AppError::NotFound);
        };
        if !request.matches_lookup(&code, phone_last4) {
            return Err(AppError::NotFound);
        }
        let timeline = projections
            .timeline(&request_id)
            .map_err(projection_error)?
            .into_iter()
            .filter(|entry| !entry.internal)
            .collect();
        let deadline = match request.status {
            Status::Submitted => request.intake_deadline,
            status if status.is_in_processing() => {
                request.deadlines.as_ref().and_then(|d| d.promised)
            }
            _ => None,
        };
        Ok(ResidentStatus {
            request_id,
            tracking_code: request.tracking_code.clone(),
            service_code: request.service_code.clone(),
            site: request.site.clone(),
            category: request.category,
            status: request.status,
            submitted_at: request.submitted_at,
            deadline,
            missing_materials: match request.status {
                Status::AwaitingInfo => request.missing_materials.clone().unwrap_or_default(),
                _ => Vec::new(),
            },
            info_request_message: match request.status {
                Status::AwaitingInfo => request.info_request_message.clone(),
                _ => None,
            },
            outcome_reason: request.outcome_reason.clone(),
            legal_basis: request.legal_basis.clone(),
            supervision: request.supervision.clone(),
            clock_running: request.deadlines.as_ref().is_some_and(|d| d.running()),
            extension_days: request.deadlines.as_ref().map_or(0, |d| d.extension_days),
            rating: request
                .rating
                .as_ref()
                .filter(|r| !r.removed)
                .map(|r| r.grade),
            can_withdraw: matches!(
                request.status,
                Status::Submitted | Status::AwaitingInfo | Status::Accepted | Status::Reviewed
            ),
            can_rate: request.fulfilled_at.is_some() && request.rating.is_none(),
            timeline,
            version: view.version,
            position: view.last_position,
        })
    }

    /// A request's detail for staff (and for the resident who owns it).
    pub async fn request_detail(
        &self,
        actor: &Actor,
        request_id: RequestId,
        min_position: Option<u64>,
    ) -> Result<RequestDetail, AppError> {
        if actor.role == Role::System {
            return Err(AppError::Forbidden(
                "the system actor reads no request details".into(),
            ));
        }
        self.wait_for(min_position, None).await?;
        let projections = &self.inner.projections;
        let view = projections
            .request(&request_id)
            .map_err(projection_error)?
            .ok_or(AppError::NotFound)?;
        let request = view.state.request().ok_or(AppError::NotFound)?;
        let visible = match actor.role {
            Role::Admin => true,
            Role::Resident => request.applicant.resident_id == actor.id,
            Role::Caseworker => {
                actor.sites.contains(&request.site) && actor.categories.contains(&request.category)
            }
            Role::Kiosk | Role::Supervisor | Role::Manager => actor.sites.contains(&request.site),
            Role::System => false,
        };
        if !visible {
            return Err(AppError::NotFound);
        }
        let mut timeline = projections
            .timeline(&request_id)
            .map_err(projection_error)?;
        if actor.role == Role::Resident {
            timeline.retain(|entry| !entry.internal);
        }
        Ok(RequestDetail {
            request: request.clone(),
            version: view.version,
            position: view.last_position,
            timers: view.timers.clone(),
            timeline,
        })
    }

    /// A work queue, limited to what the caller may work on.
    pub async fn queue(
        &self,
        actor: &Actor,
        filter: QueueFilter,
        min_position: Option<u64>,
    ) -> Result<QueuePage, AppError> {
        if !matches!(
            actor.role,
            Role::Caseworker | Role::Supervisor | Role::Manager | Role::Admin
        ) {
            return Err(AppError::Forbidden(format!(
                "a {} has no queue",
                actor.role
            )));
        }
        let sites = match &filter.site {
            Some(site) if !actor.sites.contains(site) => {
                return Err(AppError::Forbidden(format!(
                    "{} {} does not serve site {site}",
                    actor.role, actor.id
                )));
            }
            Some(site) => Scope::only([site.clone()]),
            None => actor.sites.clone(),
        };
        if let Some(category) = filter.category {
            if !actor.categories.contains(&category) {
                return Err(AppError::Forbidden(format!(
                    "{} {} does not handle category {category}",
                    actor.role, actor.id
                )));
            }
        }
        // A caseworker of exactly one category asks for it; one of several gets the
        // page filtered to them (such a page may hold fewer items than asked for).
        let category = filter.category.or(match &actor.categories {
            Scope::Only(set) if set.len() == 1 => set.iter().next().copied(),
            _ => None,
        });
        self.wait_for(min_position, None).await?;
        let query = QueueQuery {
            sites,
            category,
            statuses: filter.statuses,
            assignee: filter.mine_only.then(|| actor.id.clone()),
            overdue_only: filter.overdue_only,
            now: self.now(),
            page_size: filter.page_size,
            page_token: filter.page_token,
        };
        let mut page = self
            .inner
            .projections
            .queue(&query)
            .map_err(|error| match error {
                // A token this server did not issue is the caller's mistake, not an outage:
                // retrying it can never succeed.
                anju_projections::ProjectionError::BadPageToken => AppError::invalid(
                    "page_token",
                    "is not a page token this server issued; send the next_page_token of the \
                 previous page, or none for the first page",
                ),
                other => projection_error(other),
            })?;
        page.items.retain(|item| {
            actor.sites.contains(&item.site) && actor.categories.contains(&item.category)
        });
        Ok(page)
    }

    /// Manager figures for the caller's sites.
    pub async fn metrics(
        &self,
        actor: &Actor,
        query: MetricsQuery,
        min_position: Option<u64>,
    ) -> Result<Metrics, AppError> {
        self.wait_for(min_position, None).await?;
        metrics_from(self.inner.projections.models(), actor, query, self.now())
    }
}

/// The manager figures for `actor` from a set of read models: the node's own, or
/// anju-insight's province-wide ones. Managers and admins only, and only for sites in
/// their scope (`*` = every site).
pub fn metrics_from(
    models: &anju_projections::ReadModels,
    actor: &Actor,
    query: MetricsQuery,
    now: anju_domain::Timestamp,
) -> Result<Metrics, AppError> {
    if !matches!(actor.role, Role::Manager | Role::Admin) {
        return Err(AppError::Forbidden(format!(
            "a {} cannot read metrics",
            actor.role
        )));
    }
    let sites = match (&actor.sites, query.sites) {
        (_, Some(sites)) => {
            if let Some(outside) = sites.iter().find(|s| !actor.sites.contains(s)) {
                return Err(AppError::Forbidden(format!(
                    "{} {} does not oversee site {outside}",
                    actor.role, actor.id
                )));
            }
            Some(sites)
        }
        (Scope::All, None) => None,
        (Scope::Only(set), None) => Some(set.iter().cloned().collect()),
    };
    let filter = MetricsFilter {
        sites,
        category: query.category,
        from: query.from,
        to: query.to,
    };
    Ok(Metrics {
        throughput: models
            .throughput(&filter, query.bucket)
            .map_err(projection_error)?,
        lead_times: models.lead_times(&filter).map_err(projection_error)?,
        sla: models.sla_report(&filter).map_err(projection_error)?,
        satisfaction: models
            .satisfaction(&filter, now)
            .map_err(projection_error)?,
        backlog: models.backlog(&filter, now).map_err(projection_error)?,
    })
}
