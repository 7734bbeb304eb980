//! Mailgun webhooks (the JSON ones; the legacy form-encoded webhooks are not accepted).
//!
//! The body carries `signature: {timestamp, token, signature}`, where `signature` is the
//! hex HMAC-SHA256 of `timestamp` followed by `token` under the webhook signing key (the
//! tenant's `webhook_secret`), and `event-data`. A timestamp more than a tolerance away
//! from `now` is refused; the token is returned so the caller can refuse a replay within
//! that window (store it, with the tenant, for at least twice the tolerance).
//!
//! Events:
//! - `failed` with `severity` `permanent`: a hard bounce; but when Mailgun did not even
//!   try because the address is on its lists, `reason` `suppress-complaint` is a
//!   complaint and `suppress-unsubscribe` an unsubscribe;
//! - `failed` with `severity` `temporary`: a soft bounce;
//! - `complained`: a complaint; `unsubscribed`: an unsubscribe;
//! - everything else (`accepted`, `delivered`, `opened`, `clicked`, …): nothing.
//!
//! Our message id is read from `user-variables.postflow_message_id` (sent as the
//! `v:postflow_message_id` parameter), else from the `Message-ID` in `message.headers`.

use std::collections::BTreeMap;

use ring::hmac;
use serde::Deserialize;
use time::{Duration, OffsetDateTime};

use super::{
    Feedback, FeedbackError, FeedbackKind, MESSAGE_ID_FIELD, Origin, clean_reason, enhanced_status,
    json_error, message_id_from, recipient,
};

/// How far the signed timestamp may be from `now`, either side.
pub const DEFAULT_TOLERANCE: Duration = Duration::minutes(10);

/// A verified Mailgun delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailgunDelivery {
    /// The signature's one-time token: refuse a second delivery with the same one.
    pub token: String,
    /// When Mailgun signed the delivery.
    pub signed_at: OffsetDateTime,
    /// Empty for events that are not bounces, complaints or unsubscribes.
    pub feedback: Vec<Feedback>,
}

/// The `signature` object of a webhook body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Signature {
    pub timestamp: String,
    pub token: String,
    pub signature: String,
}

/// Checks `signature` with the signing key, and its timestamp against `now ± tolerance`.
/// Returns the signing time.
pub fn verify(
    signature: &Signature,
    signing_key: &str,
    now: OffsetDateTime,
    tolerance: Duration,
) -> Result<OffsetDateTime, FeedbackError> {
    if signing_key.is_empty() {
        return Err(FeedbackError::NotConfigured);
    }
    if signature.signature.is_empty() || signature.token.is_empty() {
        return Err(FeedbackError::MissingSignature);
    }
    let tag = hex(&signature.signature).ok_or(FeedbackError::BadSignature)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, signing_key.as_bytes());
    let signed = [signature.timestamp.as_bytes(), signature.token.as_bytes()].concat();
    hmac::verify(&key, &signed, &tag).map_err(|_| FeedbackError::BadSignature)?;
    let at = signature
        .timestamp
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .ok_or(FeedbackError::Stale)?;
    if super::within(at, now, tolerance) {
        Ok(at)
    } else {
        Err(FeedbackError::Stale)
    }
}

/// The `signature` value Mailgun sends for `timestamp` and `token` under `signing_key`:
/// lowercase hex HMAC-SHA256. For tests and for replaying a captured webhook locally.
pub fn sign(signing_key: &str, timestamp: &str, token: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, signing_key.as_bytes());
    let signed = [timestamp.as_bytes(), token.as_bytes()].concat();
    hmac::sign(&key, &signed)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Verifies and reads one webhook delivery with the default tolerance. Mailgun puts
