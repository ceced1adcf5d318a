//! The key store: one data key per resident, in an append-only file with group-committed
//! `fdatasync`, so that erasing a resident is deleting their key (crypto-shredding).
//!
//! File `keys.log` is a sequence of fixed-size records `[kind][resident id (16)][key (32)]
//! [crc32c]`; kind 1 stores a key, kind 2 is a tombstone that erases it. One writer
//! thread batches every waiting request into one write and one `fdatasync` and answers
//! none before that sync, so a key is durable before any event sealed with it is
//! appended. Readers find a key through an in-memory index (`keymap.rs`) of synced
//! records and read it from the file. Compaction rewrites the file with the live keys
//! only, so erased keys leave the disk too.
//!
//! A failed write or sync is not forever: the batch is refused, and the next batch that
//! has something to write first cuts the file back to the records whose sync succeeded
//! (truncating needs no free space), syncs the cut and opens the file again, then
//! writes and syncs its own records. Nothing written after a failed sync is trusted,
//! since Linux may have marked its pages clean without writing them.

use crate::keymap::{KeyMap, Record};
use anju_eventlog::WriteHealth;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::oneshot;

/// A resident's pseudonymous id: an HMAC of their phone number with the server secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResidentKeyId(pub [u8; 16]);

impl ResidentKeyId {
    pub fn to_hex(self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(32);
        for b in self.0 {
            hex.push(DIGITS[usize::from(b >> 4)] as char);
            hex.push(DIGITS[usize::from(b & 15)] as char);
        }
        hex
    }

    pub fn from_hex(text: &str) -> Option<ResidentKeyId> {
        if text.len() != 32 || !text.is_ascii() {
            return None;
        }
        let mut id = [0u8; 16];
        for (i, slot) in id.iter_mut().enumerate() {
            *slot = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(ResidentKeyId(id))
    }
}

impl std::fmt::Debug for ResidentKeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ResidentKeyId({})", self.to_hex())
    }
}

/// A resident's data key; never printed.
#[derive(Clone, Copy)]
pub struct DataKey(pub(crate) [u8; 32]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(hidden)")
    }
}

const RECORD_LEN: usize = 1 + 16 + 32 + 4;
const KIND_PUT: u8 = 1;
const KIND_TOMBSTONE: u8 = 2;
const FILE_NAME: &str = "keys.log";
const SECRET_NAME: &str = "secret";
const COMPACTING_NAME: &str = "keys.log.compacting";
/// Compact on open once this many records are dead (erased keys and their tombstones).
const COMPACT_DEAD_RECORDS: usize = 1024;
/// The most requests one group commit takes.
const MAX_BATCH: usize = 4096;

/// Why the key store failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyStoreError {
    #[error("key store io failed at {path}: {message}")]
    Io { path: String, message: String },
    #[error("key store is closed")]
    Closed,
    #[error("operating system randomness failed: {0}")]
    Random(String),
}

fn io_error(path: &Path, error: impl std::fmt::Display) -> KeyStoreError {
    KeyStoreError::Io {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

/// What compaction or opening found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyStoreStats {
    pub live_keys: usize,
    /// Records in the file that compaction would drop.
    pub dead_records: usize,
    /// Bytes of a torn last batch cut off on open (a crash during a write).
    pub truncated_bytes: u64,
}

enum Request {
    Ensure {
        id: ResidentKeyId,
        reply: oneshot::Sender<Result<DataKey, KeyStoreError>>,
    },
    Erase {
        id: ResidentKeyId,
        reply: oneshot::Sender<Result<bool, KeyStoreError>>,
    },
    Compact {
        reply: oneshot::Sender<Result<KeyStoreStats, KeyStoreError>>,
    },
    /// The synced record count and the file they are in, for a backup to copy.
    Synced {
        reply: oneshot::Sender<Result<(u32, File), KeyStoreError>>,
    },
}

/// What [`KeyStore::backup`] copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStoreBackup {
    /// Records copied: every record whose sync had succeeded when the copy was taken.
    pub records: u32,
    /// The files written, relative to the target directory.
    pub files: Vec<String>,
}

/// The index and the file it points into, swapped together by compaction.
struct Keys {
    map: KeyMap,
    /// `keys.log` opened for reading records by number.
    file: File,
    path: PathBuf,
}

impl Keys {
    fn read(&self, record: u32) -> Result<Record, KeyStoreError> {
        read_record(&self.file, record).map_err(|e| io_error(&self.path, e))
    }

