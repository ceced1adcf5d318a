//! The on-disk frame of one event: length + CRC32C + body, and its encoder and decoder.
//!
//! Frame layout (all integers little-endian):
//! `len: u32` (bytes of body), `crc: u32` (CRC32C of the len bytes followed by the body), body.
//! Body: position u64, stream version u64, recorded-at micros i64, event id [16],
//! schema version u32, index of the event in its append u32, events remaining in the
//! same append u32, flags u8
//! (bit 0 correlation id present, bit 1 causation id present, bit 2 write start present),
//! the present ids [16] each, the write start u64 if present, stream id (u16 length +
//! UTF-8), event type (u16 + UTF-8), actor (u16 + UTF-8), payload (u32 length + bytes).
//!
//! The write start is the segment offset at which the write that carried this frame began:
//! the writer puts each group commit into its segment with one write followed by one
//! `fdatasync`, so the frames of one write share it, and recovery uses it to tell the
//! frames of the last, possibly unfinished, write from earlier, durable ones (ADR 007).
//! Frames written before it existed lack it (bit 2 clear) and still decode.
//!
//! A length of zero never starts a frame: it marks the end of the written part of a
//! (possibly preallocated, zero-filled) segment.

use crate::types::{Metadata, RecordedEvent};
use uuid::Uuid;

pub(crate) const FRAME_HEADER_LEN: usize = 8;
const FIXED_BODY_LEN: usize = 8 + 8 + 8 + 16 + 4 + 4 + 4 + 1;
/// No frame body is ever this large; a bigger length field is garbage.
pub(crate) const MAX_FRAME_BODY: usize = 256 << 20;
/// The most bytes the writer puts into a segment between two `fdatasync` calls: a group
/// commit larger than this is written as several writes, each synced. Recovery relies on
/// it: an unfinished write can have left bytes no further than this past its start.
pub const MAX_WRITE_BYTES: u64 = 64 << 20;
/// The smallest possible frame, header included.
pub(crate) const MIN_FRAME_LEN: u64 = (FRAME_HEADER_LEN + FIXED_BODY_LEN + 10) as u64;

/// The fields of one event to encode; borrowed so the writer need not copy payloads.
pub(crate) struct FrameFields<'a> {
    pub position: u64,
    pub stream_version: u64,
    pub recorded_at_micros: i64,
    pub event_id: Uuid,
    pub schema_version: u32,
    pub index_in_append: u32,
    pub remaining_in_append: u32,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    /// The segment offset where the write carrying this frame begins.
    pub write_start: Option<u64>,
    pub stream_id: &'a str,
    pub event_type: &'a str,
    pub actor: &'a str,
    pub payload: &'a [u8],
}

/// The size of the whole frame (header included) for these variable-length parts.
pub(crate) fn frame_len(
    stream_id: &str,
    event_type: &str,
    metadata: &Metadata,
    payload_len: usize,
) -> usize {
    FRAME_HEADER_LEN
        + FIXED_BODY_LEN
        + metadata.correlation_id.map_or(0, |_| 16)
        + metadata.causation_id.map_or(0, |_| 16)
        + 8
        + 2
        + stream_id.len()
        + 2
        + event_type.len()
        + 2
        + metadata.actor.len()
        + 4
        + payload_len
}

