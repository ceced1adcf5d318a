//! The form of an event on NATS: its subject, its headers and its JSON body. Consumers
//! (anju-insight, notifiers) decode with [`EventMessage`]; docs/nats.md documents it.

use anju_eventlog::RecordedEvent;
use async_nats::{HeaderMap, HeaderName};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const HEADER_NODE: &str = "Anju-Node";
pub const HEADER_POSITION: &str = "Anju-Position";
pub const HEADER_STREAM: &str = "Anju-Stream";
pub const HEADER_EVENT_TYPE: &str = "Anju-Event-Type";

/// The site and category an event belongs to, for its subject. Events that belong to no
/// request use `_` for both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub site: String,
    pub category: String,
}

impl Route {
    pub fn unrouted() -> Route {
        Route {
            site: "_".to_string(),
            category: "_".to_string(),
        }
    }
}

/// The route named by the `site` and `category` members of a stream's first event (anju's
/// `RequestSubmitted` JSON carries both); events without them are unrouted.
pub fn route_from_json(first: &RecordedEvent) -> Route {
    #[derive(Deserialize)]
    struct Named {
        site: String,
        category: String,
    }
    match serde_json::from_slice::<Named>(&first.payload) {
        Ok(named) => Route {
            site: named.site,
            category: named.category,
        },
        Err(_) => Route::unrouted(),
    }
}

/// `<prefix>.<node>.<site>.<category>.<event type>`, each token made safe for NATS.
pub fn subject_for(prefix: &str, node: &str, route: &Route, event_type: &str) -> String {
    format!(
        "{prefix}.{}.{}.{}.{}",
        token(node),
        token(&route.site),
        token(&route.category),
        token(event_type)
    )
}

/// A subject token: letters, digits, `-` and `_` pass; anything else (dots, spaces,
/// wildcards, non-ASCII) becomes `_`, and an empty token becomes `_`.
pub fn token(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "_".to_string()
    } else {
        cleaned
    }
}

/// The JSON body of an event on NATS. `data` is the event's own JSON payload as the log
/// holds it; anju's events carry no identity or phone numbers in clear.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventMessage {
    pub node: String,
    pub position: u64,
    pub stream_id: String,
    pub stream_version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub recorded_at_micros: i64,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    pub actor: String,
    pub data: serde_json::Value,
}

impl EventMessage {
    pub fn from_recorded(node: &str, event: &RecordedEvent) -> EventMessage {
        let data = serde_json::from_slice(&event.payload).unwrap_or_else(|_| {
            // A payload that is not JSON travels as a string rather than being dropped.
            serde_json::Value::String(String::from_utf8_lossy(&event.payload).into_owned())
        });
        EventMessage {
            node: node.to_string(),
            position: event.position,
            stream_id: event.stream_id.clone(),
            stream_version: event.stream_version,
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            recorded_at_micros: event.recorded_at_micros,
            correlation_id: event.metadata.correlation_id,
            causation_id: event.metadata.causation_id,
            actor: event.metadata.actor.clone(),
            data,
        }
    }

    pub fn decode(payload: &[u8]) -> Result<EventMessage, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

/// The body as the relay writes it: like [`EventMessage`], but `data` is the payload's JSON
/// copied as it is, without parsing it into a tree and printing it again.
#[derive(Serialize)]
struct OutgoingMessage<'a> {
    node: &'a str,
    position: u64,
    stream_id: &'a str,
    stream_version: u64,
    event_id: Uuid,
    event_type: &'a str,
    schema_version: u32,
    recorded_at_micros: i64,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
    actor: &'a str,
    data: &'a serde_json::value::RawValue,
}

const NAME_NODE: HeaderName = HeaderName::from_static(HEADER_NODE);
const NAME_POSITION: HeaderName = HeaderName::from_static(HEADER_POSITION);
const NAME_STREAM: HeaderName = HeaderName::from_static(HEADER_STREAM);
const NAME_EVENT_TYPE: HeaderName = HeaderName::from_static(HEADER_EVENT_TYPE);

/// Room in a body for everything but the payload and the strings of the event: the
/// member names, the numbers and the ids (about 250 bytes), with some to spare. Sizing the
/// body once avoids growing it several times per event, which the allocator answered by
/// consolidating its free lists (a tenth of the relay's CPU in the profile).
const BODY_OVERHEAD: usize = 320;

/// Headers and body for one event. `Nats-Msg-Id` is the event id, so JetStream drops a
/// republished event inside its duplicate window.
pub fn encode(node: &str, event: &RecordedEvent) -> (HeaderMap, Bytes) {
    (headers(node, event), body(node, event))
}

