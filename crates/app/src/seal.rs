//! Sealing personal data with a resident's key (ChaCha20-Poly1305), and the clear
//! contact details only authorised staff may unseal.
//!
//! A sealed value reads `s1.<resident key id, hex>.<base64url(nonce ‖ ciphertext)>`.
//! The associated data binds it to its request and field, so a sealed value copied
//! into another request or field does not open.

use crate::keys::{DataKey, KeyStore, ResidentKeyId};
use anju_domain::RequestId;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};

const PREFIX: &str = "s1";

/// A resident's contact details in clear. `Debug` masks them so they cannot reach a log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// 11-digit mainland mobile number.
    pub phone: String,
    /// 18-character PRC resident identity number, if given.
    pub id_number: Option<String>,
}

impl Contact {
    /// The phone with all but the last four digits masked, e.g. `*******5678`.
    pub fn masked_phone(&self) -> String {
        mask(&self.phone)
    }
}

/// Masks all but the last four characters.
pub fn mask(text: &str) -> String {
    let count = text.chars().count();
    text.chars()
        .enumerate()
        .map(|(i, c)| if i + 4 >= count { c } else { '*' })
        .collect()
}

impl std::fmt::Debug for Contact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contact")
            .field("phone", &self.masked_phone())
            .field("id_number", &self.id_number.as_ref().map(|_| "(hidden)"))
            .finish()
    }
}

/// The associated data of a sealed value: which request and which field it belongs to.
pub(crate) fn context(request_id: RequestId, field: &str) -> Vec<u8> {
    format!("anju:{request_id}:{field}").into_bytes()
}

/// Encrypts `clear` with a fresh random nonce.
pub(crate) fn seal(
    id: ResidentKeyId,
    key: &DataKey,
    context: &[u8],
    clear: &[u8],
) -> Result<String, String> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.0));
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|e| format!("operating system randomness failed: {e}"))?;
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: clear,
                aad: context,
            },
        )
        .map_err(|_| "sealing failed".to_string())?;
    let mut body = nonce.to_vec();
    body.extend_from_slice(&ciphertext);
    Ok(format!(
        "{PREFIX}.{}.{}",
        id.to_hex(),
        URL_SAFE_NO_PAD.encode(body)
    ))
}

/// The resident key id a sealed value names, if it is well formed.
pub(crate) fn sealed_key_id(sealed: &str) -> Option<ResidentKeyId> {
    let mut parts = sealed.split('.');
    match (parts.next(), parts.next()) {
        (Some(PREFIX), Some(id)) => ResidentKeyId::from_hex(id),
        _ => None,
    }
}

/// Decrypts a sealed value; `None` when the key is erased or the value does not open.
pub(crate) fn unseal(keys: &KeyStore, context: &[u8], sealed: &str) -> Option<Vec<u8>> {
    let mut parts = sealed.split('.');
    let (Some(PREFIX), Some(id), Some(body), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let key = keys.get(ResidentKeyId::from_hex(id)?)?;
    let body = URL_SAFE_NO_PAD.decode(body).ok()?;
    if body.len() < 12 {
        return None;
    }
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.0));
    cipher
        .decrypt(
            Nonce::from_slice(&body[..12]),
            Payload {
                msg: &body[12..],
                aad: context,
            },
        )
        .ok()
}
