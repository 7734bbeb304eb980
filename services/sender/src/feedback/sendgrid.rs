//! SendGrid Event Webhook: a JSON array of events, signed with ECDSA P-256 (SHA-256)
//! over the `X-Twilio-Email-Event-Webhook-Timestamp` value followed by the raw body; the
//! signature (`X-Twilio-Email-Event-Webhook-Signature`) is base64 of an ASN.1 DER ECDSA
//! signature, and the verification key is base64 of a DER `SubjectPublicKeyInfo` (the
//! tenant's `webhook_secret`, as SendGrid's settings page shows it; PEM armour is
//! accepted too). Timestamps more than a tolerance away from `now` are refused.
//!
//! Events:
//! - `bounce` with `type` `bounce` (or no type): a hard bounce; `type` `blocked`: a soft
//!   bounce (the receiving server refused for reputation or content, the address exists);
//! - `dropped`: SendGrid did not even try, because the address is on one of its lists:
//!   `Bounced Address` and `Invalid` → hard bounce, `Spam Reporting Address` →
//!   complaint, `Unsubscribed Address` → unsubscribe; other reasons yield nothing;
//! - `spamreport`: a complaint;
//! - `unsubscribe` and `group_unsubscribe`: an unsubscribe;
//! - everything else (`processed`, `delivered`, `deferred`, `open`, `click`, …): nothing.
//!
//! Our message id is read from the event's top-level `postflow_message_id` key: SendGrid
//! copies a message's `custom_args` into each of its events.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};
use serde::Deserialize;
use time::{Duration, OffsetDateTime};

use super::x509::{self, PublicKey};
use super::{
    Feedback, FeedbackError, FeedbackKind, Headers, MESSAGE_ID_FIELD, Origin, clean_reason,
    enhanced_status, header, json_error, message_id_from, recipient,
};

pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

/// How far the signed timestamp may be from `now`, either side.
pub const DEFAULT_TOLERANCE: Duration = Duration::minutes(10);

/// Decodes the verification key: base64 DER `SubjectPublicKeyInfo` of a P-256 key, bare
/// or in a `PUBLIC KEY` PEM block.
pub fn verification_key(key: &str) -> Result<Vec<u8>, FeedbackError> {
    let key = key.trim();
    if key.is_empty() {
        return Err(FeedbackError::NotConfigured);
    }
    let der = if key.contains("-----BEGIN") {
        x509::pem_block(key, "PUBLIC KEY").map_err(FeedbackError::BadKey)?
    } else {
        let b64: String = key.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        STANDARD
            .decode(b64)
            .map_err(|_| FeedbackError::BadKey("not base64"))?
    };
    match x509::subject_public_key_info(&der).map_err(FeedbackError::BadKey)? {
        PublicKey::P256(point) => Ok(point),
        PublicKey::Rsa(_) => Err(FeedbackError::BadKey("not a p-256 key")),
    }
}

/// DER `SubjectPublicKeyInfo` prefix for an uncompressed P-256 point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
    0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A fresh signing key as SendGrid holds one: the PKCS#8 private key, and the
/// verification key as SendGrid's settings page shows it (what a tenant configures). For
/// tests and local demos.
pub fn generate_key() -> Result<(Vec<u8>, String), FeedbackError> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| FeedbackError::BadKey("could not generate a p-256 key"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| FeedbackError::BadKey("not a p-256 pkcs#8 key"))?;
    let spki = [&P256_SPKI_PREFIX[..], pair.public_key().as_ref()].concat();
    Ok((pkcs8.as_ref().to_vec(), STANDARD.encode(spki)))
}

/// The signature header value SendGrid sends for `timestamp` and `body` under a PKCS#8
/// P-256 key (see [`generate_key`]). For tests and local demos.
pub fn sign(pkcs8: &[u8], timestamp: &str, body: &[u8]) -> Result<String, FeedbackError> {
    let rng = ring::rand::SystemRandom::new();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng)
        .map_err(|_| FeedbackError::BadKey("not a p-256 pkcs#8 key"))?;
    let signed = [timestamp.as_bytes(), body].concat();
    let signature = pair
        .sign(&rng, &signed)
        .map_err(|_| FeedbackError::BadKey("signing failed"))?;
    Ok(STANDARD.encode(signature.as_ref()))
}

/// Checks the signature headers against the raw body with `key` (see
/// [`verification_key`]), and the timestamp against `now ± tolerance`.
pub fn verify<H: Headers + ?Sized>(
    headers: &H,
    body: &[u8],
    key: &str,
    now: OffsetDateTime,
    tolerance: Duration,
) -> Result<(), FeedbackError> {
    let point = verification_key(key)?;
    let signature = header(headers, SIGNATURE_HEADER).ok_or(FeedbackError::MissingSignature)?;
    let timestamp =
        header(headers, TIMESTAMP_HEADER).ok_or(FeedbackError::MissingHeader(TIMESTAMP_HEADER))?;
    let sig = STANDARD
        .decode(signature)
        .map_err(|_| FeedbackError::BadSignature)?;
    let mut signed = Vec::with_capacity(timestamp.len() + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.extend_from_slice(body);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &point)
        .verify(&signed, &sig)
        .map_err(|_| FeedbackError::BadSignature)?;
    // Checked after the signature, so an unsigned request learns nothing about our clock.
    let at = timestamp
        .parse::<i64>()
        .ok()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .ok_or(FeedbackError::Stale)?;
    if super::within(at, now, tolerance) {
        Ok(())
    } else {
        Err(FeedbackError::Stale)
    }
}

