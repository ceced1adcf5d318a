//! The NATS relay: publishes every committed event of the log to the JetStream stream
//! `ANJU_EVENTS`, in log order, advancing its checkpoint only after JetStream acknowledges,
//! and on every (re)connection compares the stream with the log and republishes any gap.
//!
//! NATS carries events out; the log stays the record (DESIGN.md decision 5). The relay
//! never runs inside the append path: it is a checkpointed log reader, so the service keeps
//! accepting requests while NATS is down and the backlog drains in order when it returns.

mod address;
pub mod check;
mod fast;
mod message;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anju_eventlog::{EventLog, Filter, RecordedEvent};
use async_nats::jetstream::{self, stream};
use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, watch};

pub use address::{redact_text, shown_nats_url, AddressError, NatsAddress};
pub use message::{
    route_from_json, subject_for, EventMessage, Route, HEADER_EVENT_TYPE, HEADER_NODE,
    HEADER_POSITION, HEADER_STREAM,
};

/// Where a stream's events go: the site and category tokens of their subjects, read from
/// the FIRST event of the stream (for a request, `RequestSubmitted`). The server supplies
/// this, because only it knows how to read a request's site from an event; the relay
/// applies it to the first event of each stream and remembers the answer.
pub type Router = Arc<dyn Fn(&RecordedEvent) -> Route + Send + Sync>;

/// Routes remembered per stream; cleared when it grows past this many streams, after
/// which routes are read again from the streams' first events.
const ROUTE_CACHE_LIMIT: usize = 200_000;

/// How the relay connects and what it creates. Its `Debug` shows `nats_url` redacted.
#[derive(Clone)]
pub struct RelayConfig {
    /// `nats://host:port`, several separated by commas, with credentials if the server
    /// wants them (`nats://user:password@host:port`, `nats://token@host:port`); see
    /// [`NatsAddress`].
    pub nats_url: String,
    /// The JetStream stream, `ANJU_EVENTS`.
    pub stream_name: String,
    /// Subjects are `<prefix>.<node>.<site>.<category>.<event type>`; `anju.events`.
    pub subject_prefix: String,
    /// This node's name in subjects and headers; unique among the nodes sharing a stream.
    pub node_id: String,
    /// Stream replicas (1 for a single server, 3 for the cluster in deploy/nats).
    pub replicas: usize,
    /// JetStream's duplicate window: longer than any gap between a publish and its retry.
    pub duplicate_window: Duration,
    /// Publishes awaiting their acknowledgement at once.
    pub max_in_flight: usize,
    /// The log checkpoint that records the next position to publish.
    pub checkpoint_name: String,
    /// How long to wait for JetStream's acknowledgement before reconnecting.
    pub ack_timeout: Duration,
    /// Publish in JetStream fast-ingest batches (ADR-50; nats-server 2.14+, the stream's
    /// `allow_batched`, which the relay sets) when the server takes them; otherwise, or
    /// when this is false, every message is acknowledged on its own.
    pub fast_batch: bool,
    /// Fast batches: the most messages per flow acknowledgement the relay asks for (the
    /// server may choose fewer; nats-server 2.15 grants at most 500).
    pub fast_batch_flow: u16,
    /// Fast batches: flow acknowledgements outstanding before the relay waits (ADR-50
    /// recommends 1 to 3); `max_in_flight` bounds the messages in flight as well.
    pub fast_batch_outstanding_acks: u16,
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let RelayConfig {
            nats_url,
            stream_name,
            subject_prefix,
            node_id,
            replicas,
            duplicate_window,
            max_in_flight,
            checkpoint_name,
            ack_timeout,
            fast_batch,
            fast_batch_flow,
            fast_batch_outstanding_acks,
        } = self;
        f.debug_struct("RelayConfig")
            .field("nats_url", &shown_nats_url(nats_url))
            .field("stream_name", stream_name)
            .field("subject_prefix", subject_prefix)
            .field("node_id", node_id)
            .field("replicas", replicas)
            .field("duplicate_window", duplicate_window)
            .field("max_in_flight", max_in_flight)
            .field("checkpoint_name", checkpoint_name)
            .field("ack_timeout", ack_timeout)
            .field("fast_batch", fast_batch)
            .field("fast_batch_flow", fast_batch_flow)
            .field("fast_batch_outstanding_acks", fast_batch_outstanding_acks)
            .finish()
    }
}

impl RelayConfig {
    pub fn new(nats_url: impl Into<String>, node_id: impl Into<String>) -> RelayConfig {
        RelayConfig {
            nats_url: nats_url.into(),
            stream_name: "ANJU_EVENTS".to_string(),
            subject_prefix: "anju.events".to_string(),
            node_id: node_id.into(),
            replicas: 1,
            duplicate_window: Duration::from_secs(30 * 60),
            max_in_flight: 4096,
            checkpoint_name: "relay".to_string(),
            ack_timeout: Duration::from_secs(10),
            fast_batch: true,
            fast_batch_flow: 500,
            fast_batch_outstanding_acks: 3,
        }
    }