/// Appends one frame to `out`. The caller has checked that the string fields fit in u16.
pub(crate) fn encode_frame(out: &mut Vec<u8>, f: &FrameFields<'_>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    out.extend_from_slice(&f.position.to_le_bytes());
    out.extend_from_slice(&f.stream_version.to_le_bytes());
    out.extend_from_slice(&f.recorded_at_micros.to_le_bytes());
    out.extend_from_slice(f.event_id.as_bytes());
    out.extend_from_slice(&f.schema_version.to_le_bytes());
    out.extend_from_slice(&f.index_in_append.to_le_bytes());
    out.extend_from_slice(&f.remaining_in_append.to_le_bytes());
    let flags = u8::from(f.correlation_id.is_some())
        | (u8::from(f.causation_id.is_some()) << 1)
        | (u8::from(f.write_start.is_some()) << 2);
    out.push(flags);
    if let Some(id) = f.correlation_id {
        out.extend_from_slice(id.as_bytes());
    }
    if let Some(id) = f.causation_id {
        out.extend_from_slice(id.as_bytes());
    }
    if let Some(start) = f.write_start {
        out.extend_from_slice(&start.to_le_bytes());
    }
    for text in [f.stream_id, f.event_type, f.actor] {
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(&(f.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(f.payload);
    let body_len = (out.len() - start - FRAME_HEADER_LEN) as u32;
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&body_len.to_le_bytes()),
        &out[start + FRAME_HEADER_LEN..],
    );
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What the 8 header bytes of a frame say.
pub(crate) enum Header {
    /// Zero length: the end of the written part of the segment.
    End,
    Frame {
        body_len: usize,
        crc: u32,
    },
    /// A length no writer produces.
    Garbage,
}

pub(crate) fn decode_header(bytes: &[u8; FRAME_HEADER_LEN]) -> Header {
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if len == 0 {
        Header::End
    } else if !(FIXED_BODY_LEN + 10..=MAX_FRAME_BODY).contains(&len) {
        Header::Garbage
    } else {
        Header::Frame { body_len: len, crc }
    }
}

/// A decoded event plus how many events of the same append follow it.
pub(crate) struct DecodedFrame {
    pub event: RecordedEvent,
    pub index_in_append: u32,
    pub remaining_in_append: u32,
    /// Where the write that carried this frame began (`None` in frames of the first format).
    pub write_start: Option<u64>,
}

/// Checks the CRC and decodes the body; `None` if the frame is damaged.
pub(crate) fn decode_body(body: &[u8], crc: u32) -> Option<DecodedFrame> {
    let len_bytes = (body.len() as u32).to_le_bytes();
    if crc32c::crc32c_append(crc32c::crc32c(&len_bytes), body) != crc {
        return None;
    }
    let mut r = Reader { bytes: body, at: 0 };
    let position = r.u64()?;
    let stream_version = r.u64()?;
    let recorded_at_micros = r.u64()? as i64;
    let event_id = r.uuid()?;
    let schema_version = r.u32()?;
    let index_in_append = r.u32()?;
    let remaining_in_append = r.u32()?;
    let flags = r.take(1)?[0];
    let correlation_id = if flags & 1 != 0 {
        Some(r.uuid()?)
    } else {
        None
    };
    let causation_id = if flags & 2 != 0 {
        Some(r.uuid()?)
    } else {
        None
    };
    let write_start = if flags & 4 != 0 { Some(r.u64()?) } else { None };
    let stream_id = r.text()?;
    let event_type = r.text()?;
    let actor = r.text()?;
    let payload_len = r.u32()? as usize;
    let payload = r.take(payload_len)?.to_vec();
    if r.at != body.len() {
        return None;
    }
    Some(DecodedFrame {
        event: RecordedEvent {
            position,
            stream_id,
            stream_version,
            event_id,
            event_type,
            schema_version,
            recorded_at_micros,
            metadata: Metadata {
                correlation_id,
                causation_id,
                actor,
            },
            payload,
        },
        index_in_append,
        remaining_in_append,
        write_start,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn uuid(&mut self) -> Option<Uuid> {
        Some(Uuid::from_bytes(self.take(16)?.try_into().ok()?))
    }
    fn text(&mut self) -> Option<String> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(out: &mut Vec<u8>) {
        encode_frame(
            out,
            &FrameFields {
                position: 7,
                stream_version: 3,
                recorded_at_micros: 1_700_000_000_000_000,
                event_id: Uuid::now_v7(),
                schema_version: 2,
                index_in_append: 0,
                remaining_in_append: 1,
                correlation_id: Some(Uuid::now_v7()),
                causation_id: None,
                write_start: Some(4096),
                stream_id: "request-1",
                event_type: "RequestSubmitted",
                actor: "clerk-9",
                payload: b"{\"a\":1}",
            },
        );
    }

    #[test]
    fn a_frame_round_trips_and_its_length_is_predicted() {
        let mut out = Vec::new();
        sample(&mut out);
        let meta = Metadata {
            correlation_id: Some(Uuid::nil()),
            causation_id: None,
            actor: "clerk-9".into(),
        };
        assert_eq!(
            out.len(),
            frame_len("request-1", "RequestSubmitted", &meta, 7)
        );
        let Header::Frame { body_len, crc } = decode_header(out[..8].try_into().unwrap()) else {
            panic!("header should describe a frame")
        };
        let decoded = decode_body(&out[8..8 + body_len], crc).expect("frame should decode");
        assert_eq!(decoded.event.position, 7);
        assert_eq!(decoded.event.stream_id, "request-1");
        assert_eq!(decoded.event.metadata.actor, "clerk-9");
        assert_eq!(decoded.remaining_in_append, 1);
        assert_eq!(decoded.write_start, Some(4096));
        assert_eq!(decoded.event.payload, b"{\"a\":1}");
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let mut out = Vec::new();
        sample(&mut out);
        for byte in 8..out.len() {
            let mut damaged = out.clone();
            damaged[byte] ^= 0x10;
            let Header::Frame { body_len, crc } = decode_header(damaged[..8].try_into().unwrap())
            else {
                continue;
            };
            assert!(
                decode_body(&damaged[8..8 + body_len], crc).is_none(),
                "flip at {byte} went unnoticed"
            );
        }
    }
}
