//! Postmark bounce, spam-complaint and subscription-change webhooks.
//!
//! Postmark signs nothing; it authenticates with HTTP basic auth written into the webhook
//! URL (`https://user:password@…`), which arrives as `Authorization: Basic …`. The
//! password is the tenant's `webhook_secret`, compared in constant time; the user name is
//! not checked.
//!
//! One record per request, by `RecordType`:
//! - `Bounce`: `Type` `HardBounce` and `BadEmailAddress` are hard bounces; `SoftBounce`,
//!   `Transient`, `DnsError`, `Blocked` and `DMARCPolicy` soft; `SpamComplaint` and
//!   `SpamNotification` complaints; `Unsubscribe` an unsubscribe; the rest (auto
//!   responders, challenge verifications, address changes, …) are not about delivery
//!   and yield nothing.
//! - `SpamComplaint`: a complaint.
//! - `SubscriptionChange` with `SuppressSending: true`: a `ManualSuppression` is an
//!   unsubscribe (the recipient used Postmark's unsubscribe link or List-Unsubscribe);
//!   `HardBounce` and `SpamComplaint` suppressions repeat a bounce or complaint already
//!   reported by its own webhook and yield nothing; reactivations yield nothing.
//! - anything else (`Delivery`, `Open`, `Click`): nothing.
//!
//! Our message id is read from `Metadata.postflow_message_id` (sent as the message's
//! `Metadata`).

use std::collections::BTreeMap;

use serde::Deserialize;
use time::OffsetDateTime;

use super::{
    Feedback, FeedbackError, FeedbackKind, Headers, MESSAGE_ID_FIELD, Origin, basic_auth_matches,
    clean_reason, enhanced_status, json_error, message_id_from, recipient, rfc3339,
};

/// Checks `Authorization: Basic base64(user:password)` against the configured password.
pub fn verify<H: Headers + ?Sized>(headers: &H, password: &str) -> Result<(), FeedbackError> {
    basic_auth_matches(headers, password)
}

/// Verifies and reads one Postmark webhook delivery. `now` is the fallback time.
pub fn parse<H: Headers + ?Sized>(
    headers: &H,
    body: &[u8],
    password: &str,
    now: OffsetDateTime,
) -> Result<Vec<Feedback>, FeedbackError> {
    verify(headers, password)?;
    records(body, now)
}

