//! Proto types meet domain and application types here, and only here: claims become an
//! `Actor`, proto enums become domain enums and back, read-model views become the
//! messages the API returns. Personal data leaves only masked.
//!
//! Positions and versions: the event log counts both from 0, the API from 1 (so that
//! `min_position = 0` can mean "no wait"). [`api_position`] and [`log_position`] are
//! the only places that shift them.

use std::collections::{BTreeMap, HashMap};

use anju_app::{ResidentStatus, TimelineEntry};
use anju_auth::Claims;
use anju_domain::{
    Actor, ActorId, Answer, Attachment, Calendar, Category, FieldKind, Grade, Materials,
    RemediationState, Request, Role, Scope, ServiceDefinition, SiteId, Status, Supervision,
    Timestamp,
};
use anju_eventlog::RecordedEvent;
use anju_proto::v1 as pb;

use crate::error::{ApiError, Violations};

/// Longest free text (reasons, notes, comments) a write accepts, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

/// The API position of a log position (the log counts from 0, the API from 1).
pub fn api_position(log_position: u64) -> u64 {
    log_position + 1
}

/// The log position an API position names; `None` for 0 ("nothing").
pub fn log_position(api_position: u64) -> Option<u64> {
    api_position.checked_sub(1)
}

/// The API version of a stream version (both count events; the API from 1).
pub fn api_version(log_version: u64) -> u64 {
    log_version + 1
}

/// The actor behind a call: the token subject as its id, the token's role, sites and
/// categories as its scope. Unknown category names in a token cover nothing.
pub fn actor(claims: &Claims) -> Actor {
    let role = match claims.role {
        anju_auth::Role::Resident => Role::Resident,
        anju_auth::Role::Kiosk => Role::Kiosk,
        anju_auth::Role::Caseworker => Role::Caseworker,
        anju_auth::Role::Supervisor => Role::Supervisor,
        anju_auth::Role::Manager => Role::Manager,
        anju_auth::Role::Admin => Role::Admin,
    };
    let sites = if claims.covers_all_sites() || role == Role::Resident {
        Scope::All
    } else {
        Scope::only(claims.sites.iter().map(SiteId::new))
    };
    let categories = if claims.categories.is_empty() {
        Scope::All
    } else {
        Scope::only(claims.categories.iter().filter_map(|c| Category::parse(c)))
    };
    Actor {
        id: ActorId::new(claims.sub.clone()),
        role,
        sites,
        categories,
    }
}

/// `138****0427`: the first three and last four digits of a phone number.
pub fn mask_phone(phone: &str) -> String {
    mask_middle(phone, 3, 4)
}

/// A name with all but its first character masked: `王**`.
pub fn mask_name(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| if i == 0 { c } else { '*' })
        .collect()
}

/// An identity number with only its first and last characters shown.
pub fn mask_id_number(id: &str) -> String {
    mask_middle(id, 1, 1)
}

fn mask_middle(text: &str, keep_start: usize, keep_end: usize) -> String {
    let count = text.chars().count();
    if count <= keep_start + keep_end {
        return "*".repeat(count);
    }
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            if i < keep_start || i >= count - keep_end {
                c
            } else {
                '*'
            }
        })
        .collect()
}

