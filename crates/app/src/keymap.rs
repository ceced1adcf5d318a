//! The key store's index of live keys in memory: for each live key, a 4-byte tag of the
//! resident id and the number of its record in `keys.log`, packed in one `u64` in a hash
//! table. The ids and keys themselves stay in the file and are read (`pread`, from the
//! page cache) when a tag matches; the record's id confirms the match.
//!
//! At 1,000,000 residents this is about 19 MB (9 bytes a slot at the table's load
//! factor) against 60 MB for the ids and keys in memory (48 bytes each in a dense vector
//! behind a table of 4-byte indexes), which was a sixth of the server's memory after a
//! million submissions (docs/benchmarks.md).

use crate::keys::{DataKey, ResidentKeyId};
use hashbrown::HashTable;

/// A record as the index needs it: the id it holds and its key.
pub(crate) type Record = (ResidentKeyId, DataKey);

/// The tag of a resident id. Ids are HMACs with the server secret, so their bytes are
/// uniform and not choosable by a caller.
fn tag(id: &ResidentKeyId) -> u32 {
    u32::from_le_bytes([id.0[0], id.0[1], id.0[2], id.0[3]])
}

/// The table's hash of a tag: a bijection that spreads the tag over all 64 bits (the
/// table takes its control bits from the top and its bucket from the bottom).
fn hash(tag: u32) -> u64 {
    u64::from(tag).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A slot: the tag in the high half, the record number in the low one.
fn slot(tag: u32, record: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(record)
}

fn slot_tag(slot: u64) -> u32 {
    (slot >> 32) as u32
}

fn slot_record(slot: u64) -> u32 {
    slot as u32
}

#[derive(Clone, Default)]
pub(crate) struct KeyMap {
    table: HashTable<u64>,
}

impl KeyMap {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Finds the slot of `id`, reading records with `read` to confirm tag matches; the
    /// first read error is the answer.
    fn find<E>(
        &self,
        id: &ResidentKeyId,
        read: &mut impl FnMut(u32) -> Result<Record, E>,
    ) -> Result<Option<(u32, DataKey)>, E> {
        let tag = tag(id);
        let mut failure = None;
        let mut found = None;
        self.table.find(hash(tag), |&slot| {
            if failure.is_some() || slot_tag(slot) != tag {
                return false;
            }
            match read(slot_record(slot)) {
                Ok((stored, key)) if stored == *id => {
                    found = Some((slot_record(slot), key));
                    true
                }
                Ok(_) => false,
                Err(e) => {
                    failure = Some(e);
                    true
                }
            }
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(found),
        }
    }

    /// The key of `id`, if it is live.
    pub fn get<E>(
        &self,
        id: &ResidentKeyId,
        mut read: impl FnMut(u32) -> Result<Record, E>,
    ) -> Result<Option<DataKey>, E> {
        Ok(self.find(id, &mut read)?.map(|(_, key)| key))
    }

    /// Makes record `record` (which holds `id`) the live one for `id`.
    pub fn insert<E>(
        &mut self,
        id: &ResidentKeyId,
        record: u32,
        mut read: impl FnMut(u32) -> Result<Record, E>,
    ) -> Result<(), E> {
        let new = slot(tag(id), record);
        if let Some((old, _)) = self.find(id, &mut read)? {
            let old = slot(tag(id), old);
            *self
                .table
                .find_mut(hash(tag(id)), |&s| s == old)
                .expect("the slot was just found") = new;
            return Ok(());
        }
        self.table
            .insert_unique(hash(tag(id)), new, |&s| hash(slot_tag(s)));
        Ok(())
    }

    /// Forgets the key of `id`; true if there was one.
    pub fn remove<E>(
        &mut self,
        id: &ResidentKeyId,
        mut read: impl FnMut(u32) -> Result<Record, E>,
    ) -> Result<bool, E> {
        let Some((record, _)) = self.find(id, &mut read)? else {
            return Ok(false);
        };
        let gone = slot(tag(id), record);
        if let Ok(entry) = self.table.find_entry(hash(tag(id)), |&s| s == gone) {
            entry.remove();
        }
        Ok(true)
    }

    /// The record numbers of the live keys, in no particular order.
    pub fn records(&self) -> impl Iterator<Item = u32> + '_ {
        self.table.iter().map(|&slot| slot_record(slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::convert::Infallible;

    #[test]
    fn answers_like_a_hash_map_through_inserts_replacements_and_removals() {
        let mut map = KeyMap::default();
        let mut model: HashMap<ResidentKeyId, [u8; 32]> = HashMap::new();
        // The "file": every record ever written, as the key store appends them.
        let mut file: Vec<Record> = Vec::new();
        let id = |n: u32| {
            let mut bytes = [0u8; 16];
            // Many ids share their tag (the first four bytes) and differ after it.
            bytes[..4].copy_from_slice(&(n % 700).to_le_bytes());
            bytes[12..].copy_from_slice(&n.to_le_bytes());
            ResidentKeyId(bytes)
        };
        for step in 0u32..20_000 {
            let n = step.wrapping_mul(2_654_435_761) % 3_000;
            let records = file.clone();
            let read = |r: u32| Ok::<_, Infallible>(records[r as usize]);
            if step % 3 == 2 {
                let removed = map.remove(&id(n), read).unwrap();
                assert_eq!(removed, model.remove(&id(n)).is_some());
            } else {
                let key = [(step % 251) as u8; 32];
                file.push((id(n), DataKey(key)));
                let records = file.clone();
                let record = u32::try_from(records.len() - 1).unwrap();
                map.insert(&id(n), record, |r| Ok::<_, Infallible>(records[r as usize]))
                    .unwrap();
                model.insert(id(n), key);
            }
            if step % 997 == 0 {
                assert_eq!(map.len(), model.len());
                for m in 0..3_000 {
                    let got = map
                        .get(&id(m), |r| Ok::<_, Infallible>(file[r as usize]))
                        .unwrap();
                    assert_eq!(got.map(|k| k.0), model.get(&id(m)).copied());
                }
            }
        }
        assert_eq!(map.len(), model.len());
        for record in map.records() {
            let (id, key) = file[record as usize];
            assert_eq!(model.get(&id), Some(&key.0));
        }
    }

    #[test]
    fn a_read_error_is_the_answer_not_a_miss() {
        let mut map = KeyMap::default();
        let id = ResidentKeyId([7; 16]);
        map.insert(&id, 0, |_| Ok::<_, &str>((id, DataKey([1; 32]))))
            .unwrap();
        assert_eq!(
            map.get(&id, |_| Err::<Record, _>("disk gone")).err(),
            Some("disk gone")
        );
        let other = ResidentKeyId([8; 16]);
        assert_eq!(
            map.get(&other, |_| Err::<Record, _>("disk gone"))
                .map(|k| k.is_some()),
            Ok(false),
            "no read for an id whose tag matches nothing"
        );
    }
}
