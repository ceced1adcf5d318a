//! JetStream fast-ingest batches (ADR-50 "fast ingest", nats-server 2.14+, stream option
//! `allow_batched`): the relay's publish loop when the server and the stream support them.
//!
//! The protocol lives in the reply subject of each message,
//! `<inbox>.<batch id>.<flow>.fail.<batch seq>.<op>.$FI`, with op 0 to start a batch, 1 to
//! append, 3 to end it without storing the final (empty) message, 4 to ping. The server
//! answers on that reply subject:
//!
//! - `{"type":"ack","seq":N,"msgs":F}`: batch messages 1..=N are stored (with gap mode
//!   `fail`, in order and without a hole); the next flow ack comes F messages later. The
//!   start message gets one with `seq` 0 before anything else may be sent.
//! - `{"type":"gap","last_seq":..,"seq":..}` or `{"type":"err",..}`: the batch ends.
//! - `{"stream":..,"seq":..,"batch":..,"count":C}`: the final pub ack of an ended batch;
//!   C messages were taken (stored, or dropped as duplicates of their `Nats-Msg-Id`).
//! - `{"error":{..}}`: a refused operation (10205: batches disabled on the stream).
//!
//! So nats-server sends one acknowledgement per F messages (it grants at most 500) instead
//! of one per message. Batch message `s` of a batch that starts at log position `p` is the
//! event at position `p + s - 1`; a flow ack of `N` acknowledges the positions below
//! `p + N`, a final ack all of the batch. JetStream applies `Nats-Msg-Id` deduplication to
//! batch messages as to single publishes (checked against nats-server 2.15.1: a batch
//! repeating stored ids stores only the new ones and counts all of them in the final ack,
//! without an error), so the relay's repair after a lost connection still republishes
//! without duplicates. Whenever the reader has had nothing new for [`LINGER`], the open
//! batch is ended (op 3) so its tail is acknowledged at once; the next event starts a new
//! batch. An idle relay therefore holds no batch the server would abandon after 10 s.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anju_eventlog::EventLog;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;

use crate::{
    publish_message, publish_timed_out, Outgoing, RelayConfig, RelayError, RelayStatus,
    PUBLISH_BATCH,
};

/// How long the reader must have had nothing new before the open batch is ended, so that
/// its last messages are acknowledged without waiting for the next flow ack.
pub(crate) const LINGER: Duration = Duration::from_millis(10);

/// JetStream's error code for a stream without `allow_batched`.
const NOT_ENABLED: u64 = 10205;
/// JetStream's error code for a reply subject it does not read as a fast batch.
const INVALID_PATTERN: u64 = 10206;

/// One batch: the positions `start..start + sent` of the log, in batch sequence order.
struct Batch {
    /// The batch id token, `<inbox id>b<n>`: unique to this connection's inbox.
    id: String,
    /// The log position of batch message 1.
    start: u64,
    /// Messages sent in the batch (its sequence so far), not counting the end message.
    sent: u64,
    /// Messages acknowledged: 1..=acknowledged are stored.
    acknowledged: u64,
    /// The server's flow: a flow ack every this many messages.
    flow: u64,
    /// The server answered the start message (messages after it may go).
    confirmed: bool,
    /// The end message went out; the final pub ack is awaited.
    ended: bool,
    /// The final pub ack came: every message of the batch is acknowledged.
    done: bool,
    /// The subject of batch message 1, for the end and ping messages (they must go to a
    /// subject of the stream).
    first_subject: Option<async_nats::Subject>,
}