pub fn timestamp(at: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.0.div_euclid(1000),
        nanos: (at.0.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn from_timestamp(at: &prost_types::Timestamp) -> Timestamp {
    Timestamp(at.seconds * 1000 + i64::from(at.nanos) / 1_000_000)
}

pub fn duration(span: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: span.as_secs().min(i64::MAX as u64) as i64,
        nanos: span.subsec_nanos() as i32,
    }
}

/// A duration a caller sent: not negative, nanos in range.
pub fn from_duration(
    span: &prost_types::Duration,
    field: &str,
) -> Result<std::time::Duration, ApiError> {
    if span.seconds < 0 || span.nanos < 0 || span.nanos >= 1_000_000_000 {
        return Err(ApiError::invalid(
            field,
            "must be a forward duration (seconds >= 0, nanos between 0 and 999999999)",
        ));
    }
    Ok(std::time::Duration::new(
        span.seconds as u64,
        span.nanos as u32,
    ))
}

pub fn state(status: Status) -> pb::RequestState {
    match status {
        Status::Submitted => pb::RequestState::Submitted,
        Status::AwaitingInfo => pb::RequestState::InfoRequested,
        // Reviewed is the caseworker's half of the approval stage: still ACCEPTED.
        Status::Accepted | Status::Reviewed => pb::RequestState::Accepted,
        Status::Approved => pb::RequestState::Approved,
        Status::InFulfilment => pb::RequestState::InFulfilment,
        Status::Fulfilled => pb::RequestState::Fulfilled,
        Status::Closed => pb::RequestState::Closed,
        Status::Refused => pb::RequestState::Refused,
        Status::Denied => pb::RequestState::Denied,
        Status::Withdrawn => pb::RequestState::Withdrawn,
    }
}

pub fn state_i32(status: Status) -> i32 {
    state(status) as i32
}

/// The domain statuses an API state filter stands for.
pub fn statuses(state: i32, field: &str) -> Result<Vec<Status>, ApiError> {
    let statuses = match pb::RequestState::try_from(state) {
        Ok(pb::RequestState::Submitted) => vec![Status::Submitted],
        Ok(pb::RequestState::InfoRequested) => vec![Status::AwaitingInfo],
        Ok(pb::RequestState::Accepted) => vec![Status::Accepted, Status::Reviewed],
        Ok(pb::RequestState::Approved) => vec![Status::Approved],
        Ok(pb::RequestState::InFulfilment) => vec![Status::InFulfilment],
        Ok(pb::RequestState::Fulfilled) => vec![Status::Fulfilled],
        Ok(pb::RequestState::Closed) => vec![Status::Closed],
        Ok(pb::RequestState::Refused) => vec![Status::Refused],
        Ok(pb::RequestState::Denied) => vec![Status::Denied],
        Ok(pb::RequestState::Withdrawn) => vec![Status::Withdrawn],
        _ => return Err(ApiError::invalid(field, "is not a request state")),
    };
    Ok(statuses)
}

pub fn grade(grade: Grade) -> pb::SatisfactionGrade {
    match grade {
        Grade::VerySatisfied => pb::SatisfactionGrade::VerySatisfied,
        Grade::Satisfied => pb::SatisfactionGrade::Satisfied,
        Grade::Neutral => pb::SatisfactionGrade::Neutral,
        Grade::Dissatisfied => pb::SatisfactionGrade::Dissatisfied,
        Grade::VeryDissatisfied => pb::SatisfactionGrade::VeryDissatisfied,
    }
}

pub fn from_grade(value: i32) -> Result<Grade, ApiError> {
    match pb::SatisfactionGrade::try_from(value) {
        Ok(pb::SatisfactionGrade::VerySatisfied) => Ok(Grade::VerySatisfied),
        Ok(pb::SatisfactionGrade::Satisfied) => Ok(Grade::Satisfied),
        Ok(pb::SatisfactionGrade::Neutral) => Ok(Grade::Neutral),
        Ok(pb::SatisfactionGrade::Dissatisfied) => Ok(Grade::Dissatisfied),
        Ok(pb::SatisfactionGrade::VeryDissatisfied) => Ok(Grade::VeryDissatisfied),
        _ => Err(ApiError::invalid(
            "grade",
            "is required: one of the five satisfaction grades",
        )),
    }
}

/// A request id from its text; a malformed one is INVALID_ARGUMENT.
pub fn request_id(text: &str) -> Result<anju_domain::RequestId, ApiError> {
    let text = text.trim();
    let text = text.strip_prefix("request-").unwrap_or(text);
    uuid::Uuid::parse_str(text)
        .map(anju_domain::RequestId)
        .map_err(|_| ApiError::invalid("request_id", "must be a request id (a UUID)"))
}

/// Free text of a write: optional, at most [`MAX_TEXT_CHARS`] characters, line breaks
/// and tabs allowed but no other control character, escape or bidirectional override
/// (`anju_domain::text`).
pub fn text(violations: &mut Violations, field: &str, value: &str) -> Option<String> {
    let count = value.chars().count();
    if count > MAX_TEXT_CHARS {
        violations.add(
            field,
            format!("{field} is too long: {count} characters, at most {MAX_TEXT_CHARS}"),
        );
        return None;
    }
    if !printable(violations, field, value, anju_domain::Lines::Many) {
        return None;
    }
    let trimmed = value.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// Records a violation of `field` when `value` holds a character the service refuses
/// (`anju_domain::text`); true when it holds none.
pub fn printable(
    violations: &mut Violations,
    field: &str,
    value: &str,
    lines: anju_domain::Lines,
) -> bool {
    match anju_domain::refused_char(value, lines) {
        None => true,
        Some(c) => {
            let problem = anju_domain::Problem::Unprintable {
                character: anju_domain::text::code_point(c),
            };
            violations.add(
                field,
                anju_domain::FieldViolation::new(field, problem).to_string(),
            );
            false
        }
    }
}

/// Free text that must be given.
pub fn required_text(violations: &mut Violations, field: &str, value: &str) -> String {
    match text(violations, field, value) {
        Some(text) => text,
        None => {
            let refused = value.chars().count() > MAX_TEXT_CHARS
                || anju_domain::refused_char(value, anju_domain::Lines::Many).is_some();
            if !refused {
                violations.add(field, format!("{field} is required"));
            }
            String::new()
        }
    }
}

/// The kinds of typed value a field of `kind` takes: common.proto says a value's kind
/// must match the field's `FieldType` (a number field, shown as DECIMAL, also takes an
/// INTEGER). The name is the field type as `GetServiceDefinition` shows it.
fn kinds_taken(kind: FieldKind) -> (&'static [&'static str], &'static str) {
    match kind {
        FieldKind::String => (&["text"], "text"),
        FieldKind::Number => (&["integer", "decimal"], "decimal"),
        FieldKind::Date => (&["date"], "date"),
        FieldKind::SingleChoice => (&["choice"], "choice"),
        FieldKind::MultipleChoice => (&["choices"], "choices"),
    }
}

fn kind_name(value: &pb::form_value::Value) -> &'static str {
    use pb::form_value::Value;
    match value {
        Value::Text(_) => "text",
        Value::Integer(_) => "integer",
        Value::Decimal(_) => "decimal",
        Value::Flag(_) => "flag",
        Value::Date(_) => "date",
        Value::Choice(_) => "choice",
        Value::Choices(_) => "choices",
        Value::Attachment(_) => "attachment",
    }
}

