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
use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, RwLock};

type Item = sled::Result<(IVec, IVec)>;
/// A forward range over one part, whatever the bounds' types.
pub(crate) type PartIter = Box<dyn Iterator<Item = Item> + Send>;

/// One write's key and value, packed when the write is collected: the key's length
/// (u16, little-endian), the key and the value in one allocation.
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
}

/// Most bytes of entries a page holds; one that grows past it is split.
const PAGE_BYTES: usize = 2048;

/// An ordered byte map kept in pages: each page is one allocation of up to about
/// `PAGE_BYTES` holding its entries in key order. Pages are found through a `BTreeMap` by
/// their fence (the lowest key a page may hold; the first page's is the empty key, so
/// every key has a page). Against one allocation per entry behind a 16-byte B-tree slot
/// this saves the allocator's header and rounding and the slot (about 35 bytes an
/// entry), and a look-up scans one contiguous page instead of following a pointer per
/// comparison.
///
/// Keys are front-coded: an entry is a varint count of leading bytes its key shares with
/// the key before it in the page, varint lengths of the rest of the key and of the value,
/// the rest of the key and the value. A page's first entry shares nothing. The queue's
/// keys (site, deadline, request id) and the timers' (instant, request id) share their
/// first 14 to 17 bytes with their neighbours; in full they are 25 to 35.
#[derive(Default)]
pub(crate) struct PackedMap {
    pages: BTreeMap<Box<[u8]>, Vec<u8>>,
    len: usize,
}

fn read_varint(page: &[u8], at: &mut usize) -> usize {
    let mut n = 0usize;
    let mut shift = 0;
    loop {
        let byte = page[*at];
        *at += 1;
        n |= usize::from(byte & 0x7F) << shift;
        if byte < 0x80 {
            return n;
        }
        shift += 7;
    }
}

fn write_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// One encoded entry of a page.
#[derive(Clone, Copy)]
struct Raw<'a> {
    /// Leading bytes shared with the key before.
    shared: usize,
    /// The rest of the key.
    suffix: &'a [u8],
    value: &'a [u8],
    /// Offset of the entry and of the one after it.
    start: usize,
    end: usize,
}

fn entry_at(page: &[u8], at: usize) -> Raw<'_> {
    let mut i = at;
    let shared = read_varint(page, &mut i);
    let suffix_len = read_varint(page, &mut i);
    let value_len = read_varint(page, &mut i);
    let suffix = &page[i..i + suffix_len];
    let value = &page[i + suffix_len..i + suffix_len + value_len];
    Raw {
        shared,
        suffix,
        value,
        start: at,
        end: i + suffix_len + value_len,
    }
}

fn encode_entry(out: &mut Vec<u8>, shared: usize, suffix: &[u8], value: &[u8]) {
    write_varint(out, shared);
    write_varint(out, suffix.len());
    write_varint(out, value.len());
    out.extend_from_slice(suffix);
    out.extend_from_slice(value);
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Where `key` is or would go in `page`.
struct Seek<'a> {
    /// Bytes `key` shares with the key of the entry before `at` (0 when there is none).
    shared_before: usize,
    /// Offset of the first entry whose key is not below `key` (`page.len()` if none).
    at: usize,
    /// That entry, and the bytes its key shares with `key`.
    next: Option<(Raw<'a>, usize)>,
    /// Whether that entry's key is `key`.
    found: bool,
}

/// Finds `key` in `page` without rebuilding keys: with `m` the bytes `key` shares with
/// the last key found below it, an entry sharing more than `m` with that key is below
/// `key` too, and one sharing fewer is above it; only one sharing exactly `m` is compared.
fn seek<'a>(page: &'a [u8], key: &[u8]) -> Seek<'a> {
    let mut m = 0;
    let mut at = 0;
    while at < page.len() {
        let raw = entry_at(page, at);
        if raw.shared > m {
            at = raw.end;
            continue;
        }
        if raw.shared < m {
            return Seek {
                shared_before: m,
                at,
                next: Some((raw, raw.shared)),
                found: false,
            };
        }
        let rest = &key[m..];
        let same = common_prefix(raw.suffix, rest);
        match raw.suffix.cmp(rest) {
            std::cmp::Ordering::Less => {
                m += same;
                at = raw.end;
            }
            ordering => {
                return Seek {
                    shared_before: m,
                    at,
                    next: Some((raw, m + same)),
                    found: ordering == std::cmp::Ordering::Equal,
                }
            }
        }
    }
    Seek {
        shared_before: m,
        at,
        next: None,
        found: false,
    }
}