    fn get(&self, id: &ResidentKeyId) -> Result<Option<DataKey>, KeyStoreError> {
        self.map.get(id, |record| self.read(record))
    }
}

/// Reads record number `record` of a key file and checks its checksum.
fn read_record(file: &File, record: u32) -> std::io::Result<Record> {
    let mut bytes = [0u8; RECORD_LEN];
    file.read_exact_at(&mut bytes, u64::from(record) * RECORD_LEN as u64)?;
    decode(&bytes).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("key record {record} is damaged"),
        )
    })
}

/// The id and key of a whole record whose checksum holds (a tombstone's key is zero).
fn decode(record: &[u8; RECORD_LEN]) -> Option<Record> {
    let crc = u32::from_le_bytes(record[RECORD_LEN - 4..].try_into().expect("four bytes"));
    if crc32c::crc32c(&record[..RECORD_LEN - 4]) != crc {
        return None;
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&record[1..17]);
    let mut key = [0u8; 32];
    key.copy_from_slice(&record[17..49]);
    Some((ResidentKeyId(id), DataKey(key)))
}

struct Shared {
    keys: RwLock<Keys>,
    /// Set when a write fails, cleared when one succeeds again.
    health: Arc<WriteHealth>,
    secret: [u8; 32],
    /// The store's directory.
    dir: PathBuf,
    /// Held while open, so two processes never append to one key file.
    _dir_lock: File,
}

