//! `decide(state, command, context) -> events or error`: every rule of the workflow,
//! including who may do what.

use crate::actor::{Actor, Role};
use crate::calendar::Calendar;
use crate::catalogue::{validate_sealed_form, Catalogue, FieldViolation, Problem};
use crate::command::{Action, Applicant, Command, Materials, Submission, TimerKind};
use crate::event::Event;
use crate::rating::REMEDIATION_WORKING_DAYS;
use crate::state::{Request, RequestState, Status};
use crate::supervision::{due_at, DEEMED_ACCEPTANCE_WORKING_DAYS};
use crate::text::Lines;
use crate::time::Timestamp;

/// Longest free text in reasons, opinions and summaries, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;
/// Most working days one extension may add.
pub const MAX_EXTENSION_DAYS: u32 = 30;

/// What `decide` needs besides the state and the command.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub catalogue: &'a Catalogue,
    pub calendar: &'a Calendar,
}

/// Why a command was refused. Suggested gRPC codes are in each variant's docs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    /// INVALID_ARGUMENT: arguments or form answers are wrong; every violation is listed.
    #[error("invalid: {}", join(.0))]
    Invalid(Vec<FieldViolation>),
    /// FAILED_PRECONDITION: the command does not apply in the request's current status.
    #[error("cannot {command} a request that is {current}")]
    WrongState {
        current: Status,
        command: &'static str,
    },
    /// FAILED_PRECONDITION: the status is right but something must happen first
    /// (approval levels out of order, no pending extension, request not claimed, ...).
    #[error("{reason}")]
    Precondition { reason: String },
    /// PERMISSION_DENIED: this actor may not do this to this request.
    #[error("forbidden: {reason}")]
    Forbidden { reason: String },
    /// NOT_FOUND: no request with this id.
    #[error("no such request")]
    NotFound,
    /// ABORTED (or ALREADY_EXISTS for a duplicate submission): it clashes with what
    /// someone else already did (claimed by another caseworker, already rated, ...).
    #[error("conflict: {reason}")]
    Conflict { reason: String },
}

