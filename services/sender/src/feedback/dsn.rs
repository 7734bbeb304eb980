//! Delivery status notifications (RFC 3464) received by mail: a `multipart/report;
//! report-type=delivery-status` message whose `message/delivery-status` part holds one
//! group of per-message fields and one group per recipient (`Final-Recipient`, `Action`,
//! `Status`, `Diagnostic-Code`, …), usually followed by the returned message or its
//! headers (`text/rfc822-headers` or `message/rfc822`).
//!
//! [`parse_report`] gives the report as it is; [`parse`] turns it into feedback: `Action:
//! failed` with a 5.x.x status (from `Status`, else from `Diagnostic-Code`) is a hard
//! bounce; a failure with any other status or none (a server that gave up retrying after
//! 4.x.x answers) is a soft bounce, which suppresses nothing; `delayed`, `delivered`,
//! `relayed` and `expanded` yield nothing.
//!
//! Our message id is read from the returned headers (`X-Postflow-Message-Id`, then
//! `Message-ID`), else from the per-message `X-Original-Message-ID` (Gmail) or
//! `Original-Envelope-Id`.
//!
//! DSNs reach the sender by mail: the MTA that receives mail for the tenant's bounce
//! address pipes each message to `POST /v1/feedback/{tenant}/dsn` ([`receive`]), which
//! authenticates *that hop* with HTTP basic auth (the tenant's `webhook_secret`). Nothing
//! authenticates the DSN itself: anyone can mail one to the bounce address. So the store
//! acts on a DSN only when the message id found here and the recipient match a message
//! in the send log.
//!
//! The parser is lenient about what real servers write (folded headers, missing parts,
//! base64 or quoted-printable parts, a report wrapped in `multipart/mixed`) and returns
//! an error, never a panic, for anything else.

use contracts::{EmailAddress, MessageId};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use super::{
    Feedback, FeedbackError, FeedbackKind, Headers, MESSAGE_ID_HEADER, Origin, basic_auth_matches,
    clean_reason, enhanced_status, header, is_enhanced_status, message_id_from, recipient,
};

/// How deep a report may be nested in other multiparts.
const MAX_DEPTH: usize = 4;
/// Longest message accepted (a DSN with the whole returned message can be large).
pub const MAX_SIZE: usize = 10 * 1024 * 1024;

/// The `Action` of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    Relayed,
    Expanded,
    Other(String),
}

impl Action {
    fn parse(s: &str) -> Self {
        // Values may carry a comment, e.g. `failed (bad mailbox)`.
        let word = s
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match word.as_str() {
            "failed" => Self::Failed,
            "delayed" => Self::Delayed,
            "delivered" => Self::Delivered,
            "relayed" => Self::Relayed,
            "expanded" => Self::Expanded,
            _ => Self::Other(word),
        }
    }
}

/// One per-recipient group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientStatus {
    /// `Final-Recipient`, else `Original-Recipient`; `None` if neither is an address.
    pub recipient: Option<EmailAddress>,
    pub action: Action,
    /// The enhanced status code, e.g. `5.1.1`.
    pub status: Option<String>,
    /// `Diagnostic-Code` unfolded, e.g. `smtp; 550 5.1.1 … User unknown`.
    pub diagnostic_code: Option<String>,
    pub remote_mta: Option<String>,
    pub last_attempt: Option<OffsetDateTime>,
}

/// A parsed delivery status notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The DSN's own `Message-ID`.
    pub dsn_message_id: Option<String>,
    pub reporting_mta: Option<String>,
    pub arrival_date: Option<OffsetDateTime>,
    /// The DSN's `Date`.
    pub date: Option<OffsetDateTime>,
    /// Our message id, when the report lets us find it.
    pub message_id: Option<MessageId>,
    pub recipients: Vec<RecipientStatus>,
}

/// The media type the intake accepts: the DSN as the MTA received it.
pub const MEDIA_TYPE: &str = "message/rfc822";

/// One DSN posted to the intake, verified and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnDelivery {
    /// The same DSN posted again repeats it: the SHA-256 of its bytes (an MTA that retries
    /// the pipe sends the same bytes; the DSN's own `Message-ID` is chosen by whoever
    /// mailed it, so it is not trusted as a key).
    pub replay_key: String,
    /// Hard and soft bounces of its failed recipients; empty for delay and success reports.
    pub feedback: Vec<Feedback>,
}

