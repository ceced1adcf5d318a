//! The in-memory stream index: for every stream, the position of each of its versions.
//!
//! Laid out for millions of short streams (one per request): the names live in an arena
//! of 1 MiB chunks, and each stream is one 16-byte slot in a hash table: where the name
//! is, and the position of version 0 or, for a stream with more versions, where the list
//! of its positions is. A `HashMap<Arc<str>, Vec<u64>>` took about 200 bytes per stream
//! of one event; this takes about 50 (the slot at the table's load factor, and the name,
//! which for a request stream is packed to 24 bytes).

use hashbrown::HashTable;
use std::hash::{BuildHasher, RandomState};

/// Bytes per arena chunk; a name never spans two chunks.
const CHUNK: usize = 1 << 20;
const OFFSET_BITS: u32 = 20;
const LEN_BITS: u32 = 16;

/// Set in a slot's `name` when `first` is an index into `StreamIndex::lists` (the
/// stream has more than one version) rather than the position of version 0.
const MANY: u64 = 1 << 63;

#[derive(Clone)]
struct Slot {
    /// Arena chunk (high bits), offset in it (20 bits) and length (16 bits) of the name,
    /// and the `MANY` flag.
    name: u64,
    /// The position of version 0, or with `MANY` the index of the stream's positions in
    /// `StreamIndex::lists`.
    first: u64,
}

impl Slot {
    fn name(&self) -> u64 {
        self.name & !MANY
    }

    fn positions<'a>(&'a self, lists: &'a [Vec<u64>]) -> &'a [u64] {
        if self.name & MANY == 0 {
            std::slice::from_ref(&self.first)
        } else {
            &lists[self.first as usize]
        }
    }
}

#[derive(Clone, Default)]
struct Names {
    chunks: Vec<Vec<u8>>,
}

impl Names {
    fn get(&self, name: u64) -> &[u8] {
        let chunk = (name >> (OFFSET_BITS + LEN_BITS)) as usize;
        let offset = ((name >> LEN_BITS) & ((1 << OFFSET_BITS) - 1)) as usize;
        let len = (name & ((1 << LEN_BITS) - 1)) as usize;
        &self.chunks[chunk][offset..offset + len]
    }

    fn add(&mut self, bytes: &[u8]) -> u64 {
        assert!(
            bytes.len() < (1 << LEN_BITS),
            "stream ids are checked to be short"
        );
        let fits = self
            .chunks
            .last()
            .is_some_and(|chunk| chunk.len() + bytes.len() <= CHUNK);
        if !fits {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let index = self.chunks.len() - 1;
        assert!(
            index < 1 << 27,
            "the stream index holds at most 2^27 MiB of names"
        );
        let chunk = &mut self.chunks[index];
        let offset = chunk.len();
        chunk.extend_from_slice(bytes);
        ((index as u64) << (OFFSET_BITS + LEN_BITS))
            | ((offset as u64) << LEN_BITS)
            | bytes.len() as u64
    }
}

/// How a name is kept and hashed. `<prefix>-<uuid>` with the uuid in lowercase hyphenated
/// form (every request's stream, `request-…`) is 0xFF, the prefix and the uuid's 16 bytes:
/// 24 bytes for a request stream instead of 44. Any other name is its own bytes. UTF-8
/// never contains 0xFF, and the uuid is a fixed-length tail, so no two names share a key.
struct Key<'a> {
    plain: &'a [u8],
    packed: [u8; 64],
    packed_len: usize,
}

impl<'a> Key<'a> {
    const MAX_PREFIX: usize = 64 - 17;

    fn of(stream: &'a str) -> Key<'a> {
        let bytes = stream.as_bytes();
        let mut key = Key {
            plain: bytes,
            packed: [0; 64],
            packed_len: 0,
        };
        if bytes.len() < 38 || bytes.len() > 37 + Self::MAX_PREFIX {
            return key;
        }
        let (prefix, rest) = bytes.split_at(bytes.len() - 37);
        if rest[0] != b'-' {
            return key;
        }
        // Only the canonical form packs, so that unpacking would give the name back.
        let Ok(uuid) = uuid::Uuid::try_parse_ascii(&rest[1..]) else {
            return key;
        };
        if uuid.hyphenated().encode_lower(&mut [0u8; 36]).as_bytes() != &rest[1..] {
            return key;
        }
        key.packed[0] = 0xFF;
        key.packed[1..1 + prefix.len()].copy_from_slice(prefix);
        key.packed[1 + prefix.len()..17 + prefix.len()].copy_from_slice(uuid.as_bytes());
        key.packed_len = 17 + prefix.len();
        key
    }

    fn bytes(&self) -> &[u8] {
        if self.packed_len > 0 {
            &self.packed[..self.packed_len]
        } else {
            self.plain
        }
    }
}

/// Every stream's positions by version; versions are added in order from 0.
#[derive(Clone, Default)]
pub(crate) struct StreamIndex {
    names: Names,
    table: HashTable<Slot>,
    /// The positions of every version of the streams that have more than one.
    lists: Vec<Vec<u64>>,
    state: RandomState,
}

impl StreamIndex {
    fn find(&self, stream: &str) -> Option<&Slot> {
        let key = Key::of(stream);
        let key = key.bytes();
        let hash = self.state.hash_one(key);
        let names = &self.names;
        self.table.find(hash, |slot| names.get(slot.name()) == key)
    }

    /// How many streams there are.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// The stream's current version, `None` if it has no events.
    pub fn version(&self, stream: &str) -> Option<u64> {
        self.find(stream)
            .map(|slot| slot.positions(&self.lists).len() as u64 - 1)
    }

