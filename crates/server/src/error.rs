//! The one place where errors become `tonic::Status`: every handler returns
//! `Result<_, ApiError>` (or converts with `?`) and the mapping here decides the
//! gRPC code, the message and the rich error details.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use anju_auth::AuthError;

/// One problem with one request field, reported as a google.rpc.BadRequest
/// field violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `applicant.phone` or `answers[birth_date]`.
    pub field: String,
    /// What is wrong and what is expected, lowercase.
    pub description: String,
}

/// Errors a handler can return; each maps to exactly one gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: INVALID_ARGUMENT with field violations.
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// No usable token: UNAUTHENTICATED, saying what to do.
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// The token is fine but does not cover this call (role, site or category):
    /// PERMISSION_DENIED.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// NOT_FOUND, naming what was looked for (never personal data).
    #[error("{0} not found")]
    NotFound(String),
    /// ALREADY_EXISTS, e.g. an idempotency key reused with different content.
    #[error("{0}")]
    AlreadyExists(String),
    /// The workflow does not allow this now (wrong state, missing claim):
    /// FAILED_PRECONDITION. The caller must change something before retrying.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Someone else got there first (a lost claim race, a decision already taken, the
    /// request changed while the command was decided): ABORTED. Reload and decide again.
    #[error("{0}")]
    Aborted(String),
    /// A per-client limit ran out (status look-ups): RESOURCE_EXHAUSTED, naming the
    /// limit. Retry later.
    #[error("{0}")]
    ResourceExhausted(String),
    /// `expected_version` did not match: ABORTED. Reload and decide again.
    #[error("request changed since version {expected}: it is now at version {actual}; reload it and try again")]
    VersionConflict { expected: u64, actual: u64 },
    /// The read models did not reach `min_position` before the call's deadline:
    /// DEADLINE_EXCEEDED.
    #[error("read models reached position {reached}, not yet {wanted}, before the deadline; retry with a longer deadline")]
    PositionNotReached { wanted: u64, reached: u64 },
    /// The service cannot take the call now (stopping, log unavailable): UNAVAILABLE.
    /// Safe to retry with backoff.
    #[error("{0}")]
    Unavailable(String),
    /// Not built yet: UNIMPLEMENTED.
    #[error("{0}")]
    Unimplemented(String),
    /// A bug or an IO failure: INTERNAL. The detail is logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> ApiError {
        ApiError::InvalidArgument(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            ApiError::InvalidArgument(_) => Code::InvalidArgument,
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
            ApiError::PermissionDenied(_) => Code::PermissionDenied,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::AlreadyExists(_) => Code::AlreadyExists,
            ApiError::FailedPrecondition(_) => Code::FailedPrecondition,
            ApiError::VersionConflict { .. } | ApiError::Aborted(_) => Code::Aborted,
            ApiError::ResourceExhausted(_) => Code::ResourceExhausted,
            ApiError::PositionNotReached { .. } => Code::DeadlineExceeded,
            ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::Unimplemented(_) => Code::Unimplemented,
            ApiError::Internal(_) => Code::Internal,
        }
    }
}

/// The application's errors, as the API names them. This and [`to_status`] are the
/// whole mapping: Invalid → INVALID_ARGUMENT (one violation per field), WrongState and
/// Precondition → FAILED_PRECONDITION (saying the current state), Conflict → ABORTED,
/// IdempotencyMismatch → ALREADY_EXISTS, Forbidden → PERMISSION_DENIED, NotFound →
/// NOT_FOUND, NotReached → DEADLINE_EXCEEDED, Unavailable → UNAVAILABLE.
impl From<anju_app::AppError> for ApiError {
    fn from(error: anju_app::AppError) -> ApiError {
        use anju_app::AppError;
        match error {
            AppError::Invalid(violations) => ApiError::InvalidArgument(
                violations
                    .into_iter()
                    .map(|violation| FieldViolation {
                        field: violation.field.clone(),
                        description: violation.to_string(),
                    })
                    .collect(),
            ),
            AppError::NotFound => ApiError::NotFound("request".into()),
            AppError::Forbidden(reason) => ApiError::PermissionDenied(reason),
            error @ AppError::WrongState { .. } => ApiError::FailedPrecondition(error.to_string()),
            AppError::Precondition(reason) => ApiError::FailedPrecondition(reason),
            error @ AppError::Conflict(_) => ApiError::Aborted(error.to_string()),
            error @ AppError::IdempotencyMismatch => ApiError::AlreadyExists(error.to_string()),
            AppError::NotReached { wanted, reached } => ApiError::PositionNotReached {
                // The log counts from 0, the API from 1.
                wanted: wanted + 1,
                reached,
            },
            AppError::Unavailable(reason) => ApiError::Unavailable(reason),
        }
    }
}

impl From<anju_eventlog::LogError> for ApiError {
    fn from(error: anju_eventlog::LogError) -> ApiError {
        ApiError::Unavailable(format!("event log: {error}"))
    }
}

/// Collects every problem of a request before answering, so a client learns all of
/// them at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Violations {
        Violations::default()
    }

    /// Records a violation of `field`.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Records a violation when `field_is_empty`.
    pub fn require(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.add(field, "is required");
        }
    }

    /// `Ok(())` when nothing was recorded, else INVALID_ARGUMENT with all of them.
    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidArgument(self.0))
        }
    }
}

/// Maps an error to the status sent to the client. INVALID_ARGUMENT carries a
/// google.rpc.BadRequest with one field violation per problem; INTERNAL hides its
/// detail from the client and logs it.
pub fn to_status(error: ApiError) -> Status {
    let code = error.code();
    match error {
        ApiError::InvalidArgument(violations) => {
            let message = ApiError::InvalidArgument(violations.clone()).to_string();
            let mut details = ErrorDetails::new();
            for violation in violations {
                details.add_bad_request_violation(violation.field, violation.description);
            }
            Status::with_error_details(code, message, details)
        }
        ApiError::Internal(detail) => {
            tracing::error!(error = %detail, "internal error");
            Status::new(code, "internal error; the server log has the details")
        }
        other => Status::new(code, other.to_string()),
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        to_status(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_field_violations() {
        let mut violations = Violations::new();
        violations.require("applicant.name", "");
        violations.add("applicant.phone", "must be 11 digits");
        let status = to_status(violations.into_result().unwrap_err());
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status
                .message()
                .contains("applicant.phone: must be 11 digits"),
            "{}",
            status.message()
        );
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("bad request details");
        assert_eq!(bad_request.field_violations.len(), 2);
        assert_eq!(bad_request.field_violations[0].field, "applicant.name");
    }

    #[test]
    fn codes_follow_the_api_doc() {
        assert_eq!(
            to_status(ApiError::from(AuthError::Missing)).code(),
            Code::Unauthenticated
        );
        assert_eq!(
            to_status(ApiError::VersionConflict {
                expected: 1,
                actual: 2
            })
            .code(),
            Code::Aborted
        );
        assert_eq!(
            to_status(ApiError::PositionNotReached {
                wanted: 9,
                reached: 3
            })
            .code(),
            Code::DeadlineExceeded
        );
        let internal = to_status(ApiError::Internal("disk on fire at /secret/path".into()));
        assert!(!internal.message().contains("/secret/path"));
        assert!(Violations::new().into_result().is_ok());
    }
}
