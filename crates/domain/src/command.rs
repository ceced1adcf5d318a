//! Commands: what an actor asks the domain to do to one request, at an instant.

use crate::actor::Actor;
use crate::catalogue::FormAnswers;
use crate::ids::{ActorId, RequestId, ServiceCode, SiteId, TrackingCode};
use crate::rating::Grade;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Who a request is for. Only what the workflow needs: a display name, the last four
/// digits of the phone (for the resident status lookup), the contact details as
/// ciphertext the server made and keyed digests of the identity numbers the request
/// names (for staff to find it by identity card). The domain never sees an identity
/// number or a phone number in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applicant {
    /// The resident's account id; the resident who may withdraw, supply materials and rate.
    pub resident_id: ActorId,
    pub display_name: String,
    pub phone_last4: String,
    pub sealed_contact: String,
    /// Lowercase hex HMAC-SHA256 digests, keyed by the node's secret, of the identity
    /// numbers the request names (the applicant's, and the form's `id_number` answer),
    /// distinct and sorted. A keyed pseudonym like `resident_id`: it cannot be turned
    /// back into a number without the secret. Empty (and absent in JSON) when the
    /// request names none, and in events written before digests were kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_number_digests: Vec<String>,
}

impl Applicant {
    /// Whether `text` has the form of an identity-number digest: 64 lowercase hex
    /// characters. A clear identity number never has it.
    pub fn is_digest(text: &str) -> bool {
        text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
}

/// A document handed over with a submission or with missing materials, by reference to
/// where the client uploaded it. The log keeps the reference, never the content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Opaque reference of the upload endpoint.
    pub reference: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    #[serde(default)]
    pub size_bytes: u64,
    /// Lowercase hex SHA-256 of the content; empty when the client gave none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
}

/// Materials (申报材料) by material code.
pub type Materials = BTreeMap<String, Attachment>;

/// What the resident's look-up proves: the tracking code on the receipt and the last four
/// digits of the applicant's phone. It lets whoever holds the receipt act as the
/// applicant (a resident whose kiosk submission gave them no account, or the kiosk that
/// helps them), as the look-up already lets them read the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {
    pub tracking_code: TrackingCode,
    pub phone_last4: String,
}

/// A new request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub tracking_code: TrackingCode,
    pub site: SiteId,
    pub service_code: ServiceCode,
    /// The definition version the form was filled in against.
    pub definition_version: u32,
    /// Answers with sensitive ones already sealed (see `ValidatedForm::seal_sensitive`).
    pub answers: FormAnswers,
    pub applicant: Applicant,
    /// 帮办: the resident a kiosk member of staff submits for (must be the applicant).
    pub on_behalf_of: Option<ActorId>,
    /// Documents handed over with the submission.
    #[serde(default)]
    pub materials: Materials,
}

/// The timers the scheduler fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// Nobody acted on a submitted request within 5 working days: it counts as accepted.
    DeemedAcceptance,
    /// 80% of the promised time is used (预警).
    Warning,
    /// The promised deadline passed (黄牌).
    YellowCard,
    /// 5 working days after the promised deadline (红牌).
    RedCard,
}

impl TimerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TimerKind::DeemedAcceptance => "deemed_acceptance",
            TimerKind::Warning => "warning",
            TimerKind::YellowCard => "yellow_card",
            TimerKind::RedCard => "red_card",
        }
    }
}

/// What is asked.
// Submit is much larger than the rest; as with `Event::RequestSubmitted`, boxing it
// would make every match clumsier for a saving that does not matter (one command per
// call, never kept).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Submit(Submission),
    Claim,
    Accept {
        comment: Option<String>,
    },
    Refuse {
        reason: String,
        /// The rule the refusal rests on.
        legal_basis: Option<String>,
    },
    /// 一次性告知: the one complete list of missing materials, with a message to the
    /// resident.
    RequestInfo {
        missing: Vec<String>,
        message: Option<String>,
    },
    ProvideInfo {
        note: Option<String>,
        materials: Materials,
    },
    Review {
        opinion: String,
    },
    Approve {
        level: u8,
        comment: Option<String>,
    },
    Deny {
        reason: String,
        legal_basis: Option<String>,
    },
    StartFulfilment {
        note: Option<String>,
    },
    /// Completing the last step also fulfils the request.
    CompleteStep {
        step: String,
        note: Option<String>,
    },
    /// `internal: false` notes are shown to the resident.
    AddNote {
        text: String,
        internal: bool,
    },
    Reassign {
        to: ActorId,
    },
    RequestExtension {
        days: u32,
        reason: String,
    },
    DecideExtension {
        approve: bool,
    },
    Rate {
        grade: Grade,
        comment: Option<String>,
    },
    ResolveRemediation {
        summary: String,
    },
    AppealRating {
        reason: String,
    },
    DecideAppeal {
        uphold: bool,
    },
    Withdraw {
        reason: Option<String>,
    },
    Close,
    /// Idempotent: firing a timer that already fired, is not due yet or no longer
    /// applies returns no events.
    FireTimer {
        kind: TimerKind,
        due_at: Timestamp,
    },
}

impl Action {
    /// A stable lowercase name, used in errors and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Submit(_) => "submit",
            Action::Claim => "claim",
            Action::Accept { .. } => "accept",
            Action::Refuse { .. } => "refuse",
            Action::RequestInfo { .. } => "request_info",
            Action::ProvideInfo { .. } => "provide_info",
            Action::Review { .. } => "review",
            Action::Approve { .. } => "approve",
            Action::Deny { .. } => "deny",
            Action::StartFulfilment { .. } => "start_fulfilment",
            Action::CompleteStep { .. } => "complete_step",
            Action::AddNote { .. } => "add_note",
            Action::Reassign { .. } => "reassign",
            Action::RequestExtension { .. } => "request_extension",
            Action::DecideExtension { .. } => "decide_extension",
            Action::Rate { .. } => "rate",
            Action::ResolveRemediation { .. } => "resolve_remediation",
            Action::AppealRating { .. } => "appeal_rating",
            Action::DecideAppeal { .. } => "decide_appeal",
            Action::Withdraw { .. } => "withdraw",
            Action::Close => "close",
            Action::FireTimer { .. } => "fire_timer",
        }
    }
}

/// One command: who, when, which request, what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub actor: Actor,
    pub at: Timestamp,
    pub request_id: RequestId,
    pub action: Action,
    /// The resident's look-up, when the command comes with one (see [`Lookup`]).
    #[serde(default)]
    pub lookup: Option<Lookup>,
}

impl Command {
    pub fn new(actor: Actor, at: Timestamp, request_id: RequestId, action: Action) -> Command {
        Command {
            actor,
            at,
            request_id,
            action,
            lookup: None,
        }
    }

    /// The command with the look-up that found the request.
    pub fn with_lookup(mut self, lookup: Option<Lookup>) -> Command {
        self.lookup = lookup;
        self
    }
}
