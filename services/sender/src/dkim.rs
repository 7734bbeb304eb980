//! DKIM signing (RFC 6376) of a formatted message: relaxed/relaxed canonicalization,
//! `rsa-sha256` or `ed25519-sha256` (RFC 8463) depending on the tenant's key.
//!
//! Signing works on the exact bytes that leave the sender, not on lettre's message model:
//! lettre writes a multipart message's `Content-Type` as part of the body, so its own
//! signer cannot cover that header, and it takes neither PKCS#8 nor PEM Ed25519 keys.
//! Keys are parsed once, at start; a message is signed in microseconds (Ed25519) to a few
//! milliseconds (RSA-2048).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// Headers we sign when the message has them, in this order. Every header that carries the
/// sender's identity, the content's meaning or the unsubscribe mechanism is covered, so a
/// relay cannot change them without breaking the signature.
pub const SIGNED_HEADERS: &[&str] = &[
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "reply-to",
    "list-unsubscribe",
    "list-unsubscribe-post",
];

/// RFC 8301: verifiers may ignore signatures from RSA keys shorter than this.
const MIN_RSA_BITS: usize = 1024;

/// Why a tenant's private key cannot sign.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM private key (expected \"-----BEGIN PRIVATE KEY-----\" or \"-----BEGIN RSA PRIVATE KEY-----\")")]
    NotPem,
    #[error("unreadable RSA private key: {0}")]
    Rsa(String),
    #[error("unreadable PKCS#8 private key: it is neither RSA ({rsa}) nor Ed25519 ({ed25519})")]
    Pkcs8 { rsa: String, ed25519: String },
    #[error("the RSA key has {0} bits; DKIM needs at least 1024 (2048 recommended)")]
    TooShort(usize),
}

/// Why a message could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("message has no blank line between header and body")]
    NoBody,
    #[error("message header is not valid UTF-8")]
    NotText,
    #[error("message has no From header")]
    NoFrom,
    #[error("rsa signing failed: {0}")]
    Rsa(String),
}

enum Key {
    Rsa(Box<rsa::RsaPrivateKey>),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

/// A tenant's DKIM identity: the signing domain (`d=`), the selector (`s=`) and the key.
pub struct Signer {
    domain: String,
    selector: String,
    key: Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("domain", &self.domain).field("selector", &self.selector).field("algorithm", &self.algorithm()).finish()
    }
}

