//! The running service: the consumer, the gRPC stack (ManagerService behind the same
//! auth interceptor as anju-server, health, reflection, gRPC-Web) and the HTTP port,
//! until SIGTERM or Ctrl-C.

use std::fmt::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anju_app::SystemClock;
use anju_auth::{read_secret_file, SecretError};
use anju_domain::Calendar;
use anju_insight::{ConsumerConfig, ConsumerHandle, InsightError};
use anju_proto::v1::manager_service_server::ManagerServiceServer;
use anju_server_core::http::{serve_endpoints, Endpoints};
use anju_server_core::metrics::{Metrics, MetricsLayer};
use anju_server_core::{cors_layer, AuthInterceptor, ManagerHandler, ReadModelFigures};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;

use crate::config::InsightConfig;

/// The one anju service insight serves.
const MANAGER_SERVICE: &str = "anju.v1.ManagerService";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "cannot read the token secret {path}: {source}\n  anju-insight checks tokens with the \
         secret of the anju-server nodes (their <data_dir>/token-secret): copy that file here \
         or point secret_file (--secret-file, ANJU_INSIGHT_SECRET_FILE) at it"
    )]
    Secret { path: PathBuf, source: SecretError },
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] InsightError),
}

/// A built service: store open, ports bound, consumer running.
pub struct Insight {
    config: InsightConfig,
    store: anju_insight::Insight,
    consumer: ConsumerHandle,
    metrics: Arc<Metrics>,
    manager: ManagerHandler,
    auth: AuthInterceptor,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
}