/// Verifies and reads one Event Webhook delivery with the default tolerance.
pub fn parse<H: Headers + ?Sized>(
    headers: &H,
    body: &[u8],
    key: &str,
    now: OffsetDateTime,
) -> Result<Vec<Feedback>, FeedbackError> {
    verify(headers, body, key, now, DEFAULT_TOLERANCE)?;
    events(body, now)
}

/// The event mapping alone, without verification (for fuzzing and for tests). Events
/// without a valid address are skipped; `now` is the fallback time.
pub fn events(body: &[u8], now: OffsetDateTime) -> Result<Vec<Feedback>, FeedbackError> {
    let events: Vec<Event> = serde_json::from_slice(body).map_err(json_error)?;
    Ok(events
        .into_iter()
        .filter_map(|e| feedback(e, now))
        .collect())
}

fn feedback(e: Event, now: OffsetDateTime) -> Option<Feedback> {
    let reason = e.reason.as_deref().unwrap_or("");
    let kind = match e.event.as_str() {
        "bounce" => match e.kind.as_deref() {
            Some("blocked") => FeedbackKind::SoftBounce,
            _ => FeedbackKind::HardBounce,
        },
        "dropped" => match reason {
            "Bounced Address" | "Invalid" => FeedbackKind::HardBounce,
            "Spam Reporting Address" => FeedbackKind::Complaint,
            "Unsubscribed Address" => FeedbackKind::Unsubscribe,
            _ => return None,
        },
        "spamreport" => FeedbackKind::Complaint,
        "unsubscribe" | "group_unsubscribe" => FeedbackKind::Unsubscribe,
        _ => return None,
    };
    let status = e
        .status
        .filter(|s| super::is_enhanced_status(s))
        .or_else(|| enhanced_status(reason));
    let reason = if reason.is_empty() {
        e.event.clone()
    } else {
        reason.to_owned()
    };
    Some(Feedback {
        recipient: recipient(e.email.as_deref()?)?,
        kind,
        origin: Origin::Sendgrid,
        reason: clean_reason(&reason),
        status,
        message_id: e
            .custom
            .get(MESSAGE_ID_FIELD)
            .and_then(|v| v.as_str())
            .and_then(message_id_from),
        event_id: e.sg_event_id,
        occurred_at: e
            .timestamp
            .and_then(|t| super::unix_seconds(t.as_f64()?))
            .unwrap_or(now),
    })
}

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    timestamp: Option<serde_json::Number>,
    event: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    sg_event_id: Option<String>,
    /// Everything else, including the message's `custom_args`.
    #[serde(flatten)]
    custom: serde_json::Map<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2017-12-15 01:00 UTC);
    const MID: &str = "m_0123456789abcdef0123456789abcdef";

    struct Key {
        pkcs8: Vec<u8>,
        /// As the tenant configures it: base64 DER.
        public_b64: String,
    }

    fn key() -> Key {
        let (pkcs8, public_b64) = generate_key().unwrap();
        Key { pkcs8, public_b64 }
    }

    impl Key {
        fn headers(&self, timestamp: &str, body: &[u8]) -> Vec<(String, String)> {
            vec![
                (
                    "X-Twilio-Email-Event-Webhook-Signature".to_owned(),
                    sign(&self.pkcs8, timestamp, body).unwrap(),
                ),
                (
                    "X-Twilio-Email-Event-Webhook-Timestamp".to_owned(),
                    timestamp.to_owned(),
                ),
            ]
        }
    }

    /// Events as SendGrid documents them, with our custom argument.
    fn body() -> Vec<u8> {
        serde_json::json!([
            {"email": "example@test.com", "timestamp": 1513299569, "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
             "event": "bounce", "category": "cat facts", "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==",
             "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", "reason": "500 unknown recipient",
             "status": "5.0.0", "type": "bounce", "postflow_message_id": MID},
            {"email": "blocked@test.com", "timestamp": 1513299569, "event": "bounce", "type": "blocked",
             "reason": "550 5.7.1 Service unavailable; client host blocked using Spamhaus", "status": "5.7.1",
             "bounce_classification": "Reputation", "sg_event_id": "blocked-1"},
            {"email": "dropped@test.com", "timestamp": 1513299569, "event": "dropped", "reason": "Bounced Address",
             "status": "5.0.0", "sg_event_id": "dropped-1"},
            {"email": "again@test.com", "timestamp": 1513299569, "event": "dropped", "reason": "Spam Content (if spam checker app enabled)"},
            {"email": "spam@test.com", "timestamp": 1513299569, "event": "spamreport", "sg_event_id": "spam-1"},
            {"email": "unsub@test.com", "timestamp": 1513299569, "event": "unsubscribe"},
            {"email": "group@test.com", "timestamp": 1513299569, "event": "group_unsubscribe", "asm_group_id": 10},
            {"email": "later@test.com", "timestamp": 1513299569, "event": "deferred", "response": "400 try again later", "attempt": "5"},
            {"email": "ok@test.com", "timestamp": 1513299569, "event": "delivered", "response": "250 OK"},
            {"email": "not an address", "timestamp": 1513299569, "event": "bounce"}
        ])
        .to_string()
        .into_bytes()
    }

    #[test]
    fn signed_events_map_to_feedback() {
        let k = key();
        let b = body();
        let headers = k.headers("1513299600", &b);
        let f = parse(&headers, &b, &k.public_b64, NOW).unwrap();
        let summary: Vec<_> = f.iter().map(|f| (f.recipient.as_str(), f.kind)).collect();
        assert_eq!(
            summary,
            [
                ("example@test.com", FeedbackKind::HardBounce),
                ("blocked@test.com", FeedbackKind::SoftBounce),
                ("dropped@test.com", FeedbackKind::HardBounce),
                ("spam@test.com", FeedbackKind::Complaint),
                ("unsub@test.com", FeedbackKind::Unsubscribe),
                ("group@test.com", FeedbackKind::Unsubscribe),
            ]
        );
        let first = &f[0];
        assert_eq!(first.reason, "500 unknown recipient");
        assert_eq!(first.status.as_deref(), Some("5.0.0"));
        assert_eq!(first.message_id.as_ref().map(|m| m.as_str()), Some(MID));
        assert_eq!(first.event_id.as_deref(), Some("6g4ZI7SA-xmRDv57GoPIPw=="));
        assert_eq!(first.occurred_at, datetime!(2017-12-15 00:59:29 UTC));
        assert_eq!(first.origin, Origin::Sendgrid);
        assert_eq!(f[1].status.as_deref(), Some("5.7.1"));
        assert_eq!(
            (f[3].reason.as_str(), f[3].message_id.as_ref()),
            ("spamreport", None)
        );
    }

    #[test]
    fn pem_keys_are_accepted() {
        let k = key();
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            k.public_b64
        );
        let b = body();
        assert!(parse(&k.headers("1513299600", &b), &b, &pem, NOW).is_ok());
    }

    #[test]
    fn bad_signatures_keys_and_timestamps_are_refused() {
        let k = key();
        let b = body();
        let headers = k.headers("1513299600", &b);

        let mut tampered = b.clone();
        tampered[10] ^= 1;
        assert_eq!(
            parse(&headers, &tampered, &k.public_b64, NOW),
            Err(FeedbackError::BadSignature)
        );
        // The timestamp is part of what is signed.
        let mut moved = headers.clone();
        moved[1].1 = "1513299601".to_owned();
        assert_eq!(
            parse(&moved, &b, &k.public_b64, NOW),
            Err(FeedbackError::BadSignature)
        );
        // Another tenant's key.
        assert_eq!(
            parse(&headers, &b, &key().public_b64, NOW),
            Err(FeedbackError::BadSignature)
        );
        // Signed, but too old or too far ahead.
        assert_eq!(
            parse(&headers, &b, &k.public_b64, NOW + Duration::hours(1)),
            Err(FeedbackError::Stale)
        );
        assert_eq!(
            parse(&headers, &b, &k.public_b64, NOW - Duration::hours(1)),
            Err(FeedbackError::Stale)
        );
        let signed_garbage_time = k.headers("yesterday", &b);
        assert_eq!(
            parse(&signed_garbage_time, &b, &k.public_b64, NOW),
            Err(FeedbackError::Stale)
        );

        assert_eq!(
            parse(&headers[1..], &b, &k.public_b64, NOW),
            Err(FeedbackError::MissingSignature)
        );
        assert_eq!(
            parse(&headers[..1], &b, &k.public_b64, NOW),
            Err(FeedbackError::MissingHeader(TIMESTAMP_HEADER))
        );
        assert_eq!(
            parse(&headers, &b, "", NOW),
            Err(FeedbackError::NotConfigured)
        );
        assert!(matches!(
            parse(&headers, &b, "bm90IGEga2V5", NOW),
            Err(FeedbackError::BadKey(_))
        ));
        assert!(matches!(
            parse(&headers, &b, "%%%", NOW),
            Err(FeedbackError::BadKey(_))
        ));
    }

    #[test]
    fn garbage_bodies_are_errors() {
        assert!(matches!(
            events(b"[{", NOW),
            Err(FeedbackError::MalformedJson(_))
        ));
        assert!(matches!(
            events(b"{\"event\":\"bounce\"}", NOW),
            Err(FeedbackError::Invalid(_))
        ));
        assert!(matches!(
            events(b"[{\"email\":\"a@example.com\"}]", NOW),
            Err(FeedbackError::Invalid(_))
        ));
        assert_eq!(events(b"[]", NOW).unwrap(), vec![]);
        // No timestamp: the receive time.
        let f = events(br#"[{"email":"a@example.com","event":"spamreport"}]"#, NOW).unwrap();
        assert_eq!(f[0].occurred_at, NOW);
    }
}
