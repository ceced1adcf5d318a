//! anju-insight's core: consumes `ANJU_EVENTS` from any number of anju-server nodes with a
//! durable pull consumer and folds them into the same read models the nodes keep
//! (`anju_projections::ReadModels`), so province-wide figures equal the sum of the nodes'.
//!
//! Acknowledgements go out only after the store has the update (sled flushed). Duplicates
//! are dropped even after NATS's duplicate window has passed, because the store keeps each
//! node's next log position; a restart resumes without double counting. A message that
//! cannot be read is set aside (terminated, counted, recorded) and never stalls the
//! consumer.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anju_domain::{Calendar, Event};
use anju_projections::{Input, ReadModels};
use anju_relay::EventMessage;
use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt;
use tokio::sync::watch;

const TREE_NODES: &str = "insight_nodes";
const TREE_SET_ASIDE: &str = "insight_set_aside";

#[derive(Debug, thiserror::Error)]
pub enum InsightError {
    #[error("cannot open the insight store at {path}: {message}")]
    Store { path: String, message: String },
    #[error("read models: {0}")]
    Models(String),
    #[error("nats: {0}")]
    Nats(String),
}

/// Where to consume from. Its `Debug` shows `nats_url` redacted.
#[derive(Clone)]
pub struct ConsumerConfig {
    pub nats_url: String,
    pub stream_name: String,
    /// The durable consumer's name; several insight replicas must not share one.
    pub durable_name: String,
    /// Messages fetched and stored per flush.
    pub batch_size: usize,
}

impl std::fmt::Debug for ConsumerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ConsumerConfig {
            nats_url,
            stream_name,
            durable_name,
            batch_size,
        } = self;
        f.debug_struct("ConsumerConfig")
            .field("nats_url", &anju_relay::shown_nats_url(nats_url))
            .field("stream_name", stream_name)
            .field("durable_name", durable_name)
            .field("batch_size", batch_size)
            .finish()
    }
}

impl ConsumerConfig {
    pub fn new(nats_url: impl Into<String>) -> ConsumerConfig {
        ConsumerConfig {
            nats_url: nats_url.into(),
            stream_name: "ANJU_EVENTS".to_string(),
            durable_name: "anju-insight".to_string(),
            batch_size: 1000,
        }
    }
}

/// Counters for /metrics and the health detail.
#[derive(Debug, Default)]
pub struct InsightStatus {
    connected: AtomicBool,
    applied: AtomicU64,
    duplicates: AtomicU64,
    set_aside: AtomicU64,
    out_of_order: AtomicU64,
    pending: AtomicU64,
}

impl InsightStatus {
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
    /// Events folded into the read models.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }
    /// Messages dropped because their node position was already stored.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
    /// Malformed or unknown messages terminated and recorded.
    pub fn set_aside(&self) -> u64 {
        self.set_aside.load(Ordering::Relaxed)
    }
    /// Messages that arrived ahead of a missing position of their node (redelivered later).
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order.load(Ordering::Relaxed)
    }
    /// The consumer's lag: messages of the stream not yet delivered to insight, as
    /// JetStream reported with the last message handled.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }
}

/// The insight store: read models plus each node's next position.
#[derive(Clone)]
pub struct Insight {
    db: sled::Db,
    models: ReadModels,
    nodes: sled::Tree,
    set_aside: sled::Tree,
    status: Arc<InsightStatus>,
}

impl Insight {
    /// Opens (or creates) the store under `data_dir`. When the read-model layout version
    /// changed, the models and node positions are cleared and the consumer starts over from
    /// the beginning of the stream.
    pub fn open(data_dir: &Path, calendar: Arc<Calendar>) -> Result<Insight, InsightError> {
        let path = data_dir.join("insight.sled");
        let store_error = |error: &dyn std::fmt::Display| InsightError::Store {
            path: path.display().to_string(),
            message: error.to_string(),
        };
        std::fs::create_dir_all(data_dir).map_err(|e| store_error(&e))?;
        let db = sled::open(&path).map_err(|e| store_error(&e))?;
        let models =
            ReadModels::open(&db, calendar).map_err(|e| InsightError::Models(e.to_string()))?;
        let nodes = db.open_tree(TREE_NODES).map_err(|e| store_error(&e))?;
        let set_aside = db.open_tree(TREE_SET_ASIDE).map_err(|e| store_error(&e))?;
        let rebuilt = models
            .ensure_version()
            .map_err(|e| InsightError::Models(e.to_string()))?;
        if rebuilt {
            nodes.clear().map_err(|e| store_error(&e))?;
        }
        Ok(Insight {
            db,
            models,
            nodes,
            set_aside,
            status: Arc::new(InsightStatus::default()),
        })
    }

