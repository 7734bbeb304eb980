//! Bounce and complaint feedback: what providers and receiving servers tell us after a
//! message left, verified and normalised into [`Feedback`].
//!
//! One module per source, each a pure function of `(headers, raw body, verification
//! material, now)` that checks authenticity before it reads the content:
//!
//! | module | source | verified by |
//! |---|---|---|
//! | [`ses`] | Amazon SES notifications delivered by SNS | SNS RSA signature (v1 SHA1, v2 SHA256) with a certificate the caller fetched, topic ARN allow-list |
//! | [`postmark`] | Postmark bounce, spam-complaint and subscription-change webhooks | HTTP basic auth password, constant time |
//! | [`sendgrid`] | SendGrid Event Webhook | ECDSA P-256 over `timestamp + body`, timestamp window |
//! | [`mailgun`] | Mailgun webhooks | HMAC-SHA256 of `timestamp + token`, timestamp window, token for replay refusal |
//! | [`dsn`] | RFC 3464 delivery status notifications received by mail at the bounce address and piped to the sender | HTTP basic auth password for the pipe, constant time; the DSN itself is unauthenticated, so it only counts when it names a message in the send log |
//!
//! Our message id travels with every message so feedback can be tied back to it: as the
//! header [`MESSAGE_ID_HEADER`] and as the provider's metadata field named
//! [`MESSAGE_ID_FIELD`] (SES message tag, Postmark `Metadata`, SendGrid `custom_args`,
//! Mailgun user variable `v:postflow_message_id`). Each module says where it reads it
//! back from; the RFC 5322 `Message-ID` (`<m_…@domain>`) is the fallback.
//!
//! Invariant: nothing here does IO, awaits, logs or reads the clock. Errors never echo a
//! secret, and no input makes a parser panic.

pub mod dsn;
pub mod http;
pub mod mailgun;
pub mod postmark;
pub mod sendgrid;
pub mod ses;

mod x509;

use std::fmt;

use contracts::{EmailAddress, MessageId};
use time::OffsetDateTime;

/// The header that carries our message id on every message we send.
pub const MESSAGE_ID_HEADER: &str = "X-Postflow-Message-Id";

/// The name under which our message id is stored in a provider's per-message metadata:
/// the SES message tag name, the Postmark `Metadata` key, the SendGrid `custom_args` key
/// and the Mailgun user variable (sent as `v:postflow_message_id`). Letters, digits and
/// underscores only, which every provider accepts.
pub const MESSAGE_ID_FIELD: &str = "postflow_message_id";

/// Longest reason text kept from a payload.
pub(crate) const MAX_REASON: usize = 1000;

/// What the feedback says about the recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedbackKind {
    /// The address does not exist or refuses mail for good: suppress all mail to it.
    HardBounce,
    /// A temporary failure (mailbox full, greylisting, a server down, a block that may lift).
    SoftBounce,
    /// The recipient reported the message as spam: suppress all mail to it.
    Complaint,
    /// The recipient unsubscribed through the provider (list-unsubscribe handled there, or
    /// an unsubscribe link the provider added): suppress the marketing lane.
    Unsubscribe,
}

impl FeedbackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HardBounce => "hard_bounce",
            Self::SoftBounce => "soft_bounce",
            Self::Complaint => "complaint",
            Self::Unsubscribe => "unsubscribe",
        }
    }

    /// Whether this outcome ends all mail to the address (hard bounce or complaint).
    pub fn suppresses_all(self) -> bool {
        matches!(self, Self::HardBounce | Self::Complaint)
    }
}

impl fmt::Display for FeedbackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a piece of feedback came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    Ses,
    Postmark,
    Sendgrid,
    Mailgun,
    /// A delivery status notification received by mail.
    Dsn,
}

