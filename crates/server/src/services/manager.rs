//! ManagerService handlers: the managers' reports: throughput, lead times, SLA cards,
//! satisfaction, backlog. A manager reads only their sites (`*` = the province);
//! supervisors read the reports of their sites.
//!
//! The figures come from a [`FiguresSource`]: anju-server's own application
//! ([`AppState`]), or read models kept elsewhere ([`ReadModelFigures`], which
//! anju-insight serves from the events of every node). Validation, scope and the
//! proto shape of the answers are here, once, for both.

use std::sync::Arc;
use std::time::Duration;

use anju_app::{Bucket, Clock, Metrics, MetricsQuery};
use anju_domain::{Actor, Category, Grade, Role, Scope, SiteId};
use anju_projections::{ReadModels, SpanStats};
use anju_proto::v1::manager_service_server::ManagerService;
use anju_proto::v1::*;
use tonic::{Request, Response, Status as GrpcStatus};

use super::{caller, MANAGER_ROLES};
use crate::convert;
use crate::error::{ApiError, Violations};
use crate::state::{call_timeout, AppState};

/// Where a [`ManagerHandler`] reads its figures.
#[tonic::async_trait]
pub trait FiguresSource: Send + Sync + 'static {
    /// Waits until the figures include the API position `min_position` (0: at once),
    /// for at most `budget`; DEADLINE_EXCEEDED when the budget runs out first.
    async fn wait_for_min_position(
        &self,
        min_position: u64,
        budget: Duration,
    ) -> Result<(), ApiError>;

    /// The figures of `query` as `actor` may see them (scope rules of
    /// [`anju_app::metrics_from`]).
    async fn metrics(&self, actor: &Actor, query: MetricsQuery) -> Result<Metrics, ApiError>;
}

/// anju-server's own figures: the node's read models, after its log position.
#[tonic::async_trait]
impl FiguresSource for AppState {
    async fn wait_for_min_position(
        &self,
        min_position: u64,
        budget: Duration,
    ) -> Result<(), ApiError> {
        let Some(log_position) = convert::log_position(min_position) else {
            return Ok(());
        };
        self.application
            .wait_for(Some(log_position), Some(budget))
            .await
            .map_err(ApiError::from)
    }

    async fn metrics(&self, actor: &Actor, query: MetricsQuery) -> Result<Metrics, ApiError> {
        Ok(self.application.metrics(actor, query, None).await?)
    }
}

/// Figures from read models fed from outside this process: anju-insight's, folded from
/// the events of many nodes, each with its own log. A `min_position` names a position in
/// one node's log and means nothing for them, so any value but 0 is refused with
/// INVALID_ARGUMENT rather than silently ignored: a client asking to read its own write
/// learns at once that it must ask that write's node.
#[derive(Clone)]
pub struct ReadModelFigures {
    models: ReadModels,
    clock: Arc<dyn Clock>,
}

impl ReadModelFigures {
    pub fn new(models: ReadModels, clock: Arc<dyn Clock>) -> ReadModelFigures {
        ReadModelFigures { models, clock }
    }
}

impl std::fmt::Debug for ReadModelFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModelFigures").finish_non_exhaustive()
    }
}

#[tonic::async_trait]
impl FiguresSource for ReadModelFigures {
    async fn wait_for_min_position(
        &self,
        min_position: u64,
        _budget: Duration,
    ) -> Result<(), ApiError> {
        if min_position == 0 {
            return Ok(());
        }
        Err(ApiError::invalid(
            "min_position",
            "these figures merge the logs of many anju-server nodes, so a position in one \
             node's log cannot be waited for here; send 0, or ask that node's own \
             ManagerService to read your own writes",
        ))
    }

    async fn metrics(&self, actor: &Actor, query: MetricsQuery) -> Result<Metrics, ApiError> {
        Ok(anju_app::metrics_from(
            &self.models,
            actor,
            query,
            self.clock.now(),
        )?)
    }
}

/// Serves `anju.v1.ManagerService` from a [`FiguresSource`].
#[derive(Clone)]
pub struct ManagerHandler {
    source: Arc<dyn FiguresSource>,
    /// The longest a call waits for `min_position` (a shorter client deadline wins).
    request_timeout: Duration,
}

impl std::fmt::Debug for ManagerHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerHandler")
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// One row of a report: its group label and the figures for it.
struct Row {
    group: String,
    metrics: Metrics,
}