fn join(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn forbidden(reason: impl Into<String>) -> DomainError {
    DomainError::Forbidden {
        reason: reason.into(),
    }
}

fn conflict(reason: impl Into<String>) -> DomainError {
    DomainError::Conflict {
        reason: reason.into(),
    }
}

fn precondition(reason: impl Into<String>) -> DomainError {
    DomainError::Precondition {
        reason: reason.into(),
    }
}

fn invalid(field: &str, problem: Problem) -> DomainError {
    DomainError::Invalid(vec![FieldViolation::new(field, problem)])
}

/// Decides what happens when `command` meets `state`. Pure: the same inputs always
/// give the same answer, and every event returned applies to `state` with `evolve`.
pub fn decide(
    state: &RequestState,
    command: &Command,
    context: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    if let Action::Submit(submission) = &command.action {
        if state.exists() {
            return Err(conflict(format!(
                "request {} already exists",
                command.request_id
            )));
        }
        return submit(command, submission, context);
    }
    let request = state.request().ok_or(DomainError::NotFound)?;
    authorize_on(request, command)?;
    decide_on(request, command, context)
}

/// May this actor do this command on this request? Checks role, site and category
/// scope and, for residents, that the request is theirs. It does not check the
/// request's status or assignment; `decide` does that next.
pub fn authorize(state: &RequestState, command: &Command) -> Result<(), DomainError> {
    match (&command.action, state.request()) {
        (Action::Submit(submission), _) => authorize_submit(&command.actor, submission),
        (_, Some(request)) => authorize_on(request, command),
        (_, None) => Err(DomainError::NotFound),
    }
}

fn authorize_submit(actor: &Actor, submission: &Submission) -> Result<(), DomainError> {
    match actor.role {
        Role::Resident => {
            if submission.applicant.resident_id != actor.id {
                return Err(forbidden(
                    "a resident may only submit requests for themselves",
                ));
            }
            if submission.on_behalf_of.is_some() {
                return Err(forbidden("only kiosk staff submit on a resident's behalf"));
            }
            Ok(())
        }
        Role::Kiosk => {
            if !actor.sites.contains(&submission.site) {
                return Err(forbidden(format!(
                    "kiosk {} does not serve site {}",
                    actor.id, submission.site
                )));
            }
            Ok(())
        }
        role => Err(forbidden(format!("a {role} cannot submit requests"))),
    }
}

fn authorize_on(request: &Request, command: &Command) -> Result<(), DomainError> {
    let actor = &command.actor;
    let action = &command.action;
    let name = action.name();
    let in_site = || {
        if actor.sites.contains(&request.site) {
            Ok(())
        } else {
            Err(forbidden(format!(
                "{} {} does not serve site {}",
                actor.role, actor.id, request.site
            )))
        }
    };
    let in_category = || {
        if actor.categories.contains(&request.category) {
            Ok(())
        } else {
            Err(forbidden(format!(
                "{} {} does not handle category {}",
                actor.role, actor.id, request.category
            )))
        }
    };
    // The applicant's account, or anyone holding the receipt: the tracking code with
    // the last four digits of the applicant's phone (the resident status look-up).
    let holds_receipt = || {
        command.lookup.as_ref().is_some_and(|lookup| {
            request.matches_lookup(&lookup.tracking_code, &lookup.phone_last4)
        })
    };
    let is_applicant = || {
        if request.applicant.resident_id == actor.id || holds_receipt() {
            Ok(())
        } else {
            Err(forbidden("only the applicant may do this"))
        }
    };
    let with_receipt = || {
        if holds_receipt() {
            Ok(())
        } else {
            Err(forbidden(
                "a kiosk acts on a request only with its tracking code and phone digits",
            ))
        }
    };
    let not_allowed = || Err(forbidden(format!("a {} cannot {name}", actor.role)));
    match (actor.role, action) {
        (_, Action::Submit(_)) => Err(conflict("the request already exists")),
        (Role::System, Action::FireTimer { .. }) => Ok(()),
        (_, Action::FireTimer { .. }) => Err(forbidden("only the scheduler fires timers")),
        (
            Role::Resident,
            Action::ProvideInfo { .. } | Action::Withdraw { .. } | Action::Rate { .. },
        ) => is_applicant(),
        (Role::Kiosk, Action::ProvideInfo { .. } | Action::AddNote { .. }) => in_site(),
        (Role::Kiosk, Action::Withdraw { .. } | Action::Rate { .. }) => {
            in_site().and_then(|_| with_receipt())
        }
        (
            Role::Caseworker,
            Action::Claim
            | Action::Accept { .. }
            | Action::Refuse { .. }
            | Action::RequestInfo { .. }
            | Action::Review { .. }
            | Action::Deny { .. }
            | Action::StartFulfilment { .. }
            | Action::CompleteStep { .. }
            | Action::AddNote { .. }
            | Action::Reassign { .. }
            | Action::RequestExtension { .. }
            | Action::ResolveRemediation { .. }
            | Action::AppealRating { .. }
            | Action::Close,
        ) => in_site().and_then(|_| in_category()),
        (
            Role::Supervisor,
            Action::Approve { .. }
            | Action::Deny { .. }
            | Action::DecideExtension { .. }
            | Action::Reassign { .. }
            | Action::AddNote { .. }
            | Action::ResolveRemediation { .. }
            | Action::Close,
        ) => in_site(),
        (Role::Manager, Action::DecideAppeal { .. }) => in_site(),
        (Role::Admin, Action::Reassign { .. } | Action::AddNote { .. } | Action::Close) => Ok(()),
        _ => not_allowed(),
    }
}

fn submit(
    command: &Command,
    submission: &Submission,
    context: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    authorize_submit(&command.actor, submission)?;
    let mut violations = Vec::new();
    let definition = match context
        .catalogue
        .get_version(&submission.service_code, submission.definition_version)
    {
        Some(definition) => Some(definition),
        None if context.catalogue.get(&submission.service_code).is_none() => {
            violations.push(FieldViolation::new(
                "service_code",
                Problem::Other {
                    message: format!("no service {} in the catalogue", submission.service_code),
                },
            ));
            None
        }
        None => {
            violations.push(FieldViolation::new(
                "definition_version",
                Problem::Other {
                    message: format!(
                        "service {} has no version {}",
                        submission.service_code, submission.definition_version
                    ),
                },
            ));
            None
        }
    };
    if let Some(definition) = definition {
        if !definition.offered_at(&submission.site.0) {
            violations.push(FieldViolation::new(
                "site",
                Problem::Other {
                    message: format!(
                        "service {} is not offered at site {}",
                        submission.service_code, submission.site
                    ),
                },
            ));
        }
    }
    let applicant = &submission.applicant;
    let name_length = applicant.display_name.trim().chars().count();
    if name_length == 0 {
        violations.push(FieldViolation::new(
            "applicant.display_name",
            Problem::Missing,
        ));
    } else if name_length > 40 {
        violations.push(FieldViolation::new(
            "applicant.display_name",
            Problem::TooLong {
                max_length: 40,
                length: name_length as u32,
            },
        ));
    } else if let Some(c) = crate::text::refused_char(&applicant.display_name, Lines::One) {
        violations.push(FieldViolation::new(
            "applicant.display_name",
            Problem::Unprintable {
                character: crate::text::code_point(c),
            },
        ));
    }
    if applicant.phone_last4.len() != 4
        || !applicant.phone_last4.bytes().all(|b| b.is_ascii_digit())
    {
        violations.push(FieldViolation::new(
            "applicant.phone_last4",
            Problem::Other {
                message: "must be exactly 4 digits".to_string(),
            },
        ));
    }
    if applicant.sealed_contact.is_empty() {
        violations.push(FieldViolation::new(
            "applicant.sealed_contact",
            Problem::Missing,
        ));
    }
    // Only digests reach an event: a clear identity number put here by mistake is refused.
    if let Some(i) = applicant
        .id_number_digests
        .iter()
        .position(|d| !Applicant::is_digest(d))
    {
        violations.push(FieldViolation::new(
            format!("applicant.id_number_digests[{i}]"),
            Problem::Other {
                message: "must be 64 lowercase hex characters (a keyed digest)".to_string(),
            },
        ));
    }
    if command.actor.role == Role::Kiosk
        && submission.on_behalf_of.as_ref() != Some(&applicant.resident_id)
    {
        violations.push(FieldViolation::new(
            "on_behalf_of",
            Problem::Other {
                message: "kiosk submissions must name the applicant they are made for".to_string(),
            },
        ));
    }
    violations.append(&mut material_violations("materials", &submission.materials));
    let answers = match definition.map(|d| validate_sealed_form(d, &submission.answers)) {
        Some(Ok(form)) => Some(form),
        Some(Err(mut form_violations)) => {
            violations.append(&mut form_violations);
            None
        }
        None => None,
    };
    let (Some(definition), Some(answers), true) = (definition, answers, violations.is_empty())
    else {
        return Err(DomainError::Invalid(violations));
    };
    let at = command.at;
    Ok(vec![Event::RequestSubmitted {
        request_id: command.request_id,
        tracking_code: submission.tracking_code.clone(),
        site: submission.site.clone(),
        category: definition.category,
        service_code: submission.service_code.clone(),
        terms: definition.terms(),
        answers: answers.answers().clone(),
        applicant: Applicant {
            display_name: applicant.display_name.trim().to_string(),
            ..applicant.clone()
        },
        submitted_by: command.actor.id.clone(),
        on_behalf_of: submission.on_behalf_of.clone(),
        at,
        intake_deadline: context
            .calendar
            .add_working_days(at, DEEMED_ACCEPTANCE_WORKING_DAYS),
        materials: submission.materials.clone(),
    }])
}

/// Most materials one submission or one reply may hand over.
pub const MAX_MATERIALS: usize = 50;

/// Every problem with a set of materials, fields named `{field}[{code}].{part}`.
fn material_violations(field: &str, materials: &Materials) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    if materials.len() > MAX_MATERIALS {
        violations.push(FieldViolation::new(
            field,
            Problem::Other {
                message: format!("at most {MAX_MATERIALS} materials, not {}", materials.len()),
            },
        ));
    }
    let printable = |text: &str| !text.chars().any(char::is_control);
    for (code, attachment) in materials {
        let code_ok = !code.is_empty()
            && code.chars().count() <= 64
            && code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !code_ok {
            violations.push(FieldViolation::new(
                format!("{field}[{code}]"),
                Problem::Other {
                    message: "a material code is 1 to 64 letters, digits, '-', '_' or '.'"
                        .to_string(),
                },
            ));
            continue;
        }
        let part = |name: &str| format!("{field}[{code}].{name}");
        let reference = attachment.reference.trim();
        if reference.is_empty() {
            violations.push(FieldViolation::new(part("reference"), Problem::Missing));
        }
        for (name, value, max) in [
            ("reference", attachment.reference.as_str(), 512),
            ("file_name", attachment.file_name.as_str(), 255),
            ("media_type", attachment.media_type.as_str(), 100),
        ] {
            let length = value.chars().count();
            if length > max {
                violations.push(FieldViolation::new(
                    part(name),
                    Problem::TooLong {
                        max_length: max as u32,
                        length: length as u32,
                    },
                ));
            } else if !printable(value) {
                violations.push(FieldViolation::new(
                    part(name),
                    Problem::Other {
                        message: "must not contain control characters".to_string(),
                    },
                ));
            }
        }
        let sha = &attachment.sha256;
        let well_formed = sha.is_empty()
            || (sha.len() == 64 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        if !well_formed {
            violations.push(FieldViolation::new(
                part("sha256"),
                Problem::Other {
                    message: "must be 64 lowercase hex digits".to_string(),
                },
            ));
        }
    }
    violations
}

fn require_status(
    request: &Request,
    command: &Command,
    allowed: &[Status],
) -> Result<(), DomainError> {
    if allowed.contains(&request.status) {
        Ok(())
    } else {
        Err(DomainError::WrongState {
            current: request.status,
            command: command.action.name(),
        })
    }
}

/// Caseworker actions need the request claimed by that caseworker.
fn require_assignee(request: &Request, actor: &Actor) -> Result<(), DomainError> {
    match &request.assignee {
        Some(assignee) if *assignee == actor.id => Ok(()),
        Some(other) => Err(conflict(format!("the request is assigned to {other}"))),
        None => Err(precondition("the request must be claimed first")),
    }
}

fn required_text(field: &str, value: &str, max: usize) -> Result<String, DomainError> {
    let value = value.trim();
    let length = value.chars().count();
    if length == 0 {
        return Err(invalid(field, Problem::Missing));
    }
    if length > max {
        return Err(invalid(
            field,
            Problem::TooLong {
                max_length: max as u32,
                length: length as u32,
            },
        ));
    }
    Ok(value.to_string())
}

fn optional_text(
    field: &str,
    value: &Option<String>,
    max: usize,
) -> Result<Option<String>, DomainError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => required_text(field, text, max).map(Some),
    }
}

