//! Amazon SES bounce and complaint notifications, delivered by SNS over HTTPS.
//!
//! SNS posts a JSON message whose `Type` is `SubscriptionConfirmation`, `Notification` or
//! `UnsubscribeConfirmation`, signed with RSA (`SignatureVersion` 1: SHA1withRSA, 2:
//! SHA256withRSA) over a canonical string of its fields. The signing certificate is named
//! by `SigningCertURL`; fetching it is IO and so the caller's job:
//!
//! 1. [`envelope`] reads the (still untrusted) message and gives `SigningCertURL`;
//! 2. the caller checks it with [`SesConfig::trusts_signing_cert_url`], fetches the PEM
//!    over HTTPS (and caches it by URL);
//! 3. [`parse`] verifies the signature with that certificate (valid at `now`), checks the
//!    topic against the tenant's allow-list and the message's age, and returns an
//!    [`SnsOutcome`]. A subscription confirmation yields the `SubscribeURL` the caller
//!    must GET (checked with [`subscribe_url_is_trusted`]).
//!
//! The topic allow-list matters: any AWS account can make SNS sign a message, so a
//! valid signature alone says nothing about whose SES account sent it.
//!
//! Only SNS's own endpoints are trusted for `SigningCertURL` and `SubscribeURL`, unless
//! [`SesConfig::trusted_url_prefix`] names one more (a local SNS stand-in in tests, set by
//! the sender's `insecure_sns_url_prefix`); nothing else widens the check.
//!
//! Our message id is read, in order, from the SES message tag
//! [`MESSAGE_ID_FIELD`](super::MESSAGE_ID_FIELD) (`mail.tags`, present with configuration
//! set event publishing), the `X-Postflow-Message-Id` header in `mail.headers` (present
//! when the identity's notifications include original headers), and
//! `mail.commonHeaders.messageId`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;
use time::{Duration, OffsetDateTime};

use super::x509::{self, PublicKey};
use super::{
    Feedback, FeedbackError, FeedbackKind, Headers, MESSAGE_ID_FIELD, MESSAGE_ID_HEADER, Origin,
    clean_reason, header, json_error, message_id_from, recipient, rfc3339,
};

/// SNS retries a failed delivery for up to an hour with its default policy; older
/// messages are refused as replays.
pub const DEFAULT_MAX_AGE: Duration = Duration::hours(1);
/// How far in the future a message's `Timestamp` may be (clock skew).
pub const MAX_SKEW: Duration = Duration::minutes(5);

/// What to accept for one tenant.
#[derive(Debug, Clone, Copy)]
pub struct SesConfig<'a> {
    /// Topic ARNs this tenant's SES notifications are published to. Empty accepts nothing.
    pub topic_arns: &'a [&'a str],
    /// Oldest `Timestamp` accepted.
    pub max_age: Duration,
    /// One more URL prefix trusted for `SigningCertURL` and `SubscribeURL` besides SNS's
    /// endpoints, e.g. `http://127.0.0.1:4080/sns/`. For tests against a local SNS
    /// stand-in only; `None` (the default) trusts SNS alone.
    pub trusted_url_prefix: Option<&'a str>,
}

impl<'a> SesConfig<'a> {
    pub fn new(topic_arns: &'a [&'a str]) -> Self {
        Self {
            topic_arns,
            max_age: DEFAULT_MAX_AGE,
            trusted_url_prefix: None,
        }
    }

    /// Whether `url` may be fetched as the signing certificate: an SNS endpoint (see
    /// [`signing_cert_url_is_trusted`]) or a URL under the configured override.
    pub fn trusts_signing_cert_url(&self, url: &str) -> bool {
        signing_cert_url_is_trusted(url) || self.under_override(url)
    }

    /// Whether a `SubscribeURL` may be fetched: an SNS endpoint (see
    /// [`subscribe_url_is_trusted`]) or a URL under the configured override.
    pub fn trusts_subscribe_url(&self, url: &str) -> bool {
        subscribe_url_is_trusted(url) || self.under_override(url)
    }

    fn under_override(&self, url: &str) -> bool {
        self.trusted_url_prefix.is_some_and(|prefix| {
            let Some(rest) = url.strip_prefix(prefix) else { return false };
            let path = rest.split(['?', '#']).next().unwrap_or_default();
            url_prefix_is_usable(prefix)
                // No way back out of the prefix: no `..` segment, and no percent-escapes in
                // the path (an HTTP client resolves `%2e%2e` as `..`).
                && !path.split('/').any(|segment| segment == "..")
                && !path.contains('%')
                && !url
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
        })
    }
}

/// Whether `prefix` can serve as [`SesConfig::trusted_url_prefix`]: `http://` or
/// `https://`, a host, and a path ending in `/` (so that `http://127.0.0.1:1/` cannot be
/// extended into `http://127.0.0.1:10/` or `http://127.0.0.1:1.evil.example/`).
pub fn url_prefix_is_usable(prefix: &str) -> bool {
    let Some(rest) = prefix
        .strip_prefix("https://")
        .or_else(|| prefix.strip_prefix("http://"))
    else {
        return false;
    };
    match rest.split_once('/') {
        Some((host, _)) => !host.is_empty() && !host.contains('@') && prefix.ends_with('/'),
        None => false,
    }
}