/// everything in the body, so no headers are needed.
pub fn parse(
    body: &[u8],
    signing_key: &str,
    now: OffsetDateTime,
) -> Result<MailgunDelivery, FeedbackError> {
    let b: Body = serde_json::from_slice(body).map_err(json_error)?;
    let signature = b.signature.ok_or(FeedbackError::MissingSignature)?;
    let signed_at = verify(&signature, signing_key, now, DEFAULT_TOLERANCE)?;
    // Read only after the signature checked out.
    let data = b
        .event_data
        .ok_or_else(|| FeedbackError::Invalid("missing event-data".to_owned()))?;
    let feedback = event(serde_json::from_value(data).map_err(json_error)?, now)?
        .into_iter()
        .collect();
    Ok(MailgunDelivery {
        token: signature.token,
        signed_at,
        feedback,
    })
}

/// The event mapping alone, without verification (for fuzzing and for tests).
pub fn event_data(json: &[u8], now: OffsetDateTime) -> Result<Option<Feedback>, FeedbackError> {
    event(serde_json::from_slice(json).map_err(json_error)?, now)
}

fn event(e: EventData, now: OffsetDateTime) -> Result<Option<Feedback>, FeedbackError> {
    let kind = match (e.event.as_str(), e.severity.as_deref(), e.reason.as_deref()) {
        ("failed", Some("permanent"), Some("suppress-complaint")) => FeedbackKind::Complaint,
        ("failed", Some("permanent"), Some("suppress-unsubscribe")) => FeedbackKind::Unsubscribe,
        ("failed", Some("permanent"), _) => FeedbackKind::HardBounce,
        ("failed", _, _) => FeedbackKind::SoftBounce,
        ("complained", _, _) => FeedbackKind::Complaint,
        ("unsubscribed", _, _) => FeedbackKind::Unsubscribe,
        _ => return Ok(None),
    };
    let address = e
        .recipient
        .as_deref()
        .and_then(recipient)
        .ok_or_else(|| FeedbackError::Invalid("event without a valid recipient".to_owned()))?;
    let status = e.delivery_status.as_ref();
    let diagnostic = status
        .and_then(|s| {
            s.message
                .as_deref()
                .filter(|m| !m.trim().is_empty())
                .or(s.description.as_deref())
        })
        .filter(|m| !m.trim().is_empty());
    let reason = match (diagnostic, status.and_then(|s| s.code.as_ref())) {
        (Some(m), Some(code)) if !m.trim_start().starts_with(&code.to_string()) => {
            format!("{code} {m}")
        }
        (Some(m), _) => m.to_owned(),
        (None, _) => e.reason.clone().unwrap_or_else(|| e.event.clone()),
    };
    let enhanced = status
        .and_then(|s| s.enhanced_code.as_deref())
        .filter(|c| super::is_enhanced_status(c))
        .map(str::to_owned)
        .or_else(|| diagnostic.and_then(enhanced_status));
    let message_id = e
        .user_variables
        .get(MESSAGE_ID_FIELD)
        .and_then(|v| v.as_str())
        .and_then(message_id_from)
        .or_else(|| {
            e.message
                .as_ref()?
                .headers
                .get("message-id")
                .and_then(|v| v.as_str())
                .and_then(message_id_from)
        });
    Ok(Some(Feedback {
        recipient: address,
        kind,
        origin: Origin::Mailgun,
        reason: clean_reason(&reason),
        status: enhanced,
        message_id,
        event_id: e.id,
        occurred_at: e.timestamp.and_then(super::unix_seconds).unwrap_or(now),
    }))
}

