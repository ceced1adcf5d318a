//! `anju relay check`: compares one node's log with what the JetStream stream holds for
//! that node and counts what is missing, stored twice, stored out of log order or stored
//! with another event's id.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use uuid::Uuid;

use crate::{message, NatsAddress, HEADER_POSITION};

/// What the check compares: the stream, its subjects and the node.
#[derive(Clone)]
pub struct CheckTarget {
    /// As in [`crate::RelayConfig::nats_url`].
    pub nats_url: String,
    /// `ANJU_EVENTS`.
    pub stream_name: String,
    /// `anju.events`.
    pub subject_prefix: String,
    /// The node whose messages are compared (`anju.events.<node>.>`).
    pub node_id: String,
    /// How long to wait for the server at each step.
    pub timeout: Duration,
}

/// The counts; every problem is one of these and the check passes when all are 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckReport {
    pub node: String,
    pub stream: String,
    /// Events in the node's log.
    pub log_events: u64,
    /// The node's messages in the stream.
    pub stream_messages: u64,
    /// Log positions the stream has no message for.
    pub missing: u64,
    /// Of those, positions after the node's last message in the stream (the relay's lag
    /// when it has not caught up yet).
    pub missing_after_last_message: u64,
    /// Messages of a position the stream already held.
    pub duplicate: u64,
    /// Messages stored after a message of a later position.
    pub out_of_order: u64,
    /// Messages whose `Nats-Msg-Id` is not the log's event id at their position, whose
    /// position is past the log's end, or that carry no position.
    pub mismatched: u64,
    /// Up to ten problems as text, for a person to start from.
    pub examples: Vec<String>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.missing == 0 && self.duplicate == 0 && self.out_of_order == 0 && self.mismatched == 0
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < 10 {
            self.examples.push(text);
        }
    }
}

/// Why the check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("invalid nats address: {0}")]
    Address(String),
    #[error("cannot connect to nats at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("jetstream stream {stream} does not exist at {url}")]
    NoStream { stream: String, url: String },
    #[error("cannot read the jetstream stream {stream}: {message}")]
    Stream { stream: String, message: String },
}

/// Reads the node's messages of the stream in stream order (an ordered consumer filtered
/// on `<prefix>.<node>.>`) and compares them with `log`, the node's event ids by log
/// position (index = position, from 0).
pub async fn check_stream(target: &CheckTarget, log: &[Uuid]) -> Result<CheckReport, CheckError> {
    let address = NatsAddress::parse(&target.nats_url)
        .map_err(|error| CheckError::Address(error.to_string()))?;
    let url = address.to_string();
    let connect_error = |error: &dyn std::fmt::Display| CheckError::Connect {
        url: url.clone(),
        message: error.to_string(),
    };
    let client = tokio::time::timeout(
        target.timeout,
        address.connect(|options| options.connection_timeout(target.timeout).max_reconnects(1)),
    )
    .await
    .map_err(|_| connect_error(&format!("no connection within {:?}", target.timeout)))?
    .map_err(|error| connect_error(&error))?;
    let stream_error = |error: &dyn std::fmt::Display| CheckError::Stream {
        stream: target.stream_name.clone(),
        message: error.to_string(),
    };
    let context = jetstream::ContextBuilder::new()
        .timeout(target.timeout)
        .build(client);
    let stream = match context.get_stream(&target.stream_name).await {
        Ok(stream) => stream,
        Err(error)
            if matches!(
                error.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref api)
                    if api.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            return Err(CheckError::NoStream {
                stream: target.stream_name.clone(),
                url,
            });
        }
        Err(error) => return Err(stream_error(&error)),
    };
    let mut report = CheckReport {
        node: target.node_id.clone(),
        stream: target.stream_name.clone(),
        log_events: log.len() as u64,
        ..CheckReport::default()
    };
    let filter = format!(
        "{}.{}.>",
        target.subject_prefix,
        message::token(&target.node_id)
    );
    let mut seen: HashMap<u64, u64> = HashMap::new();
    let mut highest: Option<u64> = None;
    let mut consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter.clone(),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|error| stream_error(&error))?;
    // The node's messages when the read starts: it stops after them.
    let pending = consumer
        .info()
        .await
        .map_err(|error| stream_error(&error))?
        .num_pending;
    if pending > 0 {
        let mut messages = consumer
            .messages()
            .await
            .map_err(|error| stream_error(&error))?;
        loop {
            let next = tokio::time::timeout(target.timeout, messages.next())
                .await
                .map_err(|_| stream_error(&format!("no message within {:?}", target.timeout)))?;
            let Some(next) = next else { break };
            let message = next.map_err(|error| stream_error(&error))?;
            report.stream_messages += 1;
            let (sequence, remaining) = message
                .info()
                .map(|info| (info.stream_sequence, info.pending))
                .unwrap_or((0, 0));
            let headers = message.headers.clone().unwrap_or_default();
            compare(
                &mut report,
                &mut seen,
                &mut highest,
                log,
                sequence,
                &headers,
            );
            if remaining == 0 {
                break;
            }
        }
    }
    for position in 0..log.len() as u64 {
        if !seen.contains_key(&position) {
            report.missing += 1;
            if highest.is_none_or(|highest| position > highest) {
                report.missing_after_last_message += 1;
            } else {
                report.example(format!("position {position}: not in the stream"));
            }
        }
    }
    if report.missing_after_last_message > 0 {
        report.example(format!(
            "{} positions after the node's last message are not in the stream yet",
            report.missing_after_last_message
        ));
    }
    Ok(report)
}

/// One message of the node, in stream order, against the log and the messages before it.
fn compare(
    report: &mut CheckReport,
    seen: &mut HashMap<u64, u64>,
    highest: &mut Option<u64>,
    log: &[Uuid],
    sequence: u64,
    headers: &async_nats::HeaderMap,
) {
    let Some(position) = message::position_of(headers) else {
        report.mismatched += 1;
        report.example(format!(
            "stream sequence {sequence}: no {HEADER_POSITION} header"
        ));
        return;
    };
    if let Some(first) = seen.get(&position) {
        report.duplicate += 1;
        report.example(format!(
            "position {position}: stored again at stream sequence {sequence} (first at {first})"
        ));
        return;
    }
    seen.insert(position, sequence);
    if let Some(highest) = *highest {
        if position < highest {
            report.out_of_order += 1;
            report.example(format!(
                "position {position}: stored at stream sequence {sequence}, after position {highest}"
            ));
        }
    }
    *highest = Some(highest.map_or(position, |highest| highest.max(position)));
    let raw_id = headers
        .get(async_nats::header::NATS_MESSAGE_ID)
        .map(|value| value.as_str().to_string());
    let id = raw_id
        .as_deref()
        .and_then(|value| Uuid::parse_str(value).ok());
    match log.get(position as usize) {
        None => {
            report.mismatched += 1;
            report.example(format!(
                "position {position}: past the log's end ({} events)",
                log.len()
            ));
        }
        Some(event_id) if id != Some(*event_id) => {
            report.mismatched += 1;
            report.example(format!(
                "position {position}: the stream holds event {} where the log has {event_id}",
                raw_id.as_deref().unwrap_or("(no Nats-Msg-Id)")
            ));
        }
        Some(_) => {}
    }
}