impl ManagerHandler {
    /// anju-server's handler, over the node's own application.
    pub fn new(state: AppState) -> ManagerHandler {
        let request_timeout = state.config.request_timeout;
        ManagerHandler::with_source(Arc::new(state), request_timeout)
    }

    /// A handler over any source of figures, e.g. anju-insight's [`ReadModelFigures`].
    pub fn with_source(
        source: Arc<dyn FiguresSource>,
        request_timeout: Duration,
    ) -> ManagerHandler {
        ManagerHandler {
            source,
            request_timeout,
        }
    }

    /// Runs the figures for every group of the filter, after `min_position`.
    async fn rows<T>(
        &self,
        request: &Request<T>,
        filter: Option<&ReportFilter>,
        grouping: i32,
        bucket: Bucket,
        min_position: u64,
    ) -> Result<(Vec<Row>, Row), ApiError> {
        let mut actor: Actor = caller(request, MANAGER_ROLES)?;
        // Reports are a manager's view; a supervisor gets it for their own sites.
        if actor.role == Role::Supervisor {
            actor.role = Role::Manager;
        }
        let filter = filter.cloned().unwrap_or_default();
        let mut violations = Violations::new();
        if !filter.service_codes.is_empty() {
            violations.add(
                "filter.service_codes",
                "filtering by service is not supported yet; filter by category",
            );
        }
        let mut categories = Vec::new();
        for (i, text) in filter.categories.iter().enumerate() {
            match Category::parse(text) {
                Some(category) => categories.push(category),
                None => violations.add(
                    format!("filter.categories[{i}]"),
                    "is not a service category",
                ),
            }
        }
        if categories.len() > 1 {
            violations.add("filter.categories", "name at most one category");
        }
        let grouping = match ReportGrouping::try_from(grouping) {
            Ok(ReportGrouping::Service) => {
                violations.add("grouping", "grouping by service is not supported yet");
                ReportGrouping::Unspecified
            }
            Ok(grouping) => grouping,
            Err(_) => {
                violations.add(
                    "grouping",
                    format!("{grouping} is not a report grouping (NONE, SITE or CATEGORY)"),
                );
                ReportGrouping::Unspecified
            }
        };
        let range = filter.time_range.unwrap_or_default();
        if let (Some(from), Some(to)) = (&range.from, &range.to) {
            if (from.seconds, from.nanos) > (to.seconds, to.nanos) {
                violations.add(
                    "filter.time_range",
                    "ends before it starts: `to` must not be earlier than `from`",
                );
            }
        }
        violations.into_result()?;
        for site in &filter.site_ids {
            if !actor.sites.contains(&SiteId::new(site)) {
                return Err(ApiError::PermissionDenied(format!(
                    "token does not cover site {site:?}"
                )));
            }
        }
        // Leave a little of the budget to answer in, so the client sees our
        // DEADLINE_EXCEEDED with its message rather than its own timeout.
        let budget =
            call_timeout(request, self.request_timeout).saturating_sub(Duration::from_millis(20));
        self.source
            .wait_for_min_position(min_position, budget)
            .await?;
        let base = MetricsQuery {
            sites: (!filter.site_ids.is_empty())
                .then(|| filter.site_ids.iter().map(SiteId::new).collect()),
            category: categories.first().copied(),
            from: range.from.as_ref().map(convert::from_timestamp),
            to: range.to.as_ref().map(convert::from_timestamp),
            bucket,
        };
        let source = &self.source;
        let total = Row {
            group: String::new(),
            metrics: source.metrics(&actor, base.clone()).await?,
        };
        let mut groups: Vec<(String, MetricsQuery)> = Vec::new();
        match grouping {
            ReportGrouping::Site => {
                let sites: Vec<SiteId> = match (&base.sites, &actor.sites) {
                    (Some(sites), _) => sites.clone(),
                    (None, Scope::Only(sites)) => sites.iter().cloned().collect(),
                    (None, Scope::All) => {
                        return Err(ApiError::invalid(
                            "filter.site_ids",
                            "name the sites to group a province-wide report by",
                        ))
                    }
                };
                for site in sites {
                    let mut query = base.clone();
                    query.sites = Some(vec![site.clone()]);
                    groups.push((site.to_string(), query));
                }
            }
            ReportGrouping::Category => {
                for category in Category::ALL {
                    if base.category.is_some_and(|c| c != category) {
                        continue;
                    }
                    let mut query = base.clone();
                    query.category = Some(category);
                    groups.push((category.as_str().to_string(), query));
                }
            }
            _ => {}
        }
        let mut rows = Vec::new();
        for (group, query) in groups {
            rows.push(Row {
                group,
                metrics: source.metrics(&actor, query).await?,
            });
        }
        if rows.is_empty() {
            rows.push(Row {
                group: String::new(),
                metrics: total.metrics.clone(),
            });
        }
        Ok((rows, total))
    }
}

