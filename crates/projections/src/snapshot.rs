//! Snapshots of the in-memory read models: every part's keys and values at one
//! checkpoint, in one file, so a restart replays the log from that checkpoint instead of
//! from 0.
//!
//! Format (integers little-endian): magic `ANJUPRJ1`, the projection version (u64), the
//! number of parts (u32), then per part its prefix byte (u8), its entry count (u64) and
//! each entry as key length (u32), key, value length (u32), value; last, the CRC32C of
//! every byte before it (u32). A snapshot is written to `<name>.tmp`, synced, renamed over
//! the old one and the directory synced, so a crash leaves the old or the new one whole.
//! A snapshot that is missing, damaged or of another version is ignored: the read models
//! then start empty and the runner replays the log from 0 (they are derived data).

use crate::store::{MemPart, PackedMap};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"ANJUPRJ1";

/// A writer that keeps the CRC32C of what passed through it.
struct Crc<W> {
    inner: W,
    crc: u32,
}

impl<W: Write> Write for Crc<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `parts` (prefix, part) with `version` to `path` atomically. The caller holds
/// the models' write lock, so the parts are consistent with each other.
pub(crate) fn save(
    path: &Path,
    version: u64,
    parts: &[(u8, Arc<MemPart>)],
) -> std::io::Result<u64> {
    let tmp = path.with_extension("tmp");
    let file = File::create(&tmp)?;
    let mut out = Crc {
        inner: BufWriter::with_capacity(1 << 20, file),
        crc: 0,
    };
    out.write_all(MAGIC)?;
    out.write_all(&version.to_le_bytes())?;
    out.write_all(&(parts.len() as u32).to_le_bytes())?;
    let mut entries = 0u64;
    for (prefix, part) in parts {
        let map = part.read();
        out.write_all(&[*prefix])?;
        out.write_all(&(map.len() as u64).to_le_bytes())?;
        for (key, value) in map.iter() {
            out.write_all(&(key.len() as u32).to_le_bytes())?;
            out.write_all(&key)?;
            out.write_all(&(value.len() as u32).to_le_bytes())?;
            out.write_all(value)?;
        }
        entries += map.len() as u64;
    }
    let crc = out.crc;
    let mut buffered = out.inner;
    buffered.write_all(&crc.to_le_bytes())?;
    let file = buffered.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(entries)
}

/// A reader that keeps the CRC32C of what passed through it.
struct CrcReader<R> {
    inner: R,
    crc: u32,
}

impl<R: Read> CrcReader<R> {
    fn bytes<const N: usize>(&mut self) -> std::io::Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.inner.read_exact(&mut buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf);
        Ok(buf)
    }

    fn vec(&mut self, len: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.inner.read_exact(&mut buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf);
        Ok(buf)
    }
}

/// The parts stored in `path` when it holds a whole snapshot of `version`; `Ok(None)`
/// when there is no snapshot; an error saying what is wrong otherwise.
pub(crate) fn load(path: &Path, version: u64) -> Result<Option<Vec<(u8, PackedMap)>>, String> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("opening {}: {e}", path.display())),
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut input = CrcReader {
        inner: BufReader::with_capacity(1 << 20, file),
        crc: 0,
    };
    let io = |e: std::io::Error| format!("reading {}: {e}", path.display());
    if &input.bytes::<8>().map_err(io)? != MAGIC {
        return Err("not a read-model snapshot (bad magic)".into());
    }
    let stored = u64::from_le_bytes(input.bytes::<8>().map_err(io)?);
    if stored != version {
        return Err(format!(
            "snapshot of projection version {stored}, not {version}"
        ));
    }
    let count = u32::from_le_bytes(input.bytes::<4>().map_err(io)?);
    let mut parts = Vec::new();
    for _ in 0..count {
        let [prefix] = input.bytes::<1>().map_err(io)?;
        let entries = u64::from_le_bytes(input.bytes::<8>().map_err(io)?);
        let mut map = PackedMap::default();
        for _ in 0..entries {
            let key_len = u32::from_le_bytes(input.bytes::<4>().map_err(io)?) as u64;
            if key_len > size {
                return Err("a key length runs past the end of the file".into());
            }
            let key = input.vec(key_len as usize).map_err(io)?;
            let value_len = u32::from_le_bytes(input.bytes::<4>().map_err(io)?) as u64;
            if value_len > size {
                return Err("a value length runs past the end of the file".into());
            }
            let value = input.vec(value_len as usize).map_err(io)?;
            map.insert(&key, &value);
        }
        parts.push((prefix, map));
    }
    let computed = input.crc;
    let mut trailer = [0u8; 4];
    input.inner.read_exact(&mut trailer).map_err(io)?;
    if u32::from_le_bytes(trailer) != computed {
        return Err("checksum mismatch".into());
    }
    let mut rest = [0u8; 1];
    if input.inner.read(&mut rest).map_err(io)? != 0 {
        return Err("bytes after the checksum".into());
    }
    Ok(Some(parts))
}
