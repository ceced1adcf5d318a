//! Segment files: naming, headers, creation (optionally zero-filled), and a buffered
//! cursor that reads frames from a given offset.

use crate::codec::{decode_body, decode_header, DecodedFrame, Header, FRAME_HEADER_LEN};
use crate::error::LogError;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes at the start of every segment: magic, first position, CRC32C of both, padding.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 32;
const MAGIC: &[u8; 8] = b"ANJUSEG1";

/// One open segment file; read with positional reads so many readers can share it.
pub(crate) struct Segment {
    pub index: u64,
    pub first_position: u64,
    pub path: PathBuf,
    pub file: File,
}

pub(crate) fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:08}.seg"))
}

/// The index encoded in a segment file name, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn header_bytes(first_position: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&first_position.to_le_bytes());
    let crc = crc32c::crc32c(&header[..16]);
    header[16..20].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Creates a complete segment file under a temporary name, syncs it, renames it into
/// place and syncs the directory, so a crash leaves either no segment or a whole one.
pub(crate) fn create_segment(
    dir: &Path,
    index: u64,
    first_position: u64,
    preallocate_to: u64,
) -> Result<Segment, LogError> {
    let file = prepare_segment_file(dir, index, preallocate_to)?;
    finish_segment(dir, index, file, first_position)
}

fn temporary_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:08}.seg.tmp"))
}

/// The slow half of making a segment, which needs no position yet and so can run ahead
/// of time: a temporary file filled with zeros up to `preallocate_to` and synced.
pub(crate) fn prepare_segment_file(
    dir: &Path,
    index: u64,
    preallocate_to: u64,
) -> Result<File, LogError> {
    let tmp = temporary_path(dir, index);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| LogError::io(tmp.display(), e))?;
    zero_fill(&file, SEGMENT_HEADER_LEN, preallocate_to)
        .map_err(|e| LogError::io(tmp.display(), e))?;
    file.sync_all()
        .map_err(|e| LogError::io(tmp.display(), e))?;
    Ok(file)
}

/// The quick half: write the header, sync, and rename the prepared file into place.
pub(crate) fn finish_segment(
    dir: &Path,
    index: u64,
    file: File,
    first_position: u64,
) -> Result<Segment, LogError> {
    let tmp = temporary_path(dir, index);
    let path = segment_path(dir, index);
    file.write_all_at(&header_bytes(first_position), 0)
        .map_err(|e| LogError::io(tmp.display(), e))?;
    file.sync_all()
        .map_err(|e| LogError::io(tmp.display(), e))?;
    std::fs::rename(&tmp, &path).map_err(|e| LogError::io(path.display(), e))?;
    sync_dir(dir)?;
    Ok(Segment {
        index,
        first_position,
        path,
        file,
    })
}

/// Writes zeros over `[from, to)`: real blocks, so later overwrites need no allocation.
pub(crate) fn zero_fill(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(CHUNK);
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io(dir.display(), e))
}

/// Opens an existing segment and checks its header.
pub(crate) fn open_segment(dir: &Path, index: u64) -> Result<Segment, LogError> {
    open_segment_with(dir, index, true)
}

/// Opens an existing segment for reading only and checks its header.
pub(crate) fn open_segment_read_only(dir: &Path, index: u64) -> Result<Segment, LogError> {
    open_segment_with(dir, index, false)
}

fn open_segment_with(dir: &Path, index: u64, writable: bool) -> Result<Segment, LogError> {
    let path = segment_path(dir, index);
    let file = OpenOptions::new()
        .read(true)
        .write(writable)
        .open(&path)
        .map_err(|e| LogError::io(path.display(), e))?;
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    file.read_exact_at(&mut header, 0).map_err(|e| {
        LogError::Corrupt(format!(
            "segment {} has no complete header: {e}",
            path.display()
        ))
    })?;
    let crc = u32::from_le_bytes(header[16..20].try_into().expect("4 bytes"));
    if &header[..8] != MAGIC || crc32c::crc32c(&header[..16]) != crc {
        return Err(LogError::Corrupt(format!(
            "segment {} has a damaged header",
            path.display()
        )));
    }
    let first_position = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    Ok(Segment {
        index,
        first_position,
        path,
        file,
    })
}

