//! Issues and verifies HS256 JWTs carrying [`Claims`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::claims::{Claims, Role};
use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The only header anju issues; verification accepts any header whose `alg` is HS256.
const HEADER_JSON: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Why a token was not accepted. Each variant says what the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization: Bearer <token>` was sent.
    #[error("missing bearer token: send `authorization: Bearer <token>`; issue one with `anju token issue`")]
    Missing,
    /// The value is not a three-part JWT with JSON header and claims.
    #[error("malformed token ({0}): send the token exactly as `anju token issue` printed it")]
    Malformed(String),
    /// The header names an algorithm other than HS256 (including `none`).
    #[error(
        "unsupported token algorithm {0:?}: anju accepts only HS256 tokens from `anju token issue`"
    )]
    UnsupportedAlgorithm(String),
    /// The signature does not match this server's secret: forged, altered, or issued
    /// with another server's secret.
    #[error("bad token signature: the token was not issued with this server's secret; issue a new one with `anju token issue`")]
    BadSignature,
    /// `exp` has passed.
    #[error(
        "token expired at {expired_at} (unix seconds): issue a new one with `anju token issue ...`"
    )]
    Expired { expired_at: u64 },
    /// The `role` claim is not one anju knows.
    #[error("unknown role {0:?} in token: use one of resident, kiosk, caseworker, supervisor, manager, admin")]
    UnknownRole(String),
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Claims as they arrive, with the role still a string so an unknown one gets its own
/// error instead of a generic parse failure.
#[derive(Deserialize)]
struct RawClaims {
    sub: String,
    role: String,
    #[serde(default)]
    sites: Vec<String>,
    #[serde(default)]
    categories: Vec<String>,
    exp: u64,
    iat: u64,
}

fn mac(secret: &Secret) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    HmacSha256::new_from_slice(secret.as_bytes()).expect("hmac accepts keys of any length")
}

/// Signs `claims` into a compact JWT.
pub fn issue(secret: &Secret, claims: &Claims) -> String {
    let payload = serde_json::to_vec(claims).expect("claims serialize to json");
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER_JSON),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let mut mac = mac(secret);
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Verifies `token` against `secret` at `now` (seconds since the Unix epoch).
///
/// Checks run in the order that leaks least: shape, algorithm, signature (constant
/// time), then claims. An empty token is [`AuthError::Missing`].
pub fn verify(secret: &Secret, token: &str, now: u64) -> Result<Claims, AuthError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };

    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| AuthError::Malformed("header is not base64url".into()))?;
    let header: Header = serde_json::from_slice(&header_json)
        .map_err(|_| AuthError::Malformed("header is not a json object with alg".into()))?;
    if header.alg != "HS256" {
        return Err(AuthError::UnsupportedAlgorithm(header.alg));
    }

    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| AuthError::Malformed("signature is not base64url".into()))?;
    let mut mac = mac(secret);
    mac.update(header_b64.as_bytes());
    mac.update(b".");
    mac.update(payload_b64.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| AuthError::BadSignature)?;

    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| AuthError::Malformed("claims are not base64url".into()))?;
    let raw: RawClaims = serde_json::from_slice(&payload)
        .map_err(|error| AuthError::Malformed(format!("claims do not parse: {error}")))?;
    let role = Role::parse(&raw.role).ok_or(AuthError::UnknownRole(raw.role))?;
    if now >= raw.exp {
        return Err(AuthError::Expired {
            expired_at: raw.exp,
        });
    }
    Ok(Claims {
        sub: raw.sub,
        role,
        sites: raw.sites,
        categories: raw.categories,
        exp: raw.exp,
        iat: raw.iat,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn secret() -> Secret {
        Secret::from_bytes(vec![7; 32])
    }

    fn claims() -> Claims {
        Claims {
            sub: "wang".into(),
            role: Role::Caseworker,
            sites: vec!["site-1".into()],
            categories: vec!["elderly-care".into()],
            exp: NOW + 3600,
            iat: NOW,
        }
    }

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    #[test]
    fn issued_token_verifies() {
        let token = issue(&secret(), &claims());
        assert_eq!(verify(&secret(), &token, NOW), Ok(claims()));
    }

    #[test]
    fn token_of_another_secret_is_bad_signature() {
        let forged = issue(&Secret::from_bytes(vec![8; 32]), &claims());
        assert_eq!(
            verify(&secret(), &forged, NOW),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn altered_claims_are_bad_signature() {
        let token = issue(&secret(), &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let mut elevated = claims();
        elevated.role = Role::Admin;
        elevated.sites = vec!["*".into()];
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&elevated).unwrap());
        let forged = format!("{}.{payload}.{}", parts[0], parts[2]);
        assert_eq!(
            verify(&secret(), &forged, NOW),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn expired_token_is_expired() {
        let token = issue(&secret(), &claims());
        let later = claims().exp;
        assert_eq!(
            verify(&secret(), &token, later),
            Err(AuthError::Expired { expired_at: later })
        );
        let message = verify(&secret(), &token, later).unwrap_err().to_string();
        assert!(message.contains("expired"), "{message}");
    }

    #[test]
    fn malformed_tokens_are_malformed() {
        for token in [
            "abc",
            "a.b",
            "a.b.c.d",
            "!!!.e30.sig",
            &format!("{}.e30.c2ln", b64("not json")),
        ] {
            assert!(
                matches!(verify(&secret(), token, NOW), Err(AuthError::Malformed(_))),
                "{token} should be malformed"
            );
        }
        assert_eq!(verify(&secret(), "  ", NOW), Err(AuthError::Missing));
    }

    #[test]
    fn alg_none_is_rejected() {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
        let none_token = format!("{}.{payload}.", b64(r#"{"alg":"none","typ":"JWT"}"#));
        assert_eq!(
            verify(&secret(), &none_token, NOW),
            Err(AuthError::UnsupportedAlgorithm("none".into()))
        );
    }

    #[test]
    fn other_algorithms_are_rejected_even_when_signed_with_the_secret() {
        // An HS512-labelled token signed with HS256 must still be refused: the header
        // never chooses the algorithm.
        let token = issue(&secret(), &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let relabelled = format!("{}.{}.{}", b64(r#"{"alg":"HS512"}"#), parts[1], parts[2]);
        assert_eq!(
            verify(&secret(), &relabelled, NOW),
            Err(AuthError::UnsupportedAlgorithm("HS512".into()))
        );
    }

    #[test]
    fn unknown_role_is_named() {
        let header = b64(HEADER_JSON);
        let payload = b64(&format!(
            r#"{{"sub":"x","role":"root","sites":[],"categories":[],"exp":{},"iat":{NOW}}}"#,
            NOW + 60
        ));
        let input = format!("{header}.{payload}");
        let mut mac = mac(&secret());
        mac.update(input.as_bytes());
        let token = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(
            verify(&secret(), &token, NOW),
            Err(AuthError::UnknownRole("root".into()))
        );
    }
}