/// The record mapping alone, without authentication (for fuzzing and for tests).
pub fn records(body: &[u8], now: OffsetDateTime) -> Result<Vec<Feedback>, FeedbackError> {
    let r: Record = serde_json::from_slice(body).map_err(json_error)?;
    let (kind, address, at) = match r.record_type.as_str() {
        "Bounce" => {
            let kind = match r.kind.as_deref().unwrap_or("") {
                "HardBounce" | "BadEmailAddress" => FeedbackKind::HardBounce,
                "SoftBounce" | "Transient" | "DnsError" | "Blocked" | "DMARCPolicy" => {
                    FeedbackKind::SoftBounce
                }
                "SpamComplaint" | "SpamNotification" => FeedbackKind::Complaint,
                "Unsubscribe" => FeedbackKind::Unsubscribe,
                _ => return Ok(Vec::new()),
            };
            (kind, r.email.as_deref(), r.bounced_at.as_deref())
        }
        "SpamComplaint" => (
            FeedbackKind::Complaint,
            r.email.as_deref(),
            r.bounced_at.as_deref(),
        ),
        "SubscriptionChange" => {
            if !r.suppress_sending || r.suppression_reason.as_deref() != Some("ManualSuppression") {
                return Ok(Vec::new());
            }
            (
                FeedbackKind::Unsubscribe,
                r.recipient.as_deref(),
                r.changed_at.as_deref(),
            )
        }
        _ => return Ok(Vec::new()),
    };
    let address = address.and_then(recipient).ok_or_else(|| {
        FeedbackError::Invalid("record without a valid recipient address".to_owned())
    })?;
    let details = r.details.as_deref().filter(|d| !d.trim().is_empty());
    let reason = match (&r.description, details) {
        (_, Some(d)) => d.to_owned(),
        (Some(d), None) => d.clone(),
        (None, None) => r
            .kind
            .clone()
            .or(r.suppression_reason.clone())
            .unwrap_or_else(|| r.record_type.clone()),
    };
    Ok(vec![Feedback {
        recipient: address,
        kind,
        origin: Origin::Postmark,
        status: details.and_then(enhanced_status),
        reason: clean_reason(&reason),
        message_id: r
            .metadata
            .get(MESSAGE_ID_FIELD)
            .and_then(|v| v.as_str())
            .and_then(message_id_from),
        event_id: r.id.map(|id| id.to_string()),
        occurred_at: at.and_then(rfc3339).unwrap_or(now),
    }])
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Record {
    record_type: String,
    #[serde(default, rename = "ID")]
    id: Option<serde_json::Number>,
    #[serde(default, rename = "Type")]
    kind: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    recipient: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    bounced_at: Option<String>,
    #[serde(default)]
    changed_at: Option<String>,
    #[serde(default)]
    suppress_sending: bool,
    #[serde(default)]
    suppression_reason: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2019-11-05 17:00 UTC);
    const MID: &str = "m_0123456789abcdef0123456789abcdef";

    fn auth(user_pass: &str) -> [(&'static str, String); 1] {
        [(
            "Authorization",
            format!("Basic {}", STANDARD.encode(user_pass)),
        )]
    }

    /// Postmark's documented bounce webhook example, with our metadata.
    fn hard_bounce() -> String {
        serde_json::json!({
            "RecordType": "Bounce",
            "MessageStream": "outbound",
            "ID": 4323372036854775807u64,
            "Type": "HardBounce",
            "TypeCode": 1,
            "Name": "Hard bounce",
            "Tag": "Test",
            "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "Metadata": {"a_key": "a_value", "postflow_message_id": MID},
            "ServerID": 23,
            "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
            "Email": "john@example.com",
            "From": "sender@example.com",
            "BouncedAt": "2019-11-05T16:33:54.9070259Z",
            "DumpAvailable": true,
            "Inactive": true,
            "CanActivate": true,
            "Subject": "Test subject",
            "Content": "<Full dump of bounce>"
        })
        .to_string()
    }

    #[test]
    fn authenticated_hard_bounce() {
        let f = parse(
            &auth("postmark:s3cret:with:colons"),
            hard_bounce().as_bytes(),
            "s3cret:with:colons",
            NOW,
        )
        .unwrap();
        assert_eq!(f.len(), 1);
        let f = &f[0];
        assert_eq!(f.recipient.as_str(), "john@example.com");
        assert_eq!(f.kind, FeedbackKind::HardBounce);
        assert_eq!(f.origin, Origin::Postmark);
        assert_eq!(
            f.reason,
            "smtp;550 5.1.1 The email account that you tried to reach does not exist."
        );
        assert_eq!(f.status.as_deref(), Some("5.1.1"));
        assert_eq!(f.message_id.as_ref().map(|m| m.as_str()), Some(MID));
        assert_eq!(f.event_id.as_deref(), Some("4323372036854775807"));
        assert_eq!(
            f.occurred_at.unix_timestamp(),
            datetime!(2019-11-05 16:33:54 UTC).unix_timestamp()
        );
    }

    #[test]
    fn wrong_or_missing_credentials_are_refused() {
        let body = hard_bounce();
        let b = body.as_bytes();
        assert_eq!(
            parse(&auth("u:wrong"), b, "s3cret", NOW),
            Err(FeedbackError::BadSignature)
        );
        assert_eq!(
            parse(&auth("u:s3cret "), b, "s3cret", NOW),
            Err(FeedbackError::BadSignature)
        );
        assert_eq!(
            parse(&auth("s3cret"), b, "s3cret", NOW),
            Err(FeedbackError::BadSignature)
        );
        assert_eq!(
            parse(&[("authorization", "Bearer s3cret")], b, "s3cret", NOW),
            Err(FeedbackError::BadSignature)
        );
        assert_eq!(
            parse(&[("authorization", "Basic !!!")], b, "s3cret", NOW),
            Err(FeedbackError::BadSignature)
        );
        let none: [(&str, &str); 0] = [];
        assert_eq!(
            parse(&none, b, "s3cret", NOW),
            Err(FeedbackError::MissingSignature)
        );
        // An unconfigured secret accepts nothing, not even an empty password.
        assert_eq!(
            parse(&auth("u:"), b, "", NOW),
            Err(FeedbackError::NotConfigured)
        );
        // The scheme is case-insensitive.
        let lower = [(
            "authorization",
            format!("basic {}", STANDARD.encode("u:s3cret")),
        )];
        assert!(parse(&lower, b, "s3cret", NOW).is_ok());
    }

    #[test]
    fn bounce_types_map_to_kinds() {
        for (ty, want) in [
            ("HardBounce", Some(FeedbackKind::HardBounce)),
            ("BadEmailAddress", Some(FeedbackKind::HardBounce)),
            ("SoftBounce", Some(FeedbackKind::SoftBounce)),
            ("Transient", Some(FeedbackKind::SoftBounce)),
            ("DnsError", Some(FeedbackKind::SoftBounce)),
            ("SpamNotification", Some(FeedbackKind::Complaint)),
            ("Unsubscribe", Some(FeedbackKind::Unsubscribe)),
            ("AutoResponder", None),
            ("ChallengeVerification", None),
        ] {
            let body = hard_bounce().replace("\"HardBounce\"", &format!("\"{ty}\""));
            let got = records(body.as_bytes(), NOW).unwrap();
            assert_eq!(got.first().map(|f| f.kind), want, "{ty}");
        }
    }

    #[test]
    fn spam_complaints() {
        let body = serde_json::json!({
            "RecordType": "SpamComplaint",
            "MessageStream": "outbound",
            "ID": 42,
            "Type": "SpamComplaint",
            "TypeCode": 512,
            "Name": "Spam complaint",
            "Tag": "Test",
            "MessageID": "00000000-0000-0000-0000-000000000000",
            "Metadata": {"postflow_message_id": MID},
            "ServerID": 1234,
            "Description": "The subscriber explicitly marked this message as spam.",
            "Details": "Test spam complaint details",
            "Email": "john@example.com",
            "From": "sender@example.com",
            "BouncedAt": "2019-11-05T16:33:54.9070259Z",
            "DumpAvailable": true,
            "Inactive": true,
            "CanActivate": false,
            "Subject": "Test subject"
        });
        let f = records(body.to_string().as_bytes(), NOW).unwrap();
        assert_eq!(f[0].kind, FeedbackKind::Complaint);
        assert_eq!(f[0].status, None);
        assert_eq!(f[0].event_id.as_deref(), Some("42"));
    }

    #[test]
    fn subscription_changes() {
        let change = |reason: &str, suppress: bool| {
            serde_json::json!({
                "RecordType": "SubscriptionChange",
                "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
                "ServerID": 123456,
                "MessageStream": "outbound",
                "ChangedAt": "2020-02-01T10:53:34.416071Z",
                "Recipient": "bounced-address@wildbit.com",
                "Origin": "Recipient",
                "SuppressSending": suppress,
                "SuppressionReason": reason,
                "Tag": "my-tag",
                "Metadata": {"example": "value"}
            })
            .to_string()
        };
        let f = records(change("ManualSuppression", true).as_bytes(), NOW).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].kind, f[0].recipient.as_str()),
            (FeedbackKind::Unsubscribe, "bounced-address@wildbit.com")
        );
        assert_eq!(f[0].reason, "ManualSuppression");
        assert_eq!(f[0].message_id, None);
        assert_eq!(
            f[0].occurred_at.date(),
            datetime!(2020-02-01 0:00 UTC).date()
        );
        assert_eq!(
            records(change("HardBounce", true).as_bytes(), NOW).unwrap(),
            vec![]
        );
        assert_eq!(
            records(change("ManualSuppression", false).as_bytes(), NOW).unwrap(),
            vec![]
        );
    }

    #[test]
    fn other_records_and_garbage() {
        assert_eq!(
            records(
                br#"{"RecordType":"Delivery","Recipient":"a@example.com"}"#,
                NOW
            )
            .unwrap(),
            vec![]
        );
        assert!(matches!(
            records(b"{", NOW),
            Err(FeedbackError::MalformedJson(_))
        ));
        assert!(matches!(
            records(b"[]", NOW),
            Err(FeedbackError::Invalid(_))
        ));
        assert!(matches!(
            records(
                br#"{"RecordType":"Bounce","Type":"HardBounce","Email":"nobody"}"#,
                NOW
            ),
            Err(FeedbackError::Invalid(_))
        ));
        // Without a timestamp, the receive time.
        let f = records(
            br#"{"RecordType":"SpamComplaint","Email":"a@example.com"}"#,
            NOW,
        )
        .unwrap();
        assert_eq!(
            (f[0].occurred_at, f[0].reason.as_str()),
            (NOW, "SpamComplaint")
        );
    }
}