/// What the cursor found at its current offset.
pub(crate) enum Next {
    Frame {
        frame: DecodedFrame,
        offset: u64,
        len: u64,
    },
    /// A zero length or the end of the file exactly at a frame boundary.
    End { offset: u64 },
    /// A torn or damaged frame starts here.
    Damaged { offset: u64, reason: &'static str },
}

/// Reads frames one after another from an offset, buffering the file in chunks.
pub(crate) struct FrameCursor<'a> {
    file: &'a File,
    offset: u64,
    buf: Vec<u8>,
    buf_start: u64,
    chunk: usize,
}

impl<'a> FrameCursor<'a> {
    pub fn new(file: &'a File, offset: u64, chunk: usize) -> FrameCursor<'a> {
        FrameCursor {
            file,
            offset,
            buf: Vec::new(),
            buf_start: offset,
            chunk,
        }
    }

    /// Makes `[offset, offset + n)` available in the buffer; returns how many bytes of it exist.
    fn fill(&mut self, n: usize) -> std::io::Result<usize> {
        let have_from = self.offset.saturating_sub(self.buf_start) as usize;
        let buf_end = self.buf_start + self.buf.len() as u64;
        if self.offset >= self.buf_start && self.offset + n as u64 <= buf_end {
            return Ok(n);
        }
        // Keep what is still ahead of the offset, then read more after it.
        let mut kept = if self.offset >= self.buf_start && self.offset <= buf_end {
            self.buf.split_off(have_from)
        } else {
            Vec::new()
        };
        self.buf_start = self.offset;
        let want = n.max(self.chunk);
        let mut read_at = self.offset + kept.len() as u64;
        let old_len = kept.len();
        kept.resize(want.max(old_len), 0);
        let mut filled = old_len;
        while filled < kept.len() {
            let got = self.file.read_at(&mut kept[filled..], read_at)?;
            if got == 0 {
                break;
            }
            filled += got;
            read_at += got as u64;
        }
        kept.truncate(filled);
        self.buf = kept;
        Ok(filled.min(n))
    }

    pub fn next_frame(&mut self) -> Result<Next, std::io::Error> {
        let offset = self.offset;
        let got = self.fill(FRAME_HEADER_LEN)?;
        if got == 0 {
            return Ok(Next::End { offset });
        }
        if got < FRAME_HEADER_LEN {
            let rel = (offset - self.buf_start) as usize;
            if self.buf[rel..rel + got].iter().all(|b| *b == 0) {
                return Ok(Next::End { offset });
            }
            return Ok(Next::Damaged {
                offset,
                reason: "the file ends inside a frame header",
            });
        }
        let rel = (offset - self.buf_start) as usize;
        let header: [u8; FRAME_HEADER_LEN] = self.buf[rel..rel + FRAME_HEADER_LEN]
            .try_into()
            .expect("8 bytes");
        let (body_len, crc) = match decode_header(&header) {
            Header::End => return Ok(Next::End { offset }),
            Header::Garbage => {
                return Ok(Next::Damaged {
                    offset,
                    reason: "a frame length is out of range",
                })
            }
            Header::Frame { body_len, crc } => (body_len, crc),
        };
        let total = FRAME_HEADER_LEN + body_len;
        if self.fill(total)? < total {
            return Ok(Next::Damaged {
                offset,
                reason: "the file ends inside a frame",
            });
        }
        let rel = (offset - self.buf_start) as usize;
        match decode_body(&self.buf[rel + FRAME_HEADER_LEN..rel + total], crc) {
            Some(frame) => {
                self.offset += total as u64;
                Ok(Next::Frame {
                    frame,
                    offset,
                    len: total as u64,
                })
            }
            None => Ok(Next::Damaged {
                offset,
                reason: "a frame fails its checksum",
            }),
        }
    }
}
