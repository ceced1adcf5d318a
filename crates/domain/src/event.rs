//! Events: what happened to a request, named in the past tense, with a type name and
//! a schema version, serialized to the JSON form documented in `docs/domain.md`.

use crate::catalogue::{FormAnswers, ServiceTerms};
use crate::command::{Applicant, Materials, TimerKind};
use crate::ids::{ActorId, Category, RequestId, ServiceCode, SiteId, TrackingCode};
use crate::rating::Grade;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Everything that can happen to a request. In JSON each event is an object whose
/// `"type"` member is the variant name (see [`Event::event_type`]).
// RequestSubmitted is much larger than the rest; boxing it would make every match
// on events clumsier for a saving that does not matter (events are few per request).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    RequestSubmitted {
        request_id: RequestId,
        tracking_code: TrackingCode,
        site: SiteId,
        category: Category,
        service_code: ServiceCode,
        /// The definition's terms, copied so catalogue changes do not reach this request.
        terms: ServiceTerms,
        /// Sensitive answers are sealed.
        answers: FormAnswers,
        applicant: Applicant,
        submitted_by: ActorId,
        /// Set when kiosk staff submitted for the resident (帮办).
        on_behalf_of: Option<ActorId>,
        at: Timestamp,
        /// When the request counts as accepted if nobody acts (5 working days).
        intake_deadline: Timestamp,
        /// Documents handed over with the submission, by material code.
        #[serde(default, skip_serializing_if = "Materials::is_empty")]
        materials: Materials,
    },
    RequestClaimed {
        by: ActorId,
        at: Timestamp,
    },
    RequestReassigned {
        by: ActorId,
        from: Option<ActorId>,
        to: ActorId,
        at: Timestamp,
    },
    RequestAccepted {
        /// `None` for deemed acceptance.
        by: Option<ActorId>,
        deemed: bool,
        at: Timestamp,
        promised_deadline: Timestamp,
        statutory_deadline: Timestamp,
        /// The caseworker's intake opinion.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    RequestRefused {
        by: ActorId,
        reason: String,
        at: Timestamp,
        /// The rule the refusal rests on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        legal_basis: Option<String>,
    },
    /// The clock stops until the materials arrive.
    InfoRequested {
        by: ActorId,
        missing: Vec<String>,
        at: Timestamp,
        /// Working days of the processing clock used when it stopped (0 before acceptance).
        working_days_used: u32,
        /// The caseworker's message to the resident with the list (一次性告知).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// The clock restarts; the new deadlines are computed from what is left.
    InfoProvided {
        by: ActorId,
        note: Option<String>,
        at: Timestamp,
        /// Set when the request was still waiting for intake: the 5 days start again.
        intake_deadline: Option<Timestamp>,
        promised_deadline: Option<Timestamp>,
        statutory_deadline: Option<Timestamp>,
        /// Documents supplied, by material code.
        #[serde(default, skip_serializing_if = "Materials::is_empty")]
        materials: Materials,
    },
    RequestReviewed {
        by: ActorId,
        opinion: String,
        at: Timestamp,
    },
    RequestApproved {
        by: ActorId,
        level: u8,
        at: Timestamp,
        /// The supervisor's opinion at this level.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    RequestDenied {
        by: ActorId,
        reason: String,
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        legal_basis: Option<String>,
    },
    FulfilmentStarted {
        by: ActorId,
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    StepCompleted {
        by: ActorId,
        step: String,
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    RequestFulfilled {
        at: Timestamp,
    },
    NoteAdded {
        by: ActorId,
        text: String,
        at: Timestamp,
        /// Internal notes are never shown to the resident. Events written before the
        /// field existed were all internal.
        #[serde(default = "internal_by_default")]
        internal: bool,
    },
    ExtensionRequested {
        by: ActorId,
        days: u32,
        reason: String,
        at: Timestamp,
    },
    ExtensionApproved {
        by: ActorId,
        days: u32,
        at: Timestamp,
        /// `None` while the clock is stopped.
        promised_deadline: Option<Timestamp>,
        statutory_deadline: Option<Timestamp>,
    },
    ExtensionRejected {
        by: ActorId,
        at: Timestamp,
    },
    /// Schema version 2; version 1 had `score: 1..=5` instead of `grade`.
    RequestRated {
        by: ActorId,
        grade: Grade,
        comment: Option<String>,
        at: Timestamp,
    },
    RemediationOpened {
        at: Timestamp,
        due: Timestamp,
    },
    RemediationResolved {
        by: ActorId,
        summary: String,
        at: Timestamp,
    },
    RatingAppealed {
        by: ActorId,
        reason: String,
        at: Timestamp,
    },
    AppealDecided {
        by: ActorId,
        uphold: bool,
        at: Timestamp,
    },
    RequestWithdrawn {
        by: ActorId,
        reason: Option<String>,
        at: Timestamp,
    },
    RequestClosed {
        by: ActorId,
        at: Timestamp,
    },
    /// 预警: 80% of the promised time used.
    WarningRaised {
        due_at: Timestamp,
        at: Timestamp,
    },
    /// 黄牌: the promised deadline passed.
    YellowCardIssued {
        due_at: Timestamp,
        at: Timestamp,
    },
    /// 红牌: 5 working days past the promised deadline.
    RedCardIssued {
        due_at: Timestamp,
        at: Timestamp,
    },
}

fn internal_by_default() -> bool {
    true
}

/// Why stored event bytes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    #[error("event json is malformed: {0}")]
    Json(#[from] serde_json::Error),
    #[error("event json must be an object")]
    NotAnObject,
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("event {event_type} has schema version {version}, but this build knows only up to {current}")]
    UnknownVersion {
        event_type: String,
        version: u32,
        current: u32,
    },
    #[error("event {event_type} schema version {version} cannot be upcast: {problem}")]
    Upcast {
        event_type: String,
        version: u32,
        problem: String,
    },
}

/// Every event type name, for the server's registry and for tests.
pub const EVENT_TYPES: [&str; 27] = [
    "RequestSubmitted",
    "RequestClaimed",
    "RequestReassigned",
    "RequestAccepted",
    "RequestRefused",
    "InfoRequested",
    "InfoProvided",
    "RequestReviewed",
    "RequestApproved",
    "RequestDenied",
    "FulfilmentStarted",
    "StepCompleted",
    "RequestFulfilled",
    "NoteAdded",
    "ExtensionRequested",
    "ExtensionApproved",
    "ExtensionRejected",
    "RequestRated",
    "RemediationOpened",
    "RemediationResolved",
    "RatingAppealed",
    "AppealDecided",
    "RequestWithdrawn",
    "RequestClosed",
    "WarningRaised",
    "YellowCardIssued",
    "RedCardIssued",
];

impl Event {
    /// The type name stored beside the event (and in its `"type"` member).
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::RequestSubmitted { .. } => "RequestSubmitted",
            Event::RequestClaimed { .. } => "RequestClaimed",
            Event::RequestReassigned { .. } => "RequestReassigned",
            Event::RequestAccepted { .. } => "RequestAccepted",
            Event::RequestRefused { .. } => "RequestRefused",
            Event::InfoRequested { .. } => "InfoRequested",
            Event::InfoProvided { .. } => "InfoProvided",
            Event::RequestReviewed { .. } => "RequestReviewed",
            Event::RequestApproved { .. } => "RequestApproved",
            Event::RequestDenied { .. } => "RequestDenied",
            Event::FulfilmentStarted { .. } => "FulfilmentStarted",
            Event::StepCompleted { .. } => "StepCompleted",
            Event::RequestFulfilled { .. } => "RequestFulfilled",
            Event::NoteAdded { .. } => "NoteAdded",
            Event::ExtensionRequested { .. } => "ExtensionRequested",
            Event::ExtensionApproved { .. } => "ExtensionApproved",
            Event::ExtensionRejected { .. } => "ExtensionRejected",
            Event::RequestRated { .. } => "RequestRated",
            Event::RemediationOpened { .. } => "RemediationOpened",
            Event::RemediationResolved { .. } => "RemediationResolved",
            Event::RatingAppealed { .. } => "RatingAppealed",
            Event::AppealDecided { .. } => "AppealDecided",
            Event::RequestWithdrawn { .. } => "RequestWithdrawn",
            Event::RequestClosed { .. } => "RequestClosed",
            Event::WarningRaised { .. } => "WarningRaised",
            Event::YellowCardIssued { .. } => "YellowCardIssued",
            Event::RedCardIssued { .. } => "RedCardIssued",
        }
    }

    /// The schema version this build writes for this event type.
    pub fn schema_version(&self) -> u32 {
        current_schema_version(self.event_type())
    }

    /// The instant the event happened.
    pub fn at(&self) -> Timestamp {
        match self {
            Event::RequestSubmitted { at, .. }
            | Event::RequestClaimed { at, .. }
            | Event::RequestReassigned { at, .. }
            | Event::RequestAccepted { at, .. }
            | Event::RequestRefused { at, .. }
            | Event::InfoRequested { at, .. }
            | Event::InfoProvided { at, .. }
            | Event::RequestReviewed { at, .. }
            | Event::RequestApproved { at, .. }
            | Event::RequestDenied { at, .. }
            | Event::FulfilmentStarted { at, .. }
            | Event::StepCompleted { at, .. }
            | Event::RequestFulfilled { at }
            | Event::NoteAdded { at, .. }
            | Event::ExtensionRequested { at, .. }
            | Event::ExtensionApproved { at, .. }
            | Event::ExtensionRejected { at, .. }
            | Event::RequestRated { at, .. }
            | Event::RemediationOpened { at, .. }
            | Event::RemediationResolved { at, .. }
            | Event::RatingAppealed { at, .. }
            | Event::AppealDecided { at, .. }
            | Event::RequestWithdrawn { at, .. }
            | Event::RequestClosed { at, .. }
            | Event::WarningRaised { at, .. }
            | Event::YellowCardIssued { at, .. }
            | Event::RedCardIssued { at, .. } => *at,
        }
    }

    /// The event's timer kind, for supervision events and deemed acceptance.
    pub fn timer_kind(&self) -> Option<TimerKind> {
        match self {
            Event::RequestAccepted { deemed: true, .. } => Some(TimerKind::DeemedAcceptance),
            Event::WarningRaised { .. } => Some(TimerKind::Warning),
            Event::YellowCardIssued { .. } => Some(TimerKind::YellowCard),
            Event::RedCardIssued { .. } => Some(TimerKind::RedCard),
            _ => None,
        }
    }

    /// The documented JSON form as a value.
    pub fn to_json_value(&self) -> serde_json::Value {
        // Serializing these plain data types cannot fail (string keys, finite data).
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The documented JSON form as bytes, for the event log.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads stored bytes written under any known schema version, upcasting old ones.
    pub fn from_json(
        event_type: &str,
        schema_version: u32,
        bytes: &[u8],
    ) -> Result<Event, EventDecodeError> {
        // The common case, bytes of the current version that name their own type: read
        // them straight into the enum (about a third of the cost of going through a
        // `serde_json::Value`). Anything else takes the general path below, which also
        // gives every error its message.
        if schema_version == current_schema_version(event_type) && EVENT_TYPES.contains(&event_type)
        {
            if let Ok(event) = serde_json::from_slice::<Event>(bytes) {
                if event.event_type() == event_type {
                    return Ok(event);
                }
            }
        }
        let mut value: serde_json::Value = serde_json::from_slice(bytes)?;
        let object = value.as_object_mut().ok_or(EventDecodeError::NotAnObject)?;
        if !EVENT_TYPES.contains(&event_type) {
            return Err(EventDecodeError::UnknownType(event_type.to_string()));
        }
        object.insert(
            "type".to_string(),
            serde_json::Value::String(event_type.to_string()),
        );
        let current = current_schema_version(event_type);
        if schema_version > current || schema_version == 0 {
            return Err(EventDecodeError::UnknownVersion {
                event_type: event_type.to_string(),
                version: schema_version,
                current,
            });
        }
        let mut version = schema_version;
        while version < current {
            upcast(event_type, version, object)?;
            version += 1;
        }
        Ok(serde_json::from_value(value)?)
    }
}

fn current_schema_version(event_type: &str) -> u32 {
    match event_type {
        "RequestRated" => 2,
        _ => 1,
    }
}

/// Turns version `from` of an event into version `from + 1`, in place.
fn upcast(
    event_type: &str,
    from: u32,
    object: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<(), EventDecodeError> {
    let problem = |problem: &str| EventDecodeError::Upcast {
        event_type: event_type.to_string(),
        version: from,
        problem: problem.to_string(),
    };
    match (event_type, from) {
        // v1 stored a numeric score, 5 = 非常满意 .. 1 = 非常不满意.
        ("RequestRated", 1) => {
            let score = object
                .remove("score")
                .and_then(|s| s.as_u64())
                .ok_or_else(|| problem("score is missing"))?;
            let grade = u8::try_from(score)
                .ok()
                .and_then(Grade::from_score)
                .ok_or_else(|| problem("score must be 1 to 5"))?;
            object.insert("grade".to_string(), serde_json::to_value(grade)?);
            object.entry("comment").or_insert(serde_json::Value::Null);
            Ok(())
        }
        _ => Err(problem("no upcaster for this version")),
    }
}
