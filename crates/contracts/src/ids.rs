//! Identifiers: tenants, external (shop/carrier) ids and message ids.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// Why an identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {reason}")]
pub struct InvalidId {
    pub kind: &'static str,
    pub reason: &'static str,
}

/// A tenant (one shop). Lowercase ASCII letters, digits and `-`, 1 to 63 characters,
/// starting with a letter or digit, so it is safe in NATS subjects, URLs and file names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct TenantId(#[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]{0,62}$"))] String);

impl TenantId {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let err = |reason| InvalidId { kind: "tenant id", reason };
        if s.is_empty() || s.len() > 63 {
            return Err(err("must be 1 to 63 characters"));
        }
        if s.starts_with('-') {
            return Err(err("must start with a letter or digit"));
        }
        if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(err("only lowercase letters, digits and '-' are allowed"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An id assigned by a shop platform or carrier. Always a string on the wire: Shopify ids
/// exceed 2^53 and would be corrupted by any float on the way.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct ExternalId(String);

impl ExternalId {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<u64> for ExternalId {
    fn from(v: u64) -> Self {
        Self(v.to_string())
    }
}

/// The id of one email. Derived deterministically from its cause (tenant, flow run, step),
/// so that every retry of the same cause names the same message and can be deduplicated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct MessageId(String);

impl MessageId {
    /// The message id for `parts` (e.g. tenant, run id, step index): `m_` and 32 hex digits.
    pub fn derive(parts: &[&str]) -> Self {
        Self(format!("m_{}", digest_hex(parts)))
    }

    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let ok = s.len() == 34
            && s.starts_with("m_")
            && s[2..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidId { kind: "message id", reason: "expected m_ and 32 lowercase hex digits" })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Name-based UUID (v5) over a length-prefixed encoding of `parts`, as 32 hex digits.
/// Length prefixing keeps `("ab", "c")` and `("a", "bc")` apart.
pub(crate) fn digest_hex(parts: &[&str]) -> String {
    let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for part in parts {
        buf.extend_from_slice(&(part.len() as u64).to_le_bytes());
        buf.extend_from_slice(part.as_bytes());
    }
    uuid::Uuid::new_v5(&POSTFLOW_NAMESPACE, &buf).simple().to_string()
}

/// Namespace of every name-based id Postflow derives.
pub(crate) const POSTFLOW_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6f1c_2d3e_8a4b_4c5d_9e6f_7a8b_9c0d_1e2f);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_subject_safe() {
        assert!(TenantId::parse("demo").is_ok());
        assert!(TenantId::parse("shop-42").is_ok());
        for bad in ["", "-a", "Demo", "a.b", "a*", "a>", "a b", &"x".repeat(64)] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(serde_json::from_str::<TenantId>("\"a.b\"").is_err());
    }

    #[test]
    fn message_ids_are_stable_and_distinct() {
        let a = MessageId::derive(&["demo", "run-1", "0"]);
        assert_eq!(a, MessageId::derive(&["demo", "run-1", "0"]));
        assert_ne!(a, MessageId::derive(&["demo", "run-1", "1"]));
        // Length prefixing keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(MessageId::derive(&["ab", "c"]), MessageId::derive(&["a", "bc"]));
        assert_eq!(MessageId::parse(a.as_str()), Ok(a.clone()));
        assert!(MessageId::parse("m_XYZ").is_err());
    }
}
