//! JSON Schemas of the contracts, as committed under `proto/schemas/`.
//!
//! Invariant: `proto/schemas/*.json` equals [`all`]; a workspace test fails on drift and
//! `postflow proto` rewrites them.

use schemars::{JsonSchema, schema_for};

use crate::{
    Checkout, CustomerChanged, EmailBounced, EmailClicked, EmailComplained, EmailOpened, EmailResubscribed,
    EmailSent, EmailTopicUnsubscribed, EmailUnsubscribed, Envelope, Fulfillment, FulfillmentStatusUpdated, OrderChanged, OrderPlaced,
    OutboundMessage, PrivacyRequested, RenderRequest, ShipmentProgressed, ShipmentStalled,
    ShipmentUpdated,
};

/// `(file name, pretty JSON)` for every contract.
pub fn all() -> Vec<(String, String)> {
    fn one<T: JsonSchema>(name: &str) -> (String, String) {
        let schema = schema_for!(T);
        let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
        text.push('\n');
        (format!("{name}.schema.json"), text)
    }
    vec![
        one::<Envelope>("envelope"),
        one::<OrderPlaced>("order.placed"),
        one::<OrderChanged>("order.changed"),
        one::<Fulfillment>("fulfillment"),
        one::<FulfillmentStatusUpdated>("fulfillment.status_updated"),
        one::<ShipmentUpdated>("shipment.updated"),
        one::<ShipmentProgressed>("shipment.progressed"),
        one::<ShipmentStalled>("shipment.stalled"),
        one::<Checkout>("checkout.updated"),
        one::<CustomerChanged>("customer.changed"),
        one::<PrivacyRequested>("privacy.requested"),
        one::<EmailSent>("email.sent"),
        one::<EmailBounced>("email.bounced"),
        one::<EmailComplained>("email.complained"),
        one::<EmailOpened>("email.opened"),
        one::<EmailClicked>("email.clicked"),
        one::<EmailUnsubscribed>("email.unsubscribed"),
        one::<EmailTopicUnsubscribed>("email.topic_unsubscribed"),
        one::<EmailResubscribed>("email.resubscribed"),
        one::<RenderRequest>("render-request"),
        one::<OutboundMessage>("outbound-message"),
    ]
}
