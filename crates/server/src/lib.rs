//! anju-server's library: configuration, the gRPC/gRPC-Web server with health,
//! reflection, auth, limits and metrics, and the four anju.v1 services over the
//! application layer (`anju_app::Application`); online backup and offline restore.
//!
//! `App::build(config).await?.run_until_stopped().await` is the whole binary.

pub mod app;
pub mod authn;
pub mod backup;
pub mod config;
pub mod convert;
pub mod error;
pub mod http;
pub mod metrics;
pub mod services;
pub mod state;
pub mod telemetry;

pub use app::{
    app_config, cors_layer, rebuild_projections, App, RebuildReport, ServeError, StartError,
};
pub use authn::{claims, require_category, require_role, require_site, AuthInterceptor};
pub use config::{Config, ConfigError, LogFormat, ServerArgs};
pub use error::{to_status, ApiError, FieldViolation, Violations};
pub use services::{caller, FiguresSource, ManagerHandler, ReadModelFigures};
pub use state::{call_timeout, AppState, RateLimiter};
