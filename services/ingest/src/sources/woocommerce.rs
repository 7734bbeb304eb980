//! WooCommerce webhooks: verifies `X-WC-Webhook-Signature` and maps the REST v3 resources
//! WooCommerce sends to envelopes: `order.created` to `order.placed`, `order.updated` to the
//! order's state change (`order.paid`, `order.fulfilled`, `order.cancelled`), the tracking
//! items of the Shipment Tracking extensions on either order topic to `fulfillment.created`,
//! and `customer.created` / `customer.updated` to the same customer events. Every other
//! topic is acknowledged and ignored, and so is the unsigned ping WooCommerce sends when a
//! webhook is created.
//!
//! Use [`verify`] first, on the raw body, then [`parse`] with the [`Verified`] token it
//! returns (or [`verify_and_parse`] for both, which also answers the ping).
//!
//! Invariants:
//! - the signature is `base64(HMAC-SHA256(secret, raw body))`; the key is the secret as the
//!   merchant typed it in WooCommerce (WooCommerce HTML-decodes what WordPress stored);
//! - ids never pass through a float: they are read as `u64` from a JSON integer or a string
//!   of digits; a float, a negative number or anything above `u64::MAX` is rejected;
//! - amounts are read exactly into minor units of the order's `currency`. WooCommerce sends
//!   them as decimal strings, except a line's `price`, which is a PHP float (`"price": 3`):
//!   a JSON number is read through its decimal text (never through float arithmetic), and
//!   every sum or product is checked;
//! - WooCommerce sends no stable event id (`X-WC-Webhook-Delivery-ID` is fresh per delivery),
//!   so every idempotency key is a business key: `woocommerce:order:{id}:placed`,
//!   `woocommerce:order:{id}:{paid|fulfilled|cancelled}` (WooCommerce sends `order.updated`
//!   on every save, so repeats of one status are one event),
//!   `woocommerce:fulfillment:{order id}:{tracking id or number}` and
//!   `woocommerce:{topic}:{customer id}:{date_modified_gmt}`;
//! - one delivery may give several events: the order's own event first, then one
//!   `fulfillment.created` per tracking item, in the order of the items;
//! - unknown fields are ignored, so fields WooCommerce adds later do not break ingestion.
//!
//! Statuses: `processing` is paid, `completed` fulfilled, `cancelled` cancelled; `pending`,
//! `on-hold`, `refunded`, `failed` and custom statuses give no event of their own. An
//! `order.updated` that gives no event at all is [`Parsed::Ignored`] without mapping the
//! order, so an order WooCommerce keeps re-sending is never refused for fields Postflow
//! would not use. Drafts (`draft`, `auto-draft`, `checkout-draft`) are ignored on both
//! order topics.
//!
//! Tracking: WooCommerce Shipment Tracking and Advanced Shipment Tracking keep an order's
//! shipments in its `meta_data` under [`TRACKING_META_KEY`], a list of items with
//! `tracking_provider` (a slug or a name), `custom_tracking_provider`,
//! `custom_tracking_link`, `tracking_number`, `date_shipped` (Unix seconds, a string or a
//! number) and `tracking_id`. Each item with a tracking number is a fulfillment of the whole
//! order, dated at `date_shipped` when it has a usable one.
//!
//! Times: `date_created_gmt` for creations, `date_modified_gmt` for updates (both UTC
//! without an offset), else the receive time.
//!
//! The ping: when a merchant saves a webhook, WooCommerce POSTs the form-encoded body
//! `webhook_id=<id>` with no `X-WC-*` headers and no signature, and refuses to activate the
//! webhook unless the answer is exactly 200. [`verify_and_parse`] answers exactly that shape
//! with [`Parsed::Ignored`] (topic [`TOPIC_PING`]). This is safe because an ignored delivery
//! publishes nothing and reveals nothing: anyone can already learn that the URL exists, and
//! every other unsigned request is refused with [`AdapterError::MissingSignature`].

use std::collections::BTreeSet;
use std::fmt;

use contracts::{
    Address, Currency, Customer, CustomerChanged, EmailAddress, Envelope, Event, ExternalId,
    Fulfillment, Money, Order, OrderChanged, OrderLine, OrderPlaced, Source, TenantId,
};
use serde::Deserialize;
use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde_json::Value;
use time::OffsetDateTime;

use super::common::{
    Id, Text, check_hmac_b64, clip, country_code, missing, money, money_or_zero, out_of_range,
    parse_time, read_json, slug, text_of as text,
};
pub use super::{AdapterError, Headers, Parsed};
use super::{header, sign_hmac_b64};

/// [`Source::system`] of every event from this adapter.
pub const SYSTEM: &str = "woocommerce";
/// A new order: `order.placed`, and a fulfillment per tracking item.
pub const TOPIC_ORDER_CREATED: &str = "order.created";
/// A saved order: its state change, if its status is one, and a fulfillment per tracking
/// item.
pub const TOPIC_ORDER_UPDATED: &str = "order.updated";
/// A new customer account: `customer.created`.
pub const TOPIC_CUSTOMER_CREATED: &str = "customer.created";
/// A saved customer account: `customer.updated`.
pub const TOPIC_CUSTOMER_UPDATED: &str = "customer.updated";
/// The topic named in [`Parsed::Ignored`] for WooCommerce's unsigned creation ping.
pub const TOPIC_PING: &str = "ping";
/// The order meta key under which the Shipment Tracking extensions keep tracking items.
pub const TRACKING_META_KEY: &str = "_wc_shipment_tracking_items";
/// [`Fulfillment::status`] of a fulfillment made from a tracking item.
pub const SHIPPED: &str = "shipped";

/// The tenant of [`parse_untrusted_topic`]'s events.
const UNTRUSTED_TENANT: &str = "untrusted";

const SIGNATURE_HEADER: [&str; 1] = ["x-wc-webhook-signature"];
const TOPIC_HEADER: [&str; 1] = ["x-wc-webhook-topic"];
const DELIVERY_ID_HEADER: [&str; 1] = ["x-wc-webhook-delivery-id"];

/// Order statuses of carts and checkouts that are not orders yet (with or without the
/// `wc-` prefix WooCommerce uses internally).
const DRAFT_STATUSES: [&str; 3] = ["draft", "auto-draft", "checkout-draft"];

/// Proof that a body's signature was checked. Only [`verify`] makes one.
#[derive(Debug)]
pub struct Verified(());

/// `base64(HMAC-SHA256(secret, body))`: the `X-WC-Webhook-Signature` WooCommerce would send.
#[must_use]
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    sign_hmac_b64(secret, body)
}

/// Checks `X-WC-Webhook-Signature` against the raw body with each of `secrets` (the old and
/// the new one during a rotation), in constant time. Does not look at the body's content.
pub fn verify<H: Headers + ?Sized>(
    secrets: &[&[u8]],
    headers: &H,
    body: &[u8],
) -> Result<Verified, AdapterError> {
    check_hmac_b64(secrets, headers, &SIGNATURE_HEADER, body).map(|()| Verified(()))
}

/// Whether a delivery is WooCommerce's creation ping and nothing else: no signature, no
/// `X-WC-Webhook-Topic` header at all, and a body of exactly `webhook_id=` and digits.
pub fn is_ping<H: Headers + ?Sized>(headers: &H, body: &[u8]) -> bool {
    header(headers, &SIGNATURE_HEADER).is_none()
        && headers.get(TOPIC_HEADER[0]).is_none()
        && body
            .strip_prefix(b"webhook_id=")
            .is_some_and(|id| !id.is_empty() && id.iter().all(u8::is_ascii_digit))
}

/// Maps a verified delivery to events. The topic decides before the body is read: topics
/// other than `order.created`, `order.updated`, `customer.created` and `customer.updated`
/// are [`Parsed::Ignored`] whatever their body, and so are draft orders and order updates
/// that give no event (see the module docs).
pub fn parse<H: Headers + ?Sized>(
    _verified: &Verified,
    tenant: &TenantId,
    headers: &H,
    body: &[u8],
    received_at: OffsetDateTime,
) -> Result<Parsed, AdapterError> {
    let topic =
        header(headers, &TOPIC_HEADER).ok_or(AdapterError::MissingHeader(TOPIC_HEADER[0]))?;
    let delivery_id = header(headers, &DELIVERY_ID_HEADER);
    parse_topic(tenant, topic, delivery_id, body, received_at)
}

/// [`verify`], then [`parse`]: what a webhook handler calls. The creation ping (see
/// [`is_ping`]) is answered with `Ok(Parsed::Ignored { topic: "ping" })`, any other
/// unsigned delivery with [`AdapterError::MissingSignature`].
pub fn verify_and_parse<H: Headers + ?Sized>(
    secrets: &[&[u8]],
    tenant: &TenantId,
    headers: &H,
    body: &[u8],
    received_at: OffsetDateTime,
) -> Result<Parsed, AdapterError> {
    match verify(secrets, headers, body) {
        Ok(verified) => parse(&verified, tenant, headers, body, received_at),
        // Safe to acknowledge unsigned: it publishes nothing (see the module docs).
        Err(AdapterError::MissingSignature) if is_ping(headers, body) => Ok(Parsed::Ignored {
            topic: TOPIC_PING.to_owned(),
        }),
        Err(e) => Err(e),
    }
}

/// The order mapping alone, without signature, headers or the draft check, for fuzzing:
/// never panics on any input. Without `date_created_gmt`, `placed_at` is the Unix epoch.
pub fn parse_untrusted(body: &[u8]) -> Result<Order, AdapterError> {
    parse_order(body, OffsetDateTime::UNIX_EPOCH)
}

/// [`parse`] without a signature, for fuzzing: a delivery of `topic` with no delivery id,
/// for a fixed tenant, received at the Unix epoch. Never panics on any input.
pub fn parse_untrusted_topic(topic: &str, body: &[u8]) -> Result<Parsed, AdapterError> {
    let tenant =
        TenantId::parse(UNTRUSTED_TENANT).map_err(|e| AdapterError::Invalid(e.to_string()))?;
    parse_topic(&tenant, topic, None, body, OffsetDateTime::UNIX_EPOCH)
}

/// The events of one delivery of `topic`; [`Parsed::Ignored`] when there are none.
fn parse_topic(
    tenant: &TenantId,
    topic: &str,
    delivery_id: Option<&str>,
    body: &[u8],
    received_at: OffsetDateTime,
) -> Result<Parsed, AdapterError> {
    let delivery = Delivery {
        tenant,
        source: Source {
            system: SYSTEM.to_owned(),
            delivery_id: delivery_id.map(str::to_owned),
            topic: Some(topic.to_owned()),
        },
        received_at,
    };
    let events = match topic {
        TOPIC_ORDER_CREATED => order_events(&delivery, OrderTopic::Created, body)?,
        TOPIC_ORDER_UPDATED => order_events(&delivery, OrderTopic::Updated, body)?,
        TOPIC_CUSTOMER_CREATED => vec![customer_event(&delivery, topic, true, body)?],
        TOPIC_CUSTOMER_UPDATED => vec![customer_event(&delivery, topic, false, body)?],
        _ => Vec::new(),
    };
    if events.is_empty() {
        Ok(Parsed::Ignored {
            topic: topic.to_owned(),
        })
    } else {
        Ok(Parsed::Events(events))
    }
}

/// What every event of one delivery shares.
struct Delivery<'a> {
    tenant: &'a TenantId,
    source: Source,
    received_at: OffsetDateTime,
}

impl Delivery<'_> {
    fn envelope(&self, occurred_at: OffsetDateTime, key: String, event: Event) -> Envelope {
        Envelope::new(
            self.tenant.clone(),
            occurred_at,
            self.source.clone(),
            key,
            event,
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OrderTopic {
    Created,
    Updated,
}

/// The state change an `order.updated` status stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusChange {
    Paid,
    Fulfilled,
    Cancelled,
}

impl StatusChange {
    /// The change of a WooCommerce status (with or without `wc-`, in any case), if any.
    fn of(status: &str) -> Option<Self> {
        let status = bare_status(status);
        [
            ("processing", Self::Paid),
            ("completed", Self::Fulfilled),
            ("cancelled", Self::Cancelled),
        ]
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(status))
        .map(|(_, change)| change)
    }

    /// The last part of the idempotency key.
    fn name(self) -> &'static str {
        match self {
            Self::Paid => "paid",
            Self::Fulfilled => "fulfilled",
            Self::Cancelled => "cancelled",
        }
    }

    fn event(self, changed: OrderChanged) -> Event {
        match self {
            Self::Paid => Event::OrderPaid(changed),
            Self::Fulfilled => Event::OrderFulfilled(changed),
            Self::Cancelled => Event::OrderCancelled(changed),
        }
    }
}