/// A handle to the open key store; clones share it.
#[derive(Clone)]
pub struct KeyStore {
    shared: Arc<Shared>,
    tx: Arc<Mutex<Option<std::sync::mpsc::Sender<Request>>>>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl KeyStore {
    /// Opens (creating if needed) the store in `dir`; `secret` overrides the secret file.
    pub fn open(
        dir: &Path,
        secret: Option<[u8; 32]>,
    ) -> Result<(KeyStore, KeyStoreStats), KeyStoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let lock_path = dir.join("LOCK");
        let dir_lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error(&lock_path, e))?;
        dir_lock
            .try_lock()
            .map_err(|e| io_error(&lock_path, format!("the key store is in use: {e:?}")))?;
        let secret = match secret {
            Some(secret) => secret,
            None => load_or_create_secret(dir)?,
        };
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        sync_dir(dir)?;
        let (keys, records, mut stats) = load(&path)?;
        let mut writer = Writer {
            path,
            dir: dir.to_path_buf(),
            file,
            records,
            dead: stats.dead_records,
            failed: None,
            reload: false,
        };
        let shared = Arc::new(Shared {
            keys: RwLock::new(keys),
            health: Arc::new(WriteHealth::default()),
            secret,
            dir: dir.to_path_buf(),
            _dir_lock: dir_lock,
        });
        if stats.dead_records >= COMPACT_DEAD_RECORDS {
            stats = writer.compact(&shared)?;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("anju-keystore-writer".into())
                .spawn(move || writer.run(&shared, rx))
                .map_err(|e| io_error(dir, e))?
        };
        Ok((
            KeyStore {
                shared,
                tx: Arc::new(Mutex::new(Some(tx))),
                thread: Arc::new(Mutex::new(Some(thread))),
            },
            stats,
        ))
    }

    /// Whether key writes succeed (see the module comment on failed writes).
    pub fn write_health(&self) -> Arc<WriteHealth> {
        self.shared.health.clone()
    }

    /// The resident id of a (normalized) phone number.
    pub fn resident_id(&self, phone: &str) -> ResidentKeyId {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.shared.secret)
            .expect("hmac takes any key length");
        mac.update(b"anju resident v1\0");
        mac.update(phone.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        ResidentKeyId(id)
    }

    /// An HMAC with the server secret, for fingerprints that must not be guessable.
    pub fn keyed_hash(&self, domain: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.shared.secret)
            .expect("hmac takes any key length");
        mac.update(domain);
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// The resident's key if it exists and is not erased. A failure to read the key
    /// file is logged and answers `None` (the value stays sealed).
    pub fn get(&self, id: ResidentKeyId) -> Option<DataKey> {
        self.try_get(id).unwrap_or_else(|e| {
            tracing::error!(error = %e, "a resident key could not be read");
            None
        })
    }

    fn try_get(&self, id: ResidentKeyId) -> Result<Option<DataKey>, KeyStoreError> {
        self.shared
            .keys
            .read()
            .expect("key map lock poisoned")
            .get(&id)
    }

    /// The resident's key, creating and durably storing one if needed.
    pub async fn ensure(&self, id: ResidentKeyId) -> Result<DataKey, KeyStoreError> {
        if let Some(key) = self.try_get(id)? {
            return Ok(key);
        }
        let (reply, answer) = oneshot::channel();
        self.send(Request::Ensure { id, reply })?;
        answer.await.map_err(|_| KeyStoreError::Closed)?
    }

    /// Writes a tombstone for the resident's key and forgets it; true if there was one.
    pub async fn erase(&self, id: ResidentKeyId) -> Result<bool, KeyStoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Erase { id, reply })?;
        answer.await.map_err(|_| KeyStoreError::Closed)?
    }

    /// Rewrites the file without erased keys and tombstones.
    pub async fn compact(&self) -> Result<KeyStoreStats, KeyStoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Compact { reply })?;
        answer.await.map_err(|_| KeyStoreError::Closed)?
    }

    fn send(&self, request: Request) -> Result<(), KeyStoreError> {
        let tx = self.tx.lock().expect("key store sender lock poisoned");
        tx.as_ref()
            .ok_or(KeyStoreError::Closed)?
            .send(request)
            .map_err(|_| KeyStoreError::Closed)
    }

    /// Copies the store into the new directory `to`: `keys.log` up to its last synced
    /// record and the secret file (when the secret is not given in the configuration).
    /// The writer thread names the synced records between two batches, so the copy holds
    /// every key acknowledged before the call; the copy itself is made on a blocking
    /// thread while writes go on, since the records below that count are never
    /// rewritten in that file (compaction writes a new file and renames it).
    pub async fn backup(&self, to: &Path) -> Result<KeyStoreBackup, KeyStoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Synced { reply })?;
        let (records, file) = answer.await.map_err(|_| KeyStoreError::Closed)??;
        let dir = self.shared.dir.clone();
        let to = to.to_path_buf();
        tokio::task::spawn_blocking(move || backup(&dir, records, &file, &to))
            .await
            .map_err(|e| KeyStoreError::Io {
                path: "key store backup".into(),
                message: format!("the copy panicked: {e}"),
            })?
    }

    /// Stops the writer after what is queued; later calls get `Closed`.
    pub fn close(&self) {
        self.tx
            .lock()
            .expect("key store sender lock poisoned")
            .take();
        let thread = self
            .thread
            .lock()
            .expect("key store thread lock poisoned")
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

struct Writer {
    path: PathBuf,
    dir: PathBuf,
    file: File,
    /// Records in the file whose sync succeeded: the number the next one gets.
    records: u32,
    dead: usize,
    /// Set when a write or sync failed: the file may end in records that are torn or
    /// never reached the disk, so the next write first cuts it back to `records`.
    failed: Option<KeyStoreError>,
    /// Set when the in-memory index may not match the file; the cut-back then builds it
    /// again from the file.
    reload: bool,
}

/// What one request turns into once its batch is synced.
enum Outcome {
    Key(oneshot::Sender<Result<DataKey, KeyStoreError>>, DataKey),
    Erased(oneshot::Sender<Result<bool, KeyStoreError>>, bool),
}

impl Writer {
    fn run(mut self, shared: &Shared, rx: std::sync::mpsc::Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.commit(shared, batch);
        }
        let _ = self.file.sync_data();
    }

    /// Cuts the file back to its synced records after a failed write, syncs the cut,
    /// opens the file again and, if the index may be wrong, rebuilds it from the file.
    fn cut_back(&mut self, shared: &Shared) -> Result<(), KeyStoreError> {
        if self.failed.is_none() {
            return Ok(());
        }
        let file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| io_error(&self.path, e))?;
        let durable = u64::from(self.records) * RECORD_LEN as u64;
        let len = file.metadata().map_err(|e| io_error(&self.path, e))?.len();
        if len > durable {
            file.set_len(durable).map_err(|e| io_error(&self.path, e))?;
        }
        file.sync_all().map_err(|e| io_error(&self.path, e))?;
        if self.reload {
            let (keys, records, stats) = load(&self.path)?;
            *shared.keys.write().expect("key map lock poisoned") = keys;
            self.records = records;
            self.dead = stats.dead_records;
            self.reload = false;
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| io_error(&self.path, e))?;
        tracing::info!(path = %self.path.display(), "the key store cut back its failed write; writing again");
        self.failed = None;
        Ok(())
    }

    /// Remembers a failed write: the next batch cuts back first.
    fn fail(&mut self, shared: &Shared, error: &KeyStoreError) {
        shared.health.failed(&error.to_string());
        self.failed = Some(error.clone());
    }

    fn commit(&mut self, shared: &Shared, batch: Vec<Request>) {
        if let Err(e) = self.cut_back(shared) {
            self.fail(shared, &e);
        }
        // The index as it will be after this batch (record number and key, or erased);
        // the shared one changes only after sync.
        let mut changes: HashMap<ResidentKeyId, Option<(u32, DataKey)>> = HashMap::new();
        let mut buffer = Vec::new();
        let mut outcomes = Vec::new();
        let mut compactions = Vec::new();
        let mut backups = Vec::new();
        let mut records = self.records;
        let current = |changes: &HashMap<ResidentKeyId, Option<(u32, DataKey)>>,
                       id: &ResidentKeyId| match changes.get(id) {
            Some(change) => Ok(change.map(|(_, key)| key)),
            None => shared.keys.read().expect("key map lock poisoned").get(id),
        };
        for request in batch {
            match request {
                Request::Ensure { id, reply } => {
                    match current(&changes, &id) {
                        Ok(Some(key)) => {
                            outcomes.push(Outcome::Key(reply, key));
                            continue;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let _ = reply.send(Err(e));
                            continue;
                        }
                    }
                    let mut key = [0u8; 32];
                    if let Err(e) = getrandom::fill(&mut key) {
                        let _ = reply.send(Err(KeyStoreError::Random(e.to_string())));
                        continue;
                    }
                    let key = DataKey(key);
                    encode(&mut buffer, KIND_PUT, id, &key.0);
                    changes.insert(id, Some((records, key)));
                    records += 1;
                    outcomes.push(Outcome::Key(reply, key));
                }
                Request::Erase { id, reply } => {
                    let existed = match current(&changes, &id) {
                        Ok(found) => found.is_some(),
                        Err(e) => {
                            let _ = reply.send(Err(e));
                            continue;
                        }
                    };
                    if existed {
                        encode(&mut buffer, KIND_TOMBSTONE, id, &[0u8; 32]);
                        changes.insert(id, None);
                        records += 1;
                        self.dead += 2;
                    }
                    outcomes.push(Outcome::Erased(reply, existed));
                }
                Request::Compact { reply } => compactions.push(reply),
                Request::Synced { reply } => backups.push(reply),
            }
        }
        let mut written = match (&self.failed, buffer.is_empty()) {
            (_, true) => Ok(()),
            (Some(failure), false) => Err(failure.clone()),
            (None, false) => self
                .file
                .write_all(&buffer)
                .and_then(|()| self.file.sync_data())
                .map_err(|e| io_error(&self.path, e)),
        };
        if written.is_ok() && !buffer.is_empty() {
            let mut keys = shared.keys.write().expect("key map lock poisoned");
            let Keys { map, file, path } = &mut *keys;
            let read = |record| read_record(file, record).map_err(|e| io_error(path, e));
            for (id, change) in changes {
                let applied = match change {
                    Some((record, _)) => map.insert(&id, record, read),
                    None => map.remove(&id, read).map(drop),
                };
                if let Err(e) = applied {
                    // The batch is on disk but the index is not sure of it: refuse it,
                    // cut it off again and rebuild the index before the next write.
                    written = Err(e);
                    self.reload = true;
                    break;
                }
            }
        }
        match &written {
            Ok(()) if !buffer.is_empty() => {
                self.records = records;
                shared.health.succeeded();
            }
            Ok(()) => {}
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "key store write failed; the batch is refused and the next write retries");
                let e = e.clone();
                self.fail(shared, &e);
            }
        }
        for outcome in outcomes {
            match (outcome, &written) {
                (Outcome::Key(reply, key), Ok(())) => drop(reply.send(Ok(key))),
                (Outcome::Erased(reply, existed), Ok(())) => drop(reply.send(Ok(existed))),
                (Outcome::Key(reply, _), Err(e)) => drop(reply.send(Err(e.clone()))),
                (Outcome::Erased(reply, _), Err(e)) => drop(reply.send(Err(e.clone()))),
            }
        }
        for reply in backups {
            let opened = File::open(&self.path)
                .map(|file| (self.records, file))
                .map_err(|e| io_error(&self.path, e));
            let _ = reply.send(opened);
        }
        for reply in compactions {
            let result = match &self.failed {
                Some(failure) => Err(failure.clone()),
                None => self.compact(shared),
            };
            if let Err(e) = &result {
                // The file in place is either the old one or the compacted one; the next
                // write opens whichever it is and rebuilds the index from it.
                let _ = std::fs::remove_file(self.dir.join(COMPACTING_NAME));
                self.fail(shared, e);
                self.reload = true;
            }
            let _ = reply.send(result);
        }
    }

    /// Writes the live keys to a new file, syncs it, renames it over the old one and
    /// syncs the directory, so a crash leaves either the old file or the new one.
    fn compact(&mut self, shared: &Shared) -> Result<KeyStoreStats, KeyStoreError> {
        let temporary = self.dir.join(COMPACTING_NAME);
        let (map, reader, live) = {
            let keys = shared.keys.read().expect("key map lock poisoned");
            // In file order, so the old file is read front to back.
            let mut records: Vec<u32> = keys.map.records().collect();
            records.sort_unstable();
            let file = File::create(&temporary).map_err(|e| io_error(&temporary, e))?;
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, file);
            for &record in &records {
                let (id, key) = keys.read(record)?;
                let mut buffer = Vec::with_capacity(RECORD_LEN);
                encode(&mut buffer, KIND_PUT, id, &key.0);
                out.write_all(&buffer)
                    .map_err(|e| io_error(&temporary, e))?;
            }
            let file = out
                .into_inner()
                .map_err(|e| io_error(&temporary, e.error()))?;
            file.sync_all().map_err(|e| io_error(&temporary, e))?;
            let reader = File::open(&temporary).map_err(|e| io_error(&temporary, e))?;
            let mut map = KeyMap::default();
            for number in 0..records.len() {
                let number = u32::try_from(number).expect("fewer records than before");
                let (id, _) = read_record(&reader, number).map_err(|e| io_error(&temporary, e))?;
                map.insert(&id, number, |r| {
                    read_record(&reader, r).map_err(|e| io_error(&temporary, e))
                })?;
            }
            (map, reader, records.len())
        };
        std::fs::rename(&temporary, &self.path).map_err(|e| io_error(&self.path, e))?;
        // The compacted file is the one in place now, synced or not: follow it before
        // anything else can fail.
        self.records = u32::try_from(live).expect("fewer records than before");
        self.dead = 0;
        {
            let mut keys = shared.keys.write().expect("key map lock poisoned");
            keys.map = map;
            keys.file = reader;
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| io_error(&self.path, e))?;
        sync_dir(&self.dir)?;
        Ok(KeyStoreStats {
            live_keys: live,
            dead_records: 0,
            truncated_bytes: 0,
        })
    }
}