/// Verifies and reads one DSN posted to the intake: `Authorization: Basic` whose password
/// is `secret` (the user name is not checked), `Content-Type: message/rfc822`, the raw
/// message as the body. `now` is the fallback time.
pub fn receive<H: Headers + ?Sized>(
    headers: &H,
    raw: &[u8],
    secret: &str,
    now: OffsetDateTime,
) -> Result<DsnDelivery, FeedbackError> {
    basic_auth_matches(headers, secret)?;
    let media_type = header(headers, "content-type")
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if media_type.as_deref() != Some(MEDIA_TYPE) {
        return Err(FeedbackError::MediaType(MEDIA_TYPE));
    }
    let report = parse_report(raw)?;
    // Keyed by the bytes, not the DSN's own Message-ID: anyone can mail us a DSN with a
    // Message-ID of their choosing (a predicted one would make the real bounce look like a
    // replay), while a redelivery of the same DSN by the MTA is the same bytes.
    let digest = ring::digest::digest(&ring::digest::SHA256, raw);
    let key: String = format!("sha256:{}", digest.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>());
    let mut feedback = feedback(&report, now);
    for f in &mut feedback {
        f.event_id = Some(key.clone());
    }
    Ok(DsnDelivery {
        replay_key: key,
        feedback,
    })
}

/// Parses a DSN and returns feedback for its failed recipients. `now` is the fallback
/// time when the report carries no date.
pub fn parse(raw: &[u8], now: OffsetDateTime) -> Result<Vec<Feedback>, FeedbackError> {
    let report = parse_report(raw)?;
    Ok(feedback(&report, now))
}

/// Feedback for the failed recipients of `report`.
pub fn feedback(report: &Report, now: OffsetDateTime) -> Vec<Feedback> {
    report
        .recipients
        .iter()
        .filter(|r| r.action == Action::Failed)
        .filter_map(|r| {
            let status = r
                .status
                .clone()
                .or_else(|| r.diagnostic_code.as_deref().and_then(enhanced_status));
            // Only a permanent failure (5.x.x) says the address is gone; anything else
            // (4.x.x after the server gave up retrying, no status at all) suppresses nothing.
            let kind = match status.as_deref().and_then(|s| s.chars().next()) {
                Some('5') => FeedbackKind::HardBounce,
                _ => FeedbackKind::SoftBounce,
            };
            let reason = match (&r.diagnostic_code, &status) {
                (Some(d), _) => d.clone(),
                (None, Some(s)) => format!("failed; status {s}"),
                (None, None) => "failed".to_owned(),
            };
            Some(Feedback {
                recipient: r.recipient.clone()?,
                kind,
                origin: Origin::Dsn,
                reason: clean_reason(&reason),
                status,
                message_id: report.message_id.clone(),
                event_id: report.dsn_message_id.clone(),
                occurred_at: r
                    .last_attempt
                    .or(report.arrival_date)
                    .or(report.date)
                    .unwrap_or(now),
            })
        })
        .collect()
}

/// Parses a DSN without interpreting it.
pub fn parse_report(raw: &[u8]) -> Result<Report, FeedbackError> {
    if raw.len() > MAX_SIZE {
        return Err(invalid("message too large"));
    }
    let text = String::from_utf8_lossy(raw);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let top = entity(&lines);
    if top.headers.is_empty() {
        return Err(invalid("no message headers"));
    }
    let parts = find_report(&top, 0)?;
    let status_part = parts
        .iter()
        .find(|p| {
            matches!(
                p.mime_type().as_str(),
                "message/delivery-status" | "message/global-delivery-status"
            )
        })
        .ok_or_else(|| invalid("report without a delivery-status part"))?;
    let status_text = status_part.decoded_body();
    let status_lines: Vec<&str> = status_text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let groups = field_groups(&status_lines);

    let mut per_message: Option<&Vec<Field>> = None;
    let mut recipients = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let is_recipient =
            field(group, "final-recipient").is_some() || field(group, "action").is_some();
        if is_recipient {
            recipients.push(recipient_status(group));
        } else if i == 0 {
            per_message = Some(group);
        }
    }
    if recipients.is_empty() {
        return Err(invalid("delivery-status part without recipients"));
    }
    let message_field = |name: &str| per_message.and_then(|g| field(g, name));

    let returned = parts.iter().find_map(|p| match p.mime_type().as_str() {
        "text/rfc822-headers"
        | "message/rfc822-headers"
        | "message/global-headers"
        | "message/rfc822"
        | "message/global" => {
            let body = p.decoded_body();
            let lines: Vec<&str> = body
                .split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l))
                .collect();
            let headers = entity(&lines).headers;
            field(&headers, &MESSAGE_ID_HEADER.to_ascii_lowercase())
                .and_then(message_id_from)
                .or_else(|| field(&headers, "message-id").and_then(message_id_from))
        }
        _ => None,
    });
    let message_id = returned
        .or_else(|| message_field("x-original-message-id").and_then(message_id_from))
        .or_else(|| message_field("original-envelope-id").and_then(message_id_from));

    Ok(Report {
        dsn_message_id: field(&top.headers, "message-id")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty()),
        reporting_mta: message_field("reporting-mta").map(typed_value),
        arrival_date: message_field("arrival-date").and_then(rfc5322_date),
        date: field(&top.headers, "date").and_then(rfc5322_date),
        message_id,
        recipients,
    })
}