/// The events of an order delivery: the order's own event (`order.placed` for a creation,
/// the state change for an update), then a `fulfillment.created` per tracking item.
fn order_events(
    delivery: &Delivery<'_>,
    topic: OrderTopic,
    body: &[u8],
) -> Result<Vec<Envelope>, AdapterError> {
    // Read status and meta alone first, so a draft, or an update that gives no event, is
    // ignored even if the rest would not map (meta values are read as any JSON).
    let head: RawOrderHead = read_json(body)?;
    let status = head.status.as_deref();
    if status.is_some_and(is_draft) {
        return Ok(Vec::new());
    }
    let change = match topic {
        OrderTopic::Created => None,
        OrderTopic::Updated => status.and_then(StatusChange::of),
    };
    let items = tracking_items(head.meta_data.as_ref())?;
    if topic == OrderTopic::Updated && change.is_none() && items.is_empty() {
        return Ok(Vec::new());
    }

    let raw: RawOrder = read_json(body)?;
    let modified_at = raw.date_modified_gmt.as_deref().and_then(parse_time);
    let order = raw.into_order(delivery.received_at)?;
    let order_id = order.id.clone();
    // `placed_at` is `date_created_gmt` or already the receive time.
    let occurred_at = match topic {
        OrderTopic::Created => order.placed_at,
        OrderTopic::Updated => modified_at.unwrap_or(delivery.received_at),
    };

    // Two items with one tracking id would be one event twice: keep the first.
    let mut seen = BTreeSet::new();
    let fulfillments: Vec<Envelope> = items
        .iter()
        .filter(|item| seen.insert(item.id.as_str()))
        .map(|item| {
            delivery.envelope(
                item.shipped_at.unwrap_or(occurred_at),
                format!("woocommerce:fulfillment:{order_id}:{}", item.id),
                Event::FulfillmentCreated(item.fulfillment(&order)),
            )
        })
        .collect();

    let first = match (topic, change) {
        (OrderTopic::Created, _) => Some(delivery.envelope(
            occurred_at,
            format!("woocommerce:order:{order_id}:placed"),
            Event::OrderPlaced(OrderPlaced { order }),
        )),
        (OrderTopic::Updated, Some(change)) => Some(delivery.envelope(
            occurred_at,
            format!("woocommerce:order:{order_id}:{}", change.name()),
            change.event(OrderChanged {
                order,
                reason: None,
            }),
        )),
        (OrderTopic::Updated, None) => None,
    };
    Ok(first.into_iter().chain(fulfillments).collect())
}

/// `status` without blanks around it or the `wc-` prefix WooCommerce uses internally.
fn bare_status(status: &str) -> &str {
    let status = status.trim();
    status.strip_prefix("wc-").unwrap_or(status)
}

fn is_draft(status: &str) -> bool {
    let status = bare_status(status);
    DRAFT_STATUSES
        .iter()
        .any(|draft| draft.eq_ignore_ascii_case(status))
}

fn parse_order(body: &[u8], fallback_time: OffsetDateTime) -> Result<Order, AdapterError> {
    let raw: RawOrder = read_json(body)?;
    raw.into_order(fallback_time)
}

/// A line's unit price from WooCommerce's `price`, which is the line total divided by the
/// quantity in PHP floating point (so already net of coupons). When that division does not
/// end within the currency's decimals (`10.00 / 3` arrives as `3.3333333333333335`), the
/// unit price is the exact line total divided by the quantity, rounded half to even, provided
/// `price` agrees with it to one minor unit; any other excess of decimals is rejected.
fn unit_price(
    field: &str,
    price: &str,
    quantity: u32,
    line_total: Option<&Money>,
    currency: &Currency,
) -> Result<Money, AdapterError> {
    let err = match Money::parse_decimal(price, currency.clone()) {
        Ok(m) => return Ok(m),
        Err(e) => e,
    };
    if let Some(total) = line_total
        && quantity > 0
        && let Some(rounded) = round_decimal(price, currency.exponent())
    {
        let derived = div_round_half_even(total.minor, quantity);
        if (i128::from(rounded) - i128::from(derived)).abs() <= 1 {
            return Ok(Money {
                minor: derived,
                currency: currency.clone(),
            });
        }
        return Err(AdapterError::Invalid(clip(format!(
            "{field}: {price:?} has more than {} decimals for {currency} and is not the line total divided by the quantity",
            currency.exponent()
        ))));
    }
    Err(AdapterError::Invalid(clip(format!("{field}: {err}"))))
}

/// A plain decimal (`-12.345`, no exponent) in units of 10^-`exp`, rounded half to even.
fn round_decimal(s: &str, exp: u32) -> Option<i64> {
    let t = s.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) {
        return None;
    }
    let exp = usize::try_from(exp).ok()?;
    let (kept, rest) = frac.split_at(frac.len().min(exp));
    let mut minor: i64 = format!("{int}{kept:0<exp$}").parse().ok()?;
    let mut rest = rest.bytes();
    let up = match rest.next() {
        Some(b'6'..=b'9') => true,
        Some(b'5') => rest.any(|b| b != b'0') || minor % 2 == 1,
        _ => false,
    };
    if up {
        minor = minor.checked_add(1)?;
    }
    Some(if neg { -minor } else { minor })
}

/// `n / d` rounded half to even.
fn div_round_half_even(n: i64, d: u32) -> i64 {
    let d = i64::from(d.max(1));
    let (q, r) = (n.div_euclid(d), n.rem_euclid(d));
    // 0 <= r < d <= u32::MAX, so 2r cannot overflow; and q + 1 cannot, because r > 0
    // means d >= 2, so |q| <= |n| / 2 + 1.
    if 2 * r > d || (2 * r == d && q % 2 != 0) {
        q + 1
    } else {
        q
    }
}

/// Decodes the HTML entities WordPress leaves in product names (`Ship Your Idea &ndash;
/// Color: Black`, `Salt &amp; Pepper`): the XML five, common typographic ones and numeric
/// references. Anything else, or a reference to a control character, stays as it is.
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        // The name runs to the first `;` within a few bytes (ASCII, so a char boundary).
        let decoded = rest
            .bytes()
            .take(12)
            .position(|b| b == b';')
            .and_then(|end| rest.get(1..end))
            .and_then(|name| entity(name).map(|c| (c, name.len() + 2)));
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(name: &str) -> Option<char> {
    let c = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "lsquo" => '‘',
        "rsquo" => '’',
        "sbquo" => '‚',
        "ldquo" => '“',
        "rdquo" => '”',
        "bdquo" => '„',
        "laquo" => '«',
        "raquo" => '»',
        "times" => '×',
        "middot" => '·',
        "bull" => '•',
        "deg" => '°',
        "trade" => '™',
        "reg" => '®',
        "copy" => '©',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        _ => {
            let num = name.strip_prefix('#')?;
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    u32::from_str_radix(hex, 16).ok()?
                }
                None if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) => {
                    num.parse().ok()?
                }
                _ => return None,
            };
            char::from_u32(code).filter(|c| !c.is_control())?
        }
    };
    Some(c)
}

impl Id {
    /// WooCommerce writes 0 for "none" (a guest's `customer_id`, a simple product's
    /// `variation_id`).
    fn nonzero(id: Option<Id>) -> Option<ExternalId> {
        id.filter(|id| id.0 != 0).map(|id| ExternalId::from(id.0))
    }
}