fn encode(buffer: &mut Vec<u8>, kind: u8, id: ResidentKeyId, key: &[u8; 32]) {
    let start = buffer.len();
    buffer.push(kind);
    buffer.extend_from_slice(&id.0);
    buffer.extend_from_slice(key);
    let crc = crc32c::crc32c(&buffer[start..]);
    buffer.extend_from_slice(&crc.to_le_bytes());
}

/// Reads the file, stopping at the first torn or damaged record and cutting the file
/// there: only the last batch can be torn, and none of it was acknowledged. Answers the
/// index with a read handle on the file and the number of records kept.
fn load(path: &Path) -> Result<(Keys, u32, KeyStoreStats), KeyStoreError> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let reader = File::open(path).map_err(|e| io_error(path, e))?;
    let length = file.metadata().map_err(|e| io_error(path, e))?.len();
    let mut input = BufReader::with_capacity(64 * 1024, file);
    let mut map = KeyMap::default();
    let mut records = 0u32;
    let mut record = [0u8; RECORD_LEN];
    loop {
        match input.read_exact(&mut record) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(io_error(path, e)),
        }
        let Some((id, _)) = decode(&record) else {
            break;
        };
        let read = |r| read_record(&reader, r).map_err(|e| io_error(path, e));
        match record[0] {
            KIND_PUT => map.insert(&id, records, read)?,
            KIND_TOMBSTONE => {
                map.remove(&id, read)?;
            }
            _ => break,
        }
        records = records
            .checked_add(1)
            .ok_or_else(|| io_error(path, "the key file holds more than 4 billion records"))?;
    }
    let good = u64::from(records) * RECORD_LEN as u64;
    let truncated = length - good;
    if truncated > 0 {
        tracing::warn!(path = %path.display(), bytes = truncated, "cutting a torn tail off the key store");
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        file.set_len(good)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error(path, e))?;
    }
    let stats = KeyStoreStats {
        live_keys: map.len(),
        dead_records: records as usize - map.len(),
        truncated_bytes: truncated,
    };
    let keys = Keys {
        map,
        file: reader,
        path: path.to_path_buf(),
    };
    Ok((keys, records, stats))
}

