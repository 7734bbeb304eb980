//! Shopify webhooks: verifies `X-Shopify-Hmac-Sha256` and maps the topics of the
//! post-purchase journey (orders, fulfillments and their tracking events, checkouts,
//! customers, and the mandatory privacy topics) to contract envelopes; every other topic is
//! acknowledged and ignored.
//!
//! Use [`verify`] first, on the raw body, then [`parse`] with the [`Verified`] token it
//! returns (or [`verify_and_parse`] for both). Headers are looked up case-insensitively
//! with either prefix: `X-Shopify-…` (HTTPS webhooks) or `shopify-…` (the newer Events
//! delivery).
//!
//! | topic | event | idempotency key |
//! |---|---|---|
//! | `orders/create` | `order.placed` | `shopify:order:{id}:placed` |
//! | `orders/paid`, `orders/cancelled`, `orders/fulfilled` | `order.paid`, … | `shopify:order:{id}:paid`, … |
//! | `fulfillments/create` | `fulfillment.created` | `shopify:fulfillment:{id}:created` |
//! | `fulfillment_events/create` | `fulfillment.status_updated` | `shopify:fulfillment_event:{id}` |
//! | `customers/create` | `customer.created` | `shopify:customer:{id}:created` |
//! | `fulfillments/update` | `fulfillment.updated` | update rule |
//! | `checkouts/create`, `checkouts/update` | `checkout.updated` | update rule |
//! | `customers/update` | `customer.updated` | update rule |
//! | `customers/data_request`, `customers/redact`, `shop/redact` | `privacy.requested` | update rule |
//!
//! The update rule: with `X-Shopify-Event-Id` (Shopify's id of the business event, the same
//! on every delivery it causes, shared by the topics one change fans out to) the key is
//! `shopify:event:{event_id}:{topic}`; without it, `shopify:{topic}:{id}:{updated_at}` (the
//! time in UTC), and for the privacy topics the shop, the customer and the request.
//!
//! `occurred_at` is the order's `created_at` for `orders/create` (as before); for every
//! other topic it is `X-Shopify-Triggered-At` when present and valid (the moment of the
//! event, the same on every retry), else the payload's `updated_at`, else its
//! `created_at`, else the receive time.
//!
//! Invariants:
//! - ids never pass through a float: they are read as `u64` from a JSON integer or a string
//!   of digits; a float, a negative number or anything above `u64::MAX` is rejected;
//! - amounts are decimal strings read exactly into minor units of the resource's currency,
//!   and every sum or product is checked;
//! - the idempotency key is a business key, so redeliveries and duplicate subscriptions of
//!   the same change yield the same envelope id;
//! - a tracking status without a canonical equivalent is ignored rather than guessed;
//! - unknown fields are ignored, so fields Shopify adds later do not break ingestion.

use std::fmt;

use contracts::{
    Address, Checkout, Currency, Customer, CustomerChanged, EmailAddress, Envelope, Event,
    ExternalId, Fulfillment, FulfillmentStatusUpdated, Money, Order, OrderChanged, OrderLine,
    OrderPlaced, PrivacyRequestKind, PrivacyRequested, ShipmentStatus, Source, TenantId,
};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::common::{
    Id, Text, check_hmac_b64, clip, country_code, hex_encode, location_text, missing, money,
    money_or_zero, out_of_range, read_json, slug, text_of as text,
};
pub use super::{AdapterError, Headers, Parsed};
use super::{header, sign_hmac_b64};

/// [`Source::system`] of every event from this adapter.
pub const SYSTEM: &str = "shopify";
pub const TOPIC_ORDERS_CREATE: &str = "orders/create";
pub const TOPIC_ORDERS_PAID: &str = "orders/paid";
pub const TOPIC_ORDERS_CANCELLED: &str = "orders/cancelled";
pub const TOPIC_ORDERS_FULFILLED: &str = "orders/fulfilled";
pub const TOPIC_FULFILLMENTS_CREATE: &str = "fulfillments/create";
pub const TOPIC_FULFILLMENTS_UPDATE: &str = "fulfillments/update";
pub const TOPIC_FULFILLMENT_EVENTS_CREATE: &str = "fulfillment_events/create";
pub const TOPIC_CHECKOUTS_CREATE: &str = "checkouts/create";
pub const TOPIC_CHECKOUTS_UPDATE: &str = "checkouts/update";
pub const TOPIC_CUSTOMERS_CREATE: &str = "customers/create";
pub const TOPIC_CUSTOMERS_UPDATE: &str = "customers/update";
pub const TOPIC_CUSTOMERS_DATA_REQUEST: &str = "customers/data_request";
pub const TOPIC_CUSTOMERS_REDACT: &str = "customers/redact";
pub const TOPIC_SHOP_REDACT: &str = "shop/redact";

/// Every topic that produces events; any other topic is [`Parsed::Ignored`].
pub const TOPICS: [&str; 14] = [
    TOPIC_ORDERS_CREATE,
    TOPIC_ORDERS_PAID,
    TOPIC_ORDERS_CANCELLED,
    TOPIC_ORDERS_FULFILLED,
    TOPIC_FULFILLMENTS_CREATE,
    TOPIC_FULFILLMENTS_UPDATE,
    TOPIC_FULFILLMENT_EVENTS_CREATE,
    TOPIC_CHECKOUTS_CREATE,
    TOPIC_CHECKOUTS_UPDATE,
    TOPIC_CUSTOMERS_CREATE,
    TOPIC_CUSTOMERS_UPDATE,
    TOPIC_CUSTOMERS_DATA_REQUEST,
    TOPIC_CUSTOMERS_REDACT,
    TOPIC_SHOP_REDACT,
];

/// The tenant of the envelopes [`parse_untrusted_topic`] builds.
pub const UNTRUSTED_TENANT: &str = "untrusted";

const HMAC_HEADER: [&str; 2] = ["x-shopify-hmac-sha256", "shopify-hmac-sha256"];
const TOPIC_HEADER: [&str; 2] = ["x-shopify-topic", "shopify-topic"];
const WEBHOOK_ID_HEADER: [&str; 2] = ["x-shopify-webhook-id", "shopify-webhook-id"];
const TRIGGERED_AT_HEADER: [&str; 2] = ["x-shopify-triggered-at", "shopify-triggered-at"];
const EVENT_ID_HEADER: [&str; 2] = ["x-shopify-event-id", "shopify-event-id"];

/// Longest `X-Shopify-Event-Id` put in a key (Shopify's are UUIDs, 36 characters).
const MAX_EVENT_ID: usize = 128;
/// Up to this many order ids are spelled out in a privacy request's key; more are digested.
const MAX_KEYED_ORDERS: usize = 20;

/// Proof that a body's signature was checked. Only [`verify`] makes one.
#[derive(Debug)]
pub struct Verified(());

/// `base64(HMAC-SHA256(secret, body))`: the `X-Shopify-Hmac-Sha256` value Shopify would send.
#[must_use]
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    sign_hmac_b64(secret, body)
}

/// Checks `X-Shopify-Hmac-Sha256` against the raw body with each of `secrets` (the old and
/// the new one during a rotation). Does not look at the body's content.
pub fn verify<H: Headers + ?Sized>(
    secrets: &[&[u8]],
    headers: &H,
    body: &[u8],
) -> Result<Verified, AdapterError> {
    check_hmac_b64(secrets, headers, &HMAC_HEADER, body).map(|()| Verified(()))
}

/// Maps a verified delivery to events. The topic decides before the body is read: topics
/// not in [`TOPICS`] (matched exactly) are [`Parsed::Ignored`] whatever their body.
pub fn parse<H: Headers + ?Sized>(
    _verified: &Verified,
    tenant: &TenantId,
    headers: &H,
    body: &[u8],
    received_at: OffsetDateTime,
) -> Result<Parsed, AdapterError> {
    let topic =
        header(headers, &TOPIC_HEADER).ok_or(AdapterError::MissingHeader(TOPIC_HEADER[0]))?;
    let Some(topic) = Topic::parse(topic) else {
        return Ok(Parsed::Ignored {
            topic: topic.to_owned(),
        });
    };
    let delivery = Delivery {
        tenant,
        topic,
        event_id: header(headers, &EVENT_ID_HEADER).filter(|id| is_event_id(id)),
        webhook_id: header(headers, &WEBHOOK_ID_HEADER),
        triggered_at: header(headers, &TRIGGERED_AT_HEADER).and_then(parse_rfc3339),
        received_at,
    };
    delivery.map(body)
}

/// [`verify`], then [`parse`]: what a webhook handler calls.
pub fn verify_and_parse<H: Headers + ?Sized>(
    secrets: &[&[u8]],
    tenant: &TenantId,
    headers: &H,
    body: &[u8],
    received_at: OffsetDateTime,
) -> Result<Parsed, AdapterError> {
    let verified = verify(secrets, headers, body)?;
    parse(&verified, tenant, headers, body, received_at)
}

/// The order mapping alone, without signature or headers, for fuzzing: never panics on
/// any input. Without `created_at`, `placed_at` is the Unix epoch.
pub fn parse_untrusted(body: &[u8]) -> Result<Order, AdapterError> {
    parse_order(body, OffsetDateTime::UNIX_EPOCH)
}

/// The mapping of `topic` alone, for fuzzing: no signature, no headers (so no event id and
/// no trigger time), tenant [`UNTRUSTED_TENANT`], received at the Unix epoch. Never panics
/// on any input.
pub fn parse_untrusted_topic(topic: &str, body: &[u8]) -> Result<Parsed, AdapterError> {
    let Some(known) = Topic::parse(topic) else {
        return Ok(Parsed::Ignored {
            topic: clip(topic.to_owned()),
        });
    };
    let tenant = TenantId::parse(UNTRUSTED_TENANT)
        .map_err(|e| AdapterError::Invalid(format!("tenant: {e}")))?;
    Delivery {
        tenant: &tenant,
        topic: known,
        event_id: None,
        webhook_id: None,
        triggered_at: None,
        received_at: OffsetDateTime::UNIX_EPOCH,
    }
    .map(body)
}

fn parse_order(body: &[u8], fallback_time: OffsetDateTime) -> Result<Order, AdapterError> {
    read_json::<RawOrder>(body)?.into_order(fallback_time)
}

fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339).ok()
}

/// The first of `times` that is a valid RFC 3339 time.
fn first_time(times: &[&Option<String>]) -> Option<OffsetDateTime> {
    times
        .iter()
        .find_map(|t| t.as_deref().and_then(parse_rfc3339))
}

/// `X-Shopify-Event-Id` as we put it in a key: printable ASCII without spaces, not too
/// long. Anything else is treated as absent, so the key is derived from the payload.
fn is_event_id(id: &str) -> bool {
    (1..=MAX_EVENT_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A time as it appears in a key: RFC 3339 in UTC, so the shop's offset does not matter.
fn key_time(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp_nanos().to_string())
}

/// A plausible BCP 47 tag (`en`, `en-CA`, `zh-Hant-TW`; `_` read as `-`), or nothing.
fn locale(s: &Option<String>) -> Option<String> {
    let t = s.as_deref()?.trim().replace('_', "-");
    let mut subtags = t.split('-');
    let primary = subtags.next()?;
    let ok = (2..=8).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && subtags
            .all(|st| (1..=8).contains(&st.len()) && st.bytes().all(|b| b.is_ascii_alphanumeric()));
    ok.then_some(t)
}

/// The first of `candidates` that is a valid email address.
fn first_email(candidates: &[&Option<String>]) -> Option<EmailAddress> {
    candidates
        .iter()
        .filter_map(|e| e.as_deref())
        .find_map(|e| EmailAddress::parse(e).ok())
}

/// The canonical status of a fulfillment event's `status`, or `None` for a status Shopify
/// may add later: an unknown status is not mapped to a guess, because a guess could tell
/// the customer about progress that did not happen.
fn shipment_status(status: &str) -> Option<ShipmentStatus> {
    Some(match status {
        "label_printed" | "label_purchased" | "confirmed" => ShipmentStatus::InfoReceived,
        // A delay is still on its way, not an exception; `carrier_status` keeps the nuance.
        "carrier_picked_up" | "picked_up" | "in_transit" | "delayed" => ShipmentStatus::InTransit,
        "out_for_delivery" => ShipmentStatus::OutForDelivery,
        "attempted_delivery" => ShipmentStatus::FailedAttempt,
        "ready_for_pickup" => ShipmentStatus::AvailableForPickup,
        "delivered" => ShipmentStatus::Delivered,
        "failure" => ShipmentStatus::Exception,
        _ => return None,
    })
}

/// The topics this adapter maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topic {
    OrdersCreate,
    OrdersPaid,
    OrdersCancelled,
    OrdersFulfilled,
    FulfillmentsCreate,
    FulfillmentsUpdate,
    FulfillmentEventsCreate,
    CheckoutsCreate,
    CheckoutsUpdate,
    CustomersCreate,
    CustomersUpdate,
    CustomersDataRequest,
    CustomersRedact,
    ShopRedact,
}

impl Topic {
    const ALL: [Topic; 14] = [
        Self::OrdersCreate,
        Self::OrdersPaid,
        Self::OrdersCancelled,
        Self::OrdersFulfilled,
        Self::FulfillmentsCreate,
        Self::FulfillmentsUpdate,
        Self::FulfillmentEventsCreate,
        Self::CheckoutsCreate,
        Self::CheckoutsUpdate,
        Self::CustomersCreate,
        Self::CustomersUpdate,
        Self::CustomersDataRequest,
        Self::CustomersRedact,
        Self::ShopRedact,
    ];

    /// Shopify topics are lowercase; anything else is not one of ours.
    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::OrdersCreate => TOPIC_ORDERS_CREATE,
            Self::OrdersPaid => TOPIC_ORDERS_PAID,
            Self::OrdersCancelled => TOPIC_ORDERS_CANCELLED,
            Self::OrdersFulfilled => TOPIC_ORDERS_FULFILLED,
            Self::FulfillmentsCreate => TOPIC_FULFILLMENTS_CREATE,
            Self::FulfillmentsUpdate => TOPIC_FULFILLMENTS_UPDATE,
            Self::FulfillmentEventsCreate => TOPIC_FULFILLMENT_EVENTS_CREATE,
            Self::CheckoutsCreate => TOPIC_CHECKOUTS_CREATE,
            Self::CheckoutsUpdate => TOPIC_CHECKOUTS_UPDATE,
            Self::CustomersCreate => TOPIC_CUSTOMERS_CREATE,
            Self::CustomersUpdate => TOPIC_CUSTOMERS_UPDATE,
            Self::CustomersDataRequest => TOPIC_CUSTOMERS_DATA_REQUEST,
            Self::CustomersRedact => TOPIC_CUSTOMERS_REDACT,
            Self::ShopRedact => TOPIC_SHOP_REDACT,
        }
    }
}