fn invalid(why: &str) -> FeedbackError {
    FeedbackError::Invalid(why.to_owned())
}

fn recipient_status(group: &[Field]) -> RecipientStatus {
    let address = |name: &str| field(group, name).and_then(recipient);
    RecipientStatus {
        recipient: address("final-recipient").or_else(|| address("original-recipient")),
        action: Action::parse(field(group, "action").unwrap_or("")),
        status: field(group, "status")
            .and_then(|s| s.split(|c: char| c.is_whitespace() || c == '(').next())
            .filter(|s| is_enhanced_status(s))
            .map(str::to_owned),
        diagnostic_code: field(group, "diagnostic-code")
            .map(clean_reason)
            .filter(|d| !d.is_empty()),
        remote_mta: field(group, "remote-mta").map(typed_value),
        last_attempt: field(group, "last-attempt-date").and_then(rfc5322_date),
    }
}

/// `dns; mx.example.com` → `mx.example.com`.
fn typed_value(v: &str) -> String {
    clean_reason(v.split_once(';').map_or(v, |(_, value)| value))
}

/// An RFC 5322 date, with comments such as `(PST)` and doubled spaces removed.
fn rfc5322_date(s: &str) -> Option<OffsetDateTime> {
    let mut plain = String::with_capacity(s.len());
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let plain = plain.split_whitespace().collect::<Vec<_>>().join(" ");
    OffsetDateTime::parse(&plain, &Rfc2822).ok()
}

/// A header field, name lowercased, value unfolded.
#[derive(Debug, Clone)]
struct Field {
    name: String,
    value: String,
}

/// The value of the first field `lowercase_name`.
fn field<'f>(fields: &'f [Field], lowercase_name: &str) -> Option<&'f str> {
    fields
        .iter()
        .find(|f| f.name == lowercase_name)
        .map(|f| f.value.as_str())
}

/// Header fields from lines, unfolding continuation lines. Lines that are neither a
/// field nor a continuation are skipped.
fn fields(lines: &[&str]) -> Vec<Field> {
    let mut out: Vec<Field> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.value.push(' ');
                last.value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':')
            && !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_graphic())
        {
            out.push(Field {
                name: name.to_ascii_lowercase(),
                value: value.trim().to_owned(),
            });
        }
    }
    out
}

/// Groups of fields separated by blank lines (the delivery-status body).
fn field_groups(lines: &[&str]) -> Vec<Vec<Field>> {
    lines
        .split(|l| l.trim().is_empty())
        .filter(|g| !g.is_empty())
        .map(fields)
        .filter(|g| !g.is_empty())
        .collect()
}

/// A MIME entity: its headers and its body lines.
#[derive(Debug)]
struct Entity<'a> {
    headers: Vec<Field>,
    body: &'a [&'a str],
}

fn entity<'a>(lines: &'a [&'a str]) -> Entity<'a> {
    let split = lines
        .iter()
        .position(|l| l.is_empty())
        .unwrap_or(lines.len());
    Entity {
        headers: fields(lines.get(..split).unwrap_or_default()),
        body: lines.get(split + 1..).unwrap_or_default(),
    }
}

impl Entity<'_> {
    fn content_type(&self) -> ContentType {
        field(&self.headers, "content-type")
            .map(ContentType::parse)
            .unwrap_or_default()
    }

    fn mime_type(&self) -> String {
        self.content_type().mime
    }

    /// The body with its `Content-Transfer-Encoding` undone (base64, quoted-printable;
    /// anything else as is).
    fn decoded_body(&self) -> String {
        let encoding = field(&self.headers, "content-transfer-encoding")
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match encoding.as_str() {
            "base64" => {
                use base64::Engine as _;
                let b64: String = self
                    .body
                    .concat()
                    .chars()
                    .filter(|c| !c.is_ascii_whitespace())
                    .collect();
                let engine = base64::engine::general_purpose::STANDARD;
                match engine
                    .decode(b64.trim_end_matches('='))
                    .or_else(|_| engine.decode(&b64))
                {
                    Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    Err(_) => String::new(),
                }
            }
            "quoted-printable" => quoted_printable(self.body),
            _ => self.body.join("\n"),
        }
    }
}

