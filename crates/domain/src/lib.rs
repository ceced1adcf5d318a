//! The rules of the work: pure decisions over folded request state.
//!
//! anju-domain holds the service catalogue, the request lifecycle, working-day
//! clocks, supervision and ratings. It has no async, no clock, no randomness and no
//! IO: time and ids arrive inside commands, and the server joins this crate to the
//! event log. The server calls:
//!
//! - [`Catalogue::shipped`] / [`Catalogue::from_toml_str`], [`validate_form`],
//!   [`ValidatedForm::seal_sensitive`];
//! - [`Calendar::china_2026`] / [`Calendar::from_toml_str`];
//! - [`decide()`] with a [`Context`], [`evolve`], [`authorize`], [`next_due`];
//! - [`Event::from_json`], [`Event::to_json`], [`Event::event_type`], [`Event::schema_version`].

pub mod actor;
pub mod calendar;
pub mod catalogue;
pub mod command;
pub mod decide;
pub mod event;
pub mod ids;
pub mod rating;
pub mod state;
pub mod supervision;
pub mod text;
pub mod time;

pub use actor::{Actor, Role, Scope};
pub use calendar::{
    Calendar, CalendarError, Schedule, FIXED_STATUTORY_HOLIDAYS, WARN_DAYS_BEFORE_YEAR_END,
};
pub use catalogue::{
    validate_form, validate_sealed_form, Answer, Catalogue, CatalogueError, FieldDefinition,
    FieldKind, FieldViolation, FormAnswers, FulfilmentStep, MaterialDefinition, Problem,
    ServiceDefinition, ServiceTerms, ValidatedForm,
};
pub use command::{
    Action, Applicant, Attachment, Command, Lookup, Materials, Submission, TimerKind,
};
pub use decide::{authorize, decide, Context, DomainError};
pub use event::{Event, EventDecodeError, EVENT_TYPES};
pub use ids::{ActorId, Category, CodeError, RequestId, ServiceCode, SiteId, TrackingCode};
pub use rating::{Appeal, Grade, Rating, Remediation, RemediationState};
pub use state::{
    evolve, try_evolve, Deadlines, EvolveError, Request, RequestState, Status, Supervision,
};
pub use supervision::{next_due, DueTimer};
pub use text::{refused_char, Lines};
pub use time::{CivilDate, Timestamp, Weekday};
