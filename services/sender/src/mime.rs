//! Builds the RFC 5322 message (multipart/alternative text + HTML) for an outbound message.

use contracts::OutboundMessage;
use lettre::Address;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message, MultiPart};

/// Headers the renderer may not set: the sender owns the envelope and identity.
const RESERVED: &[&str] = &["from", "to", "cc", "bcc", "subject", "message-id", "reply-to", "date", "sender", "content-type", "mime-version"];

pub fn address(email: &contracts::EmailAddress) -> anyhow::Result<Address> {
    email.as_str().parse().map_err(|e| anyhow::anyhow!("address {email}: {e}"))
}

fn mailbox(m: &contracts::Mailbox) -> anyhow::Result<Mailbox> {
    Ok(Mailbox::new(m.name.clone(), address(&m.email)?))
}

/// The formatted message. Its `Message-ID` is derived from the message id, so a message
/// that did go out can be recognised in the recipient's mailbox and logs.
pub fn build(msg: &OutboundMessage) -> anyhow::Result<Vec<u8>> {
    let mut builder = Message::builder()
        .message_id(Some(format!("<{}@{}>", msg.message_id, msg.from.email.domain())))
        .from(mailbox(&msg.from)?)
        .to(mailbox(&msg.to)?)
        .subject(msg.subject.clone());
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