fn load_or_create_secret(dir: &Path) -> Result<[u8; 32], KeyStoreError> {
    let path = dir.join(SECRET_NAME);
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() == 32 => {
            let mut secret = [0u8; 32];
            secret.copy_from_slice(&bytes);
            return Ok(secret);
        }
        Ok(_) => {
            return Err(io_error(
                &path,
                "the secret file must hold exactly 32 bytes",
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&path, e)),
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| KeyStoreError::Random(e.to_string()))?;
    let temporary = dir.join("secret.new");
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&temporary)
        .map_err(|e| io_error(&temporary, e))?;
    file.write_all(&secret)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(&temporary, e))?;
    std::fs::rename(&temporary, &path).map_err(|e| io_error(&path, e))?;
    sync_dir(dir)?;
    Ok(secret)
}

/// Copies the first `records` records of `source` (the store's file in `dir`) and the
/// secret file into the new directory `to`.
fn backup(
    dir: &Path,
    records: u32,
    source: &File,
    to: &Path,
) -> Result<KeyStoreBackup, KeyStoreError> {
    std::fs::create_dir(to).map_err(|e| io_error(to, e))?;
    let durable = u64::from(records) * RECORD_LEN as u64;
    let mut files = Vec::new();
    copy_prefix(source, &dir.join(FILE_NAME), durable, &to.join(FILE_NAME))?;
    files.push(FILE_NAME.to_string());
    let secret = dir.join(SECRET_NAME);
    if secret.exists() {
        let source = File::open(&secret).map_err(|e| io_error(&secret, e))?;
        let len = source.metadata().map_err(|e| io_error(&secret, e))?.len();
        copy_prefix(&source, &secret, len, &to.join(SECRET_NAME))?;
        files.push(SECRET_NAME.to_string());
    }
    sync_dir(to)?;
    Ok(KeyStoreBackup { records, files })
}

