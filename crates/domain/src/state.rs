//! Request state folded from events: `evolve(state, &event) -> state`, and the
//! accessors projections read.

use crate::catalogue::{FormAnswers, ServiceTerms};
use crate::command::{Applicant, Materials};
use crate::event::Event;
use crate::ids::{ActorId, Category, RequestId, ServiceCode, SiteId, TrackingCode};
use crate::rating::{Appeal, Rating, Remediation, RemediationState};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a request is in its life. Refused, denied, withdrawn and closed are
/// terminal: once reached the status never changes again (ratings, appeals,
/// remediation and notes can still be recorded on a closed request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for intake (受理).
    Submitted,
    /// Sent back for missing materials (补正); the clock is stopped.
    AwaitingInfo,
    /// Accepted, waiting for review.
    Accepted,
    /// Reviewed, waiting for the approvals the service needs.
    Reviewed,
    /// Every required approval given (or none needed); ready for fulfilment.
    Approved,
    InFulfilment,
    /// All steps done; can be rated and closed.
    Fulfilled,
    Closed,
    Refused,
    Denied,
    Withdrawn,
}

impl Status {
    pub const ALL: [Status; 11] = [
        Status::Submitted,
        Status::AwaitingInfo,
        Status::Accepted,
        Status::Reviewed,
        Status::Approved,
        Status::InFulfilment,
        Status::Fulfilled,
        Status::Closed,
        Status::Refused,
        Status::Denied,
        Status::Withdrawn,
    ];

    /// The stable lowercase name used in APIs, metrics and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Submitted => "submitted",
            Status::AwaitingInfo => "awaiting_info",
            Status::Accepted => "accepted",
            Status::Reviewed => "reviewed",
            Status::Approved => "approved",
            Status::InFulfilment => "in_fulfilment",
            Status::Fulfilled => "fulfilled",
            Status::Closed => "closed",
            Status::Refused => "refused",
            Status::Denied => "denied",
            Status::Withdrawn => "withdrawn",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Closed | Status::Refused | Status::Denied | Status::Withdrawn
        )
    }

    /// Accepted and not yet fulfilled, denied or withdrawn: the processing clock applies.
    pub fn is_in_processing(self) -> bool {
        matches!(
            self,
            Status::Accepted | Status::Reviewed | Status::Approved | Status::InFulfilment
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The processing clock and the deadlines it gives. Deadlines are computed by
/// `decide` with the calendar and carried in events, so replaying a request never
/// depends on which calendar is loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    /// Promised limit including approved extensions, in working days.
    pub promised_days: u32,
    /// Statutory limit including approved extensions, in working days.
    pub statutory_days: u32,
    /// Working days granted by approved extensions.
    pub extension_days: u32,
    /// Working days used before the clock's current run.
    pub working_days_used: u32,
    /// When the clock's current run started; `None` while stopped.
    pub running_since: Option<Timestamp>,
    /// When the clock stopped for good (fulfilled, denied or withdrawn).
    pub finished_at: Option<Timestamp>,
    /// `None` while the clock is stopped.
    pub promised: Option<Timestamp>,
    pub statutory: Option<Timestamp>,
}

impl Deadlines {
    /// Stopped while the resident supplies missing materials (it will restart).
    pub fn paused(&self) -> bool {
        self.running_since.is_none() && self.finished_at.is_none()
    }

    /// Counting now.
    pub fn running(&self) -> bool {
        self.running_since.is_some()
    }
}

/// Supervision (督办) already raised on a request; each fires at most once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supervision {
    pub warning_at: Option<Timestamp>,
    pub yellow_card_at: Option<Timestamp>,
    pub red_card_at: Option<Timestamp>,
}

/// A pending extension request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingExtension {
    pub days: u32,
    pub reason: String,
    pub by: ActorId,
    pub at: Timestamp,
}

/// One approval given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub level: u8,
    pub by: ActorId,
    pub at: Timestamp,
    /// The supervisor's opinion.
    #[serde(default)]
    pub comment: Option<String>,
}

/// The caseworker's review (审核, approval level 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub by: ActorId,
    pub opinion: String,
    pub at: Timestamp,
}