    pub fn models(&self) -> &ReadModels {
        &self.models
    }

    pub fn status(&self) -> Arc<InsightStatus> {
        self.status.clone()
    }

    /// Each node's next expected log position.
    pub fn node_positions(&self) -> Result<HashMap<String, u64>, InsightError> {
        let mut positions = HashMap::new();
        for entry in self.nodes.iter() {
            let (node, position) = entry.map_err(|e| InsightError::Models(e.to_string()))?;
            positions.insert(
                String::from_utf8_lossy(&node).into_owned(),
                read_u64(&position),
            );
        }
        Ok(positions)
    }

    /// Writes everything stored so far to disk (each batch is flushed before it is
    /// acknowledged already; this is for a clean stop).
    pub fn flush(&self) -> Result<(), InsightError> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| InsightError::Models(e.to_string()))
    }

    /// Whether the durable consumer must start over (the store is empty).
    fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Starts consuming on the current tokio runtime.
    pub fn start(&self, config: ConsumerConfig) -> ConsumerHandle {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(self.clone(), config, stopped));
        ConsumerHandle { stop, task }
    }

    /// Folds one fetched batch: decides each message's fate, stores the applicable ones
    /// with the node positions, flushes, and only then acknowledges.
    async fn handle_batch(&self, messages: Vec<jetstream::Message>) -> Result<(), InsightError> {
        let mut next_positions: HashMap<String, u64> = HashMap::new();
        let mut decoded: Vec<(usize, EventMessage, Option<Event>)> = Vec::new();
        let mut fates: Vec<AckKind> = Vec::with_capacity(messages.len());
        let mut set_aside = sled::Batch::default();

        for (index, message) in messages.iter().enumerate() {
            let sequence = message.info().map(|info| info.stream_sequence).unwrap_or(0);
            let body = match EventMessage::decode(&message.payload) {
                Ok(body) => body,
                Err(error) => {
                    tracing::error!(subject = %message.subject, sequence, %error, "set aside a message that is not an anju event");
                    set_aside.insert(
                        &sequence.to_be_bytes(),
                        format!("{}: {error}", message.subject).as_bytes(),
                    );
                    self.status.set_aside.fetch_add(1, Ordering::Relaxed);
                    fates.push(AckKind::Term);
                    continue;
                }
            };
            let next = match next_positions.get(&body.node) {
                Some(next) => *next,
                None => self.stored_next(&body.node)?,
            };
            if body.position < next {
                self.status.duplicates.fetch_add(1, Ordering::Relaxed);
                fates.push(AckKind::Ack);
                continue;
            }
            if body.position > next {
                tracing::warn!(node = %body.node, position = body.position, expected = next, "event ahead of a missing position; redelivering later");
                self.status.out_of_order.fetch_add(1, Ordering::Relaxed);
                fates.push(AckKind::Nak(Some(Duration::from_secs(1))));
                continue;
            }
            next_positions.insert(body.node.clone(), next + 1);
            // Only request streams fold into the figures; the others (the audit records
            // of identity look-ups) are passed over without being set aside.
            if anju_projections::request_id_of_stream(&body.stream_id).is_none() {
                decoded.push((index, body, None));
                fates.push(AckKind::Ack);
                continue;
            }
            let data = serde_json::to_vec(&body.data).unwrap_or_default();
            let event = match Event::from_json(&body.event_type, body.schema_version, &data) {
                Ok(event) => Some(event),
                Err(error) => {
                    // Still folded as "undecodable" so the request's later events are not blocked.
                    tracing::error!(node = %body.node, position = body.position, event_type = %body.event_type, %error, "set aside an event of unknown form");
                    set_aside.insert(
                        &sequence.to_be_bytes(),
                        format!("{} {}: {error}", body.node, body.position).as_bytes(),
                    );
                    self.status.set_aside.fetch_add(1, Ordering::Relaxed);
                    None
                }
            };
            decoded.push((index, body, event));
            fates.push(AckKind::Ack);
        }

        let inputs: Vec<Input<'_>> = decoded
            .iter()
            .map(|(_, body, event)| Input {
                stream_id: &body.stream_id,
                stream_version: body.stream_version,
                position: body.position,
                event_type: &body.event_type,
                event: event.as_ref(),
            })
            .collect();
        if !inputs.is_empty() {
            self.models
                .apply_all(&inputs, None)
                .map_err(|e| InsightError::Models(e.to_string()))?;
            self.status
                .applied
                .fetch_add(inputs.len() as u64, Ordering::Relaxed);
        }
        let mut node_batch = sled::Batch::default();
        for (node, next) in &next_positions {
            node_batch.insert(node.as_bytes(), &next.to_be_bytes());
        }
        self.nodes
            .apply_batch(node_batch)
            .map_err(|e| InsightError::Models(e.to_string()))?;
        self.set_aside
            .apply_batch(set_aside)
            .map_err(|e| InsightError::Models(e.to_string()))?;
        self.db
            .flush_async()
            .await
            .map_err(|e| InsightError::Models(e.to_string()))?;

        if let Some(info) = messages.last().and_then(|message| message.info().ok()) {
            self.status.pending.store(info.pending, Ordering::Relaxed);
        }
        for (message, fate) in messages.iter().zip(fates) {
            message
                .ack_with(fate)
                .await
                .map_err(|e| InsightError::Nats(e.to_string()))?;
        }
        Ok(())
    }

    fn stored_next(&self, node: &str) -> Result<u64, InsightError> {
        Ok(self
            .nodes
            .get(node.as_bytes())
            .map_err(|e| InsightError::Models(e.to_string()))?
            .map(|value| read_u64(&value))
            .unwrap_or(0))
    }
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut buffer = [0u8; 8];
    let length = bytes.len().min(8);
    buffer[..length].copy_from_slice(&bytes[..length]);
    u64::from_be_bytes(buffer)
}

