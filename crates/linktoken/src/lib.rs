//! Signed tracking tokens for open pixels, click redirects, one-click unsubscribes and the
//! preferences page.
//!
//! A token is `base64url(json claims) "." base64url(hmac)`, where the HMAC-SHA256 key is
//! derived per tenant from a master key (`HMAC(master, "postflow/link/v1/" + tenant)`), so
//! one tenant's tokens can never be replayed against another's. The tracker redirects only
//! to URLs inside a valid token: there is no open redirect.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contracts::{EmailAddress, MessageId, TenantId};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k")]
pub enum Action {
    /// Record an open.
    #[serde(rename = "o")]
    Open,
    /// Record a click and redirect to `u`.
    #[serde(rename = "c")]
    Click { u: String },
    /// Unsubscribe `e` from the tenant's marketing mail. `l`: the recipient's locale, for
    /// the confirmation page (absent in tokens minted before it was added).
    #[serde(rename = "u")]
    Unsubscribe {
        e: EmailAddress,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        l: Option<String>,
    },
    /// Show `e` their marketing choices (topics, all marketing) and let them change them,
    /// in locale `l`.
    #[serde(rename = "p")]
    Preferences {
        e: EmailAddress,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        l: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(rename = "t")]
    pub tenant: TenantId,
    #[serde(rename = "m")]
    pub message_id: MessageId,
    #[serde(flatten)]
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("bad token signature")]
    BadSignature,
}

/// Signs and verifies tokens with a master key.
#[derive(Clone)]
pub struct Signer {
    master: SecretString,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(***)")
    }
}

impl Signer {
    pub fn new(master: SecretString) -> Self {
        Self { master }
    }

    fn mac(&self, tenant: &TenantId) -> HmacSha256 {
        // HMAC accepts keys of any length; these `expect`-free paths cannot fail.
        let mut derive = <HmacSha256 as Mac>::new_from_slice(self.master.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable_key());
        derive.update(b"postflow/link/v1/");
        derive.update(tenant.as_str().as_bytes());
        let key = derive.finalize().into_bytes();
        <HmacSha256 as Mac>::new_from_slice(&key).unwrap_or_else(|_| unreachable_key())
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let body = serde_json::to_vec(claims).unwrap_or_default();
        let mut mac = self.mac(&claims.tenant);
        mac.update(&body);
        let tag = mac.finalize().into_bytes();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&body), URL_SAFE_NO_PAD.encode(&tag[..16]))
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let (body_b64, tag_b64) = token.split_once('.').ok_or(TokenError::Malformed)?;
        if token.len() > 8192 {
            return Err(TokenError::Malformed);
        }
        let body = URL_SAFE_NO_PAD.decode(body_b64).map_err(|_| TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD.decode(tag_b64).map_err(|_| TokenError::Malformed)?;
        if tag.len() != 16 {
            return Err(TokenError::BadSignature);
        }
        // The tenant is needed to pick the key; the claims are only trusted after the check.
        let claims: Claims = serde_json::from_slice(&body).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac(&claims.tenant);
        mac.update(&body);
        mac.verify_truncated_left(&tag).map_err(|_| TokenError::BadSignature)?;
        Ok(claims)
    }
}

#[cold]
fn unreachable_key() -> HmacSha256 {
    // Hmac::new_from_slice only fails for fixed-size-key MACs; HMAC takes any key length.
    unreachable!("hmac accepts keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(k: &str) -> Signer {
        Signer::new(SecretString::from(k.to_owned()))
    }

    fn claims(tenant: &str, action: Action) -> Claims {
        Claims {
            tenant: TenantId::parse(tenant).unwrap(),
            message_id: MessageId::derive(&["x"]),
            action,
        }
    }

    #[test]
    fn round_trips() {
        let s = signer("k");
        let c = claims("demo", Action::Click { u: "https://shop.example/a?b=c&d=é".into() });
        let t = s.sign(&c);
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "{t}");
        assert_eq!(s.verify(&t).unwrap(), c);
    }

    #[test]
    fn preference_tokens_round_trip_and_are_not_unsubscribe_tokens() {
        let s = signer("k");
        let e = EmailAddress::parse("ana@example.com").unwrap();
        let c = claims("demo", Action::Preferences { e: e.clone(), l: Some("fa-IR".into()) });
        let back = s.verify(&s.sign(&c)).unwrap();
        assert_eq!(back, c);
        assert!(!matches!(back.action, Action::Unsubscribe { .. }));
        // Tokens minted before the locale was added still verify.
        let old = claims("demo", Action::Unsubscribe { e, l: None });
        let token = s.sign(&old);
        let body = String::from_utf8(URL_SAFE_NO_PAD.decode(token.split_once('.').unwrap().0).unwrap()).unwrap();
        assert!(!body.contains("\"l\""), "{body}");
        assert_eq!(s.verify(&token).unwrap(), old);
    }

    #[test]
    fn rejects_tampering_other_keys_and_other_tenants() {
        let s = signer("k");
        let t = s.sign(&claims("demo", Action::Click { u: "https://shop.example/".into() }));
        assert_eq!(signer("other").verify(&t), Err(TokenError::BadSignature));
        // Swap the claims for another tenant's, keep the tag: rejected.
        let forged_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims("evil", Action::Click { u: "https://evil.example/".into() })).unwrap());
        let tag = t.split_once('.').unwrap().1;
        assert_eq!(s.verify(&format!("{forged_body}.{tag}")), Err(TokenError::BadSignature));
        assert_eq!(s.verify("nonsense"), Err(TokenError::Malformed));
        assert_eq!(s.verify("a.b"), Err(TokenError::Malformed));
        let short = format!("{}.{}", t.split_once('.').unwrap().0, &tag[..4]);
        assert!(s.verify(&short).is_err());
    }
}