/// The SNS message as posted. Nothing in it is trusted before [`parse`] verified it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnsEnvelope {
    #[serde(rename = "Type")]
    pub kind: String,
    pub message_id: String,
    pub topic_arn: String,
    #[serde(default)]
    pub subject: Option<String>,
    pub message: String,
    pub timestamp: String,
    pub signature_version: String,
    pub signature: String,
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
    #[serde(default, rename = "SubscribeURL")]
    pub subscribe_url: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
}

/// What a verified SNS message asks of us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnsOutcome {
    /// A notification: the feedback it carries (empty for deliveries, sends, opens and
    /// the other SES events that are not about a failed recipient).
    Feedback {
        /// The SNS `MessageId`, unique per notification: a replay key.
        sns_message_id: String,
        feedback: Vec<Feedback>,
    },
    /// SNS asks us to confirm the subscription: GET `subscribe_url` (already checked with
    /// [`SesConfig::trusts_subscribe_url`]).
    ConfirmSubscription {
        topic_arn: String,
        subscribe_url: String,
    },
    /// The subscription was removed; nothing to do.
    Unsubscribed { topic_arn: String },
}

/// Reads the SNS message without trusting it, for its `SigningCertURL`.
pub fn envelope(body: &[u8]) -> Result<SnsEnvelope, FeedbackError> {
    serde_json::from_slice(body).map_err(json_error)
}

/// Whether the certificate URL is one SNS signs with: `https`, host
/// `sns.<region>.amazonaws.com`, no user, port, query or fragment, path ending `.pem`.
pub fn signing_cert_url_is_trusted(url: &str) -> bool {
    sns_url(url).is_some_and(|path| path.len() > "/.pem".len() && path.ends_with(".pem"))
}

/// Whether a `SubscribeURL` is an SNS endpoint we may GET: `https`, host
/// `sns.<region>.amazonaws.com`, no user or port.
pub fn subscribe_url_is_trusted(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    if rest
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return false;
    }
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest.get(..host_end).is_some_and(is_sns_host)
}

/// The path of an `https://sns.<region>.amazonaws.com/...` URL without query or fragment.
fn sns_url(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://")?;
    if rest.contains(['?', '#', '\\']) || rest.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let (host, path) = rest.split_at(rest.find('/')?);
    (is_sns_host(host) && !path.contains("/../")).then_some(path)
}

/// `sns.<region>.amazonaws.com`, region like `us-east-1` or `us-gov-west-1`.
fn is_sns_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let Some(region) = host
        .strip_prefix("sns.")
        .and_then(|h| h.strip_suffix(".amazonaws.com"))
    else {
        return false;
    };
    !region.is_empty()
        && region.split('-').count() >= 3
        && region.split('-').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// The string SNS signs, per its documented field order: for `Notification` `Message`,
/// `MessageId`, `Subject` (only if present), `Timestamp`, `TopicArn`, `Type`; for
/// `SubscriptionConfirmation` and `UnsubscribeConfirmation` `Message`, `MessageId`,
/// `SubscribeURL`, `Timestamp`, `Token`, `TopicArn`, `Type`. Each as `Name\nvalue\n`.
pub fn canonical_string(m: &SnsEnvelope) -> Result<String, FeedbackError> {
    let mut fields: Vec<(&str, &str)> = vec![("Message", &m.message), ("MessageId", &m.message_id)];
    match m.kind.as_str() {
        "Notification" => {
            if let Some(subject) = &m.subject {
                fields.push(("Subject", subject));
            }
            fields.extend([
                ("Timestamp", m.timestamp.as_str()),
                ("TopicArn", &m.topic_arn),
                ("Type", &m.kind),
            ]);
        }
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
            let missing = |name: &str| FeedbackError::Invalid(format!("{} without {name}", m.kind));
            let subscribe_url = m
                .subscribe_url
                .as_deref()
                .ok_or_else(|| missing("SubscribeURL"))?;
            let token = m.token.as_deref().ok_or_else(|| missing("Token"))?;
            fields.extend([
                ("SubscribeURL", subscribe_url),
                ("Timestamp", &m.timestamp),
                ("Token", token),
                ("TopicArn", &m.topic_arn),
                ("Type", &m.kind),
            ]);
        }
        _ => {
            return Err(FeedbackError::Invalid(
                "unknown sns message type".to_owned(),
            ));
        }
    }
    let mut s = String::new();
    for (name, value) in fields {
        s.push_str(name);
        s.push('\n');
        s.push_str(value);
        s.push('\n');
    }
    Ok(s)
}

