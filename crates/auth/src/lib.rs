//! Bearer tokens for anju: HS256 JWT claims with role and site scope, and the signing
//! secret the server keeps in its data directory.
//!
//! Tokens are JWTs signed with HMAC-SHA256, implemented here with `hmac`, `sha2` and
//! `base64` rather than `jsonwebtoken`: we need exactly one algorithm, and the
//! `jsonwebtoken` 10+ releases make callers pick a full crypto backend (RSA, ECDSA,
//! EdDSA via `rust_crypto` or the C-built `aws-lc-rs`), which is far more code to
//! compile on a 2-core machine than three small RustCrypto crates. Accepting only
//! `HS256` also rules out the `alg: none` and algorithm-confusion attacks by
//! construction.

mod cache;
mod claims;
mod duration;
mod secret;
mod token;

pub use cache::VerifiedTokens;
pub use claims::{Claims, Role, ALL_SITES};
pub use duration::{parse_duration, DurationError};
pub use secret::{
    load_or_create_secret, read_secret_file, LoadedSecret, Secret, SecretError, SECRET_FILE_NAME,
};
pub use token::{issue, verify, AuthError};