/// Form answers as the application takes them: text per field, several for a
/// multiple-choice field. Typed values must be of the kind their field takes (checked
/// here when `definition` is known; an unknown service is the application's to
/// report); they are then written out and parsed against the field types by the
/// application, so `text_answers` and `answers` behave the same.
pub fn answers(
    typed: &HashMap<String, pb::FormValue>,
    text: &HashMap<String, String>,
    definition: Option<&ServiceDefinition>,
) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
    if !typed.is_empty() && !text.is_empty() {
        return Err(ApiError::invalid(
            "answers",
            "use either answers or text_answers, not both",
        ));
    }
    let mut out = BTreeMap::new();
    let mut violations = Violations::new();
    for (key, value) in typed {
        use pb::form_value::Value;
        let checked = match &value.value {
            None => {
                violations.add(format!("answers[{key}]"), "has no value");
                continue;
            }
            Some(value) => {
                let field = definition.and_then(|d| d.field(key));
                if let Some(field) = field {
                    let (taken, type_name) = kinds_taken(field.kind);
                    let got = kind_name(value);
                    if !taken.contains(&got) {
                        violations.add(
                            format!("answers[{key}]"),
                            format!("field {key} is of type {type_name}, so its value must be a {type_name}, got a {got}"),
                        );
                        continue;
                    }
                }
                match value {
                    Value::Decimal(n) if !n.is_finite() => {
                        violations.add(
                            format!("answers[{key}]"),
                            format!("must be a finite number, got {n}"),
                        );
                        continue;
                    }
                    _ => {}
                }
                value
            }
        };
        let values = match checked {
            Value::Text(text) | Value::Choice(text) => vec![text.clone()],
            Value::Integer(n) => vec![n.to_string()],
            Value::Decimal(n) => vec![n.to_string()],
            Value::Flag(flag) => vec![flag.to_string()],
            Value::Date(date) => vec![format!(
                "{:04}-{:02}-{:02}",
                date.year, date.month, date.day
            )],
            Value::Choices(list) => list.values.clone(),
            Value::Attachment(attachment) => vec![attachment.reference.clone()],
        };
        out.insert(key.clone(), values);
    }
    for (key, value) in text {
        out.insert(key.clone(), vec![value.clone()]);
    }
    violations.into_result()?;
    Ok(out)
}