/// What a delivery's headers (or their absence) say, next to the body.
struct Delivery<'a> {
    tenant: &'a TenantId,
    topic: Topic,
    /// `X-Shopify-Event-Id`, when present and usable in a key.
    event_id: Option<&'a str>,
    /// `X-Shopify-Webhook-Id`: this delivery, kept as [`Source::delivery_id`].
    webhook_id: Option<&'a str>,
    /// `X-Shopify-Triggered-At`, when present and valid.
    triggered_at: Option<OffsetDateTime>,
    received_at: OffsetDateTime,
}

impl Delivery<'_> {
    fn map(&self, body: &[u8]) -> Result<Parsed, AdapterError> {
        match self.topic {
            Topic::OrdersCreate => self.order_placed(body),
            Topic::OrdersPaid | Topic::OrdersCancelled | Topic::OrdersFulfilled => {
                self.order_changed(body)
            }
            Topic::FulfillmentsCreate | Topic::FulfillmentsUpdate => self.fulfillment(body),
            Topic::FulfillmentEventsCreate => self.fulfillment_event(body),
            Topic::CheckoutsCreate | Topic::CheckoutsUpdate => self.checkout(body),
            Topic::CustomersCreate | Topic::CustomersUpdate => self.customer(body),
            Topic::CustomersDataRequest | Topic::CustomersRedact | Topic::ShopRedact => {
                self.privacy(body)
            }
        }
    }

    /// `occurred_at` of every topic but `orders/create`: the trigger time, else the first
    /// valid one of the payload's `times` (its `updated_at`, then its `created_at`), else
    /// the receive time.
    fn occurred_at(&self, times: &[&Option<String>]) -> OffsetDateTime {
        self.triggered_at
            .or_else(|| first_time(times))
            .unwrap_or(self.received_at)
    }

    /// The key of an update-like topic when the event id is known.
    fn event_key(&self) -> Option<String> {
        self.event_id
            .map(|id| format!("shopify:event:{id}:{}", self.topic.as_str()))
    }

    /// The key of an update-like topic: by event id, else by resource `id` and the
    /// resource's `updated_at`, without which there is no stable key.
    fn update_key(&self, id: &str, updated_at: &Option<String>) -> Result<String, AdapterError> {
        if let Some(key) = self.event_key() {
            return Ok(key);
        }
        let raw = text(updated_at).ok_or_else(|| missing("updated_at"))?;
        let at = parse_rfc3339(&raw).ok_or_else(|| {
            AdapterError::Invalid(clip(format!("updated_at: not an rfc 3339 time: {raw:?}")))
        })?;
        Ok(format!(
            "shopify:{}:{id}:{}",
            self.topic.as_str(),
            key_time(at)
        ))
    }

    fn events(&self, occurred_at: OffsetDateTime, key: String, event: Event) -> Parsed {
        let source = Source {
            system: SYSTEM.to_owned(),
            delivery_id: self.webhook_id.map(str::to_owned),
            topic: Some(self.topic.as_str().to_owned()),
        };
        Parsed::Events(vec![Envelope::new(
            self.tenant.clone(),
            occurred_at,
            source,
            key,
            event,
        )])
    }

    /// `orders/create`, dated at the order's `created_at` (else the trigger time, else the
    /// receive time).
    fn order_placed(&self, body: &[u8]) -> Result<Parsed, AdapterError> {
        let order = parse_order(body, self.triggered_at.unwrap_or(self.received_at))?;
        let key = format!("shopify:order:{}:placed", order.id);
        Ok(self.events(
            order.placed_at,
            key,
            Event::OrderPlaced(OrderPlaced { order }),
        ))
    }

    /// `orders/paid`, `orders/cancelled`, `orders/fulfilled`: the order as it is now.
    fn order_changed(&self, body: &[u8]) -> Result<Parsed, AdapterError> {
        let mut raw: RawOrder = read_json(body)?;
        let cancel_reason = raw.cancel_reason.take();
        let updated_at = raw.updated_at.take();
        let occurred_at = self.occurred_at(&[&updated_at, &raw.created_at]);
        let order = raw.into_order(self.triggered_at.unwrap_or(self.received_at))?;
        let (suffix, make): (_, fn(OrderChanged) -> Event) = match self.topic {
            Topic::OrdersCancelled => ("cancelled", Event::OrderCancelled),
            Topic::OrdersFulfilled => ("fulfilled", Event::OrderFulfilled),
            _ => ("paid", Event::OrderPaid),
        };
        let reason = match self.topic {
            Topic::OrdersCancelled => text(&cancel_reason),
            _ => None,
        };
        let key = format!("shopify:order:{}:{suffix}", order.id);
        Ok(self.events(occurred_at, key, make(OrderChanged { order, reason })))
    }

    /// `fulfillments/create`, `fulfillments/update`.
    fn fulfillment(&self, body: &[u8]) -> Result<Parsed, AdapterError> {
        let raw: RawFulfillment = read_json(body)?;
        let occurred_at = self.occurred_at(&[&raw.updated_at, &raw.created_at]);
        let id = raw.id.ok_or_else(|| missing("id"))?;
        let key = match self.topic {
            Topic::FulfillmentsCreate => format!("shopify:fulfillment:{}:created", id.0),
            _ => self.update_key(&id.0.to_string(), &raw.updated_at)?,
        };
        let fulfillment = raw.into_fulfillment(id)?;
        let event = match self.topic {
            Topic::FulfillmentsCreate => Event::FulfillmentCreated(fulfillment),
            _ => Event::FulfillmentUpdated(fulfillment),
        };
        Ok(self.events(occurred_at, key, event))
    }

    /// `fulfillment_events/create`: a tracking status of one of the shop's fulfillments.
    fn fulfillment_event(&self, body: &[u8]) -> Result<Parsed, AdapterError> {
        let raw: RawFulfillmentEvent = read_json(body)?;
        let occurred_at = self.occurred_at(&[&raw.updated_at, &raw.created_at]);
        let id = raw.id.ok_or_else(|| missing("id"))?;
        let carrier_status = text(&raw.status).ok_or_else(|| missing("status"))?;
        let Some(status) = shipment_status(&carrier_status) else {
            return Ok(Parsed::Ignored {
                topic: clip(format!("{} ({carrier_status})", self.topic.as_str())),
            });
        };
        let update = FulfillmentStatusUpdated {
            order_id: raw.order_id.ok_or_else(|| missing("order_id"))?.into(),
            fulfillment_id: raw
                .fulfillment_id
                .ok_or_else(|| missing("fulfillment_id"))?
                .into(),
            status,
            carrier_status,
            message: text(&raw.message),
            location: location_text(
                raw.city.as_deref(),
                raw.province.as_deref(),
                None,
                raw.country.as_deref(),
            ),
            status_at: first_time(&[&raw.happened_at]).unwrap_or(occurred_at),
            estimated_delivery: first_time(&[&raw.estimated_delivery_at]),
        };
        let key = format!("shopify:fulfillment_event:{}", id.0);
        Ok(self.events(occurred_at, key, Event::FulfillmentStatusUpdated(update)))
    }

    /// `checkouts/create`, `checkouts/update`: a checkout, for abandoned-cart flows.
    fn checkout(&self, body: &[u8]) -> Result<Parsed, AdapterError> {
        let raw: RawCheckout = read_json(body)?;
        let occurred_at = self.occurred_at(&[&raw.updated_at, &raw.created_at]);
        let token = raw
            .token
            .as_ref()
            .and_then(|t| text(&Some(t.0.as_str())))
            .ok_or_else(|| missing("token"))?;
        let key = self.update_key(&token, &raw.updated_at)?;
        let checkout = raw.into_checkout(ExternalId::new(token), occurred_at)?;
        Ok(self.events(occurred_at, key, Event::CheckoutUpdated(checkout)))
    }

    /// `customers/create`, `customers/update`.
    fn customer(&self, body: &[u8]) -> Result<Parsed, AdapterError> {
        let raw: RawCustomerResource = read_json(body)?;
        let occurred_at = self.occurred_at(&[&raw.updated_at, &raw.created_at]);
        let id = raw.id.ok_or_else(|| missing("id"))?;
        let (key, make): (_, fn(CustomerChanged) -> Event) = match self.topic {
            Topic::CustomersCreate => (
                format!("shopify:customer:{}:created", id.0),
                Event::CustomerCreated,
            ),
            _ => (
                self.update_key(&id.0.to_string(), &raw.updated_at)?,
                Event::CustomerUpdated,
            ),
        };
        Ok(self.events(occurred_at, key, make(raw.into_changed(id))))
    }

    /// `customers/data_request`, `customers/redact`, `shop/redact`: the mandatory privacy
    /// topics. Their payloads carry no time.
    fn privacy(&self, body: &[u8]) -> Result<Parsed, AdapterError> {
        let raw: RawPrivacy = read_json(body)?;
        let occurred_at = self.occurred_at(&[]);
        let shop = text(&raw.shop_domain)
            .or_else(|| raw.shop_id.map(|id| id.0.to_string()))
            .ok_or_else(|| missing("shop_domain"))?;
        let request_id = raw
            .data_request
            .as_ref()
            .and_then(|r| r.id.as_ref())
            .and_then(|id| text(&Some(id.0.as_str())));
        let (kind, orders) = match self.topic {
            Topic::CustomersDataRequest => (PrivacyRequestKind::DataRequest, raw.orders_requested),
            Topic::CustomersRedact => (PrivacyRequestKind::CustomerRedact, raw.orders_to_redact),
            _ => (PrivacyRequestKind::ShopRedact, None),
        };
        let orders = orders.unwrap_or_default();
        let request = if kind == PrivacyRequestKind::ShopRedact {
            PrivacyRequested {
                kind,
                customer_id: None,
                email: None,
                orders: Vec::new(),
                request_id: None,
            }
        } else {
            let customer = raw.customer.as_ref();
            PrivacyRequested {
                kind,
                customer_id: Some(
                    customer
                        .and_then(|c| c.id)
                        .ok_or_else(|| missing("customer.id"))?
                        .into(),
                ),
                email: first_email(&[&customer.and_then(|c| c.email.clone())]),
                orders: orders.iter().copied().map(ExternalId::from).collect(),
                request_id: request_id.filter(|_| kind == PrivacyRequestKind::DataRequest),
            }
        };
        let key = match self.event_key() {
            Some(key) => key,
            None => {
                let topic = self.topic.as_str();
                let customer = request
                    .customer_id
                    .as_ref()
                    .map(ExternalId::as_str)
                    .unwrap_or_default();
                match (&request.kind, &request.request_id) {
                    (PrivacyRequestKind::ShopRedact, _) => format!("shopify:{topic}:{shop}"),
                    (PrivacyRequestKind::DataRequest, Some(request_id)) => {
                        format!("shopify:{topic}:{shop}:{customer}:request-{request_id}")
                    }
                    _ => format!(
                        "shopify:{topic}:{shop}:{customer}:orders-{}",
                        orders_key(&orders)
                    ),
                }
            }
        };
        Ok(self.events(occurred_at, key, Event::PrivacyRequested(request)))
    }
}

/// Order ids as they appear in a privacy request's key: sorted and without repeats, so the
/// same set in another order is the same request; digested when there are many.
fn orders_key(orders: &[Id]) -> String {
    let mut ids: Vec<u64> = orders.iter().map(|o| o.0).collect();
    ids.sort_unstable();
    ids.dedup();
    let joined = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    if ids.len() <= MAX_KEYED_ORDERS {
        return joined;
    }
    format!(
        "{}-sha256-{}",
        ids.len(),
        hex_encode(&Sha256::digest(joined.as_bytes()))
    )
}

/// A money amount as Shopify sends it: a decimal string (`"404.95"`), never a JSON number.
struct Amount(String);

impl AsRef<str> for Amount {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AmountVisitor;

        impl Visitor<'_> for AmountVisitor {
            type Value = Amount;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal amount as a string")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
                Ok(Amount(v.to_owned()))
            }
        }

        d.deserialize_str(AmountVisitor)
    }
}

/// The fields of the REST Order JSON that Postflow uses. Everything else is ignored.
#[derive(Deserialize)]
#[serde(expecting = "an order object")]
struct RawOrder {
    id: Option<Id>,
    name: Option<String>,
    order_number: Option<Id>,
    currency: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
    cancel_reason: Option<String>,
    email: Option<String>,
    contact_email: Option<String>,
    customer: Option<RawCustomer>,
    customer_locale: Option<String>,
    buyer_accepts_marketing: Option<bool>,
    billing_address: Option<RawAddress>,
    shipping_address: Option<RawAddress>,
    line_items: Option<Vec<RawLine>>,
    subtotal_price: Option<Amount>,
    current_subtotal_price: Option<Amount>,
    total_shipping_price_set: Option<RawPriceSet>,
    shipping_lines: Option<Vec<RawShippingLine>>,
    total_tax: Option<Amount>,
    total_discounts: Option<Amount>,
    total_price: Option<Amount>,
    order_status_url: Option<String>,
    test: Option<bool>,
}

#[derive(Deserialize)]
#[serde(expecting = "a customer object")]
struct RawCustomer {
    id: Option<Id>,
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(expecting = "an address object")]
struct RawAddress {
    first_name: Option<String>,
    last_name: Option<String>,
    name: Option<String>,
    company: Option<String>,
    address1: Option<String>,
    address2: Option<String>,
    city: Option<String>,
    province: Option<String>,
    province_code: Option<String>,
    zip: Option<String>,
    country_code: Option<String>,
}

#[derive(Deserialize)]
#[serde(expecting = "a line item object")]
struct RawLine {
    title: Option<String>,
    name: Option<String>,
    variant_title: Option<String>,
    sku: Option<String>,
    product_id: Option<Id>,
    variant_id: Option<Id>,
    quantity: Option<u32>,
    price: Option<Amount>,
    total_discount: Option<Amount>,
    /// Read for its currency by fulfillments, whose payload has no `currency`.
    price_set: Option<RawPriceSet>,
}

#[derive(Deserialize)]
#[serde(expecting = "a price set object")]
struct RawPriceSet {
    shop_money: Option<RawMoney>,
}

#[derive(Deserialize)]
#[serde(expecting = "a money object")]
struct RawMoney {
    amount: Option<Amount>,
    currency_code: Option<String>,
}

#[derive(Deserialize)]
#[serde(expecting = "a shipping line object")]
struct RawShippingLine {
    price: Option<Amount>,
}

/// The REST Fulfillment JSON (`fulfillments/create`, `fulfillments/update`).
#[derive(Deserialize)]
#[serde(expecting = "a fulfillment object")]
struct RawFulfillment {
    id: Option<Id>,
    order_id: Option<Id>,
    status: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
    tracking_company: Option<String>,
    tracking_number: Option<Text>,
    tracking_numbers: Option<Vec<Option<Text>>>,
    tracking_url: Option<String>,
    tracking_urls: Option<Vec<Option<String>>>,
    line_items: Option<Vec<RawLine>>,
    destination: Option<RawAddress>,
    email: Option<String>,
}