/// The full key of the entry at `target` (an entry boundary) of `page`.
fn key_at(page: &[u8], target: usize) -> Vec<u8> {
    let mut key = Vec::new();
    let mut at = 0;
    loop {
        let raw = entry_at(page, at);
        key.truncate(raw.shared);
        key.extend_from_slice(raw.suffix);
        if at == target {
            return key;
        }
        at = raw.end;
    }
}

/// Capacity for `len` bytes with a quarter to spare, so that a page growing by one
/// entry at a time is not reallocated at every insert, nor doubled.
fn with_headroom(len: usize) -> usize {
    len + len / 4 + 16
}

/// The page `key` belongs in: the one with the greatest fence not above it.
fn page_of_mut<'a>(
    pages: &'a mut BTreeMap<Box<[u8]>, Vec<u8>>,
    key: &[u8],
) -> Option<(&'a [u8], &'a mut Vec<u8>)> {
    pages
        .range_mut::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
        .next_back()
        .map(|(fence, page)| (&**fence, page))
}

/// Replaces `page[range]` with `bytes`, growing the page with headroom when it must.
fn splice(page: &mut Vec<u8>, range: std::ops::Range<usize>, bytes: &[u8]) {
    let grown = page.len() - range.len() + bytes.len();
    if grown > page.capacity() {
        page.reserve_exact(with_headroom(grown) - page.len());
    }
    page.splice(range, bytes.iter().copied());
}