/// The promised and statutory deadlines of a clock that (re)starts at `start` with
/// `used` working days already gone.
fn deadlines_from(
    calendar: &Calendar,
    start: Timestamp,
    promised: u32,
    statutory: u32,
    used: u32,
) -> (Timestamp, Timestamp) {
    (
        deadline_from(calendar, start, promised, used),
        deadline_from(calendar, start, statutory, used),
    )
}

/// When no working day is left (the clock stopped on or after its last day), the
/// deadline is the end of the restart day: materials that arrive on a day can still
/// be dealt with that day, and a restarted clock never gives an earlier deadline
/// than the one it stopped with.
fn deadline_from(calendar: &Calendar, start: Timestamp, limit: u32, used: u32) -> Timestamp {
    if limit > used {
        calendar.add_working_days(start, limit - used)
    } else {
        Timestamp::cst_end_of(start.cst_date())
    }
}

const ACTIVE: &[Status] = &[
    Status::Submitted,
    Status::AwaitingInfo,
    Status::Accepted,
    Status::Reviewed,
    Status::Approved,
    Status::InFulfilment,
    Status::Fulfilled,
];

fn decide_on(
    request: &Request,
    command: &Command,
    context: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let actor = &command.actor;
    let by = actor.id.clone();
    let at = command.at;
    let calendar = context.calendar;
    match &command.action {
        Action::Submit(_) => Err(conflict("the request already exists")),
        Action::Claim => {
            require_status(request, command, ACTIVE)?;
            match &request.assignee {
                Some(assignee) if *assignee == actor.id => Ok(vec![]),
                Some(other) => Err(conflict(format!(
                    "the request is already claimed by {other}"
                ))),
                None => Ok(vec![Event::RequestClaimed { by, at }]),
            }
        }
        Action::Accept { comment } => {
            require_status(request, command, &[Status::Submitted])?;
            require_assignee(request, actor)?;
            let comment = optional_text("comment", comment, MAX_NOTE_CHARS)?;
            let (promised_deadline, statutory_deadline) = deadlines_from(
                calendar,
                at,
                request.terms.promised_days,
                request.terms.statutory_days,
                0,
            );
            Ok(vec![Event::RequestAccepted {
                by: Some(by),
                deemed: false,
                at,
                promised_deadline,
                statutory_deadline,
                comment,
            }])
        }
        Action::Refuse {
            reason,
            legal_basis,
        } => {
            require_status(request, command, &[Status::Submitted])?;
            require_assignee(request, actor)?;
            let reason = required_text("reason", reason, MAX_REASON_CHARS)?;
            let legal_basis = optional_text("legal_basis", legal_basis, MAX_REASON_CHARS)?;
            Ok(vec![Event::RequestRefused {
                by,
                reason,
                at,
                legal_basis,
            }])
        }
        Action::RequestInfo { missing, message } => {
            require_status(request, command, &[Status::Submitted, Status::Accepted])?;
            require_assignee(request, actor)?;
            if request.missing_materials.is_some() {
                return Err(conflict("missing materials were already asked for once; the list must be complete the first time"));
            }
            let mut items = Vec::new();
            let mut violations = Vec::new();
            for (index, item) in missing.iter().enumerate() {
                match required_text(&format!("missing[{index}]"), item, 200) {
                    Ok(item) => items.push(item),
                    Err(DomainError::Invalid(mut v)) => violations.append(&mut v),
                    Err(other) => return Err(other),
                }
            }
            if missing.is_empty() {
                violations.push(FieldViolation::new("missing", Problem::Missing));
            }
            let message = match optional_text("message", message, MAX_NOTE_CHARS) {
                Ok(message) => message,
                Err(DomainError::Invalid(mut v)) => {
                    violations.append(&mut v);
                    None
                }
                Err(other) => return Err(other),
            };
            if !violations.is_empty() {
                return Err(DomainError::Invalid(violations));
            }
            let working_days_used = match (&request.deadlines, request.status) {
                (Some(d), Status::Accepted) => {
                    d.working_days_used
                        + d.running_since
                            .map_or(0, |since| calendar.working_days_between(since, at))
                }
                _ => 0,
            };
            Ok(vec![Event::InfoRequested {
                by,
                missing: items,
                at,
                working_days_used,
                message,
            }])
        }
        Action::ProvideInfo { note, materials } => {
            require_status(request, command, &[Status::AwaitingInfo])?;
            let note = optional_text("note", note, MAX_NOTE_CHARS)?;
            let violations = material_violations("materials", materials);
            if !violations.is_empty() {
                return Err(DomainError::Invalid(violations));
            }
            let (intake_deadline, promised_deadline, statutory_deadline) = match &request.deadlines
            {
                Some(d) => {
                    let (p, s) = deadlines_from(
                        calendar,
                        at,
                        d.promised_days,
                        d.statutory_days,
                        d.working_days_used,
                    );
                    (None, Some(p), Some(s))
                }
                None => (
                    Some(calendar.add_working_days(at, DEEMED_ACCEPTANCE_WORKING_DAYS)),
                    None,
                    None,
                ),
            };
            Ok(vec![Event::InfoProvided {
                by,
                note,
                at,
                intake_deadline,
                promised_deadline,
                statutory_deadline,
                materials: materials.clone(),
            }])
        }
        Action::Review { opinion } => {
            require_status(request, command, &[Status::Accepted])?;
            require_assignee(request, actor)?;
            let opinion = required_text("opinion", opinion, MAX_REASON_CHARS)?;
            Ok(vec![Event::RequestReviewed { by, opinion, at }])
        }
        Action::Approve { level, comment } => {
            require_status(request, command, &[Status::Reviewed])?;
            let required = request.terms.approval_levels;
            let next = request.approvals.len() as u8 + 1;
            if *level == 0 || *level > required {
                return Err(invalid(
                    "level",
                    Problem::Other {
                        message: format!(
                            "this service has approval levels 1 to {required}, not {level}"
                        ),
                    },
                ));
            }
            if *level != next {
                return Err(precondition(format!(
                    "approval level {level} is out of order: level {next} comes next"
                )));
            }
            if request.approvals.iter().any(|a| a.by == actor.id) {
                return Err(forbidden(
                    "each approval level needs a different supervisor",
                ));
            }
            let comment = optional_text("comment", comment, MAX_NOTE_CHARS)?;
            Ok(vec![Event::RequestApproved {
                by,
                level: *level,
                at,
                comment,
            }])
        }
        Action::Deny {
            reason,
            legal_basis,
        } => {
            match actor.role {
                Role::Caseworker => {
                    require_status(request, command, &[Status::Accepted])?;
                    require_assignee(request, actor)?;
                }
                _ => require_status(request, command, &[Status::Accepted, Status::Reviewed])?,
            }
            let reason = required_text("reason", reason, MAX_REASON_CHARS)?;
            let legal_basis = optional_text("legal_basis", legal_basis, MAX_REASON_CHARS)?;
            Ok(vec![Event::RequestDenied {
                by,
                reason,
                at,
                legal_basis,
            }])
        }
        Action::StartFulfilment { note } => {
            require_status(request, command, &[Status::Approved])?;
            require_assignee(request, actor)?;
            let note = optional_text("note", note, MAX_NOTE_CHARS)?;
            Ok(vec![Event::FulfilmentStarted { by, at, note }])
        }
        Action::CompleteStep { step, note } => {
            require_status(request, command, &[Status::InFulfilment])?;
            require_assignee(request, actor)?;
            let step = step.trim();
            if !request.terms.steps.iter().any(|s| s == step) {
                return Err(invalid(
                    "step",
                    Problem::NotAllowed {
                        value: step.to_string(),
                        allowed: request.terms.steps.clone(),
                    },
                ));
            }
            if request.steps_done.iter().any(|s| s == step) {
                return Err(conflict(format!("step {step} is already completed")));
            }
            let note = optional_text("note", note, MAX_NOTE_CHARS)?;
            let mut events = vec![Event::StepCompleted {
                by,
                step: step.to_string(),
                at,
                note,
            }];
            if request.steps_remaining() == [step] {
                events.push(Event::RequestFulfilled { at });
            }
            Ok(events)
        }
        Action::AddNote { text, internal } => {
            let text = required_text("text", text, MAX_NOTE_CHARS)?;
            Ok(vec![Event::NoteAdded {
                by,
                text,
                at,
                internal: *internal,
            }])
        }
        Action::Reassign { to } => {
            require_status(request, command, ACTIVE)?;
            if actor.role == Role::Caseworker {
                require_assignee(request, actor)?;
            }
            if to.0.trim().is_empty() {
                return Err(invalid("to", Problem::Missing));
            }
            if request.assignee.as_ref() == Some(to) {
                return Ok(vec![]);
            }
            Ok(vec![Event::RequestReassigned {
                by,
                from: request.assignee.clone(),
                to: to.clone(),
                at,
            }])
        }
        Action::RequestExtension { days, reason } => {
            require_status(
                request,
                command,
                &[
                    Status::Accepted,
                    Status::AwaitingInfo,
                    Status::Reviewed,
                    Status::Approved,
                    Status::InFulfilment,
                ],
            )?;
            if request.deadlines.is_none() {
                return Err(precondition(
                    "the time limit starts at acceptance; nothing to extend yet",
                ));
            }
            require_assignee(request, actor)?;
            if request.pending_extension.is_some() {
                return Err(conflict("an extension request is already pending"));
            }
            if *days == 0 || *days > MAX_EXTENSION_DAYS {
                return Err(invalid(
                    "days",
                    Problem::OutOfRange {
                        min: Some(1.0),
                        max: Some(f64::from(MAX_EXTENSION_DAYS)),
                        value: f64::from(*days),
                    },
                ));
            }
            let reason = required_text("reason", reason, MAX_REASON_CHARS)?;
            Ok(vec![Event::ExtensionRequested {
                by,
                days: *days,
                reason,
                at,
            }])
        }
        Action::DecideExtension { approve } => {
            require_status(
                request,
                command,
                &[
                    Status::Accepted,
                    Status::AwaitingInfo,
                    Status::Reviewed,
                    Status::Approved,
                    Status::InFulfilment,
                ],
            )?;
            let (Some(pending), Some(d)) = (&request.pending_extension, &request.deadlines) else {
                return Err(precondition("no extension request is pending"));
            };
            if !approve {
                return Ok(vec![Event::ExtensionRejected { by, at }]);
            }
            let days = pending.days;
            let (promised_deadline, statutory_deadline) = match d.running_since {
                Some(since) => {
                    let used = d.working_days_used;
                    let (p, s) = deadlines_from(
                        calendar,
                        since,
                        d.promised_days + days,
                        d.statutory_days + days,
                        used,
                    );
                    (Some(p), Some(s))
                }
                None => (None, None),
            };
            Ok(vec![Event::ExtensionApproved {
                by,
                days,
                at,
                promised_deadline,
                statutory_deadline,
            }])
        }
        Action::Rate { grade, comment } => {
            if request.fulfilled_at.is_none() {
                return Err(DomainError::WrongState {
                    current: request.status,
                    command: "rate",
                });
            }
            if request.rating.is_some() {
                return Err(conflict("the request has already been rated"));
            }
            let comment = optional_text("comment", comment, MAX_REASON_CHARS)?;
            let mut events = vec![Event::RequestRated {
                by,
                grade: *grade,
                comment,
                at,
            }];
            if grade.is_bad() {
                events.push(Event::RemediationOpened {
                    at,
                    due: calendar.add_working_days(at, REMEDIATION_WORKING_DAYS),
                });
            }
            Ok(events)
        }
        Action::ResolveRemediation { summary } => {
            match &request.remediation {
                Some(r) if r.state == crate::rating::RemediationState::Open => {}
                Some(_) => return Err(conflict("the remediation is already closed")),
                None => return Err(precondition("there is no remediation to resolve")),
            }
            let summary = required_text("summary", summary, MAX_REASON_CHARS)?;
            Ok(vec![Event::RemediationResolved { by, summary, at }])
        }
        Action::AppealRating { reason } => {
            let Some(rating) = &request.rating else {
                return Err(precondition("the request has not been rated"));
            };
            if rating.appeal.is_some() {
                return Err(conflict("the rating has already been appealed"));
            }
            let reason = required_text("reason", reason, MAX_REASON_CHARS)?;
            Ok(vec![Event::RatingAppealed { by, reason, at }])
        }
        Action::DecideAppeal { uphold } => {
            let appeal = request.rating.as_ref().and_then(|r| r.appeal.as_ref());
            match appeal {
                None => Err(precondition("no appeal is pending")),
                Some(appeal) if appeal.upheld.is_some() => {
                    Err(conflict("the appeal has already been decided"))
                }
                Some(_) => Ok(vec![Event::AppealDecided {
                    by,
                    uphold: *uphold,
                    at,
                }]),
            }
        }
        Action::Withdraw { reason } => {
            require_status(
                request,
                command,
                &[
                    Status::Submitted,
                    Status::AwaitingInfo,
                    Status::Accepted,
                    Status::Reviewed,
                ],
            )?;
            let reason = optional_text("reason", reason, MAX_REASON_CHARS)?;
            Ok(vec![Event::RequestWithdrawn { by, reason, at }])
        }
        Action::Close => {
            require_status(request, command, &[Status::Fulfilled])?;
            if actor.role == Role::Caseworker {
                require_assignee(request, actor)?;
            }
            Ok(vec![Event::RequestClosed { by, at }])
        }
        Action::FireTimer { kind, .. } => fire_timer(request, *kind, at, context),
    }
}

/// Fires a timer if, by the request's own state, it is due now and has not fired.
/// The `due_at` the scheduler sends is only a hint: a stale or repeated firing
/// returns no events.
fn fire_timer(
    request: &Request,
    kind: TimerKind,
    at: Timestamp,
    context: &Context<'_>,
) -> Result<Vec<Event>, DomainError> {
    let calendar = context.calendar;
    let Some(due_at) = due_at(request, kind, calendar).filter(|due| *due <= at) else {
        return Ok(vec![]);
    };
    let event = match kind {
        TimerKind::DeemedAcceptance => {
            let (promised_deadline, statutory_deadline) = deadlines_from(
                calendar,
                at,
                request.terms.promised_days,
                request.terms.statutory_days,
                0,
            );
            Event::RequestAccepted {
                by: None,
                deemed: true,
                at,
                promised_deadline,
                statutory_deadline,
                comment: None,
            }
        }
        TimerKind::Warning => Event::WarningRaised { due_at, at },
        TimerKind::YellowCard => Event::YellowCardIssued { due_at, at },
        TimerKind::RedCard => Event::RedCardIssued { due_at, at },
    };
    Ok(vec![event])
}
