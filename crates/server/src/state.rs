//! What every handler shares: the configuration, the counters, how far the read
//! models have come (for `min_position`), and the stop signal that ends streams.
//!
//! The service wiring adds the event log and projections here when they land.

use std::sync::Arc;
use std::time::Duration;

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
    /// Log position the read models have applied; query handlers wait on it.
    pub projections: ProjectionProgress,
    /// Becomes true when the server starts stopping; long streams end on it.
    pub stopping: watch::Receiver<bool>,
}

impl AppState {
    /// Waits until the read models reach the request's `min_position`, or fails
    /// with DEADLINE_EXCEEDED when the call's deadline (its `grpc-timeout`, capped by
    /// `request_timeout`) comes first. `min_position` 0 returns at once.
    pub async fn wait_for_min_position<T>(
        &self,
        request: &Request<T>,
        min_position: u64,
    ) -> Result<u64, ApiError> {
        let budget = call_timeout(request, self.config.request_timeout);
        self.projections.wait_for(min_position, budget).await
    }

    /// Resolves when the server starts stopping; streaming handlers select on it.
    pub async fn stopped(&self) {
        let mut stopping = self.stopping.clone();
        // An error means the sender is gone, which also means the server is stopping.
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }
}

/// How far the read models have applied the log. The projection runner calls
/// [`ProjectionProgress::advance`]; queries wait with [`ProjectionProgress::wait_for`].
#[derive(Debug, Clone)]
pub struct ProjectionProgress {
    sender: Arc<watch::Sender<u64>>,
}

impl Default for ProjectionProgress {
    fn default() -> Self {
        ProjectionProgress::new(0)
    }
}

impl ProjectionProgress {
    pub fn new(position: u64) -> ProjectionProgress {
        ProjectionProgress {
            sender: Arc::new(watch::channel(position).0),
        }
    }

    /// The position applied so far.
    pub fn current(&self) -> u64 {
        *self.sender.borrow()
    }

    /// Records that everything up to `position` is applied; never moves backwards.
    pub fn advance(&self, position: u64) {
        self.sender.send_if_modified(|current| {
            let moved = position > *current;
            if moved {
                *current = position;
            }
            moved
        });
    }

    /// Waits up to `budget` for the position to reach `wanted`; returns the position
    /// reached.
    pub async fn wait_for(&self, wanted: u64, budget: Duration) -> Result<u64, ApiError> {
        let mut receiver = self.sender.subscribe();
        let reached =
            tokio::time::timeout(budget, receiver.wait_for(|position| *position >= wanted)).await;
        match reached {
            Ok(Ok(position)) => Ok(*position),
            _ => Err(ApiError::PositionNotReached {
                wanted,
                reached: self.current(),
            }),
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

    #[tokio::test]
    async fn waits_until_the_position_is_reached_or_the_budget_runs_out() {
        let progress = ProjectionProgress::new(3);
        assert_eq!(progress.wait_for(0, Duration::ZERO).await.unwrap(), 3);
        let later = progress.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            later.advance(10);
            later.advance(5);
        });
        assert_eq!(
            progress.wait_for(9, Duration::from_secs(5)).await.unwrap(),
            10
        );
        assert_eq!(progress.current(), 10);
        let error = progress
            .wait_for(11, Duration::from_millis(10))
            .await
            .unwrap_err();
        assert!(matches!(
            error,
            ApiError::PositionNotReached {
                wanted: 11,
                reached: 10
            }
        ));
    }
}