/// Checks the message's signature with `cert_pem` (the certificate at its
/// `SigningCertURL`, which must be trusted by `config` and valid at `now`).
pub fn verify(
    m: &SnsEnvelope,
    cert_pem: &str,
    config: &SesConfig<'_>,
    now: OffsetDateTime,
) -> Result<(), FeedbackError> {
    if !config.trusts_signing_cert_url(&m.signing_cert_url) {
        return Err(FeedbackError::UntrustedCertificate(
            "signing certificate url is not an sns endpoint".to_owned(),
        ));
    }
    let untrusted = |e: &str| FeedbackError::UntrustedCertificate(e.to_owned());
    let der = x509::pem_block(cert_pem, "CERTIFICATE").map_err(untrusted)?;
    let cert = x509::certificate(&der).map_err(untrusted)?;
    if !cert.valid_at(now) {
        return Err(untrusted("certificate is not valid now"));
    }
    let PublicKey::Rsa(key) = cert.key else {
        return Err(untrusted("certificate key is not rsa"));
    };
    let algorithm: &'static signature::RsaParameters = match m.signature_version.as_str() {
        "1" => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        "2" => &signature::RSA_PKCS1_2048_8192_SHA256,
        _ => {
            return Err(FeedbackError::Invalid(
                "unknown sns signature version".to_owned(),
            ));
        }
    };
    let sig = STANDARD
        .decode(m.signature.trim())
        .map_err(|_| FeedbackError::BadSignature)?;
    let canonical = canonical_string(m)?;
    UnparsedPublicKey::new(algorithm, key)
        .verify(canonical.as_bytes(), &sig)
        .map_err(|_| FeedbackError::BadSignature)
}

/// Verifies and reads one SNS delivery for a tenant. `cert_pem` is the certificate at
/// the message's `SigningCertURL` (see the module docs).
pub fn parse<H: Headers + ?Sized>(
    headers: &H,
    body: &[u8],
    cert_pem: &str,
    config: &SesConfig<'_>,
    now: OffsetDateTime,
) -> Result<SnsOutcome, FeedbackError> {
    let m = envelope(body)?;
    if let Some(declared) = header(headers, "x-amz-sns-message-type")
        && declared != m.kind
    {
        return Err(FeedbackError::Invalid(
            "x-amz-sns-message-type does not match the message".to_owned(),
        ));
    }
    verify(&m, cert_pem, config, now)?;
    if !config
        .topic_arns
        .iter()
        .any(|arn| !arn.is_empty() && *arn == m.topic_arn)
    {
        return Err(FeedbackError::TopicNotAllowed);
    }
    let sent = rfc3339(&m.timestamp)
        .ok_or_else(|| FeedbackError::Invalid("bad sns timestamp".to_owned()))?;
    if now - sent > config.max_age || sent - now > MAX_SKEW {
        return Err(FeedbackError::Stale);
    }
    match m.kind.as_str() {
        "SubscriptionConfirmation" => {
            let url = m.subscribe_url.unwrap_or_default();
            if !config.trusts_subscribe_url(&url) {
                return Err(FeedbackError::Invalid(
                    "subscribe url is not an sns endpoint".to_owned(),
                ));
            }
            Ok(SnsOutcome::ConfirmSubscription {
                topic_arn: m.topic_arn,
                subscribe_url: url,
            })
        }
        "UnsubscribeConfirmation" => Ok(SnsOutcome::Unsubscribed {
            topic_arn: m.topic_arn,
        }),
        _ => {
            let feedback = notification(&m.message, sent)?;
            Ok(SnsOutcome::Feedback {
                sns_message_id: m.message_id,
                feedback,
            })
        }
    }
}