/// The publish loop of one connection in fast-batch mode. Returns only with an error (the
/// connection then ends and the relay starts again from its checkpoint).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn publish(
    client: &async_nats::Client,
    log: &EventLog,
    config: &RelayConfig,
    status: &RelayStatus,
    inbox: &str,
    mut acknowledgements: async_nats::Subscriber,
    mut messages_rx: mpsc::Receiver<Vec<Result<Outgoing, RelayError>>>,
    start: u64,
) -> Result<(), RelayError> {
    let inbox_id = inbox.rsplit('.').next().unwrap_or("relay").to_string();
    // The flow asked for keeps `flow × outstanding acks` within the in-flight limit: the
    // server never acknowledges less often than the flow a batch starts with, so a larger
    // flow could leave the relay waiting, at its limit, for an ack that never comes.
    let outstanding_acks = config.fast_batch_outstanding_acks.max(1);
    let flow_limit =
        (config.max_in_flight / outstanding_acks as usize).clamp(1, u16::MAX as usize) as u16;
    let flow_requested = config.fast_batch_flow.clamp(1, flow_limit);
    let mut state = State {
        inbox,
        inbox_id,
        flow_requested,
        outstanding_acks: outstanding_acks as u64,
        max_in_flight: config.max_in_flight.max(1) as u64,
        batches: VecDeque::new(),
        batches_started: 0,
        sent_up_to: start,
        acknowledged_up_to: start,
    };
    let mut checkpointed = start;
    let mut last_progress = Instant::now();
    let mut last_ping = Instant::now();
    let mut last_received = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut pending: VecDeque<Result<Outgoing, RelayError>> = VecDeque::new();
    loop {
        let room = state.room();
        let end_due = pending.is_empty()
            && state
                .open_batch()
                .is_some_and(|batch| batch.confirmed && batch.sent > 0);
        tokio::select! {
            biased;
            acknowledgement = acknowledgements.next() => {
                let Some(acknowledgement) = acknowledgement else {
                    return Err(RelayError::Connect { url: config.shown_nats_url(), message: "acknowledgement subscription closed".to_string() });
                };
                let before = state.acknowledged_up_to;
                state.take_reply(&acknowledgement)?;
                let mut received = 1u64;
                for _ in 0..PUBLISH_BATCH {
                    match acknowledgements.next().now_or_never() {
                        Some(Some(acknowledgement)) => {
                            state.take_reply(&acknowledgement)?;
                            received += 1;
                        }
                        Some(None) | None => break,
                    }
                }
                status.acknowledgements.fetch_add(received, Ordering::Relaxed);
                if state.acknowledged_up_to != before {
                    status.published_up_to.store(state.acknowledged_up_to, Ordering::Relaxed);
                    last_progress = Instant::now();
                }
            }
            received = messages_rx.recv(), if pending.is_empty() => {
                let Some(received) = received else {
                    return Err(RelayError::Log("the log subscription ended".to_string()));
                };
                pending = received.into();
                last_received = tokio::time::Instant::now();
                if state.sent_up_to == state.acknowledged_up_to {
                    last_progress = Instant::now();
                }
                state.publish_from(client, &mut pending, config.ack_timeout).await?;
            }
            // The rest of the reader's batch, as acknowledgements make room.
            _ = std::future::ready(()), if room > 0 && !pending.is_empty() => {
                state.publish_from(client, &mut pending, config.ack_timeout).await?;
            }
            // Nothing new from the log for a while: end the open batch, so that its last
            // messages are acknowledged now rather than with a flow ack that may not come.
            _ = tokio::time::sleep_until(last_received + LINGER), if end_due => {
                state.end_open_batch(client, config.ack_timeout).await?;
            }
            _ = tick.tick() => {
                if state.acknowledged_up_to != checkpointed {
                    log.set_checkpoint(&config.checkpoint_name, state.acknowledged_up_to)
                        .map_err(|error| RelayError::Log(error.to_string()))?;
                    checkpointed = state.acknowledged_up_to;
                }
                if state.sent_up_to > state.acknowledged_up_to {
                    let waited = last_progress.elapsed();
                    if waited > config.ack_timeout {
                        return Err(RelayError::Publish {
                            position: state.acknowledged_up_to,
                            message: format!("no acknowledgement within {:?}", config.ack_timeout),
                        });
                    }
                    // A flow ack may have been lost: a ping has the server send the latest
                    // one again (and keeps the batch alive).
                    let ping_every = config.ack_timeout / 3;
                    if waited > ping_every && last_ping.elapsed() > ping_every {
                        state.ping(client, config.ack_timeout).await?;
                        last_ping = Instant::now();
                    }
                }
            }
        }
    }
}

