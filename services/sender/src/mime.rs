//! Builds the RFC 5322 message (multipart/alternative text + HTML) for an outbound message.

use contracts::OutboundMessage;
use lettre::Address;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message, MultiPart};

/// Headers the renderer may not set: the sender owns the envelope and identity.
const RESERVED: &[&str] = &[
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
    "mime-version",
    "x-postflow-message-id",
];

pub fn address(email: &contracts::EmailAddress) -> anyhow::Result<Address> {
    email.as_str().parse().map_err(|e| anyhow::anyhow!("address {email}: {e}"))
}

fn mailbox(m: &contracts::Mailbox) -> anyhow::Result<Mailbox> {
    Ok(Mailbox::new(m.name.clone(), address(&m.email)?))
}

/// The formatted message. Its `Message-ID` is derived from the message id, so a message
/// that did go out can be recognised in the recipient's mailbox and logs, and the message
/// id itself travels as `X-Postflow-Message-Id` (bounces and SES notifications that
/// quote the original headers are tied back to it; see `feedback`).
pub fn build(msg: &OutboundMessage) -> anyhow::Result<Vec<u8>> {
    let id_header = HeaderName::new_from_ascii_str(crate::feedback::MESSAGE_ID_HEADER);
    let mut builder = Message::builder()
        .message_id(Some(format!("<{}@{}>", msg.message_id, msg.from.email.domain())))
        .from(mailbox(&msg.from)?)
        .to(mailbox(&msg.to)?)
        .subject(msg.subject.clone())
        .raw_header(HeaderValue::new(id_header, msg.message_id.as_str().to_owned()));
    if let Some(r) = &msg.reply_to {
        builder = builder.reply_to(mailbox(r)?);
    }
    for (name, value) in &msg.headers {
        if RESERVED.contains(&name.to_ascii_lowercase().as_str()) || value.contains(['\r', '\n']) {
            anyhow::bail!("header {name} is not allowed here");
        }
        let name = HeaderName::new_from_ascii(name.clone()).map_err(|e| anyhow::anyhow!("header name {name}: {e}"))?;
        builder = builder.raw_header(HeaderValue::new(name, value.clone()));
    }
    let email = builder
        .multipart(MultiPart::alternative_plain_html(msg.text.clone(), msg.html.clone()))
        .map_err(|e| anyhow::anyhow!("building message: {e}"))?;
    Ok(email.formatted())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn message(headers: Vec<(String, String)>) -> OutboundMessage {
        OutboundMessage {
            spec: contracts::SPEC_VERSION,
            message_id: contracts::MessageId::derive(&["mime-test"]),
            tenant: contracts::TenantId::parse("demo").unwrap(),
            lane: contracts::Lane::Transactional,
            from: contracts::Mailbox { name: None, email: contracts::EmailAddress::parse("orders@demo.example").unwrap() },
            reply_to: None,
            to: contracts::Mailbox { name: None, email: contracts::EmailAddress::parse("ada@example.com").unwrap() },
            subject: "Your order".into(),
            html: "<p>Thanks</p>".into(),
            text: "Thanks".into(),
            headers,
            template: "order_confirmation".into(),
            topic: None,
            cause: contracts::Cause { flow: "f".into(), run_id: uuid::Uuid::nil(), step: 0, event_id: uuid::Uuid::nil() },
        }
    }

    #[test]
    fn the_message_id_travels_in_its_own_header_and_in_message_id() {
        let msg = message(vec![]);
        let text = String::from_utf8(build(&msg).unwrap()).unwrap();
        assert!(text.contains(&format!("\r\nX-Postflow-Message-Id: {}\r\n", msg.message_id)), "{text}");
        assert!(text.contains(&format!("Message-ID: <{}@demo.example>", msg.message_id)), "{text}");
    }

    #[test]
    fn the_renderer_cannot_set_our_headers() {
        for name in ["Message-ID", "x-postflow-message-id", "From"] {
            assert!(build(&message(vec![(name.into(), "m_forged".into())])).is_err(), "{name}");
        }
        assert!(build(&message(vec![("X-Other".into(), "a\r\nBcc: x@y.z".into())])).is_err(), "no header injection");
    }
}