/// The SES notification or event inside an SNS `Message`, as feedback. Events other than
/// bounces, complaints and unsubscribes yield nothing. `received` is the fallback time.
pub fn notification(
    message: &str,
    received: OffsetDateTime,
) -> Result<Vec<Feedback>, FeedbackError> {
    let n: Notification = serde_json::from_str(message).map_err(json_error)?;
    let kind = n
        .notification_type
        .as_deref()
        .or(n.event_type.as_deref())
        .unwrap_or("");
    let message_id = n.mail.as_ref().and_then(Mail::message_id);
    let mut out = Vec::new();
    match kind {
        "Bounce" => {
            let b = n
                .bounce
                .ok_or_else(|| FeedbackError::Invalid("bounce without bounce object".to_owned()))?;
            let kind = match b.bounce_type.as_str() {
                "Permanent" => FeedbackKind::HardBounce,
                // "Transient" and "Undetermined": nothing says the address is gone.
                _ => FeedbackKind::SoftBounce,
            };
            let at = b.timestamp.as_deref().and_then(rfc3339).unwrap_or(received);
            let summary = match &b.bounce_sub_type {
                Some(sub) => format!("{} ({sub})", b.bounce_type),
                None => b.bounce_type.clone(),
            };
            for r in b.bounced_recipients {
                let Some(address) = recipient(&r.email_address) else {
                    continue;
                };
                out.push(Feedback {
                    recipient: address,
                    kind,
                    origin: Origin::Ses,
                    reason: clean_reason(r.diagnostic_code.as_deref().unwrap_or(&summary)),
                    status: r.status.filter(|s| super::is_enhanced_status(s)),
                    message_id: message_id.clone(),
                    event_id: b.feedback_id.clone(),
                    occurred_at: at,
                });
            }
        }
        "Complaint" => {
            let c = n.complaint.ok_or_else(|| {
                FeedbackError::Invalid("complaint without complaint object".to_owned())
            })?;
            // ARF `not-spam`: the recipient moved the message out of the spam folder.
            if c.complaint_feedback_type.as_deref() == Some("not-spam") {
                return Ok(out);
            }
            let at = c.timestamp.as_deref().and_then(rfc3339).unwrap_or(received);
            let reason = clean_reason(&format!(
                "complaint: {}",
                c.complaint_feedback_type.as_deref().unwrap_or("abuse")
            ));
            for r in c.complained_recipients {
                let Some(address) = recipient(&r.email_address) else {
                    continue;
                };
                out.push(Feedback {
                    recipient: address,
                    kind: FeedbackKind::Complaint,
                    origin: Origin::Ses,
                    reason: reason.clone(),
                    status: None,
                    message_id: message_id.clone(),
                    event_id: c.feedback_id.clone(),
                    occurred_at: at,
                });
            }
        }
        // SES list management: the recipient unsubscribed from all topics of a contact list.
        "Subscription" => {
            let Some(s) = n.subscription else {
                return Ok(out);
            };
            if !s.new_topic_preferences.is_some_and(|p| p.unsubscribe_all) {
                return Ok(out);
            }
            let at = s.timestamp.as_deref().and_then(rfc3339).unwrap_or(received);
            for to in n.mail.iter().flat_map(|m| m.destination.iter()) {
                let Some(address) = recipient(to) else {
                    continue;
                };
                out.push(Feedback {
                    recipient: address,
                    kind: FeedbackKind::Unsubscribe,
                    origin: Origin::Ses,
                    reason: clean_reason(&format!(
                        "unsubscribed via {}",
                        s.source.as_deref().unwrap_or("ses")
                    )),
                    status: None,
                    message_id: message_id.clone(),
                    event_id: None,
                    occurred_at: at,
                });
            }
        }
        _ => {}
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    #[serde(default)]
    notification_type: Option<String>,
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    bounce: Option<Bounce>,
    #[serde(default)]
    complaint: Option<Complaint>,
    #[serde(default)]
    subscription: Option<Subscription>,
    #[serde(default)]
    mail: Option<Mail>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bounce {
    bounce_type: String,
    #[serde(default)]
    bounce_sub_type: Option<String>,
    #[serde(default)]
    bounced_recipients: Vec<BouncedRecipient>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    feedback_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BouncedRecipient {
    email_address: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    diagnostic_code: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Complaint {
    #[serde(default)]
    complained_recipients: Vec<ComplainedRecipient>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    feedback_id: Option<String>,
    #[serde(default)]
    complaint_feedback_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ComplainedRecipient {
    email_address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subscription {
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    new_topic_preferences: Option<TopicPreferences>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TopicPreferences {
    #[serde(default)]
    unsubscribe_all: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mail {
    #[serde(default)]
    destination: Vec<String>,
    #[serde(default)]
    tags: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    headers: Vec<MailHeader>,
    #[serde(default)]
    common_headers: Option<CommonHeaders>,
}

#[derive(Deserialize)]
struct MailHeader {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommonHeaders {
    #[serde(default)]
    message_id: Option<String>,
}

impl Mail {
    fn message_id(&self) -> Option<contracts::MessageId> {
        let tag = self
            .tags
            .get(MESSAGE_ID_FIELD)
            .and_then(|v| v.first())
            .and_then(|v| message_id_from(v));
        tag.or_else(|| {
            self.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(MESSAGE_ID_HEADER))
                .find_map(|h| message_id_from(&h.value))
        })
        .or_else(|| {
            self.common_headers
                .as_ref()?
                .message_id
                .as_deref()
                .and_then(message_id_from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-feedback";
    const CERT_URL: &str =
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem";
    const MID: &str = "m_0123456789abcdef0123456789abcdef";
    const NOW: OffsetDateTime = datetime!(2024-03-04 12:00:30 UTC);

    struct Signer {
        key: rsa::RsaPrivateKey,
        cert_pem: String,
    }

    /// A 2048-bit RSA key made for this test run and a self-signed certificate for it,
    /// valid 2024 to 2029. Made once: key generation is slow in debug builds.
    fn signer() -> &'static Signer {
        static SIGNER: std::sync::OnceLock<Signer> = std::sync::OnceLock::new();
        SIGNER.get_or_init(make_signer)
    }

    fn make_signer() -> Signer {
        use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        let key_pair = rcgen::KeyPair::from_pem(&pem).unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["sns.amazonaws.com".to_owned()]).unwrap();
        params.not_before = datetime!(2024-01-01 0:00 UTC);
        params.not_after = datetime!(2030-01-01 0:00 UTC);
        let cert = params.self_signed(&key_pair).unwrap();
        Signer {
            key,
            cert_pem: cert.pem(),
        }
    }

    impl Signer {
        /// PKCS#1 v1.5 over the canonical string: SHA-1 for version 1, SHA-256 for 2. The
        /// `DigestInfo` is written out here, independently of the verifier.
        fn sign(&self, m: &mut SnsEnvelope) {
            use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY, SHA256, digest};
            const SHA1_INFO: &[u8] = &[
                0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
                0x14,
            ];
            const SHA256_INFO: &[u8] = &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ];
            let canonical = canonical_string(m).unwrap();
            let (info, hash) = match m.signature_version.as_str() {
                "1" => (
                    SHA1_INFO,
                    digest(&SHA1_FOR_LEGACY_USE_ONLY, canonical.as_bytes()),
                ),
                _ => (SHA256_INFO, digest(&SHA256, canonical.as_bytes())),
            };
            let sig = self
                .key
                .sign(
                    rsa::Pkcs1v15Sign::new_unprefixed(),
                    &[info, hash.as_ref()].concat(),
                )
                .unwrap();
            m.signature = STANDARD.encode(sig);
        }
    }

    fn notification_envelope(message: &str, version: &str) -> SnsEnvelope {
        SnsEnvelope {
            kind: "Notification".to_owned(),
            message_id: "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324".to_owned(),
            topic_arn: TOPIC.to_owned(),
            subject: None,
            message: message.to_owned(),
            timestamp: "2024-03-04T12:00:00.000Z".to_owned(),
            signature_version: version.to_owned(),
            signature: String::new(),
            signing_cert_url: CERT_URL.to_owned(),
            subscribe_url: None,
            token: None,
        }
    }

    /// The SNS JSON body, as SNS posts it (with `UnsubscribeURL`, which is not signed).
    fn body(m: &SnsEnvelope) -> Vec<u8> {
        let mut v = serde_json::json!({
            "Type": m.kind, "MessageId": m.message_id, "TopicArn": m.topic_arn, "Message": m.message,
            "Timestamp": m.timestamp, "SignatureVersion": m.signature_version, "Signature": m.signature,
            "SigningCertURL": m.signing_cert_url,
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
        });
        if let Some(s) = &m.subject {
            v["Subject"] = s.as_str().into();
        }
        if let Some(u) = &m.subscribe_url {
            v["SubscribeURL"] = u.as_str().into();
        }
        if let Some(t) = &m.token {
            v["Token"] = t.as_str().into();
        }
        serde_json::to_vec(&v).unwrap()
    }

    /// A bounce notification as SES documents it (with message tags from a
    /// configuration set).
    fn bounce_message() -> String {
        serde_json::json!({
            "notificationType": "Bounce",
            "bounce": {
                "feedbackId": "0102017f-bounce-feedback-id",
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "bouncedRecipients": [
                    {"emailAddress": "jane@example.com", "action": "failed", "status": "5.1.1",
                     "diagnosticCode": "smtp; 550 5.1.1 user unknown"},
                    {"emailAddress": "not an address"}
                ],
                "timestamp": "2024-03-04T11:59:58.000Z",
                "remoteMtaIp": "127.0.2.0",
                "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com"
            },
            "mail": {
                "timestamp": "2024-03-04T11:59:57.000Z",
                "source": "shop@example.org",
                "messageId": "0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000",
                "destination": ["jane@example.com"],
                "tags": {"ses:configuration-set": ["postflow"], "postflow_message_id": [MID]}
            }
        })
        .to_string()
    }

    const HEADERS: [(&str, &str); 1] = [("x-amz-sns-message-type", "Notification")];

    #[test]
    fn signed_bounce_notifications_verify_in_both_signature_versions() {
        let s = signer();
        for version in ["1", "2"] {
            let mut m = notification_envelope(&bounce_message(), version);
            s.sign(&mut m);
            let out = parse(
                &HEADERS,
                &body(&m),
                &s.cert_pem,
                &SesConfig::new(&[TOPIC]),
                NOW,
            )
            .unwrap();
            let SnsOutcome::Feedback {
                sns_message_id,
                feedback,
            } = out
            else {
                panic!("{out:?}")
            };
            assert_eq!(sns_message_id, "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324");
            assert_eq!(feedback.len(), 1, "the unparseable recipient is skipped");
            let f = &feedback[0];
            assert_eq!(f.recipient.as_str(), "jane@example.com");
            assert_eq!(f.kind, FeedbackKind::HardBounce);
            assert_eq!(f.origin, Origin::Ses);
            assert_eq!(f.reason, "smtp; 550 5.1.1 user unknown");
            assert_eq!(f.status.as_deref(), Some("5.1.1"));
            assert_eq!(f.message_id.as_ref().map(|m| m.as_str()), Some(MID));
            assert_eq!(f.event_id.as_deref(), Some("0102017f-bounce-feedback-id"));
            assert_eq!(f.occurred_at, datetime!(2024-03-04 11:59:58 UTC));
        }
    }

    #[test]
    fn the_subject_is_signed_when_present() {
        let s = signer();
        let mut m = notification_envelope(&bounce_message(), "2");
        m.subject = Some("Amazon SES Email Event Notification".to_owned());
        s.sign(&mut m);
        assert!(
            canonical_string(&m)
                .unwrap()
                .contains("\nSubject\nAmazon SES Email Event Notification\n")
        );
        assert!(
            parse(
                &HEADERS,
                &body(&m),
                &s.cert_pem,
                &SesConfig::new(&[TOPIC]),
                NOW
            )
            .is_ok()
        );
        // Dropping the subject from the body changes the signed string.
        m.subject = None;
        assert_eq!(
            parse(
                &HEADERS,
                &body(&m),
                &s.cert_pem,
                &SesConfig::new(&[TOPIC]),
                NOW
            ),
            Err(FeedbackError::BadSignature)
        );
    }

    #[test]
    fn canonical_notification_string_follows_the_documented_order() {
        let mut m = notification_envelope("hello", "1");
        m.subject = Some("subj".to_owned());
        assert_eq!(
            canonical_string(&m).unwrap(),
            format!(
                "Message\nhello\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\nSubject\nsubj\n\
                 Timestamp\n2024-03-04T12:00:00.000Z\nTopicArn\n{TOPIC}\nType\nNotification\n"
            )
        );
    }

    #[test]
    fn tampering_and_wrong_keys_are_refused() {
        let s = signer();
        let config = SesConfig::new(&[TOPIC]);
        let mut m = notification_envelope(&bounce_message(), "2");
        s.sign(&mut m);

        let mut tampered = m.clone();
        tampered.message = tampered
            .message
            .replace("jane@example.com", "ceo@example.com");
        assert_eq!(
            parse(&HEADERS, &body(&tampered), &s.cert_pem, &config, NOW),
            Err(FeedbackError::BadSignature)
        );

        let mut downgraded = m.clone();
        downgraded.signature_version = "1".to_owned();
        assert_eq!(
            parse(&HEADERS, &body(&downgraded), &s.cert_pem, &config, NOW),
            Err(FeedbackError::BadSignature)
        );

        let mut garbled = m.clone();
        garbled.signature = "not base64!".to_owned();
        assert_eq!(
            parse(&HEADERS, &body(&garbled), &s.cert_pem, &config, NOW),
            Err(FeedbackError::BadSignature)
        );

        // Same message, certificate of another key.
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let other_cert = rcgen::CertificateParams::new(vec!["sns.amazonaws.com".to_owned()])
            .unwrap()
            .self_signed(&other)
            .unwrap()
            .pem();
        assert!(matches!(
            parse(&HEADERS, &body(&m), &other_cert, &config, NOW),
            Err(FeedbackError::UntrustedCertificate(_))
        ));
        assert!(matches!(
            parse(&HEADERS, &body(&m), "garbage", &config, NOW),
            Err(FeedbackError::UntrustedCertificate(_))
        ));

        // The certificate must be valid at `now`.
        let later = datetime!(2031-01-01 0:00 UTC);
        assert!(matches!(
            parse(&HEADERS, &body(&m), &s.cert_pem, &config, later),
            Err(FeedbackError::UntrustedCertificate(_))
        ));
    }

    #[test]
    fn a_cert_url_off_sns_is_refused_even_with_a_good_signature() {
        let s = signer();
        let mut m = notification_envelope(&bounce_message(), "2");
        m.signing_cert_url = "https://attacker.example/SimpleNotificationService.pem".to_owned();
        s.sign(&mut m);
        assert!(matches!(
            parse(
                &HEADERS,
                &body(&m),
                &s.cert_pem,
                &SesConfig::new(&[TOPIC]),
                NOW
            ),
            Err(FeedbackError::UntrustedCertificate(_))
        ));
    }

    #[test]
    fn other_topics_old_messages_and_mismatched_headers_are_refused() {
        let s = signer();
        let mut m = notification_envelope(&bounce_message(), "2");
        s.sign(&mut m);
        let b = body(&m);
        assert_eq!(
            parse(
                &HEADERS,
                &b,
                &s.cert_pem,
                &SesConfig::new(&["arn:aws:sns:us-east-1:999:other"]),
                NOW
            ),
            Err(FeedbackError::TopicNotAllowed)
        );
        assert_eq!(
            parse(&HEADERS, &b, &s.cert_pem, &SesConfig::new(&[]), NOW),
            Err(FeedbackError::TopicNotAllowed)
        );
        let config = SesConfig::new(&[TOPIC]);
        assert_eq!(
            parse(&HEADERS, &b, &s.cert_pem, &config, NOW + Duration::hours(2)),
            Err(FeedbackError::Stale)
        );
        assert_eq!(
            parse(
                &HEADERS,
                &b,
                &s.cert_pem,
                &config,
                NOW - Duration::minutes(10)
            ),
            Err(FeedbackError::Stale)
        );
        let wrong = [("x-amz-sns-message-type", "SubscriptionConfirmation")];
        assert!(matches!(
            parse(&wrong, &b, &s.cert_pem, &config, NOW),
            Err(FeedbackError::Invalid(_))
        ));
        // Without the header the body decides.
        let none: [(&str, &str); 0] = [];
        assert!(parse(&none, &b, &s.cert_pem, &config, NOW).is_ok());
    }

    #[test]
    fn subscription_confirmations_yield_the_url_to_get() {
        let s = signer();
        let url = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-east-1:123456789012:ses-feedback&Token=2336412f37";
        let mut m = SnsEnvelope {
            kind: "SubscriptionConfirmation".to_owned(),
            message: format!(
                "You have chosen to subscribe to the topic {TOPIC}.\nTo confirm the subscription, visit the SubscribeURL included in this message."
            ),
            subscribe_url: Some(url.to_owned()),
            token: Some("2336412f37".to_owned()),
            ..notification_envelope("", "1")
        };
        s.sign(&mut m);
        let headers = [("x-amz-sns-message-type", "SubscriptionConfirmation")];
        let out = parse(
            &headers,
            &body(&m),
            &s.cert_pem,
            &SesConfig::new(&[TOPIC]),
            NOW,
        )
        .unwrap();
        assert_eq!(
            out,
            SnsOutcome::ConfirmSubscription {
                topic_arn: TOPIC.to_owned(),
                subscribe_url: url.to_owned()
            }
        );

        // The token is part of what is signed.
        m.token = Some("other".to_owned());
        assert_eq!(
            parse(
                &headers,
                &body(&m),
                &s.cert_pem,
                &SesConfig::new(&[TOPIC]),
                NOW
            ),
            Err(FeedbackError::BadSignature)
        );

        // A signed confirmation pointing elsewhere is not followed.
        m.subscribe_url = Some("https://169.254.169.254/latest/meta-data".to_owned());
        m.token = Some("2336412f37".to_owned());
        s.sign(&mut m);
        assert!(matches!(
            parse(
                &headers,
                &body(&m),
                &s.cert_pem,
                &SesConfig::new(&[TOPIC]),
                NOW
            ),
            Err(FeedbackError::Invalid(_))
        ));
    }

    #[test]
    fn only_an_explicit_override_widens_the_trusted_urls() {
        let s = signer();
        let local = "http://127.0.0.1:4080/sns/cert.pem";
        let mut m = notification_envelope(&bounce_message(), "2");
        m.signing_cert_url = local.to_owned();
        s.sign(&mut m);
        // The default trusts SNS alone.
        assert!(matches!(
            parse(
                &HEADERS,
                &body(&m),
                &s.cert_pem,
                &SesConfig::new(&[TOPIC]),
                NOW
            ),
            Err(FeedbackError::UntrustedCertificate(_))
        ));
        let with = |prefix: &'static str| SesConfig {
            trusted_url_prefix: Some(prefix),
            ..SesConfig::new(&[TOPIC])
        };
        assert!(
            parse(
                &HEADERS,
                &body(&m),
                &s.cert_pem,
                &with("http://127.0.0.1:4080/sns/"),
                NOW
            )
            .is_ok()
        );
        assert!(
            with("http://127.0.0.1:4080/sns/")
                .trusts_subscribe_url("http://127.0.0.1:4080/sns/confirm?Token=x")
        );
        // SNS stays trusted beside the override.
        assert!(with("http://127.0.0.1:4080/sns/").trusts_signing_cert_url(CERT_URL));
        for (prefix, url) in [
            (
                "http://127.0.0.1:4080/sns/",
                "http://127.0.0.1:4080/other/cert.pem",
            ),
            (
                "http://127.0.0.1:4080/sns/",
                "http://127.0.0.1:4080/sns/../cert.pem",
            ),
            (
                "http://127.0.0.1:4080/sns/",
                "http://127.0.0.1:4080/sns/%2e%2e/cert.pem",
            ),
            (
                "http://127.0.0.1:4080/sns/",
                "http://127.0.0.1:4080/sns/a/..",
            ),
            (
                "http://127.0.0.1:4080/sns/",
                "http://127.0.0.1:4080/sns/ cert.pem",
            ),
            // Unusable prefixes trust nothing: no path, no trailing slash, no scheme, a user.
            ("http://127.0.0.1:4080", "http://127.0.0.1:40801/cert.pem"),
            (
                "http://127.0.0.1:4080/sns",
                "http://127.0.0.1:4080/sns.evil/cert.pem",
            ),
            ("127.0.0.1:4080/", "127.0.0.1:4080/cert.pem"),
            (
                "http://a@127.0.0.1:4080/",
                "http://a@127.0.0.1:4080/cert.pem",
            ),
            ("", "https://attacker.example/x.pem"),
        ] {
            let config = with(prefix);
            assert!(!config.trusts_signing_cert_url(url), "{prefix} {url}");
            assert!(!config.trusts_subscribe_url(url), "{prefix} {url}");
        }
    }

    #[test]
    fn cert_urls_are_checked() {
        assert!(signing_cert_url_is_trusted(CERT_URL));
        assert!(signing_cert_url_is_trusted(
            "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem"
        ));
        assert!(signing_cert_url_is_trusted(
            "https://SNS.eu-central-1.amazonaws.com/x.pem"
        ));
        for bad in [
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.attacker.example/x.pem",
            "https://sns.us-east-1.amazonaws.com@attacker.example/x.pem",
            "https://attacker.example/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://sns.us-east-1.amazonaws.com/x.pem?x=1",
            "https://sns.us-east-1.amazonaws.com/x.pem#frag",
            "https://sns.us-east-1.amazonaws.com/x.txt",
            "https://sns.us-east-1.amazonaws.com/.pem",
            "https://sns.us_east-1.amazonaws.com/x.pem",
            "https://sns.attacker.amazonaws.com/x.pem",
            "https://s3.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com",
            "",
        ] {
            assert!(!signing_cert_url_is_trusted(bad), "{bad}");
        }
        assert!(subscribe_url_is_trusted(
            "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=x"
        ));
        assert!(!subscribe_url_is_trusted(
            "https://sns.eu-west-1.amazonaws.com.evil.example/?Action=ConfirmSubscription"
        ));
        assert!(!subscribe_url_is_trusted(
            "http://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
        ));
    }

    #[test]
    fn complaints_and_event_publishing_events() {
        let complaint = serde_json::json!({
            "eventType": "Complaint",
            "complaint": {
                "feedbackId": "0102017f-complaint",
                "complainedRecipients": [{"emailAddress": "Bob@Example.com"}],
                "timestamp": "2024-03-04T11:00:00.000Z",
                "userAgent": "ExampleCorp Feedback Loop (V0.01)",
                "complaintFeedbackType": "abuse"
            },
            "mail": {"headers": [{"name": "X-Postflow-Message-Id", "value": MID}], "destination": ["Bob@Example.com"]}
        });
        let f = notification(&complaint.to_string(), NOW).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, FeedbackKind::Complaint);
        assert_eq!(f[0].recipient.as_str(), "Bob@example.com");
        assert_eq!(f[0].reason, "complaint: abuse");
        assert_eq!(f[0].message_id.as_ref().map(|m| m.as_str()), Some(MID));
        assert_eq!(f[0].occurred_at, datetime!(2024-03-04 11:00 UTC));

        let not_spam = complaint.to_string().replace("\"abuse\"", "\"not-spam\"");
        assert_eq!(notification(&not_spam, NOW).unwrap(), vec![]);

        let transient = serde_json::json!({
            "eventType": "Bounce",
            "bounce": {"bounceType": "Transient", "bounceSubType": "MailboxFull",
                       "bouncedRecipients": [{"emailAddress": "full@example.com"}]},
            "mail": {"commonHeaders": {"messageId": format!("<{MID}@shop.example>")}}
        });
        let f = notification(&transient.to_string(), NOW).unwrap();
        assert_eq!(f[0].kind, FeedbackKind::SoftBounce);
        assert_eq!(f[0].reason, "Transient (MailboxFull)");
        assert_eq!(f[0].occurred_at, NOW, "no timestamp: the receive time");
        assert_eq!(f[0].message_id.as_ref().map(|m| m.as_str()), Some(MID));

        let unsubscribe = serde_json::json!({
            "eventType": "Subscription",
            "mail": {"destination": ["carol@example.com"]},
            "subscription": {"contactList": "shop", "timestamp": "2024-03-04T10:00:00Z", "source": "UnsubscribeHeader",
                             "newTopicPreferences": {"unsubscribeAll": true}, "oldTopicPreferences": {"unsubscribeAll": false}}
        });
        let f = notification(&unsubscribe.to_string(), NOW).unwrap();
        assert_eq!(
            (f[0].kind, f[0].recipient.as_str()),
            (FeedbackKind::Unsubscribe, "carol@example.com")
        );

        for ignored in [
            r#"{"notificationType":"Delivery","mail":{},"delivery":{"recipients":["a@example.com"]}}"#,
            r#"{"notificationType":"AmazonSnsSubscriptionSucceeded","message":"x"}"#,
            r#"{"eventType":"Open","open":{}}"#,
        ] {
            assert_eq!(notification(ignored, NOW).unwrap(), vec![], "{ignored}");
        }
        assert!(matches!(
            notification("{", NOW),
            Err(FeedbackError::MalformedJson(_))
        ));
        assert!(matches!(
            notification(r#"{"notificationType":"Bounce"}"#, NOW),
            Err(FeedbackError::Invalid(_))
        ));
    }

    #[test]
    fn garbage_bodies_are_errors() {
        let s = signer();
        let config = SesConfig::new(&[TOPIC]);
        for bad in [
            &b""[..],
            b"[]",
            b"{}",
            b"null",
            b"{\"Type\":\"Notification\"}",
            &[0xff, 0xfe],
        ] {
            assert!(parse(&HEADERS, bad, &s.cert_pem, &config, NOW).is_err());
        }
    }
}
