//! Identifiers and parsed codes: request ids, actors, sites, categories, service codes
//! and the tracking codes residents use to follow a request.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The id of one service request; its event stream is `request-<uuid>`. The server
/// makes it (a UUID v7 is a good choice); the domain only carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub uuid::Uuid);

impl RequestId {
    /// The name of this request's stream in the event log.
    pub fn stream_name(&self) -> String {
        format!("request-{}", self.0)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Who acted: a resident's or staff member's opaque account id. Never a name or an
/// identity number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActorId(pub String);

impl ActorId {
    pub fn new(id: impl Into<String>) -> Self {
        ActorId(id.into())
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A resettlement site (安置区 / community) a request belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SiteId(pub String);

impl SiteId {
    pub fn new(id: impl Into<String>) -> Self {
        SiteId(id.into())
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The eight service categories. Serialized as stable ASCII names; the catalogue
/// file may also use the Chinese name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// 民政
    #[serde(alias = "民政")]
    CivilAffairs,
    /// 养老
    #[serde(alias = "养老")]
    ElderlyCare,
    /// 托幼
    #[serde(alias = "托幼")]
    Childcare,
    /// 就医
    #[serde(alias = "就医")]
    Medical,
    /// 就学
    #[serde(alias = "就学")]
    Schooling,
    /// 助残
    #[serde(alias = "助残")]
    Disability,
    /// 就业
    #[serde(alias = "就业")]
    Employment,
    /// 社区
    #[serde(alias = "社区")]
    Community,
}

impl Category {
    pub const ALL: [Category; 8] = [
        Category::CivilAffairs,
        Category::ElderlyCare,
        Category::Childcare,
        Category::Medical,
        Category::Schooling,
        Category::Disability,
        Category::Employment,
        Category::Community,
    ];

    /// The stable ASCII name used in events and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::CivilAffairs => "civil_affairs",
            Category::ElderlyCare => "elderly_care",
            Category::Childcare => "childcare",
            Category::Medical => "medical",
            Category::Schooling => "schooling",
            Category::Disability => "disability",
            Category::Employment => "employment",
            Category::Community => "community",
        }
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            Category::CivilAffairs => "民政",
            Category::ElderlyCare => "养老",
            Category::Childcare => "托幼",
            Category::Medical => "就医",
            Category::Schooling => "就学",
            Category::Disability => "助残",
            Category::Employment => "就业",
            Category::Community => "社区",
        }
    }

    /// Parses either the ASCII name or the Chinese name.
    pub fn parse(text: &str) -> Option<Category> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == text || c.name_zh() == text)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a service code or tracking code was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("service code {0:?} is malformed: use 3 to 32 uppercase letters, digits and single hyphens, starting with a letter (e.g. MZ-DIBAO)")]
    MalformedServiceCode(String),
    #[error("tracking code {0:?} is malformed: expected AJ- followed by 12 letters or digits, like AJ-7K2M-QX9D-4HTR")]
    MalformedTrackingCode(String),
    #[error("tracking code {code:?} contains {symbol:?}, which is not used in tracking codes")]
    TrackingCodeSymbol { code: String, symbol: char },
}

/// A service's code in the catalogue, e.g. `MZ-DIBAO`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceCode(String);

impl ServiceCode {
    pub fn parse(text: &str) -> Result<ServiceCode, CodeError> {
        let bad = || CodeError::MalformedServiceCode(text.to_string());
        let ok_chars = text
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
        if !(3..=32).contains(&text.len())
            || !ok_chars
            || !text.as_bytes()[0].is_ascii_uppercase()
            || text.ends_with('-')
            || text.contains("--")
        {
            return Err(bad());
        }
        Ok(ServiceCode(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ServiceCode {
    type Error = CodeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        ServiceCode::parse(&value)
    }
}

impl From<ServiceCode> for String {
    fn from(code: ServiceCode) -> String {
        code.0
    }
}

impl fmt::Display for ServiceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Crockford's base32 alphabet: no I, L, O or U, so codes read aloud and typed at a
/// kiosk are hard to get wrong.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The code a resident uses to follow a request: `AJ-XXXX-XXXX-XXXX`, twelve
/// Crockford base32 symbols carrying 60 random bits that the server supplies. It is
/// unguessable in practice (2^60 codes), and the status lookup also asks for the last
/// four digits of the applicant's phone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrackingCode(String);

impl TrackingCode {
    /// Makes a code from 8 random bytes (the server reads them from the OS; the
    /// domain has no randomness). The top 4 bits are not used.
    pub fn from_random_bytes(bytes: [u8; 8]) -> TrackingCode {
        let mut value = u64::from_be_bytes(bytes) & ((1 << 60) - 1);
        let mut symbols = [0u8; 12];
        for slot in symbols.iter_mut().rev() {
            *slot = CROCKFORD[(value & 31) as usize];
            value >>= 5;
        }
        let s = |r: std::ops::Range<usize>| String::from_utf8_lossy(&symbols[r]).into_owned();
        TrackingCode(format!("AJ-{}-{}-{}", s(0..4), s(4..8), s(8..12)))
    }

    /// Parses a code as a person typed it: case does not matter, hyphens and spaces
    /// are optional, and the look-alikes O, I and L are read as 0, 1 and 1.
    pub fn parse(text: &str) -> Result<TrackingCode, CodeError> {
        let compact: String = text
            .chars()
            .filter(|c| !matches!(c, '-' | ' '))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let Some(body) = compact.strip_prefix("AJ") else {
            return Err(CodeError::MalformedTrackingCode(text.to_string()));
        };
        if body.chars().count() != 12 {
            return Err(CodeError::MalformedTrackingCode(text.to_string()));
        }
        let mut symbols = String::with_capacity(12);
        for c in body.chars() {
            let c = match c {
                'O' => '0',
                'I' | 'L' => '1',
                other => other,
            };
            if !c.is_ascii() || !CROCKFORD.contains(&(c as u8)) {
                return Err(CodeError::TrackingCodeSymbol {
                    code: text.to_string(),
                    symbol: c,
                });
            }
            symbols.push(c);
        }
        Ok(TrackingCode(format!(
            "AJ-{}-{}-{}",
            &symbols[0..4],
            &symbols[4..8],
            &symbols[8..12]
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 60 bits the code carries: `TrackingCode::from_value(code.value()) == code`.
    pub fn value(&self) -> u64 {
        self.0
            .bytes()
            .skip(3)
            .filter(|b| *b != b'-')
            .fold(0u64, |value, symbol| {
                let digit = CROCKFORD
                    .iter()
                    .position(|c| *c == symbol)
                    .expect("a tracking code holds only Crockford symbols");
                value << 5 | digit as u64
            })
    }

    /// The code carrying the low 60 bits of `value`.
    pub fn from_value(value: u64) -> TrackingCode {
        TrackingCode::from_random_bytes(value.to_be_bytes())
    }
}

impl TryFrom<String> for TrackingCode {
    type Error = CodeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        TrackingCode::parse(&value)
    }
}

impl From<TrackingCode> for String {
    fn from(code: TrackingCode) -> String {
        code.0
    }
}

impl fmt::Display for TrackingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
