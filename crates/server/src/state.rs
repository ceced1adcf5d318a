//! What every handler shares: the configuration, the counters, the running
//! [`Application`] (event log, projections, scheduler), the per-client limits on status
//! and identity look-ups, and the stop signal that ends streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anju_app::{Application, DemoClock};
use tokio::sync::watch;
use tonic::Request;

use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Shared state of the running server; cheap to clone into every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// The application layer: log, projections, key store, timers.
    pub application: Application,
    /// Token buckets for the calls that take a tracking code and phone digits, one per
    /// client.
    pub status_limiter: Arc<RateLimiter>,
    /// Token buckets for `FindRequestsByIdentity`, one per staff member.
    pub identity_limiter: Arc<RateLimiter>,
    /// Keyed hash input for the pseudonymous resident ids of kiosk submissions.
    pub resident_salt: Arc<[u8; 32]>,
    /// Becomes true when the server starts stopping; long streams end on it.
    pub stopping: watch::Receiver<bool>,
    /// The application's clock when the server runs with `--demo-clock`; `None` on the
    /// system clock.
    pub demo_clock: Option<Arc<DemoClock>>,
}

impl AppState {
    /// Waits until the read models have applied the API position `min_position`, or
    /// fails with DEADLINE_EXCEEDED when the call's deadline (its `grpc-timeout`, capped
    /// by `request_timeout`) comes first. `min_position` 0 returns at once.
    pub async fn wait_for_min_position<T>(
        &self,
        request: &Request<T>,
        min_position: u64,
    ) -> Result<(), ApiError> {
        let Some(log_position) = crate::convert::log_position(min_position) else {
            return Ok(());
        };
        let budget = call_timeout(request, self.config.request_timeout);
        // Leave a little of the budget to answer in, so the client sees our
        // DEADLINE_EXCEEDED with its message rather than its own timeout.
        let budget = budget.saturating_sub(Duration::from_millis(20));
        self.application
            .wait_for(Some(log_position), Some(budget))
            .await
            .map_err(ApiError::from)
    }

    /// The log position the read models have applied, as an API position (the last
    /// event applied; 0 before the first).
    pub fn projection_position(&self) -> u64 {
        self.application.projections().position()
    }

    /// Resolves when the server starts stopping; streaming handlers select on it.
    pub async fn stopped(&self) {
        let mut stopping = self.stopping.clone();
        // An error means the sender is gone, which also means the server is stopping.
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }
}

/// A token bucket per client key, in memory: `per_minute` tokens refill over a minute
/// and at most `per_minute` are saved up. Idle buckets are dropped when the map grows.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    /// What is limited, for the refusal: "look-ups by tracking code".
    what: &'static str,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Buckets kept before idle (full) ones are dropped.
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    /// The limit on look-ups by tracking code.
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter::limiting("look-ups by tracking code", per_minute)
    }

    /// A limit on `what` (a plural noun phrase, as the refusal names it).
    pub fn limiting(what: &'static str, per_minute: u32) -> RateLimiter {
        RateLimiter {
            what,
            per_minute: per_minute.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `client`; RESOURCE_EXHAUSTED naming the limit when none is left.
    pub fn check(&self, client: &str) -> Result<(), ApiError> {
        let capacity = f64::from(self.per_minute);
        let rate_per_second = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(client) {
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate_per_second < capacity
            });
        }
        let (tokens, at) = buckets.entry(client.to_string()).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate_per_second).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(ApiError::ResourceExhausted(format!(
                "too many {}: the limit is {} per minute per client; retry in a few seconds",
                self.what, self.per_minute
            )))
        }
    }
}

/// The time a call may still take: its `grpc-timeout` when the client sent one,
/// never more than `cap`.
pub fn call_timeout<T>(request: &Request<T>, cap: Duration) -> Duration {
    request
        .metadata()
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map_or(cap, |timeout| timeout.min(cap))
}

/// Parses the gRPC wire format of a timeout: up to 8 digits and a unit
/// (H, M, S, m, u, n).
fn parse_grpc_timeout(text: &str) -> Option<Duration> {
    if text.len() < 2 || text.len() > 9 {
        return None;
    }
    let (digits, unit) = text.split_at(text.len() - 1);
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(
            call_timeout(&request, Duration::from_secs(30)),
            Duration::from_millis(250)
        );
        assert_eq!(
            call_timeout(&Request::new(()), Duration::from_secs(30)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn the_bucket_empties_and_names_the_limit() {
        let limiter = RateLimiter::new(3);
        for _ in 0..3 {
            limiter.check("a").unwrap();
        }
        let error = limiter.check("a").unwrap_err();
        assert!(error.to_string().contains("3 per minute"), "{error}");
        limiter.check("b").unwrap();
    }
}
