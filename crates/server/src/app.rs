//! The server process: binds the ports, assembles the gRPC stack (health,
//! reflection, gRPC-Web with CORS, limits, auth, the four anju services) and runs
//! it until a stop signal, finishing in-flight calls before it returns.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anju_auth::{load_or_create_secret, read_secret_file, Secret, SecretError};
use anju_proto::v1::admin_service_server::AdminServiceServer;
use anju_proto::v1::caseworker_service_server::CaseworkerServiceServer;
use anju_proto::v1::event_log_service_server::EventLogServiceServer;
use anju_proto::v1::manager_service_server::ManagerServiceServer;
use anju_proto::v1::resident_service_server::ResidentServiceServer;
use anju_relay::{RelayConfig, RelayHandle};
use http::{HeaderName, HeaderValue, Method};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::authn::AuthInterceptor;
use crate::config::Config;
use crate::metrics::{Metrics, MetricsLayer};
use crate::services::{
    AdminHandler, CaseworkerHandler, EventLogHandler, ManagerHandler, ResidentHandler,
};
use crate::state::{AppState, RateLimiter};
use anju_app::{AppConfig, Application, Clock, DemoClock, SystemClock};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("token secret: {0}")]
    Secret(#[from] SecretError),
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("cannot open the application in {data_dir}: {source}")]
    Application {
        data_dir: PathBuf,
        source: anju_app::AppError,
    },
}

/// Why the server stopped other than by a stop signal.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("grpc server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("cannot install the stop signal handlers: {0}")]
    Signal(std::io::Error),
    #[error("grpc server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("closing the application failed: {0}")]
    Close(anju_app::AppError),
}

type ServeFuture = Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;