impl Signer {
    /// Parses a PEM key: RSA as PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8, Ed25519 as
    /// PKCS#8 (`BEGIN PRIVATE KEY`).
    pub fn from_pem(domain: &str, selector: &str, pem: &str) -> Result<Self, KeyError> {
        let pem = pem.trim();
        let key = if pem.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
            let k = rsa::RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| KeyError::Rsa(e.to_string()))?;
            Key::Rsa(Box::new(k))
        } else if pem.starts_with("-----BEGIN PRIVATE KEY-----") {
            match rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
                Ok(k) => Key::Rsa(Box::new(k)),
                Err(rsa_err) => match ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
                    Ok(k) => Key::Ed25519(Box::new(k)),
                    Err(ed_err) => return Err(KeyError::Pkcs8 { rsa: rsa_err.to_string(), ed25519: ed_err.to_string() }),
                },
            }
        } else {
            return Err(KeyError::NotPem);
        };
        if let Key::Rsa(k) = &key {
            k.validate().map_err(|e| KeyError::Rsa(e.to_string()))?;
            let bits = k.size() * 8;
            if bits < MIN_RSA_BITS {
                return Err(KeyError::TooShort(bits));
            }
        }
        Ok(Self { domain: domain.to_ascii_lowercase(), selector: selector.to_owned(), key })
    }

    /// `rsa-sha256` or `ed25519-sha256`.
    pub fn algorithm(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "rsa-sha256",
            Key::Ed25519(_) => "ed25519-sha256",
        }
    }

    /// The message with a `DKIM-Signature` header prepended. `now` becomes `t=`.
    pub fn sign(&self, message: &[u8], now: OffsetDateTime) -> Result<Vec<u8>, SignError> {
        let split = find(message, b"\r\n\r\n").ok_or(SignError::NoBody)?;
        let head = std::str::from_utf8(&message[..split + 2]).map_err(|_| SignError::NotText)?;
        let body = &message[split + 4..];
        let fields = header_fields(head);

        let body_hash = BASE64.encode(Sha256::digest(relaxed_body(body)));
        // Each signed name once, the bottom-most instance (RFC 6376 §5.4.2); ours are unique.
        let signed: Vec<(&str, &str)> = SIGNED_HEADERS
            .iter()
            .filter_map(|want| fields.iter().rev().find(|(name, _)| name.trim_end().eq_ignore_ascii_case(want)).map(|f| (*want, f.1)))
            .collect();
        if !signed.iter().any(|(name, _)| *name == "from") {
            return Err(SignError::NoFrom);
        }
        let names: Vec<&str> = signed.iter().map(|(name, _)| *name).collect();

        // The header as it will be sent, up to the empty `b=`; the signature is appended.
        let unsigned = format!(
            "DKIM-Signature: v=1; a={}; c=relaxed/relaxed; d={}; s={};\r\n\tt={}; h={};\r\n\tbh={};\r\n\tb=",
            self.algorithm(),
            self.domain,
            self.selector,
            now.unix_timestamp().max(0),
            names.join(":"),
            body_hash,
        );
        let mut hashed = Sha256::new();
        for (name, value) in &signed {
            hashed.update(relaxed_header(name, value));
        }
        let own = relaxed_header("dkim-signature", &unsigned["DKIM-Signature:".len()..]);
        hashed.update(own.trim_end_matches("\r\n"));
        let digest = hashed.finalize();

        let signature = match &self.key {
            Key::Rsa(k) => k
                .sign_with_rng(&mut rsa::rand_core::OsRng, rsa::Pkcs1v15Sign::new::<Sha256>(), &digest)
                .map_err(|e| SignError::Rsa(e.to_string()))?,
            // RFC 8463: PureEdDSA over the SHA-256 hash of the canonicalized data.
            Key::Ed25519(k) => ed25519_dalek::Signer::sign(k.as_ref(), &digest).to_bytes().to_vec(),
        };
        let b64 = BASE64.encode(signature);
        let mut out = Vec::with_capacity(unsigned.len() + b64.len() + message.len() + 16);
        out.extend_from_slice(unsigned.as_bytes());
        for (i, chunk) in b64.as_bytes().chunks(72).enumerate() {
            if i > 0 {
                out.extend_from_slice(b"\r\n\t");
            }
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(message);
        Ok(out)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The header block (ending in CRLF) as `(name, value)` pairs; a value keeps its folding.
fn header_fields(head: &str) -> Vec<(&str, &str)> {
    let mut fields = Vec::new();
    let mut start = 0;
    let bytes = head.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'\r' && bytes[i + 1] == b'\n' {
            let next = bytes.get(i + 2).copied();
            // A line starting with whitespace continues the field.
            if !matches!(next, Some(b' ' | b'\t')) {
                let field = &head[start..i];
                if let Some((name, value)) = field.split_once(':') {
                    fields.push((name, value));
                }
                start = i + 2;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    fields
}

/// RFC 6376 §3.4.2: lowercase name, unfold, whitespace runs to one space, no whitespace at
/// the ends of the value or around the colon.
fn relaxed_header(name: &str, value: &str) -> String {
    let mut out = String::with_capacity(name.len() + value.len() + 3);
    out.push_str(&name.trim_end().to_ascii_lowercase());
    out.push(':');
    let mut pending_space = false;
    let mut started = false;
    for c in value.chars() {
        match c {
            '\r' | '\n' => {}
            ' ' | '\t' => pending_space = started,
            c => {
                if pending_space {
                    out.push(' ');
                    pending_space = false;
                }
                out.push(c);
                started = true;
            }
        }
    }
    out.push_str("\r\n");
    out
}

/// RFC 6376 §3.4.4: in every line, whitespace runs become one space and trailing
/// whitespace goes; empty lines at the end go; a non-empty body ends with CRLF.
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut rest = body;
    while let Some(at) = find(rest, b"\r\n") {
        lines.push(&rest[..at]);
        rest = &rest[at + 2..];
    }
    if !rest.is_empty() {
        lines.push(rest);
    }
    while lines.last().is_some_and(|l| l.iter().all(|b| matches!(b, b' ' | b'\t'))) {
        lines.pop();
    }
    let mut out = Vec::with_capacity(body.len());
    for line in lines {
        let mut pending_space = false;
        for &b in line {
            if matches!(b, b' ' | b'\t') {
                pending_space = true;
            } else {
                if pending_space {
                    out.push(b' ');
                    pending_space = false;
                }
                out.push(b);
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    //! The verifier here is written separately from the signer, from the RFC: it reads the
    //! signature's tags, recomputes both hashes and checks the signature with the public key.

    #![allow(clippy::unwrap_used)]

    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::EncodePrivateKey;

    use super::*;

    const RSA_PEM: &str = include_str!("../tests/data/dkim-rsa2048.pem");
    const ED25519_PEM: &str = include_str!("../tests/data/dkim-ed25519.pem");

    enum Public {
        Rsa(rsa::RsaPublicKey),
        Ed25519(ed25519_dalek::VerifyingKey),
    }

    fn rsa_public() -> Public {
        Public::Rsa(rsa::RsaPrivateKey::from_pkcs1_pem(RSA_PEM).unwrap().to_public_key())
    }

    fn ed25519_public() -> Public {
        Public::Ed25519(ed25519_dalek::SigningKey::from_pkcs8_pem(ED25519_PEM).unwrap().verifying_key())
    }

    fn message() -> Vec<u8> {
        let msg = contracts::OutboundMessage {
            spec: contracts::SPEC_VERSION,
            message_id: contracts::MessageId::derive(&["dkim-test"]),
            tenant: contracts::TenantId::parse("demo").unwrap(),
            lane: contracts::Lane::Marketing,
            from: contracts::Mailbox { name: Some("Démo Shop".into()), email: contracts::EmailAddress::parse("orders@demo.example").unwrap() },
            reply_to: None,
            to: contracts::Mailbox { name: Some("Ada".into()), email: contracts::EmailAddress::parse("ada@example.com").unwrap() },
            subject: "Your order  is on its way — thanks!".into(),
            html: "<p>Hello   Ada,</p>\n<p>your parcel ships today.</p>\n".into(),
            text: "Hello   Ada,\n\nyour parcel ships today.   \n\n\n".into(),
            headers: vec![
                ("List-Unsubscribe".into(), "<https://t.example/u/abc>".into()),
                ("List-Unsubscribe-Post".into(), "List-Unsubscribe=One-Click".into()),
            ],
            template: "shipped".into(),
            topic: None,
            cause: contracts::Cause { flow: "f".into(), run_id: uuid::Uuid::nil(), step: 0, event_id: uuid::Uuid::nil() },
        };
        crate::mime::build(&msg).unwrap()
    }

    /// Unfolded header fields of a message, in order, as (name, raw value).
    fn fields(msg: &str) -> Vec<(String, String)> {
        let head = &msg[..msg.find("\r\n\r\n").unwrap()];
        let mut out: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                let last = out.last_mut().unwrap();
                last.1.push_str("\r\n");
                last.1.push_str(line);
            } else {
                let (n, v) = line.split_once(':').unwrap();
                out.push((n.to_owned(), v.to_owned()));
            }
        }
        out
    }

    fn canon_header(name: &str, value: &str) -> String {
        let unfolded = value.replace("\r\n", "");
        let words: Vec<&str> = unfolded.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
        format!("{}:{}\r\n", name.trim().to_lowercase(), words.join(" "))
    }

    fn canon_body(body: &str) -> String {
        let body = body.strip_suffix("\r\n").unwrap_or(body);
        let mut lines: Vec<String> = body
            .split("\r\n")
            .map(|raw| {
                let words = raw.split([' ', '\t']).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
                // A line's leading whitespace is a run like any other: one space remains.
                if raw.starts_with([' ', '\t']) && !words.is_empty() { format!(" {words}") } else { words }
            })
            .collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        lines.iter().map(|l| format!("{l}\r\n")).collect()
    }

    fn tags(value: &str) -> Vec<(String, String)> {
        value
            .split(';')
            .filter(|t| !t.trim().is_empty())
            .map(|t| {
                let (k, v) = t.split_once('=').unwrap();
                (k.trim().to_owned(), v.chars().filter(|c| !c.is_whitespace()).collect())
            })
            .collect()
    }

    /// Verifies the first DKIM-Signature of `msg`; Err says what does not match.
    fn verify(msg: &[u8], key: &Public) -> Result<(), String> {
        let msg = std::str::from_utf8(msg).unwrap();
        let fields = fields(msg);
        let (_, sig_value) = fields.iter().find(|(n, _)| n.eq_ignore_ascii_case("dkim-signature")).ok_or("no signature")?;
        let tags = tags(sig_value);
        let tag = |k: &str| tags.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).ok_or(format!("no {k}="));
        assert_eq!(tag("v")?, "1");
        assert_eq!(tag("c")?, "relaxed/relaxed");
        let body = &msg[msg.find("\r\n\r\n").unwrap() + 4..];
        let bh = BASE64.encode(Sha256::digest(canon_body(body).as_bytes()));
        if bh != tag("bh")? {
            return Err("body hash mismatch".into());
        }
        let mut data = String::new();
        let mut used = vec![false; fields.len()];
        for name in tag("h")?.split(':') {
            // Bottom-up: the last unused instance of the name.
            if let Some(i) = (0..fields.len()).rev().find(|&i| !used[i] && fields[i].0.trim().eq_ignore_ascii_case(name)) {
                used[i] = true;
                data.push_str(&canon_header(&fields[i].0, &fields[i].1));
            }
        }
        // The signature header itself, with the value of its b= tag removed.
        let mut offset = 0;
        let mut cut = None;
        for segment in sig_value.split(';') {
            if let Some((k, _)) = segment.split_once('=')
                && k.trim() == "b"
            {
                cut = Some(offset + k.len() + 1);
            }
            offset += segment.len() + 1;
        }
        let stripped = &sig_value[..cut.ok_or("no b= tag")?];
        data.push_str(canon_header("DKIM-Signature", stripped).trim_end());
        let signature = BASE64.decode(tag("b")?).map_err(|e| e.to_string())?;
        let hash = Sha256::digest(data.as_bytes());
        match key {
            Public::Rsa(k) => {
                assert_eq!(tag("a")?, "rsa-sha256");
                k.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &hash, &signature).map_err(|e| e.to_string())
            }
            Public::Ed25519(k) => {
                assert_eq!(tag("a")?, "ed25519-sha256");
                let sig = ed25519_dalek::Signature::from_slice(&signature).map_err(|e| e.to_string())?;
                k.verify_strict(&hash, &sig).map_err(|e| e.to_string())
            }
        }
    }

    fn at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    #[test]
    fn an_rsa_signed_message_verifies() {
        let signer = Signer::from_pem("Demo.Example", "pf1", RSA_PEM).unwrap();
        assert_eq!(signer.algorithm(), "rsa-sha256");
        let signed = signer.sign(&message(), at()).unwrap();
        verify(&signed, &rsa_public()).unwrap();
        let text = String::from_utf8(signed).unwrap();
        assert!(text.starts_with("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=demo.example; s=pf1;\r\n\tt=1700000000; "), "{text}");
        assert!(
            text.contains("h=from:to:subject:date:message-id:mime-version:content-type:list-unsubscribe:list-unsubscribe-post;"),
            "every present header is signed, absent ones (reply-to) are not: {text}"
        );
    }

    #[test]
    fn an_ed25519_signed_message_verifies() {
        let signer = Signer::from_pem("demo.example", "ed1", ED25519_PEM).unwrap();
        assert_eq!(signer.algorithm(), "ed25519-sha256");
        let signed = signer.sign(&message(), at()).unwrap();
        verify(&signed, &ed25519_public()).unwrap();
    }

    #[test]
    fn a_pkcs8_rsa_key_signs_like_its_pkcs1_form() {
        let pkcs8 = rsa::RsaPrivateKey::from_pkcs1_pem(RSA_PEM).unwrap().to_pkcs8_pem(Default::default()).unwrap();
        let signer = Signer::from_pem("demo.example", "pf1", &pkcs8).unwrap();
        verify(&signer.sign(&message(), at()).unwrap(), &rsa_public()).unwrap();
    }

    #[test]
    fn a_changed_signed_header_breaks_the_signature() {
        for (key, public) in [(RSA_PEM, rsa_public()), (ED25519_PEM, ed25519_public())] {
            let signer = Signer::from_pem("demo.example", "pf1", key).unwrap();
            let signed = String::from_utf8(signer.sign(&message(), at()).unwrap()).unwrap();
            let tampered = signed.replace("List-Unsubscribe: <https://t.example/u/abc>", "List-Unsubscribe: <https://evil.example/u>");
            assert_ne!(tampered, signed);
            assert!(verify(tampered.as_bytes(), &public).is_err(), "a changed List-Unsubscribe must not verify");
            let tampered = signed.replacen("To: ", "To: eve@evil.example, ", 1);
            assert!(verify(tampered.as_bytes(), &public).is_err(), "a changed To must not verify");
            let mut tampered = signed.clone().into_bytes();
            let last = tampered.len() - 5;
            tampered[last] = if tampered[last] == b'x' { b'y' } else { b'x' };
            assert_eq!(verify(&tampered, &public), Err("body hash mismatch".into()));
        }
    }

    #[test]
    fn relaxed_canonicalization_survives_refolding_and_whitespace() {
        let signer = Signer::from_pem("demo.example", "pf1", ED25519_PEM).unwrap();
        let signed = String::from_utf8(signer.sign(&message(), at()).unwrap()).unwrap();
        // A relay that refolds a header and pads the end of a body line changes nothing.
        let refolded = signed.replacen("Subject: ", "Subject:   \r\n\t ", 1);
        let padded = refolded.replacen("your parcel ships today.", "your parcel ships today.  \t", 1);
        assert_ne!(refolded, signed);
        assert_ne!(padded, refolded);
        verify(padded.as_bytes(), &ed25519_public()).unwrap();
    }

    #[test]
    fn canonical_forms_follow_the_rfc_examples() {
        // RFC 6376 §3.4.5: "A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n".
        assert_eq!(relaxed_header("A", " X"), "a:X\r\n");
        assert_eq!(relaxed_header("B ", " Y\t\r\n\tZ  "), "b:Y Z\r\n");
        assert_eq!(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b""), b"");
        assert_eq!(relaxed_body(b"\r\n\r\n"), b"");
        assert_eq!(relaxed_body(b"no newline"), b"no newline\r\n");
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        assert!(matches!(Signer::from_pem("d", "s", "not a key"), Err(KeyError::NotPem)));
        let garbage = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----";
        assert!(matches!(Signer::from_pem("d", "s", garbage), Err(KeyError::Pkcs8 { .. })));
        let small = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 512).unwrap().to_pkcs1_pem(Default::default()).unwrap();
        assert!(matches!(Signer::from_pem("d", "s", &small), Err(KeyError::TooShort(512))));
    }
}
