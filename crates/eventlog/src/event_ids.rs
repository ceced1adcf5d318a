//! The committed event ids, for answering a re-sent append with its original result and
//! refusing ids that are already stored.
//!
//! Each id is kept as a 32-bit fingerprint (from a keyed hash of the id) and its
//! position: 12 bytes in a hash table, where a `HashMap<Uuid, u64>` holds 24. A lookup
//! returns the positions stored under the id's fingerprint; the caller reads those events
//! to see which, if any, is the id's own. With a million ids another id shares a given
//! fingerprint one time in about four thousand, so nearly every lookup of a new id reads
//! nothing, and a re-sent append reads its own events once.

use hashbrown::HashTable;
use std::hash::{BuildHasher, RandomState};
use uuid::Uuid;

#[derive(Clone, Copy)]
struct Entry {
    fingerprint: u32,
    /// The position, high and low halves (two u32s keep the entry at 12 bytes).
    position: [u32; 2],
}

impl Entry {
    fn position(&self) -> u64 {
        u64::from(self.position[0]) << 32 | u64::from(self.position[1])
    }
}

/// The table's hash of a fingerprint. The table must rehash entries from what they hold,
/// so its hash is a function of the fingerprint alone, spread to 64 bits (the low bits
/// pick the bucket, the high ones the tag).
fn spread(fingerprint: u32) -> u64 {
    u64::from(fingerprint).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[derive(Default)]
pub(crate) struct EventIds {
    table: HashTable<Entry>,
    state: RandomState,
}

impl EventIds {
    fn fingerprint(&self, id: &Uuid) -> u32 {
        (self.state.hash_one(id.as_bytes()) >> 32) as u32
    }

    /// Records a committed id (the caller has checked it is new).
    pub fn insert(&mut self, id: &Uuid, position: u64) {
        let fingerprint = self.fingerprint(id);
        self.table.insert_unique(
            spread(fingerprint),
            Entry {
                fingerprint,
                position: [(position >> 32) as u32, position as u32],
            },
            |entry| spread(entry.fingerprint),
        );
    }

    /// The positions stored under `id`'s fingerprint, in no order: the id's own position
    /// if it is committed, and rarely those of other ids.
    pub fn candidates(&self, id: &Uuid) -> impl Iterator<Item = u64> + '_ {
        let fingerprint = self.fingerprint(id);
        self.table
            .iter_hash(spread(fingerprint))
            .filter(move |entry| entry.fingerprint == fingerprint)
            .map(Entry::position)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_finds_its_position_among_few_candidates() {
        let mut ids = EventIds::default();
        let stored: Vec<Uuid> = (0..200_000u128)
            .map(|n| Uuid::from_u128(n.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)))
            .collect();
        for (position, id) in stored.iter().enumerate() {
            ids.insert(id, position as u64 + (1 << 33));
        }
        assert_eq!(ids.len(), stored.len());
        let mut extra = 0;
        for (position, id) in stored.iter().enumerate() {
            let found: Vec<u64> = ids.candidates(id).collect();
            assert!(found.contains(&(position as u64 + (1 << 33))));
            extra += found.len() - 1;
        }
        // Other ids under the same fingerprint: about n^2 / 2^32, i.e. a handful.
        assert!(extra < 100, "{extra} shared fingerprints");
        let absent: usize = (0..10_000u128)
            .map(|n| ids.candidates(&Uuid::from_u128(n + (1 << 100))).count())
            .sum();
        assert!(absent < 10, "{absent} candidates for ids never stored");
    }

    /// A segment in which a later event repeats an earlier one's id (which the writer
    /// never lets happen) is refused on open, naming both positions.
    #[tokio::test]
    async fn a_log_that_repeats_an_event_id_is_refused_on_open() {
        use crate::codec::{encode_frame, frame_len, FrameFields};
        use crate::segment::{segment_path, SEGMENT_HEADER_LEN};
        use crate::{EventLog, ExpectedVersion, LogError, NewEvent};
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let first = NewEvent::new("Noted", b"{}".to_vec());
        let second = NewEvent::new("Noted", b"{}".to_vec());
        let log = EventLog::open(dir.path(), Default::default())
            .await
            .unwrap();
        let stream = "notes-1";
        log.append(stream, ExpectedVersion::NoStream, vec![first.clone()])
            .await
            .unwrap();
        log.append(stream, ExpectedVersion::Exact(0), vec![second.clone()])
            .await
            .unwrap();
        let recorded = log
            .read_stream(stream, 1, crate::Direction::Forwards, 1)
            .await
            .unwrap()
            .remove(0);
        log.close().await.unwrap();
        // Rewrite the second frame with the first event's id (same length, valid CRC).
        let offset = SEGMENT_HEADER_LEN
            + frame_len(stream, "Noted", &first.metadata, first.payload.len()) as u64;
        let mut forged = Vec::new();
        encode_frame(
            &mut forged,
            &FrameFields {
                position: 1,
                stream_version: 1,
                recorded_at_micros: recorded.recorded_at_micros,
                event_id: first.event_id,
                schema_version: 1,
                index_in_append: 0,
                remaining_in_append: 0,
                correlation_id: None,
                causation_id: None,
                write_start: Some(offset),
                stream_id: stream,
                event_type: "Noted",
                actor: "",
                payload: b"{}",
            },
        );
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(segment_path(&dir.path().join("segments"), 0))
            .unwrap();
        file.write_all_at(&forged, offset).unwrap();
        file.sync_all().unwrap();
        drop(file);
        match EventLog::open(dir.path(), Default::default()).await {
            Err(LogError::Corrupt(message)) => {
                assert_eq!(message, "position 1 repeats the event id of position 0")
            }
            other => panic!("expected a corrupt log, got {:?}", other.map(|_| ())),
        }
    }
}