struct State<'a> {
    inbox: &'a str,
    inbox_id: String,
    flow_requested: u16,
    outstanding_acks: u64,
    max_in_flight: u64,
    /// Batches not yet fully acknowledged, oldest first; contiguous in log positions. At
    /// most the last one is open (not ended).
    batches: VecDeque<Batch>,
    batches_started: u64,
    /// The next log position to send.
    sent_up_to: u64,
    /// Every position below this one is acknowledged.
    acknowledged_up_to: u64,
}

impl State<'_> {
    fn open_batch(&self) -> Option<&Batch> {
        self.batches.back().filter(|batch| !batch.ended)
    }

    /// How many messages may go out now: none while a new batch awaits the server's first
    /// answer; otherwise as the flow window (ADR-50: wait once `acknowledged + flow ×
    /// outstanding acks <= next sequence`) and the relay's in-flight limit allow.
    fn room(&self) -> u64 {
        let in_flight = self.sent_up_to - self.acknowledged_up_to;
        let by_limit = self.max_in_flight.saturating_sub(in_flight);
        match self.open_batch() {
            None => by_limit.min(1),
            Some(batch) if !batch.confirmed => 0,
            Some(batch) => {
                let window = batch.acknowledged + batch.flow * self.outstanding_acks;
                let next = batch.sent + 1;
                window.saturating_sub(next).min(by_limit)
            }
        }
    }

    /// Publishes from the front of `pending` while there is room, starting a batch when
    /// none is open. Bounded by the acknowledgement timeout like the per-message path.
    async fn publish_from(
        &mut self,
        client: &async_nats::Client,
        pending: &mut VecDeque<Result<Outgoing, RelayError>>,
        ack_timeout: Duration,
    ) -> Result<(), RelayError> {
        let publish = async {
            while self.room() > 0 {
                let Some(message) = pending.pop_front() else {
                    break;
                };
                let message = message?;
                let position = message.position;
                debug_assert_eq!(
                    position, self.sent_up_to,
                    "the reader sends positions in order"
                );
                if self.open_batch().is_none() {
                    self.batches_started += 1;
                    self.batches.push_back(Batch {
                        id: format!("{}b{}", self.inbox_id, self.batches_started),
                        start: position,
                        sent: 0,
                        acknowledged: 0,
                        flow: 1,
                        confirmed: false,
                        ended: false,
                        done: false,
                        first_subject: None,
                    });
                }
                let inbox = self.inbox;
                let flow = self.flow_requested;
                let batch = self.batches.back_mut().expect("an open batch");
                batch.sent += 1;
                let operation = if batch.sent == 1 { 0 } else { 1 };
                let reply = reply_subject(inbox, &batch.id, flow, batch.sent, operation);
                let subject = async_nats::Subject::from(message.subject);
                if batch.first_subject.is_none() {
                    batch.first_subject = Some(subject.clone());
                }
                publish_message(
                    client,
                    subject,
                    async_nats::Subject::from(reply),
                    message.headers,
                    message.payload,
                    position,
                )
                .await?;
                self.sent_up_to = position + 1;
            }
            Ok::<(), RelayError>(())
        };
        match tokio::time::timeout(ack_timeout, publish).await {
            Ok(result) => result,
            Err(_) => Err(publish_timed_out(self.sent_up_to, ack_timeout)),
        }
    }

    /// Ends the open batch without storing a final message (op 3); the server answers
    /// with the batch's pub ack.
    async fn end_open_batch(
        &mut self,
        client: &async_nats::Client,
        ack_timeout: Duration,
    ) -> Result<(), RelayError> {
        let inbox = self.inbox;
        let flow = self.flow_requested;
        let position = self.sent_up_to;
        let Some(batch) = self.batches.back_mut().filter(|batch| !batch.ended) else {
            return Ok(());
        };
        let Some(subject) = batch.first_subject.clone() else {
            return Ok(());
        };
        batch.ended = true;
        let reply = reply_subject(inbox, &batch.id, flow, batch.sent + 1, 3);
        send_control(client, subject, reply, position, ack_timeout).await
    }

    /// Pings the open batch (op 4, with the highest sequence sent): the server sends its
    /// latest flow ack again.
    async fn ping(
        &mut self,
        client: &async_nats::Client,
        ack_timeout: Duration,
    ) -> Result<(), RelayError> {
        let inbox = self.inbox;
        let flow = self.flow_requested;
        let position = self.sent_up_to;
        let Some(batch) = self
            .batches
            .back()
            .filter(|batch| !batch.ended && batch.confirmed)
        else {
            return Ok(());
        };
        let Some(subject) = batch.first_subject.clone() else {
            return Ok(());
        };
        let reply = reply_subject(inbox, &batch.id, flow, batch.sent, 4);
        send_control(client, subject, reply, position, ack_timeout).await
    }

    /// Applies one answer of the server to its batch.
    fn take_reply(&mut self, reply: &async_nats::Message) -> Result<(), RelayError> {
        let Some(id) = reply
            .subject
            .strip_prefix(self.inbox)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.split('.').next())
        else {
            return Err(RelayError::Publish {
                position: self.acknowledged_up_to,
                message: format!("unexpected reply subject {}", reply.subject),
            });
        };
        // A late answer for a batch already fully acknowledged (a ping's repeated ack).
        let Some(index) = self.batches.iter().position(|batch| batch.id == id) else {
            return Ok(());
        };
        let batch = &mut self.batches[index];
        let answer = Answer::read(reply).map_err(|message| RelayError::Publish {
            position: batch.start,
            message,
        })?;
        let failed = |batch: &Batch, what: String| RelayError::Publish {
            position: batch.start + batch.acknowledged,
            message: what,
        };
        if let Some(error) = answer.error {
            let code = error_code(error);
            if !batch.confirmed && (code == Some(NOT_ENABLED) || code == Some(INVALID_PATTERN)) {
                return Err(RelayError::FastBatchesRefused(format!(
                    "the batch start was refused: {error}"
                )));
            }
            return Err(failed(
                batch,
                format!("jetstream refused the batch: {error}"),
            ));
        }
        match answer.kind {
            Some("ack") => {
                batch.confirmed = true;
                batch.flow = answer.msgs.unwrap_or(1).max(1);
                // A later ack covers every earlier one (an ack may be lost).
                let sequence = answer.seq.unwrap_or(0).min(batch.sent);
                batch.acknowledged = batch.acknowledged.max(sequence);
            }
            Some("gap") => {
                return Err(failed(
                    batch,
                    format!(
                        "jetstream lost messages of a batch (gap after batch sequence {:?})",
                        answer.last_seq
                    ),
                ))
            }
            Some(other) => {
                return Err(failed(
                    batch,
                    format!("jetstream reported {other:?} for a batch"),
                ))
            }
            None if answer.batch.is_some() => {
                let count = answer.count.unwrap_or(0);
                if !batch.ended || count != batch.sent {
                    return Err(failed(
                        batch,
                        format!("batch ended with {count} of {} messages stored", batch.sent),
                    ));
                }
                batch.acknowledged = batch.sent;
                batch.done = true;
            }
            // A plain pub ack: the server stored the message as a single publish, so it
            // does not know fast batches.
            None => {
                return Err(RelayError::FastBatchesRefused(
                    "the server answered a batch message with a plain pub ack".to_string(),
                ))
            }
        }
        while self.batches.front().is_some_and(|batch| batch.done) {
            self.batches.pop_front();
        }
        self.acknowledged_up_to = match self.batches.front() {
            Some(batch) => batch.start + batch.acknowledged,
            None => self.sent_up_to,
        };
        Ok(())
    }
}

