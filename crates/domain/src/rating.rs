//! 好差评: the five rating grades, remediation of bad ratings and rating appeals.

use crate::ids::ActorId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Working days a bad rating's remediation may take (整改时限).
pub const REMEDIATION_WORKING_DAYS: u32 = 15;

/// The five national 好差评 grades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    /// 非常满意
    VerySatisfied,
    /// 满意
    Satisfied,
    /// 基本满意
    Neutral,
    /// 不满意
    Dissatisfied,
    /// 非常不满意
    VeryDissatisfied,
}

impl Grade {
    pub const ALL: [Grade; 5] = [
        Grade::VerySatisfied,
        Grade::Satisfied,
        Grade::Neutral,
        Grade::Dissatisfied,
        Grade::VeryDissatisfied,
    ];

    pub fn name_zh(self) -> &'static str {
        match self {
            Grade::VerySatisfied => "非常满意",
            Grade::Satisfied => "满意",
            Grade::Neutral => "基本满意",
            Grade::Dissatisfied => "不满意",
            Grade::VeryDissatisfied => "非常不满意",
        }
    }

    /// 不满意 and 非常不满意 are 差评 and must be put right.
    pub fn is_bad(self) -> bool {
        matches!(self, Grade::Dissatisfied | Grade::VeryDissatisfied)
    }

    /// Score 5 (非常满意) down to 1 (非常不满意), the form schema version 1 used.
    pub fn from_score(score: u8) -> Option<Grade> {
        match score {
            5 => Some(Grade::VerySatisfied),
            4 => Some(Grade::Satisfied),
            3 => Some(Grade::Neutral),
            2 => Some(Grade::Dissatisfied),
            1 => Some(Grade::VeryDissatisfied),
            _ => None,
        }
    }
}

/// A rating on a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rating {
    pub grade: Grade,
    pub comment: Option<String>,
    pub by: ActorId,
    pub at: Timestamp,
    pub appeal: Option<Appeal>,
    /// A manager removed it on appeal; it no longer counts, and it cannot be given again.
    pub removed: bool,
}

/// A caseworker's appeal against a rating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appeal {
    pub reason: String,
    pub by: ActorId,
    pub at: Timestamp,
    /// `None` while pending; `Some(true)` upheld the rating, `Some(false)` removed it.
    pub upheld: Option<bool>,
}

/// The follow-up a bad rating opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remediation {
    pub opened_at: Timestamp,
    pub due: Timestamp,
    pub state: RemediationState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemediationState {
    Open,
    Resolved {
        by: ActorId,
        at: Timestamp,
        summary: String,
    },
    /// The rating that opened it was removed on appeal.
    Cancelled {
        at: Timestamp,
    },
}
