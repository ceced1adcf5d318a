//! What went wrong, in words a person can act on, and the exit code scripts rely on.
//! Every gRPC status becomes a [`Failure`] in one function, [`from_status`].

use std::fmt;

use tonic::Code;
use tonic_types::StatusExt;

/// The documented exit codes of `anju` (docs/cli.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Anything not covered below (a bug, an internal server error).
    Other = 1,
    /// The command line or an input value is wrong; fix it and run again.
    Usage = 2,
    /// No such request, service, stream or tracking code.
    NotFound = 3,
    /// No usable token, or the token does not allow the action.
    Auth = 4,
    /// The request is not in a state that allows it, or it moved on; reload and decide again.
    Conflict = 5,
    /// The server cannot be reached or is overloaded or too slow; retry later.
    Unavailable = 6,
    /// The server does not offer this call (yet).
    Unimplemented = 7,
}

/// An error with its exit code and, where there is one, what to do about it.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }

    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(Exit::Usage, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

const TOKEN_HINT: &str = "issue a token on the server host with `anju token issue --role ROLE --site SITE --subject NAME --data-dir DATA_DIR` and pass it with --token or ANJU_TOKEN";

/// Turns a gRPC status from `action` (e.g. "submitting the request") into a failure
/// with the exit code for its code, the server's message, the field violations it
/// carried, and a hint.
pub fn from_status(action: &str, status: &tonic::Status) -> Failure {
    let server_message = status.message();
    let mut message = format!("{action}: {}", describe_code(status.code()));
    if !server_message.is_empty() {
        message.push_str(": ");
        message.push_str(server_message);
    }
    if let Some(bad_request) = status.get_details_bad_request() {
        for violation in bad_request.field_violations {
            message.push_str(&format!(
                "\n  field {}: {}",
                violation.field, violation.description
            ));
        }
    }
    let lower = server_message.to_lowercase();
    let (exit, hint): (Exit, Option<String>) = match status.code() {
        Code::Ok => (Exit::Other, None),
        Code::InvalidArgument | Code::OutOfRange => (
            Exit::Usage,
            Some("fix the values named above and run the command again".into()),
        ),
        Code::NotFound => (
            Exit::NotFound,
            Some("check the id or tracking code (and the phone's last four digits); a request outside your token's sites is not found either".into()),
        ),
        Code::Unauthenticated => {
            let hint = if lower.contains("expired") {
                format!("token expired: {TOKEN_HINT}")
            } else if lower.contains("signature") {
                format!("the token was signed with another server's secret: {TOKEN_HINT}")
            } else {
                TOKEN_HINT.to_string()
            };
            (Exit::Auth, Some(hint))
        }
        Code::PermissionDenied => (
            Exit::Auth,
            Some("use a token whose role, sites and categories cover this action (`anju token issue --role ...`)".into()),
        ),
        Code::AlreadyExists => (
            Exit::Conflict,
            Some("that idempotency key was used for different content; use a new --idempotency-key".into()),
        ),
        Code::FailedPrecondition if lower.contains("--demo-clock") => (
            Exit::Conflict,
            Some("only a demonstration server started with `anju-server --demo-clock` lets its clock be moved".into()),
        ),
        Code::FailedPrecondition => (
            Exit::Conflict,
            Some("the request is not in a state that allows this; see `anju show REQUEST_ID` for where it stands".into()),
        ),
        Code::Aborted => (
            Exit::Conflict,
            Some("the request changed since you read it; reload it with `anju show REQUEST_ID` and decide again".into()),
        ),
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => (
            Exit::Unavailable,
            Some("retry in a moment; if it persists check the server with `anju health`".into()),
        ),
        Code::Unimplemented => (
            Exit::Unimplemented,
            Some("this server does not offer the call yet; upgrade anju-server".into()),
        ),
        Code::Cancelled | Code::Unknown | Code::Internal | Code::DataLoss => (
            Exit::Other,
            Some("the detail is in the server's log".into()),
        ),
    };
    Failure {
        exit,
        message,
        hint,
    }
}

/// The gRPC code in words.
fn describe_code(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid input",
        Code::DeadlineExceeded => "the server did not answer in time",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "forbidden",
        Code::ResourceExhausted => "the server is busy",
        Code::FailedPrecondition => "not allowed now",
        Code::Aborted => "conflict",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "not implemented by the server",
        Code::Internal => "internal server error",
        Code::Unavailable => "server unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "not authenticated",
    }
}

/// The exit code for an error: the [`Failure`] in its chain, else [`Exit::Other`].
pub fn exit_code(error: &anyhow::Error) -> Exit {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Failure>())
        .map_or(Exit::Other, |failure| failure.exit)
}

/// The hint of the [`Failure`] in the chain, if any.
pub fn hint(error: &anyhow::Error) -> Option<String> {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Failure>())
        .and_then(|failure| failure.hint.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_to_a_documented_exit() {
        let cases = [
            (Code::InvalidArgument, Exit::Usage),
            (Code::NotFound, Exit::NotFound),
            (Code::Unauthenticated, Exit::Auth),
            (Code::PermissionDenied, Exit::Auth),
            (Code::FailedPrecondition, Exit::Conflict),
            (Code::Aborted, Exit::Conflict),
            (Code::AlreadyExists, Exit::Conflict),
            (Code::Unavailable, Exit::Unavailable),
            (Code::DeadlineExceeded, Exit::Unavailable),
            (Code::Unimplemented, Exit::Unimplemented),
            (Code::Internal, Exit::Other),
        ];
        for (code, exit) in cases {
            let failure = from_status("calling", &tonic::Status::new(code, "x"));
            assert_eq!(failure.exit, exit, "{code:?}");
        }
    }

    #[test]
    fn an_expired_token_says_to_issue_a_new_one() {
        let failure = from_status(
            "listing the queue",
            &tonic::Status::unauthenticated("token expired at 2026-01-01T00:00:00Z"),
        );
        assert_eq!(failure.exit, Exit::Auth);
        assert!(failure
            .hint
            .unwrap()
            .starts_with("token expired: issue a token"));
        assert!(failure
            .message
            .starts_with("listing the queue: not authenticated: token expired"));
    }
}
