//! Where the parts of the read models live. Two backends behind one `Part` API:
//!
//! - **Memory** (what `anju-server` runs on): each part is an ordered map in memory,
//!   persisted as a whole by `snapshot` files (see `snapshot.rs`) and otherwise rebuilt
//!   from the log. Under the end-to-end load sled's per-insert cost (leaf copy-on-write,
//!   page-cache misses, its IO threads) was about 100 µs of CPU per submission; the same
//!   fold in memory costs about 7 µs (docs/benchmarks.md).
//! - **Sled**: one sled tree, `proj_models`, split into parts by a one-byte key prefix,
//!   so a chunk is one atomic `apply_batch` (sled's multi-tree transactions copied every
//!   write into a write set first). anju-insight keeps its read models here: it has no
//!   local log to rebuild them from.

use sled::{IVec, Tree};
use std::collections::BTreeSet;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, RwLock};

type Item = sled::Result<(IVec, IVec)>;
/// A forward range over one part, whatever the bounds' types.
pub(crate) type PartIter = Box<dyn Iterator<Item = Item> + Send>;

/// One entry of a [`PackedMap`]: the key's length (u16, little-endian), the key and the
/// value in one allocation, ordered by the key alone.
pub(crate) struct Entry(Box<[u8]>);

impl Entry {
    pub fn new(key: &[u8], value: &[u8]) -> Entry {
        let len = u16::try_from(key.len()).expect("read-model keys are shorter than 64 KiB");
        let mut bytes = Vec::with_capacity(2 + key.len() + value.len());
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(value);
        Entry(bytes.into_boxed_slice())
    }

    fn split(&self) -> (&[u8], &[u8]) {
        let len = u16::from_le_bytes([self.0[0], self.0[1]]) as usize;
        self.0[2..].split_at(len)
    }

    fn key(&self) -> &[u8] {
        self.split().0
    }
}

impl std::borrow::Borrow<[u8]> for Entry {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Entry) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Entry) -> std::cmp::Ordering {
        self.key().cmp(other.key())
    }
}

/// An ordered byte map that keeps each key and value in one allocation behind a 16-byte
/// slot: a third of the memory of a `BTreeMap<IVec, IVec>`, whose 48-byte slots hold
/// keys and values of more than 22 bytes in two more reference-counted allocations.
#[derive(Default)]
pub(crate) struct PackedMap {
    entries: BTreeSet<Entry>,
}

impl PackedMap {
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries.get(key).map(|entry| entry.split().1)
    }

    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.entries.contains(key)
    }

    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        self.entries.replace(Entry::new(key, value));
    }

    pub fn remove(&mut self, key: &[u8]) {
        self.entries.remove(key);
    }

    /// Applies one write of a chunk, its entry built when the write was collected.
    pub fn apply(&mut self, write: MemWrite) {
        match write {
            MemWrite::Put(entry) => {
                self.entries.replace(entry);
            }
            MemWrite::Remove(key) => self.remove(&key),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries.iter().map(Entry::split)
    }

    /// `BTreeSet::range` panics on bounds that select nothing in some orders; callers
    /// check with [`range_is_empty`] first.
    pub fn range<'a>(
        &'a self,
        bounds: (Bound<&[u8]>, Bound<&[u8]>),
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        self.entries.range::<[u8], _>(bounds).map(Entry::split)
    }
}

/// One part's keys and values in memory.
#[derive(Default)]
pub(crate) struct MemPart {
    pub map: RwLock<PackedMap>,
}

