//! Key encodings of the `proj_` trees. All integers are big-endian; signed instants
//! have their sign bit flipped so that byte order is numeric order. A site is written
//! as a 2-byte length and its bytes, so a site's keys share an exact prefix.

use anju_domain::{Category, RequestId, SiteId, Status, TimerKind, Timestamp, TrackingCode};

pub(crate) const MS_PER_HOUR: i64 = 3_600_000;

pub(crate) fn ts(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

pub(crate) fn read_ts(bytes: &[u8]) -> Option<i64> {
    let raw: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(raw) ^ (1 << 63)) as i64)
}

pub(crate) fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

pub(crate) fn read_i64(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

pub(crate) fn site(site: &SiteId) -> Vec<u8> {
    let bytes = site.0.as_bytes();
    let len = bytes.len().min(u16::MAX as usize);
    let mut key = Vec::with_capacity(len + 2);
    key.extend_from_slice(&(len as u16).to_be_bytes());
    key.extend_from_slice(&bytes[..len]);
    key
}

/// Reads a site prefix; returns the site and the rest of the key.
pub(crate) fn read_site(key: &[u8]) -> Option<(SiteId, &[u8])> {
    let len = u16::from_be_bytes(key.get(..2)?.try_into().ok()?) as usize;
    let bytes = key.get(2..2 + len)?;
    Some((
        SiteId(String::from_utf8(bytes.to_vec()).ok()?),
        &key[2 + len..],
    ))
}

/// `proj_tracking`: the 60 bits of the code, big-endian (8 bytes instead of its 17
/// characters).
pub(crate) fn tracking(code: &TrackingCode) -> [u8; 8] {
    code.value().to_be_bytes()
}

/// `proj_identities`: the identity-number digest (64 hex characters as 32 bytes) and
/// the request; `None` when the digest is not 64 lowercase hex characters.
pub(crate) fn identity(digest: &str, id: &RequestId) -> Option<Vec<u8>> {
    let mut key = identity_prefix(digest)?;
    key.extend_from_slice(&request(id));
    Some(key)
}

/// The 32 bytes of a digest written as 64 lowercase hex characters.
pub(crate) fn identity_prefix(digest: &str) -> Option<Vec<u8>> {
    if !anju_domain::Applicant::is_digest(digest) {
        return None;
    }
    (0..32)
        .map(|i| u8::from_str_radix(&digest[2 * i..2 * i + 2], 16).ok())
        .collect()
}

pub(crate) fn request(id: &RequestId) -> [u8; 16] {
    *id.0.as_bytes()
}

pub(crate) fn read_request(bytes: &[u8]) -> Option<RequestId> {
    Some(RequestId(uuid::Uuid::from_bytes(
        bytes.get(..16)?.try_into().ok()?,
    )))
}

pub(crate) fn category_byte(c: Category) -> u8 {
    Category::ALL.iter().position(|x| *x == c).unwrap_or(0) as u8
}

pub(crate) fn category_of(b: u8) -> Option<Category> {
    Category::ALL.get(b as usize).copied()
}

pub(crate) fn status_byte(s: Status) -> u8 {
    Status::ALL.iter().position(|x| *x == s).unwrap_or(0) as u8
}

pub(crate) fn timer_byte(k: TimerKind) -> u8 {
    match k {
        TimerKind::DeemedAcceptance => 0,
        TimerKind::Warning => 1,
        TimerKind::YellowCard => 2,
        TimerKind::RedCard => 3,
    }
}

pub(crate) fn timer_of(b: u8) -> Option<TimerKind> {
    Some(match b {
        0 => TimerKind::DeemedAcceptance,
        1 => TimerKind::Warning,
        2 => TimerKind::YellowCard,
        3 => TimerKind::RedCard,
        _ => return None,
    })
}

/// The UTC hour an instant falls in (CST hours are the same hours).
pub(crate) fn hour_of(t: Timestamp) -> i64 {
    t.0.div_euclid(MS_PER_HOUR)
}

/// `proj_queue`: site, deadline (`None` = max), request.
pub(crate) fn queue(site_key: &[u8], deadline: Option<Timestamp>, id: &RequestId) -> Vec<u8> {
    let mut key = Vec::with_capacity(site_key.len() + 24);
    key.extend_from_slice(site_key);
    key.extend_from_slice(&order_suffix(deadline, id));
    key
}

/// The (deadline, request) part of a queue key, which is also the page token's content.
pub(crate) fn order_suffix(deadline: Option<Timestamp>, id: &RequestId) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&ts(deadline.map_or(i64::MAX, |d| d.0)));
    out[8..].copy_from_slice(&request(id));
    out
}

/// `proj_timers`: due instant, request, kind.
pub(crate) fn timer(due: Timestamp, id: &RequestId, kind: TimerKind) -> [u8; 25] {
    let mut key = [0u8; 25];
    key[..8].copy_from_slice(&ts(due.0));
    key[8..24].copy_from_slice(&request(id));
    key[24] = timer_byte(kind);
    key
}

/// `proj_counts` and the other per-dimension trees: kind, site, category, then the rest.
pub(crate) fn dimension(kind: u8, site_key: &[u8], category: Category) -> Vec<u8> {
    let mut key = Vec::with_capacity(site_key.len() + 2 + 32);
    key.push(kind);
    key.extend_from_slice(site_key);
    key.push(category_byte(category));
    key
}

/// `proj_counts`: kind, site, category, hour.
pub(crate) fn count(kind: u8, site_key: &[u8], category: Category, hour: i64) -> Vec<u8> {
    let mut key = dimension(kind, site_key, category);
    key.extend_from_slice(&ts(hour));
    key
}

/// `proj_spans` and `proj_remediations`: kind, site, category, instant, request.
pub(crate) fn dated(
    kind: u8,
    site_key: &[u8],
    category: Category,
    at: Timestamp,
    id: &RequestId,
) -> Vec<u8> {
    let mut key = dimension(kind, site_key, category);
    key.extend_from_slice(&ts(at.0));
    key.extend_from_slice(&request(id));
    key
}

/// Parses the part after the kind byte of a dimension key: site, category, rest.
pub(crate) fn read_dimension(key: &[u8]) -> Option<(SiteId, Category, &[u8])> {
    let (site, rest) = read_site(key.get(1..)?)?;
    let category = category_of(*rest.first()?)?;
    Some((site, category, &rest[1..]))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The smallest key greater than every key starting with `prefix`, if any.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_sort_as_bytes() {
        let values = [i64::MIN, -5, -1, 0, 1, 1_772_420_400_000, i64::MAX];
        for pair in values.windows(2) {
            assert!(ts(pair[0]) < ts(pair[1]));
            assert_eq!(read_ts(&ts(pair[0])), Some(pair[0]));
        }
    }

    #[test]
    fn hex_round_trips_and_prefix_end_is_past_the_prefix() {
        assert_eq!(unhex(&hex(&[0, 1, 254, 255])), Some(vec![0, 1, 254, 255]));
        assert_eq!(unhex("zz"), None);
        assert_eq!(prefix_end(&[1, 255]), Some(vec![2]));
        assert_eq!(prefix_end(&[255]), None);
    }
}
