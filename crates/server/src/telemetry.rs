//! Structured logging with tracing. Personal data (phone and identity numbers) is
//! never a field of a log event: handlers log request ids and tracking codes only.

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Installs the global subscriber for the configured format and filter. Returns
/// false when one was installed already (tests that start several apps).
pub fn init_tracing(config: &Config) -> bool {
    init_tracing_with(config.log_format, &config.log_filter)
}

/// Installs the global subscriber for a format and a filter (anju-insight's settings).
pub fn init_tracing_with(format: LogFormat, filter: &str) -> bool {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.try_init().is_ok(),
        LogFormat::Json => builder.json().try_init().is_ok(),
    }
}