impl PackedMap {
    fn page_of(&self, key: &[u8]) -> Option<(&[u8], &Vec<u8>)> {
        self.pages
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .map(|(fence, page)| (&**fence, page))
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let (_, page) = self.page_of(key)?;
        let found = seek(page, key);
        match found.next {
            Some((raw, _)) if found.found => Some(raw.value),
            _ => None,
        }
    }

    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.page_of(key)
            .is_some_and(|(_, page)| seek(page, key).found)
    }

    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        if self.pages.is_empty() {
            self.pages.insert(Box::default(), Vec::new());
        }
        let (_, page) =
            page_of_mut(&mut self.pages, key).expect("the first page's fence is the empty key");
        let found = seek(page, key);
        let at = found.at;
        let mut bytes = Vec::with_capacity(16 + key.len() + value.len());
        let replaced = match found.next {
            Some((raw, _)) if found.found => {
                // Same key: its encoding stays, the value changes.
                encode_entry(&mut bytes, raw.shared, raw.suffix, value);
                raw.end
            }
            Some((raw, shares)) => {
                // The entry after the new one now follows it: it shares `shares` bytes.
                let shared = found.shared_before;
                encode_entry(&mut bytes, shared, &key[shared..], value);
                let dropped = shares - raw.shared;
                encode_entry(&mut bytes, shares, &raw.suffix[dropped..], raw.value);
                self.len += 1;
                raw.end
            }
            None => {
                let shared = found.shared_before;
                encode_entry(&mut bytes, shared, &key[shared..], value);
                self.len += 1;
                at
            }
        };
        let new_entry_len = {
            let raw = entry_at(&bytes, 0);
            raw.end
        };
        let appended = at == page.len();
        splice(page, at..replaced, &bytes);
        if page.len() <= PAGE_BYTES {
            return;
        }
        // Split: before the new entry when it went at the end, and after it when it
        // ends in the second half: keys that arrive in order (the queue's deadlines within
        // a site, the timers' instants) then leave full pages behind them. Otherwise at
        // the entry nearest the middle.
        let after_new = at + new_entry_len;
        let split = if appended && at > 0 {
            at
        } else if after_new >= page.len() / 2 && after_new < page.len() {
            after_new
        } else {
            let (mut previous, mut offset) = (0, 0);
            while offset < page.len() / 2 {
                previous = offset;
                offset = entry_at(page, offset).end;
            }
            // When the entry across the middle is the last one, split before it instead.
            if offset == page.len() {
                previous
            } else {
                offset
            }
        };
        if split == 0 {
            return;
        }
        // The right page's first entry gets its whole key: it shares with nothing.
        let fence = key_at(page, split);
        let first = entry_at(page, split);
        let mut right = Vec::with_capacity(with_headroom(page.len() - split + fence.len()));
        encode_entry(&mut right, 0, &fence, first.value);
        right.extend_from_slice(&page[first.end..]);
        page.truncate(split);
        page.shrink_to(if appended {
            split
        } else {
            with_headroom(split)
        });
        self.pages.insert(fence.into_boxed_slice(), right);
    }

    pub fn remove(&mut self, key: &[u8]) {
        let Some((fence, page)) = page_of_mut(&mut self.pages, key) else {
            return;
        };
        let found = seek(page, key);
        let Some((gone, _)) = found.next.filter(|_| found.found) else {
            return;
        };
        // The entry after the removed one shares with the one before it the lesser of
        // what it shared with the removed key and what the removed key shared before.
        let mut bytes = Vec::new();
        let (start, mut end) = (gone.start, gone.end);
        if gone.end < page.len() {
            let next = entry_at(page, gone.end);
            if next.shared > gone.shared {
                let mut suffix = gone.suffix[..next.shared - gone.shared].to_vec();
                suffix.extend_from_slice(next.suffix);
                encode_entry(&mut bytes, gone.shared, &suffix, next.value);
                end = next.end;
            }
        }
        splice(page, start..end, &bytes);
        self.len -= 1;
        if page.len() >= PAGE_BYTES / 4 {
            if page.capacity() > 2 * with_headroom(page.len()) {
                page.shrink_to(with_headroom(page.len()));
            }
            return;
        }
        // A page that fell below a quarter full takes in the page after it when the two
        // fit in half a page (its first entry shares nothing, so it can follow any key);
        // an empty page other than the first goes.
        let fence: Box<[u8]> = fence.into();
        let (empty, len) = (page.is_empty(), page.len());
        if empty && !fence.is_empty() {
            self.pages.remove(&fence);
            return;
        }
        let next = self
            .pages
            .range::<[u8], _>((Bound::Excluded(&*fence), Bound::Unbounded))
            .next()
            .filter(|(_, next)| len + next.len() <= PAGE_BYTES / 2)
            .map(|(next_fence, _)| next_fence.clone());
        let taken = next.and_then(|next_fence| self.pages.remove(&next_fence));
        let page = self.pages.get_mut(&fence).expect("the page was just found");
        match taken {
            Some(taken) if taken.is_empty() => {}
            Some(taken) if page.is_empty() => *page = taken,
            Some(taken) => {
                // The taken page's first entry holds its whole key; it now follows this
                // page's last key and shares with it exactly what their keys share (a
                // look-up relies on every entry's count being exact).
                let mut last = 0;
                while entry_at(page, last).end < page.len() {
                    last = entry_at(page, last).end;
                }
                let before = key_at(page, last);
                let first = entry_at(&taken, 0);
                let shared = common_prefix(&before, first.suffix);
                let mut bytes = Vec::with_capacity(taken.len() + 8);
                encode_entry(&mut bytes, shared, &first.suffix[shared..], first.value);
                bytes.extend_from_slice(&taken[first.end..]);
                page.reserve_exact(bytes.len());
                page.extend_from_slice(&bytes);
            }
            None if page.capacity() > 2 * with_headroom(page.len()) => {
                page.shrink_to(with_headroom(page.len()));
            }
            None => {}
        }
    }

    /// Applies one write of a chunk, its entry built when the write was collected.
    pub fn apply(&mut self, write: MemWrite) {
        match write {
            MemWrite::Put(entry) => {
                let (key, value) = entry.split();
                self.insert(key, value);
            }
            MemWrite::Remove(key) => self.remove(&key),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Checks the layout: every page's first entry shares nothing and every other
    /// entry's count is exactly what it shares with the key before, keys rise through the
    /// whole map and lie at or above their page's fence, and `len` counts them.
    #[cfg(test)]
    fn check(&self) {
        let mut count = 0;
        let mut last: Option<Vec<u8>> = None;
        for (fence, page) in &self.pages {
            let mut key: Vec<u8> = Vec::new();
            let mut at = 0;
            while at < page.len() {
                let raw = entry_at(page, at);
                if at == 0 {
                    assert_eq!(raw.shared, 0, "a page's first entry shares nothing");
                }
                if at > 0 {
                    let whole: Vec<u8> = key[..raw.shared]
                        .iter()
                        .chain(raw.suffix)
                        .copied()
                        .collect();
                    assert_eq!(raw.shared, common_prefix(&key, &whole), "an exact count");
                }
                key.truncate(raw.shared);
                key.extend_from_slice(raw.suffix);
                assert!(key.as_slice() >= &**fence, "below its fence");
                if let Some(last) = &last {
                    assert!(key > *last, "{key:?} after {last:?}");
                }
                last = Some(key.clone());
                count += 1;
                at = raw.end;
            }
        }
        assert_eq!(count, self.len);
    }

    /// (pages, bytes of entries, bytes allocated for them).
    pub fn footprint(&self) -> (usize, usize, usize) {
        self.pages
            .values()
            .fold((0, 0, 0), |(pages, used, allocated), page| {
                (pages + 1, used + page.len(), allocated + page.capacity())
            })
    }

    pub fn clear(&mut self) {
        self.pages.clear();
        self.len = 0;
    }

    pub fn iter(&self) -> PackedRange<'_> {
        self.range((Bound::Unbounded, Bound::Unbounded))
    }

    /// The entries within `bounds`, in key order (none when the bounds are inverted).
    pub fn range<'a>(&'a self, bounds: (Bound<&[u8]>, Bound<&[u8]>)) -> PackedRange<'a> {
        let first_fence: &[u8] = match bounds.0 {
            Bound::Included(key) | Bound::Excluded(key) => {
                self.page_of(key).map_or(&[][..], |(fence, _)| fence)
            }
            Bound::Unbounded => &[],
        };
        PackedRange {
            pages: self
                .pages
                .range::<[u8], _>((Bound::Included(first_fence), Bound::Unbounded)),
            page: &[],
            at: 0,
            key: Vec::new(),
            start: bounds.0.map(<[u8]>::to_vec),
            end: bounds.1.map(<[u8]>::to_vec),
        }
    }
}