/// A money amount: a decimal string (`"29.35"`), or a JSON number kept as its decimal text
/// (`3` → `"3"`, `12.5` → `"12.5"`). serde_json has already parsed a non-integer number into
/// an `f64`; its shortest round-trip text is the text that was sent for every amount that
/// fits the currency exactly, and anything else fails [`Money::parse_decimal`] (more
/// decimals, an exponent) instead of being rounded silently.
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
                f.write_str("a decimal amount (a string or a number)")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
                Ok(Amount(v.to_owned()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Amount, E> {
                Ok(Amount(serde_json::Number::from(v).to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
                Ok(Amount(serde_json::Number::from(v).to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Amount, E> {
                serde_json::Number::from_f64(v)
                    .map(|n| Amount(n.to_string()))
                    .ok_or_else(|| E::invalid_value(Unexpected::Float(v), &self))
            }
        }

        d.deserialize_any(AmountVisitor)
    }
}

/// A label such as the order `number`: a string, or an integer written out.
struct Label(String);

impl AsRef<str> for Label {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LabelVisitor;

        impl Visitor<'_> for LabelVisitor {
            type Value = Label;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Label, E> {
                Ok(Label(v.to_owned()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Label, E> {
                Ok(Label(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Label, E> {
                Ok(Label(v.to_string()))
            }
        }

        d.deserialize_any(LabelVisitor)
    }
}

/// What decides whether an order delivery gives events. `meta_data` is read as any JSON,
/// so only a wrong `status` type (or broken JSON) can fail this read.
#[derive(Deserialize)]
#[serde(expecting = "an order object")]
struct RawOrderHead {
    status: Option<String>,
    meta_data: Option<Value>,
}

/// The fields of the REST v3 order JSON that Postflow uses. Everything else is ignored.
#[derive(Deserialize)]
#[serde(expecting = "an order object")]
struct RawOrder {
    id: Option<Id>,
    number: Option<Label>,
    currency: Option<String>,
    date_created_gmt: Option<String>,
    date_modified_gmt: Option<String>,
    customer_id: Option<Id>,
    billing: Option<RawAddress>,
    shipping: Option<RawAddress>,
    line_items: Option<Vec<RawLine>>,
    shipping_total: Option<Amount>,
    total_tax: Option<Amount>,
    discount_total: Option<Amount>,
    total: Option<Amount>,
}

/// `billing` and `shipping` (only `billing` has `email`).
#[derive(Deserialize)]
#[serde(expecting = "an address object")]
struct RawAddress {
    first_name: Option<String>,
    last_name: Option<String>,
    company: Option<String>,
    address_1: Option<String>,
    address_2: Option<String>,
    city: Option<String>,
    state: Option<String>,
    postcode: Option<String>,
    country: Option<String>,
    email: Option<String>,
}

#[derive(Deserialize)]
#[serde(expecting = "a line item object")]
struct RawLine {
    name: Option<String>,
    product_id: Option<Id>,
    variation_id: Option<Id>,
    sku: Option<String>,
    quantity: Option<u32>,
    /// Before coupons.
    subtotal: Option<Amount>,
    /// After coupons.
    total: Option<Amount>,
    price: Option<Amount>,
}

impl RawOrder {
    fn into_order(self, fallback_time: OffsetDateTime) -> Result<Order, AdapterError> {
        let id = self.id.ok_or_else(|| missing("id"))?;
        let currency = text(&self.currency).ok_or_else(|| missing("currency"))?;
        let currency = Currency::parse(&currency)
            .map_err(|e| AdapterError::Invalid(clip(format!("currency: {e}"))))?;
        let total = text(&self.total).ok_or_else(|| missing("total"))?;
        let total = money("total", &total, &currency)?;
        let raw_lines = self
            .line_items
            .as_ref()
            .ok_or_else(|| missing("line_items"))?;

        // WooCommerce's order subtotal is the sum of the lines before coupons; the coupons
        // are in `discount_total`, so subtotal − discounts + shipping + tax (+ fees) = total.
        let mut lines = Vec::with_capacity(raw_lines.len());
        let mut subtotal = 0i64;
        for (i, line) in raw_lines.iter().enumerate() {
            let (line, line_subtotal) = line.to_line(i, &currency)?;
            subtotal = subtotal
                .checked_add(line_subtotal)
                .ok_or_else(|| out_of_range("line_items[].subtotal"))?;
            lines.push(line);
        }

        // What the customer sees: WooCommerce shows `Order #727`.
        let number = match text(&self.number) {
            Some(n) if n.starts_with('#') => n,
            Some(n) => format!("#{n}"),
            None => format!("#{}", id.0),
        };

        Ok(Order {
            id: ExternalId::from(id.0),
            number,
            placed_at: self
                .date_created_gmt
                .as_deref()
                .and_then(parse_time)
                .unwrap_or(fallback_time),
            customer: self.customer(),
            lines,
            subtotal: Money {
                minor: subtotal,
                currency: currency.clone(),
            },
            shipping: money_or_zero("shipping_total", &self.shipping_total, &currency)?,
            tax: money_or_zero("total_tax", &self.total_tax, &currency)?,
            discounts: money_or_zero("discount_total", &self.discount_total, &currency)?,
            total,
            shipping_address: self.shipping.as_ref().and_then(RawAddress::to_address),
            status_url: None,
            test: false,
            currency,
        })
    }

    fn customer(&self) -> Customer {
        let billing = self.billing.as_ref();
        let email = billing
            .and_then(|b| b.email.as_deref())
            .and_then(|e| EmailAddress::parse(e).ok());
        // Both names from the first address that has either, so names are never mixed.
        let (first_name, last_name) = [billing, self.shipping.as_ref()]
            .into_iter()
            .flatten()
            .map(RawAddress::names)
            .find(|(first, last)| first.is_some() || last.is_some())
            .unwrap_or((None, None));
        let country = [self.shipping.as_ref(), billing]
            .into_iter()
            .flatten()
            .find_map(|a| country_code(&a.country));
        Customer {
            id: Id::nonzero(self.customer_id),
            email,
            first_name,
            last_name,
            locale: None,
            country,
            accepts_marketing: None,
        }
    }
}

impl RawLine {
    /// The line, and its subtotal before coupons in minor units.
    fn to_line(&self, i: usize, currency: &Currency) -> Result<(OrderLine, i64), AdapterError> {
        let field = |name: &str| format!("line_items[{i}].{name}");
        let title = text(&self.name)
            .map(|n| decode_entities(&n))
            .ok_or_else(|| missing(&field("name")))?;
        let quantity = self.quantity.ok_or_else(|| missing(&field("quantity")))?;
        let line_total = text(&self.total)
            .map(|t| money(&field("total"), &t, currency))
            .transpose()?;
        let price = text(&self.price).ok_or_else(|| missing(&field("price")))?;
        let unit_price = unit_price(
            &field("price"),
            &price,
            quantity,
            line_total.as_ref(),
            currency,
        )?;
        let total = match line_total {
            Some(total) => total,
            None => Money {
                minor: unit_price
                    .minor
                    .checked_mul(i64::from(quantity))
                    .ok_or_else(|| out_of_range(&format!("line_items[{i}]")))?,
                currency: currency.clone(),
            },
        };
        let subtotal = match text(&self.subtotal) {
            Some(s) => money(&field("subtotal"), &s, currency)?.minor,
            None => total.minor,
        };
        let line = OrderLine {
            product_id: Id::nonzero(self.product_id),
            variant_id: Id::nonzero(self.variation_id),
            sku: text(&self.sku),
            title,
            variant_title: None,
            quantity,
            unit_price,
            total,
            image_url: None,
            url: None,
        };
        Ok((line, subtotal))
    }
}

impl RawAddress {
    fn names(&self) -> (Option<String>, Option<String>) {
        (text(&self.first_name), text(&self.last_name))
    }

    /// The address, unless every field we use is blank (orders of virtual goods).
    fn to_address(&self) -> Option<Address> {
        let name = match self.names() {
            (Some(first), Some(last)) => Some(format!("{first} {last}")),
            (first, last) => first.or(last),
        };
        let address = Address {
            name,
            company: text(&self.company),
            lines: [&self.address_1, &self.address_2]
                .into_iter()
                .filter_map(text)
                .collect(),
            city: text(&self.city),
            region: text(&self.state),
            postal_code: text(&self.postcode),
            country: country_code(&self.country),
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

// ---------------------------------------------------------------------------------------
// Tracking items (WooCommerce Shipment Tracking, Advanced Shipment Tracking).

/// One tracking item that has a tracking number: a fulfillment of the order.
#[derive(Debug, Clone, PartialEq)]
struct Tracking {
    /// `tracking_id`, else the tracking number: the fulfillment's id and key.
    id: String,
    number: String,
    carrier: Option<String>,
    carrier_name: Option<String>,
    url: Option<String>,
    shipped_at: Option<OffsetDateTime>,
}

impl Tracking {
    /// The fulfillment of the whole `order` this item stands for.
    fn fulfillment(&self, order: &Order) -> Fulfillment {
        Fulfillment {
            id: ExternalId::new(self.id.clone()),
            order_id: order.id.clone(),
            status: SHIPPED.to_owned(),
            carrier: self.carrier.clone(),
            carrier_name: self.carrier_name.clone(),
            tracking_numbers: vec![self.number.clone()],
            tracking_urls: self.url.iter().cloned().collect(),
            lines: order.lines.clone(),
            destination: order.shipping_address.clone(),
            email: order.customer.email.clone(),
        }
    }
}

/// One element of the [`TRACKING_META_KEY`] list.
#[derive(Deserialize)]
#[serde(expecting = "a tracking item object")]
struct RawTrackingItem {
    tracking_provider: Option<String>,
    custom_tracking_provider: Option<String>,
    custom_tracking_link: Option<String>,
    tracking_number: Option<Text>,
    date_shipped: Option<ShipDate>,
    tracking_id: Option<Text>,
}

impl RawTrackingItem {
    /// The item, unless it has no tracking number.
    fn into_tracking(self) -> Option<Tracking> {
        let number = text(&self.tracking_number.map(|t| t.0))?;
        let provider = text(&self.tracking_provider);
        let custom = text(&self.custom_tracking_provider);
        let carrier = provider
            .as_deref()
            .and_then(slug)
            .or_else(|| custom.as_deref().and_then(slug));
        // A known carrier's name; else the custom provider's; else the provider as stored,
        // when it is a name rather than a slug.
        let carrier_name = carrier
            .as_deref()
            .and_then(carrier_display_name)
            .map(str::to_owned)
            .or(custom)
            .or_else(|| provider.filter(|p| slug(p).as_deref() != Some(p.as_str())));
        let url = text(&self.custom_tracking_link)
            .and_then(|link| web_link(&link))
            .or_else(|| carrier.as_deref().and_then(|c| carrier_url(c, &number)));
        Some(Tracking {
            id: text(&self.tracking_id.map(|t| t.0)).unwrap_or_else(|| number.clone()),
            number,
            carrier,
            carrier_name,
            url,
            shipped_at: self.date_shipped.and_then(|d| d.0),
        })
    }
}

/// The tracking items with a tracking number in an order's `meta_data`, in order: every
/// entry whose `key` is [`TRACKING_META_KEY`] holds a list of items (an empty or null value
/// holds none). Other entries are not looked at.
fn tracking_items(meta_data: Option<&Value>) -> Result<Vec<Tracking>, AdapterError> {
    let entries = match meta_data {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return Err(AdapterError::Invalid(
                "meta_data: expected an array".to_owned(),
            ));
        }
    };
    let invalid =
        |detail: String| AdapterError::Invalid(clip(format!("{TRACKING_META_KEY}{detail}")));
    let mut items = Vec::new();
    for entry in entries {
        if entry.get("key").and_then(Value::as_str) != Some(TRACKING_META_KEY) {
            continue;
        }
        let list = match entry.get("value") {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) if s.trim().is_empty() => continue,
            Some(Value::Array(list)) => list,
            Some(_) => return Err(invalid(": expected a list of tracking items".to_owned())),
        };
        for (i, item) in list.iter().enumerate() {
            // serde would also read a struct from a positional array.
            if !item.is_object() {
                return Err(invalid(format!("[{i}]: expected a tracking item object")));
            }
            let raw =
                RawTrackingItem::deserialize(item).map_err(|e| invalid(format!("[{i}]: {e}")))?;
            items.extend(raw.into_tracking());
        }
    }
    Ok(items)
}

/// `date_shipped`: Unix seconds as an integer or a string of digits (or a time
/// [`parse_time`] reads). A float, a time before 1970-01-01T00:00:01 or text that is no time
/// is no date, so an odd date never refuses the order; other JSON types are an error.
struct ShipDate(Option<OffsetDateTime>);

impl<'de> Deserialize<'de> for ShipDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ShipDateVisitor;

        impl Visitor<'_> for ShipDateVisitor {
            type Value = ShipDate;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("unix seconds (a string or a number)")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ShipDate, E> {
                let v = v.trim();
                let seconds = v.strip_prefix('-').unwrap_or(v);
                if !seconds.is_empty() && seconds.bytes().all(|b| b.is_ascii_digit()) {
                    return Ok(ShipDate(v.parse().ok().and_then(unix_time)));
                }
                Ok(ShipDate(parse_time(v)))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ShipDate, E> {
                Ok(ShipDate(i64::try_from(v).ok().and_then(unix_time)))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ShipDate, E> {
                Ok(ShipDate(unix_time(v)))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<ShipDate, E> {
                Ok(ShipDate(None))
            }
        }

        d.deserialize_any(ShipDateVisitor)
    }
}

/// A positive Unix time in seconds (0 is what a failed PHP date conversion leaves).
fn unix_time(seconds: i64) -> Option<OffsetDateTime> {
    (seconds > 0)
        .then(|| OffsetDateTime::from_unix_timestamp(seconds).ok())
        .flatten()
}

/// Names of common carriers by slug, as the Shipment Tracking extensions show them.
fn carrier_display_name(carrier: &str) -> Option<&'static str> {
    Some(match carrier {
        "usps" => "USPS",
        "ups" => "UPS",
        "fedex" => "FedEx",
        "dhl" => "DHL",
        "dhl-express" => "DHL Express",
        "dhl-us" => "DHL US",
        "royal-mail" => "Royal Mail",
        "parcelforce" => "Parcelforce",
        "dpd" => "DPD",
        "gls" => "GLS",
        "canada-post" => "Canada Post",
        "purolator" => "Purolator",
        "australia-post" => "Australia Post",
        "postnl" => "PostNL",
        "deutsche-post" => "Deutsche Post",
        "la-poste" => "La Poste",
        _ => return None,
    })
}

/// The public tracking page of `number` at a well-known carrier.
fn carrier_url(carrier: &str, number: &str) -> Option<String> {
    let page = match carrier {
        "usps" => "https://tools.usps.com/go/TrackConfirmAction?tLabels=",
        "ups" => "https://www.ups.com/track?tracknum=",
        "fedex" => "https://www.fedex.com/fedextrack/?trknbr=",
        "dhl" | "dhl-express" | "dhl-us" => {
            "https://www.dhl.com/global-en/home/tracking.html?tracking-id="
        }
        _ => return None,
    };
    Some(format!("{page}{}", url_encode(number)))
}

/// `s` for a URL query value: every byte but ASCII letters, digits and `-._~` as `%XX`.
fn url_encode(s: &str) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A merchant's tracking link, if it is an absolute `http(s)` URL without blanks or control
/// characters: anything else is not a link an email should carry.
fn web_link(link: &str) -> Option<String> {
    let link = link.trim();
    let rest = ["https://", "http://"].into_iter().find_map(|scheme| {
        link.get(..scheme.len())
            .filter(|s| s.eq_ignore_ascii_case(scheme))
            .and_then(|_| link.get(scheme.len()..))
    })?;
    let clean = !rest.is_empty() && !link.chars().any(|c| c.is_whitespace() || c.is_control());
    clean.then(|| link.to_owned())
}

// ---------------------------------------------------------------------------------------
// Customers.

/// The fields of the REST v3 customer JSON that Postflow uses. Everything else is ignored.
#[derive(Deserialize)]
#[serde(expecting = "a customer object")]
struct RawCustomer {
    id: Option<Id>,
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    billing: Option<RawAddress>,
    shipping: Option<RawAddress>,
    date_created_gmt: Option<String>,
    date_modified_gmt: Option<String>,
}

/// `customer.created` or `customer.updated`, keyed by the customer and its modification
/// time (its creation time if it was never modified), so each save is one event.
fn customer_event(
    delivery: &Delivery<'_>,
    topic: &str,
    created: bool,
    body: &[u8],
) -> Result<Envelope, AdapterError> {
    let raw: RawCustomer = read_json(body)?;
    let id = raw.id.ok_or_else(|| missing("id"))?;
    let version = text(&raw.date_modified_gmt)
        .or_else(|| text(&raw.date_created_gmt))
        .ok_or_else(|| missing("date_modified_gmt"))?;
    let key = format!("woocommerce:{topic}:{}:{version}", id.0);
    let stated = if created {
        &raw.date_created_gmt
    } else {
        &raw.date_modified_gmt
    };
    let occurred_at = stated
        .as_deref()
        .and_then(parse_time)
        .unwrap_or(delivery.received_at);
    let changed = raw.into_changed(id);
    let event = if created {
        Event::CustomerCreated(changed)
    } else {
        Event::CustomerUpdated(changed)
    };
    Ok(delivery.envelope(occurred_at, key, event))
}

impl RawCustomer {
    fn into_changed(self, id: Id) -> CustomerChanged {
        let billing = self.billing.as_ref();
        let shipping = self.shipping.as_ref();
        // The account's address, else the billing one; an unusable address is no address.
        let email = [
            self.email.as_deref(),
            billing.and_then(|b| b.email.as_deref()),
        ]
        .into_iter()
        .flatten()
        .find_map(|e| EmailAddress::parse(e).ok());
        // Both names from the first of account, billing and shipping that has either.
        let account = (text(&self.first_name), text(&self.last_name));
        let (first_name, last_name) = std::iter::once(account)
            .chain(
                [billing, shipping]
                    .into_iter()
                    .flatten()
                    .map(RawAddress::names),
            )
            .find(|(first, last)| first.is_some() || last.is_some())
            .unwrap_or((None, None));
        // As for orders: where the customer receives goods first.
        let country = [shipping, billing]
            .into_iter()
            .flatten()
            .find_map(|a| country_code(&a.country));
        CustomerChanged {
            customer: Customer {
                id: Id::nonzero(Some(id)),
                email,
                first_name,
                last_name,
                locale: None,
                country,
                accepts_marketing: None,
            },
            default_address: [shipping, billing]
                .into_iter()
                .flatten()
                .find_map(RawAddress::to_address),
        }
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

    const SAMPLE: &[u8] = include_bytes!("../../fixtures/woocommerce_order_v3_payload.json");
    const SECRET: &[u8] = b"wc-secret-current";
    const OLD_SECRET: &[u8] = b"wc-secret-previous";

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

    /// The sample after `edit` on its JSON value.
    fn sample_with(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(SAMPLE).unwrap();
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    /// Headers of a delivery as `WC_Webhook::deliver()` sends them, signed with `secret`.
    fn delivery(
        topic: &str,
        body: &[u8],
        secret: &[u8],
        delivery_id: &str,
    ) -> Vec<(String, String)> {
        let (resource, event) = topic.split_once('.').unwrap_or((topic, ""));
        [
            ("Content-Type", "application/json".to_owned()),
            (
                "User-Agent",
                "WooCommerce/9.9.0 Hookshot (WordPress/6.8)".to_owned(),
            ),
            ("X-WC-Webhook-Source", "https://shop.example/".to_owned()),
            ("X-WC-Webhook-Topic", topic.to_owned()),
            ("X-WC-Webhook-Resource", resource.to_owned()),
            ("X-WC-Webhook-Event", event.to_owned()),
            ("X-WC-Webhook-Signature", sign(secret, body)),
            ("X-WC-Webhook-ID", "12".to_owned()),
            ("X-WC-Webhook-Delivery-ID", delivery_id.to_owned()),
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
        let env = envelope(&delivery("order.created", body, SECRET, "d-1"), body);
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

    fn ignored(topic: &str) -> Result<Parsed, AdapterError> {
        Ok(Parsed::Ignored {
            topic: topic.to_owned(),
        })
    }

    fn is_invalid_naming(result: Result<Order, AdapterError>, field: &str) -> bool {
        matches!(result, Err(AdapterError::Invalid(m)) if m.contains(field))
    }

    /// The sample with line 0 given `price`, `quantity` and `total` (subtotal = total).
    fn with_line(price: serde_json::Value, quantity: u32, total: &str) -> Vec<u8> {
        sample_with(|v| {
            let line = &mut v["line_items"][0];
            line["price"] = price;
            line["quantity"] = quantity.into();
            line["total"] = total.into();
            line["subtotal"] = total.into();
        })
    }

    #[test]
    fn official_sample_maps_exactly() {
        let env = envelope(&delivery("order.created", SAMPLE, SECRET, "d-1"), SAMPLE);
        assert_eq!(env.tenant, tenant());
        assert_eq!(env.idempotency_key, "woocommerce:order:727:placed");
        assert_eq!(
            env.source,
            Source {
                system: "woocommerce".to_owned(),
                delivery_id: Some("d-1".to_owned()),
                topic: Some("order.created".to_owned()),
            }
        );
        // `date_created_gmt`; `date_created` (16:28:02) is shop-local time without an offset.
        assert_eq!(env.occurred_at, datetime!(2017-03-22 19:28:02 UTC));
        let Event::OrderPlaced(OrderPlaced { order }) = env.event.clone() else {
            panic!()
        };

        assert_eq!(order.id.as_str(), "727");
        assert_eq!(order.number, "#727");
        assert_eq!(order.currency.as_str(), "USD");
        assert_eq!(order.placed_at, datetime!(2017-03-22 19:28:02 UTC));
        assert_eq!(order.subtotal, usd(1800)); // 6.00 + 12.00
        assert_eq!(order.shipping, usd(1000));
        assert_eq!(order.tax, usd(135));
        assert_eq!(order.discounts, usd(0));
        assert_eq!(order.total, usd(2935)); // 18.00 + 10.00 + 1.35
        assert!(!order.test);
        assert_eq!(order.status_url, None);

        let c = &order.customer;
        assert_eq!(c.id, None); // customer_id 0: a guest
        assert_eq!(
            c.email.as_ref().map(EmailAddress::as_str),
            Some("john.doe@example.com")
        );
        assert_eq!(
            (c.first_name.as_deref(), c.last_name.as_deref()),
            (Some("John"), Some("Doe"))
        );
        assert_eq!(
            (c.locale.as_deref(), c.country.as_deref()),
            (None, Some("US"))
        );
        assert_eq!(c.accepts_marketing, None);

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
                ("Woo Single #1", None, 2, 300, 600),
                (
                    "Ship Your Idea – Color: Black, Size: M Test",
                    Some("Bar3"),
                    1,
                    1200,
                    1200
                ),
            ]
        );
        assert_eq!(order.lines[0].product_id, Some(ExternalId::new("93")));
        assert_eq!(order.lines[0].variant_id, None); // variation_id 0
        assert_eq!(order.lines[1].product_id, Some(ExternalId::new("22")));
        assert_eq!(order.lines[1].variant_id, Some(ExternalId::new("23")));
        assert!(
            order
                .lines
                .iter()
                .all(|l| l.total.currency == order.currency)
        );

        assert_eq!(
            order.shipping_address,
            Some(Address {
                name: Some("John Doe".to_owned()),
                company: None,
                lines: vec!["969 Market".to_owned()],
                city: Some("San Francisco".to_owned()),
                region: Some("CA".to_owned()),
                postal_code: Some("94103".to_owned()),
                country: Some("US".to_owned()),
            })
        );

        let json = serde_json::to_value(&env).unwrap();
        assert_eq!(json["type"], "order.placed");
        assert_eq!(json["data"]["order"]["id"], "727");
        assert_eq!(json["data"]["order"]["lines"][1]["variant_id"], "23");
        assert_eq!(parse_untrusted(SAMPLE).unwrap(), order);
    }

    #[test]
    fn the_creation_ping_is_acknowledged_without_a_signature() {
        // What `WC_Webhook::deliver_ping()` sends: a form body and no X-WC headers.
        let headers = vec![
            (
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ),
            (
                "User-Agent".to_owned(),
                "WooCommerce/9.9.0 Hookshot (WordPress/6.8)".to_owned(),
            ),
        ];
        assert_eq!(run(&headers, b"webhook_id=12"), ignored("ping"));
        assert_eq!(run(&[], b"webhook_id=1234567890"), ignored("ping"));
        assert!(is_ping(&headers, b"webhook_id=12"));
        // Even with no secret configured: the ping publishes nothing.
        assert_eq!(
            verify_and_parse(&[], &tenant(), &headers, b"webhook_id=7", received()),
            ignored("ping")
        );
        // verify alone still says the ping is unsigned.
        assert_eq!(
            verify(&[SECRET], &headers, b"webhook_id=12").unwrap_err(),
            AdapterError::MissingSignature
        );
    }

    #[test]
    fn anything_else_unsigned_is_refused() {
        for body in [
            &b"webhook_id="[..],
            b"webhook_id=12&x=1",
            b"webhook_id=12\n",
            b" webhook_id=12",
            b"webhook_id=-1",
            b"webhook_id=abc",
            b"WEBHOOK_ID=12",
            b"",
            SAMPLE,
        ] {
            assert_eq!(
                run(&[], body),
                Err(AdapterError::MissingSignature),
                "{body:?}"
            );
        }
        // A ping-shaped body with a topic header (even a blank one) is not the ping.
        for topic in ["order.created", "order.updated", ""] {
            let headers = [("X-WC-Webhook-Topic", topic)];
            assert_eq!(
                verify_and_parse(&[SECRET], &tenant(), &headers, b"webhook_id=12", received()),
                Err(AdapterError::MissingSignature),
                "{topic:?}"
            );
        }
        // A signed ping-shaped body goes through verification like any delivery.
        let headers = [("X-WC-Webhook-Signature", sign(b"wrong", b"webhook_id=12"))];
        assert_eq!(
            verify_and_parse(&[SECRET], &tenant(), &headers, b"webhook_id=12", received()),
            Err(AdapterError::BadSignature)
        );
        let headers = [("X-WC-Webhook-Signature", sign(SECRET, b"webhook_id=12"))];
        assert_eq!(
            verify_and_parse(&[SECRET], &tenant(), &headers, b"webhook_id=12", received()),
            Err(AdapterError::MissingHeader("x-wc-webhook-topic"))
        );
    }

    #[test]
    fn second_of_two_secrets_verifies_during_rotation() {
        let headers = delivery("order.created", SAMPLE, SECRET, "d-1");
        assert!(verify(&[OLD_SECRET, SECRET], &headers, SAMPLE).is_ok());
        assert_eq!(
            verify(&[OLD_SECRET], &headers, SAMPLE).unwrap_err(),
            AdapterError::BadSignature
        );
        assert_eq!(
            verify(&[], &headers, SAMPLE).unwrap_err(),
            AdapterError::BadSignature
        );
        assert!(matches!(run(&headers, SAMPLE), Ok(Parsed::Events(_))));
    }

    #[test]
    fn wrong_missing_or_undecodable_signatures_are_refused() {
        let headers = delivery("order.created", SAMPLE, b"someone-else", "d-1");
        assert_eq!(run(&headers, SAMPLE), Err(AdapterError::BadSignature));
        // A valid signature over another body does not carry over, and garbage with a bad
        // signature is a signature error, not a json error.
        let headers = delivery("order.created", b"{}", SECRET, "d-1");
        assert_eq!(run(&headers, SAMPLE), Err(AdapterError::BadSignature));
        assert_eq!(run(&headers, b"not json"), Err(AdapterError::BadSignature));

        let good = sign(SECRET, SAMPLE);
        for bad in [
            "%%%not-base64%%%",
            &good[..good.len() - 2],
            "AAAA",
            &good.replace('=', ""),
            &good.to_lowercase(),
        ] {
            let mut headers = delivery("order.created", SAMPLE, SECRET, "d-1");
            headers[6].1 = bad.to_owned();
            assert_eq!(
                run(&headers, SAMPLE),
                Err(AdapterError::BadSignature),
                "{bad:?}"
            );
        }

        let mut headers = delivery("order.created", SAMPLE, SECRET, "d-1");
        headers.retain(|(k, _)| k != "X-WC-Webhook-Signature");
        assert_eq!(run(&headers, SAMPLE), Err(AdapterError::MissingSignature));
        headers.push(("x-wc-webhook-signature".to_owned(), " ".to_owned()));
        assert_eq!(run(&headers, SAMPLE), Err(AdapterError::MissingSignature));
    }

    #[test]
    fn header_names_match_in_any_case() {
        let headers: Vec<(String, String)> = delivery("order.created", SAMPLE, SECRET, "d-9")
            .into_iter()
            .map(|(k, v)| (k.to_lowercase(), v))
            .collect();
        assert_eq!(
            envelope(&headers, SAMPLE).source.delivery_id.as_deref(),
            Some("d-9")
        );
        let mut headers = delivery("order.created", SAMPLE, SECRET, "d-9");
        headers.retain(|(k, _)| k != "X-WC-Webhook-Delivery-ID");
        assert_eq!(envelope(&headers, SAMPLE).source.delivery_id, None);
    }

    #[test]
    fn missing_topic_is_reported_after_verification() {
        let mut headers = delivery("order.created", SAMPLE, SECRET, "d-1");
        headers.retain(|(k, _)| k != "X-WC-Webhook-Topic");
        let err = run(&headers, SAMPLE).unwrap_err();
        assert_eq!(err, AdapterError::MissingHeader("x-wc-webhook-topic"));
    }

    #[test]
    fn other_topics_are_ignored_without_reading_the_body() {
        for topic in [
            "order.deleted",
            "order.restored",
            "customer.deleted",
            "product.created",
            "product.updated",
            "coupon.created",
            "action.woocommerce_payment_complete",
            "ORDER.CREATED",
            "Order.Updated",
        ] {
            let body = b"this is not json";
            let headers = delivery(topic, body, SECRET, "d-1");
            assert_eq!(run(&headers, body), ignored(topic));
            assert_eq!(parse_untrusted_topic(topic, body), ignored(topic));
        }
        // The topics that map do read the body.
        for topic in [
            "order.created",
            "order.updated",
            "customer.created",
            "customer.updated",
        ] {
            let body = b"this is not json";
            let headers = delivery(topic, body, SECRET, "d-1");
            assert!(
                matches!(run(&headers, body), Err(AdapterError::MalformedJson(_))),
                "{topic}"
            );
        }
    }

    #[test]
    fn draft_orders_are_ignored() {
        for status in [
            "draft",
            "auto-draft",
            "checkout-draft",
            "wc-checkout-draft",
            "Checkout-Draft",
        ] {
            // Even when the rest would not map (no currency).
            let body = sample_with(|v| {
                v["status"] = status.into();
                v.as_object_mut().unwrap().remove("currency");
            });
            let headers = delivery("order.created", &body, SECRET, "d-1");
            assert_eq!(run(&headers, &body), ignored("order.created"), "{status}");
        }
        for status in ["pending", "processing", "on-hold", "completed", "failed"] {
            let body = sample_with(|v| v["status"] = status.into());
            assert_eq!(order(&body).id.as_str(), "727", "{status}");
        }
        let body = sample_with(|v| {
            v.as_object_mut().unwrap().remove("status");
        });
        assert_eq!(order(&body).id.as_str(), "727");
        let body = sample_with(|v| v["status"] = 5.into());
        let headers = delivery("order.created", &body, SECRET, "d-1");
        assert!(matches!(
            run(&headers, &body),
            Err(AdapterError::Invalid(_))
        ));
    }

    #[test]
    fn truncated_body_is_malformed_json() {
        let body = &SAMPLE[..SAMPLE.len() / 2];
        let headers = delivery("order.created", body, SECRET, "d-1");
        match run(&headers, body) {
            Err(AdapterError::MalformedJson(m)) => {
                assert!(m.contains("line") && m.contains("column"), "{m}");
                assert_eq!(m, m.to_lowercase());
            }
            other => panic!("expected malformed json, got {other:?}"),
        }
        for body in [
            &b""[..],
            b"{",
            b"{\"id\": 1,}",
            b"\xff\xfe",
            b"webhook_id=12",
        ] {
            let headers = delivery("order.created", body, SECRET, "d-1");
            assert!(
                matches!(run(&headers, body), Err(AdapterError::MalformedJson(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn wrong_types_are_errors_not_panics() {
        let cases = [
            sample_replacing("\"id\": 727", "\"id\": 727.5"),
            sample_replacing("\"id\": 727", "\"id\": -727"),
            sample_replacing("\"id\": 727", "\"id\": \"72x\""),
            sample_replacing("\"id\": 727", "\"id\": true"),
            sample_replacing("\"total\": \"29.35\"", "\"total\": \"29,35\""),
            sample_replacing("\"total\": \"29.35\"", "\"total\": \"29.355\""),
            sample_replacing("\"total\": \"29.35\"", "\"total\": true"),
            sample_replacing("\"total\": \"29.35\"", "\"total\": \"2.9e1\""),
            sample_replacing("\"currency\": \"USD\"", "\"currency\": \"US Dollar\""),
            sample_replacing("\"customer_id\": 0", "\"customer_id\": -1"),
            sample_replacing("\"price\": 3", "\"price\": \"three\""),
            sample_replacing("\"price\": 3", "\"price\": [3]"),
            sample_replacing("\"price\": 3", "\"price\": 1e400"),
            sample_replacing("\"quantity\": 2", "\"quantity\": \"2\""),
            sample_replacing("\"quantity\": 2", "\"quantity\": 1.5"),
            sample_replacing("\"quantity\": 2", "\"quantity\": -2"),
            sample_replacing("\"quantity\": 2", "\"quantity\": 4294967296"),
            sample_replacing("\"product_id\": 93", "\"product_id\": 9.3"),
            sample_replacing("\"billing\": {", "\"billing\": 7, \"x\": {"),
            sample_replacing("\"line_items\": [", "\"line_items\": {\"a\": ["),
            sample_replacing("\"number\": \"727\"", "\"number\": {}"),
            br#"[1, 2, 3]"#.to_vec(),
            br#""order""#.to_vec(),
            br#"{"id": 1, "id": 2, "currency": "USD", "total": "1", "line_items": []}"#.to_vec(),
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
            let headers = delivery("order.created", &body, SECRET, "d-1");
            assert!(run(&headers, &body).is_err());
        }
        let err = parse_untrusted(&sample_replacing("\"id\": 727", "\"id\": 727.5"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`727.5`, expected an id") && err.contains("line 2 column"),
            "{err}"
        );
        assert_eq!(
            parse_untrusted(br#"["727", null, "USD"]"#),
            Err(AdapterError::Invalid(
                "expected a json object, found an array".to_owned()
            ))
        );
    }

    #[test]
    fn ids_accept_integers_and_digit_strings_up_to_u64_max() {
        let max = sample_replacing("\"id\": 727", "\"id\": 18446744073709551615");
        let o = order(&max);
        assert_eq!(o.id.as_str(), "18446744073709551615");
        assert_eq!(o.number, "#727");
        let env = envelope(&delivery("order.created", &max, SECRET, "d-1"), &max);
        assert_eq!(
            env.idempotency_key,
            "woocommerce:order:18446744073709551615:placed"
        );
        let as_string = sample_replacing("\"id\": 727", "\"id\": \"9007199254740993\"");
        assert_eq!(order(&as_string).id.as_str(), "9007199254740993"); // 2^53 + 1, exact

        for too_big in ["18446744073709551616", "\"18446744073709551616\"", "1e19"] {
            let body = sample_replacing("\"id\": 727", &format!("\"id\": {too_big}"));
            assert!(
                is_invalid_naming(parse_untrusted(&body), "id"),
                "{too_big} accepted"
            );
        }

        let body = sample_with(|v| {
            v["customer_id"] = u64::MAX.into();
            v["line_items"][1]["variation_id"] = "18446744073709551615".into();
        });
        let o = order(&body);
        assert_eq!(o.customer.id, Some(ExternalId::new("18446744073709551615")));
        assert_eq!(
            o.lines[1].variant_id,
            Some(ExternalId::new("18446744073709551615"))
        );
    }

    #[test]
    fn price_is_read_exactly_as_a_number_or_a_string() {
        let unit = |body: &[u8]| {
            let l = &order(body).lines[0];
            (l.unit_price.minor, l.total.minor)
        };
        // Numbers: integers, and floats through their shortest decimal text.
        assert_eq!(unit(&with_line(3.into(), 2, "6.00")), (300, 600));
        assert_eq!(
            unit(&with_line(serde_json::json!(2.5), 2, "5.00")),
            (250, 500)
        );
        assert_eq!(
            unit(&with_line(serde_json::json!(0.1), 3, "0.30")),
            (10, 30)
        );
        assert_eq!(
            unit(&with_line(serde_json::json!(19.99), 1, "19.99")),
            (1999, 1999)
        );
        assert_eq!(
            unit(&with_line(serde_json::json!(3.0), 2, "6.00")),
            (300, 600)
        );
        assert_eq!(unit(&with_line(0.into(), 1, "0.00")), (0, 0));
        // Strings (`wc_format_decimal` in some versions).
        assert_eq!(unit(&with_line("3.00".into(), 2, "6.00")), (300, 600));
        assert_eq!(unit(&with_line("3".into(), 2, "6.00")), (300, 600));
        assert_eq!(unit(&with_line("12.340".into(), 1, "12.34")), (1234, 1234));
        // As written in the body (not through serde_json::Value).
        let body = sample_replacing("\"price\": 3", "\"price\": 3.10");
        assert_eq!(order(&body).lines[0].unit_price, usd(310));
        // Above 2^53, where an f64 would round (to 92233720368547760).
        let body = sample_replacing("\"price\": 3", "\"price\": 92233720368547758");
        assert_eq!(
            order(&body).lines[0].unit_price.minor,
            9_223_372_036_854_775_800
        );
        // Order amounts are strings in WooCommerce, but a number is read the same way.
        let body = sample_replacing("\"total\": \"29.35\"", "\"total\": 29.35");
        assert_eq!(order(&body).total, usd(2935));
        let body = sample_replacing("\"total_tax\": \"1.35\"", "\"total_tax\": 1.355");
        assert!(is_invalid_naming(parse_untrusted(&body), "total_tax"));
        // JPY has no decimals.
        let body = sample_with(|v| {
            v["currency"] = "JPY".into();
            v["line_items"] = serde_json::json!([{"name": "Tea", "quantity": 2, "price": 1200, "subtotal": "2400", "total": "2400"}]);
            v["shipping_total"] = "500".into();
            v["total_tax"] = "0".into();
            v["discount_total"] = "0".into();
            v["total"] = "2900".into();
        });
        let o = order(&body);
        assert_eq!(
            (o.lines[0].unit_price.minor, o.subtotal.minor, o.total.minor),
            (1200, 2400, 2900)
        );
    }

    #[test]
    fn a_price_with_more_decimals_than_the_currency_must_be_total_over_quantity() {
        // 10.00 / 3 in PHP floats, as `price` arrives when a line does not divide evenly.
        let body = with_line(serde_json::json!(3.3333333333333335), 3, "10.00");
        let l = &order(&body).lines[0];
        assert_eq!((l.unit_price.minor, l.total.minor), (333, 1000));
        let body = with_line(serde_json::json!(6.666666666666667), 3, "20.00");
        assert_eq!(order(&body).lines[0].unit_price.minor, 667);
        let body = with_line("0.025".into(), 2, "0.05");
        assert_eq!(order(&body).lines[0].unit_price.minor, 2); // half to even
        // Otherwise more decimals than the currency has is an error, naming the line.
        for (price, qty, total) in [
            (serde_json::json!("9.999"), 3, "10.00"),
            (serde_json::json!(3.347), 1, "3.33"),
            (serde_json::json!(1e-7), 1, "0.00"),
            (serde_json::json!(1.5e300), 1, "1.50"),
        ] {
            let body = with_line(price.clone(), qty, total);
            assert!(
                is_invalid_naming(parse_untrusted(&body), "line_items[0].price"),
                "{price}"
            );
        }
        // Without a line total there is nothing to check an inexact price against.
        let body = sample_with(|v| {
            v["line_items"][0]["price"] = serde_json::json!(3.3333333333333335);
            v["line_items"][0].as_object_mut().unwrap().remove("total");
        });
        assert!(is_invalid_naming(
            parse_untrusted(&body),
            "line_items[0].price"
        ));
    }

    #[test]
    fn subtotal_is_before_coupons_and_lines_are_after() {
        // A 10% coupon on line 0: WooCommerce lowers the line's total and price, keeps its
        // subtotal, and reports the coupon in discount_total.
        let body = sample_with(|v| {
            let line = &mut v["line_items"][0];
            line["total"] = "5.40".into();
            line["price"] = serde_json::json!(2.7);
            v["discount_total"] = "0.60".into();
            v["total"] = "28.75".into();
        });
        let o = order(&body);
        assert_eq!(
            (o.lines[0].unit_price.minor, o.lines[0].total.minor),
            (270, 540)
        );
        assert_eq!(o.subtotal, usd(1800));
        assert_eq!(o.discounts, usd(60));
        assert_eq!(
            o.subtotal.minor - o.discounts.minor + o.shipping.minor + o.tax.minor,
            o.total.minor
        );
        // Without line subtotals, the line totals are summed; without totals, price × qty.
        let body = sample_with(|v| {
            for line in v["line_items"].as_array_mut().unwrap() {
                let line = line.as_object_mut().unwrap();
                line.remove("subtotal");
                line.remove("total");
            }
        });
        let o = order(&body);
        assert_eq!((o.lines[0].total.minor, o.subtotal.minor), (600, 1800));
        let body = sample_with(|v| {
            v["line_items"][0]["quantity"] = u32::MAX.into();
            v["line_items"][0]["price"] = "90000000000000000.00".into();
            v["line_items"][0].as_object_mut().unwrap().remove("total");
        });
        assert!(is_invalid_naming(parse_untrusted(&body), "line_items[0]"));
        let body = sample_with(|v| {
            v["line_items"][0]["subtotal"] = "92233720368547758.07".into();
        });
        assert!(is_invalid_naming(parse_untrusted(&body), "subtotal"));
    }

    #[test]
    fn the_same_order_delivered_twice_has_one_idempotency_key() {
        let a = envelope(&delivery("order.created", SAMPLE, SECRET, "d-a"), SAMPLE);
        let b = envelope(
            &delivery("order.created", SAMPLE, OLD_SECRET, "d-b"),
            SAMPLE,
        );
        assert_eq!(a.idempotency_key, b.idempotency_key);
        assert_eq!(a.id, b.id);
        assert_ne!(a.source.delivery_id, b.source.delivery_id);
        // A different tenant's order with the same WooCommerce id is a different event.
        let other = verify_and_parse(
            &[SECRET],
            &TenantId::parse("other-shop").unwrap(),
            &delivery("order.created", SAMPLE, SECRET, "d-a"),
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
        for field in ["id", "currency", "total", "line_items"] {
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
        for field in ["name", "quantity", "price"] {
            let body = sample_with(|v| {
                v["line_items"][1].as_object_mut().unwrap().remove(field);
            });
            let expected = format!("line_items[1].{field}");
            assert!(
                is_invalid_naming(parse_untrusted(&body), &expected),
                "{field}"
            );
        }
        // Optional totals default to zero, the number to the id.
        let body = sample_with(|v| {
            let o = v.as_object_mut().unwrap();
            for k in ["shipping_total", "total_tax", "discount_total", "number"] {
                o.remove(k);
            }
        });
        let o = order(&body);
        assert_eq!((o.shipping, o.tax, o.discounts), (usd(0), usd(0), usd(0)));
        assert_eq!(o.number, "#727");
        let body = sample_with(|v| v["number"] = "#WC-1001".into());
        assert_eq!(order(&body).number, "#WC-1001");
        let body = sample_with(|v| v["number"] = 1001.into());
        assert_eq!(order(&body).number, "#1001");
    }

    #[test]
    fn placed_at_is_the_gmt_date_or_the_receive_time() {
        let body = sample_with(|v| v["date_created_gmt"] = "2017-03-22T19:28:02.5".into());
        assert_eq!(order(&body).placed_at, datetime!(2017-03-22 19:28:02.5 UTC));
        let body = sample_with(|v| v["date_created_gmt"] = "2017-03-22T21:28:02+02:00".into());
        assert_eq!(order(&body).placed_at, datetime!(2017-03-22 19:28:02 UTC));
        for bad in [
            serde_json::Value::Null,
            "".into(),
            "yesterday".into(),
            "2017-03-22 19:28:02".into(),
        ] {
            let body = sample_with(|v| v["date_created_gmt"] = bad.clone());
            let headers = delivery("order.created", &body, SECRET, "d-1");
            let env = envelope(&headers, &body);
            assert_eq!(env.occurred_at, received(), "{bad}");
            assert_eq!(
                parse_untrusted(&body).unwrap().placed_at,
                OffsetDateTime::UNIX_EPOCH
            );
        }
    }

    #[test]
    fn customer_fields_fall_back_in_order() {
        let body = sample_with(|v| {
            v["customer_id"] = 42.into();
            v["billing"]["email"] = "not an email".into();
            v["billing"]["first_name"] = "".into();
            v["billing"]["last_name"] = serde_json::Value::Null;
            v["shipping"]["first_name"] = "Jane".into();
            v["shipping"]["last_name"] = "Roe".into();
            v["shipping"]["country"] = "".into();
            v["billing"]["country"] = "ca".into();
        });
        let c = order(&body).customer;
        assert_eq!(c.id, Some(ExternalId::new("42")));
        assert_eq!(c.email, None); // an unusable address is not an error
        assert_eq!(
            (c.first_name.as_deref(), c.last_name.as_deref()),
            (Some("Jane"), Some("Roe"))
        );
        assert_eq!(c.country.as_deref(), Some("CA"));

        let body = sample_with(|v| {
            v["billing"]["email"] = " John.Doe@EXAMPLE.com ".into();
            v["shipping"] = serde_json::json!({
                "first_name": "", "last_name": "", "company": "", "address_1": "",
                "address_2": "", "city": "", "state": "", "postcode": "", "country": ""
            });
        });
        let o = order(&body);
        assert_eq!(
            o.customer.email.as_ref().map(EmailAddress::as_str),
            Some("John.Doe@example.com")
        );
        assert_eq!(o.customer.country.as_deref(), Some("US")); // from billing
        assert_eq!(o.shipping_address, None); // virtual goods: nothing to ship

        let body = sample_with(|v| {
            let o = v.as_object_mut().unwrap();
            o.remove("billing");
            o.remove("shipping");
            o.remove("customer_id");
        });
        let o = order(&body);
        assert_eq!(
            (
                o.customer.id,
                o.customer.email,
                o.customer.first_name,
                o.shipping_address
            ),
            (None, None, None, None)
        );
    }

    #[test]
    fn html_entities_in_product_names_are_decoded_once() {
        assert_eq!(
            decode_entities("Ship Your Idea &ndash; Color: Black"),
            "Ship Your Idea – Color: Black"
        );
        assert_eq!(decode_entities("Salt &amp; Pepper"), "Salt & Pepper");
        assert_eq!(decode_entities("&amp;amp;"), "&amp;"); // once
        assert_eq!(decode_entities("It&#8217;s &#x2014; &#X41;"), "It’s — A");
        assert_eq!(decode_entities("&lt;b&gt;&quot;x&quot;&#039;"), "<b>\"x\"'");
        for kept in [
            "AT&T",
            "a & b",
            "&unknown;",
            "&#;",
            "&#x;",
            "&#0;",
            "&#7;",
            "&#xD800;",
            "&#99999999999;",
            "&amp",
            "&",
            "x&",
            "&;",
            "&#x110000;",
        ] {
            assert_eq!(decode_entities(kept), kept);
        }
        assert_eq!(decode_entities("ü &eacute; ü"), "ü &eacute; ü");
        assert_eq!(decode_entities("&ü;&amp;"), "&ü;&");
    }

    #[test]
    fn rounding_helpers_are_exact() {
        assert_eq!(round_decimal("3.3333333333333335", 2), Some(333));
        assert_eq!(round_decimal("0.125", 2), Some(12));
        assert_eq!(round_decimal("0.135", 2), Some(14));
        assert_eq!(round_decimal("0.1250001", 2), Some(13));
        assert_eq!(round_decimal("-2.675", 2), Some(-268));
        assert_eq!(round_decimal("7", 0), Some(7));
        assert_eq!(round_decimal("1e-7", 2), None);
        assert_eq!(round_decimal("92233720368547758.079", 2), None);
        assert_eq!(div_round_half_even(1000, 3), 333);
        assert_eq!(div_round_half_even(2000, 3), 667);
        assert_eq!(div_round_half_even(5, 2), 2);
        assert_eq!(div_round_half_even(7, 2), 4);
        assert_eq!(div_round_half_even(-5, 2), -2);
        assert_eq!(div_round_half_even(-7, 2), -4);
        assert_eq!(div_round_half_even(i64::MAX, 1), i64::MAX);
        assert_eq!(div_round_half_even(i64::MIN, 1), i64::MIN);
        let _ = div_round_half_even(i64::MIN, u32::MAX);
        let _ = div_round_half_even(i64::MAX, u32::MAX);
        assert_eq!(div_round_half_even(7, 0), 7); // treated as 1; never called with 0
    }

    #[test]
    fn unknown_fields_and_shapes_are_ignored() {
        let body = sample_with(|v| {
            v["brand_new_field"] = serde_json::json!({"nested": [1, 2.5, {"x": null}], "id": 1.5});
            v["line_items"][0]["future"] = serde_json::json!([{"price": "x"}]);
        });
        assert_eq!(order(&body).id.as_str(), "727");
        let minimal = br#"{"id":"7","currency":"eur","total":"0.00","line_items":[]}"#;
        let o = parse_untrusted(minimal).unwrap();
        assert_eq!(
            (o.id.as_str(), o.number.as_str(), o.currency.as_str()),
            ("7", "#7", "EUR")
        );
        assert_eq!(o.placed_at, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(o.subtotal.minor, 0);
    }

    #[test]
    fn untrusted_input_never_panics() {
        for end in 0..SAMPLE.len() {
            let _ = parse_untrusted(&SAMPLE[..end]);
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let interesting = b"\"0-9.e,:{}[]\\&;#\x00\xff";
        for _ in 0..3000 {
            let mut body = SAMPLE.to_vec();
            for _ in 0..(1 + next() % 4) {
                let at = (next() % body.len() as u64) as usize;
                body[at] = interesting[(next() % interesting.len() as u64) as usize];
            }
            let _ = parse_untrusted(&body);
            let headers = delivery("order.created", &body, SECRET, "d-1");
            let _ = run(&headers, &body);
        }
        let deep = format!("{{\"x\": {}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_untrusted(deep.as_bytes()).is_err());
        let deep = format!("{{\"billing\": {}}}", "{\"a\":".repeat(100_000));
        assert!(parse_untrusted(deep.as_bytes()).is_err());
        let long = format!("{{\"id\": \"{}\"}}", "9x".repeat(10_000));
        match parse_untrusted(long.as_bytes()) {
            Err(AdapterError::Invalid(m)) => assert!(m.len() < 400, "{} chars", m.len()),
            other => panic!("{other:?}"),
        }
        let long_price = sample_with(|v| v["line_items"][0]["price"] = "1.".repeat(5_000).into());
        match parse_untrusted(&long_price) {
            Err(AdapterError::Invalid(m)) => assert!(m.len() < 400, "{} chars", m.len()),
            other => panic!("{other:?}"),
        }
        for name in [
            "&",
            "&#",
            "&#x",
            "&amp",
            "&&&;;;",
            "&#xffffffffff;",
            "&#1114112;",
        ] {
            let body = sample_with(|v| v["line_items"][0]["name"] = name.into());
            let _ = parse_untrusted(&body);
        }
    }

    // -----------------------------------------------------------------------------------
    // order.updated, tracking items, customers.

    /// `date_modified_gmt` of the sample.
    fn sample_modified() -> OffsetDateTime {
        datetime!(2017-03-22 19:28:08 UTC)
    }

    /// All events of a signed delivery of `topic`.
    fn deliver(topic: &str, body: &[u8]) -> Vec<Envelope> {
        match run(&delivery(topic, body, SECRET, "d-1"), body).unwrap() {
            Parsed::Events(events) => events,
            other => panic!("expected events for {topic}, got {other:?}"),
        }
    }

    fn keys(events: &[Envelope]) -> Vec<&str> {
        events.iter().map(|e| e.idempotency_key.as_str()).collect()
    }

    fn kinds(events: &[Envelope]) -> Vec<&'static str> {
        events.iter().map(|e| e.kind().as_str()).collect()
    }

    fn fulfillment(env: &Envelope) -> &Fulfillment {
        match &env.event {
            Event::FulfillmentCreated(f) => f,
            other => panic!("expected fulfillment.created, got {other:?}"),
        }
    }

    /// The sample with `status` and `items` stored under the tracking meta key (after the
    /// sample's own meta entry).
    fn sample_tracked(status: &str, items: serde_json::Value) -> Vec<u8> {
        sample_with(|v| {
            v["status"] = status.into();
            v["meta_data"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({
                    "id": 13200,
                    "key": TRACKING_META_KEY,
                    "value": items,
                }));
        })
    }

    /// A tracking item as WooCommerce Shipment Tracking stores it.
    fn item(provider: &str, number: &str, tracking_id: &str) -> serde_json::Value {
        serde_json::json!({
            "tracking_provider": provider,
            "custom_tracking_provider": "",
            "custom_tracking_link": "",
            "tracking_number": number,
            "date_shipped": "1700006400",
            "tracking_id": tracking_id,
        })
    }

    /// 2023-11-15T00:00:00Z, the `date_shipped` of [`item`].
    fn shipped() -> OffsetDateTime {
        datetime!(2023-11-15 00:00:00 UTC)
    }

    #[test]
    fn each_status_of_the_official_sample_maps_to_its_state_change() {
        for (status, kind, key) in [
            ("processing", "order.paid", "woocommerce:order:727:paid"),
            (
                "completed",
                "order.fulfilled",
                "woocommerce:order:727:fulfilled",
            ),
            (
                "cancelled",
                "order.cancelled",
                "woocommerce:order:727:cancelled",
            ),
            (
                "wc-completed",
                "order.fulfilled",
                "woocommerce:order:727:fulfilled",
            ),
            (
                "Cancelled",
                "order.cancelled",
                "woocommerce:order:727:cancelled",
            ),
        ] {
            let body = sample_with(|v| v["status"] = status.into());
            let events = deliver("order.updated", &body);
            assert_eq!(kinds(&events), [kind], "{status}");
            let env = &events[0];
            assert_eq!(env.idempotency_key, key);
            assert_eq!(env.occurred_at, sample_modified());
            assert_eq!(env.tenant, tenant());
            assert_eq!(
                env.source,
                Source {
                    system: "woocommerce".to_owned(),
                    delivery_id: Some("d-1".to_owned()),
                    topic: Some("order.updated".to_owned()),
                }
            );
            let (Event::OrderPaid(changed)
            | Event::OrderFulfilled(changed)
            | Event::OrderCancelled(changed)) = &env.event
            else {
                panic!("{:?}", env.event)
            };
            // The whole order as WooCommerce reported it, mapped as for order.created.
            assert_eq!(changed.order, parse_untrusted(&body).unwrap());
            assert_eq!(changed.order.total, usd(2935));
            assert_eq!(changed.reason, None);
            let json = serde_json::to_value(env).unwrap();
            assert_eq!(json["type"], kind);
            assert_eq!(json["data"]["order"]["id"], "727");
        }
        // The official sample as it is (processing) is a payment.
        let events = deliver("order.updated", SAMPLE);
        assert_eq!(keys(&events), ["woocommerce:order:727:paid"]);
    }

    #[test]
    fn other_statuses_give_nothing_and_are_not_mapped() {
        for status in [
            "pending",
            "on-hold",
            "refunded",
            "failed",
            "shipped-to-store",
            "",
            "checkout-draft",
        ] {
            let body = sample_with(|v| v["status"] = status.into());
            let headers = delivery("order.updated", &body, SECRET, "d-1");
            assert_eq!(run(&headers, &body), ignored("order.updated"), "{status}");
            // Not even read past the status: an odd order is not refused.
            let body = sample_with(|v| {
                v["status"] = status.into();
                v["line_items"] = "not a list".into();
            });
            let headers = delivery("order.updated", &body, SECRET, "d-1");
            assert_eq!(run(&headers, &body), ignored("order.updated"), "{status}");
        }
        let body = sample_with(|v| {
            v.as_object_mut().unwrap().remove("status");
        });
        assert_eq!(
            parse_untrusted_topic("order.updated", &body),
            ignored("order.updated")
        );
        // A draft is ignored even with tracking items.
        let body = sample_tracked(
            "checkout-draft",
            serde_json::json!([item("ups", "1Z1", "t1")]),
        );
        assert_eq!(
            parse_untrusted_topic("order.updated", &body),
            ignored("order.updated")
        );
        // The status type is still checked.
        let body = sample_with(|v| v["status"] = serde_json::json!(["processing"]));
        assert!(matches!(
            parse_untrusted_topic("order.updated", &body),
            Err(AdapterError::Invalid(_))
        ));
    }

    #[test]
    fn the_same_status_delivered_twice_is_one_event() {
        let first = sample_with(|v| v["status"] = "completed".into());
        let later = sample_with(|v| {
            v["status"] = "completed".into();
            v["date_modified_gmt"] = "2017-03-25T08:00:00".into();
        });
        let a = envelope(&delivery("order.updated", &first, SECRET, "d-a"), &first);
        let b = envelope(
            &delivery("order.updated", &first, OLD_SECRET, "d-b"),
            &first,
        );
        let c = envelope(&delivery("order.updated", &later, SECRET, "d-c"), &later);
        assert_eq!(
            a,
            Envelope {
                source: a.source.clone(),
                ..b.clone()
            }
        );
        assert_ne!(a.source.delivery_id, b.source.delivery_id);
        // Saved again later with the same status: still the same business event.
        assert_eq!((a.id, &a.idempotency_key), (c.id, &c.idempotency_key));
        assert_eq!(c.occurred_at, datetime!(2017-03-25 08:00:00 UTC));
        // Another status of the same order is another event.
        let cancelled = sample_with(|v| v["status"] = "cancelled".into());
        let d = envelope(
            &delivery("order.updated", &cancelled, SECRET, "d-d"),
            &cancelled,
        );
        assert_ne!(d.id, a.id);
        // Without a usable modification time the event is dated at receipt, same key.
        let undated = sample_with(|v| {
            v["status"] = "completed".into();
            v["date_modified_gmt"] = serde_json::Value::Null;
        });
        let e = envelope(
            &delivery("order.updated", &undated, SECRET, "d-e"),
            &undated,
        );
        assert_eq!((e.id, e.occurred_at), (a.id, received()));
    }

    #[test]
    fn one_tracking_item_is_a_fulfillment_after_the_status_event() {
        let body = sample_tracked(
            "completed",
            serde_json::json!([item("usps", "9400 1000/0000+01", "8f14e45fceea167a")]),
        );
        let events = deliver("order.updated", &body);
        assert_eq!(kinds(&events), ["order.fulfilled", "fulfillment.created"]);
        assert_eq!(
            keys(&events),
            [
                "woocommerce:order:727:fulfilled",
                "woocommerce:fulfillment:727:8f14e45fceea167a",
            ]
        );
        let order = parse_untrusted(&body).unwrap();
        assert_eq!(
            fulfillment(&events[1]),
            &Fulfillment {
                id: ExternalId::new("8f14e45fceea167a"),
                order_id: ExternalId::new("727"),
                status: "shipped".to_owned(),
                carrier: Some("usps".to_owned()),
                carrier_name: Some("USPS".to_owned()),
                tracking_numbers: vec!["9400 1000/0000+01".to_owned()],
                tracking_urls: vec![
                    "https://tools.usps.com/go/TrackConfirmAction?tLabels=9400%201000%2F0000%2B01"
                        .to_owned()
                ],
                lines: order.lines.clone(),
                destination: order.shipping_address.clone(),
                email: order.customer.email.clone(),
            }
        );
        assert_eq!(fulfillment(&events[1]).lines.len(), 2);
        assert_eq!(
            fulfillment(&events[1])
                .email
                .as_ref()
                .map(EmailAddress::as_str),
            Some("john.doe@example.com")
        );
        // Dated when it shipped; the status event when the order was saved.
        assert_eq!(events[1].occurred_at, shipped());
        assert_eq!(events[0].occurred_at, sample_modified());
        let json = serde_json::to_value(&events[1]).unwrap();
        assert_eq!(json["type"], "fulfillment.created");
        assert_eq!(json["data"]["order_id"], "727");

        // A status that gives nothing of its own still gives the fulfillment.
        let body = sample_tracked(
            "on-hold",
            serde_json::json!([item("ups", "1Z999AA10123456784", "t-1")]),
        );
        let events = deliver("order.updated", &body);
        assert_eq!(keys(&events), ["woocommerce:fulfillment:727:t-1"]);
        assert_eq!(
            fulfillment(&events[0]).tracking_urls,
            ["https://www.ups.com/track?tracknum=1Z999AA10123456784"]
        );
    }

    #[test]
    fn two_tracking_items_are_two_fulfillments_in_their_order() {
        let items = serde_json::json!([
            item("fedex", "449044304137821", "a1"),
            item("DHL", "JD014600006281230704", "b2"),
        ]);
        let body = sample_tracked("completed", items.clone());
        let events = deliver("order.updated", &body);
        assert_eq!(
            keys(&events),
            [
                "woocommerce:order:727:fulfilled",
                "woocommerce:fulfillment:727:a1",
                "woocommerce:fulfillment:727:b2",
            ]
        );
        let (fedex, dhl) = (fulfillment(&events[1]), fulfillment(&events[2]));
        assert_eq!(
            (fedex.carrier.as_deref(), fedex.carrier_name.as_deref()),
            (Some("fedex"), Some("FedEx"))
        );
        assert_eq!(
            fedex.tracking_urls,
            ["https://www.fedex.com/fedextrack/?trknbr=449044304137821"]
        );
        assert_eq!(
            (dhl.carrier.as_deref(), dhl.carrier_name.as_deref()),
            (Some("dhl"), Some("DHL"))
        );
        assert_eq!(
            dhl.tracking_urls,
            ["https://www.dhl.com/global-en/home/tracking.html?tracking-id=JD014600006281230704"]
        );

        // On order.created: order.placed first, then the same fulfillments.
        let body = sample_tracked("processing", items);
        let events = deliver("order.created", &body);
        assert_eq!(
            keys(&events),
            [
                "woocommerce:order:727:placed",
                "woocommerce:fulfillment:727:a1",
                "woocommerce:fulfillment:727:b2",
            ]
        );
        assert_eq!(events[0].occurred_at, datetime!(2017-03-22 19:28:02 UTC));
        assert_eq!(events[1].occurred_at, shipped());
    }

    #[test]
    fn a_custom_provider_brings_its_own_link() {
        let custom = |link: &str| {
            serde_json::json!({
                "tracking_provider": "",
                "custom_tracking_provider": "Speedy Couriers Ltd",
                "custom_tracking_link": link,
                "tracking_number": "SC-0042",
                "date_shipped": "1700006400",
                "tracking_id": "c3",
            })
        };
        let body = sample_tracked(
            "completed",
            serde_json::json!([custom(" https://track.speedy.example/parcel?n=SC-0042 ")]),
        );
        let events = deliver("order.updated", &body);
        let f = fulfillment(&events[1]);
        assert_eq!(
            (f.carrier.as_deref(), f.carrier_name.as_deref()),
            (Some("speedy-couriers-ltd"), Some("Speedy Couriers Ltd"))
        );
        assert_eq!(
            f.tracking_urls,
            ["https://track.speedy.example/parcel?n=SC-0042"]
        );
        // A link that is no web link is dropped; an unknown carrier has no URL of its own.
        for bad in [
            "javascript:alert(1)",
            "track.speedy.example/x",
            "https://",
            "https://a b",
            "",
        ] {
            let body = sample_tracked("completed", serde_json::json!([custom(bad)]));
            let events = deliver("order.updated", &body);
            assert_eq!(
                fulfillment(&events[1]).tracking_urls,
                Vec::<String>::new(),
                "{bad}"
            );
        }
        // A known carrier with a custom link: the link wins; with a bad one, the carrier's.
        let mut known = item("ups", "1Z9", "u1");
        known["custom_tracking_link"] = "HTTPS://example.com/t/1Z9".into();
        let mut bad = item("ups", "1Z8", "u2");
        bad["custom_tracking_link"] = "ftp://example.com".into();
        let body = sample_tracked("completed", serde_json::json!([known, bad]));
        let events = deliver("order.updated", &body);
        assert_eq!(
            fulfillment(&events[1]).tracking_urls,
            ["HTTPS://example.com/t/1Z9"]
        );
        assert_eq!(
            fulfillment(&events[2]).tracking_urls,
            ["https://www.ups.com/track?tracknum=1Z8"]
        );
    }

    #[test]
    fn carrier_slugs_and_names_come_from_slugs_or_names() {
        let body = sample_tracked(
            "completed",
            serde_json::json!([
                item("royal-mail", "AB123456789GB", "r1"),
                item("Royal Mail", "AB123456780GB", "r2"),
                item("Canada Post", "1", "r3"),
                item("correos-express", "2", "r4"),
                item("", "3", "r5"),
            ]),
        );
        let events = deliver("order.updated", &body);
        let got: Vec<_> = events[1..]
            .iter()
            .map(fulfillment)
            .map(|f| {
                (
                    f.carrier.as_deref(),
                    f.carrier_name.as_deref(),
                    f.tracking_urls.len(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (Some("royal-mail"), Some("Royal Mail"), 0),
                (Some("royal-mail"), Some("Royal Mail"), 0),
                (Some("canada-post"), Some("Canada Post"), 0),
                (Some("correos-express"), None, 0),
                (None, None, 0),
            ]
        );
    }

    #[test]
    fn date_shipped_may_be_a_number_or_a_string() {
        let dated = |date: serde_json::Value| {
            let mut it = item("usps", "9400", "d1");
            it["date_shipped"] = date;
            let body = sample_tracked("completed", serde_json::json!([it]));
            deliver("order.updated", &body)[1].occurred_at
        };
        assert_eq!(dated(1_700_006_400.into()), shipped());
        assert_eq!(dated("1700006400".into()), shipped());
        assert_eq!(dated(" 1700006400 ".into()), shipped());
        assert_eq!(dated("2023-11-15T00:00:00".into()), shipped());
        // Unusable dates fall back to the order's modification time.
        for odd in [
            serde_json::json!(""),
            serde_json::json!("0"),
            serde_json::json!(0),
            serde_json::json!(-5),
            serde_json::json!("next tuesday"),
            serde_json::json!(1.7e9),
            serde_json::json!(u64::MAX),
            serde_json::json!("99999999999999999999"),
            serde_json::Value::Null,
        ] {
            assert_eq!(dated(odd.clone()), sample_modified(), "{odd}");
        }
        let mut it = item("usps", "9400", "d1");
        it.as_object_mut().unwrap().remove("date_shipped");
        let body = sample_tracked("completed", serde_json::json!([it]));
        assert_eq!(
            deliver("order.updated", &body)[1].occurred_at,
            sample_modified()
        );
        // Another JSON type is an error naming the item.
        let mut it = item("usps", "9400", "d1");
        it["date_shipped"] = serde_json::json!({"date": "2023-11-15"});
        let body = sample_tracked("completed", serde_json::json!([it]));
        assert!(matches!(
            parse_untrusted_topic("order.updated", &body),
            Err(AdapterError::Invalid(m)) if m.contains("_wc_shipment_tracking_items[0]")
        ));
    }

    #[test]
    fn items_without_a_tracking_number_are_skipped() {
        let mut blank = item("usps", "  ", "x1");
        blank["tracking_number"] = "  ".into();
        let mut nulled = item("usps", "", "x2");
        nulled["tracking_number"] = serde_json::Value::Null;
        let mut absent = item("usps", "", "x3");
        absent.as_object_mut().unwrap().remove("tracking_number");
        let good = item("usps", "9400111", "x4");
        let body = sample_tracked(
            "completed",
            serde_json::json!([blank.clone(), nulled.clone(), good, absent.clone()]),
        );
        let events = deliver("order.updated", &body);
        assert_eq!(
            keys(&events),
            [
                "woocommerce:order:727:fulfilled",
                "woocommerce:fulfillment:727:x4"
            ]
        );
        // With no usable item, an update whose status gives nothing is ignored.
        let body = sample_tracked("on-hold", serde_json::json!([blank, nulled, absent]));
        assert_eq!(
            parse_untrusted_topic("order.updated", &body),
            ignored("order.updated")
        );
        // Empty tracking meta, as the extensions leave it after the last item is deleted.
        for empty in [
            serde_json::json!([]),
            serde_json::json!(""),
            serde_json::Value::Null,
        ] {
            let body = sample_tracked("on-hold", empty.clone());
            assert_eq!(
                parse_untrusted_topic("order.updated", &body),
                ignored("order.updated"),
                "{empty}"
            );
        }
    }

    #[test]
    fn tracking_ids_and_numbers_are_exact_and_keyed_once() {
        // An integer tracking number (beyond 2^53) and no tracking id: the number is the id.
        let mut numeric = item("usps", "", "");
        numeric["tracking_number"] = serde_json::json!(9_400_111_899_223_197_428_u64);
        numeric.as_object_mut().unwrap().remove("tracking_id");
        let body = sample_tracked("completed", serde_json::json!([numeric]));
        let events = deliver("order.updated", &body);
        let f = fulfillment(&events[1]);
        assert_eq!(f.id.as_str(), "9400111899223197428");
        assert_eq!(f.tracking_numbers, ["9400111899223197428"]);
        assert_eq!(
            events[1].idempotency_key,
            "woocommerce:fulfillment:727:9400111899223197428"
        );
        // The same item listed twice is one event.
        let body = sample_tracked(
            "completed",
            serde_json::json!([item("ups", "1Z1", "dup"), item("ups", "1Z1", "dup")]),
        );
        assert_eq!(deliver("order.updated", &body).len(), 2);
        // Delivered twice (the order saved again later): the same fulfillment event.
        let items = serde_json::json!([item("ups", "1Z1", "t7")]);
        let a = deliver("order.updated", &sample_tracked("completed", items.clone()));
        let later = sample_with(|v| {
            v["status"] = "completed".into();
            v["date_modified_gmt"] = "2017-04-01T00:00:00".into();
            v["meta_data"] = serde_json::json!([{"key": TRACKING_META_KEY, "value": items}]);
        });
        let b = deliver("order.updated", &later);
        assert_eq!(a[0].id, b[0].id);
        assert_ne!(a[0].occurred_at, b[0].occurred_at);
        assert_eq!(a[1], b[1]);
    }

    #[test]
    fn malformed_tracking_meta_is_refused_with_its_name() {
        let cases = [
            serde_json::json!({"0": item("ups", "1Z1", "t1")}),
            serde_json::json!(42),
            serde_json::json!("a:1:{i:0;a:0:{}}"),
            serde_json::json!([["ups", "1Z1"]]),
            serde_json::json!([null]),
            serde_json::json!([{"tracking_number": 1.5}]),
            serde_json::json!([{"tracking_number": -3}]),
            serde_json::json!([{"tracking_number": {"n": "1"}}]),
            serde_json::json!([{"tracking_number": "1", "tracking_id": true}]),
            serde_json::json!([{"tracking_number": "1", "tracking_provider": 7}]),
        ];
        for value in cases {
            let body = sample_tracked("completed", value.clone());
            let result = parse_untrusted_topic("order.updated", &body);
            assert!(
                matches!(&result, Err(AdapterError::Invalid(m)) if m.starts_with(TRACKING_META_KEY)),
                "{value}: {result:?}"
            );
        }
        let body = sample_with(|v| v["meta_data"] = serde_json::json!({"key": TRACKING_META_KEY}));
        assert_eq!(
            parse_untrusted_topic("order.updated", &body),
            Err(AdapterError::Invalid(
                "meta_data: expected an array".to_owned()
            ))
        );
        // Other meta entries may hold anything.
        let body = sample_with(|v| {
            v["meta_data"] = serde_json::json!([
                7,
                {"key": 5, "value": [1]},
                {"key": "_other", "value": {"deep": [1.5, null]}},
                {"value": "no key"},
            ]);
        });
        assert_eq!(
            keys(&deliver("order.updated", &body)),
            ["woocommerce:order:727:paid"]
        );
    }

    #[test]
    fn order_updates_refuse_wrong_types_and_broken_bodies() {
        for (from, to) in [
            ("\"id\": 727", "\"id\": 727.0"),
            ("\"id\": 727", "\"id\": {\"value\": 727}"),
            ("\"id\": 727", "\"id\": 9007199254740993.5"),
            ("\"line_items\": [", "\"line_items\": {\"a\": 1}, \"x\": ["),
            ("\"total\": \"29.35\"", "\"total\": [29.35]"),
        ] {
            let body = sample_replacing(from, to);
            let result = parse_untrusted_topic("order.updated", &body);
            assert!(
                matches!(result, Err(AdapterError::Invalid(_))),
                "{to}: {result:?}"
            );
            let headers = delivery("order.updated", &body, SECRET, "d-1");
            assert!(matches!(
                run(&headers, &body),
                Err(AdapterError::Invalid(_))
            ));
        }
        let body = sample_with(|v| v.as_object_mut().unwrap().remove("id").map(drop).unwrap());
        assert!(is_invalid_naming(parse_untrusted(&body), "id"));
        assert!(matches!(
            parse_untrusted_topic("order.updated", &body),
            Err(AdapterError::Invalid(m)) if m.contains("id")
        ));
        let truncated = &SAMPLE[..SAMPLE.len() - 40];
        for topic in ["order.updated", "customer.updated"] {
            let headers = delivery(topic, truncated, SECRET, "d-1");
            assert!(matches!(
                run(&headers, truncated),
                Err(AdapterError::MalformedJson(m)) if m.starts_with("truncated json")
            ));
        }
    }

    #[test]
    fn a_wrong_signature_is_refused_before_anything_is_read() {
        // The HTTP layer answers 401 to both signature errors.
        let body = sample_tracked("completed", serde_json::json!([item("ups", "1Z1", "t1")]));
        for topic in ["order.updated", "customer.updated", "customer.created"] {
            let headers = delivery(topic, &body, b"not-the-secret", "d-1");
            assert_eq!(run(&headers, &body), Err(AdapterError::BadSignature));
            let headers = delivery(topic, b"{}", SECRET, "d-1");
            assert_eq!(run(&headers, &body), Err(AdapterError::BadSignature));
            let mut headers = delivery(topic, &body, SECRET, "d-1");
            headers.retain(|(k, _)| k != "X-WC-Webhook-Signature");
            assert_eq!(run(&headers, &body), Err(AdapterError::MissingSignature));
        }
        // The ping still publishes nothing, whatever the topic handling.
        assert_eq!(run(&[], b"webhook_id=12"), ignored("ping"));
        assert!(matches!(
            parse_untrusted_topic("order.updated", b"webhook_id=12"),
            Err(AdapterError::MalformedJson(_))
        ));
    }

    #[test]
    fn ids_beyond_2_pow_53_stay_exact_on_every_event() {
        let body = sample_tracked("completed", serde_json::json!([item("ups", "1Z1", "t1")]));
        let body = String::from_utf8(body)
            .unwrap()
            .replacen("\"id\":727", "\"id\":9007199254740993", 1)
            .into_bytes();
        let events = deliver("order.updated", &body);
        assert_eq!(
            keys(&events),
            [
                "woocommerce:order:9007199254740993:fulfilled",
                "woocommerce:fulfillment:9007199254740993:t1",
            ]
        );
        let json = serde_json::to_value(&events).unwrap();
        assert_eq!(json[0]["data"]["order"]["id"], "9007199254740993");
        assert_eq!(json[1]["data"]["order_id"], "9007199254740993");

        let body = customer_with(|c| c["id"] = u64::MAX.into());
        let env = &events_of_customer("customer.updated", &body)[0];
        assert_eq!(
            env.idempotency_key,
            "woocommerce:customer.updated:18446744073709551615:2017-03-21T19:09:30"
        );
        let json = serde_json::to_value(env).unwrap();
        assert_eq!(json["data"]["customer"]["id"], "18446744073709551615");
    }

    /// A customer as `GET /wp-json/wc/v3/customers/25` returns it, which is what
    /// WooCommerce's customer webhooks carry.
    fn customer_json() -> serde_json::Value {
        serde_json::json!({
            "id": 25,
            "date_created": "2017-03-21T16:09:28",
            "date_created_gmt": "2017-03-21T19:09:28",
            "date_modified": "2017-03-21T16:09:30",
            "date_modified_gmt": "2017-03-21T19:09:30",
            "email": "john.doe@example.com",
            "first_name": "John",
            "last_name": "Doe",
            "role": "customer",
            "username": "john.doe",
            "billing": {
                "first_name": "John",
                "last_name": "Doe",
                "company": "",
                "address_1": "969 Market",
                "address_2": "",
                "city": "San Francisco",
                "state": "CA",
                "postcode": "94103",
                "country": "US",
                "email": "john.doe@example.com",
                "phone": "(555) 555-5555"
            },
            "shipping": {
                "first_name": "John",
                "last_name": "Doe",
                "company": "",
                "address_1": "969 Market",
                "address_2": "",
                "city": "San Francisco",
                "state": "CA",
                "postcode": "94103",
                "country": "US"
            },
            "is_paying_customer": false,
            "avatar_url": "https://secure.gravatar.com/avatar/8eb1b522f60d11fa897de1dc6351b7e8?s=96",
            "meta_data": [],
            "_links": {
                "self": [{"href": "https://example.com/wp-json/wc/v3/customers/25"}],
                "collection": [{"href": "https://example.com/wp-json/wc/v3/customers"}]
            }
        })
    }

    fn customer_with(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v = customer_json();
        edit(&mut v);
        serde_json::to_vec_pretty(&v).unwrap()
    }

    fn events_of_customer(topic: &str, body: &[u8]) -> Vec<Envelope> {
        let events = deliver(topic, body);
        assert_eq!(events.len(), 1);
        events
    }

    fn changed(env: &Envelope) -> &CustomerChanged {
        match &env.event {
            Event::CustomerCreated(c) | Event::CustomerUpdated(c) => c,
            other => panic!("expected a customer event, got {other:?}"),
        }
    }

    #[test]
    fn customers_map_to_customer_events() {
        let body = customer_with(|_| {});
        let created = &events_of_customer("customer.created", &body)[0];
        assert_eq!(created.kind().as_str(), "customer.created");
        assert_eq!(
            created.idempotency_key,
            "woocommerce:customer.created:25:2017-03-21T19:09:30"
        );
        assert_eq!(created.occurred_at, datetime!(2017-03-21 19:09:28 UTC));
        assert_eq!(created.source.topic.as_deref(), Some("customer.created"));
        assert_eq!(
            changed(created),
            &CustomerChanged {
                customer: Customer {
                    id: Some(ExternalId::new("25")),
                    email: Some(EmailAddress::parse("john.doe@example.com").unwrap()),
                    first_name: Some("John".to_owned()),
                    last_name: Some("Doe".to_owned()),
                    locale: None,
                    country: Some("US".to_owned()),
                    accepts_marketing: None,
                },
                default_address: Some(Address {
                    name: Some("John Doe".to_owned()),
                    company: None,
                    lines: vec!["969 Market".to_owned()],
                    city: Some("San Francisco".to_owned()),
                    region: Some("CA".to_owned()),
                    postal_code: Some("94103".to_owned()),
                    country: Some("US".to_owned()),
                }),
            }
        );

        let updated = &events_of_customer("customer.updated", &body)[0];
        assert_eq!(updated.kind().as_str(), "customer.updated");
        assert_eq!(
            updated.idempotency_key,
            "woocommerce:customer.updated:25:2017-03-21T19:09:30"
        );
        assert_eq!(updated.occurred_at, datetime!(2017-03-21 19:09:30 UTC));
        assert_eq!(changed(updated), changed(created));
        assert_ne!(updated.id, created.id);
        let json = serde_json::to_value(updated).unwrap();
        assert_eq!(json["type"], "customer.updated");
        assert_eq!(json["data"]["customer"]["id"], "25");
        assert_eq!(json["data"]["default_address"]["city"], "San Francisco");
    }

    #[test]
    fn each_customer_save_is_one_event() {
        let body = customer_with(|_| {});
        let a = &events_of_customer("customer.updated", &body)[0];
        let b = verify_and_parse(
            &[OLD_SECRET],
            &tenant(),
            &delivery("customer.updated", &body, OLD_SECRET, "d-other"),
            &body,
            received(),
        )
        .unwrap();
        let Parsed::Events(b) = b else { panic!() };
        assert_eq!((a.id, &a.idempotency_key), (b[0].id, &b[0].idempotency_key));
        // Saved again: a new modification time is a new event.
        let resaved = customer_with(|c| {
            c["date_modified_gmt"] = "2017-04-02T10:00:00".into();
            c["last_name"] = "Roe".into();
        });
        let c = &events_of_customer("customer.updated", &resaved)[0];
        assert_eq!(
            c.idempotency_key,
            "woocommerce:customer.updated:25:2017-04-02T10:00:00"
        );
        assert_ne!(c.id, a.id);
        assert_eq!(changed(c).customer.last_name.as_deref(), Some("Roe"));
        // Never modified since its creation: keyed by the creation time.
        let fresh = customer_with(|c| c["date_modified_gmt"] = serde_json::Value::Null);
        let d = &events_of_customer("customer.created", &fresh)[0];
        assert_eq!(
            d.idempotency_key,
            "woocommerce:customer.created:25:2017-03-21T19:09:28"
        );
        let e = &events_of_customer("customer.updated", &fresh)[0];
        assert_eq!(e.occurred_at, received());
        // Without either time the key cannot be derived.
        let timeless = customer_with(|c| {
            let c = c.as_object_mut().unwrap();
            c.remove("date_modified_gmt");
            c.insert("date_created_gmt".to_owned(), "  ".into());
        });
        assert!(matches!(
            parse_untrusted_topic("customer.updated", &timeless),
            Err(AdapterError::Invalid(m)) if m.contains("date_modified_gmt")
        ));
    }

    #[test]
    fn customer_fields_fall_back_and_wrong_types_are_refused() {
        let body = customer_with(|c| {
            c["email"] = "".into();
            c["first_name"] = "".into();
            c["last_name"] = "".into();
            c["billing"]["first_name"] = "Jane".into();
            c["billing"]["last_name"] = "".into();
            c["billing"]["email"] = "jane@example.org".into();
            c["shipping"] = serde_json::json!({"first_name": "", "country": ""});
            c["billing"]["country"] = "ca".into();
        });
        let c = changed(&events_of_customer("customer.updated", &body)[0]).clone();
        assert_eq!(
            c.customer.email.as_ref().map(EmailAddress::as_str),
            Some("jane@example.org")
        );
        assert_eq!(
            (
                c.customer.first_name.as_deref(),
                c.customer.last_name.as_deref()
            ),
            (Some("Jane"), None)
        );
        assert_eq!(c.customer.country.as_deref(), Some("CA"));
        assert_eq!(
            c.default_address.and_then(|a| a.city),
            Some("San Francisco".to_owned())
        );
        // A bare account: an id and a time are enough.
        let bare = br#"{"id": "31", "date_modified_gmt": "2020-01-01T00:00:00", "billing": null}"#;
        let Ok(Parsed::Events(events)) = parse_untrusted_topic("customer.updated", bare) else {
            panic!()
        };
        let c = changed(&events[0]);
        assert_eq!(c.customer.id, Some(ExternalId::new("31")));
        assert_eq!((&c.customer.email, &c.default_address), (&None, &None));

        for edit in [
            (|c: &mut serde_json::Value| c["id"] = serde_json::json!(25.0)) as fn(&mut _),
            |c| c["id"] = serde_json::json!({"id": 25}),
            |c| c["id"] = serde_json::json!(-25),
            |c| c["id"] = serde_json::json!("18446744073709551616"),
            |c| {
                c.as_object_mut().unwrap().remove("id");
            },
            |c| c["billing"] = serde_json::json!(["John"]),
            |c| c["email"] = serde_json::json!(7),
            |c| c["date_modified_gmt"] = serde_json::json!(1_490_123_370),
        ] {
            let body = customer_with(edit);
            let result = parse_untrusted_topic("customer.updated", &body);
            assert!(
                matches!(result, Err(AdapterError::Invalid(_))),
                "{result:?}"
            );
        }
        assert_eq!(
            parse_untrusted_topic("customer.created", b"[25]"),
            Err(AdapterError::Invalid(
                "expected a json object, found an array".to_owned()
            ))
        );
    }

    #[test]
    fn the_untrusted_entry_point_matches_the_signed_path() {
        let body = sample_tracked("completed", serde_json::json!([item("ups", "1Z1", "t1")]));
        let Ok(Parsed::Events(untrusted)) = parse_untrusted_topic("order.updated", &body) else {
            panic!()
        };
        let signed = deliver("order.updated", &body);
        assert_eq!(untrusted.len(), signed.len());
        for (u, s) in untrusted.iter().zip(&signed) {
            assert_eq!(
                (&u.idempotency_key, &u.event),
                (&s.idempotency_key, &s.event)
            );
            assert_eq!(u.tenant.as_str(), "untrusted");
            assert_eq!(u.source.delivery_id, None);
        }
        // Without any time in the body, events are dated at the Unix epoch.
        let body = sample_with(|v| {
            v["status"] = "cancelled".into();
            v.as_object_mut().unwrap().remove("date_modified_gmt");
        });
        let Ok(Parsed::Events(events)) = parse_untrusted_topic("order.updated", &body) else {
            panic!()
        };
        assert_eq!(events[0].occurred_at, OffsetDateTime::UNIX_EPOCH);
    }

    #[test]
    fn url_helpers_are_strict() {
        assert_eq!(url_encode("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(
            url_encode("1Z 9/+&=?#%é"),
            "1Z%209%2F%2B%26%3D%3F%23%25%C3%A9"
        );
        assert_eq!(
            carrier_url("usps", "94&x=1").as_deref(),
            Some("https://tools.usps.com/go/TrackConfirmAction?tLabels=94%26x%3D1")
        );
        assert_eq!(carrier_url("royal-mail", "AB1"), None);
        assert_eq!(
            web_link(" http://a.example/x?y=1 ").as_deref(),
            Some("http://a.example/x?y=1")
        );
        for bad in [
            "",
            "http://",
            "https:/a",
            "//a.example",
            "data:text/html,x",
            "https://a\n.example",
            "ht\u{0}tps://a",
        ] {
            assert_eq!(web_link(bad), None, "{bad:?}");
        }
        assert_eq!(StatusChange::of(" processing "), Some(StatusChange::Paid));
        assert_eq!(
            StatusChange::of("wc-cancelled"),
            Some(StatusChange::Cancelled)
        );
        for other in [
            "pending", "on-hold", "refunded", "failed", "process", "wc-", "",
        ] {
            assert_eq!(StatusChange::of(other), None, "{other}");
        }
    }

    #[test]
    fn untrusted_topics_never_panic() {
        let tracked = sample_tracked(
            "completed",
            serde_json::json!([item("usps", "9400", "t1"), item("", "x", "")]),
        );
        let customer = customer_with(|_| {});
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let interesting = b"\"0-9.e,:{}[]\\&;#\x00\xff";
        for (topic, sample) in [
            ("order.created", &tracked),
            ("order.updated", &tracked),
            ("customer.created", &customer),
            ("customer.updated", &customer),
        ] {
            for end in (0..sample.len()).step_by(7) {
                let _ = parse_untrusted_topic(topic, &sample[..end]);
            }
            for _ in 0..1000 {
                let mut body = sample.clone();
                for _ in 0..(1 + next() % 4) {
                    let at = (next() % body.len() as u64) as usize;
                    body[at] = interesting[(next() % interesting.len() as u64) as usize];
                }
                let _ = parse_untrusted_topic(topic, &body);
            }
        }
    }
}