    /// `nats_url` as it may appear in logs, errors and metrics: passwords and tokens as
    /// `***`.
    pub fn shown_nats_url(&self) -> String {
        shown_nats_url(&self.nats_url)
    }
}

/// Failures inside one connection of the relay; each one ends the connection and the
/// relay starts again from its checkpoint after a backoff.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot connect to nats at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("cannot create or update the jetstream stream {stream}: {message}")]
    Stream { stream: String, message: String },
    #[error("cannot read the stream's last message for this node: {0}")]
    LastMessage(String),
    #[error("publish failed at log position {position}: {message}")]
    Publish { position: u64, message: String },
    #[error("event log: {0}")]
    Log(String),
    /// The server or the stream took no fast batch; the relay publishes message by
    /// message from its next connection on.
    #[error("jetstream refused fast batches: {0}")]
    FastBatchesRefused(String),
}

/// What the relay is doing, for the health detail and the metrics.
#[derive(Debug, Default)]
pub struct RelayStatus {
    connected: AtomicBool,
    /// The next log position to publish: everything below it is acknowledged by JetStream.
    published_up_to: AtomicU64,
    republished: AtomicU64,
    /// Acknowledgement messages received from JetStream (one per message without fast
    /// batches, one per flow window with them).
    acknowledgements: AtomicU64,
    /// The current connection publishes in fast batches.
    fast_batching: AtomicBool,
    /// Fast batches were refused once; the relay does not try them again.
    fast_refused: AtomicBool,
    /// The fall-back to per-message publishing was logged.
    fallback_logged: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl RelayStatus {
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
    pub fn published_up_to(&self) -> u64 {
        self.published_up_to.load(Ordering::Relaxed)
    }
    /// Events published again after the stream was found behind the log.
    pub fn republished(&self) -> u64 {
        self.republished.load(Ordering::Relaxed)
    }
    /// Acknowledgement messages received from JetStream so far.
    pub fn acknowledgements(&self) -> u64 {
        self.acknowledgements.load(Ordering::Relaxed)
    }
    /// Whether the current connection publishes in fast-ingest batches.
    pub fn fast_batching(&self) -> bool {
        self.fast_batching.load(Ordering::Relaxed)
    }
    /// Logs, once per relay, why it publishes message by message.
    fn fall_back(&self, reason: &str) {
        if !self.fallback_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                reason,
                "nats relay publishes without fast batches (one acknowledgement per message)"
            );
        }
    }
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .map(|error| error.clone())
            .unwrap_or(None)
    }
    fn set_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = error;
        }
    }
}

/// A running relay. Dropping the handle does not stop it; call [`RelayHandle::stop`].
pub struct RelayHandle {
    status: Arc<RelayStatus>,
    stop: watch::Sender<bool>,
    done: tokio::sync::oneshot::Receiver<()>,
}

impl RelayHandle {
    pub fn status(&self) -> Arc<RelayStatus> {
        self.status.clone()
    }

    /// Stops publishing; the checkpoint holds whatever was acknowledged.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.done.await;
    }
}

/// Encodes one event as the relay would and returns the body's size (for anju-bench).
pub fn encode_for_bench(node: &str, event: &RecordedEvent) -> usize {
    message::encode(node, event).1.len()
}

/// Starts the relay on a thread of its own with its own single-threaded runtime
/// ([`anju_eventlog::spawn_on_own_thread`]), so that under load its reads, publishes and
/// acknowledgements do not queue behind the server's gRPC tasks (the relay's lag is the
/// time from commit to JetStream).
pub fn start(log: EventLog, config: RelayConfig, router: Router) -> RelayHandle {
    let status = Arc::new(RelayStatus::default());
    if let Ok(Some(position)) = log.checkpoint(&config.checkpoint_name) {
        status.published_up_to.store(position, Ordering::Relaxed);
    }
    let (stop, stopped) = watch::channel(false);
    let done = anju_eventlog::spawn_on_own_thread(
        "anju-relay",
        run(log, config, router, status.clone(), stopped),
    );
    RelayHandle { status, stop, done }
}

