//! One real rendered message, reused as the ready-made outbound message of the sender and
//! latency scenarios: the renderer renders the send scenario's render request, the sender
//! delivers it to the in-repo capture, and the captured MIME is taken apart again (HTML
//! part, text part, the renderer's headers). Every copy then differs only in message id,
//! recipient and subject, so the sender does the same work per message as in production.

use contracts::{Cause, Lane, Mailbox, MessageId, OutboundMessage, SPEC_VERSION, TenantId};

/// Headers the sender writes itself (lettre, from the message's fields, and the sender's
/// own `X-Postflow-*` and DKIM headers); the rest came from the renderer.
const BUILT_BY_SENDER: &[&str] = &[
    "dkim-signature",
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "message-id",
    "reply-to",
    "date",
    "sender",
    "content-type",
    "content-transfer-encoding",
    "mime-version",
];

#[derive(Debug, Clone)]
pub struct Sample {
    pub html: String,
    pub text: String,
    /// The renderer's own headers (`List-Unsubscribe`, `List-Unsubscribe-Post`, …).
    pub headers: Vec<(String, String)>,
    /// A copy as the SMTP server received it from the sender (CRLF line ends, no
    /// dot-stuffing): what `smtp-source` sends in the baseline.
    pub mime: Vec<u8>,
}

impl Sample {
    /// Takes a captured message apart: a `multipart/alternative` with a `text/plain` and a
    /// `text/html` part, each 7bit, 8bit, quoted-printable or base64.
    pub fn from_mime(mime: &[u8]) -> anyhow::Result<Self> {
        let raw = std::str::from_utf8(mime)?;
        let (head, body) = split_head(raw);
        let headers = parse_headers(head);
        let content_type = header(&headers, "content-type").ok_or_else(|| anyhow::anyhow!("the message has no Content-Type"))?;
        anyhow::ensure!(
            content_type.to_ascii_lowercase().starts_with("multipart/alternative"),
            "expected multipart/alternative, got {content_type}"
        );
        let boundary = param(content_type, "boundary").ok_or_else(|| anyhow::anyhow!("no boundary in {content_type}"))?;
        let (mut html, mut text) = (None, None);
        for part in parts(body, &boundary) {
            let (phead, pbody) = split_head(part);
            let ph = parse_headers(phead);
            let ctype = header(&ph, "content-type").unwrap_or("text/plain").to_ascii_lowercase();
            let decoded = decode(header(&ph, "content-transfer-encoding").unwrap_or("7bit"), pbody)?;
            if ctype.starts_with("text/html") {
                html = Some(decoded);
            } else if ctype.starts_with("text/plain") {
                text = Some(decoded);
            }
        }
        let own = headers
            .into_iter()
            .filter(|(k, _)| {
                let k = k.to_ascii_lowercase();
                !BUILT_BY_SENDER.contains(&k.as_str()) && !k.starts_with("x-postflow-")
            })
            .collect();
        Ok(Self {
            html: html.ok_or_else(|| anyhow::anyhow!("no text/html part"))?,
            text: text.ok_or_else(|| anyhow::anyhow!("no text/plain part"))?,
            headers: own,
            mime: mime.to_vec(),
        })
    }

    /// Copy `n` of the sample: its own message id, recipient and subject.
    pub fn outbound(&self, n: usize, lane: Lane, subject: String) -> anyhow::Result<OutboundMessage> {
        Ok(OutboundMessage {
            spec: SPEC_VERSION,
            message_id: MessageId::derive(&["bench", lane.token(), &n.to_string(), &uuid::Uuid::new_v4().to_string()]),
            tenant: TenantId::parse("demo")?,
            lane,
            from: Mailbox { name: Some("Demo Shop".into()), email: contracts::EmailAddress::parse("orders@demo-shop.example")? },
            reply_to: Some(Mailbox { name: None, email: contracts::EmailAddress::parse("help@demo-shop.example")? }),
            to: Mailbox { name: Some(format!("Reader {n}")), email: contracts::EmailAddress::parse(&format!("reader{n}@example.com"))? },
            subject,
            text: self.text.clone(),
            html: self.html.clone(),
            headers: self.headers.clone(),
            template: "order_confirmation".into(),
            topic: None,
            cause: Cause { flow: "bench".into(), run_id: uuid::Uuid::nil(), step: 0, event_id: uuid::Uuid::nil() },
        })
    }

