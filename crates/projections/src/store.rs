//! The read models live in one sled tree, `proj_models`, split into parts by a one-byte
//! key prefix. One tree means a chunk of events is written with one atomic
//! `apply_batch`: sled's multi-tree transactions, which the parts needed while they were
//! separate trees, first copy every write into a transaction write set and then apply
//! it, and took about two thirds of the fold's time under load (docs/benchmarks.md).

use sled::{IVec, Tree};
use std::ops::{Bound, RangeBounds};

/// One part of the models tree: the keys under one prefix byte. Keys given to and
/// returned from it are without the prefix.
#[derive(Clone)]
pub(crate) struct Part {
    tree: Tree,
    prefix: u8,
}

type Item = sled::Result<(IVec, IVec)>;
/// A range over one part, whatever the bounds' types.
pub(crate) type PartIter = Box<dyn DoubleEndedIterator<Item = Item> + Send>;

fn strip((key, value): (IVec, IVec)) -> (IVec, IVec) {
    (IVec::from(&key[1..]), value)
}

impl Part {
    pub fn new(tree: Tree, prefix: u8) -> Part {
        Part { tree, prefix }
    }

    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(key.len() + 1);
        out.push(self.prefix);
        out.extend_from_slice(key);
        out
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>> {
        self.tree.get(self.key(key.as_ref()))
    }

    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> sled::Result<bool> {
        self.tree.contains_key(self.key(key.as_ref()))
    }

    /// Writes one key outside a chunk (version stamps and lone checkpoints).
    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl Into<IVec>) -> sled::Result<()> {
        self.tree.insert(self.key(key.as_ref()), value)?;
        Ok(())
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Item> {
        self.tree
            .scan_prefix([self.prefix])
            .map(|item| item.map(strip))
    }

    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> impl DoubleEndedIterator<Item = Item> {
        self.tree
            .scan_prefix(self.key(prefix.as_ref()))
            .map(|item| item.map(strip))
    }

    pub fn range<R: RangeBounds<Vec<u8>>>(&self, range: R) -> PartIter {
        let start = match range.start_bound() {
            Bound::Included(k) => Bound::Included(self.key(k)),
            Bound::Excluded(k) => Bound::Excluded(self.key(k)),
            Bound::Unbounded => Bound::Included(vec![self.prefix]),
        };
        let end = match range.end_bound() {
            Bound::Included(k) => Bound::Included(self.key(k)),
            Bound::Excluded(k) => Bound::Excluded(self.key(k)),
            // Prefixes are below 0xFF, so the next prefix byte ends this part.
            Bound::Unbounded => Bound::Excluded(vec![self.prefix + 1]),
        };
        Box::new(
            self.tree
                .range::<Vec<u8>, _>((start, end))
                .map(|item| item.map(strip)),
        )
    }

    /// Counts the keys (a scan, as sled's own `len` is).
    pub fn len(&self) -> usize {
        self.tree.scan_prefix([self.prefix]).count()
    }

    /// Adds a write of this part to a chunk's batch.
    pub fn batch_insert(&self, batch: &mut sled::Batch, key: &[u8], value: impl Into<IVec>) {
        batch.insert(self.key(key), value);
    }

    pub fn batch_remove(&self, batch: &mut sled::Batch, key: &[u8]) {
        batch.remove(self.key(key));
    }
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
    pub fn apply_to(self, part: &Part, batch: &mut sled::Batch) {
        for (key, value) in self.writes {
            match value {
                Some(value) => part.batch_insert(batch, &key, value),
                None => part.batch_remove(batch, &key),
            }
        }
    }
}