fn field_type(kind: FieldKind) -> pb::FieldType {
    match kind {
        FieldKind::String => pb::FieldType::Text,
        FieldKind::Number => pb::FieldType::Decimal,
        FieldKind::Date => pb::FieldType::Date,
        FieldKind::SingleChoice => pb::FieldType::Choice,
        FieldKind::MultipleChoice => pb::FieldType::Choices,
    }
}

fn requires_id_number(definition: &ServiceDefinition) -> bool {
    definition.fields.iter().any(|f| f.name == "id_number")
}

pub fn service_summary(definition: &ServiceDefinition) -> pb::ServiceSummary {
    pb::ServiceSummary {
        code: definition.code.to_string(),
        name: definition.name_zh.clone(),
        category: definition.category.as_str().to_string(),
        description: definition.description_zh.clone(),
        promised_working_days: definition.promised_days,
        requires_id_number: requires_id_number(definition),
    }
}

pub fn service_definition(definition: &ServiceDefinition) -> pb::ServiceDefinition {
    pb::ServiceDefinition {
        code: definition.code.to_string(),
        name: definition.name_zh.clone(),
        category: definition.category.as_str().to_string(),
        description: definition.description_zh.clone(),
        fields: definition
            .fields
            .iter()
            .map(|field| pb::FormField {
                key: field.name.clone(),
                label: field.label_zh.clone(),
                help: field.label_en.clone(),
                r#type: field_type(field.kind) as i32,
                required: field.required,
                choices: field
                    .options
                    .iter()
                    .map(|option| pb::FieldChoice {
                        code: option.clone(),
                        label: option.clone(),
                    })
                    .collect(),
                max_length: field.max_length.unwrap_or(0),
                min_length: field.min_length.unwrap_or(0),
                min: field.min,
                max: field.max,
            })
            .collect(),
        materials: definition
            .materials
            .iter()
            .map(|material| pb::Material {
                code: material.code.clone(),
                name: material.name_zh.clone(),
                description: material.description_zh.clone(),
                required: material.required,
            })
            .collect(),
        approval_levels: u32::from(definition.approval_levels),
        acceptance_working_days: 5,
        decision_working_days: definition.promised_days,
        fulfilment_steps: definition
            .steps
            .iter()
            .map(|step| pb::FulfilmentStepDefinition {
                code: step.code.clone(),
                name: step.name_zh.clone(),
                working_days: 0,
            })
            .collect(),
        requires_id_number: requires_id_number(definition),
        site_ids: definition.sites.clone(),
        version: definition.version,
    }
}

/// The deadline running for a request and how it stands now.
pub fn deadline(
    kind: &str,
    due: Timestamp,
    now: Timestamp,
    calendar: &Calendar,
    extension_days: u32,
    sla: pb::SlaStatus,
) -> pb::Deadline {
    let left = if due.0 >= now.0 {
        f64::from(calendar.working_days_between(now, due))
    } else {
        -f64::from(calendar.working_days_between(due, now))
    };
    pb::Deadline {
        kind: kind.to_string(),
        due_at: Some(timestamp(due)),
        working_days_left: left,
        sla_status: sla as i32,
        overdue: due.0 < now.0,
        extended_by_working_days: extension_days,
    }
}