    /// The captured message with LF line ends, the form `smtp-source -F` reads (it writes
    /// CRLF after each line and dot-stuffs), so the baseline sends the same bytes.
    pub fn source_file(&self) -> Vec<u8> {
        String::from_utf8_lossy(&self.mime).replace("\r\n", "\n").into_bytes()
    }
}

fn split_head(s: &str) -> (&str, &str) {
    match s.find("\r\n\r\n") {
        Some(i) => (&s[..i], &s[i + 4..]),
        None => match s.find("\n\n") {
            Some(i) => (&s[..i], &s[i + 2..]),
            None => (s, ""),
        },
    }
}

/// Header fields, unfolded (a line starting with white space continues the previous one).
fn parse_headers(head: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push_str(line);
            }
        } else if let Some((k, v)) = line.split_once(':') {
            out.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// The parts between `--boundary` lines, up to `--boundary--`.
fn parts<'a>(body: &'a str, boundary: &str) -> Vec<&'a str> {
    let delimiter = format!("--{boundary}");
    let mut out = Vec::new();
    for chunk in body.split(delimiter.as_str()).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let chunk = chunk.strip_prefix("\r\n").or_else(|| chunk.strip_prefix('\n')).unwrap_or(chunk);
        out.push(chunk.strip_suffix("\r\n").or_else(|| chunk.strip_suffix('\n')).unwrap_or(chunk));
    }
    out
}

fn decode(encoding: &str, body: &str) -> anyhow::Result<String> {
    use base64::Engine;
    let bytes = match encoding.trim().to_ascii_lowercase().as_str() {
        "quoted-printable" => quoted_printable(body.as_bytes()),
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            base64::engine::general_purpose::STANDARD.decode(compact)?
        }
        _ => body.as_bytes().to_vec(),
    };
    // The wire has CRLF line ends; the renderer's strings have LF.
    Ok(String::from_utf8(bytes)?.replace("\r\n", "\n"))
}

fn quoted_printable(b: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if b[i + 1..].starts_with(b"\n") {
                i += 2;
                continue;
            }
            if let (Some(h), Some(l)) = (b.get(i + 1).and_then(|c| hex(*c)), b.get(i + 2).and_then(|c| hex(*c))) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIME: &str = "From: \"Demo Shop\" <orders@demo-shop.example>\r\n\
        To: reader@example.com\r\n\
        Subject: Order #S1\r\n\
        List-Unsubscribe: <https://t.example/u/abc>\r\n\
        List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\
        Precedence: bulk\r\n\
        X-Postflow-Message-Id: m_1\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/alternative;\r\n boundary=\"XyZ\"\r\n\
        \r\n\
        --XyZ\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: base64\r\n\
        \r\n\
        SGVsbG8sIEFkYSEKVG90YWw6IDEyMCDigqw=\r\n\
        --XyZ\r\n\
        Content-Type: text/html; charset=utf-8\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\
        \r\n\
        <p style=3D\"color:#0f766e\">Hello, Ada! Total: 120 =E2=82=AC, a line that i=\r\n\
        s folded</p>\r\n\
        <p>second</p>\r\n\
        --XyZ--\r\n";

    #[test]
    fn takes_a_rendered_message_apart() {
        let s = Sample::from_mime(MIME.as_bytes()).unwrap();
        assert_eq!(s.text, "Hello, Ada!\nTotal: 120 €");
        assert_eq!(s.html, "<p style=\"color:#0f766e\">Hello, Ada! Total: 120 €, a line that is folded</p>\n<p>second</p>");
        let names: Vec<&str> = s.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["List-Unsubscribe", "List-Unsubscribe-Post", "Precedence"]);
        assert_eq!(s.headers[0].1, "<https://t.example/u/abc>");
        let copy = s.outbound(7, Lane::Marketing, "Bench newsletter 7".into()).unwrap();
        assert_eq!(copy.to.email.as_str(), "reader7@example.com");
        assert_eq!(copy.html, s.html);
        assert!(!String::from_utf8(s.source_file()).unwrap().contains('\r'));
    }

    #[test]
    fn rejects_what_it_cannot_take_apart() {
        assert!(Sample::from_mime(b"Subject: x\r\nContent-Type: text/plain\r\n\r\nhello").is_err());
    }
}