/// A note on the request; internal ones are never shown to the resident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub by: ActorId,
    pub text: String,
    pub at: Timestamp,
    #[serde(default)]
    pub internal: bool,
}

/// Everything known about one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: RequestId,
    pub tracking_code: TrackingCode,
    pub site: SiteId,
    pub category: Category,
    pub service_code: ServiceCode,
    pub terms: ServiceTerms,
    pub answers: FormAnswers,
    pub applicant: Applicant,
    pub submitted_by: ActorId,
    pub on_behalf_of: Option<ActorId>,
    pub status: Status,
    pub assignee: Option<ActorId>,
    /// Deemed-acceptance deadline while waiting for intake.
    pub intake_deadline: Option<Timestamp>,
    /// Set once accepted.
    pub deadlines: Option<Deadlines>,
    /// The one list of missing materials, once asked for.
    pub missing_materials: Option<Vec<String>>,
    /// The status to return to when the materials arrive.
    pub resume_status: Option<Status>,
    pub approvals: Vec<Approval>,
    pub steps_done: Vec<String>,
    pub pending_extension: Option<PendingExtension>,
    pub supervision: Supervision,
    pub rating: Option<Rating>,
    pub remediation: Option<Remediation>,
    pub notes: Vec<Note>,
    pub deemed_accepted: bool,
    pub submitted_at: Timestamp,
    pub accepted_at: Option<Timestamp>,
    /// Refused, denied, or finally approved (for services with no approval, reviewed).
    pub decided_at: Option<Timestamp>,
    pub fulfilled_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
    /// The reason given with a refusal, denial or withdrawal.
    pub outcome_reason: Option<String>,
    /// The rule a refusal or denial rests on.
    #[serde(default)]
    pub legal_basis: Option<String>,
    /// The message that came with the list of missing materials.
    #[serde(default)]
    pub info_request_message: Option<String>,
    /// Documents handed over, by material code (with the submission, then with the
    /// missing materials; a later one replaces an earlier one of the same code).
    #[serde(default)]
    pub materials: Materials,
    /// The caseworker's review opinion, once reviewed.
    #[serde(default)]
    pub review: Option<Review>,
}

impl Request {
    /// The resident status lookup: a tracking code is only answered together with the
    /// last four digits of the applicant's phone. Compares without an early exit.
    pub fn matches_lookup(&self, tracking_code: &TrackingCode, phone_last4: &str) -> bool {
        let same_code = self.tracking_code == *tracking_code;
        let expected = self.applicant.phone_last4.as_bytes();
        let given = phone_last4.as_bytes();
        let same_phone = expected.len() == given.len()
            && expected
                .iter()
                .zip(given)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        same_code & same_phone
    }

    /// Steps of fulfilment not done yet, in catalogue order.
    pub fn steps_remaining(&self) -> Vec<&str> {
        self.terms
            .steps
            .iter()
            .filter(|s| !self.steps_done.contains(s))
            .map(String::as_str)
            .collect()
    }
}

/// The state of one request stream. `RequestState::default()` is "no request yet".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestState {
    request: Option<Request>,
}

impl RequestState {
    /// Folds a whole stream. Events that do not apply are skipped (see [`evolve`]).
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> RequestState {
        events.into_iter().fold(RequestState::default(), evolve)
    }

    pub fn request(&self) -> Option<&Request> {
        self.request.as_ref()
    }

    pub fn exists(&self) -> bool {
        self.request.is_some()
    }

    pub fn status(&self) -> Option<Status> {
        self.request.as_ref().map(|r| r.status)
    }

    pub fn site(&self) -> Option<&SiteId> {
        self.request.as_ref().map(|r| &r.site)
    }

    pub fn category(&self) -> Option<Category> {
        self.request.as_ref().map(|r| r.category)
    }

    pub fn service_code(&self) -> Option<&ServiceCode> {
        self.request.as_ref().map(|r| &r.service_code)
    }

    pub fn tracking_code(&self) -> Option<&TrackingCode> {
        self.request.as_ref().map(|r| &r.tracking_code)
    }