async fn run(
    log: EventLog,
    config: RelayConfig,
    router: Router,
    status: Arc<RelayStatus>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let connection = run_connection(&log, &config, &router, &status, &mut backoff);
        let outcome = tokio::select! {
            outcome = connection => outcome,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        status.connected.store(false, Ordering::Relaxed);
        status.fast_batching.store(false, Ordering::Relaxed);
        if let Err(RelayError::FastBatchesRefused(reason)) = &outcome {
            status.fast_refused.store(true, Ordering::Relaxed);
            status.fall_back(reason);
            // Start again at once, message by message, from the checkpoint.
            backoff = Duration::from_millis(100);
            continue;
        }
        if let Err(error) = outcome {
            tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "nats relay interrupted");
            status.set_error(Some(error.to_string()));
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection's life: connect, make sure the stream exists, repair any gap between
/// the stream and the log, then publish until something fails.
async fn run_connection(
    log: &EventLog,
    config: &RelayConfig,
    router: &Router,
    status: &RelayStatus,
    backoff: &mut Duration,
) -> Result<(), RelayError> {
    let address = NatsAddress::parse(&config.nats_url).map_err(|error| RelayError::Connect {
        url: redact_text(&config.nats_url),
        message: error.to_string(),
    })?;
    let connection = OneConnection::open(&address).await?;
    let outcome = publish_on_connection(
        &connection.client,
        &address,
        log,
        config,
        router,
        status,
        backoff,
    )
    .await;
    // The successor repairs only once nothing this connection's client holds can still
    // reach the server (ADR 008).
    connection.retire().await;
    outcome
}

/// How often the relay's client pings the server: a server that stops answering is given
/// up after three unanswered pings (async-nats disconnects past two outstanding), so a
/// stalled server ends the connection's client within about 6 s, before the
/// acknowledgement timeout (10 s) ends the relay's connection.
const PING_INTERVAL: Duration = Duration::from_secs(2);

/// One nats connection of the relay, whose queue dies with it: the client never
/// reconnects (its reconnect delay after the first connection is unbounded), so publishes
/// it still holds when its connection breaks are never sent, and `ended` turns true once
/// its connection handler will write nothing more (disconnected or closed).
struct OneConnection {
    client: async_nats::Client,
    ended: watch::Receiver<bool>,
}

impl OneConnection {
    async fn open(address: &NatsAddress) -> Result<OneConnection, RelayError> {
        let connected = Arc::new(AtomicBool::new(false));
        let (ended_tx, ended) = watch::channel(false);
        let ended_tx = Arc::new(ended_tx);
        let connected_once = connected.clone();
        let client = address
            .connect(move |options| {
                options
                    .connection_timeout(Duration::from_secs(2))
                    .ping_interval(PING_INTERVAL)
                    .reconnect_delay_callback(move |_attempts| {
                        if connected_once.load(Ordering::Relaxed) {
                            // Never again: tokio clamps this to decades.
                            Duration::MAX
                        } else {
                            Duration::ZERO
                        }
                    })
                    .event_callback(move |event| {
                        let ended_tx = ended_tx.clone();
                        async move {
                            if matches!(
                                event,
                                async_nats::Event::Disconnected | async_nats::Event::Closed
                            ) {
                                ended_tx.send_replace(true);
                            }
                        }
                    })
            })
            .await
            .map_err(|error| RelayError::Connect {
                url: address.to_string(),
                message: error.to_string(),
            })?;
        connected.store(true, Ordering::Relaxed);
        Ok(OneConnection { client, ended })
    }

    /// Ends the connection: what the client holds goes out on a live connection (drain),
    /// or never on a dead one; returns once its handler writes nothing more.
    async fn retire(self) {
        let OneConnection { client, mut ended } = self;
        // With a full queue and a stalled server the drain request waits; the pings end
        // the connection meanwhile.
        let _ = tokio::time::timeout(PING_INTERVAL, client.drain()).await;
        drop(client);
        // An error means the handler is gone (its event sender dropped): done too.
        let _ = ended.wait_for(|ended| *ended).await;
    }
}

/// The part of a connection's life after connecting.
async fn publish_on_connection(
    client: &async_nats::Client,
    address: &NatsAddress,
    log: &EventLog,
    config: &RelayConfig,
    router: &Router,
    status: &RelayStatus,
    backoff: &mut Duration,
) -> Result<(), RelayError> {
    let client = client.clone();
    let jetstream = jetstream::ContextBuilder::new()
        .timeout(config.ack_timeout)
        .build(client.clone());
    let events_stream = ensure_stream(&jetstream, config).await?;
    let fast = config.fast_batch
        && !status.fast_refused.load(Ordering::Relaxed)
        && match allow_batched(&client, config).await {
            Ok(()) => true,
            Err(reason) => {
                status.fall_back(&reason);
                false
            }
        };

    let (start, last_sequence) = reconcile(log, config, &events_stream, status).await?;
    status.connected.store(true, Ordering::Relaxed);
    status.set_error(None);
    *backoff = Duration::from_millis(100);
    let start = publish_fenced(
        log,
        config,
        router,
        &jetstream,
        status,
        start,
        last_sequence,
    )
    .await?;
    tracing::info!(start, fast, node = %config.node_id, stream = %config.stream_name, "nats relay publishing");

    // Publishes go out as plain requests whose reply subjects carry the log position, and
    // JetStream's acknowledgements come back on one wildcard subscription: many publishes
    // in flight with no per-message bookkeeping beyond a set of early acknowledgements.
    let inbox = client.new_inbox();
    let mut acknowledgements = client
        .subscribe(if fast {
            format!("{inbox}.>")
        } else {
            format!("{inbox}.*")
        })
        .await
        .map_err(|error| RelayError::Connect {
            url: address.to_string(),
            message: error.to_string(),
        })?;

    // A reader task reads the log and encodes each event into its message (subject,
    // reply subject, headers, body), so the publish loop only sends and counts
    // acknowledgements, and can wait on new messages and on acknowledgements at once
    // without cancelling a log read. A log error travels down the channel in order.
    let (messages_tx, mut messages_rx) = mpsc::channel::<Vec<Result<Outgoing, RelayError>>>(
        config.max_in_flight.div_ceil(PUBLISH_BATCH).max(2),
    );
    let reader = tokio::spawn(read_and_encode(
        log.clone(),
        config.clone(),
        router.clone(),
        start,
        (!fast).then(|| inbox.clone()),
        messages_tx,
    ));
    let _abort_reader = AbortOnDrop(reader.abort_handle());

    if fast {
        status.fast_batching.store(true, Ordering::Relaxed);
        return fast::publish(
            &client,
            log,
            config,
            status,
            &inbox,
            acknowledgements,
            messages_rx,
            start,
        )
        .await;
    }

    let mut sent_up_to = start;
    let mut acknowledged_up_to = start;
    let mut acknowledged_early: BTreeSet<u64> = BTreeSet::new();
    let mut checkpointed = start;
    let mut last_progress = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    // The reader's current batch, partly published when the in-flight window filled.
    let mut batch: std::collections::VecDeque<Result<Outgoing, RelayError>> =
        std::collections::VecDeque::new();
    let mut acknowledge = |acknowledgement: async_nats::Message,
                           acknowledged_up_to: &mut u64|
     -> Result<bool, RelayError> {
        let position = acknowledged_position(*acknowledged_up_to, &acknowledgement)?;
        if position == *acknowledged_up_to {
            *acknowledged_up_to += 1;
            while acknowledged_early.remove(acknowledged_up_to) {
                *acknowledged_up_to += 1;
            }
            return Ok(true);
        } else if position > *acknowledged_up_to {
            acknowledged_early.insert(position);
        }
        Ok(false)
    };
    loop {
        let in_flight = (sent_up_to - acknowledged_up_to) as usize;
        let room = config.max_in_flight.saturating_sub(in_flight);
        tokio::select! {
            biased;
            acknowledgement = acknowledgements.next() => {
                let Some(acknowledgement) = acknowledgement else {
                    return Err(RelayError::Connect { url: config.shown_nats_url(), message: "acknowledgement subscription closed".to_string() });
                };
                let mut advanced = acknowledge(acknowledgement, &mut acknowledged_up_to)?;
                let mut received = 1u64;
                // Take the acknowledgements already received without a round of the loop
                // each (the subscription's next() is cancel-safe: nothing is lost when it
                // is not ready).
                for _ in 0..PUBLISH_BATCH {
                    match acknowledgements.next().now_or_never() {
                        Some(Some(acknowledgement)) => {
                            advanced |= acknowledge(acknowledgement, &mut acknowledged_up_to)?;
                            received += 1;
                        }
                        Some(None) | None => break,
                    }
                }
                status.acknowledgements.fetch_add(received, Ordering::Relaxed);
                if advanced {
                    status.published_up_to.store(acknowledged_up_to, Ordering::Relaxed);
                    last_progress = Instant::now();
                }
            }
            received = messages_rx.recv(), if room > 0 && batch.is_empty() => {
                let Some(received) = received else {
                    return Err(RelayError::Log("the log subscription ended".to_string()));
                };
                batch = received.into();
                if in_flight == 0 {
                    last_progress = Instant::now();
                }
                publish_from(&client, &mut batch, room, &mut sent_up_to, config.ack_timeout).await?;
            }
            // The rest of a batch, as acknowledgements make room in the window.
            _ = std::future::ready(()), if room > 0 && !batch.is_empty() => {
                publish_from(&client, &mut batch, room, &mut sent_up_to, config.ack_timeout).await?;
            }
            _ = tick.tick() => {
                if acknowledged_up_to != checkpointed {
                    log.set_checkpoint(&config.checkpoint_name, acknowledged_up_to)
                        .map_err(|error| RelayError::Log(error.to_string()))?;
                    checkpointed = acknowledged_up_to;
                }
                if sent_up_to > acknowledged_up_to && last_progress.elapsed() > config.ack_timeout {
                    return Err(RelayError::Publish {
                        position: acknowledged_up_to,
                        message: format!("no acknowledgement within {:?}", config.ack_timeout),
                    });
                }
            }
        }
    }
}

/// Messages the reader sends down its channel at once, at most.
pub(crate) const PUBLISH_BATCH: usize = 64;

/// Publishes up to `room` messages from the front of `batch`, in order. While NATS is
/// unreachable the client's send queue fills and a publish waits; the whole call is
/// bounded by the acknowledgement timeout, so an outage ends the connection (and shows
/// as disconnected) instead of stalling the loop.
async fn publish_from(
    client: &async_nats::Client,
    batch: &mut std::collections::VecDeque<Result<Outgoing, RelayError>>,
    room: usize,
    sent_up_to: &mut u64,
    ack_timeout: Duration,
) -> Result<(), RelayError> {
    let publish = async {
        for _ in 0..room {
            let Some(message) = batch.pop_front() else {
                break;
            };
            let message = message?;
            let position = message.position;
            publish_message(
                client,
                async_nats::Subject::from(message.subject),
                async_nats::Subject::from(message.reply),
                message.headers,
                message.payload,
                position,
            )
            .await?;
            *sent_up_to = position + 1;
        }
        Ok::<(), RelayError>(())
    };
    match tokio::time::timeout(ack_timeout, publish).await {
        Ok(result) => result,
        Err(_) => Err(publish_timed_out(*sent_up_to, ack_timeout)),
    }
}

/// Hands one message of log position `position` to the nats client.
pub(crate) async fn publish_message(
    client: &async_nats::Client,
    subject: async_nats::Subject,
    reply: async_nats::Subject,
    headers: async_nats::HeaderMap,
    payload: bytes::Bytes,
    position: u64,
) -> Result<(), RelayError> {
    client
        .publish_with_reply_and_headers(subject, reply, headers, payload)
        .await
        .map_err(|error| RelayError::Publish {
            position,
            message: error.to_string(),
        })
}

/// The nats client took no publish within the acknowledgement timeout.
pub(crate) fn publish_timed_out(position: u64, ack_timeout: Duration) -> RelayError {
    RelayError::Publish {
        position,
        message: format!("the nats client took no publish within {ack_timeout:?}"),
    }
}

/// One event's message, ready to publish.
pub(crate) struct Outgoing {
    pub(crate) position: u64,
    pub(crate) subject: String,
    /// `<inbox>.<position>`: JetStream's acknowledgement comes back on it (empty for fast
    /// batches, whose publish loop writes the reply subject).
    pub(crate) reply: String,
    pub(crate) headers: async_nats::HeaderMap,
    pub(crate) payload: bytes::Bytes,
}

/// The reader task: the log from `start` on, each event encoded into its message, in log
/// order, until the channel closes or the log fails (the error is the last item sent).
/// Messages travel in batches of up to [`PUBLISH_BATCH`]: while the log has more to read
/// the batch fills up, otherwise it goes at once, so a live event waits for nothing.
/// (One channel slot per message cost an allocation of a channel block every 32 messages,
/// each large enough to make glibc's malloc consolidate its free lists.)
async fn read_and_encode(
    log: EventLog,
    config: RelayConfig,
    router: Router,
    start: u64,
    inbox: Option<String>,
    messages: mpsc::Sender<Vec<Result<Outgoing, RelayError>>>,
) {
    // Per stream, the subject up to the event type (`<prefix>.<node>.<site>.<category>.`).
    let mut stems: HashMap<String, Arc<str>> = HashMap::new();
    let mut subscription = log.subscribe_all(start, Filter::default());
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while let Some(next) = subscription.next().await {
        let outgoing = match next {
            Ok(event) => {
                encode_event(&log, &config, &router, &mut stems, inbox.as_deref(), &event).await
            }
            Err(error) => Err(RelayError::Log(error.to_string())),
        };
        let failed = outgoing.is_err();
        batch.push(outgoing);
        let more_to_read = subscription.next_position() < log.head_position();
        if batch.len() >= PUBLISH_BATCH || !more_to_read || failed {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(PUBLISH_BATCH));
            if messages.send(full).await.is_err() || failed {
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = messages.send(batch).await;
    }
}

async fn encode_event(
    log: &EventLog,
    config: &RelayConfig,
    router: &Router,
    stems: &mut HashMap<String, Arc<str>>,
    inbox: Option<&str>,
    event: &RecordedEvent,
) -> Result<Outgoing, RelayError> {
    let stem = subject_stem_of(log, config, router, stems, event).await?;
    let mut reply = String::new();
    if let Some(inbox) = inbox {
        // Exactly sized: the bytes crate turns a full Vec into a Bytes without allocating.
        let digits = event.position.checked_ilog10().unwrap_or(0) as usize + 1;
        reply.reserve_exact(inbox.len() + 1 + digits);
        reply.push_str(inbox);
        reply.push('.');
        let _ = std::fmt::Write::write_fmt(&mut reply, format_args!("{}", event.position));
    }
    Ok(Outgoing {
        position: event.position,
        subject: message::subject_with_stem(&stem, &event.event_type),
        reply,
        headers: message::headers(&config.node_id, event),
        payload: message::body(&config.node_id, event),
    })
}

/// The position an acknowledgement's reply subject carries, once the acknowledgement is
/// checked to be one.
fn acknowledged_position(
    expected: u64,
    acknowledgement: &async_nats::Message,
) -> Result<u64, RelayError> {
    let position = acknowledgement
        .subject
        .rsplit('.')
        .next()
        .and_then(|suffix| suffix.parse::<u64>().ok())
        .ok_or_else(|| RelayError::Publish {
            position: expected,
            message: format!("unexpected reply subject {}", acknowledgement.subject),
        })?;
    check_acknowledgement(position, acknowledgement)?;
    Ok(position)
}

/// JetStream answers a publish with `{"stream":..,"seq":..}` or `{"error":{..}}`; an
/// empty reply with a 503 status means no stream takes the subject.
fn check_acknowledgement(position: u64, reply: &async_nats::Message) -> Result<(), RelayError> {
    if let Some(status) = reply.status {
        if status.as_u16() >= 300 {
            return Err(RelayError::Publish {
                position,
                message: format!("jetstream answered status {status}"),
            });
        }
    }
    // Only the error member matters; the rest (stream, seq, duplicate) is skipped
    // without building a tree of it.
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow, default)]
        error: Option<&'a serde_json::value::RawValue>,
    }
    let answer: Answer<'_> =
        serde_json::from_slice(&reply.payload).map_err(|error| RelayError::Publish {
            position,
            message: format!("unreadable acknowledgement: {error}"),
        })?;
    if let Some(error) = answer.error {
        return Err(RelayError::Publish {
            position,
            message: format!("jetstream refused the publish: {error}"),
        });
    }
    Ok(())
}

