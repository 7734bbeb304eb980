//! The versioned event envelope shared by every domain event on the bus.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    Checkout, CustomerChanged, EmailBounced, EmailClicked, EmailComplained, EmailOpened, EmailResubscribed,
    EmailSent, EmailTopicUnsubscribed, EmailUnsubscribed, Fulfillment, FulfillmentStatusUpdated, OrderChanged, OrderPlaced,
    PrivacyRequested, SPEC_VERSION, ShipmentProgressed, ShipmentStalled, ShipmentUpdated,
    TenantId, ids::POSTFLOW_NAMESPACE,
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
    #[serde(rename = "order.paid")]
    OrderPaid(OrderChanged),
    #[serde(rename = "order.cancelled")]
    OrderCancelled(OrderChanged),
    #[serde(rename = "order.fulfilled")]
    OrderFulfilled(OrderChanged),
    #[serde(rename = "fulfillment.created")]
    FulfillmentCreated(Fulfillment),
    #[serde(rename = "fulfillment.updated")]
    FulfillmentUpdated(Fulfillment),
    #[serde(rename = "fulfillment.status_updated")]
    FulfillmentStatusUpdated(FulfillmentStatusUpdated),
    #[serde(rename = "shipment.updated")]
    ShipmentUpdated(ShipmentUpdated),
    #[serde(rename = "shipment.progressed")]
    ShipmentProgressed(ShipmentProgressed),
    #[serde(rename = "shipment.stalled")]
    ShipmentStalled(ShipmentStalled),
    #[serde(rename = "checkout.updated")]
    CheckoutUpdated(Checkout),
    #[serde(rename = "customer.created")]
    CustomerCreated(CustomerChanged),
    #[serde(rename = "customer.updated")]
    CustomerUpdated(CustomerChanged),
    #[serde(rename = "privacy.requested")]
    PrivacyRequested(PrivacyRequested),
    #[serde(rename = "email.sent")]
    EmailSent(EmailSent),
    #[serde(rename = "email.bounced")]
    EmailBounced(EmailBounced),
    #[serde(rename = "email.complained")]
    EmailComplained(EmailComplained),
    #[serde(rename = "email.opened")]
    EmailOpened(EmailOpened),
    #[serde(rename = "email.clicked")]
    EmailClicked(EmailClicked),
    #[serde(rename = "email.unsubscribed")]
    EmailUnsubscribed(EmailUnsubscribed),
    #[serde(rename = "email.topic_unsubscribed")]
    EmailTopicUnsubscribed(EmailTopicUnsubscribed),
    #[serde(rename = "email.resubscribed")]
    EmailResubscribed(EmailResubscribed),
}

/// The event types, as they appear in `type` and in subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    OrderPlaced,
    OrderPaid,
    OrderCancelled,
    OrderFulfilled,
    FulfillmentCreated,
    FulfillmentUpdated,
    FulfillmentStatusUpdated,
    ShipmentUpdated,
    ShipmentProgressed,
    ShipmentStalled,
    CheckoutUpdated,
    CustomerCreated,
    CustomerUpdated,
    PrivacyRequested,
    EmailSent,
    EmailBounced,
    EmailComplained,
    EmailOpened,
    EmailClicked,
    EmailUnsubscribed,
    EmailTopicUnsubscribed,
    EmailResubscribed,
}

impl EventKind {
    pub const ALL: [EventKind; 22] = [
        Self::OrderPlaced,
        Self::OrderPaid,
        Self::OrderCancelled,
        Self::OrderFulfilled,
        Self::FulfillmentCreated,
        Self::FulfillmentUpdated,
        Self::FulfillmentStatusUpdated,
        Self::ShipmentUpdated,
        Self::ShipmentProgressed,
        Self::ShipmentStalled,
        Self::CheckoutUpdated,
        Self::CustomerCreated,
        Self::CustomerUpdated,
        Self::PrivacyRequested,
        Self::EmailSent,
        Self::EmailBounced,
        Self::EmailComplained,
        Self::EmailOpened,
        Self::EmailClicked,
        Self::EmailUnsubscribed,
        Self::EmailTopicUnsubscribed,
        Self::EmailResubscribed,
    ];

    /// The dotted name used in the envelope's `type` and as the subject suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderPlaced => "order.placed",
            Self::OrderPaid => "order.paid",
            Self::OrderCancelled => "order.cancelled",
            Self::OrderFulfilled => "order.fulfilled",
            Self::FulfillmentCreated => "fulfillment.created",
            Self::FulfillmentUpdated => "fulfillment.updated",
            Self::FulfillmentStatusUpdated => "fulfillment.status_updated",
            Self::ShipmentUpdated => "shipment.updated",
            Self::ShipmentProgressed => "shipment.progressed",
            Self::ShipmentStalled => "shipment.stalled",
            Self::CheckoutUpdated => "checkout.updated",
            Self::CustomerCreated => "customer.created",
            Self::CustomerUpdated => "customer.updated",
            Self::PrivacyRequested => "privacy.requested",
            Self::EmailSent => "email.sent",
            Self::EmailBounced => "email.bounced",
            Self::EmailComplained => "email.complained",
            Self::EmailOpened => "email.opened",
            Self::EmailClicked => "email.clicked",
            Self::EmailUnsubscribed => "email.unsubscribed",
            Self::EmailTopicUnsubscribed => "email.topic_unsubscribed",
            Self::EmailResubscribed => "email.resubscribed",
        }
    }

    /// The kind named `name` (as in `type`), if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Self::OrderPlaced(_) => EventKind::OrderPlaced,
            Self::OrderPaid(_) => EventKind::OrderPaid,
            Self::OrderCancelled(_) => EventKind::OrderCancelled,
            Self::OrderFulfilled(_) => EventKind::OrderFulfilled,
            Self::FulfillmentCreated(_) => EventKind::FulfillmentCreated,
            Self::FulfillmentUpdated(_) => EventKind::FulfillmentUpdated,
            Self::FulfillmentStatusUpdated(_) => EventKind::FulfillmentStatusUpdated,
            Self::ShipmentUpdated(_) => EventKind::ShipmentUpdated,
            Self::ShipmentProgressed(_) => EventKind::ShipmentProgressed,
            Self::ShipmentStalled(_) => EventKind::ShipmentStalled,
            Self::CheckoutUpdated(_) => EventKind::CheckoutUpdated,
            Self::CustomerCreated(_) => EventKind::CustomerCreated,
            Self::CustomerUpdated(_) => EventKind::CustomerUpdated,
            Self::PrivacyRequested(_) => EventKind::PrivacyRequested,
            Self::EmailSent(_) => EventKind::EmailSent,
            Self::EmailBounced(_) => EventKind::EmailBounced,
            Self::EmailComplained(_) => EventKind::EmailComplained,
            Self::EmailOpened(_) => EventKind::EmailOpened,
            Self::EmailClicked(_) => EventKind::EmailClicked,
            Self::EmailUnsubscribed(_) => EventKind::EmailUnsubscribed,
            Self::EmailTopicUnsubscribed(_) => EventKind::EmailTopicUnsubscribed,
            Self::EmailResubscribed(_) => EventKind::EmailResubscribed,
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
