//! Everything a shop reports about an order after it was placed, about checkouts and
//! customers, and the privacy requests platforms forward.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{Address, Currency, Customer, EmailAddress, ExternalId, Money, Order, OrderLine};

/// `order.paid`, `order.cancelled`, `order.fulfilled`: an order changed state. Carries the
/// order as the shop reported it at that moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderChanged {
    pub order: Order,
    /// Why, when the shop says (e.g. Shopify's `cancel_reason`: `customer`, `fraud`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `fulfillment.created`, `fulfillment.updated`: (part of) an order left the warehouse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Fulfillment {
    /// The platform's fulfillment id (exact, as a string).
    pub id: ExternalId,
    pub order_id: ExternalId,
    /// The platform's own fulfillment status, verbatim (`pending`, `success`, `cancelled`, …).
    pub status: String,
    /// Carrier as a lowercase slug (`ups`, `usps`, `dhl`, …), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    /// Carrier name as the shop shows it, e.g. `UPS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier_name: Option<String>,
    #[serde(default)]
    pub tracking_numbers: Vec<String>,
    #[serde(default)]
    pub tracking_urls: Vec<String>,
    /// The items in this fulfillment (a partial fulfillment carries only some).
    #[serde(default)]
    pub lines: Vec<OrderLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Address>,
    /// The customer's address as the fulfillment carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailAddress>,
}

/// `fulfillment.status_updated`: the shop reported a tracking status for one of its own
/// fulfillments (Shopify's fulfillment events), identified by fulfillment rather than by
/// tracking number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FulfillmentStatusUpdated {
    pub order_id: ExternalId,
    pub fulfillment_id: ExternalId,
    pub status: crate::ShipmentStatus,
    /// The platform's own status, verbatim.
    pub carrier_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub status_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub estimated_delivery: Option<OffsetDateTime>,
}

/// `checkout.updated`: a checkout was started or changed (the basis of abandoned-cart flows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Checkout {
    /// The platform's checkout token or id.
    pub id: ExternalId,
    pub customer: Customer,
    pub currency: Currency,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    /// Where the customer can resume the checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_url: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub updated_at: OffsetDateTime,
    /// Set once the checkout became an order.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub completed_at: Option<OffsetDateTime>,
}

/// `customer.created`, `customer.updated`: the shop's view of a customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerChanged {
    pub customer: Customer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_address: Option<Address>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrivacyRequestKind {
    /// The customer asked for their data (GDPR art. 15 / CCPA).
    DataRequest,
    /// Erase this customer's data.
    CustomerRedact,
    /// The shop left: erase everything of the tenant.
    ShopRedact,
}

/// `privacy.requested`: a platform forwarded a data-protection request. Recorded now; the
/// export and erasure that act on it come later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PrivacyRequested {
    pub kind: PrivacyRequestKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<ExternalId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailAddress>,
    /// Orders the request names.
    #[serde(default)]
    pub orders: Vec<ExternalId>,
    /// The platform's request id, when it gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}
