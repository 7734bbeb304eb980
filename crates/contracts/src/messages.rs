//! Commands between pipeline stages (render requests, outbound messages) and the email
//! lifecycle events the sender and tracker emit.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{EmailAddress, Mailbox, MessageId, TenantId};

/// Which queue a message travels in. Transactional mail never waits behind marketing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    Transactional,
    Marketing,
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Transactional, Lane::Marketing];

    /// Short token used in subjects and consumer names.
    pub fn token(self) -> &'static str {
        match self {
            Self::Transactional => "tx",
            Self::Marketing => "mkt",
        }
    }
}

/// What caused a message: the flow run and step, and the event that started the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Cause {
    pub flow: String,
    pub run_id: Uuid,
    pub step: u32,
    pub event_id: Uuid,
}

/// scheduler → renderer: render `template` for `to` with `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RenderRequest {
    pub spec: u16,
    pub message_id: MessageId,
    pub tenant: TenantId,
    pub lane: Lane,
    pub template: String,
    pub to: Mailbox,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// The tenant's marketing topic this message belongs to (`offers`, `newsletter`, …), as
    /// the flow or step names it; recipients can leave one topic and keep the others.
    /// Marketing mail only; absent on transactional mail and in older payloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    pub cause: Cause,
    /// Template variables (e.g. `order`, `customer`).
    pub data: serde_json::Value,
}

/// renderer → sender: a complete email, ready for SMTP or an HTTP provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OutboundMessage {
    pub spec: u16,
    pub message_id: MessageId,
    pub tenant: TenantId,
    pub lane: Lane,
    pub from: Mailbox,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Mailbox>,
    pub to: Mailbox,
    pub subject: String,
    pub html: String,
    pub text: String,
    /// Extra headers, e.g. `List-Unsubscribe` and `List-Unsubscribe-Post`.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    pub template: String,
    /// The marketing topic, carried from the render request: the sender checks the
    /// recipient's topic opt-outs against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    pub cause: Cause,
}

/// `email.sent`: the SMTP server or provider accepted the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EmailSent {
    pub message_id: MessageId,
    pub recipient: EmailAddress,
    pub lane: Lane,
    pub template: String,
    pub flow: String,
    /// The server's answer, e.g. `250 2.0.0 Ok: queued as 4Bx…`.
    pub response: String,
}

/// `email.bounced`: the message was refused. Permanent bounces suppress the address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EmailBounced {
    pub message_id: MessageId,
    pub recipient: EmailAddress,
    pub permanent: bool,
    pub reason: String,
}

/// `email.complained`: the recipient marked the message as spam (a provider's feedback
/// loop). The address is suppressed for all of the tenant's mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EmailComplained {
    pub message_id: MessageId,
    pub recipient: EmailAddress,
    /// Who reported it and what they said, e.g. `complaint (postmark): abuse`.
    pub reason: String,
}

/// `email.opened`: the open pixel was fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EmailOpened {
    pub message_id: MessageId,
    /// Likely a machine (privacy proxy, prefetcher) rather than a person.
    pub machine: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// `email.clicked`: a tracked link was followed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EmailClicked {
    pub message_id: MessageId,
    pub url: String,
    /// Likely a security scanner rather than a person.
    pub machine: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// `email.unsubscribed`: the recipient unsubscribed from all of the tenant's marketing mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EmailUnsubscribed {
    pub message_id: MessageId,
    pub recipient: EmailAddress,
    /// `one_click` (RFC 8058 POST), `link` (the confirmation page), `preferences` (the
    /// preferences page), or `provider` (the sending provider reported it).
    pub method: String,
}

/// `email.topic_unsubscribed`: the recipient left one marketing topic and keeps the
/// others. A type of its own rather than a topic on `email.unsubscribed`: a consumer that
/// knows nothing of topics must not read it as leaving all marketing mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EmailTopicUnsubscribed {
    pub message_id: MessageId,
    pub recipient: EmailAddress,
    /// The topic id, as the tenant declares it in `[preferences]`.
    pub topic: String,
    /// `preferences` (the preferences page).
    pub method: String,
}

/// `email.resubscribed`: the recipient opted back in, to all marketing mail (no `topic`:
/// undoes `email.unsubscribed`) or to one topic (undoes `email.topic_unsubscribed`). It
/// never lifts a suppression that a hard bounce or a complaint caused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EmailResubscribed {
    pub message_id: MessageId,
    pub recipient: EmailAddress,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// `preferences` (the preferences page).
    pub method: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_without_a_topic_still_parse() {
        let old = r#"{"spec":1,"message_id":"m_1","tenant":"demo","lane":"marketing","template":"news",
            "to":{"email":"ana@example.com"},"cause":{"flow":"f","run_id":"00000000-0000-0000-0000-000000000000",
            "step":0,"event_id":"00000000-0000-0000-0000-000000000000"},"data":{}}"#;
        let req: RenderRequest = serde_json::from_str(old).unwrap();
        assert_eq!(req.topic, None);
        assert!(!serde_json::to_string(&req).unwrap().contains("topic"), "absent stays absent");
        let resub: EmailResubscribed =
            serde_json::from_str(r#"{"message_id":"m_1","recipient":"ana@example.com","method":"preferences"}"#).unwrap();
        assert_eq!(resub.topic, None, "no topic: all marketing mail");
    }
}