/// A built server: ports bound, secret loaded, nothing served until
/// [`App::run_until_stopped`] or [`App::run_until`].
pub struct App {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    state: AppState,
    stop_sender: watch::Sender<bool>,
    health: HealthReporter,
    grpc_server: ServeFuture,
    http_listener: TcpListener,
    secret_path: PathBuf,
    secret_created: bool,
    /// The NATS relay, unless publishing is off.
    relay: Option<RelayHandle>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

/// Request headers browsers may send on gRPC-Web calls.
const CORS_ALLOW_HEADERS: [&str; 6] = [
    "authorization",
    "content-type",
    "grpc-timeout",
    "x-grpc-web",
    "x-user-agent",
    "x-request-id",
];
/// Response headers browser code may read.
const CORS_EXPOSE_HEADERS: [&str; 3] = ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// CORS for gRPC-Web calls from browsers on `origins` (`*` = any).
pub fn cors_layer(origins: &[String]) -> CorsLayer {
    let allow_origin =
        if origins.iter().any(|origin| origin == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(origins.iter().filter_map(|origin| {
                match HeaderValue::from_str(origin) {
                    Ok(value) => Some(value),
                    Err(_) => {
                        tracing::warn!(
                            origin,
                            "ignoring cors origin that is not a valid header value"
                        );
                        None
                    }
                }
            }))
        };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers(CORS_ALLOW_HEADERS.map(HeaderName::from_static))
        .expose_headers(CORS_EXPOSE_HEADERS.map(HeaderName::from_static))
        .max_age(Duration::from_secs(24 * 3600))
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in anju_proto::SERVICE_NAMES {
        health.set_service_status(name, status).await;
    }
}

/// The services whose calls write to the log or the key store; they report
/// NOT_SERVING (with the overall status) while writes fail. The read-only services
/// (`ManagerService`, `EventLogService`) and `AdminService` stay SERVING.
const WRITE_SERVICES: [&str; 2] = ["anju.v1.ResidentService", "anju.v1.CaseworkerService"];

/// Follows the stores' write health: while a write has failed and none has succeeded
/// since, the overall status and the write services are NOT_SERVING.
async fn follow_write_health(health: HealthReporter, application: Application) {
    let stores = application.write_health();
    let mut watches: Vec<_> = stores.iter().map(|(_, store)| store.subscribe()).collect();
    loop {
        let failing = stores.iter().any(|(_, store)| store.failure().is_some());
        let status = if failing {
            ServingStatus::NotServing
        } else {
            ServingStatus::Serving
        };
        health.set_service_status("", status).await;
        for name in WRITE_SERVICES {
            health.set_service_status(name, status).await;
        }
        let changes = watches.iter_mut().map(|watch| Box::pin(watch.changed()));
        if futures::future::select_all(changes).await.0.is_err() {
            return;
        }
    }
}

/// How often the server looks whether the working-day calendar lacks a year.
const CALENDAR_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// Logs a WARN at start and then once a day (by the server's clock) while the calendar
/// lacks a year it should have by now (`Calendar::missing_year`).
async fn watch_calendar(application: Application) {
    let mut warned_on = None;
    loop {
        let today = application.now().cst_date();
        match application.calendar().missing_year(today) {
            Some(year) if warned_on != Some(today) => {
                warned_on = Some(today);
                let last = application
                    .calendar()
                    .coverage()
                    .map_or_else(|| "nothing".to_string(), |(_, to)| to.to_string());
                tracing::warn!(
                    missing_year = year,
                    covered_until = %last,
                    "the working-day calendar has no holiday arrangement for {year}: outside the known years only weekends and 1 Jan, 1-2 May, 1-3 Oct are days off, so deadlines will count the Spring Festival and the other lunar holidays as working days; install the year's file with AdminService.InstallCalendar (docs/operations.md)"
                );
            }
            Some(_) => {}
            None => warned_on = None,
        }
        tokio::time::sleep(CALENDAR_CHECK_INTERVAL).await;
    }
}

impl App {
    /// Loads (or on first start creates) the token secret, binds both ports and
    /// assembles the service stack.
    pub async fn build(config: Config) -> Result<App, StartError> {
        let config = Arc::new(config);
        let (secret, secret_path, secret_created) = match &config.secret_file {
            Some(path) => (read_secret_file(path)?, path.clone(), false),
            None => {
                let loaded = load_or_create_secret(&config.data_dir)?;
                (loaded.secret, loaded.path, loaded.created)
            }
        };
        let secret: Arc<Secret> = Arc::new(secret);

        let grpc_listener = bind("grpc", config.grpc_addr).await?;
        let http_listener = bind("http", config.http_addr).await?;
        let grpc_addr = grpc_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                what: "grpc",
                addr: config.grpc_addr,
                source,
            })?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                what: "http",
                addr: config.http_addr,
                source,
            })?;

        let (application, demo_clock) = open_application(&config).await?;

        // ---- Background services start here. ----------------------------------------
        // Log readers that run beside the gRPC server (the NATS relay, when
        // `config.nats_url` is set) are started at this spot from `application.log()`
        // and `application.projections()`; the projections and the timer scheduler
        // are already running inside `Application::open`. Stop them in `run_until`
        // before `application.close()`.
        // ------------------------------------------------------------------------------

        let metrics = Arc::new(Metrics::new());
        let relay = config.nats_url.as_ref().map(|url| {
            let mut relay_config = RelayConfig::new(url.clone(), config.node_id.clone());
            relay_config.replicas = config.nats_replicas;
            let shown_url = relay_config.shown_nats_url();
            let handle = anju_relay::start(
                application.log().clone(),
                relay_config,
                Arc::new(anju_relay::route_from_json),
            );
            metrics.attach_relay(handle.status(), application.log().clone());
            tracing::info!(nats_url = %shown_url, node_id = %config.node_id, "publishing events to nats");
            handle
        });
        let (stop_sender, stopping) = watch::channel(false);
        let resident_salt = {
            use sha2::{Digest, Sha256};
            let mut hash = Sha256::new();
            hash.update(b"anju kiosk resident id v1\0");
            hash.update(secret.as_bytes());
            let digest: [u8; 32] = hash.finalize().into();
            Arc::new(digest)
        };
        let state = AppState {
            config: config.clone(),
            metrics: metrics.clone(),
            application,
            status_limiter: Arc::new(RateLimiter::new(config.status_lookups_per_minute)),
            identity_limiter: Arc::new(RateLimiter::limiting(
                "look-ups by identity number",
                config.identity_lookups_per_minute,
            )),
            resident_salt,
            stopping: stopping.clone(),
            demo_clock,
        };

        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, ServingStatus::Serving).await;
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(anju_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(anju_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;

        let auth = AuthInterceptor::new(secret, metrics.clone());
        let max = config.max_message_bytes;
        let resident = ResidentServiceServer::new(ResidentHandler::new(state.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let caseworker = CaseworkerServiceServer::new(CaseworkerHandler::new(state.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let manager = ManagerServiceServer::new(ManagerHandler::new(state.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let eventlog = EventLogServiceServer::new(EventLogHandler::new(state.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let admin = AdminServiceServer::new(AdminHandler::new(state.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);

        // Layers run outside in: CORS answers preflights before anything else,
        // gRPC-Web translates HTTP/1 calls, then every call is counted and either
        // admitted under the global concurrency limit or shed at once with
        // RESOURCE_EXHAUSTED (tonic maps tower's Overloaded to that code).
        let router = Server::builder()
            .accept_http1(true)
            .timeout(config.request_timeout)
            // One span per call names the method; handlers log ids and tracking codes
            // inside it, never phone or identity numbers.
            .trace_fn(|request| tracing::info_span!("grpc", method = %request.uri().path()))
            .layer(cors_layer(&config.cors_allowed_origins))
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(MetricsLayer::new(metrics))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::new(config.concurrency_limit))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(InterceptedService::new(resident, auth.clone()))
            .add_service(InterceptedService::new(caseworker, auth.clone()))
            .add_service(InterceptedService::new(manager, auth.clone()))
            .add_service(InterceptedService::new(eventlog, auth.clone()))
            .add_service(InterceptedService::new(admin, auth));

        let incoming = TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
        let mut stop_grpc = stopping;
        let grpc_server: ServeFuture =
            Box::pin(router.serve_with_incoming_shutdown(incoming, async move {
                let _ = stop_grpc.wait_for(|stopping| *stopping).await;
            }));

        Ok(App {
            grpc_addr,
            http_addr,
            state,
            stop_sender,
            health,
            grpc_server,
            http_listener,
            secret_path,
            secret_created,
            relay,
        })
    }

    /// The bound gRPC address (the real port when configured with port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound HTTP address for `/metrics` and `/healthz`.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The state handlers share, e.g. to advance projection progress in tests.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The running application (event log, projections, key store, timers), for the
    /// services started beside the server and for tests.
    pub fn application(&self) -> &Application {
        &self.state.application
    }

    /// Where the token secret is.
    pub fn secret_path(&self) -> &std::path::Path {
        &self.secret_path
    }

    /// True when this start created the token secret (first start): the operator
    /// needs to be told how to issue a token.
    pub fn secret_created(&self) -> bool {
        self.secret_created
    }

    /// Serves until SIGTERM or Ctrl-C, then stops gracefully.
    pub async fn run_until_stopped(self) -> Result<(), ServeError> {
        let stop = stop_signal().map_err(ServeError::Signal)?;
        self.run_until(stop).await
    }

    /// Serves until `stop` resolves, then stops accepting, reports NOT_SERVING,
    /// lets in-flight calls finish for up to `shutdown_grace`, and returns.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<(), ServeError> {
        let App {
            state,
            stop_sender,
            health,
            grpc_server,
            http_listener,
            grpc_addr,
            http_addr,
            relay,
            ..
        } = self;
        let grace = state.config.shutdown_grace;
        tracing::info!(%grpc_addr, %http_addr, "serving");
        let mut grpc_task = tokio::spawn(grpc_server);
        let http_task = tokio::spawn(crate::http::serve(http_listener, state.clone()));
        let health_task = tokio::spawn(follow_write_health(
            health.clone(),
            state.application.clone(),
        ));
        let calendar_task = tokio::spawn(watch_calendar(state.application.clone()));

        tokio::pin!(stop);
        let ended_early = tokio::select! {
            () = &mut stop => None,
            result = &mut grpc_task => Some(result),
        };
        health_task.abort();
        calendar_task.abort();
        if let Some(result) = ended_early {
            let _ = stop_sender.send(true);
            let _ = http_task.await;
            if let Some(relay) = relay {
                relay.stop().await;
            }
            let closed = state.application.close().await;
            result??;
            return closed.map_err(ServeError::Close);
        }

        tracing::info!(
            grace_seconds = grace.as_secs_f64(),
            "stopping: no new calls, finishing in-flight ones"
        );
        set_health(&health, ServingStatus::NotServing).await;
        let _ = stop_sender.send(true);
        let result = match tokio::time::timeout(grace, &mut grpc_task).await {
            Ok(result) => result
                .map_err(ServeError::from)
                .and_then(|r| r.map_err(ServeError::from)),
            Err(_) => {
                tracing::warn!("calls still running after the shutdown grace; closing them");
                grpc_task.abort();
                Ok(())
            }
        };
        let _ = http_task.await;
        // The relay stops first: its checkpoint holds what JetStream acknowledged.
        if let Some(relay) = relay {
            relay.stop().await;
        }
        // In-flight calls are done (or cut off after the grace): now the log, the
        // projections, the scheduler and the key store can be flushed and closed.
        let closed = state.application.close().await.map_err(ServeError::Close);
        tracing::info!("stopped");
        result.and(closed)
    }
}

/// The application's configuration for a server configuration: data in `data_dir`,
/// queries waiting at most `request_timeout` for `min_position`, segments of
/// `segment_size`, read-model snapshots every `snapshot_interval`.
pub fn app_config(config: &Config) -> AppConfig {
    let mut app_config = AppConfig::new(config.data_dir.clone());
    app_config.query_timeout = config.request_timeout;
    app_config.log_options.segment_size = config.segment_size;
    app_config.snapshot_interval = config.snapshot_interval;
    app_config
}

/// Opens the application on the system clock, or on the demo clock of the data
/// directory with `demo_clock` (also returned, for AdminService to move).
async fn open_application(
    config: &Config,
) -> Result<(Application, Option<Arc<DemoClock>>), StartError> {
    let fail = |source| StartError::Application {
        data_dir: config.data_dir.clone(),
        source,
    };
    let demo_file = config.data_dir.join(anju_app::DEMO_CLOCK_FILE);
    if !config.demo_clock && demo_file.exists() {
        // Its events carry the demo's future times: the system clock would run backwards.
        return Err(fail(anju_app::AppError::Unavailable(format!(
            "this data directory ran on the demo clock ({} exists): start with --demo-clock, or use a fresh data directory",
            demo_file.display()
        ))));
    }
    let demo_clock = if config.demo_clock {
        let clock = Arc::new(DemoClock::open(&config.data_dir).map_err(fail)?);
        tracing::warn!(
            offset_seconds = clock.offset().as_secs(),
            "running on the demo clock: admins can move time forward; not for production"
        );
        Some(clock)
    } else {
        None
    };
    let clock: Arc<dyn Clock> = match &demo_clock {
        Some(clock) => clock.clone(),
        None => Arc::new(SystemClock),
    };
    let application = Application::open(app_config(config), clock)
        .await
        .map_err(fail)?;
    Ok((application, demo_clock))
}

/// What an offline rebuild of the read models did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    /// Events in the log (its head position).
    pub log_events: u64,
    /// Position the read models had applied when opened.
    pub position_before: u64,
    /// Position they applied after the rebuild.
    pub position_after: u64,
    pub elapsed: Duration,
}

/// Opens the data directory (the server must not be running on it), clears the read
/// models, replays the whole log into them and closes everything again.
pub async fn rebuild_projections(config: &Config) -> Result<RebuildReport, StartError> {
    let started = std::time::Instant::now();
    let (application, _) = open_application(config).await?;
    let position_before = application.projections().position();
    let log_events = application.log().head_position();
    let rebuilt = application.rebuild_projections().await;
    let position_after = application.projections().position();
    let closed = application.close().await;
    let fail = |source| StartError::Application {
        data_dir: config.data_dir.clone(),
        source,
    };
    rebuilt.map_err(fail)?;
    closed.map_err(fail)?;
    Ok(RebuildReport {
        log_events,
        position_before,
        position_after,
        elapsed: started.elapsed(),
    })
}

/// Resolves on the first SIGTERM or Ctrl-C (SIGINT). The handlers are installed
/// before this returns, so a signal arriving after it is never lost.
fn stop_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("received SIGTERM"),
            _ = interrupt.recv() => tracing::info!("received Ctrl-C"),
        }
    })
}
