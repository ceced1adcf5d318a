//! Prometheus counters kept in memory and rendered in the text exposition format for
//! `/metrics`. Hand-written to keep the dependency tree small; the label sets are
//! bounded (known gRPC methods, fixed reasons) so a client cannot grow them.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Path prefixes counted under their own label; anything else counts as "other".
const KNOWN_PREFIXES: [&str; 3] = ["/anju.v1.", "/grpc.health.v1.", "/grpc.reflection."];

/// The server's counters.
#[derive(Debug)]
pub struct Metrics {
    /// The NATS relay's progress, when publishing is on.
    relay: std::sync::OnceLock<RelayGauges>,
    started: Instant,
    grpc_requests: Mutex<BTreeMap<String, u64>>,
    auth_failures: Mutex<BTreeMap<&'static str, u64>>,
    http_requests: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            relay: std::sync::OnceLock::new(),
            started: Instant::now(),
            grpc_requests: Mutex::new(BTreeMap::new()),
            auth_failures: Mutex::new(BTreeMap::new()),
            http_requests: AtomicU64::new(0),
        }
    }

    /// Reports the relay's connection and lag from now on.
    pub fn attach_relay(
        &self,
        status: std::sync::Arc<anju_relay::RelayStatus>,
        log: anju_eventlog::EventLog,
    ) {
        let _ = self.relay.set(RelayGauges { status, log });
    }

    /// Events committed to the log and not yet acknowledged by JetStream, when the relay
    /// runs.
    pub fn relay_lag(&self) -> Option<u64> {
        self.relay.get().map(RelayGauges::lag)
    }

    /// Counts a gRPC call by its path, e.g. `/anju.v1.ResidentService/SubmitRequest`.
    pub fn count_grpc_request(&self, path: &str) {
        let known = KNOWN_PREFIXES.iter().any(|prefix| path.starts_with(prefix))
            && path.len() <= 128
            && path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._".contains(c));
        let label = if known { path } else { "other" };
        let mut counts = self.grpc_requests.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(label.to_string()).or_default() += 1;
    }

    /// Counts a refused token by reason (missing, expired, bad_signature, ...).
    pub fn count_auth_failure(&self, reason: &'static str) {
        let mut counts = self.auth_failures.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(reason).or_default() += 1;
    }

    pub fn count_http_request(&self) {
        self.http_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition; `projection_position` is how far the read models are.
    pub fn render(&self, projection_position: u64) -> String {
        let mut out = String::new();
        if let Some(relay) = self.relay.get() {
            let _ = writeln!(
                out,
                "# HELP anju_relay_lag_events Committed events not yet acknowledged by JetStream."
            );
            let _ = writeln!(
                out,
                "# TYPE anju_relay_lag_events gauge\nanju_relay_lag_events {}",
                relay.lag()
            );
            let _ = writeln!(
                out,
                "# HELP anju_relay_connected 1 while the relay is connected to NATS."
            );
            let _ = writeln!(
                out,
                "# TYPE anju_relay_connected gauge\nanju_relay_connected {}",
                u8::from(relay.status.connected())
            );
            let _ = writeln!(out, "# HELP anju_relay_republished_total Events published again after JetStream was found behind the log.");
            let _ = writeln!(
                out,
                "# TYPE anju_relay_republished_total counter\nanju_relay_republished_total {}",
                relay.status.republished()
            );
        }
        let _ = writeln!(out, "# HELP anju_up 1 while the server is running.");
        let _ = writeln!(out, "# TYPE anju_up gauge\nanju_up 1");
        let _ = writeln!(out, "# HELP anju_build_info Version of the running server.");
        let _ = writeln!(out, "# TYPE anju_build_info gauge");
        let _ = writeln!(
            out,
            "anju_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(
            out,
            "# HELP anju_uptime_seconds Seconds since the server started."
        );
        let _ = writeln!(out, "# TYPE anju_uptime_seconds gauge");
        let _ = writeln!(
            out,
            "anju_uptime_seconds {:.3}",
            self.started.elapsed().as_secs_f64()
        );
        let _ = writeln!(
            out,
            "# HELP anju_projection_position Log position the read models have applied."
        );
        let _ = writeln!(out, "# TYPE anju_projection_position gauge");
        let _ = writeln!(out, "anju_projection_position {projection_position}");
        self.render_calls(&mut out);
        out
    }
}