/// Writes the first `len` bytes of `source` to the new file `target` and syncs it.
fn copy_prefix(
    source: &File,
    source_path: &Path,
    len: u64,
    target: &Path,
) -> Result<(), KeyStoreError> {
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(target)
        .map_err(|e| io_error(target, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < len {
        let want = ((len - at) as usize).min(buf.len());
        source
            .read_exact_at(&mut buf[..want], at)
            .map_err(|e| io_error(source_path, e))?;
        out.write_all(&buf[..want])
            .map_err(|e| io_error(target, e))?;
        at += want as u64;
    }
    out.sync_all().map_err(|e| io_error(target, e))
}

fn sync_dir(dir: &Path) -> Result<(), KeyStoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    }

    #[test]
    fn key_ids_print_as_lowercase_hex_and_read_back() {
        let id = ResidentKeyId([
            0x00, 0x01, 0x0f, 0x10, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff, 0x12, 0x34, 0x56, 0x78,
            0x9a, 0xbc,
        ]);
        assert_eq!(id.to_hex(), "00010f107f80abcdefff123456789abc");
        assert_eq!(ResidentKeyId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(ResidentKeyId::from_hex("00010f"), None);
    }

    #[test]
    fn concurrent_first_uses_of_one_resident_share_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = KeyStore::open(dir.path(), None).unwrap();
        let id = store.resident_id("13912345678");
        let keys = runtime().block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..64 {
                let store = store.clone();
                tasks.spawn(async move { store.ensure(id).await.unwrap() });
            }
            tasks.join_all().await
        });
        assert!(keys.windows(2).all(|w| w[0].0 == w[1].0));
        store.close();
        let length = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
        assert_eq!(length, RECORD_LEN as u64, "one record written");
    }

    #[test]
    fn keys_tombstones_and_a_torn_tail_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = KeyStore::open(dir.path(), None).unwrap();
        let (a, b) = (
            store.resident_id("13900000001"),
            store.resident_id("13900000002"),
        );
        assert_ne!(a, b);
        let rt = runtime();
        let key_a = rt.block_on(store.ensure(a)).unwrap();
        rt.block_on(store.ensure(b)).unwrap();
        assert!(rt.block_on(store.erase(b)).unwrap());
        store.close();
        let second = KeyStore::open(dir.path(), None);
        assert!(
            matches!(second, Err(KeyStoreError::Io { .. })),
            "one process at a time"
        );
        drop(store);
        // A crash in the middle of the next batch leaves half a record.
        let path = dir.path().join(FILE_NAME);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[KIND_PUT, 1, 2, 3]).unwrap();
        drop(file);

        let (store, stats) = KeyStore::open(dir.path(), None).unwrap();
        assert_eq!(
            stats,
            KeyStoreStats {
                live_keys: 1,
                dead_records: 2,
                truncated_bytes: 4
            }
        );
        assert_eq!(store.resident_id("13900000001"), a, "the secret persists");
        assert_eq!(store.get(a).map(|k| k.0), Some(key_a.0));
        assert!(store.get(b).is_none());
        let stats = rt.block_on(store.compact()).unwrap();
        assert_eq!(stats.live_keys, 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), RECORD_LEN as u64);
        store.close();
        assert!(
            rt.block_on(store.ensure(a)).is_ok(),
            "a cached key needs no writer"
        );
        assert!(matches!(
            rt.block_on(store.erase(a)),
            Err(KeyStoreError::Closed)
        ));
    }

    /// Keys are read back from the file by record number: through erasures, a
    /// compaction that renumbers every record, and a reopen, each resident keeps the key
    /// first given and an erased one has none.
    #[test]
    fn many_keys_read_back_from_the_file_through_compaction_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = KeyStore::open(dir.path(), None).unwrap();
        let rt = runtime();
        let ids: Vec<ResidentKeyId> = (0..3_000)
            .map(|n| store.resident_id(&format!("139{n:08}")))
            .collect();
        let keys: Vec<[u8; 32]> = rt.block_on(async {
            let mut keys = Vec::new();
            for id in &ids {
                keys.push(store.ensure(*id).await.unwrap().0);
            }
            keys
        });
        for id in ids.iter().step_by(3) {
            assert!(rt.block_on(store.erase(*id)).unwrap());
        }
        let check = |store: &KeyStore| {
            for (n, (id, key)) in ids.iter().zip(&keys).enumerate() {
                let got = store.get(*id).map(|k| k.0);
                if n % 3 == 0 {
                    assert_eq!(got, None, "resident {n} was erased");
                } else {
                    assert_eq!(got, Some(*key), "resident {n}");
                }
            }
        };
        check(&store);
        let stats = rt.block_on(store.compact()).unwrap();
        assert_eq!(stats.live_keys, 2_000);
        check(&store);
        // Keys made after the compaction are numbered after the kept ones.
        let late = store.resident_id("13800000000");
        let late_key = rt.block_on(store.ensure(late)).unwrap().0;
        store.close();
        drop(store);
        let (store, stats) = KeyStore::open(dir.path(), None).unwrap();
        assert_eq!((stats.live_keys, stats.dead_records), (2_001, 0));
        check(&store);
        assert_eq!(store.get(late).map(|k| k.0), Some(late_key));
        assert_eq!(rt.block_on(store.ensure(ids[1])).unwrap().0, keys[1]);
        store.close();
        let length = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
        assert_eq!(
            length,
            2_001 * RECORD_LEN as u64,
            "no record written for a known key"
        );
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = KeyStore::open(dir.path(), None).unwrap();
        let id = store.resident_id("13912345678");
        let rt = runtime();
        let key = rt.block_on(store.ensure(id)).unwrap();
        let sealed = crate::seal::seal(id, &key, b"anju:r1:contact", b"secret text").unwrap();
        assert_eq!(
            crate::seal::unseal(&store, b"anju:r1:contact", &sealed).as_deref(),
            Some(&b"secret text"[..])
        );
        assert_eq!(
            crate::seal::unseal(&store, b"anju:r2:contact", &sealed),
            None,
            "bound to its context"
        );
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(
            crate::seal::unseal(&store, b"anju:r1:contact", &tampered),
            None
        );
        assert!(rt.block_on(store.erase(id)).unwrap());
        assert_eq!(
            crate::seal::unseal(&store, b"anju:r1:contact", &sealed),
            None,
            "shredded"
        );
        store.close();
    }
}