/// The REST FulfillmentEvent JSON (`fulfillment_events/create`).
#[derive(Deserialize)]
#[serde(expecting = "a fulfillment event object")]
struct RawFulfillmentEvent {
    id: Option<Id>,
    fulfillment_id: Option<Id>,
    order_id: Option<Id>,
    status: Option<String>,
    message: Option<String>,
    happened_at: Option<String>,
    city: Option<String>,
    province: Option<String>,
    country: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
    estimated_delivery_at: Option<String>,
}

/// The REST Checkout JSON (`checkouts/create`, `checkouts/update`).
#[derive(Deserialize)]
#[serde(expecting = "a checkout object")]
struct RawCheckout {
    token: Option<Text>,
    email: Option<String>,
    customer: Option<RawCustomer>,
    customer_locale: Option<String>,
    buyer_accepts_marketing: Option<bool>,
    billing_address: Option<RawAddress>,
    shipping_address: Option<RawAddress>,
    currency: Option<String>,
    line_items: Option<Vec<RawLine>>,
    total_price: Option<Amount>,
    abandoned_checkout_url: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
    completed_at: Option<String>,
}

/// The REST Customer JSON (`customers/create`, `customers/update`).
#[derive(Deserialize)]
#[serde(expecting = "a customer object")]
struct RawCustomerResource {
    id: Option<Id>,
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    locale: Option<String>,
    /// Deprecated by Shopify in favour of `email_marketing_consent`; read when that is absent.
    accepts_marketing: Option<bool>,
    email_marketing_consent: Option<RawConsent>,
    default_address: Option<RawAddress>,
    created_at: Option<String>,
    updated_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(expecting = "a marketing consent object")]
struct RawConsent {
    state: Option<String>,
}

/// The payload of the privacy topics (`customers/data_request`, `customers/redact`,
/// `shop/redact`).
#[derive(Deserialize)]
#[serde(expecting = "a privacy request object")]
struct RawPrivacy {
    shop_id: Option<Id>,
    shop_domain: Option<String>,
    customer: Option<RawCustomer>,
    orders_requested: Option<Vec<Id>>,
    orders_to_redact: Option<Vec<Id>>,
    data_request: Option<RawDataRequest>,
}

#[derive(Deserialize)]
#[serde(expecting = "a data request object")]
struct RawDataRequest {
    id: Option<Text>,
}

/// The parts of an order or a checkout that say who is buying.
struct Buyer<'a> {
    /// Tried in order, then the customer's own.
    emails: [&'a Option<String>; 2],
    customer: Option<&'a RawCustomer>,
    locale: &'a Option<String>,
    accepts_marketing: Option<bool>,
    billing: Option<&'a RawAddress>,
    shipping: Option<&'a RawAddress>,
}

impl Buyer<'_> {
    fn customer(&self) -> Customer {
        let customer = self.customer;
        let customer_email = customer.map(|c| &c.email);
        let email = self
            .emails
            .into_iter()
            .chain(customer_email)
            .filter_map(|e| e.as_deref())
            .find_map(|e| EmailAddress::parse(e).ok());
        // Both names from the first source that has either, so names are never mixed.
        let (first_name, last_name) = customer
            .map(|c| (text(&c.first_name), text(&c.last_name)))
            .into_iter()
            .chain(self.billing.map(RawAddress::names))
            .chain(self.shipping.map(RawAddress::names))
            .find(|(first, last)| first.is_some() || last.is_some())
            .unwrap_or((None, None));
        let country = self
            .shipping
            .and_then(|a| country_code(&a.country_code))
            .or_else(|| self.billing.and_then(|a| country_code(&a.country_code)));
        Customer {
            id: customer.and_then(|c| c.id).map(ExternalId::from),
            email,
            first_name,
            last_name,
            locale: locale(self.locale),
            country,
            accepts_marketing: self.accepts_marketing,
        }
    }
}

/// `lines` as order lines, priced in `currency`.
fn order_lines(lines: &[RawLine], currency: &Currency) -> Result<Vec<OrderLine>, AdapterError> {
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| line.to_line(i, currency))
        .collect()
}

/// The values of a string list that are not blank, without repeats, in their order.
fn distinct<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for value in values.into_iter().filter_map(|v| text(&v)) {
        if !out.contains(&value) {
            out.push(value);
        }
    }
    out
}

impl RawOrder {
    fn into_order(self, fallback_time: OffsetDateTime) -> Result<Order, AdapterError> {
        let id = self.id.ok_or_else(|| missing("id"))?;
        let currency = text(&self.currency).ok_or_else(|| missing("currency"))?;
        let currency = Currency::parse(&currency)
            .map_err(|e| AdapterError::Invalid(clip(format!("currency: {e}"))))?;
        let total = text(&self.total_price).ok_or_else(|| missing("total_price"))?;
        let total = money("total_price", &total, &currency)?;
        let raw_lines = self
            .line_items
            .as_ref()
            .ok_or_else(|| missing("line_items"))?;
        let lines = order_lines(raw_lines, &currency)?;

        let subtotal =
            match text(&self.subtotal_price).or_else(|| text(&self.current_subtotal_price)) {
                Some(s) => money("subtotal_price", &s, &currency)?,
                None => {
                    let minor = lines
                        .iter()
                        .try_fold(0i64, |acc, l| acc.checked_add(l.total.minor))
                        .ok_or_else(|| out_of_range("subtotal_price"))?;
                    Money {
                        minor,
                        currency: currency.clone(),
                    }
                }
            };

        let number = text(&self.name)
            .or_else(|| self.order_number.map(|n| format!("#{}", n.0)))
            .unwrap_or_else(|| id.0.to_string());

        Ok(Order {
            id: id.into(),
            number,
            placed_at: self
                .created_at
                .as_deref()
                .and_then(parse_rfc3339)
                .unwrap_or(fallback_time),
            customer: self.customer(),
            lines,
            subtotal,
            shipping: self.shipping(&currency)?,
            tax: money_or_zero("total_tax", &self.total_tax, &currency)?,
            discounts: money_or_zero("total_discounts", &self.total_discounts, &currency)?,
            total,
            shipping_address: self
                .shipping_address
                .as_ref()
                .and_then(RawAddress::to_address),
            status_url: text(&self.order_status_url),
            test: self.test.unwrap_or(false),
            currency,
        })
    }

    /// `total_shipping_price_set.shop_money`, else the sum of `shipping_lines[].price`, else 0.
    fn shipping(&self, currency: &Currency) -> Result<Money, AdapterError> {
        const FIELD: &str = "total_shipping_price_set.shop_money.amount";
        let shop_money = self
            .total_shipping_price_set
            .as_ref()
            .and_then(|s| s.shop_money.as_ref());
        if let Some(m) = shop_money
            && let Some(amount) = text(&m.amount)
        {
            if let Some(code) = text(&m.currency_code)
                && !code.eq_ignore_ascii_case(currency.as_str())
            {
                return Err(AdapterError::Invalid(clip(format!(
                    "{FIELD}: currency {code:?} differs from the order currency {currency}"
                ))));
            }
            return money(FIELD, &amount, currency);
        }
        let mut minor = 0i64;
        for (i, line) in self.shipping_lines.iter().flatten().enumerate() {
            let field = format!("shipping_lines[{i}].price");
            let price = money_or_zero(&field, &line.price, currency)?;
            minor = minor
                .checked_add(price.minor)
                .ok_or_else(|| out_of_range(&field))?;
        }
        Ok(Money {
            minor,
            currency: currency.clone(),
        })
    }

    fn customer(&self) -> Customer {
        Buyer {
            emails: [&self.email, &self.contact_email],
            customer: self.customer.as_ref(),
            locale: &self.customer_locale,
            accepts_marketing: self.buyer_accepts_marketing,
            billing: self.billing_address.as_ref(),
            shipping: self.shipping_address.as_ref(),
        }
        .customer()
    }
}

impl RawFulfillment {
    fn into_fulfillment(self, id: Id) -> Result<Fulfillment, AdapterError> {
        let order_id = self.order_id.ok_or_else(|| missing("order_id"))?;
        let status = text(&self.status).ok_or_else(|| missing("status"))?;
        let raw_lines = self.line_items.unwrap_or_default();
        let lines = match lines_currency(&raw_lines)? {
            Some(currency) => order_lines(&raw_lines, &currency)?,
            None => Vec::new(),
        };
        let mut tracking_numbers = distinct(
            self.tracking_numbers
                .iter()
                .flatten()
                .map(|n| n.as_ref().map(|n| n.0.as_str())),
        );
        if tracking_numbers.is_empty() {
            tracking_numbers = distinct([self.tracking_number.as_ref().map(|n| n.0.as_str())]);
        }
        let mut tracking_urls = distinct(self.tracking_urls.iter().flatten().map(|u| u.as_deref()));
        if tracking_urls.is_empty() {
            tracking_urls = distinct([self.tracking_url.as_deref()]);
        }
        let carrier_name = text(&self.tracking_company);
        Ok(Fulfillment {
            id: id.into(),
            order_id: order_id.into(),
            status,
            carrier: carrier_name.as_deref().and_then(slug),
            carrier_name,
            tracking_numbers,
            tracking_urls,
            lines,
            destination: self.destination.as_ref().and_then(RawAddress::to_address),
            email: first_email(&[&self.email]),
        })
    }
}

/// The currency of a fulfillment's lines, from their `price_set.shop_money.currency_code`
/// (a fulfillment has no `currency` of its own): `None` without lines; an error when lines
/// disagree or none says.
fn lines_currency(lines: &[RawLine]) -> Result<Option<Currency>, AdapterError> {
    let mut found: Option<Currency> = None;
    for (i, line) in lines.iter().enumerate() {
        let code = line
            .price_set
            .as_ref()
            .and_then(|s| s.shop_money.as_ref())
            .and_then(|m| text(&m.currency_code));
        let Some(code) = code else { continue };
        let field = format!("line_items[{i}].price_set.shop_money.currency_code");
        let currency = Currency::parse(&code)
            .map_err(|e| AdapterError::Invalid(clip(format!("{field}: {e}"))))?;
        match &found {
            Some(first) if *first != currency => {
                return Err(AdapterError::Invalid(clip(format!(
                    "{field}: currency {code:?} differs from the other lines' {first}"
                ))));
            }
            Some(_) => {}
            None => found = Some(currency),
        }
    }
    if found.is_none() && !lines.is_empty() {
        return Err(missing("line_items[0].price_set.shop_money.currency_code"));
    }
    Ok(found)
}

impl RawCheckout {
    fn into_checkout(
        self,
        id: ExternalId,
        occurred_at: OffsetDateTime,
    ) -> Result<Checkout, AdapterError> {
        let currency = text(&self.currency).ok_or_else(|| missing("currency"))?;
        let currency = Currency::parse(&currency)
            .map_err(|e| AdapterError::Invalid(clip(format!("currency: {e}"))))?;
        let total = text(&self.total_price).ok_or_else(|| missing("total_price"))?;
        let total = money("total_price", &total, &currency)?;
        let raw_lines = self
            .line_items
            .as_ref()
            .ok_or_else(|| missing("line_items"))?;
        let lines = order_lines(raw_lines, &currency)?;
        let no_email = None;
        let customer = Buyer {
            emails: [&self.email, &no_email],
            customer: self.customer.as_ref(),
            locale: &self.customer_locale,
            accepts_marketing: self.buyer_accepts_marketing,
            billing: self.billing_address.as_ref(),
            shipping: self.shipping_address.as_ref(),
        }
        .customer();
        Ok(Checkout {
            id,
            customer,
            currency,
            lines,
            total,
            recovery_url: text(&self.abandoned_checkout_url),
            updated_at: first_time(&[&self.updated_at, &self.created_at]).unwrap_or(occurred_at),
            completed_at: first_time(&[&self.completed_at]),
        })
    }
}

impl RawCustomerResource {
    fn into_changed(self, id: Id) -> CustomerChanged {
        let consent = self
            .email_marketing_consent
            .as_ref()
            .and_then(|c| text(&c.state));
        let accepts_marketing = match consent {
            Some(state) => Some(state.eq_ignore_ascii_case("subscribed")),
            None => self.accepts_marketing,
        };
        let address = self.default_address.as_ref();
        CustomerChanged {
            customer: Customer {
                id: Some(id.into()),
                email: first_email(&[&self.email]),
                first_name: text(&self.first_name),
                last_name: text(&self.last_name),
                locale: locale(&self.locale),
                country: address.and_then(|a| country_code(&a.country_code)),
                accepts_marketing,
            },
            default_address: address.and_then(RawAddress::to_address),
        }
    }
}

impl RawLine {
    fn to_line(&self, i: usize, currency: &Currency) -> Result<OrderLine, AdapterError> {
        let field = |name: &str| format!("line_items[{i}].{name}");
        let title = text(&self.title)
            .or_else(|| text(&self.name))
            .ok_or_else(|| missing(&field("title")))?;
        let quantity = self.quantity.ok_or_else(|| missing(&field("quantity")))?;
        let price = text(&self.price).ok_or_else(|| missing(&field("price")))?;
        let unit_price = money(&field("price"), &price, currency)?;
        let discount = money_or_zero(&field("total_discount"), &self.total_discount, currency)?;
        let minor = unit_price
            .minor
            .checked_mul(i64::from(quantity))
            .and_then(|gross| gross.checked_sub(discount.minor))
            .ok_or_else(|| out_of_range(&format!("line_items[{i}]")))?;
        Ok(OrderLine {
            product_id: self.product_id.map(ExternalId::from),
            variant_id: self.variant_id.map(ExternalId::from),
            sku: text(&self.sku),
            title,
            variant_title: text(&self.variant_title),
            quantity,
            total: Money {
                minor,
                currency: currency.clone(),
            },
            unit_price,
            image_url: None,
            url: None,
        })
    }
}

impl RawAddress {
    fn names(&self) -> (Option<String>, Option<String>) {
        (text(&self.first_name), text(&self.last_name))
    }