/// The entries of a [`PackedMap`] within bounds, in key order; keys are rebuilt from
/// their front coding, so they are handed out owned.
pub(crate) struct PackedRange<'a> {
    pages: std::collections::btree_map::Range<'a, Box<[u8]>, Vec<u8>>,
    page: &'a [u8],
    at: usize,
    /// The key of the entry before `at` in this page.
    key: Vec<u8>,
    /// Cleared once an entry at or past it is reached.
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
}

impl<'a> Iterator for PackedRange<'a> {
    type Item = (Vec<u8>, &'a [u8]);

    fn next(&mut self) -> Option<(Vec<u8>, &'a [u8])> {
        loop {
            while self.at >= self.page.len() {
                self.page = self.pages.next()?.1;
                self.at = 0;
            }
            let raw = entry_at(self.page, self.at);
            self.at = raw.end;
            self.key.truncate(raw.shared);
            self.key.extend_from_slice(raw.suffix);
            let key = self.key.as_slice();
            let below_start = match &self.start {
                Bound::Included(start) => key < start.as_slice(),
                Bound::Excluded(start) => key <= start.as_slice(),
                Bound::Unbounded => false,
            };
            if below_start {
                continue;
            }
            self.start = Bound::Unbounded;
            let past_end = match &self.end {
                Bound::Included(end) => key > end.as_slice(),
                Bound::Excluded(end) => key >= end.as_slice(),
                Bound::Unbounded => false,
            };
            if past_end {
                self.page = &[];
                self.at = 0;
                self.pages = Default::default();
                return None;
            }
            return Some((self.key.clone(), raw.value));
        }
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

impl MemWrite {
    pub fn key(&self) -> &[u8] {
        match self {
            MemWrite::Put(entry) => entry.split().0,
            MemWrite::Remove(key) => key,
        }
    }
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
        let keys: Vec<Vec<u8>> = map.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"ab".to_vec(), b"b".to_vec()]);
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

    /// Random inserts, replacements and removals of keys and values of many sizes, with
    /// pages splitting and merging, leave the map equal to a `BTreeMap` given the same
    /// operations: every look-up, every range and the length.
    #[test]
    fn a_packed_map_equals_a_btree_map_through_splits_and_merges() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut map = PackedMap::default();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut most_pages = 0;
        for round in 0..40_000u64 {
            let r = next();
            // Keys from a small space so replacements and removals hit; some in order.
            let key: Vec<u8> = if round % 5 == 0 {
                round.to_be_bytes().to_vec()
            } else {
                let n = r % 3000;
                let mut k = format!("k{n:05}").into_bytes();
                k.extend(std::iter::repeat_n(b'x', (r >> 20) as usize % 40));
                k
            };
            match (r >> 12) % 100 {
                0..=59 => {
                    let value = vec![(r >> 30) as u8; (r >> 40) as usize % 300];
                    map.insert(&key, &value);
                    model.insert(key.clone(), value);
                }
                60..=97 => {
                    map.remove(&key);
                    model.remove(&key);
                }
                _ => {
                    let removed: Vec<Vec<u8>> = model.keys().take(50).cloned().collect();
                    for key in removed {
                        map.remove(&key);
                        model.remove(&key);
                    }
                }
            }
            map.check();
            assert_eq!(map.len(), model.len(), "round {round}");
            most_pages = most_pages.max(map.pages.len());
            if round % 997 == 0 {
                let all: Vec<(Vec<u8>, Vec<u8>)> =
                    map.iter().map(|(k, v)| (k, v.to_vec())).collect();
                let expected: Vec<(Vec<u8>, Vec<u8>)> =
                    model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                assert_eq!(all, expected);
                assert!(map
                    .pages
                    .values()
                    .all(|page| page.len() <= PAGE_BYTES + 400));
            }
            if round % 101 == 0 {
                let low = format!("k{:05}", r % 3000).into_bytes();
                let high = format!("k{:05}", (r >> 16) % 3000).into_bytes();
                for bounds in [
                    (Bound::Included(&low[..]), Bound::Excluded(&high[..])),
                    (Bound::Excluded(&low[..]), Bound::Included(&high[..])),
                    (Bound::Included(&low[..]), Bound::Unbounded),
                    (Bound::Unbounded, Bound::Excluded(&high[..])),
                ] {
                    let got: Vec<Vec<u8>> = if range_is_empty(
                        &bounds.0.map(<[u8]>::to_vec),
                        &bounds.1.map(<[u8]>::to_vec),
                    ) {
                        Vec::new()
                    } else {
                        map.range(bounds).map(|(k, _)| k).collect()
                    };
                    let want: Vec<Vec<u8>> = if range_is_empty(
                        &bounds.0.map(<[u8]>::to_vec),
                        &bounds.1.map(<[u8]>::to_vec),
                    ) {
                        Vec::new()
                    } else {
                        model
                            .range::<[u8], _>(bounds)
                            .map(|(k, _)| k.clone())
                            .collect()
                    };
                    assert_eq!(got, want);
                }
                assert_eq!(map.get(&key), model.get(&key).map(Vec::as_slice));
                assert_eq!(map.contains_key(&low), model.contains_key(&low));
            }
        }
        assert!(
            most_pages > 20,
            "the test should cross many pages: {most_pages}"
        );
        // Removing everything leaves one empty page.
        let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
        for key in keys {
            map.remove(&key);
        }
        assert_eq!((map.len(), map.iter().count(), map.pages.len()), (0, 0, 1));
    }

    /// Queue-like keys (a site, a rising deadline, a random request id) are kept in well
    /// under their full size: each shares its site and most of its deadline with the key
    /// before it.
    #[test]
    fn front_coding_keeps_queue_keys_in_less_than_their_size() {
        let mut map = PackedMap::default();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut full = 0;
        for n in 0..20_000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let site: &[u8] = [&b"\0\x09SC-LS-001"[..], b"\0\x09SC-BZ-001"][(n % 2) as usize];
            let deadline = (1_800_000_000_000u64 + n * 7) | 1 << 63;
            let key = [
                site,
                &deadline.to_be_bytes(),
                &state.to_le_bytes(),
                &n.to_le_bytes(),
            ]
            .concat();
            let value = [7u8; 30];
            full += 2 + key.len() + value.len();
            map.insert(&key, &value);
        }
        map.check();
        let (_, used, _) = map.footprint();
        assert!(
            used * 100 < full * 80,
            "{used} bytes used for {full} bytes of entries"
        );
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
            sled_part.batch_insert(&mut batch, &key, n.to_be_bytes());
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