/// The parts of the first `multipart/report; report-type=delivery-status` found in
/// `e` or, if `e` is another multipart, in its parts.
fn find_report<'a>(e: &Entity<'a>, depth: usize) -> Result<Vec<Entity<'a>>, FeedbackError> {
    let ct = e.content_type();
    if !ct.mime.starts_with("multipart/") {
        return Err(invalid("not a multipart message"));
    }
    let boundary = ct
        .param("boundary")
        .filter(|b| !b.is_empty())
        .ok_or_else(|| invalid("multipart without boundary"))?;
    let parts = split_parts(e.body, boundary);
    if ct.mime == "multipart/report" {
        let report_type = ct.param("report-type").unwrap_or("").to_ascii_lowercase();
        if report_type != "delivery-status" {
            return Err(invalid("report is not a delivery-status report"));
        }
        return Ok(parts);
    }
    if depth >= MAX_DEPTH {
        return Err(invalid("report nested too deeply"));
    }
    parts
        .iter()
        .filter(|p| p.mime_type().starts_with("multipart/"))
        .find_map(|p| find_report(p, depth + 1).ok())
        .ok_or_else(|| invalid("no delivery-status report in the message"))
}

/// The parts of a multipart body. A missing close delimiter (a truncated message) ends
/// the last part at the end of the body.
fn split_parts<'a>(body: &'a [&'a str], boundary: &str) -> Vec<Entity<'a>> {
    let delimiter = format!("--{boundary}");
    let close = format!("--{boundary}--");
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    for (i, line) in body.iter().enumerate() {
        let line = line.trim_end();
        let is_close = line == close;
        if is_close || line == delimiter {
            if let Some(s) = start {
                parts.push(entity(body.get(s..i).unwrap_or_default()));
            }
            if is_close {
                return parts;
            }
            start = Some(i + 1);
        }
    }
    if let Some(s) = start {
        parts.push(entity(body.get(s..).unwrap_or_default()));
    }
    parts
}

/// A parsed `Content-Type`: the type in lowercase and its parameters (names lowercased,
/// quoted values unquoted).
#[derive(Debug, Default)]
struct ContentType {
    mime: String,
    params: Vec<(String, String)>,
}

impl ContentType {
    fn parse(value: &str) -> Self {
        let mut pieces = split_unquoted(value, ';').into_iter();
        let mime = pieces
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let params = pieces
            .filter_map(|p| {
                let (name, value) = p.split_once('=')?;
                Some((name.trim().to_ascii_lowercase(), unquote(value.trim())))
            })
            .collect();
        Self { mime, params }
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits at `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in s.chars() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(std::mem::take(&mut current));
            continue;
        }
        current.push(c);
    }
    out.push(current);
    out
}

fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return v.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if !escaped && c == '\\' {
            escaped = true;
        } else {
            out.push(c);
            escaped = false;
        }
    }
    out
}

/// Decodes quoted-printable lines (soft line breaks, `=XX` escapes); malformed escapes
/// are kept as they are.
fn quoted_printable(lines: &[&str]) -> String {
    let mut bytes = Vec::new();
    for line in lines {
        let line = line.trim_end_matches([' ', '\t']);
        let (line, soft) = match line.strip_suffix('=') {
            Some(l) => (l, true),
            None => (line, false),
        };
        let raw = line.as_bytes();
        let mut i = 0;
        while let Some(&b) = raw.get(i) {
            let hex = |j: usize| raw.get(j).and_then(|&h| char::from(h).to_digit(16));
            match (b, hex(i + 1), hex(i + 2)) {
                (b'=', Some(hi), Some(lo)) => {
                    bytes.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                    i += 3;
                }
                _ => {
                    bytes.push(b);
                    i += 1;
                }
            }
        }
        if !soft {
            bytes.push(b'\n');
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const MID: &str = "m_0123456789abcdef0123456789abcdef";
    const NOW: OffsetDateTime = datetime!(2024-03-05 0:00 UTC);

    /// A bounce as Postfix writes it (CRLF line ends, folded Content-Type and
    /// Diagnostic-Code, doubled spaces in dates).
    fn postfix() -> String {
        format!(
            "Return-Path: <>\n\
Received: by mail.shop.example (Postfix)\n\
\tid 4Bx9Y22Q3Mz9sPk; Mon,  4 Mar 2024 13:12:39 +0100 (CET)\n\
Date: Mon,  4 Mar 2024 13:12:39 +0100 (CET)\n\
From: MAILER-DAEMON@mail.shop.example (Mail Delivery System)\n\
Subject: Undelivered Mail Returned to Sender\n\
To: bounces@shop.example\n\
Auto-Submitted: auto-replied\n\
MIME-Version: 1.0\n\
Content-Type: multipart/report; report-type=delivery-status;\n\
\tboundary=\"4Bx9Y22Q3Mz9sPk.1709554359/mail.shop.example\"\n\
Content-Transfer-Encoding: 8bit\n\
Message-Id: <20240304121239.4Bx9Y22Q3Mz9sPk@mail.shop.example>\n\
\n\
This is a MIME-encapsulated message.\n\
\n\
--4Bx9Y22Q3Mz9sPk.1709554359/mail.shop.example\n\
Content-Description: Notification\n\
Content-Type: text/plain; charset=us-ascii\n\
\n\
This is the mail system at host mail.shop.example.\n\
\n\
I'm sorry to have to inform you that your message could not\n\
be delivered to one or more recipients. It's attached below.\n\
\n\
<nobody@example.com>: host mx.example.com[192.0.2.25] said: 550 5.1.1\n\
\x20\x20\x20\x20<nobody@example.com>: Recipient address rejected: User unknown in virtual\n\
\x20\x20\x20\x20mailbox table (in reply to RCPT TO command)\n\
\n\
--4Bx9Y22Q3Mz9sPk.1709554359/mail.shop.example\n\
Content-Description: Delivery report\n\
Content-Type: message/delivery-status\n\
\n\
Reporting-MTA: dns; mail.shop.example\n\
X-Postfix-Queue-ID: 4Bx9Y22Q3Mz9sPk\n\
X-Postfix-Sender: rfc822; bounces@shop.example\n\
Arrival-Date: Mon,  4 Mar 2024 13:12:37 +0100 (CET)\n\
\n\
Final-Recipient: rfc822; nobody@example.com\n\
Original-Recipient: rfc822;nobody@example.com\n\
Action: failed\n\
Status: 5.1.1\n\
Remote-MTA: dns; mx.example.com\n\
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.com>: Recipient address\n\
\x20\x20\x20\x20rejected: User unknown in virtual mailbox table\n\
\n\
Final-Recipient: rfc822; full@example.com\n\
Original-Recipient: rfc822;full@example.com\n\
Action: failed\n\
Status: 4.2.2\n\
Remote-MTA: dns; mx.example.com\n\
Diagnostic-Code: smtp; 452 4.2.2 Mailbox full\n\
\n\
--4Bx9Y22Q3Mz9sPk.1709554359/mail.shop.example\n\
Content-Description: Undelivered Message Headers\n\
Content-Type: text/rfc822-headers\n\
Content-Transfer-Encoding: 8bit\n\
\n\
Return-Path: <bounces@shop.example>\n\
Received: from renderer (localhost [127.0.0.1])\n\
\tby mail.shop.example (Postfix) with ESMTP id 4Bx9Y22Q3Mz9sPk\n\
\tfor <nobody@example.com>; Mon,  4 Mar 2024 13:12:37 +0100 (CET)\n\
Message-ID: <{MID}@shop.example>\n\
X-Postflow-Message-Id: {MID}\n\
From: Shop <shop@shop.example>\n\
To: nobody@example.com\n\
Subject: Your order\n\
Date: Mon, 04 Mar 2024 12:12:37 +0000\n\
\n\
--4Bx9Y22Q3Mz9sPk.1709554359/mail.shop.example--\n"
        )
        .replace('\n', "\r\n")
    }

    #[test]
    fn postfix_bounce() {
        let f = parse(postfix().as_bytes(), NOW).unwrap();
        assert_eq!(f.len(), 2);
        let hard = &f[0];
        assert_eq!(hard.recipient.as_str(), "nobody@example.com");
        assert_eq!(hard.kind, FeedbackKind::HardBounce);
        assert_eq!(hard.origin, Origin::Dsn);
        assert_eq!(
            hard.reason,
            "smtp; 550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in virtual mailbox table"
        );
        assert_eq!(hard.status.as_deref(), Some("5.1.1"));
        assert_eq!(hard.message_id.as_ref().map(|m| m.as_str()), Some(MID));
        assert_eq!(
            hard.event_id.as_deref(),
            Some("<20240304121239.4Bx9Y22Q3Mz9sPk@mail.shop.example>")
        );
        assert_eq!(
            hard.occurred_at,
            datetime!(2024-03-04 12:12:37 UTC),
            "arrival date, no last attempt"
        );
        let soft = &f[1];
        assert_eq!(
            (soft.recipient.as_str(), soft.kind),
            ("full@example.com", FeedbackKind::SoftBounce)
        );
        assert_eq!(soft.status.as_deref(), Some("4.2.2"));

        let report = parse_report(postfix().as_bytes()).unwrap();
        assert_eq!(report.reporting_mta.as_deref(), Some("mail.shop.example"));
        assert_eq!(
            report.recipients[0].remote_mta.as_deref(),
            Some("mx.example.com")
        );
        assert_eq!(report.date, Some(datetime!(2024-03-04 12:12:39 UTC)));
    }

    #[test]
    fn postfix_delay_warning_is_not_a_bounce() {
        let delayed = postfix()
            .replace(
                "Action: failed\r\nStatus: 5.1.1",
                "Action: delayed\r\nStatus: 4.4.1",
            )
            .replace(
                "Action: failed\r\nStatus: 4.2.2",
                "Action: delivered\r\nStatus: 2.0.0",
            );
        let report = parse_report(delayed.as_bytes()).unwrap();
        assert_eq!(report.recipients[0].action, Action::Delayed);
        assert_eq!(report.recipients[1].action, Action::Delivered);
        assert_eq!(parse(delayed.as_bytes(), NOW).unwrap(), vec![]);
    }

    #[test]
    fn only_a_permanent_status_is_a_hard_bounce() {
        let with = |status: &str, diagnostic: &str| {
            let dsn = postfix()
                .replace("Status: 5.1.1\r\n", status)
                .replace(
                    "Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.com>: Recipient address\r\n\x20\x20\x20\x20rejected: User unknown in virtual mailbox table\r\n",
                    diagnostic,
                );
            parse(dsn.as_bytes(), NOW).unwrap()[0].kind
        };
        // As written: 5.1.1.
        assert_eq!(
            with(
                "Status: 5.1.1\r\n",
                "Diagnostic-Code: smtp; 550 5.1.1 gone\r\n"
            ),
            FeedbackKind::HardBounce
        );
        // No Status field: the enhanced code in the diagnostic decides.
        assert_eq!(
            with("", "Diagnostic-Code: smtp; 550 5.1.1 gone\r\n"),
            FeedbackKind::HardBounce
        );
        assert_eq!(
            with("", "Diagnostic-Code: smtp; 452 4.2.2 full\r\n"),
            FeedbackKind::SoftBounce
        );
        // Nothing says the failure is permanent: it suppresses nothing.
        assert_eq!(
            with("", "Diagnostic-Code: smtp; 550 rejected\r\n"),
            FeedbackKind::SoftBounce
        );
        assert_eq!(with("", ""), FeedbackKind::SoftBounce);
        assert_eq!(with("Status: 2.0.0\r\n", ""), FeedbackKind::SoftBounce);
    }

    /// A non-delivery report as Exchange Online writes it: a nested multipart/alternative
    /// human part, quoted-printable text, `Status: 5.1.10`, no X-Postflow header.
    fn exchange() -> String {
        format!(
            "Received: from AM0PR01MB1234.eurprd01.prod.exchangelabs.com\r\n\
From: Microsoft Outlook\r\n\
\t<MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.onmicrosoft.com>\r\n\
To: <bounces@shop.example>\r\n\
Date: Mon, 4 Mar 2024 12:12:40 +0000\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n\
\tboundary=\"7e0b3bd3-a1a8-4a6c-8c2f-3f3d0c1d5e6a\"\r\n\
X-MS-Exchange-Message-Is-Ndr:\r\n\
Content-Language: en-US\r\n\
Message-ID: <7e0b3bd3-a1a8-4a6c-8c2f-3f3d0c1d5e6a@AM0PR01MB1234.eurprd01.prod.exchangelabs.com>\r\n\
In-Reply-To: <{MID}@shop.example>\r\n\
Subject: Undeliverable: Your order\r\n\
MIME-Version: 1.0\r\n\
\r\n\
--7e0b3bd3-a1a8-4a6c-8c2f-3f3d0c1d5e6a\r\n\
Content-Type: multipart/alternative; differences=Content-Type;\r\n\
\tboundary=\"b1c0e2a4-0d5c-4c8e-9a4d-2f1e3d4c5b6a\"\r\n\
\r\n\
--b1c0e2a4-0d5c-4c8e-9a4d-2f1e3d4c5b6a\r\n\
Content-Type: text/plain; charset=\"us-ascii\"\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Your message to ann@contoso.com couldn't be delivered.\r\n\
ann wasn't found at contoso.com.\r\n\
--b1c0e2a4-0d5c-4c8e-9a4d-2f1e3d4c5b6a\r\n\
Content-Type: text/html; charset=\"us-ascii\"\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
<html><body><p>Your message to ann@contoso.com couldn=E2=80=99t be deliver=\r\n\
ed.</p></body></html>\r\n\
--b1c0e2a4-0d5c-4c8e-9a4d-2f1e3d4c5b6a--\r\n\
\r\n\
--7e0b3bd3-a1a8-4a6c-8c2f-3f3d0c1d5e6a\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns;AM0PR01MB1234.eurprd01.prod.exchangelabs.com\r\n\
Received-From-MTA: dns;mail.shop.example\r\n\
Arrival-Date: Mon, 4 Mar 2024 12:12:38 +0000\r\n\
\r\n\
Final-Recipient: rfc822;ann@contoso.com\r\n\
Action: failed\r\n\
Status: 5.1.10\r\n\
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient ann@contoso.com not found by SMTP address lookup\r\n\
Remote-MTA: dns;AM0PR01MB1234.eurprd01.prod.exchangelabs.com\r\n\
X-Display-Name: Ann\r\n\
\r\n\
--7e0b3bd3-a1a8-4a6c-8c2f-3f3d0c1d5e6a\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
Received: from mail.shop.example (192.0.2.10) by\r\n\
\x20AM0PR01MB1234.eurprd01.prod.exchangelabs.com with Microsoft SMTP Server\r\n\
From: Shop <shop@shop.example>\r\n\
To: ann@contoso.com\r\n\
Subject: Your order\r\n\
Message-ID:\r\n\
\x20<{MID}@shop.example>\r\n\
Date: Mon, 4 Mar 2024 12:12:37 +0000\r\n\
\r\n\
--7e0b3bd3-a1a8-4a6c-8c2f-3f3d0c1d5e6a--\r\n"
        )
    }

    #[test]
    fn exchange_ndr() {
        let f = parse(exchange().as_bytes(), NOW).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].recipient.as_str(), f[0].kind),
            ("ann@contoso.com", FeedbackKind::HardBounce)
        );
        assert_eq!(f[0].status.as_deref(), Some("5.1.10"));
        assert!(
            f[0].reason
                .starts_with("smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound")
        );
        assert_eq!(
            f[0].message_id.as_ref().map(|m| m.as_str()),
            Some(MID),
            "from the folded Message-ID"
        );
        assert_eq!(f[0].occurred_at, datetime!(2024-03-04 12:12:38 UTC));
    }

    /// Gmail's notification: the returned message as message/rfc822, the delivery status
    /// base64-encoded here (as some relays re-encode it), X-Original-Message-ID, a 4.x.x
    /// failure after days of retries.
    fn gmail(returned: &str) -> String {
        use base64::Engine as _;
        let status = format!(
            "Reporting-MTA: dns; googlemail.com\r\n\
Received-From-MTA: dns; shop@shop.example\r\n\
Arrival-Date: Mon, 04 Mar 2024 04:12:38 -0800 (PST)\r\n\
X-Original-Message-ID: <{MID}@shop.example>\r\n\
\r\n\
Final-Recipient: rfc822; over.quota@gmail.com\r\n\
Action: failed\r\n\
Status: 4.2.2\r\n\
Diagnostic-Code: smtp; The email account that you tried to reach is over quota. Please direct the recipient to\r\n \
https://support.google.com/mail/?p=OverQuotaTemp\r\n\
Last-Attempt-Date: Tue, 05 Mar 2024 04:12:39 -0800 (PST)\r\n"
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(status);
        let b64_lines: Vec<&str> = b64
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "Delivered-To: bounces@shop.example\r\n\
Return-Path: <>\r\n\
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\r\n\
To: bounces@shop.example\r\n\
Auto-Submitted: auto-replied\r\n\
Subject: Delivery Status Notification (Failure)\r\n\
References: <{MID}@shop.example>\r\n\
In-Reply-To: <{MID}@shop.example>\r\n\
Message-ID: <65e5b9c7.050a0220.abcd.1234.GMR@mx.google.com>\r\n\
Date: Tue, 05 Mar 2024 04:12:39 -0800 (PST)\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; boundary=\"000000000000c1d2e3f40613d9a4b2\"; report-type=delivery-status\r\n\
\r\n\
--000000000000c1d2e3f40613d9a4b2\r\n\
Content-Type: multipart/related; boundary=\"000000000000c1e0a50613d9a4b3\"\r\n\
\r\n\
--000000000000c1e0a50613d9a4b3\r\n\
Content-Type: text/html; charset=\"UTF-8\"\r\n\
\r\n\
<html><p>Message not delivered</p></html>\r\n\
--000000000000c1e0a50613d9a4b3--\r\n\
--000000000000c1d2e3f40613d9a4b2\r\n\
Content-Type: message/delivery-status\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
{}\r\n\
--000000000000c1d2e3f40613d9a4b2\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
{returned}\
--000000000000c1d2e3f40613d9a4b2--\r\n",
            b64_lines.join("\r\n")
        )
    }

    #[test]
    fn gmail_over_quota_after_retries() {
        let returned = "From: Shop <shop@shop.example>\r\nTo: over.quota@gmail.com\r\nSubject: Your order\r\n\r\nHello!\r\nX-Postflow-Message-Id: not-a-header-in-the-body\r\n";
        let f = parse(gmail(returned).as_bytes(), NOW).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].recipient.as_str(), f[0].kind),
            ("over.quota@gmail.com", FeedbackKind::SoftBounce)
        );
        assert_eq!(
            f[0].reason,
            "smtp; The email account that you tried to reach is over quota. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp"
        );
        // The returned message has no ids; the per-message X-Original-Message-ID has ours.
        assert_eq!(f[0].message_id.as_ref().map(|m| m.as_str()), Some(MID));
        assert_eq!(
            f[0].occurred_at,
            datetime!(2024-03-05 12:12:39 UTC),
            "the last attempt"
        );
    }

    #[test]
    fn the_header_beats_the_message_id_in_the_returned_message() {
        let other = "m_ffffffffffffffffffffffffffffffff";
        let returned = format!(
            "Message-ID: <{other}@shop.example>\r\nX-Postflow-Message-Id: {MID}\r\n\r\nbody\r\n"
        );
        let report = parse_report(gmail(&returned).as_bytes()).unwrap();
        assert_eq!(report.message_id.as_ref().map(|m| m.as_str()), Some(MID));
        let returned = format!("Message-ID: <{other}@shop.example>\r\n\r\nbody\r\n");
        let report = parse_report(gmail(&returned).as_bytes()).unwrap();
        assert_eq!(report.message_id.as_ref().map(|m| m.as_str()), Some(other));
    }

    #[test]
    fn a_report_without_returned_headers_still_counts() {
        let dsn = postfix();
        let cut = dsn.find("--4Bx9Y22Q3Mz9sPk.1709554359/mail.shop.example\r\nContent-Description: Undelivered").unwrap();
        let without = format!(
            "{}--4Bx9Y22Q3Mz9sPk.1709554359/mail.shop.example--\r\n",
            &dsn[..cut]
        );
        let f = parse(without.as_bytes(), NOW).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].message_id, None);
    }

    #[test]
    fn a_forwarded_report_inside_multipart_mixed_is_found() {
        let dsn = postfix();
        let (head, body) = dsn.split_once("\r\n\r\n").unwrap();
        let content_type = "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"4Bx9Y22Q3Mz9sPk.1709554359/mail.shop.example\"";
        assert!(head.contains(content_type));
        let wrapped = format!(
            "From: relay@example.net\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n--outer\r\nContent-Type: text/plain\r\n\r\nForwarded.\r\n--outer\r\n{content_type}\r\n\r\n{body}\r\n--outer--\r\n"
        );
        assert_eq!(parse(wrapped.as_bytes(), NOW).unwrap().len(), 2);
    }

    #[test]
    fn not_a_dsn_is_an_error() {
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "no message headers"),
            (
                "From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n".to_owned(),
                "not a multipart",
            ),
            (
                "Content-Type: multipart/report; report-type=delivery-status\r\n\r\n--x\r\n"
                    .to_owned(),
                "boundary",
            ),
            (
                postfix().replace("report-type=delivery-status", "report-type=feedback-report"),
                "not a delivery-status report",
            ),
            (
                postfix().replace(
                    "Content-Type: message/delivery-status",
                    "Content-Type: text/plain",
                ),
                "without a delivery-status part",
            ),
            (
                postfix()
                    .replace("Action: ", "X-Action: ")
                    .replace("Final-Recipient: ", "X-Final-Recipient: "),
                "without recipients",
            ),
        ];
        for (raw, want) in cases {
            match parse(raw.as_bytes(), NOW) {
                Err(FeedbackError::Invalid(why)) => assert!(why.contains(want), "{why} / {want}"),
                other => panic!("{want}: {other:?}"),
            }
        }
        assert!(parse(&[0xff, 0xfe, 0x00, 0x0a, 0x0d], NOW).is_err());
    }

    #[test]
    fn every_truncation_is_an_error_or_a_subset() {
        let full: Vec<String> = parse(postfix().as_bytes(), NOW)
            .unwrap()
            .iter()
            .map(|f| f.recipient.key())
            .collect();
        let raw = postfix().into_bytes();
        let mut parsed_some = 0;
        for end in 0..raw.len() {
            if let Ok(f) = parse(&raw[..end], NOW) {
                parsed_some += 1;
                assert!(
                    f.iter().all(|f| full.contains(&f.recipient.key())),
                    "at {end}"
                );
            }
        }
        assert!(
            parsed_some > 0,
            "a report cut inside its last part still parses"
        );
    }

    #[test]
    fn content_types_and_encodings() {
        let ct = ContentType::parse(
            "Multipart/Report; Report-Type=\"delivery-status\"; boundary=\"a;b\\\"c\"",
        );
        assert_eq!(ct.mime, "multipart/report");
        assert_eq!(ct.param("report-type"), Some("delivery-status"));
        assert_eq!(ct.param("boundary"), Some("a;b\"c"));
        assert_eq!(
            quoted_printable(&["caf=C3=A9 =", "au lait=3D", "bad =ZZ"]),
            "café au lait=\nbad =ZZ\n"
        );
        assert_eq!(Action::parse("Failed (mailbox gone)"), Action::Failed);
        assert_eq!(Action::parse("weird"), Action::Other("weird".to_owned()));
        assert_eq!(
            rfc5322_date("Mon,  4 Mar 2024 13:12:39 +0100 (CET)"),
            Some(datetime!(2024-03-04 12:12:39 UTC))
        );
        assert_eq!(
            rfc5322_date("4 Mar 2024 13:12:39 +0100"),
            Some(datetime!(2024-03-04 12:12:39 UTC))
        );
        assert_eq!(rfc5322_date("yesterday"), None);
    }
}