fn sla_of(request: &Request) -> pb::SlaStatus {
    let running = request.deadlines.as_ref().is_some_and(|d| d.running());
    sla(request.status, running, &request.supervision)
}

/// How a request stands against its deadline, for staff and residents alike: the
/// supervision raised on it while its clock runs.
fn sla(status: Status, clock_running: bool, supervision: &Supervision) -> pb::SlaStatus {
    if !clock_running {
        return if status == Status::Submitted {
            pb::SlaStatus::OnTime
        } else {
            pb::SlaStatus::NotRunning
        };
    }
    if supervision.red_card_at.is_some() {
        pb::SlaStatus::RedCard
    } else if supervision.yellow_card_at.is_some() {
        pb::SlaStatus::YellowCard
    } else if supervision.warning_at.is_some() {
        pb::SlaStatus::Warning
    } else {
        pb::SlaStatus::OnTime
    }
}

/// The deadline now running for a request, if any.
pub fn request_deadline(
    request: &Request,
    now: Timestamp,
    calendar: &Calendar,
) -> Option<pb::Deadline> {
    let sla = sla_of(request);
    match request.status {
        Status::Submitted => request
            .intake_deadline
            .map(|due| deadline("acceptance", due, now, calendar, 0, sla)),
        status if status.is_in_processing() => request.deadlines.as_ref().and_then(|d| {
            d.promised.map(|due| {
                deadline(
                    deadline_kind(status),
                    due,
                    now,
                    calendar,
                    d.extension_days,
                    sla,
                )
            })
        }),
        _ => None,
    }
}

/// A request an identity-number look-up found.
pub fn found_request(
    found: &anju_app::IdentityMatch,
    service_name: String,
    now: Timestamp,
    calendar: &Calendar,
) -> pb::FoundRequest {
    let request = &found.request;
    pb::FoundRequest {
        request_id: request.id.to_string(),
        tracking_code: request.tracking_code.to_string(),
        service_code: request.service_code.to_string(),
        service_name,
        category: request.category.as_str().to_string(),
        site_id: request.site.to_string(),
        state: state_i32(request.status),
        applicant_name_masked: mask_name(&request.applicant.display_name),
        submitted_at: Some(timestamp(request.submitted_at)),
        deadline: request_deadline(request, now, calendar),
        version: api_version(found.version),
    }
}

/// What the running deadline is for, by status.
fn deadline_kind(status: Status) -> &'static str {
    match status {
        Status::Submitted => "acceptance",
        Status::InFulfilment | Status::Approved => "fulfilment",
        _ => "decision",
    }
}

/// Materials a caller handed over, as the domain keeps them (it checks them).
pub fn materials(given: &HashMap<String, pb::AttachmentRef>) -> Materials {
    given
        .iter()
        .map(|(code, attachment)| {
            (
                code.clone(),
                Attachment {
                    reference: attachment.reference.clone(),
                    file_name: attachment.file_name.clone(),
                    media_type: attachment.media_type.clone(),
                    size_bytes: attachment.size_bytes,
                    sha256: attachment.sha256.clone(),
                },
            )
        })
        .collect()
}

fn attachment_refs(materials: &Materials) -> HashMap<String, pb::AttachmentRef> {
    materials
        .iter()
        .map(|(code, attachment)| {
            (
                code.clone(),
                pb::AttachmentRef {
                    reference: attachment.reference.clone(),
                    file_name: attachment.file_name.clone(),
                    media_type: attachment.media_type.clone(),
                    size_bytes: attachment.size_bytes,
                    sha256: attachment.sha256.clone(),
                },
            )
        })
        .collect()
}