/// The bucket a throughput report asked for; unset means a day.
fn bucket_of(value: i32) -> Result<Bucket, ApiError> {
    match TimeBucket::try_from(value) {
        Ok(TimeBucket::Hour) => Ok(Bucket::Hour),
        Ok(TimeBucket::Week) => Ok(Bucket::Week),
        Ok(TimeBucket::Day | TimeBucket::Unspecified) => Ok(Bucket::Day),
        Err(_) => Err(ApiError::invalid(
            "bucket",
            format!("{value} is not a time bucket (HOUR, DAY or WEEK)"),
        )),
    }
}

fn bucket_width_ms(bucket: Bucket) -> i64 {
    match bucket {
        Bucket::Hour => 3_600_000,
        Bucket::Day => 86_400_000,
        Bucket::Week => 7 * 86_400_000,
    }
}

fn span(segment: LeadTimeSegment, stats: &SpanStats) -> LeadTimeStats {
    LeadTimeStats {
        segment: segment as i32,
        count: stats.count,
        p50_working_days: f64::from(stats.p50_working_days),
        p90_working_days: f64::from(stats.p90_working_days),
        p50_hours: stats.p50_hours,
        p90_hours: stats.p90_hours,
    }
}

fn sla_row(row: &Row) -> SlaReportRow {
    let sla = &row.metrics.sla;
    SlaReportRow {
        group: row.group.clone(),
        warnings: sla.warnings,
        yellow_cards: sla.yellow_cards,
        red_cards: sla.red_cards,
        deadlines_due: sla.completed_on_time + sla.completed_late,
        deadlines_met: sla.completed_on_time,
        on_time_rate: sla.on_time_rate.unwrap_or(1.0),
        overdue_now: row.metrics.backlog.overdue,
    }
}

fn satisfaction_row(row: &Row) -> SatisfactionRow {
    let s = &row.metrics.satisfaction;
    let count = |grade: Grade| {
        s.grades
            .iter()
            .find(|(g, _)| *g == grade)
            .map_or(0, |(_, n)| *n)
    };
    let good = count(Grade::VerySatisfied) + count(Grade::Satisfied) + count(Grade::Neutral);
    SatisfactionRow {
        group: row.group.clone(),
        grades: Grade::ALL
            .iter()
            .map(|g| GradeCount {
                grade: convert::grade(*g) as i32,
                count: count(*g),
            })
            .collect(),
        rated: s.rated,
        unrated: s.unrated,
        satisfaction_rate: if s.rated == 0 {
            0.0
        } else {
            good as f64 / s.rated as f64
        },
        remediation: Some(RemediationSummary {
            open: s.remediations_open,
            resolved: s.remediations_resolved,
            overdue: s.remediations_overdue,
            appeals_pending: s
                .appeals
                .saturating_sub(s.appeals_rating_kept + s.appeals_rating_removed),
            appeals_upheld: s.appeals_rating_removed,
            appeals_rejected: s.appeals_rating_kept,
        }),
    }
}

fn backlog_row(row: &Row) -> BacklogRow {
    let backlog = &row.metrics.backlog;
    BacklogRow {
        group: row.group.clone(),
        cells: backlog
            .cells
            .iter()
            .map(|cell| BacklogCell {
                state: convert::state_i32(cell.status),
                age_bucket: cell.age.as_str().to_string(),
                count: cell.count,
                oldest_submitted_at: Some(convert::timestamp(cell.oldest_submitted_hour)),
            })
            .collect(),
        open: backlog.total,
        overdue: backlog.overdue,
    }
}