/// The subject stem of an event's stream: from the router's answer for the first event of
/// the stream, remembered per stream.
async fn subject_stem_of(
    log: &EventLog,
    config: &RelayConfig,
    router: &Router,
    stems: &mut HashMap<String, Arc<str>>,
    event: &RecordedEvent,
) -> Result<Arc<str>, RelayError> {
    if let Some(stem) = stems.get(&event.stream_id) {
        return Ok(stem.clone());
    }
    let route = if event.stream_version == 0 {
        router(event)
    } else {
        let first = log
            .read_stream(&event.stream_id, 0, anju_eventlog::Direction::Forwards, 1)
            .await
            .map_err(|error| RelayError::Log(error.to_string()))?;
        first
            .first()
            .map(|first| router(first))
            .unwrap_or_else(Route::unrouted)
    };
    let stem: Arc<str> =
        message::subject_stem(&config.subject_prefix, &config.node_id, &route).into();
    if stems.len() >= ROUTE_CACHE_LIMIT {
        stems.clear();
    }
    stems.insert(event.stream_id.clone(), stem.clone());
    Ok(stem)
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn ensure_stream(
    jetstream: &jetstream::Context,
    config: &RelayConfig,
) -> Result<stream::Stream, RelayError> {
    let wanted = stream::Config {
        name: config.stream_name.clone(),
        subjects: vec![format!("{}.>", config.subject_prefix)],
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        duplicate_window: config.duplicate_window,
        ..Default::default()
    };
    let stream_error = |error: &dyn std::fmt::Display| RelayError::Stream {
        stream: config.stream_name.clone(),
        message: error.to_string(),
    };
    let mut events_stream = jetstream
        .get_or_create_stream(wanted.clone())
        .await
        .map_err(|e| stream_error(&e))?;
    let current = events_stream
        .info()
        .await
        .map_err(|e| stream_error(&e))?
        .config
        .clone();
    if current.duplicate_window != wanted.duplicate_window
        || current.num_replicas != wanted.num_replicas
        || current.subjects != wanted.subjects
    {
        let updated = stream::Config {
            duplicate_window: wanted.duplicate_window,
            num_replicas: wanted.num_replicas,
            subjects: wanted.subjects,
            ..current
        };
        jetstream
            .update_stream(updated)
            .await
            .map_err(|e| stream_error(&e))?;
        events_stream = jetstream
            .get_stream(&config.stream_name)
            .await
            .map_err(|e| stream_error(&e))?;
    }
    Ok(events_stream)
}

/// Makes sure the stream takes fast-ingest batches: the server is nats-server 2.14 or later
/// and the stream's configuration has `allow_batched`, which is set with a raw
/// `$JS.API.STREAM.UPDATE` of the configuration the server reports (async-nats 0.46's
/// stream configuration has no such field, and would drop it). The answer says why not.
async fn allow_batched(client: &async_nats::Client, config: &RelayConfig) -> Result<(), String> {
    if !client.is_server_compatible(2, 14, 0) {
        return Err(format!(
            "nats-server {} is older than 2.14",
            client.server_info().version
        ));
    }
    let request = |subject: String, body: bytes::Bytes| async move {
        let answer =
            tokio::time::timeout(config.ack_timeout, client.request(subject.clone(), body))
                .await
                .map_err(|_| format!("no answer to {subject} within {:?}", config.ack_timeout))?
                .map_err(|error| format!("{subject}: {error}"))?;
        let answer: serde_json::Value = serde_json::from_slice(&answer.payload)
            .map_err(|error| format!("{subject}: unreadable answer: {error}"))?;
        match answer.get("error") {
            Some(error) => Err(format!("{subject}: {error}")),
            None => Ok(answer),
        }
    };
    let info = request(
        format!("$JS.API.STREAM.INFO.{}", config.stream_name),
        bytes::Bytes::new(),
    )
    .await?;
    let mut stream_config = info
        .get("config")
        .cloned()
        .ok_or("the stream info has no config")?;
    if stream_config.get("allow_batched") == Some(&serde_json::Value::Bool(true)) {
        return Ok(());
    }
    stream_config["allow_batched"] = serde_json::Value::Bool(true);
    let body = serde_json::to_vec(&stream_config).map_err(|error| error.to_string())?;
    let updated = request(
        format!("$JS.API.STREAM.UPDATE.{}", config.stream_name),
        body.into(),
    )
    .await?;
    if updated.pointer("/config/allow_batched") != Some(&serde_json::Value::Bool(true)) {
        return Err("the server kept allow_batched off".to_string());
    }
    tracing::info!(stream = %config.stream_name, "jetstream stream updated to allow fast batches");
    Ok(())
}

/// Finds where publishing must start: after this node's last message in the stream. When
/// the stream is behind the checkpoint (its store was wiped, or it lost acknowledged
/// messages in a power failure) the gap is published again; when it is ahead (the relay
/// died between an acknowledgement and its checkpoint) nothing is published twice.
async fn reconcile(
    log: &EventLog,
    config: &RelayConfig,
    events_stream: &stream::Stream,
    status: &RelayStatus,
) -> Result<(u64, u64), RelayError> {
    let checkpoint = log
        .checkpoint(&config.checkpoint_name)
        .map_err(|error| RelayError::Log(error.to_string()))?
        .unwrap_or(0);
    let node_subjects = node_subjects(config);
    let (stream_next, last_sequence) = match events_stream
        .get_last_raw_message_by_subject(&node_subjects)
        .await
    {
        Ok(last) => (
            message::position_of(&last.headers)
                .map(|position| position + 1)
                .ok_or_else(|| {
                    RelayError::LastMessage(format!(
                        "message {} has no {HEADER_POSITION} header",
                        last.sequence
                    ))
                })?,
            last.sequence,
        ),
        Err(error) if error.kind() == stream::LastRawMessageErrorKind::NoMessageFound => (0, 0),
        Err(error) => return Err(RelayError::LastMessage(error.to_string())),
    };
    // Past the checkpoint the stream may hold a later position without an earlier one:
    // a publish lost with a dying connection while later ones, still queued in the
    // abandoned client, went out when it reconnected, or a publish refused while the
    // next was taken. Start at the first position missing there; the ones after it that
    // the stream has are dropped by JetStream's duplicate window when published again.
    let stream_next = if stream_next > checkpoint {
        first_missing(
            events_stream,
            config,
            checkpoint,
            stream_next,
            last_sequence,
        )
        .await?
    } else {
        stream_next
    };
    if stream_next < checkpoint {
        tracing::warn!(
            stream_next,
            checkpoint,
            missing = checkpoint - stream_next,
            "jetstream is behind the log; republishing the gap"
        );
        status
            .republished
            .fetch_add(checkpoint - stream_next, Ordering::Relaxed);
    } else if stream_next > checkpoint {
        tracing::info!(
            stream_next,
            checkpoint,
            "jetstream is ahead of the relay checkpoint; advancing it"
        );
    }
    let head = log.head_position();
    let start = stream_next.min(head);
    log.set_checkpoint(&config.checkpoint_name, start)
        .map_err(|error| RelayError::Log(error.to_string()))?;
    status.published_up_to.store(start, Ordering::Relaxed);
    Ok((start, last_sequence))
}

/// JetStream's check that the last message on a subject filter has a given stream
/// sequence (nats-server 2.11+; 0 means no message).
const EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";
const EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: &str = "Nats-Expected-Last-Subject-Sequence-Subject";

/// Publishes the event at `start` on its own, on condition that this node's last message
/// in the stream is still the one the repair read (`last_sequence`, 0 for none), and
/// waits for its acknowledgement; returns the next position. A publish of an earlier
/// connection that landed after the repair read the stream makes JetStream refuse it
/// (`wrong last sequence`), and the connection ends and repairs again, so no later
/// position is ever stored behind such a publish (ADR 008). Waits for the log to reach
/// `start` when the relay is caught up.
async fn publish_fenced(
    log: &EventLog,
    config: &RelayConfig,
    router: &Router,
    jetstream: &jetstream::Context,
    status: &RelayStatus,
    start: u64,
    last_sequence: u64,
) -> Result<u64, RelayError> {
    let mut subscription = log.subscribe_all(start, Filter::default());
    let event = match subscription.next().await {
        Some(Ok(event)) => event,
        Some(Err(error)) => return Err(RelayError::Log(error.to_string())),
        None => return Err(RelayError::Log("the log subscription ended".to_string())),
    };
    let message = encode_event(log, config, router, &mut HashMap::new(), None, &event).await?;
    let mut headers = message.headers;
    headers.insert(
        EXPECTED_LAST_SUBJECT_SEQUENCE,
        last_sequence.to_string().as_str(),
    );
    headers.insert(
        EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT,
        node_subjects(config).as_str(),
    );
    let publish_error = |error: &dyn std::fmt::Display| RelayError::Publish {
        position: start,
        message: format!("fenced publish: {error}"),
    };
    jetstream
        .publish_with_headers(message.subject, headers, message.payload)
        .await
        .map_err(|error| publish_error(&error))?
        .await
        .map_err(|error| publish_error(&error))?;
    status.acknowledgements.fetch_add(1, Ordering::Relaxed);
    let next = start + 1;
    log.set_checkpoint(&config.checkpoint_name, next)
        .map_err(|error| RelayError::Log(error.to_string()))?;
    status.published_up_to.store(next, Ordering::Relaxed);
    Ok(next)
}

/// `<prefix>.<node>.>`: every subject of this node's events.
fn node_subjects(config: &RelayConfig) -> String {
    format!(
        "{}.{}.>",
        config.subject_prefix,
        message::token(&config.node_id)
    )
}

/// The first position in `from..to` this node has no message for in the stream, or `to`
/// when all are there. Reads the stream backwards from the node's last message
/// (`last_sequence`); when that takes too long, answers `from` (publish everything again,
/// the duplicate window drops what the stream has).
async fn first_missing(
    events_stream: &stream::Stream,
    config: &RelayConfig,
    from: u64,
    to: u64,
    last_sequence: u64,
) -> Result<u64, RelayError> {
    let wanted = to - from;
    let budget = wanted.saturating_mul(4).saturating_add(10_000);
    let prefix = format!(
        "{}.{}.",
        config.subject_prefix,
        message::token(&config.node_id)
    );
    let mut present = BTreeSet::new();
    let mut sequence = last_sequence;
    let mut read = 0u64;
    while sequence > 0 && (present.len() as u64) < wanted {
        if read >= budget {
            tracing::warn!(
                from,
                to,
                "stream too long to check for holes after the checkpoint; publishing them again"
            );
            return Ok(from);
        }
        read += 1;
        let message = match events_stream.get_raw_message(sequence).await {
            Ok(message) => message,
            Err(error) if error.kind() == stream::RawMessageErrorKind::NoMessageFound => {
                sequence -= 1;
                continue;
            }
            Err(error) => return Err(RelayError::LastMessage(error.to_string())),
        };
        sequence -= 1;
        if !message.subject.starts_with(&prefix) {
            continue;
        }
        match message::position_of(&message.headers) {
            Some(position) if position < from => break,
            Some(position) if position < to => {
                present.insert(position);
            }
            _ => {}
        }
    }
    let missing = (from..to)
        .find(|position| !present.contains(position))
        .unwrap_or(to);
    if missing < to {
        tracing::warn!(
            missing,
            stream_next = to,
            "jetstream lacks a position below this node's last message; republishing from it"
        );
    }
    Ok(missing)
}
