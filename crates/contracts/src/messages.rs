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

/// `email.unsubscribed`: the recipient unsubscribed from the tenant's marketing mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EmailUnsubscribed {
    pub message_id: MessageId,
    pub recipient: EmailAddress,
    /// `one_click` (RFC 8058 POST), `link` (the confirmation page), or `provider` (the
    /// sending provider reported it).
    pub method: String,
}