/// The headers of an event's message: each name is a constant (no allocation), each value
/// is written once.
pub(crate) fn headers(node: &str, event: &RecordedEvent) -> HeaderMap {
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id: &str = event.event_id.hyphenated().encode_lower(&mut id);
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
    headers.insert(NAME_NODE, node);
    headers.insert(NAME_POSITION, event.position.to_string());
    headers.insert(NAME_STREAM, event.stream_id.as_str());
    headers.insert(NAME_EVENT_TYPE, event.event_type.as_str());
    headers
}

/// The JSON body of an event's message.
pub(crate) fn body(node: &str, event: &RecordedEvent) -> Bytes {
    let raw: Option<&serde_json::value::RawValue> = std::str::from_utf8(&event.payload)
        .ok()
        .and_then(|text| serde_json::from_str(text).ok());
    let capacity = BODY_OVERHEAD
        + node.len()
        + event.stream_id.len()
        + event.event_type.len()
        + event.metadata.actor.len()
        + event.payload.len();
    let mut body = Vec::with_capacity(capacity);
    match raw {
        Some(data) => serde_json::to_writer(
            &mut body,
            &OutgoingMessage {
                node,
                position: event.position,
                stream_id: &event.stream_id,
                stream_version: event.stream_version,
                event_id: event.event_id,
                event_type: &event.event_type,
                schema_version: event.schema_version,
                recorded_at_micros: event.recorded_at_micros,
                correlation_id: event.metadata.correlation_id,
                causation_id: event.metadata.causation_id,
                actor: &event.metadata.actor,
                data,
            },
        ),
        None => serde_json::to_writer(&mut body, &EventMessage::from_recorded(node, event)),
    }
    .expect("an event message always serializes");
    Bytes::from(body)
}

/// `<prefix>.<node>.<site>.<category>.`: the part of the subjects of a stream's events
/// before their event type, as [`subject_for`] writes it.
pub(crate) fn subject_stem(prefix: &str, node: &str, route: &Route) -> String {
    let mut stem = subject_for(prefix, node, route, "");
    stem.pop(); // the `_` that stands for the empty event type
    stem
}

/// A stream's subject stem followed by the event type's token: the same subject as
/// [`subject_for`], in one allocation.
pub(crate) fn subject_with_stem(stem: &str, event_type: &str) -> String {
    let mut subject = String::with_capacity(stem.len() + event_type.len().max(1));
    subject.push_str(stem);
    if !event_type.is_empty() && event_type.bytes().all(is_token_byte) {
        subject.push_str(event_type);
    } else {
        subject.push_str(&token(event_type));
    }
    subject
}

fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

/// The log position a message carries in its headers.
pub fn position_of(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(HEADER_POSITION)
        .and_then(|value| value.as_str().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_decodes_to_the_event_with_its_json_data() {
        let event = RecordedEvent {
            position: 7,
            stream_id: "request-1".to_string(),
            stream_version: 2,
            event_id: Uuid::from_u128(9),
            event_type: "NoteAdded".to_string(),
            schema_version: 1,
            recorded_at_micros: 1_772_000_000_000_000,
            metadata: anju_eventlog::Metadata {
                actor: "cw".to_string(),
                ..Default::default()
            },
            payload: r#"{"type":"NoteAdded","text":"楼道灯"}"#.as_bytes().to_vec(),
        };
        let (headers, body) = encode("node-a", &event);
        let decoded = EventMessage::decode(&body).unwrap();
        assert_eq!(decoded, EventMessage::from_recorded("node-a", &event));
        assert_eq!(decoded.data["text"], "楼道灯");
        assert_eq!(position_of(&headers), Some(7));

        let not_json = RecordedEvent {
            payload: b"\xff plain".to_vec(),
            ..event
        };
        let decoded = EventMessage::decode(&encode("node-a", &not_json).1).unwrap();
        assert!(
            decoded.data.is_string(),
            "a payload that is not json travels as a string"
        );
    }

    #[test]
    fn subjects_are_safe_tokens() {
        let route = Route {
            site: "SC.LS 001".to_string(),
            category: "民政".to_string(),
        };
        assert_eq!(
            subject_for("anju.events", "node-1", &route, "RequestSubmitted"),
            "anju.events.node-1.SC_LS_001.__.RequestSubmitted"
        );
        assert_eq!(token(""), "_");
        for event_type in ["RequestSubmitted", "", "Odd.Type*", "类型"] {
            let stem = subject_stem("anju.events", "node-1", &route);
            assert_eq!(
                subject_with_stem(&stem, event_type),
                subject_for("anju.events", "node-1", &route, event_type),
                "{event_type:?}"
            );
        }
        assert_eq!(token("a*b>c"), "a_b_c");
    }
}