/// `<inbox>.<batch id>.<flow>.fail.<sequence>.<operation>.$FI`.
fn reply_subject(inbox: &str, id: &str, flow: u16, sequence: u64, operation: u8) -> String {
    let mut reply = String::with_capacity(inbox.len() + id.len() + 32);
    let _ = std::fmt::Write::write_fmt(
        &mut reply,
        format_args!("{inbox}.{id}.{flow}.fail.{sequence}.{operation}.$FI"),
    );
    reply
}

async fn send_control(
    client: &async_nats::Client,
    subject: async_nats::Subject,
    reply: String,
    position: u64,
    ack_timeout: Duration,
) -> Result<(), RelayError> {
    let send = client.publish_with_reply(
        subject,
        async_nats::Subject::from(reply),
        bytes::Bytes::new(),
    );
    match tokio::time::timeout(ack_timeout, send).await {
        Ok(result) => result.map_err(|error| RelayError::Publish {
            position,
            message: error.to_string(),
        }),
        Err(_) => Err(publish_timed_out(position, ack_timeout)),
    }
}

/// The members of any answer on a batch's reply subjects that the relay reads.
#[derive(serde::Deserialize)]
struct Answer<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a str>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    msgs: Option<u64>,
    #[serde(default)]
    last_seq: Option<u64>,
    #[serde(borrow, default)]
    batch: Option<&'a str>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(borrow, default)]
    error: Option<&'a serde_json::value::RawValue>,
}