    /// The address, unless every field we use is blank.
    fn to_address(&self) -> Option<Address> {
        let name = text(&self.name).or_else(|| match self.names() {
            (Some(first), Some(last)) => Some(format!("{first} {last}")),
            (first, last) => first.or(last),
        });
        let address = Address {
            name,
            company: text(&self.company),
            lines: [&self.address1, &self.address2]
                .into_iter()
                .filter_map(text)
                .collect(),
            city: text(&self.city),
            region: text(&self.province).or_else(|| text(&self.province_code)),
            postal_code: text(&self.zip),
            country: country_code(&self.country_code),
        };
        let empty = address.name.is_none()
            && address.company.is_none()
            && address.lines.is_empty()
            && address.city.is_none()
            && address.region.is_none()
            && address.postal_code.is_none()
            && address.country.is_none();
        (!empty).then_some(address)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const SAMPLE: &[u8] = include_bytes!("../../fixtures/shopify_orders_create.json");
    const SECRET: &[u8] = b"shpss_current";
    const OLD_SECRET: &[u8] = b"shpss_previous";

    fn tenant() -> TenantId {
        TenantId::parse("demo").unwrap()
    }

    fn received() -> OffsetDateTime {
        datetime!(2026-01-02 03:04:05 UTC)
    }

    fn sample_text() -> String {
        String::from_utf8(SAMPLE.to_vec()).unwrap()
    }

    /// The sample with the first occurrence of `from` replaced by `to`.
    fn sample_replacing(from: &str, to: &str) -> Vec<u8> {
        let text = sample_text();
        assert!(text.contains(from), "{from:?} not in the sample");
        text.replacen(from, to, 1).into_bytes()
    }

    /// The sample after `edit` on its JSON value (u64 ids survive `serde_json::Value`).
    fn sample_with(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(SAMPLE).unwrap();
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    /// Headers of an HTTPS delivery, signed with `secret`.
    fn delivery(
        topic: &str,
        body: &[u8],
        secret: &[u8],
        webhook_id: &str,
    ) -> Vec<(String, String)> {
        [
            ("X-Shopify-Topic", topic.to_owned()),
            ("X-Shopify-Hmac-Sha256", sign(secret, body)),
            (
                "X-Shopify-Shop-Domain",
                "snowdevil.myshopify.com".to_owned(),
            ),
            ("X-Shopify-API-Version", "2026-07".to_owned()),
            ("X-Shopify-Webhook-Id", webhook_id.to_owned()),
            (
                "X-Shopify-Event-Id",
                "59d6d79c-595f-4e7e-bc6f-72f5c3d0c66f".to_owned(),
            ),
            (
                "X-Shopify-Triggered-At",
                "2025-07-10T16:15:47.000000Z".to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn run(headers: &[(String, String)], body: &[u8]) -> Result<Parsed, AdapterError> {
        verify_and_parse(&[OLD_SECRET, SECRET], &tenant(), headers, body, received())
    }

    fn envelope(headers: &[(String, String)], body: &[u8]) -> Envelope {
        match run(headers, body).unwrap() {
            Parsed::Events(mut events) => {
                assert_eq!(events.len(), 1);
                events.pop().unwrap()
            }
            other => panic!("expected events, got {other:?}"),
        }
    }

    fn order(body: &[u8]) -> Order {
        let env = envelope(&delivery("orders/create", body, SECRET, "w-1"), body);
        match env.event {
            Event::OrderPlaced(OrderPlaced { order }) => order,
            other => panic!("expected order.placed, got {other:?}"),
        }
    }

    fn usd(minor: i64) -> Money {
        Money {
            minor,
            currency: Currency::parse("USD").unwrap(),
        }
    }

    fn is_invalid_naming(result: Result<Order, AdapterError>, field: &str) -> bool {
        matches!(result, Err(AdapterError::Invalid(m)) if m.contains(field))
    }

    #[test]
    fn official_sample_maps_exactly() {
        let env = envelope(&delivery("orders/create", SAMPLE, SECRET, "w-1"), SAMPLE);
        assert_eq!(env.tenant, tenant());
        assert_eq!(
            env.idempotency_key,
            "shopify:order:820982911946154508:placed"
        );
        assert_eq!(
            env.source,
            Source {
                system: "shopify".to_owned(),
                delivery_id: Some("w-1".to_owned()),
                topic: Some("orders/create".to_owned()),
            }
        );
        assert_eq!(env.occurred_at, datetime!(2021-12-31 19:00:00 -05:00));
        let Event::OrderPlaced(OrderPlaced { order }) = env.event.clone() else {
            panic!()
        };

        assert_eq!(order.id.as_str(), "820982911946154508");
        assert_eq!(order.number, "#9999");
        assert_eq!(order.currency.as_str(), "USD");
        assert_eq!(order.placed_at, datetime!(2021-12-31 19:00:00 -05:00));
        assert_eq!(order.total, usd(40495));
        assert_eq!(order.subtotal, usd(40495)); // as published, though the lines sum to 414.95
        assert_eq!(order.shipping, usd(1000));
        assert_eq!(order.tax, usd(0));
        assert_eq!(order.discounts, usd(2000));
        assert!(order.test);
        assert_eq!(
            order.status_url.as_deref(),
            Some(
                "https://jsmith.myshopify.com/548380009/orders/123456abcd/authenticate?key=abcdefg"
            )
        );

        let c = &order.customer;
        assert_eq!(
            c.id.as_ref().map(ExternalId::as_str),
            Some("115310627314723954")
        );
        assert_eq!(
            c.email.as_ref().map(EmailAddress::as_str),
            Some("jon@example.com")
        );
        assert_eq!(
            (c.first_name.as_deref(), c.last_name.as_deref()),
            (Some("John"), Some("Smith"))
        );
        assert_eq!(c.locale.as_deref(), Some("en"));
        assert_eq!(c.country.as_deref(), Some("US"));
        assert_eq!(c.accepts_marketing, Some(true));

        let got: Vec<_> = order
            .lines
            .iter()
            .map(|l| {
                (
                    l.title.as_str(),
                    l.sku.as_deref(),
                    l.quantity,
                    l.unit_price.minor,
                    l.total.minor,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("Aviator sunglasses", Some("SKU2006-001"), 1, 8999, 8999),
                (
                    "Lens Protection Plan (2 Year)",
                    Some("LENS-PROTECT-2YR"),
                    1,
                    1999,
                    1999
                ),
                (
                    "Premium Leather Case",
                    Some("CASE-LEATHER-PREM"),
                    1,
                    2499,
                    2499
                ),
                ("Mid-century lounger", Some("SKU2006-020"), 1, 15999, 15999),
                ("Coffee table", Some("SKU2006-035"), 1, 11999, 11999),
            ]
        );
        assert_eq!(
            order.lines[0].product_id,
            Some(ExternalId::new("788032119674292922"))
        );
        assert_eq!(order.lines[1].product_id, None);
        assert_eq!(order.lines[0].variant_id, None);
        assert_eq!(order.lines[0].variant_title, None);
        assert_eq!(
            order.lines.iter().map(|l| l.total.minor).sum::<i64>(),
            41495
        );

        assert_eq!(
            order.shipping_address,
            Some(Address {
                name: Some("Steve Shipper".to_owned()),
                company: Some("Shipping Company".to_owned()),
                lines: vec!["123 Shipping Street".to_owned()],
                city: Some("Shippington".to_owned()),
                region: Some("Kentucky".to_owned()),
                postal_code: Some("40003".to_owned()),
                country: Some("US".to_owned()),
            })
        );

        // On the wire the ids stay strings, so no consumer's float can round them.
        let json = serde_json::to_value(&env).unwrap();
        assert_eq!(json["type"], "order.placed");
        assert_eq!(json["data"]["order"]["id"], "820982911946154508");
        assert_eq!(
            json["data"]["order"]["lines"][0]["product_id"],
            "788032119674292922"
        );
    }

    #[test]
    fn second_of_two_secrets_verifies_during_rotation() {
        let headers = delivery("orders/create", SAMPLE, SECRET, "w-1");
        assert!(verify(&[OLD_SECRET, SECRET], &headers, SAMPLE).is_ok());
        assert!(verify(&[SECRET], &headers, SAMPLE).is_ok());
        assert_eq!(
            verify(&[OLD_SECRET], &headers, SAMPLE).unwrap_err(),
            AdapterError::BadSignature
        );
        assert!(matches!(run(&headers, SAMPLE), Ok(Parsed::Events(_))));
    }

    #[test]
    fn wrong_signature_is_rejected_before_the_body_is_read() {
        let headers = delivery("orders/create", SAMPLE, b"someone-else", "w-1");
        assert_eq!(run(&headers, SAMPLE), Err(AdapterError::BadSignature));
        // A valid signature over another body does not carry over.
        let headers = delivery("orders/create", b"{}", SECRET, "w-1");
        assert_eq!(run(&headers, SAMPLE), Err(AdapterError::BadSignature));
        // Garbage with a bad signature is a signature error, not a json error.
        let headers = delivery("orders/create", b"{}", SECRET, "w-1");
        assert_eq!(run(&headers, b"not json"), Err(AdapterError::BadSignature));
    }

    #[test]
    fn no_secrets_or_empty_secret_never_verify() {
        let headers = delivery("orders/create", SAMPLE, b"", "w-1");
        assert_eq!(
            verify(&[], &headers, SAMPLE).unwrap_err(),
            AdapterError::BadSignature
        );
        assert_eq!(
            verify(&[b""], &headers, SAMPLE).unwrap_err(),
            AdapterError::BadSignature
        );
    }

    #[test]
    fn missing_signature_is_its_own_error() {
        let mut headers = delivery("orders/create", SAMPLE, SECRET, "w-1");
        headers.retain(|(k, _)| k != "X-Shopify-Hmac-Sha256");
        assert_eq!(run(&headers, SAMPLE), Err(AdapterError::MissingSignature));
        headers.push(("X-Shopify-Hmac-Sha256".to_owned(), "  ".to_owned()));
        assert_eq!(run(&headers, SAMPLE), Err(AdapterError::MissingSignature));
    }

    #[test]
    fn undecodable_or_short_signature_is_bad() {
        let good = sign(SECRET, SAMPLE);
        for bad in [
            "%%%not-base64%%%",
            &good[..good.len() - 2],
            "AAAA",
            &good.replace('=', ""),
        ] {
            let mut headers = delivery("orders/create", SAMPLE, SECRET, "w-1");
            headers[1].1 = bad.to_owned();
            assert_eq!(
                run(&headers, SAMPLE),
                Err(AdapterError::BadSignature),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn missing_topic_is_reported_after_verification() {
        let mut headers = delivery("orders/create", SAMPLE, SECRET, "w-1");
        headers.retain(|(k, _)| k != "X-Shopify-Topic");
        let err = run(&headers, SAMPLE).unwrap_err();
        assert_eq!(err, AdapterError::MissingHeader("x-shopify-topic"));
        assert_eq!(err.to_string(), "missing header x-shopify-topic");
    }

    #[test]
    fn other_topics_are_ignored_without_reading_the_body() {
        for topic in [
            "app/uninstalled",
            "orders/updated",
            "refunds/create",
            "ORDERS/CREATE",
            "Customers/Redact",
        ] {
            let body = b"this is not json";
            let headers = delivery(topic, body, SECRET, "w-1");
            assert_eq!(
                run(&headers, body),
                Ok(Parsed::Ignored {
                    topic: topic.to_owned()
                })
            );
        }
    }

    #[test]
    fn truncated_body_is_malformed_json() {
        let body = &SAMPLE[..SAMPLE.len() / 2];
        let headers = delivery("orders/create", body, SECRET, "w-1");
        match run(&headers, body) {
            Err(AdapterError::MalformedJson(m)) => {
                assert!(m.contains("line") && m.contains("column"), "{m}");
                assert_eq!(m, m.to_lowercase());
            }
            other => panic!("expected malformed json, got {other:?}"),
        }
        for body in [&b""[..], b"{", b"{\"id\": 1,}", b"\xff\xfe"] {
            let headers = delivery("orders/create", body, SECRET, "w-1");
            assert!(
                matches!(run(&headers, body), Err(AdapterError::MalformedJson(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn wrong_types_are_errors_not_panics() {
        let cases = [
            sample_replacing("\"price\": \"89.99\"", "\"price\": 89.99"),
            sample_replacing("\"id\": 820982911946154508", "\"id\": 1.5"),
            sample_replacing("\"id\": 820982911946154508", "\"id\": -5"),
            sample_replacing("\"id\": 820982911946154508", "\"id\": \"82098x\""),
            sample_replacing("\"id\": 820982911946154508", "\"id\": \"-5\""),
            sample_replacing("\"id\": 820982911946154508", "\"id\": true"),
            sample_with(|v| v["line_items"][2]["quantity"] = (-1).into()),
            sample_with(|v| v["line_items"][2]["quantity"] = 1.5.into()),
            sample_with(|v| v["line_items"][2]["quantity"] = "1".into()),
            sample_with(|v| v["line_items"][2]["quantity"] = (u64::from(u32::MAX) + 1).into()),
            sample_with(|v| v["line_items"][2]["total_discount"] = 0.into()),
            sample_with(|v| v["customer"]["id"] = (-115310627314723954i64).into()),
            sample_with(|v| v["line_items"][3]["product_id"] = 7.5.into()),
            sample_replacing("\"total_price\": \"404.95\"", "\"total_price\": \"4O4.95\""),
            sample_replacing(
                "\"total_price\": \"404.95\"",
                "\"total_price\": \"404.955\"",
            ),
            sample_replacing("\"currency\": \"USD\"", "\"currency\": \"US Dollar\""),
            sample_replacing("\"test\": true", "\"test\": \"yes\""),
            sample_replacing("\"line_items\": [", "\"line_items\": {\"a\": ["),
            br#"[1, 2, 3]"#.to_vec(),
            br#""order""#.to_vec(),
            br#"{"id": 1, "id": 2, "currency": "USD", "total_price": "1", "line_items": []}"#
                .to_vec(),
        ];
        for body in cases {
            let result = parse_untrusted(&body);
            assert!(
                matches!(
                    result,
                    Err(AdapterError::Invalid(_) | AdapterError::MalformedJson(_))
                ),
                "{result:?} for {}",
                String::from_utf8_lossy(&body[..body.len().min(80)])
            );
            let headers = delivery("orders/create", &body, SECRET, "w-1");
            assert!(run(&headers, &body).is_err());
        }
    }

    #[test]
    fn type_errors_say_what_was_expected_and_where() {
        let body = sample_replacing("\"price\": \"89.99\"", "\"price\": 89.99");
        let err = parse_untrusted(&body).unwrap_err().to_string();
        assert!(
            err.starts_with("invalid payload: invalid type: floating point `89.99`"),
            "{err}"
        );
        assert!(
            err.contains("expected a decimal amount as a string at line "),
            "{err}"
        );

        let body = sample_replacing("\"id\": 820982911946154508", "\"id\": 1.5");
        let err = parse_untrusted(&body).unwrap_err().to_string();
        assert!(
            err.contains("`1.5`, expected an id") && err.contains("line 2 column"),
            "{err}"
        );

        let positional = br#"["1", null, null, "USD"]"#;
        assert_eq!(
            parse_untrusted(positional),
            Err(AdapterError::Invalid(
                "expected a json object, found an array".to_owned()
            ))
        );
        let err = parse_untrusted(br#"{"customer": "jon"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected a customer object"), "{err}");
    }

    #[test]
    fn ids_accept_integers_and_digit_strings_up_to_u64_max() {
        let max = sample_replacing("\"id\": 820982911946154508", "\"id\": 18446744073709551615");
        assert_eq!(order(&max).id.as_str(), "18446744073709551615");
        assert_eq!(order(&max).number, "#9999");
        let max_str = sample_replacing(
            "\"id\": 820982911946154508",
            "\"id\": \"18446744073709551615\"",
        );
        assert_eq!(order(&max_str).id.as_str(), "18446744073709551615");
        let env = envelope(&delivery("orders/create", &max, SECRET, "w-1"), &max);
        assert_eq!(
            env.idempotency_key,
            "shopify:order:18446744073709551615:placed"
        );

        for too_big in ["18446744073709551616", "\"18446744073709551616\"", "1e19"] {
            let body =
                sample_replacing("\"id\": 820982911946154508", &format!("\"id\": {too_big}"));
            assert!(
                is_invalid_naming(parse_untrusted(&body), "id"),
                "{too_big} accepted"
            );
        }

        let line = sample_replacing(
            "\"product_id\": 788032119674292922",
            "\"product_id\": \"18446744073709551615\"",
        );
        assert_eq!(
            order(&line).lines[0].product_id,
            Some(ExternalId::new("18446744073709551615"))
        );
    }

    #[test]
    fn header_names_match_in_any_case_and_with_either_prefix() {
        let body = SAMPLE;
        let upper: Vec<(String, String)> = delivery("orders/create", body, SECRET, "w-9")
            .into_iter()
            .map(|(k, v)| (k.to_uppercase(), v))
            .collect();
        let env = envelope(&upper, body);
        assert_eq!(env.source.delivery_id.as_deref(), Some("w-9"));

        // The Events delivery: `shopify-` names, lowercase (HTTP/2) and mixed case.
        for names in [
            ["shopify-topic", "shopify-hmac-sha256", "shopify-webhook-id"],
            ["Shopify-Topic", "Shopify-Hmac-SHA256", "Shopify-Webhook-Id"],
        ] {
            let headers = vec![
                (names[0].to_owned(), "orders/create".to_owned()),
                (names[1].to_owned(), sign(SECRET, body)),
                (names[2].to_owned(), "w-10".to_owned()),
            ];
            let env = envelope(&headers, body);
            assert_eq!(env.source.delivery_id.as_deref(), Some("w-10"));
            assert_eq!(env.source.topic.as_deref(), Some("orders/create"));
        }
        let only_topic = vec![("SHOPIFY-TOPIC".to_owned(), "app/uninstalled".to_owned())];
        assert_eq!(
            parse(
                &verify(
                    &[SECRET],
                    &[("x-shopify-hmac-sha256", sign(SECRET, b"x"))],
                    b"x"
                )
                .unwrap(),
                &tenant(),
                &only_topic,
                b"x",
                received()
            ),
            Ok(Parsed::Ignored {
                topic: "app/uninstalled".to_owned()
            })
        );
    }

    #[test]
    fn the_same_order_delivered_twice_has_one_idempotency_key() {
        let a = envelope(
            &delivery("orders/create", SAMPLE, SECRET, "delivery-a"),
            SAMPLE,
        );
        let b = envelope(
            &delivery("orders/create", SAMPLE, OLD_SECRET, "delivery-b"),
            SAMPLE,
        );
        assert_eq!(a.idempotency_key, b.idempotency_key);
        assert_eq!(a.id, b.id);
        assert_ne!(a.source.delivery_id, b.source.delivery_id);
        // A different tenant's order with the same Shopify id is a different event.
        let other = verify_and_parse(
            &[SECRET],
            &TenantId::parse("other-shop").unwrap(),
            &delivery("orders/create", SAMPLE, SECRET, "delivery-a"),
            SAMPLE,
            received(),
        )
        .unwrap();
        let Parsed::Events(other) = other else {
            panic!()
        };
        assert_eq!(other[0].idempotency_key, a.idempotency_key);
        assert_ne!(other[0].id, a.id);
    }

    #[test]
    fn missing_required_fields_are_named() {
        for field in ["id", "currency", "total_price", "line_items"] {
            let body = sample_with(|v| {
                v.as_object_mut().unwrap().remove(field);
            });
            assert!(is_invalid_naming(parse_untrusted(&body), field), "{field}");
            let body = sample_with(|v| v[field] = serde_json::Value::Null);
            assert!(
                is_invalid_naming(parse_untrusted(&body), field),
                "{field} null"
            );
        }
        for field in ["price", "quantity", "title"] {
            let body = sample_with(|v| {
                let line = v["line_items"][1].as_object_mut().unwrap();
                line.remove(field);
                line.remove("name");
            });
            let expected = format!("line_items[1].{field}");
            assert!(
                is_invalid_naming(parse_untrusted(&body), &expected),
                "{field}"
            );
        }
    }

    #[test]
    fn occurred_at_falls_back_to_triggered_at_then_received_at() {
        let body = sample_with(|v| {
            v.as_object_mut().unwrap().remove("created_at");
        });
        let headers = delivery("orders/create", &body, SECRET, "w-1");
        assert_eq!(
            envelope(&headers, &body).occurred_at,
            datetime!(2025-07-10 16:15:47 UTC)
        );

        let mut headers = delivery("orders/create", &body, SECRET, "w-1");
        headers.retain(|(k, _)| k != "X-Shopify-Triggered-At");
        let env = envelope(&headers, &body);
        assert_eq!(env.occurred_at, received());
        let Event::OrderPlaced(OrderPlaced { order }) = env.event else {
            panic!()
        };
        assert_eq!(order.placed_at, received());

        let body = sample_replacing(
            "\"created_at\": \"2021-12-31T19:00:00-05:00\"",
            "\"created_at\": \"yesterday\"",
        );
        let headers = delivery("orders/create", &body, SECRET, "w-1");
        assert_eq!(
            envelope(&headers, &body).occurred_at,
            datetime!(2025-07-10 16:15:47 UTC)
        );
    }

    #[test]
    fn customer_fields_fall_back_in_order() {
        let body = sample_with(|v| {
            v["email"] = "not an email".into();
            v["customer"]["first_name"] = serde_json::Value::Null;
            v["customer"]["last_name"] = "".into();
            v["customer_locale"] = "en_CA".into();
            v["shipping_address"]["country_code"] = serde_json::Value::Null;
            v["billing_address"]["country_code"] = "ca".into();
        });
        let c = order(&body).customer;
        assert_eq!(
            c.email.as_ref().map(EmailAddress::as_str),
            Some("jon@example.com")
        ); // contact_email
        assert_eq!(
            (c.first_name.as_deref(), c.last_name.as_deref()),
            (Some("Steve"), Some("Shipper"))
        );
        assert_eq!(c.locale.as_deref(), Some("en-CA"));
        assert_eq!(c.country.as_deref(), Some("CA"));

        let body = sample_with(|v| {
            v["email"] = "".into();
            v["contact_email"] = serde_json::Value::Null;
            v["customer"] = serde_json::Value::Null;
            v["billing_address"] = serde_json::Value::Null;
            v["customer_locale"] = "not a locale!".into();
            v["buyer_accepts_marketing"] = serde_json::Value::Null;
        });
        let c = order(&body).customer;
        assert_eq!(c.id, None);
        assert_eq!(c.email, None); // no usable address is not an error
        assert_eq!(
            (c.first_name.as_deref(), c.last_name.as_deref()),
            (Some("Steve"), Some("Shipper"))
        );
        assert_eq!(c.locale, None);
        assert_eq!(c.accepts_marketing, None);

        let body = sample_with(|v| {
            v["email"] = "bad".into();
            v["contact_email"] = "also bad".into();
            v["customer"]["email"] = "John@Example.COM".into();
        });
        assert_eq!(
            order(&body)
                .customer
                .email
                .as_ref()
                .map(EmailAddress::as_str),
            Some("John@example.com")
        );
    }

    #[test]
    fn line_totals_are_exact_with_quantity_and_discount() {
        let body = sample_with(|v| {
            let line = &mut v["line_items"][0];
            line["quantity"] = 3.into();
            line["price"] = "0.10".into();
            line["total_discount"] = "0.05".into();
            line["variant_title"] = "Gold / Large".into();
            line["variant_id"] = "976318377106520349".into();
            line["sku"] = "".into();
        });
        let l = &order(&body).lines[0];
        assert_eq!((l.quantity, l.unit_price.minor, l.total.minor), (3, 10, 25));
        assert_eq!(l.variant_title.as_deref(), Some("Gold / Large"));
        assert_eq!(l.variant_id, Some(ExternalId::new("976318377106520349")));
        assert_eq!(l.sku, None);

        let body = sample_with(|v| {
            v["line_items"][0]["quantity"] = u32::MAX.into();
            v["line_items"][0]["price"] = "90000000000000000.00".into();
        });
        assert!(is_invalid_naming(parse_untrusted(&body), "line_items[0]"));

        // 2 × 4611686018427387903 minor units = i64::MAX − 1 fits; one more unit does not.
        let with_price = |price: &str| {
            sample_with(|v| {
                v["line_items"][0]["quantity"] = 2.into();
                v["line_items"][0]["price"] = price.into();
                v["line_items"][0]["total_discount"] = "0.00".into();
            })
        };
        let body = with_price("46116860184273879.03");
        assert_eq!(
            parse_untrusted(&body).unwrap().lines[0].total.minor,
            i64::MAX - 1
        );
        let body = with_price("46116860184273879.04");
        assert!(is_invalid_naming(parse_untrusted(&body), "line_items[0]"));
    }

    #[test]
    fn totals_fall_back_when_optional_fields_are_absent() {
        let body = sample_with(|v| {
            let o = v.as_object_mut().unwrap();
            for k in [
                "total_shipping_price_set",
                "subtotal_price",
                "total_tax",
                "total_discounts",
                "name",
            ] {
                o.remove(k);
            }
        });
        let o = order(&body);
        assert_eq!(o.shipping, usd(1000)); // sum of shipping_lines
        assert_eq!(o.subtotal, usd(41495)); // current_subtotal_price
        assert_eq!((o.tax.minor, o.discounts.minor), (0, 0));
        assert_eq!(o.number, "#1234"); // order_number

        let body = sample_with(|v| {
            let o = v.as_object_mut().unwrap();
            for k in [
                "total_shipping_price_set",
                "shipping_lines",
                "subtotal_price",
                "current_subtotal_price",
                "name",
                "order_number",
                "order_status_url",
                "test",
                "shipping_address",
            ] {
                o.remove(k);
            }
        });
        let o = order(&body);
        assert_eq!(o.shipping, usd(0));
        assert_eq!(o.subtotal, usd(41495)); // sum of line totals
        assert_eq!(o.number, "820982911946154508");
        assert_eq!(
            (o.status_url, o.test, o.shipping_address),
            (None, false, None)
        );

        let body = sample_with(|v| {
            v["total_shipping_price_set"]["shop_money"]["currency_code"] = "EUR".into()
        });
        assert!(is_invalid_naming(
            parse_untrusted(&body),
            "total_shipping_price_set"
        ));
    }

    #[test]
    fn zero_decimal_currencies_use_their_own_minor_unit() {
        let body = sample_with(|v| {
            v["currency"] = "JPY".into();
            v["total_shipping_price_set"]["shop_money"] =
                serde_json::json!({"amount": "500", "currency_code": "JPY"});
            v["line_items"] = serde_json::json!([{"title": "Tea", "price": "1200", "quantity": 2, "total_discount": "0"}]);
            v["subtotal_price"] = "2400".into();
            v["total_discounts"] = "0".into();
            v["total_price"] = "2900".into();
        });
        let o = order(&body);
        assert_eq!(
            (o.lines[0].total.minor, o.shipping.minor, o.total.minor),
            (2400, 500, 2900)
        );
        assert_eq!(o.total.currency.as_str(), "JPY");
    }

    #[test]
    fn unknown_fields_and_shapes_are_ignored() {
        let body = sample_with(|v| {
            v["brand_new_field"] = serde_json::json!({"nested": [1, 2.5, {"x": null}], "id": 1.5});
            v["line_items"][0]["future"] = serde_json::json!([{"price": 1}]);
            v["customer"]["email_marketing_consent"] = serde_json::json!({"state": "subscribed"});
        });
        assert_eq!(order(&body).id.as_str(), "820982911946154508");
        let minimal = br#"{"id":"7","currency":"eur","total_price":"0.00","line_items":[]}"#;
        let o = parse_untrusted(minimal).unwrap();
        assert_eq!(
            (o.id.as_str(), o.number.as_str(), o.currency.as_str()),
            ("7", "7", "EUR")
        );
        assert_eq!(o.placed_at, OffsetDateTime::UNIX_EPOCH);
    }

    #[test]
    fn untrusted_input_never_panics() {
        // Every prefix of the sample.
        for end in 0..SAMPLE.len() {
            let _ = parse_untrusted(&SAMPLE[..end]);
        }
        // Deterministic byte mutations (xorshift), several per body.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let interesting = b"\"0-9.e,:{}[]\\\x00\xff";
        for _ in 0..3000 {
            let mut body = SAMPLE.to_vec();
            for _ in 0..(1 + next() % 4) {
                let at = (next() % body.len() as u64) as usize;
                body[at] = interesting[(next() % interesting.len() as u64) as usize];
            }
            let _ = parse_untrusted(&body);
        }
        // Deep nesting in an ignored field and in a used one.
        let deep = format!("{{\"x\": {}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_untrusted(deep.as_bytes()).is_err());
        let deep = format!("{{\"customer\": {}}}", "{\"a\":".repeat(100_000));
        assert!(parse_untrusted(deep.as_bytes()).is_err());
        // Long strings in errors are clipped.
        let long = format!("{{\"id\": \"{}\"}}", "9x".repeat(10_000));
        match parse_untrusted(long.as_bytes()) {
            Err(AdapterError::Invalid(m)) => assert!(m.len() < 400, "{} chars", m.len()),
            other => panic!("{other:?}"),
        }
    }

    // -----------------------------------------------------------------------------------
    // The other topics of the journey.

    const FULFILLMENT: &[u8] = include_bytes!("../../fixtures/shopify_fulfillments_create.json");
    const FULFILLMENT_EVENT: &[u8] =
        include_bytes!("../../fixtures/shopify_fulfillment_events_create.json");
    const CHECKOUT: &[u8] = include_bytes!("../../fixtures/shopify_checkouts_create.json");
    const CUSTOMER: &[u8] = include_bytes!("../../fixtures/shopify_customers_create.json");
    const DATA_REQUEST: &[u8] =
        include_bytes!("../../fixtures/shopify_customers_data_request.json");
    const CUSTOMER_REDACT: &[u8] = include_bytes!("../../fixtures/shopify_customers_redact.json");
    const SHOP_REDACT: &[u8] = include_bytes!("../../fixtures/shopify_shop_redact.json");
    const APP_UNINSTALLED: &[u8] = include_bytes!("../../fixtures/shopify_app_uninstalled.json");

    /// `X-Shopify-Event-Id` of [`delivery`].
    const EVENT_ID: &str = "59d6d79c-595f-4e7e-bc6f-72f5c3d0c66f";
    /// 2^53 + 1: the smallest id a float would round.
    const PAST_F64: u64 = 9_007_199_254_740_993;

    /// `X-Shopify-Triggered-At` of [`delivery`].
    fn triggered() -> OffsetDateTime {
        datetime!(2025-07-10 16:15:47 UTC)
    }

    /// `created_at` and `updated_at` of every sample.
    fn sample_time() -> OffsetDateTime {
        datetime!(2021-12-31 19:00:00 -05:00)
    }

    /// The official sample for `topic`.
    fn fixture(topic: &str) -> &'static [u8] {
        match topic {
            "orders/create" | "orders/paid" | "orders/cancelled" | "orders/fulfilled" => SAMPLE,
            "fulfillments/create" | "fulfillments/update" => FULFILLMENT,
            "fulfillment_events/create" => FULFILLMENT_EVENT,
            "checkouts/create" | "checkouts/update" => CHECKOUT,
            "customers/create" | "customers/update" => CUSTOMER,
            "customers/data_request" => DATA_REQUEST,
            "customers/redact" => CUSTOMER_REDACT,
            "shop/redact" => SHOP_REDACT,
            other => panic!("no sample for {other}"),
        }
    }

    /// `body` after `edit` on its JSON value (u64 ids survive `serde_json::Value`).
    fn edited(body: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    /// `body` with the value at the JSON pointer `at` replaced by `value`.
    fn set(body: &[u8], at: &str, value: serde_json::Value) -> Vec<u8> {
        edited(body, |v| {
            *v.pointer_mut(at)
                .unwrap_or_else(|| panic!("{at} not in the sample")) = value;
        })
    }

    /// `body` without the field `name` of its top-level object.
    fn removing(body: &[u8], name: &str) -> Vec<u8> {
        edited(body, |v| {
            v.as_object_mut().unwrap().remove(name);
        })
    }

    fn without(mut headers: Vec<(String, String)>, name: &str) -> Vec<(String, String)> {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        headers
    }

    fn with(mut headers: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        headers.push((name.to_owned(), value.to_owned()));
        headers
    }

    /// The one envelope of `body` delivered on `topic` with all of [`delivery`]'s headers.
    fn event_of(topic: &str, body: &[u8]) -> Envelope {
        envelope(&delivery(topic, body, SECRET, "w-1"), body)
    }

    /// The same, without `X-Shopify-Event-Id`.
    fn event_without_id(topic: &str, body: &[u8]) -> Envelope {
        let headers = without(delivery(topic, body, SECRET, "w-1"), "X-Shopify-Event-Id");
        envelope(&headers, body)
    }

    fn line(product: Option<&str>, sku: &str, title: &str, unit: i64, total: i64) -> OrderLine {
        OrderLine {
            product_id: product.map(ExternalId::new),
            variant_id: None,
            sku: Some(sku.to_owned()),
            title: title.to_owned(),
            variant_title: None,
            quantity: 1,
            unit_price: usd(unit),
            total: usd(total),
            image_url: None,
            url: None,
        }
    }

    fn email(s: &str) -> Option<EmailAddress> {
        Some(EmailAddress::parse(s).unwrap())
    }

    fn id(s: &str) -> ExternalId {
        ExternalId::new(s)
    }

    fn is_invalid(result: &Result<Parsed, AdapterError>, field: &str) -> bool {
        matches!(result, Err(AdapterError::Invalid(m)) if m.contains(field))
    }

    #[test]
    fn every_topic_has_its_event_type_key_source_and_time() {
        let fixed = |k: &str| k.to_owned();
        let by_event = |topic: &str| format!("shopify:event:{EVENT_ID}:{topic}");
        let cases = [
            (
                "orders/create",
                "order.placed",
                fixed("shopify:order:820982911946154508:placed"),
            ),
            (
                "orders/paid",
                "order.paid",
                fixed("shopify:order:820982911946154508:paid"),
            ),
            (
                "orders/cancelled",
                "order.cancelled",
                fixed("shopify:order:820982911946154508:cancelled"),
            ),
            (
                "orders/fulfilled",
                "order.fulfilled",
                fixed("shopify:order:820982911946154508:fulfilled"),
            ),
            (
                "fulfillments/create",
                "fulfillment.created",
                fixed("shopify:fulfillment:123456:created"),
            ),
            (
                "fulfillments/update",
                "fulfillment.updated",
                by_event("fulfillments/update"),
            ),
            (
                "fulfillment_events/create",
                "fulfillment.status_updated",
                fixed("shopify:fulfillment_event:1234567"),
            ),
            (
                "checkouts/create",
                "checkout.updated",
                by_event("checkouts/create"),
            ),
            (
                "checkouts/update",
                "checkout.updated",
                by_event("checkouts/update"),
            ),
            (
                "customers/create",
                "customer.created",
                fixed("shopify:customer:706405506930370084:created"),
            ),
            (
                "customers/update",
                "customer.updated",
                by_event("customers/update"),
            ),
            (
                "customers/data_request",
                "privacy.requested",
                by_event("customers/data_request"),
            ),
            (
                "customers/redact",
                "privacy.requested",
                by_event("customers/redact"),
            ),
            ("shop/redact", "privacy.requested", by_event("shop/redact")),
        ];
        assert_eq!(cases.iter().map(|c| c.0).collect::<Vec<_>>(), TOPICS);
        for (topic, kind, key) in cases {
            let env = event_of(topic, fixture(topic));
            assert_eq!(env.kind().as_str(), kind, "{topic}");
            assert_eq!(env.idempotency_key, key, "{topic}");
            assert_eq!(env.tenant, tenant());
            assert_eq!(
                env.source,
                Source {
                    system: "shopify".to_owned(),
                    delivery_id: Some("w-1".to_owned()),
                    topic: Some(topic.to_owned()),
                },
                "{topic}"
            );
            // orders/create keeps the order's creation; the others take the trigger time.
            let expected = if topic == "orders/create" {
                sample_time()
            } else {
                triggered()
            };
            assert_eq!(env.occurred_at, expected, "{topic}");
            // Every event survives the bus's encoding unchanged.
            let json = serde_json::to_string(&env).unwrap();
            assert_eq!(
                serde_json::from_str::<Envelope>(&json).unwrap(),
                env,
                "{topic}"
            );
        }
    }

    #[test]
    fn without_an_event_id_update_keys_come_from_the_resource() {
        let shop = "{shop}.myshopify.com";
        let cases = [
            (
                "orders/create",
                "shopify:order:820982911946154508:placed".to_owned(),
            ),
            (
                "orders/paid",
                "shopify:order:820982911946154508:paid".to_owned(),
            ),
            (
                "fulfillments/create",
                "shopify:fulfillment:123456:created".to_owned(),
            ),
            (
                "fulfillments/update",
                "shopify:fulfillments/update:123456:2022-01-01T00:00:00Z".to_owned(),
            ),
            (
                "fulfillment_events/create",
                "shopify:fulfillment_event:1234567".to_owned(),
            ),
            (
                "checkouts/create",
                "shopify:checkouts/create:123123123:2022-01-01T00:00:00Z".to_owned(),
            ),
            (
                "checkouts/update",
                "shopify:checkouts/update:123123123:2022-01-01T00:00:00Z".to_owned(),
            ),
            (
                "customers/create",
                "shopify:customer:706405506930370084:created".to_owned(),
            ),
            (
                "customers/update",
                "shopify:customers/update:706405506930370084:2022-01-01T00:00:00Z".to_owned(),
            ),
            (
                "customers/data_request",
                format!("shopify:customers/data_request:{shop}:191167:request-9999"),
            ),
            (
                "customers/redact",
                format!("shopify:customers/redact:{shop}:191167:orders-220458,280263,299938"),
            ),
            ("shop/redact", format!("shopify:shop/redact:{shop}")),
        ];
        for (topic, key) in cases {
            let env = event_without_id(topic, fixture(topic));
            assert_eq!(env.idempotency_key, key, "{topic}");
            // The webhook id stays the delivery, not the key.
            assert_eq!(env.source.delivery_id.as_deref(), Some("w-1"));
        }
    }

    #[test]
    fn one_event_id_on_two_topics_is_two_events_and_redeliveries_are_one() {
        let a = event_of("checkouts/create", CHECKOUT);
        let b = event_of("checkouts/update", CHECKOUT);
        assert_ne!(a.idempotency_key, b.idempotency_key);
        assert_ne!(a.id, b.id);
        let c = event_of("customers/update", CUSTOMER);
        assert_ne!(c.idempotency_key, a.idempotency_key);

        // A retry (new webhook id, same event id) is the same event.
        let retry = envelope(
            &delivery("checkouts/update", CHECKOUT, SECRET, "w-2"),
            CHECKOUT,
        );
        assert_eq!(retry.id, b.id);
        assert_eq!(retry.source.delivery_id.as_deref(), Some("w-2"));

        // Another event on the same resource, even with the same updated_at, is another.
        let other = with(
            delivery("checkouts/update", CHECKOUT, SECRET, "w-3"),
            "X-Shopify-Event-Id",
            "0b9e8c1a-0000-4000-8000-000000000001",
        );
        assert_ne!(envelope(&other, CHECKOUT).id, b.id);

        // The Events delivery's header name works too.
        let headers = with(
            without(
                delivery("customers/update", CUSTOMER, SECRET, "w-1"),
                "X-Shopify-Event-Id",
            ),
            "shopify-event-id",
            "e-1",
        );
        assert_eq!(
            envelope(&headers, CUSTOMER).idempotency_key,
            "shopify:event:e-1:customers/update"
        );
    }

    #[test]
    fn business_keys_of_create_topics_ignore_the_event_id() {
        for topic in [
            "orders/create",
            "orders/paid",
            "orders/cancelled",
            "orders/fulfilled",
            "fulfillments/create",
            "fulfillment_events/create",
            "customers/create",
        ] {
            let body = fixture(topic);
            let with_id = event_of(topic, body);
            let other_id = envelope(
                &with(
                    delivery(topic, body, SECRET, "w-2"),
                    "X-Shopify-Event-Id",
                    "e-2",
                ),
                body,
            );
            assert_eq!(with_id.id, other_id.id, "{topic}");
            assert_eq!(with_id.id, event_without_id(topic, body).id, "{topic}");
        }
    }

    #[test]
    fn an_unusable_event_id_is_treated_as_absent() {
        let long = "e".repeat(129);
        for bad in ["has space", "tab\there", long.as_str(), "ünïcode"] {
            let headers = with(
                delivery("customers/update", CUSTOMER, SECRET, "w-1"),
                "X-Shopify-Event-Id",
                bad,
            );
            assert_eq!(
                envelope(&headers, CUSTOMER).idempotency_key,
                "shopify:customers/update:706405506930370084:2022-01-01T00:00:00Z",
                "{bad:?}"
            );
        }
        let longest = "e".repeat(128);
        let headers = with(
            delivery("customers/update", CUSTOMER, SECRET, "w-1"),
            "X-Shopify-Event-Id",
            &longest,
        );
        assert_eq!(
            envelope(&headers, CUSTOMER).idempotency_key,
            format!("shopify:event:{longest}:customers/update")
        );
    }

    #[test]
    fn update_keys_need_a_valid_updated_at_only_without_an_event_id() {
        for (topic, body) in [
            ("fulfillments/update", FULFILLMENT),
            ("checkouts/update", CHECKOUT),
            ("customers/update", CUSTOMER),
        ] {
            let missing_at = removing(body, "updated_at");
            let headers = without(
                delivery(topic, &missing_at, SECRET, "w-1"),
                "X-Shopify-Event-Id",
            );
            assert!(
                is_invalid(&run(&headers, &missing_at), "missing field `updated_at`"),
                "{topic}"
            );
            let bad_at = set(body, "/updated_at", "yesterday".into());
            let headers = without(
                delivery(topic, &bad_at, SECRET, "w-1"),
                "X-Shopify-Event-Id",
            );
            assert!(is_invalid(&run(&headers, &bad_at), "updated_at"), "{topic}");
            // With the event id the key does not need it.
            assert_eq!(
                event_of(topic, &missing_at).idempotency_key,
                format!("shopify:event:{EVENT_ID}:{topic}")
            );
        }
        // The same instant in another offset is the same key.
        let shifted = set(CUSTOMER, "/updated_at", "2022-01-01T01:00:00+01:00".into());
        assert_eq!(
            event_without_id("customers/update", &shifted).id,
            event_without_id("customers/update", CUSTOMER).id
        );
        // A later update is another event.
        let later = set(CUSTOMER, "/updated_at", "2022-01-01T00:00:01Z".into());
        assert_eq!(
            event_without_id("customers/update", &later).idempotency_key,
            "shopify:customers/update:706405506930370084:2022-01-01T00:00:01Z"
        );
    }

    #[test]
    fn occurred_at_is_trigger_time_then_updated_at_then_created_at_then_receipt() {
        let topic = "customers/update";
        let later = datetime!(2022-03-04 05:06:07 UTC);
        let body = set(CUSTOMER, "/updated_at", "2022-03-04T05:06:07Z".into());
        let at = |headers: Vec<(String, String)>, body: &[u8]| envelope(&headers, body).occurred_at;

        assert_eq!(
            at(delivery(topic, &body, SECRET, "w-1"), &body),
            triggered()
        );
        let invalid = with(
            delivery(topic, &body, SECRET, "w-1"),
            "X-Shopify-Triggered-At",
            "last tuesday",
        );
        assert_eq!(at(invalid, &body), later);
        let no_trigger = |body: &[u8]| {
            without(
                delivery(topic, body, SECRET, "w-1"),
                "X-Shopify-Triggered-At",
            )
        };
        assert_eq!(at(no_trigger(&body), &body), later);

        let created_only = removing(&body, "updated_at");
        assert_eq!(at(no_trigger(&created_only), &created_only), sample_time());
        let bad_updated = set(&body, "/updated_at", "soon".into());
        assert_eq!(at(no_trigger(&bad_updated), &bad_updated), sample_time());
        let neither = removing(&created_only, "created_at");
        assert_eq!(at(no_trigger(&neither), &neither), received());

        // The privacy payloads carry no time: the trigger time, else the receipt.
        assert_eq!(
            event_of("shop/redact", SHOP_REDACT).occurred_at,
            triggered()
        );
        assert_eq!(
            at(no_trigger_for("shop/redact", SHOP_REDACT), SHOP_REDACT),
            received()
        );

        // An order state change: the trigger time, else updated_at; placed_at stays.
        let paid = set(SAMPLE, "/updated_at", "2022-03-04T05:06:07Z".into());
        let env = envelope(&no_trigger_for("orders/paid", &paid), &paid);
        assert_eq!(env.occurred_at, later);
        let Event::OrderPaid(changed) = env.event else {
            panic!()
        };
        assert_eq!(changed.order.placed_at, sample_time());
        assert_eq!(event_of("orders/paid", &paid).occurred_at, triggered());
    }

    fn no_trigger_for(topic: &str, body: &[u8]) -> Vec<(String, String)> {
        without(
            delivery(topic, body, SECRET, "w-1"),
            "X-Shopify-Triggered-At",
        )
    }

    #[test]
    fn order_state_topics_carry_the_order_and_the_cancel_reason() {
        let placed = order(SAMPLE);
        for topic in ["orders/paid", "orders/cancelled", "orders/fulfilled"] {
            let changed = match event_of(topic, SAMPLE).event {
                Event::OrderPaid(c) if topic == "orders/paid" => c,
                Event::OrderCancelled(c) if topic == "orders/cancelled" => c,
                Event::OrderFulfilled(c) if topic == "orders/fulfilled" => c,
                other => panic!("{topic}: {other:?}"),
            };
            assert_eq!(changed.order, placed, "{topic}");
            let reason = (topic == "orders/cancelled").then(|| "customer".to_owned());
            assert_eq!(changed.reason, reason, "{topic}");
        }
        let no_reason = set(SAMPLE, "/cancel_reason", serde_json::Value::Null);
        let Event::OrderCancelled(c) = event_of("orders/cancelled", &no_reason).event else {
            panic!()
        };
        assert_eq!(c.reason, None);
    }

    fn sample_fulfillment() -> Fulfillment {
        let product = 788_032_119_674_292_922u64.to_string();
        Fulfillment {
            id: id("123456"),
            order_id: id("820982911946154508"),
            status: "pending".to_owned(),
            carrier: Some("ups".to_owned()),
            carrier_name: Some("UPS".to_owned()),
            tracking_numbers: vec!["1z827wk74630".to_owned()],
            tracking_urls: vec![
                "https://www.ups.com/WebTracking?loc=en_US&requester=ST&trackNums=1z827wk74630"
                    .to_owned(),
            ],
            lines: vec![
                line(
                    Some(&product),
                    "SKU2006-001",
                    "Aviator sunglasses",
                    8999,
                    8999,
                ),
                line(
                    None,
                    "LENS-PROTECT-2YR",
                    "Lens Protection Plan (2 Year)",
                    1999,
                    1999,
                ),
                line(
                    None,
                    "CASE-LEATHER-PREM",
                    "Premium Leather Case",
                    2499,
                    2499,
                ),
                line(
                    Some(&product),
                    "SKU2006-020",
                    "Mid-century lounger",
                    15999,
                    15499,
                ),
                line(Some(&product), "SKU2006-035", "Coffee table", 11999, 11999),
            ],
            destination: Some(Address {
                name: Some("Steve Shipper".to_owned()),
                company: Some("Shipping Company".to_owned()),
                lines: vec!["123 Shipping Street".to_owned()],
                city: Some("Shippington".to_owned()),
                region: Some("Kentucky".to_owned()),
                postal_code: Some("40003".to_owned()),
                country: Some("US".to_owned()),
            }),
            email: email("jon@example.com"),
        }
    }

    fn fulfillment_of(topic: &str, body: &[u8]) -> Fulfillment {
        match event_of(topic, body).event {
            Event::FulfillmentCreated(f) if topic == "fulfillments/create" => f,
            Event::FulfillmentUpdated(f) if topic == "fulfillments/update" => f,
            other => panic!("{topic}: {other:?}"),
        }
    }

    #[test]
    fn fulfillment_sample_maps_exactly() {
        assert_eq!(
            fulfillment_of("fulfillments/create", FULFILLMENT),
            sample_fulfillment()
        );
        assert_eq!(
            fulfillment_of("fulfillments/update", FULFILLMENT),
            sample_fulfillment()
        );
    }

    #[test]
    fn fulfillment_fields_fall_back_and_check_the_currency() {
        let f = |body: &[u8]| fulfillment_of("fulfillments/create", body);
        let body = edited(FULFILLMENT, |v| {
            v["tracking_company"] = "Canada Post".into();
            v["tracking_numbers"] = serde_json::json!([]);
            v["tracking_number"] = "7023 4567".into();
            v["tracking_urls"] = serde_json::Value::Null;
            v["tracking_url"] = "https://track.example/7023".into();
            v["email"] = "not an email".into();
            v["destination"] = serde_json::Value::Null;
        });
        let got = f(&body);
        assert_eq!(got.carrier.as_deref(), Some("canada-post"));
        assert_eq!(got.carrier_name.as_deref(), Some("Canada Post"));
        assert_eq!(got.tracking_numbers, ["7023 4567"]);
        assert_eq!(got.tracking_urls, ["https://track.example/7023"]);
        assert_eq!((got.email, got.destination), (None, None));

        // Several numbers, blanks and repeats dropped; numbers sent as integers kept exact.
        let body = edited(FULFILLMENT, |v| {
            v["tracking_numbers"] = serde_json::json!(["A1", "", null, "A1", PAST_F64]);
            v["tracking_company"] = serde_json::Value::Null;
        });
        let got = f(&body);
        assert_eq!(
            got.tracking_numbers,
            ["A1".to_owned(), PAST_F64.to_string()]
        );
        assert_eq!((got.carrier, got.carrier_name), (None, None));

        // Lines are optional; without a currency, or in two, they are refused.
        assert!(f(&removing(FULFILLMENT, "line_items")).lines.is_empty());
        let eur = set(
            FULFILLMENT,
            "/line_items/3/price_set/shop_money/currency_code",
            "EUR".into(),
        );
        assert!(is_invalid(
            &run(&delivery("fulfillments/create", &eur, SECRET, "w-1"), &eur),
            "line_items[3].price_set.shop_money.currency_code"
        ));
        let no_currency = edited(FULFILLMENT, |v| {
            for l in v["line_items"].as_array_mut().unwrap() {
                l.as_object_mut().unwrap().remove("price_set");
            }
        });
        assert!(is_invalid(
            &parse_untrusted_topic("fulfillments/create", &no_currency),
            "line_items[0].price_set"
        ));
        // One line saying is enough for all.
        let one = edited(FULFILLMENT, |v| {
            for l in v["line_items"].as_array_mut().unwrap().iter_mut().skip(1) {
                l.as_object_mut().unwrap().remove("price_set");
            }
        });
        assert_eq!(f(&one).lines, sample_fulfillment().lines);

        for field in ["id", "order_id", "status"] {
            let body = removing(FULFILLMENT, field);
            assert!(
                is_invalid(&parse_untrusted_topic("fulfillments/create", &body), field),
                "{field}"
            );
        }
    }

    #[test]
    fn fulfillment_event_sample_maps_exactly() {
        let env = event_of("fulfillment_events/create", FULFILLMENT_EVENT);
        assert_eq!(
            env.event,
            Event::FulfillmentStatusUpdated(FulfillmentStatusUpdated {
                order_id: id("820982911946154508"),
                fulfillment_id: id("123456"),
                status: ShipmentStatus::InTransit,
                carrier_status: "in_transit".to_owned(),
                message: Some("Item is now in transit".to_owned()),
                location: Some("CA".to_owned()),
                status_at: sample_time(),
                estimated_delivery: None,
            })
        );

        let body = edited(FULFILLMENT_EVENT, |v| {
            v["city"] = "Ottawa".into();
            v["province"] = "Ontario".into();
            v["estimated_delivery_at"] = "2022-01-03T12:00:00Z".into();
            v["message"] = " ".into();
        });
        let Event::FulfillmentStatusUpdated(u) = event_of("fulfillment_events/create", &body).event
        else {
            panic!()
        };
        assert_eq!(u.location.as_deref(), Some("Ottawa, Ontario, CA"));
        assert_eq!(
            u.estimated_delivery,
            Some(datetime!(2022-01-03 12:00:00 UTC))
        );
        assert_eq!(u.message, None);

        // Without happened_at the status dates from the event itself.
        let body = removing(FULFILLMENT_EVENT, "happened_at");
        let env = event_of("fulfillment_events/create", &body);
        let Event::FulfillmentStatusUpdated(u) = env.event else {
            panic!()
        };
        assert_eq!(u.status_at, triggered());
        let env = envelope(&no_trigger_for("fulfillment_events/create", &body), &body);
        let Event::FulfillmentStatusUpdated(u) = env.event else {
            panic!()
        };
        assert_eq!(u.status_at, sample_time());

        for field in ["id", "order_id", "fulfillment_id", "status"] {
            let body = removing(FULFILLMENT_EVENT, field);
            assert!(
                is_invalid(
                    &parse_untrusted_topic("fulfillment_events/create", &body),
                    field
                ),
                "{field}"
            );
        }
    }

    #[test]
    fn fulfillment_event_statuses_map_to_canonical_ones() {
        use ShipmentStatus::*;
        let cases = [
            ("label_printed", InfoReceived),
            ("label_purchased", InfoReceived),
            ("confirmed", InfoReceived),
            ("carrier_picked_up", InTransit),
            ("picked_up", InTransit),
            ("in_transit", InTransit),
            ("delayed", InTransit),
            ("out_for_delivery", OutForDelivery),
            ("attempted_delivery", FailedAttempt),
            ("ready_for_pickup", AvailableForPickup),
            ("delivered", Delivered),
            ("failure", Exception),
        ];
        for (shopify, canonical) in cases {
            let body = set(FULFILLMENT_EVENT, "/status", shopify.into());
            let Event::FulfillmentStatusUpdated(u) =
                event_of("fulfillment_events/create", &body).event
            else {
                panic!()
            };
            assert_eq!((u.status, u.carrier_status.as_str()), (canonical, shopify));
        }
    }

    #[test]
    fn unknown_fulfillment_statuses_are_ignored_not_guessed() {
        // A status Shopify adds later (or a variant spelling) must not move a shipment on.
        for status in ["returned_to_sender", "IN_TRANSIT", "lost"] {
            let body = set(FULFILLMENT_EVENT, "/status", status.into());
            let headers = delivery("fulfillment_events/create", &body, SECRET, "w-1");
            assert_eq!(
                run(&headers, &body),
                Ok(Parsed::Ignored {
                    topic: format!("fulfillment_events/create ({status})")
                })
            );
        }
        let long = set(FULFILLMENT_EVENT, "/status", "x".repeat(10_000).into());
        let Ok(Parsed::Ignored { topic }) =
            parse_untrusted_topic("fulfillment_events/create", &long)
        else {
            panic!()
        };
        assert!(topic.len() < 400);
    }

    fn checkout_of(body: &[u8]) -> Checkout {
        match event_of("checkouts/update", body).event {
            Event::CheckoutUpdated(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn checkout_sample_maps_exactly() {
        let ipod = OrderLine {
            product_id: Some(id("632910392")),
            variant_id: Some(id("808950810")),
            sku: Some("IPOD2008PINK".to_owned()),
            title: "IPod Nano - 8GB".to_owned(),
            variant_title: Some("Pink".to_owned()),
            quantity: 1,
            unit_price: usd(19900),
            total: usd(19900),
            image_url: None,
            url: None,
        };
        let expected = Checkout {
            id: id("123123123"),
            customer: Customer {
                id: Some(id("603851970716743426")),
                email: email("example@email.com"),
                first_name: Some("John".to_owned()),
                last_name: Some("Smith".to_owned()),
                locale: None,
                country: Some("US".to_owned()),
                accepts_marketing: Some(false),
            },
            currency: Currency::parse("USD").unwrap(),
            lines: vec![ipod.clone(), ipod],
            total: usd(42188),
            recovery_url: Some(
                "https://checkout.local/548380009/checkouts/123123123/recover?key=example-secret-token"
                    .to_owned(),
            ),
            updated_at: sample_time(),
            completed_at: None,
        };
        for topic in ["checkouts/create", "checkouts/update"] {
            assert_eq!(
                event_of(topic, CHECKOUT).event,
                Event::CheckoutUpdated(expected.clone()),
                "{topic}"
            );
        }
    }

    #[test]
    fn checkout_without_email_still_maps() {
        let body = edited(CHECKOUT, |v| {
            v["email"] = serde_json::Value::Null;
            v["customer"] = serde_json::Value::Null;
            v["customer_locale"] = "fr-CA".into();
            v["completed_at"] = "2022-01-01T00:05:00Z".into();
            v.as_object_mut().unwrap().remove("updated_at");
        });
        let c = checkout_of(&body);
        assert_eq!(c.customer.email, None);
        assert_eq!(c.customer.id, None);
        // Names from the billing address, as for orders.
        assert_eq!(
            (
                c.customer.first_name.as_deref(),
                c.customer.last_name.as_deref()
            ),
            (Some("Bob"), Some("Biller"))
        );
        assert_eq!(c.customer.locale.as_deref(), Some("fr-CA"));
        assert_eq!(c.completed_at, Some(datetime!(2022-01-01 00:05:00 UTC)));
        assert_eq!(c.updated_at, sample_time()); // created_at
        // The customer's own address when the checkout has none of its own.
        let body = set(CHECKOUT, "/email", "".into());
        assert_eq!(checkout_of(&body).customer.email, email("john@example.com"));

        for field in ["token", "currency", "total_price", "line_items"] {
            let body = removing(CHECKOUT, field);
            assert!(
                is_invalid(&parse_untrusted_topic("checkouts/update", &body), field),
                "{field}"
            );
        }
        let blank = set(CHECKOUT, "/token", " ".into());
        assert!(is_invalid(
            &parse_untrusted_topic("checkouts/update", &blank),
            "token"
        ));
    }

    fn customer_of(topic: &str, body: &[u8]) -> CustomerChanged {
        match event_of(topic, body).event {
            Event::CustomerCreated(c) if topic == "customers/create" => c,
            Event::CustomerUpdated(c) if topic == "customers/update" => c,
            other => panic!("{topic}: {other:?}"),
        }
    }

    #[test]
    fn customer_sample_maps_exactly() {
        let expected = CustomerChanged {
            customer: Customer {
                id: Some(id("706405506930370084")),
                email: email("bob@biller.com"),
                first_name: Some("Bob".to_owned()),
                last_name: Some("Biller".to_owned()),
                locale: None,
                country: Some("CA".to_owned()),
                accepts_marketing: None,
            },
            default_address: Some(Address {
                name: Some("Bob Biller".to_owned()),
                company: None,
                lines: vec!["151 O'Connor Street".to_owned()],
                city: Some("Ottawa".to_owned()),
                region: Some("ON".to_owned()),
                postal_code: Some("K2P 2L8".to_owned()),
                country: Some("CA".to_owned()),
            }),
        };
        for topic in ["customers/create", "customers/update"] {
            assert_eq!(customer_of(topic, CUSTOMER), expected, "{topic}");
        }
        let body = edited(CUSTOMER, |v| {
            v["locale"] = "pt_BR".into();
            v["default_address"] = serde_json::Value::Null;
            v["email"] = "nope".into();
        });
        let c = customer_of("customers/create", &body);
        assert_eq!(c.customer.locale.as_deref(), Some("pt-BR"));
        assert_eq!(
            (c.customer.country, c.default_address, c.customer.email),
            (None, None, None)
        );
        assert!(is_invalid(
            &parse_untrusted_topic("customers/create", &removing(CUSTOMER, "id")),
            "id"
        ));
    }

    #[test]
    fn marketing_consent_prefers_email_marketing_consent_over_the_legacy_flag() {
        let consent = |state: serde_json::Value, legacy: serde_json::Value| {
            let body = edited(CUSTOMER, |v| {
                v["email_marketing_consent"] =
                    serde_json::json!({"state": state, "opt_in_level": "single_opt_in"});
                v["accepts_marketing"] = legacy;
            });
            customer_of("customers/update", &body)
                .customer
                .accepts_marketing
        };
        use serde_json::Value::Null;
        assert_eq!(consent("subscribed".into(), false.into()), Some(true));
        assert_eq!(consent("not_subscribed".into(), true.into()), Some(false));
        assert_eq!(consent("unsubscribed".into(), Null), Some(false));
        assert_eq!(consent("pending".into(), Null), Some(false));
        assert_eq!(consent(Null, true.into()), Some(true));
        assert_eq!(consent(Null, false.into()), Some(false));
        assert_eq!(consent(Null, Null), None);
    }

    fn privacy_of(topic: &str, body: &[u8]) -> PrivacyRequested {
        match event_of(topic, body).event {
            Event::PrivacyRequested(p) => p,
            other => panic!("{topic}: {other:?}"),
        }
    }

    #[test]
    fn privacy_samples_map_exactly() {
        let orders = vec![id("299938"), id("280263"), id("220458")];
        assert_eq!(
            privacy_of("customers/data_request", DATA_REQUEST),
            PrivacyRequested {
                kind: PrivacyRequestKind::DataRequest,
                customer_id: Some(id("191167")),
                email: email("john@example.com"),
                orders: orders.clone(),
                request_id: Some("9999".to_owned()),
            }
        );
        assert_eq!(
            privacy_of("customers/redact", CUSTOMER_REDACT),
            PrivacyRequested {
                kind: PrivacyRequestKind::CustomerRedact,
                customer_id: Some(id("191167")),
                email: email("john@example.com"),
                orders,
                request_id: None,
            }
        );
        // Only a data request has a request id.
        let with_request = edited(CUSTOMER_REDACT, |v| {
            v["data_request"] = serde_json::json!({"id": 7});
        });
        assert_eq!(
            privacy_of("customers/redact", &with_request).request_id,
            None
        );
        assert_eq!(
            privacy_of("shop/redact", SHOP_REDACT),
            PrivacyRequested {
                kind: PrivacyRequestKind::ShopRedact,
                customer_id: None,
                email: None,
                orders: Vec::new(),
                request_id: None,
            }
        );
    }

    #[test]
    fn privacy_keys_without_an_event_id_name_shop_customer_and_request() {
        let key = |topic: &str, body: &[u8]| event_without_id(topic, body).idempotency_key;
        // The order of the orders does not matter; their set does.
        let shuffled = set(
            CUSTOMER_REDACT,
            "/orders_to_redact",
            serde_json::json!([220458, 299938, 280263, 220458]),
        );
        assert_eq!(
            key("customers/redact", &shuffled),
            key("customers/redact", CUSTOMER_REDACT)
        );
        let fewer = set(
            CUSTOMER_REDACT,
            "/orders_to_redact",
            serde_json::json!([220458]),
        );
        assert_ne!(
            key("customers/redact", &fewer),
            key("customers/redact", CUSTOMER_REDACT)
        );
        // Many orders are digested, still by set.
        let many: Vec<u64> = (1..=50).collect();
        let many_rev: Vec<u64> = (1..=50).rev().collect();
        let a = key(
            "customers/redact",
            &set(CUSTOMER_REDACT, "/orders_to_redact", many.into()),
        );
        let b = key(
            "customers/redact",
            &set(CUSTOMER_REDACT, "/orders_to_redact", many_rev.into()),
        );
        assert_eq!(a, b);
        assert!(
            a.starts_with("shopify:customers/redact:{shop}.myshopify.com:191167:orders-50-sha256-"),
            "{a}"
        );
        assert_eq!(
            a.len(),
            "shopify:customers/redact:{shop}.myshopify.com:191167:orders-50-sha256-".len() + 64
        );
        // A data request without its id falls back to the orders.
        let no_request = removing(DATA_REQUEST, "data_request");
        assert_eq!(
            key("customers/data_request", &no_request),
            "shopify:customers/data_request:{shop}.myshopify.com:191167:orders-220458,280263,299938"
        );
        // The shop id stands in for a missing domain; without either there is no key.
        let by_id = removing(SHOP_REDACT, "shop_domain");
        assert_eq!(key("shop/redact", &by_id), "shopify:shop/redact:954889");
        let nothing = removing(&by_id, "shop_id");
        assert!(is_invalid(
            &parse_untrusted_topic("shop/redact", &nothing),
            "shop_domain"
        ));
        // A customer request names its customer.
        for (topic, body) in [
            ("customers/data_request", DATA_REQUEST),
            ("customers/redact", CUSTOMER_REDACT),
        ] {
            let body = set(
                body,
                "/customer",
                serde_json::json!({"email": "john@example.com"}),
            );
            assert!(
                is_invalid(&parse_untrusted_topic(topic, &body), "customer.id"),
                "{topic}"
            );
        }
    }

    #[test]
    fn unknown_topics_are_ignored_even_with_a_real_sample() {
        let headers = delivery("app/uninstalled", APP_UNINSTALLED, SECRET, "w-1");
        assert_eq!(
            run(&headers, APP_UNINSTALLED),
            Ok(Parsed::Ignored {
                topic: "app/uninstalled".to_owned()
            })
        );
        assert_eq!(
            parse_untrusted_topic("app/uninstalled", APP_UNINSTALLED),
            Ok(Parsed::Ignored {
                topic: "app/uninstalled".to_owned()
            })
        );
        // A known topic on a body of another resource is refused, not misread.
        assert!(
            run(
                &delivery("orders/paid", APP_UNINSTALLED, SECRET, "w-1"),
                APP_UNINSTALLED
            )
            .is_err()
        );
    }

    #[test]
    fn every_topic_checks_the_signature_before_reading_the_body() {
        for topic in TOPICS {
            let body = fixture(topic);
            let headers = delivery(topic, body, b"someone-else", "w-1");
            assert_eq!(
                run(&headers, body),
                Err(AdapterError::BadSignature),
                "{topic}"
            );
            let headers = delivery(topic, b"{}", SECRET, "w-1");
            assert_eq!(
                run(&headers, b"not json"),
                Err(AdapterError::BadSignature),
                "{topic}"
            );
            let headers = without(
                delivery(topic, body, SECRET, "w-1"),
                "X-Shopify-Hmac-Sha256",
            );
            assert_eq!(
                run(&headers, body),
                Err(AdapterError::MissingSignature),
                "{topic}"
            );
        }
    }

    #[test]
    fn every_topic_reports_truncated_bodies_as_malformed_json() {
        for topic in TOPICS {
            let sample = fixture(topic);
            let trimmed = sample.trim_ascii_end();
            let cut = &trimmed[..trimmed.len() - 1];
            for body in [&sample[..sample.len() / 2], cut, b"{", b""] {
                let headers = delivery(topic, body, SECRET, "w-1");
                assert!(
                    matches!(run(&headers, body), Err(AdapterError::MalformedJson(_))),
                    "{topic}: {:?}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }

    /// For each topic, the JSON pointers of the ids it reads.
    fn id_fields(topic: &str) -> &'static [&'static str] {
        match topic {
            "orders/create" | "orders/paid" | "orders/cancelled" | "orders/fulfilled" => {
                &["/id", "/customer/id", "/line_items/0/product_id"]
            }
            "fulfillments/create" | "fulfillments/update" => {
                &["/id", "/order_id", "/line_items/0/product_id"]
            }
            "fulfillment_events/create" => &["/id", "/order_id", "/fulfillment_id"],
            "checkouts/create" | "checkouts/update" => {
                &["/token", "/customer/id", "/line_items/1/variant_id"]
            }
            "customers/create" | "customers/update" => &["/id"],
            "customers/data_request" => &["/customer/id", "/orders_requested/2", "/shop_id"],
            "customers/redact" => &["/customer/id", "/orders_to_redact/0", "/shop_id"],
            "shop/redact" => &["/shop_id"],
            other => panic!("{other}"),
        }
    }

    #[test]
    fn every_topic_refuses_wrong_types() {
        use serde_json::json;
        for topic in TOPICS {
            let sample = fixture(topic);
            let mut cases: Vec<Vec<u8>> = Vec::new();
            for at in id_fields(topic) {
                for bad in [
                    json!(1.5),
                    json!(-5),
                    json!({"id": 1}),
                    json!(true),
                    json!([1]),
                ] {
                    cases.push(set(sample, at, bad));
                }
            }
            if sample.windows(12).any(|w| w == b"\"line_items\"") {
                cases.push(set(sample, "/line_items", "a string".into()));
                cases.push(set(sample, "/line_items", json!([1, 2])));
            }
            cases.push(b"[1, 2, 3]".to_vec());
            cases.push(b"\"a string\"".to_vec());
            for body in cases {
                let shown = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
                let headers = delivery(topic, &body, SECRET, "w-1");
                assert!(
                    matches!(run(&headers, &body), Err(AdapterError::Invalid(_))),
                    "{topic}: {shown}"
                );
                assert!(
                    matches!(
                        parse_untrusted_topic(topic, &body),
                        Err(AdapterError::Invalid(_))
                    ),
                    "{topic}: {shown}"
                );
            }
        }
    }

    #[test]
    fn every_topic_keeps_huge_ids_exact() {
        for topic in TOPICS {
            for at in id_fields(topic) {
                for big in [PAST_F64, u64::MAX] {
                    for value in [serde_json::json!(big), serde_json::json!(big.to_string())] {
                        let mut body = set(fixture(topic), at, value);
                        if *at == "/shop_id" {
                            // The domain wins for the key; without it the id is used.
                            body = removing(&body, "shop_domain");
                        }
                        let env = event_without_id(topic, &body);
                        let json = serde_json::to_string(&env).unwrap();
                        let exact = big.to_string();
                        let in_data = json.contains(&format!("\"{exact}\""));
                        let in_key = env.idempotency_key.contains(&exact);
                        assert!(in_data || in_key, "{topic} {at}: {json}");
                        // Nowhere rounded: no neighbour of a float's rounding appears.
                        assert!(!json.contains("9007199254740992"), "{topic} {at}");
                        assert!(!json.contains("e+"), "{topic} {at}");
                    }
                }
            }
        }
        // And the sample's own > 2^53 ids, where each ends up.
        let env = event_of("fulfillment_events/create", FULFILLMENT_EVENT);
        let json = serde_json::to_value(&env).unwrap();
        assert_eq!(json["data"]["order_id"], "820982911946154508");
        let json = serde_json::to_value(event_of("customers/create", CUSTOMER)).unwrap();
        assert_eq!(json["data"]["customer"]["id"], "706405506930370084");
        let json = serde_json::to_value(event_of("checkouts/create", CHECKOUT)).unwrap();
        assert_eq!(json["data"]["customer"]["id"], "603851970716743426");
        let json = serde_json::to_value(event_of("fulfillments/update", FULFILLMENT)).unwrap();
        assert_eq!(json["data"]["order_id"], "820982911946154508");
        assert_eq!(json["data"]["lines"][0]["product_id"], "788032119674292922");
    }

    #[test]
    fn untrusted_topic_parse_uses_a_fixed_tenant_and_time() {
        for topic in TOPICS {
            let Ok(Parsed::Events(events)) = parse_untrusted_topic(topic, fixture(topic)) else {
                panic!("{topic}")
            };
            let [env] = events.as_slice() else {
                panic!("{topic}")
            };
            assert_eq!(env.tenant.as_str(), UNTRUSTED_TENANT);
            assert_eq!(env.source.delivery_id, None);
            assert!(!env.idempotency_key.contains("shopify:event:"), "{topic}");
            let privacy = topic.contains("redact") || topic.contains("data_request");
            let expected = if privacy {
                OffsetDateTime::UNIX_EPOCH
            } else {
                sample_time()
            };
            assert_eq!(env.occurred_at, expected, "{topic}");
            // The same mapping as a signed delivery without event id and trigger time.
            let headers = without(
                without(
                    delivery(topic, fixture(topic), SECRET, "w-1"),
                    "X-Shopify-Event-Id",
                ),
                "X-Shopify-Triggered-At",
            );
            let signed = envelope(&headers, fixture(topic));
            assert_eq!(signed.event, env.event, "{topic}");
            assert_eq!(signed.idempotency_key, env.idempotency_key, "{topic}");
        }
    }

    #[test]
    fn untrusted_input_never_panics_on_any_topic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let interesting = b"\"0-9.e,:{}[]\\\x00\xff";
        for topic in TOPICS {
            let sample = fixture(topic);
            for end in (0..sample.len()).step_by(7) {
                let _ = parse_untrusted_topic(topic, &sample[..end]);
            }
            for _ in 0..300 {
                let mut body = sample.to_vec();
                for _ in 0..(1 + next() % 4) {
                    let at = (next() % body.len() as u64) as usize;
                    body[at] = interesting[(next() % interesting.len() as u64) as usize];
                }
                let _ = parse_untrusted_topic(topic, &body);
            }
            let deep = format!(
                "{{\"id\": {}1{}}}",
                "[".repeat(100_000),
                "]".repeat(100_000)
            );
            assert!(
                parse_untrusted_topic(topic, deep.as_bytes()).is_err(),
                "{topic}"
            );
        }
        assert_eq!(
            parse_untrusted_topic("x".repeat(10_000).as_str(), b"{}")
                .map(|p| matches!(p, Parsed::Ignored { topic } if topic.len() < 400)),
            Ok(true)
        );
    }
}