impl Origin {
    /// Also the last segment of the feedback URL (`dsn` has its own route).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ses => "ses",
            Self::Postmark => "postmark",
            Self::Sendgrid => "sendgrid",
            Self::Mailgun => "mailgun",
            Self::Dsn => "dsn",
        }
    }

    /// The webhook provider named by a URL segment.
    pub fn from_segment(segment: &str) -> Option<Self> {
        match segment {
            "ses" => Some(Self::Ses),
            "postmark" => Some(Self::Postmark),
            "sendgrid" => Some(Self::Sendgrid),
            "mailgun" => Some(Self::Mailgun),
            _ => None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One normalised outcome for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    pub recipient: EmailAddress,
    pub kind: FeedbackKind,
    pub origin: Origin,
    /// The provider's reason or the receiving server's diagnostic, e.g.
    /// `smtp; 550 5.1.1 <a@example.com>: Recipient address rejected`, clipped.
    pub reason: String,
    /// The enhanced status code (RFC 3463, e.g. `5.1.1`) when the source gives one.
    pub status: Option<String>,
    /// Our message id, when the payload carries it.
    pub message_id: Option<MessageId>,
    /// The source's id of this event (SES feedback id, Postmark record id, SendGrid
    /// `sg_event_id`, Mailgun event id, the DSN's `Message-ID`), for deduplicating
    /// redeliveries: unique together with the recipient (one SES bounce or one DSN can
    /// name several recipients under one id).
    pub event_id: Option<String>,
    /// When it happened according to the source; the receive time when it does not say.
    pub occurred_at: OffsetDateTime,
}

/// Why a delivery was refused. Messages are lowercase and never echo a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedbackError {
    /// No verification secret or key is configured for this tenant and provider.
    #[error("webhook verification is not configured")]
    NotConfigured,
    /// The configured secret or key is unusable (not base64, not a P-256 key, …).
    #[error("webhook verification key is invalid: {0}")]
    BadKey(&'static str),
    /// The signature or credentials are absent.
    #[error("missing signature")]
    MissingSignature,
    /// The signature or credentials do not verify.
    #[error("bad signature")]
    BadSignature,
    /// A required header (named in lowercase) is absent or empty.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// The signed timestamp is outside the accepted window.
    #[error("timestamp outside the accepted window")]
    Stale,
    /// The SNS signing certificate's URL is not an SNS endpoint, or the certificate is
    /// unusable or not valid now.
    #[error("untrusted certificate: {0}")]
    UntrustedCertificate(String),
    /// A correctly signed SNS message from a topic this tenant did not configure.
    #[error("topic not allowed")]
    TopicNotAllowed,
    /// The body is not well-formed JSON.
    #[error("malformed json: {0}")]
    MalformedJson(String),
    /// The body is well-formed but not a payload we accept.
    #[error("invalid payload: {0}")]
    Invalid(String),
    /// The request's `Content-Type` is not the one named.
    #[error("content-type must be {0}")]
    MediaType(&'static str),
}

/// Request headers as a parser sees them. Names are matched case-insensitively.
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

impl Headers for axum::http::HeaderMap {
    fn get(&self, lowercase_name: &str) -> Option<&str> {
        axum::http::HeaderMap::get(self, lowercase_name).and_then(|v| v.to_str().ok())
    }
}

/// The header `name`, trimmed, if present and not blank.
pub(crate) fn header<'h, H: Headers + ?Sized>(headers: &'h H, name: &str) -> Option<&'h str> {
    headers.get(name).map(str::trim).filter(|v| !v.is_empty())
}

/// Checks `Authorization: Basic base64(user:password)` against `password`, in constant
/// time; the user name is not checked.
pub(crate) fn basic_auth_matches<H: Headers + ?Sized>(
    headers: &H,
    password: &str,
) -> Result<(), FeedbackError> {
    use base64::Engine as _;
    if password.is_empty() {
        return Err(FeedbackError::NotConfigured);
    }
    let auth = header(headers, "authorization").ok_or(FeedbackError::MissingSignature)?;
    let (scheme, credentials) = auth.split_once(' ').ok_or(FeedbackError::BadSignature)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(FeedbackError::BadSignature);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .map_err(|_| FeedbackError::BadSignature)?;
    // RFC 7617: the user id cannot contain a colon; the password can.
    let presented = match decoded.iter().position(|&b| b == b':') {
        Some(i) => decoded.get(i + 1..).unwrap_or_default(),
        None => return Err(FeedbackError::BadSignature),
    };
    if constant_time_eq(presented, password.as_bytes()) {
        Ok(())
    } else {
        Err(FeedbackError::BadSignature)
    }
}

/// Our message id from a header or metadata value: `m_…` itself, or a `Message-ID`
/// such as `<m_…@shop.example>` (with or without the angle brackets).
pub fn message_id_from(value: &str) -> Option<MessageId> {
    let v = value.trim();
    let v = v.strip_prefix('<').unwrap_or(v);
    let v = v.strip_suffix('>').unwrap_or(v);
    let local = v.split_once('@').map_or(v, |(local, _)| local);
    MessageId::parse(local.trim()).ok()
}

/// A recipient address from a payload: a bare address, `<addr>`, `Name <addr>`, or a DSN
/// `rfc822; addr`. `None` if it is not a usable address.
pub(crate) fn recipient(raw: &str) -> Option<EmailAddress> {
    let mut s = raw.trim();
    if let Some((kind, rest)) = s.split_once(';')
        && !kind.contains('@')
    {
        s = rest.trim();
    }
    if let (Some(open), Some(close)) = (s.rfind('<'), s.rfind('>'))
        && open < close
    {
        s = s.get(open + 1..close).unwrap_or(s);
    }
    EmailAddress::parse(s).ok()
}