fn remediation_status(request: &Request) -> pb::RemediationStatus {
    match &request.remediation {
        None => pb::RemediationStatus::NotNeeded,
        Some(remediation) => match remediation.state {
            RemediationState::Open => pb::RemediationStatus::Open,
            RemediationState::Resolved { .. } => pb::RemediationStatus::Resolved,
            RemediationState::Cancelled { .. } => pb::RemediationStatus::NotNeeded,
        },
    }
}

pub fn remediation_i32(request: &Request) -> i32 {
    remediation_status(request) as i32
}

pub fn appeal_status(request: &Request) -> pb::AppealStatus {
    match request.rating.as_ref().and_then(|r| r.appeal.as_ref()) {
        None => pb::AppealStatus::None,
        Some(appeal) => match appeal.upheld {
            None => pb::AppealStatus::Pending,
            // The domain's `uphold` keeps the rating: the appeal was rejected.
            Some(true) => pb::AppealStatus::Rejected,
            Some(false) => pb::AppealStatus::Upheld,
        },
    }
}

pub fn rating(request: &Request) -> Option<pb::Rating> {
    request.rating.as_ref().map(|rating| pb::Rating {
        grade: grade(rating.grade) as i32,
        comment: rating.comment.clone().unwrap_or_default(),
        rated_at: Some(timestamp(rating.at)),
        remediation: remediation_i32(request),
        appeal: appeal_status(request) as i32,
    })
}

/// The timeline details a resident sees: their own words and what was said to them,
/// not staff opinions.
const PUBLIC_DETAILS: [&str; 7] = [
    "reason",
    "legal_basis",
    "message",
    "text",
    "level",
    "step",
    "materials",
];

pub fn timeline_entry(entry: &TimelineEntry) -> pb::TimelineEntry {
    pb::TimelineEntry {
        position: api_position(entry.position),
        stream_version: api_version(entry.version),
        event_type: entry.event_type.clone(),
        at: Some(timestamp(entry.at)),
        actor: entry.actor.as_ref().map(|id| pb::Actor {
            subject: id.to_string(),
            role: String::new(),
            display_name: String::new(),
        }),
        summary: entry.summary.clone(),
        state: entry.status.map_or(pb::RequestState::Unspecified, state) as i32,
        details: entry
            .details
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
        internal: entry.internal,
    }
}

/// A timeline entry as the resident sees it (the caller leaves internal entries out).
fn public_timeline_entry(entry: &TimelineEntry) -> pb::TimelineEntry {
    let mut shown = timeline_entry(entry);
    shown
        .details
        .retain(|name, _| PUBLIC_DETAILS.contains(&name.as_str()));
    shown
}

fn material(text: &str) -> pb::Material {
    pb::Material {
        code: text.to_string(),
        name: text.to_string(),
        description: text.to_string(),
        required: true,
    }
}

/// The resident's view: public timeline only, nothing personal.
pub fn resident_status(
    status: &ResidentStatus,
    service_name: String,
    now: Timestamp,
    calendar: &Calendar,
) -> pb::RequestStatus {
    let timeline: Vec<pb::TimelineEntry> = status
        .timeline
        .iter()
        .filter(|entry| !entry.internal)
        .map(public_timeline_entry)
        .collect();
    let updated_at = status.timeline.last().map(|entry| timestamp(entry.at));
    let sla = sla(status.status, status.clock_running, &status.supervision);
    pb::RequestStatus {
        tracking_code: status.tracking_code.to_string(),
        service_code: status.service_code.to_string(),
        service_name,
        site_id: status.site.to_string(),
        state: state_i32(status.status),
        submitted_at: Some(timestamp(status.submitted_at)),
        updated_at,
        deadline: status.deadline.map(|due| {
            deadline(
                deadline_kind(status.status),
                due,
                now,
                calendar,
                status.extension_days,
                sla,
            )
        }),
        missing_materials: status
            .missing_materials
            .iter()
            .map(|m| material(m))
            .collect(),
        info_request_message: status.info_request_message.clone().unwrap_or_default(),
        decision_reason: status.outcome_reason.clone().unwrap_or_default(),
        legal_basis: status.legal_basis.clone().unwrap_or_default(),
        can_withdraw: status.can_withdraw,
        can_rate: status.can_rate,
        rating: status.rating.map(|g| pb::Rating {
            grade: grade(g) as i32,
            ..pb::Rating::default()
        }),
        timeline,
        version: api_version(status.version),
    }
}