    pub fn assignee(&self) -> Option<&ActorId> {
        self.request.as_ref().and_then(|r| r.assignee.as_ref())
    }

    pub fn deadlines(&self) -> Option<&Deadlines> {
        self.request.as_ref().and_then(|r| r.deadlines.as_ref())
    }

    pub fn supervision(&self) -> Option<&Supervision> {
        self.request.as_ref().map(|r| &r.supervision)
    }

    pub fn rating(&self) -> Option<&Rating> {
        self.request.as_ref().and_then(|r| r.rating.as_ref())
    }

    pub fn remediation(&self) -> Option<&Remediation> {
        self.request.as_ref().and_then(|r| r.remediation.as_ref())
    }
}

/// Why an event does not apply to a state (a corrupt or foreign stream).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {event_type} does not apply to a request that is {current}")]
pub struct EvolveError {
    pub event_type: &'static str,
    /// `"absent"` when there is no request yet.
    pub current: &'static str,
}

/// Applies one event. An event that does not apply leaves the state unchanged, so a
/// projection never panics on a bad stream; use [`try_evolve`] to detect that.
pub fn evolve(state: RequestState, event: &Event) -> RequestState {
    match try_evolve(&state, event) {
        Ok(next) => next,
        Err(_) => state,
    }
}

/// Applies one event, or says why it does not apply.
pub fn try_evolve(state: &RequestState, event: &Event) -> Result<RequestState, EvolveError> {
    let reject = || EvolveError {
        event_type: event.event_type(),
        current: state.status().map_or("absent", Status::as_str),
    };
    let Some(current) = state.request.as_ref() else {
        return match event {
            Event::RequestSubmitted {
                request_id,
                tracking_code,
                site,
                category,
                service_code,
                terms,
                answers,
                applicant,
                submitted_by,
                on_behalf_of,
                at,
                intake_deadline,
                materials,
            } => Ok(RequestState {
                request: Some(Request {
                    id: *request_id,
                    tracking_code: tracking_code.clone(),
                    site: site.clone(),
                    category: *category,
                    service_code: service_code.clone(),
                    terms: terms.clone(),
                    answers: answers.clone(),
                    applicant: applicant.clone(),
                    submitted_by: submitted_by.clone(),
                    on_behalf_of: on_behalf_of.clone(),
                    status: Status::Submitted,
                    assignee: None,
                    intake_deadline: Some(*intake_deadline),
                    deadlines: None,
                    missing_materials: None,
                    resume_status: None,
                    approvals: Vec::new(),
                    steps_done: Vec::new(),
                    pending_extension: None,
                    supervision: Supervision::default(),
                    rating: None,
                    remediation: None,
                    notes: Vec::new(),
                    deemed_accepted: false,
                    submitted_at: *at,
                    accepted_at: None,
                    decided_at: None,
                    fulfilled_at: None,
                    closed_at: None,
                    outcome_reason: None,
                    legal_basis: None,
                    info_request_message: None,
                    materials: materials.clone(),
                    review: None,
                }),
            }),
            _ => Err(reject()),
        };
    };
    let mut r = current.clone();
    let status = r.status;
    let ensure = |ok: bool| if ok { Ok(()) } else { Err(reject()) };
    match event {
        Event::RequestSubmitted { .. } => return Err(reject()),
        Event::RequestClaimed { by, .. } => {
            ensure(!status.is_terminal() && r.assignee.is_none())?;
            r.assignee = Some(by.clone());
        }
        Event::RequestReassigned { to, .. } => {
            ensure(!status.is_terminal())?;
            r.assignee = Some(to.clone());
        }
        Event::RequestAccepted {
            deemed,
            at,
            promised_deadline,
            statutory_deadline,
            ..
        } => {
            ensure(status == Status::Submitted)?;
            r.status = Status::Accepted;
            r.deemed_accepted = *deemed;
            r.accepted_at = Some(*at);
            r.intake_deadline = None;
            r.deadlines = Some(Deadlines {
                promised_days: r.terms.promised_days,
                statutory_days: r.terms.statutory_days,
                extension_days: 0,
                working_days_used: 0,
                running_since: Some(*at),
                finished_at: None,
                promised: Some(*promised_deadline),
                statutory: Some(*statutory_deadline),
            });
        }
        Event::RequestRefused {
            reason,
            at,
            legal_basis,
            ..
        } => {
            ensure(status == Status::Submitted)?;
            r.status = Status::Refused;
            r.decided_at = Some(*at);
            r.intake_deadline = None;
            r.outcome_reason = Some(reason.clone());
            r.legal_basis = legal_basis.clone();
        }
        Event::InfoRequested {
            missing,
            working_days_used,
            message,
            ..
        } => {
            ensure(
                matches!(status, Status::Submitted | Status::Accepted)
                    && r.missing_materials.is_none(),
            )?;
            r.missing_materials = Some(missing.clone());
            r.info_request_message = message.clone();
            r.resume_status = Some(status);
            r.status = Status::AwaitingInfo;
            r.intake_deadline = None;
            if let Some(d) = r.deadlines.as_mut() {
                d.working_days_used = *working_days_used;
                d.running_since = None;
                d.promised = None;
                d.statutory = None;
            }
        }
        Event::InfoProvided {
            at,
            intake_deadline,
            promised_deadline,
            statutory_deadline,
            materials,
            ..
        } => {
            ensure(status == Status::AwaitingInfo)?;
            r.materials
                .extend(materials.iter().map(|(k, v)| (k.clone(), v.clone())));
            r.status = r.resume_status.take().unwrap_or(Status::Submitted);
            r.intake_deadline = *intake_deadline;
            if let Some(d) = r.deadlines.as_mut() {
                d.running_since = Some(*at);
                d.promised = *promised_deadline;
                d.statutory = *statutory_deadline;
            }
        }
        Event::RequestReviewed { by, opinion, at } => {
            ensure(status == Status::Accepted)?;
            r.review = Some(Review {
                by: by.clone(),
                opinion: opinion.clone(),
                at: *at,
            });
            if r.terms.approval_levels == 0 {
                r.status = Status::Approved;
                r.decided_at = Some(*at);
            } else {
                r.status = Status::Reviewed;
            }
        }
        Event::RequestApproved {
            by,
            level,
            at,
            comment,
        } => {
            let next_level = r.approvals.len() as u8 + 1;
            ensure(
                status == Status::Reviewed
                    && *level == next_level
                    && *level <= r.terms.approval_levels,
            )?;
            r.approvals.push(Approval {
                level: *level,
                by: by.clone(),
                at: *at,
                comment: comment.clone(),
            });
            if *level == r.terms.approval_levels {
                r.status = Status::Approved;
                r.decided_at = Some(*at);
            }
        }
        Event::RequestDenied {
            reason,
            at,
            legal_basis,
            ..
        } => {
            ensure(matches!(status, Status::Accepted | Status::Reviewed))?;
            r.status = Status::Denied;
            r.decided_at = Some(*at);
            r.outcome_reason = Some(reason.clone());
            r.legal_basis = legal_basis.clone();
            r.pending_extension = None;
            stop_clock(&mut r, *at);
        }
        Event::FulfilmentStarted { .. } => {
            ensure(status == Status::Approved)?;
            r.status = Status::InFulfilment;
        }
        Event::StepCompleted { step, .. } => {
            ensure(
                status == Status::InFulfilment
                    && r.terms.steps.contains(step)
                    && !r.steps_done.contains(step),
            )?;
            r.steps_done.push(step.clone());
        }
        Event::RequestFulfilled { at } => {
            ensure(status == Status::InFulfilment && r.steps_remaining().is_empty())?;
            r.status = Status::Fulfilled;
            r.fulfilled_at = Some(*at);
            r.pending_extension = None;
            stop_clock(&mut r, *at);
        }
        Event::NoteAdded {
            by,
            text,
            at,
            internal,
        } => {
            r.notes.push(Note {
                by: by.clone(),
                text: text.clone(),
                at: *at,
                internal: *internal,
            });
        }
        Event::ExtensionRequested {
            by,
            days,
            reason,
            at,
        } => {
            ensure(status.is_in_processing() || status == Status::AwaitingInfo)?;
            ensure(r.deadlines.is_some() && r.pending_extension.is_none())?;
            r.pending_extension = Some(PendingExtension {
                days: *days,
                reason: reason.clone(),
                by: by.clone(),
                at: *at,
            });
        }
        Event::ExtensionApproved {
            days,
            promised_deadline,
            statutory_deadline,
            ..
        } => {
            ensure(r.pending_extension.is_some())?;
            r.pending_extension = None;
            let d = r.deadlines.as_mut().ok_or_else(reject)?;
            d.promised_days += days;
            d.statutory_days += days;
            d.extension_days += days;
            d.promised = *promised_deadline;
            d.statutory = *statutory_deadline;
        }
        Event::ExtensionRejected { .. } => {
            ensure(r.pending_extension.is_some())?;
            r.pending_extension = None;
        }
        Event::RequestRated {
            by,
            grade,
            comment,
            at,
        } => {
            ensure(r.fulfilled_at.is_some() && r.rating.is_none())?;
            r.rating = Some(Rating {
                grade: *grade,
                comment: comment.clone(),
                by: by.clone(),
                at: *at,
                appeal: None,
                removed: false,
            });
        }
        Event::RemediationOpened { at, due } => {
            ensure(r.rating.is_some() && r.remediation.is_none())?;
            r.remediation = Some(Remediation {
                opened_at: *at,
                due: *due,
                state: RemediationState::Open,
            });
        }
        Event::RemediationResolved { by, summary, at } => {
            let remediation = r.remediation.as_mut().ok_or_else(reject)?;
            ensure(remediation.state == RemediationState::Open)?;
            remediation.state = RemediationState::Resolved {
                by: by.clone(),
                at: *at,
                summary: summary.clone(),
            };
        }
        Event::RatingAppealed { by, reason, at } => {
            let rating = r.rating.as_mut().ok_or_else(reject)?;
            ensure(rating.appeal.is_none() && !rating.removed)?;
            rating.appeal = Some(Appeal {
                reason: reason.clone(),
                by: by.clone(),
                at: *at,
                upheld: None,
            });
        }
        Event::AppealDecided { uphold, at, .. } => {
            let rating = r.rating.as_mut().ok_or_else(reject)?;
            let appeal = rating.appeal.as_mut().ok_or_else(reject)?;
            ensure(appeal.upheld.is_none())?;
            appeal.upheld = Some(*uphold);
            if !uphold {
                rating.removed = true;
                if let Some(remediation) = r.remediation.as_mut() {
                    if remediation.state == RemediationState::Open {
                        remediation.state = RemediationState::Cancelled { at: *at };
                    }
                }
            }
        }
        Event::RequestWithdrawn { reason, at, .. } => {
            ensure(matches!(
                status,
                Status::Submitted | Status::AwaitingInfo | Status::Accepted | Status::Reviewed
            ))?;
            r.status = Status::Withdrawn;
            r.outcome_reason = reason.clone();
            r.closed_at = Some(*at);
            r.intake_deadline = None;
            r.pending_extension = None;
            stop_clock(&mut r, *at);
        }
        Event::RequestClosed { at, .. } => {
            ensure(status == Status::Fulfilled)?;
            r.status = Status::Closed;
            r.closed_at = Some(*at);
        }
        Event::WarningRaised { at, .. } => {
            ensure(r.supervision.warning_at.is_none() && r.deadlines.is_some())?;
            r.supervision.warning_at = Some(*at);
        }
        Event::YellowCardIssued { at, .. } => {
            ensure(r.supervision.yellow_card_at.is_none() && r.deadlines.is_some())?;
            r.supervision.yellow_card_at = Some(*at);
        }
        Event::RedCardIssued { at, .. } => {
            ensure(r.supervision.red_card_at.is_none() && r.deadlines.is_some())?;
            r.supervision.red_card_at = Some(*at);
        }
    }
    Ok(RequestState { request: Some(r) })
}

/// The clock stops for good when the work ends; the last deadlines stay visible.
fn stop_clock(r: &mut Request, at: Timestamp) {
    if let Some(d) = r.deadlines.as_mut() {
        d.running_since = None;
        d.finished_at = Some(at);
    }
}