#[tonic::async_trait]
impl ManagerService for ManagerHandler {
    async fn get_throughput(
        &self,
        request: Request<GetThroughputRequest>,
    ) -> Result<Response<GetThroughputResponse>, GrpcStatus> {
        let message = request.get_ref().clone();
        let bucket = bucket_of(message.bucket)?;
        let (_, total) = self
            .rows(
                &request,
                message.filter.as_ref(),
                ReportGrouping::None as i32,
                bucket,
                message.min_position,
            )
            .await?;
        let width = bucket_width_ms(bucket);
        let mut sum = anju_app::ThroughputBucket::empty(anju_domain::Timestamp(0));
        let buckets: Vec<ThroughputBucket> = total
            .metrics
            .throughput
            .iter()
            .map(|b| {
                sum.submitted += b.submitted;
                sum.accepted += b.accepted;
                sum.approved += b.approved;
                sum.fulfilled += b.fulfilled;
                sum.closed += b.closed;
                sum.refused += b.refused + b.denied + b.withdrawn;
                ThroughputBucket {
                    start: Some(convert::timestamp(b.start)),
                    end: Some(convert::timestamp(anju_domain::Timestamp(
                        b.start.0 + width,
                    ))),
                    submitted: b.submitted,
                    accepted: b.accepted,
                    approved: b.approved,
                    fulfilled: b.fulfilled,
                    closed: b.closed,
                    ended_without_service: b.refused + b.denied + b.withdrawn,
                }
            })
            .collect();
        let total = ThroughputBucket {
            start: buckets.first().and_then(|b| b.start),
            end: buckets.last().and_then(|b| b.end),
            submitted: sum.submitted,
            accepted: sum.accepted,
            approved: sum.approved,
            fulfilled: sum.fulfilled,
            closed: sum.closed,
            ended_without_service: sum.refused,
        };
        Ok(Response::new(GetThroughputResponse {
            buckets,
            total: Some(total),
        }))
    }

    async fn get_lead_times(
        &self,
        request: Request<GetLeadTimesRequest>,
    ) -> Result<Response<GetLeadTimesResponse>, GrpcStatus> {
        let message = request.get_ref().clone();
        let (rows, _) = self
            .rows(
                &request,
                message.filter.as_ref(),
                message.grouping,
                Bucket::Day,
                message.min_position,
            )
            .await?;
        let rows = rows
            .iter()
            .map(|row| {
                let lead = &row.metrics.lead_times;
                LeadTimeRow {
                    group: row.group.clone(),
                    segments: vec![
                        span(LeadTimeSegment::SubmitToAccept, &lead.submit_to_accept),
                        span(LeadTimeSegment::AcceptToDecision, &lead.accept_to_decision),
                        span(
                            LeadTimeSegment::DecisionToFulfilled,
                            &lead.decision_to_fulfilled,
                        ),
                        span(
                            LeadTimeSegment::SubmitToFulfilled,
                            &lead.submit_to_fulfilled,
                        ),
                    ],
                }
            })
            .collect();
        Ok(Response::new(GetLeadTimesResponse { rows }))
    }

    async fn get_sla_report(
        &self,
        request: Request<GetSlaReportRequest>,
    ) -> Result<Response<GetSlaReportResponse>, GrpcStatus> {
        let message = request.get_ref().clone();
        let (rows, total) = self
            .rows(
                &request,
                message.filter.as_ref(),
                message.grouping,
                Bucket::Day,
                message.min_position,
            )
            .await?;
        Ok(Response::new(GetSlaReportResponse {
            rows: rows.iter().map(sla_row).collect(),
            total: Some(sla_row(&total)),
        }))
    }

    async fn get_satisfaction(
        &self,
        request: Request<GetSatisfactionRequest>,
    ) -> Result<Response<GetSatisfactionResponse>, GrpcStatus> {
        let message = request.get_ref().clone();
        let (rows, total) = self
            .rows(
                &request,
                message.filter.as_ref(),
                message.grouping,
                Bucket::Day,
                message.min_position,
            )
            .await?;
        Ok(Response::new(GetSatisfactionResponse {
            rows: rows.iter().map(satisfaction_row).collect(),
            total: Some(satisfaction_row(&total)),
        }))
    }

    async fn get_backlog(
        &self,
        request: Request<GetBacklogRequest>,
    ) -> Result<Response<GetBacklogResponse>, GrpcStatus> {
        let message = request.get_ref().clone();
        let (rows, total) = self
            .rows(
                &request,
                message.filter.as_ref(),
                message.grouping,
                Bucket::Day,
                message.min_position,
            )
            .await?;
        Ok(Response::new(GetBacklogResponse {
            rows: rows.iter().map(backlog_row).collect(),
            total: Some(backlog_row(&total)),
        }))
    }
}