fn answer_value(answer: &Answer) -> pb::FormValue {
    use pb::form_value::Value;
    let value = match answer {
        Answer::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Value::Integer(*n as i64),
        Answer::Number(n) => Value::Decimal(*n),
        Answer::Text(text) => Value::Text(text.clone()),
        Answer::Choices(list) => Value::Choices(pb::StringList {
            values: list.clone(),
        }),
        Answer::Sealed { .. } => Value::Text("(sealed)".to_string()),
    };
    pb::FormValue { value: Some(value) }
}

fn by(id: &ActorId) -> Option<pb::Actor> {
    Some(pb::Actor {
        subject: id.to_string(),
        role: String::new(),
        display_name: String::new(),
    })
}

/// A request in full for staff; `contact` is the unsealed contact, masked here.
pub fn request_detail(
    detail: &anju_app::RequestDetail,
    contact: Option<&anju_app::Contact>,
    service_name: String,
    step_names: &BTreeMap<String, String>,
    now: Timestamp,
    calendar: &Calendar,
) -> pb::RequestDetail {
    let request = &detail.request;
    let applicant = pb::Applicant {
        name: request.applicant.display_name.clone(),
        phone: match contact {
            Some(contact) => mask_phone(&contact.phone),
            None => format!("*******{}", request.applicant.phone_last4),
        },
        id_number: contact
            .and_then(|c| c.id_number.as_deref())
            .map(mask_id_number),
    };
    let step_done = |code: &str| -> Option<&TimelineEntry> {
        detail.timeline.iter().find(|entry| {
            entry.event_type == "StepCompleted" && entry.summary == format!("step {code} completed")
        })
    };
    let pending = request
        .pending_extension
        .as_ref()
        .map(|ext| pb::ExtensionRecord {
            extension_id: format!("ext-{}", ext.at.0),
            working_days: ext.days,
            reason: ext.reason.clone(),
            requested_by: by(&ext.by),
            requested_at: Some(timestamp(ext.at)),
            granted: None,
            ..pb::ExtensionRecord::default()
        });
    pb::RequestDetail {
        request_id: request.id.to_string(),
        tracking_code: request.tracking_code.to_string(),
        version: api_version(detail.version),
        service_code: request.service_code.to_string(),
        service_name,
        service_version: request.terms.version,
        category: request.category.as_str().to_string(),
        site_id: request.site.to_string(),
        state: state_i32(request.status),
        applicant: Some(applicant),
        on_behalf_of: request.on_behalf_of.as_ref().map(|_| pb::OnBehalfOf {
            kiosk_id: request.submitted_by.to_string(),
            ..pb::OnBehalfOf::default()
        }),
        answers: request
            .answers
            .iter()
            .map(|(name, answer)| (name.clone(), answer_value(answer)))
            .collect(),
        materials: attachment_refs(&request.materials),
        missing_materials: request
            .missing_materials
            .iter()
            .flatten()
            .map(|m| material(m))
            .collect(),
        assignee: request
            .assignee
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        submitted_at: Some(timestamp(request.submitted_at)),
        accepted_at: request.accepted_at.map(timestamp),
        decided_at: request.decided_at.map(timestamp),
        fulfilled_at: request.fulfilled_at.map(timestamp),
        closed_at: request.closed_at.map(timestamp),
        deadline: request_deadline(request, now, calendar),
        approval_levels_required: u32::from(request.terms.approval_levels),
        approvals: request
            .review
            .iter()
            .map(|review| pb::ApprovalRecord {
                level: 0,
                approved: true,
                by: by(&review.by),
                at: Some(timestamp(review.at)),
                comment: review.opinion.clone(),
            })
            .chain(request.approvals.iter().map(|approval| pb::ApprovalRecord {
                level: u32::from(approval.level),
                approved: true,
                by: by(&approval.by),
                at: Some(timestamp(approval.at)),
                comment: approval.comment.clone().unwrap_or_default(),
            }))
            .collect(),
        fulfilment_steps: request
            .terms
            .steps
            .iter()
            .map(|code| {
                let done = request.steps_done.contains(code);
                let entry = step_done(code);
                pb::FulfilmentStepProgress {
                    code: code.clone(),
                    name: step_names.get(code).cloned().unwrap_or_default(),
                    done,
                    done_at: entry.map(|e| timestamp(e.at)),
                    done_by: entry.and_then(|e| e.actor.as_ref()).and_then(by),
                    note: entry
                        .and_then(|e| e.details.get("note").cloned())
                        .unwrap_or_default(),
                }
            })
            .collect(),
        extensions: pending.into_iter().collect(),
        notes: request
            .notes
            .iter()
            .map(|note| pb::Note {
                text: note.text.clone(),
                internal: note.internal,
                by: by(&note.by),
                at: Some(timestamp(note.at)),
            })
            .collect(),
        rating: rating(request),
        decision_reason: request.outcome_reason.clone().unwrap_or_default(),
        legal_basis: request.legal_basis.clone().unwrap_or_default(),
        timeline: detail.timeline.iter().map(timeline_entry).collect(),
    }
}

