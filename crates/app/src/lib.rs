//! anju's application layer: joins the pure domain to the event log, the key store and
//! the read models, for the gRPC handlers in `crates/server` to call.
//!
//! - [`Application::open`] / [`Application::close`]: the log, catalogue, calendar, key
//!   store, projections and the timer scheduler.
//! - [`Application::submit`]: parse, validate, seal personal data, idempotent append.
//! - [`Application::execute`] / [`Application::reassign`]: every other command, with
//!   one re-decide on a version conflict.
//! - [`Application::find_by_identity`]: staff find a resident's requests by identity
//!   number (a keyed digest, never the number), each look-up audited in the log.
//! - [`Application::erase_resident`] / [`Application::unseal_contact`]: crypto-shredding
//!   and the authorised view of contact details.
//! - queries with the access rules: [`Application::resident_status`] (tracking code +
//!   last four phone digits; any miss is NotFound), [`Application::request_detail`]
//!   (out of the caller's sites/categories: NotFound, so existence is not revealed),
//!   [`Application::queue`] and [`Application::metrics`] (naming a site or category out
//!   of scope: Forbidden). Each takes `min_position` (a log position, 0-based) and waits
//!   until the read models have applied it, up to `AppConfig::query_timeout`; call
//!   [`Application::wait_for`] first to wait with a call's own budget.
//! - [`Application::install_calendar`]: a newly published year of the working-day
//!   calendar, kept in `data_dir/calendar/<year>.toml` and read at every start.
//! - [`Application::fire_due_timers`]: one scheduler round (the scheduler runs them
//!   every `AppConfig::timer_interval` and once at start).
//!
//! See `docs/adr/003-application-layer.md` for the decisions behind it.

mod app;
mod calendar;
mod clock;
mod error;
mod identity;
mod input;
mod keymap;
pub mod keys;
mod queries;
mod scheduler;
mod seal;

pub use app::{
    AppBackup, AppConfig, Application, CommandOptions, ErasureReport, Executed, ReassignTarget,
    ResidentSecret, SubmitInput, Submitted,
};
pub use calendar::{CalendarInstalled, CALENDAR_DIR, MAX_CALENDAR_BYTES};
pub use clock::{
    Advanced, Clock, DemoClock, ManualClock, SystemClock, DEMO_CLOCK_FILE, MAX_DEMO_ADVANCE,
};
pub use error::AppError;
pub use identity::{
    FoundByIdentity, IdentityLookupAudit, IdentityMatch, IDENTITY_AUDIT_EVENT,
    IDENTITY_AUDIT_STREAM, MAX_REASON_CHARS,
};
pub use input::{parse_id_number, parse_idempotency_key, parse_phone};
pub use queries::*;
pub use seal::{mask, Contact};