    /// The position of one version of the stream.
    pub fn position(&self, stream: &str, version: u64) -> Option<u64> {
        let positions = self.find(stream)?.positions(&self.lists);
        positions.get(usize::try_from(version).ok()?).copied()
    }

    /// Up to `max` (version, position) pairs from `from_version`, forwards or backwards
    /// (backwards from `u64::MAX` starts at the newest).
    pub fn positions(
        &self,
        stream: &str,
        from_version: u64,
        forwards: bool,
        max: usize,
    ) -> Vec<(u64, u64)> {
        let Some(slot) = self.find(stream) else {
            return Vec::new();
        };
        let all = slot
            .positions(&self.lists)
            .iter()
            .copied()
            .enumerate()
            .map(|(version, position)| (version as u64, position));
        if forwards {
            all.skip_while(|(version, _)| *version < from_version)
                .take(max)
                .collect()
        } else {
            let mut found: Vec<(u64, u64)> = all
                .take_while(|(version, _)| *version <= from_version)
                .collect();
            found.reverse();
            found.truncate(max);
            found
        }
    }

    /// Records `position` as `version` of `stream`.
    pub fn push(&mut self, stream: &str, version: u64, position: u64) {
        let StreamIndex {
            names,
            table,
            lists,
            state,
        } = self;
        let key = Key::of(stream);
        let key = key.bytes();
        let hash = state.hash_one(key);
        match table.find_mut(hash, |slot| names.get(slot.name()) == key) {
            Some(slot) => {
                if slot.name & MANY == 0 {
                    debug_assert_eq!(version, 1);
                    lists.push(vec![slot.first]);
                    slot.first = (lists.len() - 1) as u64;
                    slot.name |= MANY;
                }
                let positions = &mut lists[slot.first as usize];
                debug_assert_eq!(positions.len() as u64, version);
                positions.push(position);
            }
            None => {
                debug_assert_eq!(version, 0);
                let name = names.add(key);
                let names = &*names;
                table.insert_unique(
                    hash,
                    Slot {
                        name,
                        first: position,
                    },
                    |slot| state.hash_one(names.get(slot.name())),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Request-like names are kept packed; names that only look like them (another case,
    /// a bad character, no dash) stay plain, and none of them meet.
    #[test]
    fn uuid_names_are_packed_and_never_collide_with_plain_ones() {
        let id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let packed = Key::of(&format!("request-{id}")).bytes().to_vec();
        assert_eq!(packed.len(), 24);
        assert_eq!(packed[0], 0xFF);
        assert_eq!(&packed[1..8], b"request");
        assert_eq!(packed[8..], *uuid::Uuid::parse_str(id).unwrap().as_bytes());
        let lookalikes = [
            format!("request-{}", id.to_uppercase()),
            format!("request-{}", id.replace('-', "")),
            format!("request_{id}"),
            format!("request-{}g", &id[..35]),
            id.to_string(),
            format!("-{id}"),
        ];
        let mut index = StreamIndex::default();
        index.push(&format!("request-{id}"), 0, 7);
        index.push(&format!("request-{id}"), 1, 9);
        index.push(&format!("other-{id}"), 0, 8);
        for (n, name) in lookalikes.iter().enumerate() {
            let key = Key::of(name);
            let plain = name.starts_with('-') || key.bytes() == name.as_bytes();
            assert!(plain, "{name} should stay plain");
            index.push(name, 0, 100 + n as u64);
        }
        assert_eq!(index.len(), 2 + lookalikes.len());
        assert_eq!(index.version(&format!("request-{id}")), Some(1));
        assert_eq!(index.position(&format!("other-{id}"), 0), Some(8));
        for (n, name) in lookalikes.iter().enumerate() {
            assert_eq!(index.position(name, 0), Some(100 + n as u64), "{name}");
        }
    }

    #[test]
    fn answers_like_a_map_of_vectors_across_arena_chunks() {
        let mut index = StreamIndex::default();
        let mut model: HashMap<String, Vec<u64>> = HashMap::new();
        // Enough names of 200 bytes to fill several 1 MiB chunks.
        for position in 0..40_000u64 {
            let stream = format!("{:0>200}", position % 15_000);
            let versions = model.entry(stream.clone()).or_default();
            index.push(&stream, versions.len() as u64, position);
            versions.push(position);
        }
        assert_eq!(index.len(), model.len());
        assert!(index.names.chunks.len() >= 3);
        for (stream, positions) in &model {
            assert_eq!(index.version(stream), Some(positions.len() as u64 - 1));
            for (version, position) in positions.iter().enumerate() {
                assert_eq!(index.position(stream, version as u64), Some(*position));
            }
            assert_eq!(index.position(stream, positions.len() as u64), None);
            let forwards: Vec<u64> = index
                .positions(stream, 1, true, 10)
                .into_iter()
                .map(|(_, p)| p)
                .collect();
            assert_eq!(
                forwards,
                positions.iter().skip(1).copied().collect::<Vec<_>>()
            );
            let backwards = index.positions(stream, u64::MAX, false, 2);
            let want: Vec<(u64, u64)> = positions
                .iter()
                .enumerate()
                .rev()
                .take(2)
                .map(|(v, p)| (v as u64, *p))
                .collect();
            assert_eq!(backwards, want);
        }
        assert_eq!(index.version("no such stream"), None);
        assert!(index.positions("no such stream", 0, true, 5).is_empty());
        // A clone answers the same.
        let copy = index.clone();
        assert_eq!(
            copy.version(&format!("{:0>200}", 7)),
            index.version(&format!("{:0>200}", 7))
        );
    }
}
