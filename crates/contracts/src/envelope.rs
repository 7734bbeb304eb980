//! The versioned event envelope shared by every domain event on the bus.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    EmailBounced, EmailClicked, EmailOpened, EmailSent, EmailUnsubscribed, OrderPlaced,
    SPEC_VERSION, ShipmentUpdated, TenantId, ids::POSTFLOW_NAMESPACE,
};

/// Where an event came from: the system and, for webhooks, the delivery that carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Source {
    /// `shopify`, `woocommerce`, `easypost`, … or a Postflow service (`sender`, `tracker`).
    pub system: String,
    /// The platform's delivery id (e.g. `X-Shopify-Webhook-Id`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    /// The platform's topic (e.g. `orders/create`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// One domain event. `type` names it, `data` carries its payload.
// Events are decoded once per delivery and moved, not copied in bulk; boxing the large
// variants would buy nothing measurable.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    #[serde(rename = "order.placed")]
    OrderPlaced(OrderPlaced),
    #[serde(rename = "shipment.updated")]
    ShipmentUpdated(ShipmentUpdated),
    #[serde(rename = "email.sent")]
    EmailSent(EmailSent),
    #[serde(rename = "email.bounced")]
    EmailBounced(EmailBounced),
    #[serde(rename = "email.opened")]
    EmailOpened(EmailOpened),
    #[serde(rename = "email.clicked")]
    EmailClicked(EmailClicked),
    #[serde(rename = "email.unsubscribed")]
    EmailUnsubscribed(EmailUnsubscribed),
}

/// The event types, as they appear in `type` and in subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    OrderPlaced,
    ShipmentUpdated,
    EmailSent,
    EmailBounced,
    EmailOpened,
    EmailClicked,
    EmailUnsubscribed,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        Self::OrderPlaced,
        Self::ShipmentUpdated,
        Self::EmailSent,
        Self::EmailBounced,
        Self::EmailOpened,
        Self::EmailClicked,
        Self::EmailUnsubscribed,
    ];

    /// The dotted name used in the envelope's `type` and as the subject suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderPlaced => "order.placed",
            Self::ShipmentUpdated => "shipment.updated",
            Self::EmailSent => "email.sent",
            Self::EmailBounced => "email.bounced",
            Self::EmailOpened => "email.opened",
            Self::EmailClicked => "email.clicked",
            Self::EmailUnsubscribed => "email.unsubscribed",
        }
    }
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Self::OrderPlaced(_) => EventKind::OrderPlaced,
            Self::ShipmentUpdated(_) => EventKind::ShipmentUpdated,
            Self::EmailSent(_) => EventKind::EmailSent,
            Self::EmailBounced(_) => EventKind::EmailBounced,
            Self::EmailOpened(_) => EventKind::EmailOpened,
            Self::EmailClicked(_) => EventKind::EmailClicked,
            Self::EmailUnsubscribed(_) => EventKind::EmailUnsubscribed,
        }
    }
}

/// A domain event with its metadata. Serialised flat: `{spec, id, tenant, …, type, data}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope {
    /// Envelope format version ([`SPEC_VERSION`]).
    pub spec: u16,
    /// Unique per business event; derived from tenant and idempotency key, so every
    /// redelivery of the same business event carries the same id.
    pub id: Uuid,
    pub tenant: TenantId,
    /// When the thing happened (per the source), RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub occurred_at: OffsetDateTime,
    pub source: Source,
    /// What makes this business event unique within the tenant, e.g.
    /// `shopify:order:820982911946154508:placed`. Used as the bus's `Nats-Msg-Id`.
    pub idempotency_key: String,
    #[serde(flatten)]
    pub event: Event,
}

impl Envelope {
    pub fn new(
        tenant: TenantId,
        occurred_at: OffsetDateTime,
        source: Source,
        idempotency_key: String,
        event: Event,
    ) -> Self {
        let id = Uuid::new_v5(
            &POSTFLOW_NAMESPACE,
            format!("{}\u{0}{}", tenant.as_str(), idempotency_key).as_bytes(),
        );
        Self { spec: SPEC_VERSION, id, tenant, occurred_at, source, idempotency_key, event }
    }

    pub fn kind(&self) -> EventKind {
        self.event.kind()
    }
}
