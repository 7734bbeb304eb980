//! Webhook source adapters: pure functions that check a platform's signature and turn its
//! delivery into contract [`Envelope`](contracts::Envelope)s.
//!
//! Invariant: nothing here does IO, awaits, logs or reads the clock; the HTTP layer passes
//! the headers, the raw body and the receive time in, and maps [`AdapterError`] to a status.

pub mod aftership;
pub mod easypost;
pub mod postflow;
pub mod seventeen_track;
pub mod shippo;
pub mod shopify;
pub mod woocommerce;

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a verified delivery amounts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Events to publish.
    Events(Vec<contracts::Envelope>),
    /// A topic or event this adapter does not turn into events (or a platform's ping):
    /// acknowledge it and move on.
    Ignored { topic: String },
}

/// Why a delivery was refused. Messages are lowercase and never echo a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// The signature header is absent or empty.
    #[error("missing signature header")]
    MissingSignature,
    /// The signature is not valid base64 or matches none of the configured secrets.
    #[error("bad signature")]
    BadSignature,
    /// A required header (named in lowercase) is absent or empty.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// The body is not well-formed JSON (syntax error or truncated).
    #[error("malformed json: {0}")]
    MalformedJson(String),
    /// The body is JSON but not a payload we accept (missing field, wrong type, bad amount).
    #[error("invalid payload: {0}")]
    Invalid(String),
}

/// Request headers as an adapter sees them. Names are matched case-insensitively.
pub trait Headers {
    /// The first value of the header `lowercase_name`, if present.
    fn get(&self, lowercase_name: &str) -> Option<&str>;
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for [(K, V)] {
    fn get(&self, lowercase_name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.as_ref().eq_ignore_ascii_case(lowercase_name))
            .map(|(_, v)| v.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for Vec<(K, V)> {
    fn get(&self, lowercase_name: &str) -> Option<&str> {
        <[(K, V)] as Headers>::get(self.as_slice(), lowercase_name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> Headers for [(K, V); N] {
    fn get(&self, lowercase_name: &str) -> Option<&str> {
        <[(K, V)] as Headers>::get(self.as_slice(), lowercase_name)
    }
}

/// The first of `names` that is present with a non-blank value, trimmed.
pub fn header<'h, H: Headers + ?Sized>(headers: &'h H, names: &[&str]) -> Option<&'h str> {
    names
        .iter()
        .filter_map(|name| headers.get(name))
        .map(str::trim)
        .find(|v| !v.is_empty())
}

type HmacSha256 = Hmac<Sha256>;

/// `base64(HMAC-SHA256(key = secret, msg = body))`, standard alphabet with padding.
#[must_use]
pub fn sign_hmac_b64(secret: &[u8], body: &[u8]) -> String {
    match HmacSha256::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            STANDARD.encode(mac.finalize().into_bytes())
        }
        // HMAC accepts keys of any length; this arm cannot be reached.
        Err(_) => String::new(),
    }
}

/// Whether `signature_b64` is `base64(HMAC-SHA256(secret, body))` for any of `secrets`
/// (several during a secret rotation). Compares in constant time. Empty secrets are
/// skipped, so an unconfigured secret never verifies anything; no secrets, a signature
/// that is not base64, or one of the wrong length give `false`.
pub fn verify_hmac_b64(secrets: &[&[u8]], body: &[u8], signature_b64: &str) -> bool {
    let Ok(tag) = STANDARD.decode(signature_b64.trim()) else {
        return false;
    };
    secrets.iter().filter(|secret| !secret.is_empty()).any(
        |secret| match HmacSha256::new_from_slice(secret) {
            Ok(mut mac) => {
                mac.update(body);
                mac.verify_slice(&tag).is_ok()
            }
            Err(_) => false,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_match_case_insensitively_and_skip_blanks() {
        let h = vec![
            ("X-Thing".to_owned(), "  ".to_owned()),
            ("Other".to_owned(), " v ".to_owned()),
        ];
        assert_eq!(h.get("x-thing"), Some("  "));
        assert_eq!(header(&h, &["x-thing", "other"]), Some("v"));
        assert_eq!(header(&h, &["missing"]), None);
        let arr = [("A", "1")];
        assert_eq!(header(&arr, &["a"]), Some("1"));
        assert_eq!(header(&arr[..], &["a"]), Some("1"));
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?", digest
        // 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843 (here in base64).
        let sig = sign_hmac_b64(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");
        assert!(verify_hmac_b64(
            &[b"Jefe"],
            b"what do ya want for nothing?",
            &sig
        ));
        assert!(!verify_hmac_b64(
            &[b"jefe"],
            b"what do ya want for nothing?",
            &sig
        ));
    }

    #[test]
    fn empty_secrets_never_verify() {
        let sig = sign_hmac_b64(b"", b"body");
        assert!(!verify_hmac_b64(&[b""], b"body", &sig));
        assert!(!verify_hmac_b64(&[], b"body", &sig));
    }
}
