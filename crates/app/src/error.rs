//! The application's one error type; the gRPC layer maps each variant to one status code.

use anju_domain::{DomainError, FieldViolation, Status};

/// Why an application call failed. Messages are lowercase and say what is wrong; none
/// of them ever holds a phone number, an identity number or a sensitive answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AppError {
    /// INVALID_ARGUMENT: every bad field is listed.
    #[error("invalid: {}", join(.0))]
    Invalid(Vec<FieldViolation>),
    /// NOT_FOUND: no such request, or one the caller may not know exists.
    #[error("no such request")]
    NotFound,
    /// PERMISSION_DENIED.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// FAILED_PRECONDITION: the command does not apply in the request's status.
    #[error("cannot {command} a request that is {current}")]
    WrongState {
        current: Status,
        command: &'static str,
    },
    /// FAILED_PRECONDITION: something must happen first.
    #[error("{0}")]
    Precondition(String),
    /// ABORTED: it clashes with what someone else did first.
    #[error("conflict: {0}")]
    Conflict(String),
    /// ALREADY_EXISTS: the idempotency key was used before for a different request.
    #[error("the idempotency key was already used for a different request")]
    IdempotencyMismatch,
    /// DEADLINE_EXCEEDED (or UNAVAILABLE): the read models did not apply the event at
    /// log position `wanted` in time; `reached` is the next position they have not
    /// applied (so every event below it is visible).
    #[error(
        "read models have applied the log up to position {reached}, not yet position {wanted}"
    )]
    NotReached { wanted: u64, reached: u64 },
    /// UNAVAILABLE: the log is closed or storage failed.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

fn join(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl AppError {
    pub(crate) fn unavailable(what: impl std::fmt::Display) -> AppError {
        AppError::Unavailable(what.to_string())
    }

    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> AppError {
        AppError::Invalid(vec![FieldViolation::new(
            field,
            anju_domain::Problem::Other {
                message: message.into(),
            },
        )])
    }
}

impl From<DomainError> for AppError {
    fn from(error: DomainError) -> AppError {
        match error {
            DomainError::Invalid(violations) => AppError::Invalid(violations),
            DomainError::WrongState { current, command } => {
                AppError::WrongState { current, command }
            }
            DomainError::Precondition { reason } => AppError::Precondition(reason),
            DomainError::Forbidden { reason } => AppError::Forbidden(reason),
            DomainError::NotFound => AppError::NotFound,
            DomainError::Conflict { reason } => AppError::Conflict(reason),
        }
    }
}

impl From<anju_eventlog::LogError> for AppError {
    fn from(error: anju_eventlog::LogError) -> AppError {
        AppError::unavailable(error)
    }
}
