//! The plain HTTP/1 port: `GET /metrics` (Prometheus text) and `GET /healthz`. A tiny
//! responder on a tokio listener, since two fixed paths need no HTTP framework.

use std::time::Duration;

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::state::AppState;

/// Largest request head read; anything longer is answered 431.
const MAX_HEAD_BYTES: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What the port shows: the counters of the process, the text of `/metrics`, whether
/// it is stopping (then `/healthz` answers 503), and why it cannot serve while running
/// (`unhealthy`: `/healthz` answers 503 with that reason).
#[derive(Clone)]
pub struct Endpoints {
    pub metrics: Arc<Metrics>,
    pub render: Arc<dyn Fn() -> String + Send + Sync>,
    pub stopping: watch::Receiver<bool>,
    pub unhealthy: Arc<dyn Fn() -> Option<String> + Send + Sync>,
}

/// Serves anju-server's port until the state's stop signal.
pub async fn serve(listener: TcpListener, state: AppState) {
    let render_state = state.clone();
    let endpoints = Endpoints {
        metrics: state.metrics.clone(),
        render: Arc::new(move || {
            let mut out = render_state
                .metrics
                .render(render_state.projection_position());
            let parts = render_state
                .application
                .projections()
                .models()
                .memory_footprint();
            crate::metrics::render_read_models(&mut out, &parts);
            crate::metrics::render_write_health(&mut out, &render_state.application.write_health());
            let application = &render_state.application;
            crate::metrics::render_calendar(
                &mut out,
                application.calendar(),
                application.now().cst_date(),
            );
            out
        }),
        stopping: state.stopping.clone(),
        unhealthy: {
            let application = state.application.clone();
            Arc::new(move || {
                application
                    .write_failure()
                    .map(|failure| format!("writes are failing: {failure}"))
            })
        },
    };
    serve_endpoints(listener, endpoints).await;
}

/// Serves `endpoints` until their stop signal; each connection answers one request.
pub async fn serve_endpoints(listener: TcpListener, endpoints: Endpoints) {
    let mut stopping = endpoints.stopping.clone();
    // An error means the sender is gone, which also means the process is stopping.
    let stopped = async move {
        let _ = stopping.wait_for(|stopping| *stopping).await;
    };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let endpoints = endpoints.clone();
                    tokio::spawn(async move {
                        if let Err(error) = answer(stream, &endpoints).await {
                            tracing::debug!(%error, "http connection failed");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        if head.len() > MAX_HEAD_BYTES {
            return Ok(None);
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

async fn answer(mut stream: TcpStream, endpoints: &Endpoints) -> std::io::Result<()> {
    endpoints.metrics.count_http_request();
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(result) => result?,
        Err(_) => return Ok(()),
    };
    let (status, content_type, body) = match head {
        None => (
            "431 Request Header Fields Too Large",
            "text/plain",
            String::from("request head too large\n"),
        ),
        Some(head) => {
            let mut words = head.split_whitespace();
            match (words.next(), words.next()) {
                (Some("GET"), Some("/metrics")) => (
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    (endpoints.render)(),
                ),
                (Some("GET"), Some("/healthz")) if *endpoints.stopping.borrow() => (
                    "503 Service Unavailable",
                    "text/plain",
                    String::from("stopping\n"),
                ),
                (Some("GET"), Some("/healthz")) => match (endpoints.unhealthy)() {
                    Some(reason) => (
                        "503 Service Unavailable",
                        "text/plain",
                        format!("{reason}\n"),
                    ),
                    None => ("200 OK", "text/plain", String::from("ok\n")),
                },
                (Some("GET"), Some(_)) => (
                    "404 Not Found",
                    "text/plain",
                    String::from("try /metrics or /healthz\n"),
                ),
                _ => (
                    "405 Method Not Allowed",
                    "text/plain",
                    String::from("only GET is served\n"),
                ),
            }
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
