//! The five anju.v1 services, one module each, and what they share: the roles each
//! admits, the caller as a domain `Actor`, the boxed stream type of streaming calls,
//! and how a stream is fed from a task that ends when the server stops.

use std::future::Future;
use std::pin::Pin;

use anju_auth::Role;
use anju_domain::Actor;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Status};

use crate::authn::require_role;
use crate::convert;
use crate::error::ApiError;
use crate::state::AppState;

pub mod admin;
pub mod caseworker;
pub mod eventlog;
pub mod manager;
pub mod resident;

pub use admin::AdminHandler;
pub use caseworker::CaseworkerHandler;
pub use eventlog::EventLogHandler;
pub use manager::{FiguresSource, ManagerHandler, ReadModelFigures};
pub use resident::ResidentHandler;

/// The stream a server-streaming call returns. Streams end when
/// `AppState::stopped()` resolves, so a graceful stop does not wait for them.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Residents on their own devices and kiosk staff acting for them.
pub const RESIDENT_ROLES: &[Role] = &[Role::Resident, Role::Kiosk, Role::Admin];
/// People who work requests; admins may too, for support.
pub const CASEWORKER_ROLES: &[Role] = &[Role::Caseworker, Role::Supervisor, Role::Admin];
/// Decisions about other people's work: extensions, reassignment.
pub const SUPERVISOR_ROLES: &[Role] = &[Role::Supervisor, Role::Admin];
/// Rating appeals are decided by a manager (the domain rule), or a supervisor's call is
/// refused by it with PERMISSION_DENIED.
pub const APPEAL_ROLES: &[Role] = &[Role::Manager, Role::Supervisor, Role::Admin];
/// Readers of reports.
pub const MANAGER_ROLES: &[Role] = &[Role::Manager, Role::Supervisor, Role::Admin];
/// Operators of the server itself (AdminService).
pub const ADMIN_ROLES: &[Role] = &[Role::Admin];
/// Readers of the raw event log.
pub const EVENTLOG_ROLES: &[Role] = &[Role::Admin];
/// Readers of the log's sizes and lags.
pub const LOG_STATS_ROLES: &[Role] = &[Role::Admin, Role::Manager];

/// The caller as a domain actor, when the token's role is one of `roles`.
pub fn caller<T>(request: &Request<T>, roles: &[Role]) -> Result<Actor, ApiError> {
    let claims = require_role(request, roles)?;
    Ok(convert::actor(claims))
}

/// Runs `feed` in a task that writes into the returned stream; the task ends when the
/// client goes away or the server starts stopping, and with it the stream.
pub(crate) fn spawn_stream<T, F, Fut>(state: &AppState, feed: F) -> ResponseStream<T>
where
    T: Send + 'static,
    F: FnOnce(mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = mpsc::channel(64);
    let closed = sender.clone();
    let work = feed(sender);
    let state = state.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = work => {}
            () = state.stopped() => {}
            () = closed.closed() => {}
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
}