/// `s` with runs of whitespace (including folded line breaks) collapsed to one space,
/// trimmed and clipped to [`MAX_REASON`] characters.
pub(crate) fn clean_reason(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_REASON));
    for (i, word) in s.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    clip(&out, MAX_REASON)
}

/// At most `max` characters of `s`.
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => s.get(..end).unwrap_or(s).to_owned(),
        None => s.to_owned(),
    }
}

/// An enhanced status code (`2.0.0` … `5.7.26`) found at the start of `s` or after an SMTP
/// reply code, e.g. in `550 5.1.1 user unknown`.
pub(crate) fn enhanced_status(s: &str) -> Option<String> {
    s.split(|c: char| c.is_whitespace() || matches!(c, ';' | '(' | ')' | '#'))
        .find(|w| is_enhanced_status(w))
        .map(str::to_owned)
}

pub(crate) fn is_enhanced_status(w: &str) -> bool {
    let mut parts = w.split('.');
    let (Some(class), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = |p: &str, max: usize| {
        !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit())
    };
    matches!(class, "2" | "4" | "5") && digits(subject, 3) && digits(detail, 3)
}

/// Whether `at` lies within `tolerance` of `now`, either side.
pub(crate) fn within(at: OffsetDateTime, now: OffsetDateTime, tolerance: time::Duration) -> bool {
    (now - at).abs() <= tolerance
}

/// Compares two byte strings in time that depends only on their lengths (the lengths are
/// not secret here: both sides are hashed to 32 bytes first).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let a = ring::digest::digest(&ring::digest::SHA256, a);
    let b = ring::digest::digest(&ring::digest::SHA256, b);
    let diff = a
        .as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

pub(crate) fn json_error(e: serde_json::Error) -> FeedbackError {
    let message = clip(&e.to_string(), 240);
    if e.is_syntax() || e.is_eof() {
        FeedbackError::MalformedJson(message)
    } else {
        FeedbackError::Invalid(message)
    }
}

/// An RFC 3339 timestamp, as the providers write them (any number of fractional digits).
pub(crate) fn rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).ok()
}

/// Unix seconds, possibly fractional (Mailgun writes `1521472262.908181`).
pub(crate) fn unix_seconds(secs: f64) -> Option<OffsetDateTime> {
    if !secs.is_finite() {
        return None;
    }
    let nanos = (secs * 1e9).round();
    if nanos.abs() > 1e19 {
        return None;
    }
    OffsetDateTime::from_unix_timestamp_nanos(nanos as i128).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_read_from_every_form() {
        let id = "m_0123456789abcdef0123456789abcdef";
        for form in [
            id.to_owned(),
            format!(" {id} "),
            format!("<{id}@shop.example>"),
            format!("{id}@shop.example"),
        ] {
            assert_eq!(
                message_id_from(&form).map(|m| m.as_str().to_owned()),
                Some(id.to_owned()),
                "{form}"
            );
        }
        for bad in [
            "",
            "<abc@x.y>",
            "m_XYZ",
            "<m_0123456789ABCDEF0123456789ABCDEF@x>",
        ] {
            assert_eq!(message_id_from(bad), None, "{bad}");
        }
    }

    #[test]
    fn recipients_are_read_from_every_form() {
        for form in [
            "a@example.com",
            " <a@example.com> ",
            "Ann <a@example.com>",
            "rfc822; a@example.com",
            "rfc822;<a@Example.COM>",
        ] {
            assert_eq!(
                recipient(form).map(|e| e.key()),
                Some("a@example.com".to_owned()),
                "{form}"
            );
        }
        assert_eq!(recipient("rfc822; not an address"), None);
        assert_eq!(recipient(""), None);
    }

    #[test]
    fn reasons_are_unfolded_and_clipped() {
        assert_eq!(
            clean_reason(" smtp; 550 5.1.1\r\n    user unknown "),
            "smtp; 550 5.1.1 user unknown"
        );
        assert_eq!(clean_reason(&"é".repeat(2000)).chars().count(), MAX_REASON);
    }

    #[test]
    fn enhanced_status_codes_are_found() {
        assert_eq!(
            enhanced_status("550 5.1.1 <a@b.c>: user unknown").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(
            enhanced_status("smtp; 452 4.2.2 The email account is over quota").as_deref(),
            Some("4.2.2")
        );
        assert_eq!(enhanced_status("550 rejected 1.2.3.4"), None);
        assert_eq!(enhanced_status("version 5.1"), None);
    }

    #[test]
    fn constant_time_eq_compares_contents() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret "));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn unix_seconds_keep_fractions_and_refuse_nonsense() {
        let t = unix_seconds(1_521_472_262.5).unwrap();
        assert_eq!(t.unix_timestamp(), 1_521_472_262);
        assert_eq!(t.millisecond(), 500);
        assert_eq!(unix_seconds(f64::NAN), None);
        assert_eq!(unix_seconds(1e300), None);
    }
}