/// Whether the event log's and the key store's writes succeed, and how many failed.
pub fn render_write_health(
    out: &mut String,
    stores: &[(&'static str, std::sync::Arc<anju_eventlog::WriteHealth>)],
) {
    let _ = writeln!(
        out,
        "# HELP anju_store_writable 1 while the store's writes succeed, 0 after a write failed until one succeeds again (store: log, keys)."
    );
    let _ = writeln!(out, "# TYPE anju_store_writable gauge");
    for (store, health) in stores {
        let writable = u8::from(health.failure().is_none());
        let _ = writeln!(out, "anju_store_writable{{store=\"{store}\"}} {writable}");
    }
    let _ = writeln!(
        out,
        "# HELP anju_store_write_failures_total Writes (and clean-ups after them) that failed, e.g. on a full disk (store: log, keys)."
    );
    let _ = writeln!(out, "# TYPE anju_store_write_failures_total counter");
    for (store, health) in stores {
        let _ = writeln!(
            out,
            "anju_store_write_failures_total{{store=\"{store}\"}} {}",
            health.failures()
        );
    }
    if let Some((_, log)) = stores.iter().find(|(store, _)| *store == "log") {
        let _ = writeln!(
            out,
            "# HELP anju_log_writable 1 while the event log's appends succeed (the same as anju_store_writable{{store=\"log\"}})."
        );
        let _ = writeln!(
            out,
            "# TYPE anju_log_writable gauge\nanju_log_writable {}",
            u8::from(log.failure().is_none())
        );
    }
}

/// Whether the working-day calendar lacks a year it should have by now
/// (`Calendar::missing_year`), and the last date it covers.
pub fn render_calendar(
    out: &mut String,
    calendar: &anju_domain::Calendar,
    today: anju_domain::CivilDate,
) {
    let missing = calendar.missing_year(today);
    let _ = writeln!(
        out,
        "# HELP anju_calendar_year_missing 1 while the working-day calendar lacks this year, or next year from 60 days before 31 December: install it with AdminService.InstallCalendar."
    );
    let _ = writeln!(out, "# TYPE anju_calendar_year_missing gauge");
    let _ = writeln!(
        out,
        "anju_calendar_year_missing {}",
        u8::from(missing.is_some())
    );
    let _ = writeln!(
        out,
        "# HELP anju_calendar_covered_until_year The last year the working-day calendar holds a published arrangement for (0 for none)."
    );
    let _ = writeln!(out, "# TYPE anju_calendar_covered_until_year gauge");
    let _ = writeln!(
        out,
        "anju_calendar_covered_until_year {}",
        calendar.coverage().map_or(0, |(_, to)| to.year)
    );
}

impl Metrics {
    /// The call counters alone (gRPC calls by method, refused tokens, HTTP requests),
    /// for a process that renders its own gauges around them (anju-insight).
    pub fn render_calls(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP anju_grpc_requests_total gRPC calls received, by method."
        );
        let _ = writeln!(out, "# TYPE anju_grpc_requests_total counter");
        for (method, count) in self
            .grpc_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "anju_grpc_requests_total{{method=\"{method}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP anju_auth_failures_total Calls refused as unauthenticated, by reason."
        );
        let _ = writeln!(out, "# TYPE anju_auth_failures_total counter");
        for (reason, count) in self
            .auth_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "anju_auth_failures_total{{reason=\"{reason}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP anju_http_requests_total Requests to the metrics and health port."
        );
        let _ = writeln!(out, "# TYPE anju_http_requests_total counter");
        let _ = writeln!(
            out,
            "anju_http_requests_total {}",
            self.http_requests.load(Ordering::Relaxed)
        );
    }
}

/// A tower layer counting every gRPC call by path before it is routed.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: std::sync::Arc<Metrics>,
}

impl MetricsLayer {
    pub fn new(metrics: std::sync::Arc<Metrics>) -> MetricsLayer {
        MetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = CountRequests<S>;

    fn layer(&self, inner: S) -> CountRequests<S> {
        CountRequests {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`MetricsLayer`] wraps around the router.
#[derive(Debug, Clone)]
pub struct CountRequests<S> {
    inner: S,
    metrics: std::sync::Arc<Metrics>,
}

impl<S, B> tower::Service<http::Request<B>> for CountRequests<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.metrics.count_grpc_request(request.uri().path());
        self.inner.call(request)
    }
}

/// The in-memory read models' size, part by part (`ReadModels::memory_footprint`).
pub fn render_read_models(out: &mut String, parts: &[anju_projections::PartFootprint]) {
    type Field = fn(&anju_projections::PartFootprint) -> usize;
    let gauges: [(&str, &str, Field); 3] = [
        (
            "anju_read_model_entries",
            "Entries in each in-memory read-model part.",
            |p| p.entries,
        ),
        (
            "anju_read_model_bytes",
            "Bytes allocated for the pages of each in-memory read-model part.",
            |p| p.allocated_bytes,
        ),
        (
            "anju_read_model_used_bytes",
            "Bytes of entries in each in-memory read-model part.",
            |p| p.used_bytes,
        ),
    ];
    if parts.is_empty() {
        return;
    }
    for (name, help, field) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for part in parts {
            let _ = writeln!(out, "{name}{{part=\"{}\"}} {}", part.part, field(part));
        }
    }
}

struct RelayGauges {
    status: std::sync::Arc<anju_relay::RelayStatus>,
    log: anju_eventlog::EventLog,
}

impl std::fmt::Debug for RelayGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayGauges")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl RelayGauges {
    fn lag(&self) -> u64 {
        self.log
            .head_position()
            .saturating_sub(self.status.published_up_to())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_share_one_label() {
        let metrics = Metrics::new();
        metrics.count_grpc_request("/anju.v1.ResidentService/SubmitRequest");
        metrics.count_grpc_request("/evil/path-1");
        metrics.count_grpc_request("/evil/path-2");
        let mut text = metrics.render(7);
        render_read_models(
            &mut text,
            &[anju_projections::PartFootprint {
                part: "proj_queue",
                entries: 3,
                pages: 1,
                used_bytes: 150,
                allocated_bytes: 200,
            }],
        );
        assert!(text.contains("anju_read_model_entries{part=\"proj_queue\"} 3"));
        assert!(text.contains("anju_read_model_bytes{part=\"proj_queue\"} 200"));
        assert!(text.contains("anju_read_model_used_bytes{part=\"proj_queue\"} 150"));
        assert!(text.contains(
            "anju_grpc_requests_total{method=\"/anju.v1.ResidentService/SubmitRequest\"} 1"
        ));
        assert!(text.contains("anju_grpc_requests_total{method=\"other\"} 2"));
        assert!(text.contains("anju_projection_position 7"));
    }
}