async fn bind(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let bind_error = |source| StartError::Bind { what, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok((listener, bound))
}

impl Insight {
    pub async fn build(config: InsightConfig) -> Result<Insight, StartError> {
        let secret_path = config.secret_path();
        let secret = read_secret_file(&secret_path).map_err(|source| StartError::Secret {
            path: secret_path.clone(),
            source,
        })?;
        let (grpc_listener, grpc_addr) = bind("grpc", config.grpc_addr).await?;
        let (http_listener, http_addr) = bind("http", config.http_addr).await?;
        let store =
            anju_insight::Insight::open(&config.data_dir, Arc::new(Calendar::china_2026()))?;
        let mut consumer_config = ConsumerConfig::new(config.nats_url.clone());
        consumer_config.durable_name = config.consumer_name.clone();
        let consumer = store.start(consumer_config);
        tracing::info!(nats_url = %anju_relay::shown_nats_url(&config.nats_url), consumer = %config.consumer_name, "consuming ANJU_EVENTS");

        let metrics = Arc::new(Metrics::new());
        let figures = ReadModelFigures::new(store.models().clone(), Arc::new(SystemClock));
        let manager = ManagerHandler::with_source(Arc::new(figures), config.request_timeout);
        let auth = AuthInterceptor::new(Arc::new(secret), metrics.clone());
        Ok(Insight {
            config,
            store,
            consumer,
            metrics,
            manager,
            auth,
            grpc_listener,
            http_listener,
            grpc_addr,
            http_addr,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Serves until SIGTERM or Ctrl-C; then stops taking calls, lets in-flight ones
    /// finish (up to `shutdown_grace`), stops the consumer after the batch in hand is
    /// stored and acknowledged, and flushes the store.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let stop = stop_signal()?;
        let Insight {
            config,
            store,
            consumer,
            metrics,
            manager,
            auth,
            grpc_listener,
            http_listener,
            grpc_addr,
            http_addr,
        } = self;
        let (stop_sender, stopping) = watch::channel(false);

        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_service_status("", ServingStatus::Serving).await;
        health
            .set_service_status(MANAGER_SERVICE, ServingStatus::Serving)
            .await;
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(anju_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(anju_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;
        let router = Server::builder()
            .accept_http1(true)
            .timeout(config.request_timeout)
            .trace_fn(|request| tracing::info_span!("grpc", method = %request.uri().path()))
            .layer(cors_layer(&config.cors_allowed_origins))
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(MetricsLayer::new(metrics.clone()))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::new(config.concurrency_limit))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(InterceptedService::new(
                ManagerServiceServer::new(manager),
                auth,
            ));
        let incoming = TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
        let mut stop_grpc = stopping.clone();
        let mut grpc_task =
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
                let _ = stop_grpc.wait_for(|stopping| *stopping).await;
            }));

        let status = store.status();
        let render_store = store.clone();
        let render_metrics = metrics.clone();
        let endpoints = Endpoints {
            metrics: metrics.clone(),
            render: Arc::new(move || render(&render_store, &render_metrics)),
            stopping,
            unhealthy: Arc::new(|| None),
        };
        let http_task = tokio::spawn(serve_endpoints(http_listener, endpoints));
        tracing::info!(%grpc_addr, %http_addr, "serving");

        tokio::pin!(stop);
        let failed = tokio::select! {
            () = &mut stop => None,
            result = &mut grpc_task => Some(result),
        };
        let _ = stop_sender.send(true);
        let served = match failed {
            Some(result) => result
                .map_err(anyhow::Error::from)
                .and_then(|r| r.map_err(anyhow::Error::from)),
            None => {
                tracing::info!("stopping: no new calls, finishing in-flight ones");
                health
                    .set_service_status("", ServingStatus::NotServing)
                    .await;
                health
                    .set_service_status(MANAGER_SERVICE, ServingStatus::NotServing)
                    .await;
                match tokio::time::timeout(config.shutdown_grace, &mut grpc_task).await {
                    Ok(result) => result
                        .map_err(anyhow::Error::from)
                        .and_then(|r| r.map_err(anyhow::Error::from)),
                    Err(_) => {
                        tracing::warn!(
                            "calls still running after the shutdown grace; closing them"
                        );
                        grpc_task.abort();
                        Ok(())
                    }
                }
            }
        };
        let _ = http_task.await;
        consumer.stop().await;
        let flushed = store.flush();
        tracing::info!(
            applied = status.applied(),
            duplicates = status.duplicates(),
            set_aside = status.set_aside(),
            "stopped"
        );
        served?;
        flushed?;
        Ok(())
    }
}

/// The text of `/metrics`: the consumer's counters, each node's position, the calls.
fn render(store: &anju_insight::Insight, metrics: &Metrics) -> String {
    let status = store.status();
    let mut out = String::new();
    let mut gauge = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    gauge(
        "anju_insight_up",
        "gauge",
        "1 while anju-insight is running.",
        1,
    );
    gauge(
        "anju_insight_connected",
        "gauge",
        "1 while the consumer is bound to ANJU_EVENTS.",
        u64::from(status.connected()),
    );
    gauge(
        "anju_insight_applied_total",
        "counter",
        "Events folded into the read models.",
        status.applied(),
    );
    gauge(
        "anju_insight_duplicates_total",
        "counter",
        "Messages dropped because their node position was already applied.",
        status.duplicates(),
    );
    gauge(
        "anju_insight_set_aside_total",
        "counter",
        "Malformed or unknown messages set aside.",
        status.set_aside(),
    );
    gauge(
        "anju_insight_out_of_order_total",
        "counter",
        "Messages ahead of a missing position of their node, redelivered later.",
        status.out_of_order(),
    );
    gauge(
        "anju_insight_consumer_pending",
        "gauge",
        "Consumer lag: messages of the stream not yet delivered to anju-insight.",
        status.pending(),
    );
    let _ = writeln!(out, "# HELP anju_insight_node_position Next log position expected from each node (= events applied from it).");
    let _ = writeln!(out, "# TYPE anju_insight_node_position gauge");
    match store.node_positions() {
        Ok(positions) => {
            let mut positions: Vec<_> = positions.into_iter().collect();
            positions.sort();
            for (node, position) in positions {
                let _ = writeln!(
                    out,
                    "anju_insight_node_position{{node=\"{}\"}} {position}",
                    label(&node)
                );
            }
        }
        Err(error) => tracing::warn!(%error, "cannot read the node positions for /metrics"),
    }
    metrics.render_calls(&mut out);
    out
}

/// A label value with nothing that could break the exposition format.
fn label(text: &str) -> String {
    text.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Resolves on the first SIGTERM or Ctrl-C; the handlers are installed before it returns.
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
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