impl MemPart {
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, PackedMap> {
        self.map
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn write(&self) -> std::sync::RwLockWriteGuard<'_, PackedMap> {
        self.map
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One part of the read models: the keys under one prefix byte. Keys given to and
/// returned from it are without the prefix.
#[derive(Clone)]
pub(crate) enum Part {
    Sled { tree: Tree, prefix: u8 },
    Memory { part: Arc<MemPart>, prefix: u8 },
}

fn strip((key, value): (IVec, IVec)) -> (IVec, IVec) {
    (IVec::from(&key[1..]), value)
}

fn owned(bound: Bound<&Vec<u8>>) -> Bound<Vec<u8>> {
    match bound {
        Bound::Included(k) => Bound::Included(k.clone()),
        Bound::Excluded(k) => Bound::Excluded(k.clone()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The first key after every key that starts with `prefix` (`None`: no such key).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl Part {
    pub fn sled(tree: Tree, prefix: u8) -> Part {
        Part::Sled { tree, prefix }
    }

    pub fn memory(part: Arc<MemPart>, prefix: u8) -> Part {
        Part::Memory { part, prefix }
    }

    pub fn prefix(&self) -> u8 {
        match self {
            Part::Sled { prefix, .. } | Part::Memory { prefix, .. } => *prefix,
        }
    }

    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(key.len() + 1);
        out.push(self.prefix());
        out.extend_from_slice(key);
        out
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>> {
        match self {
            Part::Sled { tree, .. } => tree.get(self.key(key.as_ref())),
            Part::Memory { part, .. } => Ok(part.read().get(key.as_ref()).map(IVec::from)),
        }
    }

    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> sled::Result<bool> {
        match self {
            Part::Sled { tree, .. } => tree.contains_key(self.key(key.as_ref())),
            Part::Memory { part, .. } => Ok(part.read().contains_key(key.as_ref())),
        }
    }

    /// Writes one key outside a chunk (version stamps and lone checkpoints).
    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl Into<IVec>) -> sled::Result<()> {
        match self {
            Part::Sled { tree, .. } => {
                tree.insert(self.key(key.as_ref()), value)?;
            }
            Part::Memory { part, .. } => {
                part.write().insert(key.as_ref(), &value.into());
            }
        }
        Ok(())
    }

    pub fn iter(&self) -> PartIter {
        self.range::<Vec<u8>, _>(..)
    }

    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> PartIter {
        let start = prefix.as_ref().to_vec();
        match prefix_end(&start) {
            Some(end) => self.range(start..end),
            None => self.range(start..),
        }
    }

    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> PartIter {
        let start = match range.start_bound() {
            Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        match self {
            Part::Sled { tree, prefix } => {
                let start = match &start {
                    Bound::Unbounded => Bound::Included(vec![*prefix]),
                    other => owned(other.as_ref()).map(|k| self.key(&k)),
                };
                let end = match &end {
                    // Prefixes are below 0xFF, so the next prefix byte ends this part.
                    Bound::Unbounded => Bound::Excluded(vec![*prefix + 1]),
                    other => owned(other.as_ref()).map(|k| self.key(&k)),
                };
                Box::new(
                    tree.range::<Vec<u8>, _>((start, end))
                        .map(|item| item.map(strip)),
                )
            }
            Part::Memory { part, .. } => Box::new(MemRange {
                part: part.clone(),
                from: start,
                to: end,
                buffer: Vec::new().into_iter(),
                done: false,
            }),
        }
    }

    /// Counts the keys (a scan for sled, as sled's own `len` is).
    pub fn len(&self) -> usize {
        match self {
            Part::Sled { tree, prefix } => tree.scan_prefix([*prefix]).count(),
            Part::Memory { part, .. } => part.read().len(),
        }
    }

    /// Adds a write of this part to a chunk's batch.
    pub fn batch_insert(&self, batch: &mut ModelBatch, key: &[u8], value: impl AsRef<[u8]>) {
        match self {
            Part::Sled { .. } => batch.sled.insert(self.key(key), value.as_ref()),
            Part::Memory { prefix, .. } => batch
                .memory
                .push((*prefix, MemWrite::Put(Entry::new(key, value.as_ref())))),
        }
    }

    pub fn batch_remove(&self, batch: &mut ModelBatch, key: &[u8]) {
        match self {
            Part::Sled { .. } => batch.sled.remove(self.key(key)),
            Part::Memory { prefix, .. } => {
                batch.memory.push((*prefix, MemWrite::Remove(key.to_vec())))
            }
        }
    }
}

/// A range over a memory part that takes the read lock for one slice of entries at a
/// time, so a long scan never holds writers off for long.
struct MemRange {
    part: Arc<MemPart>,
    from: Bound<Vec<u8>>,
    to: Bound<Vec<u8>>,
    buffer: std::vec::IntoIter<(IVec, IVec)>,
    done: bool,
}

const MEM_RANGE_SLICE: usize = 128;

/// Whether the bounds select nothing (`BTreeMap::range` panics on some of these).
fn range_is_empty(from: &Bound<Vec<u8>>, to: &Bound<Vec<u8>>) -> bool {
    match (from, to) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
            a >= b
        }
        _ => false,
    }
}

impl Iterator for MemRange {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        loop {
            if let Some(entry) = self.buffer.next() {
                return Some(Ok(entry));
            }
            if self.done {
                return None;
            }
            let empty = range_is_empty(&self.from, &self.to);
            if empty {
                self.done = true;
                return None;
            }
            let slice: Vec<(IVec, IVec)> = {
                let map = self.part.read();
                let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (
                    self.from.as_ref().map(|k| k.as_slice()),
                    self.to.as_ref().map(|k| k.as_slice()),
                );
                map.range(bounds)
                    .take(MEM_RANGE_SLICE)
                    .map(|(k, v)| (IVec::from(k), IVec::from(v)))
                    .collect()
            };
            if slice.len() < MEM_RANGE_SLICE {
                self.done = true;
            }
            if let Some((last, _)) = slice.last() {
                self.from = Bound::Excluded(last.to_vec());
            }
            self.buffer = slice.into_iter();
        }
    }
}

/// One write to a memory part: the entry is packed when the write is collected, so
/// applying it moves it into the map without another copy.
pub(crate) enum MemWrite {
    Put(Entry),
    Remove(Vec<u8>),
}

/// Every write of one chunk, for either backend.
#[derive(Default)]
pub(crate) struct ModelBatch {
    pub sled: sled::Batch,
    /// (part prefix, write), applied in order.
    pub memory: Vec<(u8, MemWrite)>,
}

/// Writes to one part collected during a chunk, applied in order into the chunk's batch.
#[derive(Default)]
pub(crate) struct PartBatch {
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl PartBatch {
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.writes
            .push((key.as_ref().to_vec(), Some(value.as_ref().to_vec())));
    }

    pub fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.writes.push((key.as_ref().to_vec(), None));
    }

    /// Moves the writes into `batch` under `part`'s prefix; later writes of a key win.
    pub fn apply_to(self, part: &Part, batch: &mut ModelBatch) {
        for (key, value) in self.writes {
            match value {
                Some(value) => part.batch_insert(batch, &key, value),
                None => part.batch_remove(batch, &key),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_map_replaces_removes_and_orders_by_key_alone() {
        let mut map = PackedMap::default();
        map.insert(b"b", b"first value, longer than the key");
        map.insert(b"a", b"");
        map.insert(b"ab", b"x");
        map.insert(b"b", b"second");
        assert_eq!(map.len(), 3);
        assert_eq!(map.get(b"b"), Some(&b"second"[..]));
        assert_eq!(map.get(b"a"), Some(&b""[..]));
        assert_eq!(map.get(b"c"), None);
        // Ordered by the key bytes, whatever the values.
        let keys: Vec<&[u8]> = map.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![&b"a"[..], b"ab", b"b"]);
        let from_ab: Vec<&[u8]> = map
            .range((Bound::Included(&b"ab"[..]), Bound::Unbounded))
            .map(|(_, v)| v)
            .collect();
        assert_eq!(from_ab, vec![&b"x"[..], b"second"]);
        map.remove(b"ab");
        map.remove(b"missing");
        assert!(!map.contains_key(b"ab"));
        assert_eq!(map.len(), 2);
    }

    /// The memory backend answers every range exactly as the sled one does, across the
    /// slices `MemRange` reads in.
    #[test]
    fn memory_ranges_equal_sled_ranges() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let sled_part = Part::sled(db.open_tree("t").unwrap(), 4);
        let memory_part = Part::memory(Arc::new(MemPart::default()), 4);
        let mut batch = ModelBatch::default();
        for n in 0u32..1000 {
            let key = [&[(n % 7) as u8][..], &(n * 3).to_be_bytes()].concat();
            sled_part.batch_insert(&mut batch, &key, n.to_be_bytes().to_vec());
            memory_part.insert(&key, n.to_be_bytes().to_vec()).unwrap();
        }
        db.open_tree("t").unwrap().apply_batch(batch.sled).unwrap();
        let all = |iter: PartIter| -> Vec<(Vec<u8>, Vec<u8>)> {
            iter.map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                .collect()
        };
        assert_eq!(all(memory_part.iter()).len(), 1000);
        assert_eq!(all(memory_part.iter()), all(sled_part.iter()));
        for prefix in [vec![0u8], vec![3], vec![6, 0, 0], vec![9]] {
            assert_eq!(
                all(memory_part.scan_prefix(&prefix)),
                all(sled_part.scan_prefix(&prefix))
            );
        }
        let (low, high) = (vec![2u8, 0, 0, 1], vec![5u8, 0, 0, 2, 0]);
        assert_eq!(
            all(memory_part.range(low.clone()..high.clone())),
            all(sled_part.range(low.clone()..high.clone()))
        );
        assert_eq!(
            all(memory_part.range(..high.clone())),
            all(sled_part.range(..high.clone()))
        );
        assert_eq!(
            all(memory_part.range(low.clone()..)),
            all(sled_part.range(low.clone()..))
        );
        assert!(all(memory_part.range(high.clone()..low.clone())).is_empty());
        assert_eq!(memory_part.len(), sled_part.len());
    }
}
