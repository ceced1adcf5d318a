//! The four anju.v1 services, one module each, and what they share: the roles each
//! admits, the boxed stream type of streaming calls, and the temporary
//! "not implemented yet" answer.

use std::pin::Pin;

use anju_auth::Role;
use tokio_stream::Stream;
use tonic::Status;

use crate::error::ApiError;

pub mod caseworker;
pub mod eventlog;
pub mod manager;
pub mod resident;

pub use caseworker::CaseworkerHandler;
pub use eventlog::EventLogHandler;
pub use manager::ManagerHandler;
pub use resident::ResidentHandler;

/// The stream a server-streaming call returns. Streams must end when
/// `AppState::stopped()` resolves, or a graceful stop waits the full
/// `shutdown_grace` for them.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Residents on their own devices and kiosk staff acting for them.
pub const RESIDENT_ROLES: &[Role] = &[Role::Resident, Role::Kiosk, Role::Admin];
/// People who work requests; admins may too, for support.
pub const CASEWORKER_ROLES: &[Role] = &[Role::Caseworker, Role::Supervisor, Role::Admin];
/// Decisions about other people's work: extensions, appeals, reassignment.
pub const SUPERVISOR_ROLES: &[Role] = &[Role::Supervisor, Role::Admin];
/// Readers of reports.
pub const MANAGER_ROLES: &[Role] = &[Role::Manager, Role::Supervisor, Role::Admin];
/// Readers of the raw event log.
pub const EVENTLOG_ROLES: &[Role] = &[Role::Admin];
/// Readers of the log's sizes and lags.
pub const LOG_STATS_ROLES: &[Role] = &[Role::Admin, Role::Manager];

/// The shell's answer for a method whose work has not landed yet.
pub(crate) fn not_yet<T>(method: &str) -> Result<T, Status> {
    Err(ApiError::Unimplemented(format!("{method} lands with the service issue")).into())
}