pub fn queue_item(
    item: &anju_app::QueueItem,
    service_name: String,
    now: Timestamp,
    calendar: &Calendar,
) -> pb::QueueItem {
    let sla = if item.red_card {
        pb::SlaStatus::RedCard
    } else if item.yellow_card {
        pb::SlaStatus::YellowCard
    } else if item.warning {
        pb::SlaStatus::Warning
    } else if item.deadline.is_some() {
        pb::SlaStatus::OnTime
    } else {
        pb::SlaStatus::NotRunning
    };
    let kind = if item.status == Status::Submitted {
        "acceptance"
    } else {
        "decision"
    };
    pb::QueueItem {
        request_id: item.request_id.to_string(),
        tracking_code: item.tracking_code.to_string(),
        service_code: item.service_code.to_string(),
        service_name,
        category: item.category.as_str().to_string(),
        site_id: item.site.to_string(),
        state: state_i32(item.status),
        assignee: item
            .assignee
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        applicant_name_masked: String::new(),
        submitted_at: Some(timestamp(item.submitted_at)),
        deadline: item
            .deadline
            .map(|due| deadline(kind, due, now, calendar, 0, sla)),
        version: 0,
        awaiting_supervisor: false,
    }
}

/// An event of the log as the API shows it.
pub fn event(recorded: &RecordedEvent) -> pb::Event {
    let micros = recorded.recorded_at_micros;
    pb::Event {
        position: api_position(recorded.position),
        stream_id: recorded.stream_id.clone(),
        stream_version: api_version(recorded.stream_version),
        event_id: recorded.event_id.to_string(),
        event_type: recorded.event_type.clone(),
        schema_version: recorded.schema_version,
        recorded_at: Some(prost_types::Timestamp {
            seconds: micros.div_euclid(1_000_000),
            nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
        }),
        correlation_id: recorded
            .metadata
            .correlation_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        causation_id: recorded
            .metadata
            .causation_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        actor: recorded.metadata.actor.clone(),
        payload: recorded.payload.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_and_ids_are_masked() {
        assert_eq!(mask_phone("13812340427"), "138****0427");
        assert_eq!(mask_id_number("11010519491231002X"), "1****************X");
        assert_eq!(mask_phone("12"), "**");
    }

    #[test]
    fn positions_shift_by_one() {
        assert_eq!(log_position(0), None);
        assert_eq!(log_position(1), Some(0));
        assert_eq!(api_position(0), 1);
    }
}