/// Lowercase or uppercase hex to bytes.
fn hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|pair| {
            let digit = |b: u8| char::from(b).to_digit(16);
            u8::try_from(digit(*pair.first()?)? * 16 + digit(*pair.get(1)?)?).ok()
        })
        .collect()
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    signature: Option<Signature>,
    #[serde(default, rename = "event-data")]
    event_data: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct EventData {
    event: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    timestamp: Option<f64>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    recipient: Option<String>,
    #[serde(default)]
    delivery_status: Option<DeliveryStatus>,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    user_variables: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct DeliveryStatus {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    enhanced_code: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    headers: BTreeMap<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const KEY: &str = "key-0123456789abcdef";
    const MID: &str = "m_0123456789abcdef0123456789abcdef";
    const NOW: OffsetDateTime = datetime!(2018-03-19 15:11:10 UTC);

    fn body(
        timestamp: &str,
        token: &str,
        signature: &str,
        event_data: serde_json::Value,
    ) -> Vec<u8> {
        serde_json::json!({
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": event_data
        })
        .to_string()
        .into_bytes()
    }

    /// A permanent failure as Mailgun's documentation shows it, with our user variable.
    fn permanent_failure() -> serde_json::Value {
        serde_json::json!({
            "event": "failed",
            "id": "G9Bn5sl1TC6nu79C8C0bwg",
            "timestamp": 1521472262.908181,
            "log-level": "error",
            "severity": "permanent",
            "reason": "bounce",
            "recipient": "alice@example.com",
            "recipient-domain": "example.com",
            "delivery-status": {
                "attempt-no": 1,
                "code": 550,
                "message": "5.1.1 The email account that you tried to reach does not exist.",
                "description": "",
                "enhanced-code": "5.1.1",
                "mx-host": "smtp-in.example.com",
                "session-seconds": 0.1
            },
            "message": {"headers": {"to": "Alice <alice@example.com>", "message-id": "20130503192659.13651.20287@shop.example",
                                    "from": "Shop <shop@example.org>", "subject": "Your order"}, "size": 111},
            "user-variables": {"postflow_message_id": MID},
            "tags": ["order"]
        })
    }

    #[test]
    fn signed_permanent_failure_is_a_hard_bounce() {
        let ts = "1521472270";
        let token = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0";
        let d = parse(
            &body(ts, token, &sign(KEY, ts, token), permanent_failure()),
            KEY,
            NOW,
        )
        .unwrap();
        assert_eq!(d.token, token);
        assert_eq!(d.signed_at, datetime!(2018-03-19 15:11:10 UTC));
        assert_eq!(d.feedback.len(), 1);
        let f = &d.feedback[0];
        assert_eq!(f.recipient.as_str(), "alice@example.com");
        assert_eq!(f.kind, FeedbackKind::HardBounce);
        assert_eq!(f.origin, Origin::Mailgun);
        assert_eq!(
            f.reason,
            "550 5.1.1 The email account that you tried to reach does not exist."
        );
        assert_eq!(f.status.as_deref(), Some("5.1.1"));
        assert_eq!(f.message_id.as_ref().map(|m| m.as_str()), Some(MID));
        assert_eq!(f.event_id.as_deref(), Some("G9Bn5sl1TC6nu79C8C0bwg"));
        assert_eq!(f.occurred_at.unix_timestamp(), 1_521_472_262);
    }

    #[test]
    fn bad_or_stale_signatures_are_refused() {
        let ts = "1521472270";
        let token = "tok";
        let good = sign(KEY, ts, token);
        let ev = permanent_failure;
        assert_eq!(
            parse(&body(ts, token, &good, ev()), "other-key", NOW),
            Err(FeedbackError::BadSignature)
        );
        assert_eq!(
            parse(&body(ts, "tok2", &good, ev()), KEY, NOW),
            Err(FeedbackError::BadSignature)
        );
        assert_eq!(
            parse(&body("1521472271", token, &good, ev()), KEY, NOW),
            Err(FeedbackError::BadSignature)
        );
        assert_eq!(
            parse(&body(ts, token, "zz", ev()), KEY, NOW),
            Err(FeedbackError::BadSignature)
        );
        assert_eq!(
            parse(&body(ts, token, &good[1..], ev()), KEY, NOW),
            Err(FeedbackError::BadSignature)
        );
        assert_eq!(
            parse(&body(ts, token, &good.to_uppercase(), ev()), KEY, NOW).map(|d| d.token),
            Ok("tok".to_owned())
        );
        assert_eq!(
            parse(&body(ts, token, "", ev()), KEY, NOW),
            Err(FeedbackError::MissingSignature)
        );
        assert_eq!(
            parse(&body(ts, token, &good, ev()), "", NOW),
            Err(FeedbackError::NotConfigured)
        );
        assert_eq!(
            parse(&body(ts, token, &good, ev()), KEY, NOW + Duration::hours(1)),
            Err(FeedbackError::Stale)
        );
        assert_eq!(
            parse(&body(ts, token, &good, ev()), KEY, NOW - Duration::hours(1)),
            Err(FeedbackError::Stale)
        );
        let odd = "soon";
        assert_eq!(
            parse(&body(odd, token, &sign(KEY, odd, token), ev()), KEY, NOW),
            Err(FeedbackError::Stale)
        );
        let no_signature = serde_json::json!({"event-data": ev()}).to_string();
        assert_eq!(
            parse(no_signature.as_bytes(), KEY, NOW),
            Err(FeedbackError::MissingSignature)
        );
    }

    #[test]
    fn events_map_to_kinds() {
        let with = |patch: serde_json::Value| {
            let mut e = permanent_failure();
            for (k, v) in patch.as_object().unwrap() {
                e[k] = v.clone();
            }
            event_data(e.to_string().as_bytes(), NOW)
                .unwrap()
                .map(|f| f.kind)
        };
        assert_eq!(
            with(serde_json::json!({"severity": "temporary", "reason": "generic"})),
            Some(FeedbackKind::SoftBounce)
        );
        assert_eq!(
            with(serde_json::json!({"reason": "suppress-bounce"})),
            Some(FeedbackKind::HardBounce)
        );
        assert_eq!(
            with(serde_json::json!({"reason": "suppress-complaint"})),
            Some(FeedbackKind::Complaint)
        );
        assert_eq!(
            with(serde_json::json!({"reason": "suppress-unsubscribe"})),
            Some(FeedbackKind::Unsubscribe)
        );
        assert_eq!(
            with(serde_json::json!({"event": "complained"})),
            Some(FeedbackKind::Complaint)
        );
        assert_eq!(
            with(serde_json::json!({"event": "unsubscribed"})),
            Some(FeedbackKind::Unsubscribe)
        );
        assert_eq!(with(serde_json::json!({"event": "delivered"})), None);
        assert_eq!(with(serde_json::json!({"event": "opened"})), None);
    }

    #[test]
    fn complaints_fall_back_to_the_message_id_header() {
        let e = serde_json::json!({
            "event": "complained", "id": "-Agny091SquKnsrW2NEKUA", "timestamp": 1521233123.501324,
            "recipient": "alice@example.com",
            "message": {"headers": {"message-id": format!("{MID}@shop.example")}},
            "user-variables": {}
        });
        let f = event_data(e.to_string().as_bytes(), NOW).unwrap().unwrap();
        assert_eq!(f.message_id.as_ref().map(|m| m.as_str()), Some(MID));
        assert_eq!(
            (f.reason.as_str(), f.status.as_deref()),
            ("complained", None)
        );
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [&b""[..], b"{", b"[]", b"{\"signature\":{}}", &[0xff]] {
            assert!(parse(bad, KEY, NOW).is_err(), "{bad:?}");
        }
        let ts = "1521472270";
        let ok_sig = sign(KEY, ts, "t");
        let no_data =
            serde_json::json!({"signature": {"timestamp": ts, "token": "t", "signature": ok_sig}})
                .to_string();
        assert!(matches!(
            parse(no_data.as_bytes(), KEY, NOW),
            Err(FeedbackError::Invalid(_))
        ));
        let no_recipient = body(
            ts,
            "t",
            &ok_sig,
            serde_json::json!({"event": "failed", "severity": "permanent"}),
        );
        assert!(matches!(
            parse(&no_recipient, KEY, NOW),
            Err(FeedbackError::Invalid(_))
        ));
        assert_eq!(hex("0g"), None);
        assert_eq!(hex("abc"), None);
        assert_eq!(hex("00ff"), Some(vec![0, 255]));
    }
}
