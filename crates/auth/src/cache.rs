//! Tokens already verified, so that a client making many calls with one token (a kiosk,
//! a caseworker's session) has its signature checked and its claims parsed once: the
//! HMAC, the base64 and the JSON took about 3 % of the server's time under the
//! end-to-end submission load.
//!
//! A token is found by its exact text (signature included), so a hit is a token this
//! secret already verified; its expiry is checked again on every use. Only verified
//! tokens are kept, and the cache is emptied when it holds `capacity` of them.

use crate::{verify, AuthError, Claims, Secret};
use std::collections::HashMap;
use std::sync::Mutex;

pub struct VerifiedTokens {
    tokens: Mutex<HashMap<Box<str>, Claims>>,
    capacity: usize,
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> VerifiedTokens {
        VerifiedTokens {
            tokens: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// [`verify`], answered from the cache for a token verified before and not expired.
    pub fn verify(&self, secret: &Secret, token: &str, now: u64) -> Result<Claims, AuthError> {
        {
            let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            match tokens.get(token) {
                Some(claims) if now < claims.exp => return Ok(claims.clone()),
                Some(_) => {
                    tokens.remove(token);
                }
                None => {}
            }
        }
        let claims = verify(secret, token, now)?;
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.len() >= self.capacity {
            tokens.clear();
        }
        tokens.insert(token.into(), claims.clone());
        Ok(claims)
    }

    /// How many tokens are kept.
    pub fn len(&self) -> usize {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{issue, Role};

    fn claims(sub: &str, exp: u64) -> Claims {
        Claims {
            sub: sub.into(),
            role: Role::Caseworker,
            sites: vec!["SC-LS-001".into()],
            categories: Vec::new(),
            exp,
            iat: 1_000,
        }
    }

    #[test]
    fn a_cached_token_still_expires_and_a_forged_one_is_never_let_in() {
        let secret = Secret::from_bytes(vec![7u8; 32]);
        let cache = VerifiedTokens::new(2);
        let token = issue(&secret, &claims("cw-1", 2_000));
        assert_eq!(cache.verify(&secret, &token, 1_500).unwrap().sub, "cw-1");
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.verify(&secret, &token, 1_999).unwrap().sub, "cw-1");
        assert!(matches!(
            cache.verify(&secret, &token, 2_000),
            Err(AuthError::Expired { .. })
        ));
        assert!(cache.is_empty(), "an expired token leaves the cache");
        // Another secret's token, and a changed signature, fail however often tried.
        let other = issue(&Secret::from_bytes(vec![8u8; 32]), &claims("cw-2", 9_000));
        let mut forged = token.clone();
        forged.pop();
        forged.push(if token.ends_with('A') { 'B' } else { 'A' });
        for _ in 0..2 {
            assert!(matches!(
                cache.verify(&secret, &other, 1_500),
                Err(AuthError::BadSignature)
            ));
            assert!(cache.verify(&secret, &forged, 1_500).is_err());
        }
        assert!(cache.is_empty());
        // Full: emptied before the next one goes in.
        for n in 0..3 {
            let token = issue(&secret, &claims(&format!("cw-{n}"), 9_000));
            cache.verify(&secret, &token, 1_500).unwrap();
        }
        assert_eq!(cache.len(), 1);
    }
}