impl<'a> Answer<'a> {
    fn read(reply: &'a async_nats::Message) -> Result<Answer<'a>, String> {
        if let Some(status) = reply.status {
            if status.as_u16() >= 300 {
                return Err(format!("jetstream answered status {status}"));
            }
        }
        serde_json::from_slice(&reply.payload)
            .map_err(|error| format!("unreadable batch answer: {error}"))
    }
}

/// The `err_code` of a JetStream API error.
fn error_code(error: &serde_json::value::RawValue) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Coded {
        err_code: Option<u64>,
    }
    serde_json::from_str::<Coded>(error.get())
        .ok()
        .and_then(|coded| coded.err_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_subjects_follow_adr_50() {
        assert_eq!(
            reply_subject("_INBOX.abc", "abcb1", 500, 1, 0),
            "_INBOX.abc.abcb1.500.fail.1.0.$FI"
        );
        assert_eq!(
            reply_subject("_INBOX.abc", "abcb7", 64, 42, 3),
            "_INBOX.abc.abcb7.64.fail.42.3.$FI"
        );
    }

    #[test]
    fn answers_are_told_apart() {
        let read = |text: &str| {
            let answer: Answer<'_> = serde_json::from_str(text).unwrap();
            (
                answer.kind.map(str::to_string),
                answer.seq,
                answer.batch.is_some(),
                answer.error.and_then(error_code),
            )
        };
        assert_eq!(
            read(r#"{"type":"ack","seq":500,"msgs":500}"#),
            (Some("ack".into()), Some(500), false, None)
        );
        assert_eq!(
            read(r#"{"stream":"T","seq":30,"batch":"b1","count":30}"#),
            (None, Some(30), true, None)
        );
        assert_eq!(
            read(
                r#"{"error":{"code":400,"err_code":10205,"description":"batch publish is disabled"},"stream":"T","seq":0}"#
            ),
            (None, Some(0), false, Some(NOT_ENABLED))
        );
        assert_eq!(
            read(r#"{"type":"gap","last_seq":4,"seq":5}"#).0,
            Some("gap".into())
        );
    }
}
