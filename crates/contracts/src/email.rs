//! Email addresses and mailboxes, validated at the edge.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// Why an address was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid email address: {0}")]
pub struct InvalidEmail(&'static str);

/// A syntactically plausible email address (`local@domain`), trimmed, with the domain
/// lowercased. The local part keeps its case (RFC 5321 says it may be significant).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct EmailAddress(#[schemars(email)] String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, InvalidEmail> {
        let s = raw.trim();
        if s.len() > 254 {
            return Err(InvalidEmail("longer than 254 characters"));
        }
        let (local, domain) = s.rsplit_once('@').ok_or(InvalidEmail("missing '@'"))?;
        if local.is_empty() || local.len() > 64 {
            return Err(InvalidEmail("local part must be 1 to 64 characters"));
        }
        if domain.is_empty() || !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
            return Err(InvalidEmail("domain must be a dotted name"));
        }
        let bad = |c: char| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"' | '\\');
        if local.chars().any(|c| bad(c) || c == '@') || domain.chars().any(bad) {
            return Err(InvalidEmail("contains a forbidden character"));
        }
        Ok(Self(format!("{local}@{}", domain.to_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }

    /// The key under which a recipient is known within a tenant: the whole address in
    /// lowercase (mail providers treat local parts case-insensitively in practice).
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An address with an optional display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Mailbox {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub email: EmailAddress,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises() {
        let e = EmailAddress::parse("  Jon@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Jon@example.com");
        assert_eq!(e.domain(), "example.com");
        assert_eq!(e.key(), "jon@example.com");
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "jon", "@x.com", "jon@", "jon@localhost", "a b@x.com", "a@x.com>", "a@@x.com", "a@.x.com"] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