/// A running consumer.
pub struct ConsumerHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ConsumerHandle {
    /// Stops after the batch in hand is stored and acknowledged.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(insight: Insight, config: ConsumerConfig, mut stopped: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let outcome = consume(&insight, &config, &mut stopped, &mut backoff).await;
        insight.status.connected.store(false, Ordering::Relaxed);
        match outcome {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "insight consumer interrupted")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection: bind the durable consumer and fold batches until stopped or failed.
/// Returns `Ok` only when asked to stop.
async fn consume(
    insight: &Insight,
    config: &ConsumerConfig,
    stopped: &mut watch::Receiver<bool>,
    backoff: &mut Duration,
) -> Result<(), InsightError> {
    let nats = |error: &dyn std::fmt::Display| InsightError::Nats(error.to_string());
    let address = anju_relay::NatsAddress::parse(&config.nats_url).map_err(|e| nats(&e))?;
    let client = address
        .connect(|options| options.connection_timeout(Duration::from_secs(2)))
        .await
        .map_err(|e| nats(&format!("cannot connect to nats at {address}: {e}")))?;
    let context = jetstream::new(client);
    let stream = context
        .get_stream(&config.stream_name)
        .await
        .map_err(|e| nats(&e))?;
    let mut deliver_policy = consumer::DeliverPolicy::All;
    if insight.is_empty() {
        // An empty store must read the stream from its start, whatever an old durable
        // consumer of the same name had acknowledged.
        let _ = stream.delete_consumer(&config.durable_name).await;
    } else if let Ok(info) = stream.consumer_info(&config.durable_name).await {
        // A consumer left by an earlier run (killed with a batch in hand) holds messages
        // delivered and never acknowledged. JetStream would send them again only after
        // `ack_wait`; until then every later message arrives ahead of them, is refused as
        // out of order and redelivered, again and again (tens of thousands of times for
        // a full `max_ack_pending`). Start the consumer again from its ack floor instead:
        // everything after it comes at once and in stream order, each message once, and
        // what the store already applied is acknowledged as a duplicate.
        if info.num_ack_pending > 0 {
            let start_sequence = info.ack_floor.stream_sequence + 1;
            tracing::info!(
                consumer = %config.durable_name,
                unacknowledged = info.num_ack_pending,
                start_sequence,
                "restarting the consumer from its ack floor"
            );
            stream
                .delete_consumer(&config.durable_name)
                .await
                .map_err(|e| nats(&e))?;
            deliver_policy = consumer::DeliverPolicy::ByStartSequence { start_sequence };
        }
    }
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &config.durable_name,
            consumer::pull::Config {
                durable_name: Some(config.durable_name.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: (config.batch_size * 4) as i64,
                deliver_policy,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| nats(&e))?;
    insight.status.connected.store(true, Ordering::Relaxed);
    *backoff = Duration::from_millis(100);
    tracing::info!(consumer = %config.durable_name, "insight consuming");

    loop {
        if *stopped.borrow() {
            return Ok(());
        }
        let mut batch = consumer
            .fetch()
            .max_messages(config.batch_size)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| nats(&e))?;
        let mut messages = Vec::new();
        while let Some(message) = batch.next().await {
            messages.push(message.map_err(|e| nats(&e))?);
        }
        if !messages.is_empty() {
            insight.handle_batch(messages).await?;
        }
    }
}
