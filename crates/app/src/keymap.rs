//! The key store's map of live keys in memory: the (id, key) pairs in one dense vector,
//! found through a hash table of 4-byte indexes. A `HashMap<ResidentKeyId, DataKey>`
//! keeps its 48-byte entries at the table's load factor (about 100 bytes per key just
//! after it doubles); this keeps 48 bytes per key plus about 10 for the table.

use crate::keys::{DataKey, ResidentKeyId};
use hashbrown::HashTable;

/// Resident key ids are HMACs with the server secret, so their first eight bytes are
/// already uniform and not choosable by a caller: they serve as the hash.
fn hash(id: &ResidentKeyId) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&id.0[..8]);
    u64::from_le_bytes(first)
}

#[derive(Clone, Default)]
pub(crate) struct KeyMap {
    entries: Vec<(ResidentKeyId, DataKey)>,
    table: HashTable<u32>,
}

impl KeyMap {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&self, id: &ResidentKeyId) -> Option<DataKey> {
        let entries = &self.entries;
        self.table
            .find(hash(id), |&i| entries[i as usize].0 == *id)
            .map(|&i| entries[i as usize].1)
    }

    pub fn insert(&mut self, id: ResidentKeyId, key: DataKey) {
        let KeyMap { entries, table } = self;
        if let Some(&mut i) = table.find_mut(hash(&id), |&i| entries[i as usize].0 == id) {
            entries[i as usize].1 = key;
            return;
        }
        let index = u32::try_from(entries.len()).expect("fewer than 4 billion residents");
        entries.push((id, key));
        table.insert_unique(hash(&id), index, |&i| hash(&entries[i as usize].0));
    }

    /// Forgets the key; true if there was one.
    pub fn remove(&mut self, id: &ResidentKeyId) -> bool {
        let KeyMap { entries, table } = self;
        let Ok(found) = table.find_entry(hash(id), |&i| entries[i as usize].0 == *id) else {
            return false;
        };
        let (index, _) = found.remove();
        let index = index as usize;
        let last = entries.len() - 1;
        if index != last {
            // The last entry moves into the hole: its index in the table changes.
            let moved = entries[last].0;
            let slot = table
                .find_mut(hash(&moved), |&i| i as usize == last)
                .expect("every entry has its index in the table");
            *slot = index as u32;
        }
        entries.swap_remove(index);
        true
    }

    pub fn iter(&self) -> impl Iterator<Item = &(ResidentKeyId, DataKey)> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn answers_like_a_hash_map_through_inserts_replacements_and_removals() {
        let mut map = KeyMap::default();
        let mut model: HashMap<ResidentKeyId, [u8; 32]> = HashMap::new();
        let id = |n: u32| {
            let mut bytes = [0u8; 16];
            // Spread over the hash bytes and the rest, with some sharing the first eight.
            bytes[..4].copy_from_slice(&(n % 700).to_le_bytes());
            bytes[12..].copy_from_slice(&n.to_le_bytes());
            ResidentKeyId(bytes)
        };
        for step in 0u32..20_000 {
            let n = step.wrapping_mul(2_654_435_761) % 3_000;
            if step % 3 == 2 {
                assert_eq!(map.remove(&id(n)), model.remove(&id(n)).is_some());
            } else {
                let key = [(step % 251) as u8; 32];
                map.insert(id(n), DataKey(key));
                model.insert(id(n), key);
            }
            if step % 997 == 0 {
                assert_eq!(map.len(), model.len());
                for m in 0..3_000 {
                    assert_eq!(map.get(&id(m)).map(|k| k.0), model.get(&id(m)).copied());
                }
            }
        }
        assert_eq!(map.len(), model.len());
        for (id, key) in map.iter() {
            assert_eq!(model.get(id), Some(&key.0));
        }
        let copy = map.clone();
        assert_eq!(copy.len(), map.len());
    }
}
