//! Postflow's own generic webhook format, for any shop platform or carrier without an
//! adapter of its own: a documented JSON body signed per the Standard Webhooks spec
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature`). The body carries a contract
//! payload exactly as Postflow's types serialise it, and is read straight into them.
//!
//! For senders: `proto/webhooks/postflow-generic.md`; the body's JSON Schema is
//! `proto/webhooks/postflow-generic.schema.json`.
//!
//! Unlike the other adapters, [`verify`] takes `received_at` as an extra last argument: the
//! signed content includes the sender's timestamp, and a delivery whose timestamp is more
//! than [`TOLERANCE`] away from the receive time is refused as a bad signature, so a
//! captured request cannot be replayed later. [`verify_and_parse`] has the common signature.
//!
//! Invariants:
//! - the signature is `v1,` + `base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}"))`;
//!   `webhook-signature` may list several space-separated entries (key rotation), of which
//!   one `v1` entry must match one configured secret; other versions (`v1a`, `v2`) are
//!   skipped. A secret `whsec_<base64>` is the base64-decoded key, any other secret is used
//!   as raw bytes. Tags are compared in constant time;
//! - the accepted types are the events a shop or carrier reports: `order.placed`,
//!   `order.paid|cancelled|fulfilled`, `fulfillment.created|updated|status_updated`,
//!   `shipment.updated`, `checkout.updated`, `customer.created|updated`. Which Postflow
//!   event type is accepted is one exhaustive match (`accepted`), so a new contract type
//!   needs a decision here;
//! - `data` must be that type's contract payload, so the contract types reject what they
//!   cannot hold (an invalid email or currency, an id that is a number instead of a string,
//!   a float amount); on top of that ids and the parts of a business key are not blank, line
//!   quantities are at least 1, the amounts of an order, a checkout or a fulfillment are all
//!   in one currency (the order's, the checkout's, a fulfillment's first line's), a carrier
//!   is a lowercase slug, and a customer change names an email or an id;
//! - the event time is `occurred_at`, else the payload's own time (`placed_at`, `status_at`,
//!   `updated_at`); the types whose payload has no time of its own (order changes,
//!   fulfillments, customers) require `occurred_at`;
//! - the idempotency key is `postflow:` + the body's `idempotency_key` if it has one, else
//!   the business key (`order:{id}:placed|paid|cancelled|fulfilled`,
//!   `fulfillment:{id}:created`, `fulfillment:{id}:updated:{occurred_at unix}`,
//!   `fulfillment:{id}:status:{carrier_status}:{status_at unix}`,
//!   `shipment:{carrier}:{tracking_number}:{carrier_status}:{status_at unix}`,
//!   `checkout:{id}:{updated_at unix}`,
//!   `customer:{email in lowercase, else id}:created|updated:{occurred_at unix}`);
//! - Postflow's other event types are refused (422), not ignored: `shipment.progressed` and
//!   `shipment.stalled` are derived by Postflow, `privacy.requested` must come from a
//!   platform that verifies the requester, and `email.*` are Postflow's own;
//! - any other `type` is acknowledged and ignored, so senders may post more than Postflow
//!   uses; unknown fields are ignored too.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use contracts::{
    Checkout, Currency, Customer, CustomerChanged, Envelope, Event, EventKind, ExternalId,
    Fulfillment, FulfillmentStatusUpdated, Money, Order, OrderChanged, OrderLine, OrderPlaced,
    ShipmentUpdated, Source, TenantId,
};
use hmac::Mac;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::common::{clip, missing, read_json};
pub use super::{AdapterError, Headers, Parsed};
use super::{HmacSha256, header, sign_hmac_b64};

/// [`Source::system`] of every event from this adapter.
pub const SYSTEM: &str = "postflow";
/// `type` of a body carrying [`OrderPlaced`].
pub const TYPE_ORDER_PLACED: &str = "order.placed";
/// `type` of a body carrying [`ShipmentUpdated`].
pub const TYPE_SHIPMENT_UPDATED: &str = "shipment.updated";
/// How far `webhook-timestamp` may be from the receive time, either way.
pub const TOLERANCE: Duration = Duration::minutes(5);
/// Prefix of a secret given as base64 (`whsec_…`), as Standard Webhooks senders show it.
pub const SECRET_PREFIX: &str = "whsec_";
/// Longest `idempotency_key` a body may carry.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;
/// Longest `type`.
pub const MAX_TYPE: usize = 64;
/// Types under this prefix are Postflow's own email events, refused even when the contract
/// has no such type yet.
const EMAIL_PREFIX: &str = "email.";

const ID_HEADER: [&str; 1] = ["webhook-id"];
const TIMESTAMP_HEADER: [&str; 1] = ["webhook-timestamp"];
const SIGNATURE_HEADER: [&str; 1] = ["webhook-signature"];

/// Standard base64 that also accepts a missing `=` padding (secrets are pasted by hand).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Proof that a delivery's signature and timestamp were checked. Only [`verify`] makes one.
#[derive(Debug)]
pub struct Verified(());

/// What a body amounts to, before a tenant and a delivery are attached.
#[derive(Debug, Clone, PartialEq)]
// Made once per delivery and consumed at once: boxing the event would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Payload {
    /// A `type` this adapter turns into an event.
    Event {
        event: Event,
        /// `occurred_at`, else the payload's own time (`placed_at`, `status_at`,
        /// `updated_at`).
        occurred_at: OffsetDateTime,
        /// Already prefixed with `postflow:`.
        idempotency_key: String,
    },
    /// Any other well-formed `type`: acknowledged and ignored.
    Unknown { kind: String },
}

/// The `webhook-signature` value a sender would send (`v1,<base64>`), or `None` for a
/// secret that cannot sign (empty, or `whsec_` followed by something that is not base64).
#[must_use]
pub fn sign(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = signing_key(secret)?;
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    Some(format!("v1,{}", sign_hmac_b64(&key, &content)))
}

/// Checks `webhook-signature` over `{webhook-id}.{webhook-timestamp}.{raw body}` with each
/// of `secrets` (several during a rotation), and that `webhook-timestamp` is within
/// [`TOLERANCE`] of `received_at`. Does not look at the body's content.
///
/// Errors: no signature → [`AdapterError::MissingSignature`]; no `webhook-id` or
/// `webhook-timestamp` → [`AdapterError::MissingHeader`]; a timestamp that is not unix
/// seconds or is outside the window, or no matching `v1` entry →
/// [`AdapterError::BadSignature`].
pub fn verify<H: Headers + ?Sized>(
    secrets: &[&[u8]],
    headers: &H,
    body: &[u8],
    received_at: OffsetDateTime,
) -> Result<Verified, AdapterError> {
    let signatures = header(headers, &SIGNATURE_HEADER).ok_or(AdapterError::MissingSignature)?;
    let id = header(headers, &ID_HEADER).ok_or(AdapterError::MissingHeader(ID_HEADER[0]))?;
    let timestamp = header(headers, &TIMESTAMP_HEADER)
        .ok_or(AdapterError::MissingHeader(TIMESTAMP_HEADER[0]))?;
    // A stale (or future) timestamp is an authentication failure, not a payload error: the
    // signature may be genuine, but it is a replay of an old delivery or from a sender
    // whose clock is wrong. Hence BadSignature (401), like the Standard Webhooks libraries.
    let sent_at = unix_seconds(timestamp).ok_or(AdapterError::BadSignature)?;
    if (received_at - sent_at).abs() > TOLERANCE {
        return Err(AdapterError::BadSignature);
    }
    // One MAC per secret over the signed content, then every `v1` tag is compared against
    // each: the body is hashed once per secret however many entries the header lists.
    let macs: Vec<HmacSha256> = secrets
        .iter()
        .filter_map(|secret| signing_key(secret))
        .filter_map(|key| HmacSha256::new_from_slice(&key).ok())
        .map(|mut mac| {
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(body);
            mac
        })
        .collect();
    let matched = signatures
        .split_ascii_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, tag)| BASE64.decode(tag).ok())
        .any(|tag| {
            macs.iter()
                .any(|mac| mac.clone().verify_slice(&tag).is_ok())
        });
    if matched {
        Ok(Verified(()))
    } else {
        Err(AdapterError::BadSignature)
    }
}

/// Maps a verified delivery to events: one for an accepted `type`, [`Parsed::Ignored`]
/// (naming the type) for a type that is not Postflow's, and [`AdapterError::Invalid`] for
/// one of Postflow's types this format refuses.
pub fn parse<H: Headers + ?Sized>(
    _verified: &Verified,
    tenant: &TenantId,
    headers: &H,
    body: &[u8],
    _received_at: OffsetDateTime,
) -> Result<Parsed, AdapterError> {
    match parse_payload(body)? {
        Payload::Unknown { kind } => Ok(Parsed::Ignored { topic: kind }),
        Payload::Event {
            event,
            occurred_at,
            idempotency_key,
        } => {
            let source = Source {
                system: SYSTEM.to_owned(),
                delivery_id: header(headers, &ID_HEADER).map(str::to_owned),
                topic: Some(event.kind().as_str().to_owned()),
            };
            let envelope =
                Envelope::new(tenant.clone(), occurred_at, source, idempotency_key, event);
            Ok(Parsed::Events(vec![envelope]))
        }
    }
}

/// [`verify`] (with `received_at` as the time to check the timestamp against), then
/// [`parse`]: what a webhook handler calls.
pub fn verify_and_parse<H: Headers + ?Sized>(
    secrets: &[&[u8]],
    tenant: &TenantId,
    headers: &H,
    body: &[u8],
    received_at: OffsetDateTime,
) -> Result<Parsed, AdapterError> {
    let verified = verify(secrets, headers, body, received_at)?;
    parse(&verified, tenant, headers, body, received_at)
}

/// The body mapping alone, without signature or headers, for fuzzing: never panics on any
/// input.
pub fn parse_untrusted(body: &[u8]) -> Result<Payload, AdapterError> {
    parse_payload(body)
}

/// The HMAC key of a configured secret: `whsec_<base64>` decoded, anything else as is.
/// `None` (verifies nothing) for an empty secret or a `whsec_` one that does not decode.
fn signing_key(secret: &[u8]) -> Option<Vec<u8>> {
    match secret.strip_prefix(SECRET_PREFIX.as_bytes()) {
        Some(b64) => BASE64.decode(b64).ok().filter(|key| !key.is_empty()),
        None => (!secret.is_empty()).then(|| secret.to_vec()),
    }
}

/// `webhook-timestamp`: integer unix seconds, digits only.
fn unix_seconds(s: &str) -> Option<OffsetDateTime> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    OffsetDateTime::from_unix_timestamp(s.parse().ok()?).ok()
}

/// `type`: 1 to [`MAX_TYPE`] lowercase ASCII letters, digits, `.`, `_` or `-`, starting
/// with a letter or digit.
fn is_event_type(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=MAX_TYPE).contains(&b.len())
        && b.first()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c))
}

/// `idempotency_key`: 1 to [`MAX_IDEMPOTENCY_KEY`] visible ASCII characters (no spaces).
fn is_idempotency_key(s: &str) -> bool {
    (1..=MAX_IDEMPOTENCY_KEY).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

/// A carrier slug: 1 to 64 lowercase ASCII letters, digits, `_` or `-`, starting with a
/// letter or digit (`ups`, `dhl-express`, `royal_mail`).
fn is_carrier_slug(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=64).contains(&b.len())
        && b.first()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-".contains(c))
}

/// The payload family of an accepted type, with what tells its types apart.
#[derive(Debug, Clone, Copy)]
enum Accepted {
    OrderPlaced,
    /// `order.paid|cancelled|fulfilled`: the key's last part and the event it makes.
    OrderChanged(&'static str, fn(OrderChanged) -> Event),
    /// `fulfillment.created` (true) or `fulfillment.updated` (false).
    Fulfillment {
        created: bool,
    },
    FulfillmentStatus,
    Shipment,
    Checkout,
    /// `customer.created` (true) or `customer.updated` (false).
    Customer {
        created: bool,
    },
}

/// Why Postflow's derived shipment events are refused.
const REFUSED_DERIVED: &str = "postflow derives it from the shipment.updated and \
     fulfillment.status_updated it receives; send those instead";
/// Why privacy requests are refused.
const REFUSED_PRIVACY: &str = "privacy requests must come from a platform that verifies \
     the requester, not through this format";
/// Why email events are refused.
const REFUSED_EMAIL: &str = "email events are postflow's own and are not accepted from a source";

/// What this format does with the Postflow event type `kind`: the payload it accepts, or
/// why it refuses the type. Exhaustive on purpose: a new contract type must be decided here.
fn accepted(kind: EventKind) -> Result<Accepted, &'static str> {
    Ok(match kind {
        EventKind::OrderPlaced => Accepted::OrderPlaced,
        EventKind::OrderPaid => Accepted::OrderChanged("paid", Event::OrderPaid),
        EventKind::OrderCancelled => Accepted::OrderChanged("cancelled", Event::OrderCancelled),
        EventKind::OrderFulfilled => Accepted::OrderChanged("fulfilled", Event::OrderFulfilled),
        EventKind::FulfillmentCreated => Accepted::Fulfillment { created: true },
        EventKind::FulfillmentUpdated => Accepted::Fulfillment { created: false },
        // The shop's own status of its own fulfillment: a report, not a derivation.
        EventKind::FulfillmentStatusUpdated => Accepted::FulfillmentStatus,
        EventKind::ShipmentUpdated => Accepted::Shipment,
        EventKind::CheckoutUpdated => Accepted::Checkout,
        EventKind::CustomerCreated => Accepted::Customer { created: true },
        EventKind::CustomerUpdated => Accepted::Customer { created: false },
        EventKind::ShipmentProgressed | EventKind::ShipmentStalled => {
            return Err(REFUSED_DERIVED);
        }
        EventKind::PrivacyRequested => return Err(REFUSED_PRIVACY),
        EventKind::EmailSent
        | EventKind::EmailBounced
        | EventKind::EmailComplained
        | EventKind::EmailOpened
        | EventKind::EmailClicked
        | EventKind::EmailUnsubscribed
        | EventKind::EmailTopicUnsubscribed
        | EventKind::EmailResubscribed => return Err(REFUSED_EMAIL),
    })
}

/// The outer shape without `data`, to learn the type before reading the payload. The
/// fields are read as any JSON value, so a wrong type is reported with the field's name
/// (and `occurred_at` and `idempotency_key` are not looked at for an ignored type).
#[derive(Deserialize)]
#[serde(expecting = "a postflow webhook object")]
struct RawHead {
    #[serde(rename = "type")]
    kind: Option<serde_json::Value>,
    occurred_at: Option<serde_json::Value>,
    idempotency_key: Option<serde_json::Value>,
}

/// A string field of the outer shape: absent or null is `None`.
fn string_field(
    name: &str,
    value: Option<serde_json::Value>,
) -> Result<Option<String>, AdapterError> {
    use serde_json::Value;
    let found = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => return Ok(Some(s)),
        Some(Value::Bool(_)) => "a boolean",
        Some(Value::Number(_)) => "a number",
        Some(Value::Array(_)) => "an array",
        Some(Value::Object(_)) => "an object",
    };
    Err(AdapterError::Invalid(format!(
        "{name}: expected a string, found {found}"
    )))
}

/// The payload, once the type is known.
#[derive(Deserialize)]
#[serde(expecting = "a postflow webhook object")]
struct RawData<T> {
    data: Option<T>,
}

/// An accepted body mapped: the event, its time and its business key (without prefix).
struct Mapped {
    event: Event,
    occurred_at: OffsetDateTime,
    key: String,
}

fn parse_payload(body: &[u8]) -> Result<Payload, AdapterError> {
    let head: RawHead = read_json(body)?;
    let kind = string_field("type", head.kind)?.ok_or_else(|| missing("type"))?;
    if !is_event_type(&kind) {
        return Err(AdapterError::Invalid(clip(format!(
            "type {kind:?}: expected 1 to {MAX_TYPE} lowercase letters, digits, '.', '_' or '-'"
        ))));
    }
    let accepted = match EventKind::parse(&kind).map(accepted) {
        Some(Ok(accepted)) => accepted,
        Some(Err(why)) => return Err(refused(&kind, why)),
        None if kind.starts_with(EMAIL_PREFIX) => return Err(refused(&kind, REFUSED_EMAIL)),
        None => return Ok(Payload::Unknown { kind }),
    };
    let occurred_at = match string_field("occurred_at", head.occurred_at)? {
        Some(s) => Some(OffsetDateTime::parse(s.trim(), &Rfc3339).map_err(|_| {
            AdapterError::Invalid(clip(format!(
                "occurred_at {s:?}: expected an RFC 3339 date-time"
            )))
        })?),
        None => None,
    };
    let idempotency_key = match string_field("idempotency_key", head.idempotency_key)? {
        Some(k) if is_idempotency_key(&k) => Some(k),
        Some(k) => {
            return Err(AdapterError::Invalid(clip(format!(
                "idempotency_key {k:?}: expected 1 to {MAX_IDEMPOTENCY_KEY} visible ascii characters"
            ))));
        }
        None => None,
    };
    let at = When {
        kind: &kind,
        occurred_at,
    };
    let mapped = match accepted {
        Accepted::OrderPlaced => order_placed(read_data(body)?, at)?,
        Accepted::OrderChanged(suffix, make) => order_changed(read_data(body)?, at, suffix, make)?,
        Accepted::Fulfillment { created } => fulfillment(read_data(body)?, at, created)?,
        Accepted::FulfillmentStatus => fulfillment_status(read_data(body)?, at)?,
        Accepted::Shipment => shipment(read_data(body)?, at)?,
        Accepted::Checkout => checkout(read_data(body)?, at)?,
        Accepted::Customer { created } => customer(read_data(body)?, at, created)?,
    };
    Ok(Payload::Event {
        event: mapped.event,
        occurred_at: mapped.occurred_at,
        idempotency_key: format!("postflow:{}", idempotency_key.unwrap_or(mapped.key)),
    })
}

fn refused(kind: &str, why: &str) -> AdapterError {
    AdapterError::Invalid(clip(format!("type {kind:?}: not accepted, {why}")))
}

fn read_data<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, AdapterError> {
    let RawData { data } = read_json::<RawData<T>>(body)?;
    data.ok_or_else(|| missing("data"))
}

/// The body's type and `occurred_at`, to date an event.
#[derive(Clone, Copy)]
struct When<'a> {
    kind: &'a str,
    occurred_at: Option<OffsetDateTime>,
}

impl When<'_> {
    /// `occurred_at`, else the payload's own time.
    fn or(self, natural: OffsetDateTime) -> OffsetDateTime {
        self.occurred_at.unwrap_or(natural)
    }

    /// `occurred_at`, required: the payload has no time of its own.
    fn required(self) -> Result<OffsetDateTime, AdapterError> {
        self.occurred_at.ok_or_else(|| {
            AdapterError::Invalid(format!(
                "missing field `occurred_at`: {} carries no time of its own",
                self.kind
            ))
        })
    }
}

fn order_placed(placed: OrderPlaced, at: When<'_>) -> Result<Mapped, AdapterError> {
    check_order("data.order", &placed.order)?;
    Ok(Mapped {
        occurred_at: at.or(placed.order.placed_at),
        key: format!("order:{}:placed", placed.order.id),
        event: Event::OrderPlaced(placed),
    })
}

fn order_changed(
    changed: OrderChanged,
    at: When<'_>,
    suffix: &str,
    make: fn(OrderChanged) -> Event,
) -> Result<Mapped, AdapterError> {
    check_order("data.order", &changed.order)?;
    Ok(Mapped {
        occurred_at: at.required()?,
        key: format!("order:{}:{suffix}", changed.order.id),
        event: make(changed),
    })
}

fn fulfillment(f: Fulfillment, at: When<'_>, created: bool) -> Result<Mapped, AdapterError> {
    check_fulfillment(&f)?;
    let occurred_at = at.required()?;
    let (key, event) = if created {
        (
            format!("fulfillment:{}:created", f.id),
            Event::FulfillmentCreated(f),
        )
    } else {
        (
            format!(
                "fulfillment:{}:updated:{}",
                f.id,
                occurred_at.unix_timestamp()
            ),
            Event::FulfillmentUpdated(f),
        )
    };
    Ok(Mapped {
        event,
        occurred_at,
        key,
    })
}

fn fulfillment_status(
    update: FulfillmentStatusUpdated,
    at: When<'_>,
) -> Result<Mapped, AdapterError> {
    not_blank("data.order_id", update.order_id.as_str())?;
    not_blank("data.fulfillment_id", update.fulfillment_id.as_str())?;
    not_blank("data.carrier_status", &update.carrier_status)?;
    Ok(Mapped {
        occurred_at: at.or(update.status_at),
        key: format!(
            "fulfillment:{}:status:{}:{}",
            update.fulfillment_id,
            update.carrier_status,
            update.status_at.unix_timestamp()
        ),
        event: Event::FulfillmentStatusUpdated(update),
    })
}

fn shipment(shipment: ShipmentUpdated, at: When<'_>) -> Result<Mapped, AdapterError> {
    check_shipment(&shipment)?;
    Ok(Mapped {
        occurred_at: at.or(shipment.status_at),
        key: format!(
            "shipment:{}:{}:{}:{}",
            shipment.carrier,
            shipment.tracking_number,
            shipment.carrier_status,
            shipment.status_at.unix_timestamp()
        ),
        event: Event::ShipmentUpdated(shipment),
    })
}

fn checkout(checkout: Checkout, at: When<'_>) -> Result<Mapped, AdapterError> {
    check_checkout(&checkout)?;
    Ok(Mapped {
        occurred_at: at.or(checkout.updated_at),
        key: format!(
            "checkout:{}:{}",
            checkout.id,
            checkout.updated_at.unix_timestamp()
        ),
        event: Event::CheckoutUpdated(checkout),
    })
}

fn customer(changed: CustomerChanged, at: When<'_>, created: bool) -> Result<Mapped, AdapterError> {
    check_customer("data.customer", &changed.customer)?;
    let who = match (&changed.customer.email, &changed.customer.id) {
        (Some(email), _) => email.key(),
        (None, Some(id)) => id.as_str().to_owned(),
        (None, None) => {
            return Err(AdapterError::Invalid(
                "data.customer: needs an email or an id".to_owned(),
            ));
        }
    };
    let occurred_at = at.required()?;
    let (what, make): (_, fn(CustomerChanged) -> Event) = if created {
        ("created", Event::CustomerCreated)
    } else {
        ("updated", Event::CustomerUpdated)
    };
    Ok(Mapped {
        key: format!("customer:{who}:{what}:{}", occurred_at.unix_timestamp()),
        occurred_at,
        event: make(changed),
    })
}

/// A required string that must have more than whitespace in it.
fn not_blank(field: &str, value: &str) -> Result<(), AdapterError> {
    if value.trim().is_empty() {
        return Err(AdapterError::Invalid(format!("{field}: must not be blank")));
    }
    Ok(())
}

/// An optional id: absent is fine, blank is not.
fn optional_id(field: &str, id: Option<&ExternalId>) -> Result<(), AdapterError> {
    id.map_or(Ok(()), |id| not_blank(field, id.as_str()))
}

/// What the contract types cannot say about an order: its id, number and other ids are
/// not blank, its lines have a quantity, and its amounts are all in its currency.
fn check_order(at: &str, order: &Order) -> Result<(), AdapterError> {
    not_blank(&format!("{at}.id"), order.id.as_str())?;
    not_blank(&format!("{at}.number"), &order.number)?;
    check_customer(&format!("{at}.customer"), &order.customer)?;
    for (name, money) in [
        ("subtotal", &order.subtotal),
        ("shipping", &order.shipping),
        ("tax", &order.tax),
        ("discounts", &order.discounts),
        ("total", &order.total),
    ] {
        check_currency(&format!("{at}.{name}"), money, &order.currency, "order")?;
    }
    check_lines(at, &order.lines, &order.currency, "order")
}

/// A customer's id, when it has one, is not blank.
fn check_customer(at: &str, customer: &Customer) -> Result<(), AdapterError> {
    optional_id(&format!("{at}.id"), customer.id.as_ref())
}

/// `{at}.lines`: ids not blank, a quantity of at least 1, amounts in `currency` (of `whose`).
fn check_lines(
    at: &str,
    lines: &[OrderLine],
    currency: &Currency,
    whose: &str,
) -> Result<(), AdapterError> {
    for (i, line) in lines.iter().enumerate() {
        let field = format!("{at}.lines[{i}]");
        optional_id(&format!("{field}.product_id"), line.product_id.as_ref())?;
        optional_id(&format!("{field}.variant_id"), line.variant_id.as_ref())?;
        if line.quantity == 0 {
            return Err(AdapterError::Invalid(format!(
                "{field}.quantity: must be at least 1"
            )));
        }
        check_currency(
            &format!("{field}.unit_price"),
            &line.unit_price,
            currency,
            whose,
        )?;
        check_currency(&format!("{field}.total"), &line.total, currency, whose)?;
    }
    Ok(())
}

fn check_currency(
    field: &str,
    money: &Money,
    currency: &Currency,
    whose: &str,
) -> Result<(), AdapterError> {
    if money.currency == *currency {
        return Ok(());
    }
    Err(AdapterError::Invalid(format!(
        "{field}: currency {} differs from the {whose} currency {currency}",
        money.currency
    )))
}

/// What the contract types cannot say about a fulfillment: its ids and status are not
/// blank, its carrier is a slug, its tracking numbers and links are not blank, and its lines
/// are sane and in one currency (the first line's).
fn check_fulfillment(f: &Fulfillment) -> Result<(), AdapterError> {
    not_blank("data.id", f.id.as_str())?;
    not_blank("data.order_id", f.order_id.as_str())?;
    not_blank("data.status", &f.status)?;
    if let Some(carrier) = &f.carrier {
        check_carrier("data.carrier", carrier)?;
    }
    for (i, number) in f.tracking_numbers.iter().enumerate() {
        not_blank(&format!("data.tracking_numbers[{i}]"), number)?;
    }
    for (i, url) in f.tracking_urls.iter().enumerate() {
        not_blank(&format!("data.tracking_urls[{i}]"), url)?;
    }
    match f.lines.first() {
        Some(first) => check_lines("data", &f.lines, &first.unit_price.currency, "fulfillment"),
        None => Ok(()),
    }
}

/// What the contract types cannot say about a checkout: its ids are not blank, its lines
/// have a quantity, and its amounts are all in its currency.
fn check_checkout(checkout: &Checkout) -> Result<(), AdapterError> {
    not_blank("data.id", checkout.id.as_str())?;
    check_customer("data.customer", &checkout.customer)?;
    check_currency(
        "data.total",
        &checkout.total,
        &checkout.currency,
        "checkout",
    )?;
    check_lines("data", &checkout.lines, &checkout.currency, "checkout")
}

fn check_carrier(field: &str, carrier: &str) -> Result<(), AdapterError> {
    if is_carrier_slug(carrier) {
        return Ok(());
    }
    Err(AdapterError::Invalid(clip(format!(
        "{field} {carrier:?}: expected a lowercase slug such as \"ups\" or \"dhl-express\""
    ))))
}

/// What the contract types cannot say: a carrier slug, and a tracking number and carrier
/// status that are not blank (all three make up the business key).
fn check_shipment(shipment: &ShipmentUpdated) -> Result<(), AdapterError> {
    check_carrier("data.carrier", &shipment.carrier)?;
    not_blank("data.tracking_number", &shipment.tracking_number)?;
    not_blank("data.carrier_status", &shipment.carrier_status)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use std::fmt;

    use super::*;
    use contracts::{Address, Checkpoint, EmailAddress, ShipmentStatus};
    use serde_json::{Value, json};
    use time::macros::datetime;

    const VECTOR: &[u8] = include_bytes!("../../fixtures/standard_webhooks_test_vector.json");
    const SCHEMA: &str = include_str!("../../../../proto/webhooks/postflow-generic.schema.json");
    const DOC: &str = include_str!("../../../../proto/webhooks/postflow-generic.md");
    // The `$ref` targets of the schema, relative to it (a missing file fails the build).
    const ORDER_SCHEMA: &str = include_str!("../../../../proto/schemas/order.placed.schema.json");
    const SHIPMENT_SCHEMA: &str =
        include_str!("../../../../proto/schemas/shipment.updated.schema.json");
    const ORDER_CHANGED_SCHEMA: &str =
        include_str!("../../../../proto/schemas/order.changed.schema.json");
    const FULFILLMENT_SCHEMA: &str =
        include_str!("../../../../proto/schemas/fulfillment.schema.json");
    const FULFILLMENT_STATUS_SCHEMA: &str =
        include_str!("../../../../proto/schemas/fulfillment.status_updated.schema.json");
    const CHECKOUT_SCHEMA: &str =
        include_str!("../../../../proto/schemas/checkout.updated.schema.json");
    const CUSTOMER_SCHEMA: &str =
        include_str!("../../../../proto/schemas/customer.changed.schema.json");

    const SECRET: &[u8] = b"whsec_ADL1lpoNGABJHoA1DkvL5ygzhuK3H8PMMmqg+Iou5Io=";
    const OLD_SECRET: &[u8] = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    struct Vector {
        secret: String,
        id: String,
        timestamp: String,
        body: String,
        signature: String,
    }

    fn vector() -> Vector {
        let v: Value = serde_json::from_slice(VECTOR).unwrap();
        let s = |v: &Value| v.as_str().unwrap().to_owned();
        Vector {
            secret: s(&v["secret"]),
            id: s(&v["headers"]["webhook-id"]),
            timestamp: s(&v["headers"]["webhook-timestamp"]),
            body: s(&v["body"]),
            signature: s(&v["expected_webhook_signature"]),
        }
    }

    fn vector_headers(v: &Vector, signature: &str) -> Vec<(String, String)> {
        vec![
            ("webhook-id".to_owned(), v.id.clone()),
            ("webhook-timestamp".to_owned(), v.timestamp.clone()),
            ("webhook-signature".to_owned(), signature.to_owned()),
        ]
    }

    fn vector_time(v: &Vector) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(v.timestamp.parse().unwrap()).unwrap()
    }

    fn tenant() -> TenantId {
        TenantId::parse("demo").unwrap()
    }

    fn received() -> OffsetDateTime {
        datetime!(2026-03-16 06:45:00 UTC)
    }

    /// Headers of a delivery signed with `secret` at `received()`.
    fn delivery(body: &[u8], secret: &[u8], id: &str) -> Vec<(String, String)> {
        let ts = received().unix_timestamp();
        vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("Webhook-Id".to_owned(), id.to_owned()),
            ("Webhook-Timestamp".to_owned(), ts.to_string()),
            (
                "Webhook-Signature".to_owned(),
                sign(secret, id, ts, body).unwrap(),
            ),
        ]
    }

    fn run(headers: &[(String, String)], body: &[u8]) -> Result<Parsed, AdapterError> {
        verify_and_parse(&[OLD_SECRET, SECRET], &tenant(), headers, body, received())
    }

    fn envelope(body: &[u8], id: &str) -> Envelope {
        match run(&delivery(body, SECRET, id), body).unwrap() {
            Parsed::Events(mut events) => {
                assert_eq!(events.len(), 1);
                events.pop().unwrap()
            }
            other => panic!("expected events, got {other:?}"),
        }
    }

    fn eur(minor: i64) -> Money {
        Money {
            minor,
            currency: Currency::parse("EUR").unwrap(),
        }
    }

    fn sample_order() -> Order {
        Order {
            id: ExternalId::new("18446744073709551615"),
            number: "#10421".to_owned(),
            currency: Currency::parse("EUR").unwrap(),
            placed_at: datetime!(2026-03-14 09:26:53 +01:00),
            customer: Customer {
                id: Some(ExternalId::new("c-881")),
                email: Some(EmailAddress::parse("ana.garcia@example.com").unwrap()),
                first_name: Some("Ana".to_owned()),
                last_name: Some("García".to_owned()),
                locale: Some("es".to_owned()),
                country: Some("ES".to_owned()),
                accepts_marketing: Some(false),
            },
            lines: vec![
                OrderLine {
                    product_id: Some(ExternalId::new("9007199254740993")),
                    variant_id: Some(ExternalId::new("p-77-blk-m")),
                    sku: Some("TEE-BLK-M".to_owned()),
                    title: "Organic T-shirt".to_owned(),
                    variant_title: Some("Black / M".to_owned()),
                    quantity: 2,
                    unit_price: eur(2500),
                    total: eur(4500),
                    image_url: Some("https://shop.example/img/tee-blk.jpg".to_owned()),
                    url: Some("https://shop.example/p/organic-t-shirt".to_owned()),
                },
                OrderLine {
                    product_id: None,
                    variant_id: None,
                    sku: None,
                    title: "Canvas tote".to_owned(),
                    variant_title: None,
                    quantity: 1,
                    unit_price: eur(1200),
                    total: eur(1200),
                    image_url: None,
                    url: None,
                },
            ],
            subtotal: eur(5700),
            shipping: eur(495),
            tax: eur(1177),
            discounts: eur(0),
            total: eur(7372),
            shipping_address: Some(Address {
                name: Some("Ana García".to_owned()),
                company: None,
                lines: vec!["Calle de Alcalá 42".to_owned(), "3º B".to_owned()],
                city: Some("Madrid".to_owned()),
                region: None,
                postal_code: Some("28014".to_owned()),
                country: Some("ES".to_owned()),
            }),
            status_url: Some("https://shop.example/orders/10421?key=3f9a".to_owned()),
            test: true,
        }
    }

    fn sample_shipment() -> ShipmentUpdated {
        ShipmentUpdated {
            carrier: "dhl".to_owned(),
            tracking_number: "JJD000390007882719".to_owned(),
            status: ShipmentStatus::OutForDelivery,
            carrier_status: "out-for-delivery".to_owned(),
            message: Some("Loaded onto the delivery vehicle".to_owned()),
            location: Some("Madrid, ES".to_owned()),
            status_at: datetime!(2026-03-16 07:42:10 +01:00),
            order_ref: Some("#10421".to_owned()),
            tracking_url: None,
            estimated_delivery: Some(datetime!(2026-03-16 18:00:00 +01:00)),
            checkpoints: vec![Checkpoint {
                at: datetime!(2026-03-15 06:12:44 +01:00),
                status: ShipmentStatus::InTransit,
                carrier_status: "transit".to_owned(),
                message: None,
                location: Some("Madrid, ES".to_owned()),
            }],
        }
    }

    fn order_body() -> Value {
        json!({"type": "order.placed", "data": {"order": sample_order()}})
    }

    fn shipment_body() -> Value {
        json!({"type": "shipment.updated", "data": sample_shipment()})
    }

    fn bytes(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    fn with(mut v: Value, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        edit(&mut v);
        bytes(&v)
    }

    fn event(body: &[u8]) -> Event {
        match parse_untrusted(body) {
            Ok(Payload::Event { event, .. }) => event,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    fn is_invalid_naming<T: fmt::Debug>(result: Result<T, AdapterError>, needle: &str) -> bool {
        match result {
            Err(AdapterError::Invalid(m)) => m.contains(needle),
            _ => false,
        }
    }

    /// `occurred_at` of the sample bodies whose payload has no time of its own.
    const AT: &str = "2026-03-14T18:05:00+01:00";
    const AT_UNIX: i64 = 1773507900;

    fn sample_fulfillment() -> Fulfillment {
        let order = sample_order();
        Fulfillment {
            // Above 2^64: an id only a string carries exactly.
            id: ExternalId::new("18446744073709551616"),
            order_id: order.id,
            status: "success".to_owned(),
            carrier: Some("dhl".to_owned()),
            carrier_name: Some("DHL".to_owned()),
            tracking_numbers: vec![
                "JJD000390007882719".to_owned(),
                "JJD000390007882720".to_owned(),
            ],
            tracking_urls: vec!["https://track.example/JJD000390007882719".to_owned()],
            lines: order.lines,
            destination: order.shipping_address,
            email: order.customer.email,
        }
    }

    fn sample_status() -> FulfillmentStatusUpdated {
        FulfillmentStatusUpdated {
            order_id: ExternalId::new("18446744073709551615"),
            fulfillment_id: ExternalId::new("18446744073709551616"),
            status: ShipmentStatus::InTransit,
            carrier_status: "in_transit".to_owned(),
            message: Some("Arrived at the sorting centre".to_owned()),
            location: Some("Madrid, ES".to_owned()),
            status_at: datetime!(2026-03-15 06:12:44 +01:00),
            estimated_delivery: Some(datetime!(2026-03-16 18:00:00 +01:00)),
        }
    }

    fn sample_checkout() -> Checkout {
        let order = sample_order();
        Checkout {
            id: ExternalId::new("9007199254740993"),
            customer: order.customer,
            currency: order.currency,
            lines: order.lines,
            total: eur(5700),
            recovery_url: Some(
                "https://shop.example/checkouts/9007199254740993/recover".to_owned(),
            ),
            updated_at: datetime!(2026-03-14 21:03:11 +01:00),
            completed_at: None,
        }
    }

    fn sample_customer() -> CustomerChanged {
        let order = sample_order();
        CustomerChanged {
            customer: Customer {
                id: Some(ExternalId::new("9007199254740993")),
                email: Some(EmailAddress::parse("Ana.Garcia@Example.com").unwrap()),
                ..order.customer
            },
            default_address: order.shipping_address,
        }
    }

    fn changed_body(kind: &str) -> Value {
        json!({
            "type": kind,
            "occurred_at": AT,
            "data": {"order": sample_order(), "reason": "customer"}
        })
    }

    fn fulfillment_body(kind: &str) -> Value {
        json!({"type": kind, "occurred_at": AT, "data": sample_fulfillment()})
    }

    fn status_body() -> Value {
        json!({"type": "fulfillment.status_updated", "data": sample_status()})
    }

    fn checkout_body() -> Value {
        json!({"type": "checkout.updated", "data": sample_checkout()})
    }

    fn customer_body(kind: &str) -> Value {
        json!({"type": kind, "occurred_at": AT, "data": sample_customer()})
    }

    /// A valid body of every accepted type, in the order of [`EventKind::ALL`].
    fn valid_bodies() -> Vec<(&'static str, Value)> {
        vec![
            ("order.placed", order_body()),
            ("order.paid", changed_body("order.paid")),
            ("order.cancelled", changed_body("order.cancelled")),
            ("order.fulfilled", changed_body("order.fulfilled")),
            (
                "fulfillment.created",
                fulfillment_body("fulfillment.created"),
            ),
            (
                "fulfillment.updated",
                fulfillment_body("fulfillment.updated"),
            ),
            ("fulfillment.status_updated", status_body()),
            ("shipment.updated", shipment_body()),
            ("checkout.updated", checkout_body()),
            ("customer.created", customer_body("customer.created")),
            ("customer.updated", customer_body("customer.updated")),
        ]
    }

    fn key_of(body: &[u8]) -> String {
        match parse_untrusted(body) {
            Ok(Payload::Event {
                idempotency_key, ..
            }) => idempotency_key,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// Posts `body` through the whole adapter and checks the envelope it makes: the key,
    /// the time, the source, the exact event, and the same `data` back out, ids as strings.
    fn assert_maps(body: &Value, key: &str, at: OffsetDateTime, expected: Event) {
        let raw = bytes(body);
        let env = envelope(&raw, "msg_journey_1");
        let kind = body["type"].as_str().unwrap();
        assert_eq!(env.tenant, tenant());
        assert_eq!(env.idempotency_key, key, "{kind}");
        assert_eq!(env.occurred_at, at, "{kind}");
        assert_eq!(
            env.source,
            Source {
                system: "postflow".to_owned(),
                delivery_id: Some("msg_journey_1".to_owned()),
                topic: Some(kind.to_owned()),
            }
        );
        assert_eq!(env.event, expected, "{kind}");
        // A redelivery under another webhook-id is the same event.
        assert_eq!(envelope(&raw, "msg_journey_2").id, env.id);
        let json = serde_json::to_value(&env).unwrap();
        assert_eq!(json["type"], kind);
        assert_eq!(json["data"], body["data"], "{kind}");
    }

    // --- A JSON Schema (2020-12) check for the keywords these schemas use. An unknown
    // keyword or pattern fails the test, so the schema cannot promise more than is checked,
    // and the patterns are checked with the receiver's own predicates.

    const ROOT: &str = "postflow-generic.schema.json";

    struct Validator {
        files: Vec<(&'static str, Value)>,
    }

    impl Validator {
        fn new() -> Self {
            let files = [
                (ROOT, SCHEMA),
                ("../schemas/order.placed.schema.json", ORDER_SCHEMA),
                ("../schemas/order.changed.schema.json", ORDER_CHANGED_SCHEMA),
                ("../schemas/fulfillment.schema.json", FULFILLMENT_SCHEMA),
                (
                    "../schemas/fulfillment.status_updated.schema.json",
                    FULFILLMENT_STATUS_SCHEMA,
                ),
                ("../schemas/shipment.updated.schema.json", SHIPMENT_SCHEMA),
                ("../schemas/checkout.updated.schema.json", CHECKOUT_SCHEMA),
                ("../schemas/customer.changed.schema.json", CUSTOMER_SCHEMA),
            ];
            Validator {
                files: files
                    .into_iter()
                    .map(|(name, text)| (name, serde_json::from_str(text).unwrap()))
                    .collect(),
            }
        }

        fn file(&self, name: &str) -> &Value {
            let found = self.files.iter().find(|(n, _)| *n == name);
            &found.unwrap_or_else(|| panic!("no schema file {name}")).1
        }

        /// The file and subschema a `$ref` written in `file` names.
        fn resolve<'a>(&'a self, file: &'a str, reference: &'a str) -> (&'a str, &'a Value) {
            let (path, pointer) = reference.split_once('#').unwrap_or((reference, ""));
            let file = if path.is_empty() { file } else { path };
            let target = self.file(file).pointer(pointer);
            (
                file,
                target.unwrap_or_else(|| panic!("{reference} resolves to nothing")),
            )
        }

        /// Why `value` is not a valid webhook body (empty: it is).
        fn errors(&self, value: &Value) -> Vec<String> {
            let mut errors = Vec::new();
            self.check(ROOT, self.file(ROOT), value, "$", &mut errors);
            errors
        }

        fn passes(&self, file: &str, schema: &Value, value: &Value, at: &str) -> Vec<String> {
            let mut errors = Vec::new();
            self.check(file, schema, value, at, &mut errors);
            errors
        }

        fn check(
            &self,
            file: &str,
            schema: &Value,
            value: &Value,
            at: &str,
            errors: &mut Vec<String>,
        ) {
            let keywords = schema
                .as_object()
                .unwrap_or_else(|| panic!("{at}: schema is not an object"));
            for (keyword, arg) in keywords {
                match keyword.as_str() {
                    "$schema" | "title" | "description" | "default" | "examples" | "$defs" => {}
                    "$ref" => {
                        let (file, target) = self.resolve(file, arg.as_str().unwrap());
                        self.check(file, target, value, at, errors);
                    }
                    "type" => {
                        let types: Vec<&str> = match arg {
                            Value::Array(types) => {
                                types.iter().map(|t| t.as_str().unwrap()).collect()
                            }
                            other => vec![other.as_str().unwrap()],
                        };
                        if !types.iter().any(|t| has_type(value, t)) {
                            errors.push(format!("{at}: expected {types:?}, found {value}"));
                        }
                    }
                    "properties" => {
                        if let Value::Object(object) = value {
                            for (name, sub) in arg.as_object().unwrap() {
                                if let Some(v) = object.get(name) {
                                    self.check(file, sub, v, &format!("{at}.{name}"), errors);
                                }
                            }
                        }
                    }
                    "required" => {
                        if let Value::Object(object) = value {
                            for name in arg.as_array().unwrap() {
                                if !object.contains_key(name.as_str().unwrap()) {
                                    errors
                                        .push(format!("{at}.{}: required", name.as_str().unwrap()));
                                }
                            }
                        }
                    }
                    "items" => {
                        if let Value::Array(items) = value {
                            for (i, item) in items.iter().enumerate() {
                                self.check(file, arg, item, &format!("{at}[{i}]"), errors);
                            }
                        }
                    }
                    "enum" => {
                        if !arg.as_array().unwrap().contains(value) {
                            errors.push(format!("{at}: {value} is not one of {arg}"));
                        }
                    }
                    "const" => {
                        if arg != value {
                            errors.push(format!("{at}: {value} is not {arg}"));
                        }
                    }
                    "minimum" => {
                        let min = arg.as_i64().unwrap();
                        if value.as_i64().is_some_and(|n| n < min)
                            || value.as_f64().is_some_and(|n| n < min as f64)
                        {
                            errors.push(format!("{at}: {value} is below {min}"));
                        }
                    }
                    "pattern" => {
                        if let Value::String(s) = value
                            && !pattern(arg.as_str().unwrap())(s)
                        {
                            errors.push(format!("{at}: {s:?} does not match {arg}"));
                        }
                    }
                    "format" => {
                        if !format_holds(arg.as_str().unwrap(), value) {
                            errors.push(format!("{at}: {value} is not a {arg}"));
                        }
                    }
                    "anyOf" | "oneOf" | "allOf" => {
                        let subs = arg.as_array().unwrap();
                        let failures: Vec<Vec<String>> = subs
                            .iter()
                            .enumerate()
                            .map(|(i, sub)| {
                                self.passes(file, sub, value, &format!("{at}/{keyword}[{i}]"))
                            })
                            .collect();
                        let passed = failures.iter().filter(|f| f.is_empty()).count();
                        let ok = match keyword.as_str() {
                            "anyOf" => passed >= 1,
                            "oneOf" => passed == 1,
                            _ => passed == subs.len(),
                        };
                        if !ok {
                            errors.push(format!("{at}: {passed} of {keyword} pass: {failures:?}"));
                        }
                    }
                    "not" => {
                        if self.passes(file, arg, value, at).is_empty() {
                            errors.push(format!("{at}: {value} matches the `not` schema {arg}"));
                        }
                    }
                    other => panic!("{at}: keyword {other} is not checked by this test"),
                }
            }
        }
    }

    fn has_type(value: &Value, kind: &str) -> bool {
        match kind {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            other => panic!("type {other} is not known to this test"),
        }
    }

    /// What each pattern of the schemas means, as the receiver checks it.
    fn pattern(p: &str) -> fn(&str) -> bool {
        match p {
            r"\S" => |s| !s.trim().is_empty(),
            "^[A-Z]{3}$" => |s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()),
            "^[a-z0-9][a-z0-9_-]{0,63}$" => is_carrier_slug,
            "^[a-z0-9][a-z0-9._-]{0,63}$" => is_event_type,
            "^[!-~]{1,200}$" => is_idempotency_key,
            r"^email\." => |s| s.starts_with(EMAIL_PREFIX),
            other => panic!("pattern {other} is not known to this test"),
        }
    }

    fn format_holds(format: &str, value: &Value) -> bool {
        match (format, value) {
            ("date-time", Value::String(s)) => OffsetDateTime::parse(s, &Rfc3339).is_ok(),
            ("email", Value::String(s)) => EmailAddress::parse(s).is_ok(),
            ("int64", v) => !v.is_number() || v.is_i64(),
            ("uint32", v) => !v.is_number() || v.as_u64().is_some_and(|n| u32::try_from(n).is_ok()),
            ("date-time" | "email", _) => true,
            (other, _) => panic!("format {other} is not known to this test"),
        }
    }

    #[test]
    fn standard_webhooks_test_vector_verifies_at_its_timestamp() {
        let v = vector();
        let ts: i64 = v.timestamp.parse().unwrap();
        assert_eq!(
            sign(v.secret.as_bytes(), &v.id, ts, v.body.as_bytes()).as_deref(),
            Some(v.signature.as_str())
        );
        let headers = vector_headers(&v, &v.signature);
        let at = vector_time(&v);
        assert!(verify(&[v.secret.as_bytes()], &headers, v.body.as_bytes(), at).is_ok());
        // The vector's body passes the signature but is not a Postflow body.
        assert_eq!(
            verify_and_parse(
                &[v.secret.as_bytes()],
                &tenant(),
                &headers,
                v.body.as_bytes(),
                at
            ),
            Err(AdapterError::Invalid("missing field `type`".to_owned()))
        );
        // One byte more or less in any signed part fails.
        let body = format!("{} ", v.body);
        assert_eq!(
            verify(&[v.secret.as_bytes()], &headers, body.as_bytes(), at).unwrap_err(),
            AdapterError::BadSignature
        );
        for (i, changed) in [(0, format!("{}x", v.id)), (1, format!("{}", ts + 1))] {
            let mut headers = vector_headers(&v, &v.signature);
            headers[i].1 = changed;
            assert_eq!(
                verify(&[v.secret.as_bytes()], &headers, v.body.as_bytes(), at).unwrap_err(),
                AdapterError::BadSignature
            );
        }
    }

    #[test]
    fn timestamps_more_than_five_minutes_off_are_refused() {
        let v = vector();
        let headers = vector_headers(&v, &v.signature);
        let secrets: [&[u8]; 1] = [v.secret.as_bytes()];
        let at = vector_time(&v);
        let check = |received_at| verify(&secrets, &headers, v.body.as_bytes(), received_at);
        for late in [
            Duration::minutes(6),
            Duration::minutes(-6),
            Duration::days(365),
        ] {
            assert_eq!(
                check(at + late).unwrap_err(),
                AdapterError::BadSignature,
                "{late}"
            );
        }
        for within in [
            Duration::ZERO,
            Duration::minutes(5),
            Duration::minutes(-5),
            Duration::seconds(299),
        ] {
            assert!(check(at + within).is_ok(), "{within}");
        }
        for beyond in [Duration::seconds(301), Duration::seconds(-301)] {
            assert_eq!(check(at + beyond).unwrap_err(), AdapterError::BadSignature);
        }
        // A timestamp that is not unix seconds is a bad signature, a blank one is missing.
        for bad in [
            "1614265330.0",
            "-1614265330",
            "+1614265330",
            "2021-02-25T15:02:10Z",
            "abc",
            "99999999999999999999",
        ] {
            let mut headers = vector_headers(&v, &v.signature);
            headers[1].1 = bad.to_owned();
            assert_eq!(
                verify(&secrets, &headers, v.body.as_bytes(), at).unwrap_err(),
                AdapterError::BadSignature,
                "{bad}"
            );
        }
    }

    #[test]
    fn any_v1_entry_may_match_and_other_versions_are_skipped() {
        let v = vector();
        let good = v.signature.clone();
        let good_tag = good.strip_prefix("v1,").unwrap();
        let secrets: [&[u8]; 1] = [v.secret.as_bytes()];
        let check = |signature: &str| {
            verify(
                &secrets,
                &vector_headers(&v, signature),
                v.body.as_bytes(),
                vector_time(&v),
            )
        };
        let wrong = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        for ok in [
            format!("{wrong} {good}"),
            format!("v1a,{good_tag} {good}"),
            format!("{good}   {wrong}"),
            format!("v1,%%% v1 {good}"),
            format!("v1,{}", good_tag.trim_end_matches('=')), // padding optional
        ] {
            assert!(check(&ok).is_ok(), "{ok}");
        }
        for bad in [
            wrong.to_owned(),
            format!("v2,{good_tag}"),
            format!("v1a,{good_tag}"),
            format!("V1,{good_tag}"),
            good_tag.to_owned(),
            format!("v1,{good_tag},extra"),
            format!("v1;{good_tag}"),
            "v1,".to_owned(),
            format!("v1,{}", &good_tag[..20]),
        ] {
            assert_eq!(
                check(&bad).unwrap_err(),
                AdapterError::BadSignature,
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_rotate_and_unusable_secrets_verify_nothing() {
        let body = bytes(&order_body());
        // Signed with the old secret, verified against [old, new] and not against [new].
        let headers = delivery(&body, OLD_SECRET, "msg_1");
        assert!(run(&headers, &body).is_ok());
        assert_eq!(
            verify(&[SECRET], &headers, &body, received()).unwrap_err(),
            AdapterError::BadSignature
        );
        // A signature per secret, the second matching.
        let ts = received().unix_timestamp();
        let both = format!(
            "{} {}",
            sign(b"whsec_c29tZW9uZSBlbHNl", "msg_1", ts, &body).unwrap(),
            sign(SECRET, "msg_1", ts, &body).unwrap()
        );
        let mut headers = delivery(&body, SECRET, "msg_1");
        headers[3].1 = both;
        assert!(verify(&[SECRET], &headers, &body, received()).is_ok());

        // Without the prefix a secret is its raw bytes; with it, the decoded bytes only.
        let raw = b"plain-shared-secret";
        let headers = delivery(&body, raw, "msg_2");
        assert!(verify(&[raw], &headers, &body, received()).is_ok());
        let decoded = BASE64.decode(&SECRET[SECRET_PREFIX.len()..]).unwrap();
        let headers = delivery(&body, SECRET, "msg_3");
        assert!(verify(&[decoded.as_slice()], &headers, &body, received()).is_ok());
        let literal: &[u8] = &SECRET[SECRET_PREFIX.len()..];
        assert!(verify(&[literal], &headers, &body, received()).is_err());

        for unusable in [&b""[..], b"whsec_", b"whsec_%%%", b"whsec_YQ=x"] {
            assert_eq!(sign(unusable, "msg_1", ts, &body), None);
            let empty_key_sig = format!("v1,{}", sign_hmac_b64(b"", b"msg_1"));
            let mut headers = delivery(&body, SECRET, "msg_1");
            headers[3].1 = empty_key_sig;
            assert_eq!(
                verify(&[unusable], &headers, &body, received()).unwrap_err(),
                AdapterError::BadSignature
            );
        }
        let headers = delivery(&body, SECRET, "msg_1");
        assert_eq!(
            verify(&[], &headers, &body, received()).unwrap_err(),
            AdapterError::BadSignature
        );
    }

    #[test]
    fn missing_headers_are_named() {
        let body = bytes(&order_body());
        let without = |name: &str| {
            let mut headers = delivery(&body, SECRET, "msg_1");
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
            run(&headers, &body)
        };
        assert_eq!(
            without("webhook-signature"),
            Err(AdapterError::MissingSignature)
        );
        assert_eq!(
            without("webhook-id"),
            Err(AdapterError::MissingHeader("webhook-id"))
        );
        assert_eq!(
            without("webhook-timestamp"),
            Err(AdapterError::MissingHeader("webhook-timestamp"))
        );
        assert_eq!(run(&[], &body), Err(AdapterError::MissingSignature));
        for (i, name) in [(1, "webhook-id"), (2, "webhook-timestamp")] {
            let mut headers = delivery(&body, SECRET, "msg_1");
            headers[i].1 = "  ".to_owned();
            assert_eq!(run(&headers, &body), Err(AdapterError::MissingHeader(name)));
        }
        let mut headers = delivery(&body, SECRET, "msg_1");
        headers[3].1 = " ".to_owned();
        assert_eq!(run(&headers, &body), Err(AdapterError::MissingSignature));
        // Garbage with a bad signature is a signature error, not a json error.
        let headers = delivery(b"{}", SECRET, "msg_1");
        assert_eq!(run(&headers, b"not json"), Err(AdapterError::BadSignature));
    }

    #[test]
    fn an_order_round_trips_to_the_exact_order() {
        let data = order_body();
        let body = bytes(&data);
        let env = envelope(&body, "msg_order_1");
        assert_eq!(env.tenant, tenant());
        assert_eq!(
            env.idempotency_key,
            "postflow:order:18446744073709551615:placed"
        );
        assert_eq!(
            env.source,
            Source {
                system: "postflow".to_owned(),
                delivery_id: Some("msg_order_1".to_owned()),
                topic: Some("order.placed".to_owned()),
            }
        );
        assert_eq!(env.occurred_at, datetime!(2026-03-14 09:26:53 +01:00));
        assert_eq!(
            env.event,
            Event::OrderPlaced(OrderPlaced {
                order: sample_order()
            })
        );
        // And back to the same JSON, ids still strings.
        let json = serde_json::to_value(&env).unwrap();
        assert_eq!(json["data"], data["data"]);
        assert_eq!(json["data"]["order"]["id"], "18446744073709551615");

        // Lowercase currency codes are normalised by the contract type; optional fields
        // may be null or absent.
        let body = with(order_body(), |v| {
            let o = &mut v["data"]["order"];
            o["currency"] = "eur".into();
            o["status_url"] = Value::Null;
            o["customer"] = json!({});
            o.as_object_mut().unwrap().remove("test");
        });
        let Event::OrderPlaced(OrderPlaced { order }) = event(&body) else {
            panic!()
        };
        assert_eq!(order.currency.as_str(), "EUR");
        assert_eq!((order.status_url, order.test), (None, false));
        assert_eq!(order.customer.email, None);
    }

    #[test]
    fn a_shipment_maps_with_its_business_key() {
        let body = bytes(&shipment_body());
        let env = envelope(&body, "msg_ship_1");
        assert_eq!(
            env.idempotency_key,
            "postflow:shipment:dhl:JJD000390007882719:out-for-delivery:1773643330"
        );
        assert_eq!(env.occurred_at, datetime!(2026-03-16 07:42:10 +01:00));
        assert_eq!(env.source.topic.as_deref(), Some("shipment.updated"));
        assert_eq!(env.source.delivery_id.as_deref(), Some("msg_ship_1"));
        assert_eq!(env.event, Event::ShipmentUpdated(sample_shipment()));
        let json = serde_json::to_value(&env).unwrap();
        assert_eq!(json["type"], "shipment.updated");
        assert_eq!(json["data"], shipment_body()["data"]);

        // Each part of the business key tells two updates apart.
        let key = |edit: fn(&mut Value)| match parse_untrusted(&with(shipment_body(), edit)) {
            Ok(Payload::Event {
                idempotency_key, ..
            }) => idempotency_key,
            other => panic!("{other:?}"),
        };
        let base = key(|_| {});
        assert_ne!(
            base,
            key(|v| v["data"]["carrier_status"] = "delivered".into())
        );
        assert_ne!(
            base,
            key(|v| v["data"]["status_at"] = "2026-03-16T07:42:11+01:00".into())
        );
        assert_ne!(base, key(|v| v["data"]["tracking_number"] = "JJD1".into()));
        // The status alone is not part of it: the carrier's status is.
        assert_eq!(base, key(|v| v["data"]["status"] = "in_transit".into()));
    }

    #[test]
    fn unknown_types_are_ignored_and_malformed_types_refused() {
        for kind in ["ping", "order.updated", "refund.created", "x", "a.b_c-d.9"] {
            for body in [
                json!({"type": kind}),
                json!({"type": kind, "data": "anything", "occurred_at": 5}),
            ] {
                let body = bytes(&body);
                assert_eq!(
                    run(&delivery(&body, SECRET, "msg_1"), &body),
                    Ok(Parsed::Ignored {
                        topic: kind.to_owned()
                    }),
                    "{kind}"
                );
            }
        }
        for kind in [
            json!(""),
            json!("Order.Placed"),
            json!("order placed"),
            json!(".order"),
            json!("x".repeat(65)),
            json!("ordér"),
            json!(5),
            json!(null),
        ] {
            let body = bytes(&json!({"type": kind, "data": {}}));
            let result = parse_untrusted(&body);
            assert!(is_invalid_naming(result, "type"), "{kind}");
        }
        assert!(is_invalid_naming(
            parse_untrusted(b"{}"),
            "missing field `type`"
        ));
        assert_eq!(
            parse_untrusted(&bytes(&json!({"type": "x".repeat(64)}))),
            Ok(Payload::Unknown {
                kind: "x".repeat(64)
            })
        );
    }

    /// A change to a body, and what the error must say.
    type Edit = fn(&mut Value);

    #[test]
    fn data_the_contract_types_reject_is_invalid() {
        let cases: [(&str, Edit); 14] = [
            ("invalid email address", |v| {
                v["data"]["order"]["customer"]["email"] = "not an email".into();
            }),
            ("invalid email address", |v| {
                v["data"]["order"]["customer"]["email"] = "ana@localhost".into();
            }),
            ("3-letter code", |v| {
                v["data"]["order"]["currency"] = "EURO".into()
            }),
            ("expected a string", |v| {
                v["data"]["order"]["id"] = 10421.into()
            }),
            ("expected a string", |v| {
                v["data"]["order"]["lines"][0]["product_id"] = 77.into();
            }),
            ("expected i64", |v| {
                v["data"]["order"]["total"]["minor"] = json!(73.72);
            }),
            ("expected i64", |v| {
                v["data"]["order"]["total"]["minor"] = "7372".into();
            }),
            ("expected u32", |v| {
                v["data"]["order"]["lines"][0]["quantity"] = (-2).into();
            }),
            ("missing field `total`", |v| {
                v["data"]["order"].as_object_mut().unwrap().remove("total");
            }),
            ("could not be parsed", |v| {
                v["data"]["order"]["placed_at"] = "2026-03-14 09:26:53".into();
            }),
            ("data.order.lines[1].total: currency USD", |v| {
                v["data"]["order"]["lines"][1]["total"]["currency"] = "USD".into();
            }),
            ("data.order.shipping: currency USD", |v| {
                v["data"]["order"]["shipping"]["currency"] = "usd".into();
            }),
            ("data.order.id: must not be blank", |v| {
                v["data"]["order"]["id"] = " ".into();
            }),
            ("data.order.number: must not be blank", |v| {
                v["data"]["order"]["number"] = "".into();
            }),
        ];
        for (needle, edit) in cases {
            let body = with(order_body(), edit);
            let result = parse_untrusted(&body);
            assert!(
                matches!(&result, Err(AdapterError::Invalid(m)) if m.contains(needle)),
                "{needle}: {result:?}"
            );
            // Through the whole adapter too: verified, then refused.
            assert!(matches!(
                run(&delivery(&body, SECRET, "msg_1"), &body),
                Err(AdapterError::Invalid(_))
            ));
        }

        let cases: [(&str, Edit); 8] = [
            ("unknown variant `shipped`", |v| {
                v["data"]["status"] = "shipped".into()
            }),
            ("data.carrier \"DHL\"", |v| {
                v["data"]["carrier"] = "DHL".into()
            }),
            ("data.carrier \"\"", |v| v["data"]["carrier"] = "".into()),
            ("data.carrier \"royal mail\"", |v| {
                v["data"]["carrier"] = "royal mail".into()
            }),
            ("data.tracking_number", |v| {
                v["data"]["tracking_number"] = "  ".into()
            }),
            ("data.carrier_status", |v| {
                v["data"]["carrier_status"] = "".into()
            }),
            ("missing field `status_at`", |v| {
                v["data"].as_object_mut().unwrap().remove("status_at");
            }),
            ("invalid type: integer", |v| {
                v["data"]["status_at"] = 1773643330.into()
            }),
        ];
        for (needle, edit) in cases {
            let result = parse_untrusted(&with(shipment_body(), edit));
            assert!(
                matches!(&result, Err(AdapterError::Invalid(m)) if m.contains(needle)),
                "{needle}: {result:?}"
            );
        }
        for carrier in ["ups", "dhl-express", "royal_mail", "17track", "a"] {
            let body = with(shipment_body(), |v| v["data"]["carrier"] = carrier.into());
            assert!(parse_untrusted(&body).is_ok(), "{carrier}");
        }
    }

    #[test]
    fn a_given_idempotency_key_is_prefixed_and_shared_by_redeliveries() {
        let body = with(order_body(), |v| {
            v["idempotency_key"] = "shop-42/order/10421".into()
        });
        let a = envelope(&body, "msg_a");
        let b = envelope(&body, "msg_b");
        assert_eq!(a.idempotency_key, "postflow:shop-42/order/10421");
        assert_eq!(a.idempotency_key, b.idempotency_key);
        assert_eq!(a.id, b.id);
        assert_ne!(a.source.delivery_id, b.source.delivery_id);
        // The same order without a key is another business key, so another event id.
        let c = envelope(&bytes(&order_body()), "msg_a");
        assert_ne!(c.id, a.id);
        // Null is absent.
        let body = with(order_body(), |v| v["idempotency_key"] = Value::Null);
        assert_eq!(envelope(&body, "msg_c").idempotency_key, c.idempotency_key);
        for bad in [
            json!(""),
            json!("has space"),
            json!("ключ"),
            json!("x".repeat(201)),
            json!("a\nb"),
            json!(7),
        ] {
            let body = with(order_body(), |v| v["idempotency_key"] = bad.clone());
            assert!(
                is_invalid_naming(parse_untrusted(&body), "idempotency_key"),
                "{bad}"
            );
        }
        let body = with(order_body(), |v| {
            v["idempotency_key"] = "x".repeat(200).into()
        });
        assert!(parse_untrusted(&body).is_ok());
    }

    #[test]
    fn occurred_at_defaults_to_the_payload_time() {
        let body = with(order_body(), |v| {
            v["occurred_at"] = "2026-03-14T08:30:00Z".into()
        });
        assert_eq!(
            envelope(&body, "m").occurred_at,
            datetime!(2026-03-14 08:30:00 UTC)
        );
        let body = with(order_body(), |v| v["occurred_at"] = Value::Null);
        assert_eq!(
            envelope(&body, "m").occurred_at,
            datetime!(2026-03-14 09:26:53 +01:00)
        );
        for bad in [
            json!("yesterday"),
            json!("2026-03-14T08:30:00"),
            json!(1773476813),
        ] {
            let body = with(order_body(), |v| v["occurred_at"] = bad.clone());
            assert!(
                is_invalid_naming(parse_untrusted(&body), "occurred_at"),
                "{bad}"
            );
        }
    }

    #[test]
    fn malformed_and_misshapen_bodies_are_refused() {
        let body = bytes(&order_body());
        let half = &body[..body.len() / 2];
        let headers = delivery(half, SECRET, "msg_1");
        match run(&headers, half) {
            Err(AdapterError::MalformedJson(m)) => {
                assert!(m.starts_with("truncated json at line 1 column"), "{m}");
            }
            other => panic!("expected malformed json, got {other:?}"),
        }
        for body in [
            &b""[..],
            b"{",
            b"{\"type\": \"order.placed\",}",
            b"\xff",
            b"type=order.placed",
        ] {
            assert!(
                matches!(parse_untrusted(body), Err(AdapterError::MalformedJson(_))),
                "{body:?}"
            );
        }
        assert_eq!(
            parse_untrusted(b"[\"order.placed\", {}]"),
            Err(AdapterError::Invalid(
                "expected a json object, found an array".to_owned()
            ))
        );
        assert!(is_invalid_naming(
            parse_untrusted(b"\"order.placed\""),
            "expected a postflow webhook object"
        ));
        assert!(is_invalid_naming(
            parse_untrusted(br#"{"type": "order.placed"}"#),
            "missing field `data`"
        ));
        assert!(is_invalid_naming(
            parse_untrusted(br#"{"type": "order.placed", "data": null}"#),
            "missing field `data`"
        ));
        assert!(is_invalid_naming(
            parse_untrusted(br#"{"type": "order.placed", "data": {}}"#),
            "missing field `order`"
        ));
        // A shipment sent as an order, and duplicate keys, are refused.
        let body = with(shipment_body(), |v| v["type"] = "order.placed".into());
        assert!(is_invalid_naming(
            parse_untrusted(&body),
            "missing field `order`"
        ));
        let dup = br#"{"type": "ping", "type": "order.placed", "data": {}}"#;
        assert!(is_invalid_naming(
            parse_untrusted(dup),
            "duplicate field `type`"
        ));
    }

    #[test]
    fn the_documented_examples_parse_and_the_schema_matches_the_code() {
        // Every ```json block in the documentation is a body this adapter accepts and the
        // schema validates, and the text says the key of each that has none of its own.
        let v = Validator::new();
        let blocks: Vec<&str> = DOC
            .split("```json\n")
            .skip(1)
            .map(|rest| rest.split("\n```").next().unwrap())
            .collect();
        let mut got = Vec::new();
        for block in blocks {
            let body: Value = serde_json::from_str(block).unwrap();
            assert_eq!(v.errors(&body), Vec::<String>::new(), "{block}");
            match parse_untrusted(block.as_bytes()) {
                Ok(Payload::Event {
                    event,
                    idempotency_key,
                    ..
                }) => {
                    if body.get("idempotency_key").is_none() {
                        assert!(
                            DOC.contains(&format!("`{idempotency_key}`")),
                            "{idempotency_key}"
                        );
                    }
                    got.push((event.kind().as_str(), idempotency_key));
                }
                other => panic!("{other:?} for\n{block}"),
            }
        }
        let expected = [
            ("order.placed", "postflow:order:10421:placed"),
            ("order.paid", "postflow:order:10421:paid"),
            (
                "fulfillment.created",
                "postflow:fulfillment:f-10421-1:created",
            ),
            (
                "fulfillment.updated",
                "postflow:fulfillment:f-10421-1:updated:1773511800",
            ),
            (
                "fulfillment.status_updated",
                "postflow:fulfillment:f-10421-1:status:in_transit:1773551564",
            ),
            (
                "shipment.updated",
                "postflow:shipment:dhl:JJD000390007882719:out-for-delivery:1773643330",
            ),
            ("order.fulfilled", "postflow:order:10421:fulfilled"),
            ("order.cancelled", "postflow:order:10422:cancelled"),
            ("checkout.updated", "postflow:checkout:chk-5521:1773518591"),
            (
                "customer.created",
                "postflow:customer:ana.garcia@example.com:created:1773476400",
            ),
            (
                "customer.updated",
                "postflow:customer:ana.garcia@example.com:updated:1773997320",
            ),
        ];
        let expected: Vec<(&str, String)> = expected
            .iter()
            .map(|(k, key)| (*k, (*key).to_owned()))
            .collect();
        assert_eq!(got, expected);
        // The worked example is the test vector.
        let vec = vector();
        assert!(DOC.contains(&vec.signature) && DOC.contains(&vec.secret) && DOC.contains(&vec.id));

        let schema: Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(schema["required"], json!(["type"]));
        // One branch per accepted type, naming its contract schema, then one for the rest.
        let branches = schema["oneOf"].as_array().unwrap();
        let (other, typed) = branches.split_last().unwrap();
        let contracts: Vec<(&str, &str)> = typed
            .iter()
            .map(|b| {
                let kind = b["properties"]["type"]["const"].as_str().unwrap();
                let (mut file, mut data) = (ROOT, &b["properties"]["data"]);
                // Through the schema's own definitions to the contract file.
                while file == ROOT {
                    (file, data) = v.resolve(file, data["$ref"].as_str().unwrap());
                }
                (kind, data["title"].as_str().unwrap())
            })
            .collect();
        assert_eq!(
            contracts,
            [
                ("order.placed", "OrderPlaced"),
                ("order.paid", "OrderChanged"),
                ("order.cancelled", "OrderChanged"),
                ("order.fulfilled", "OrderChanged"),
                ("fulfillment.created", "Fulfillment"),
                ("fulfillment.updated", "Fulfillment"),
                ("fulfillment.status_updated", "FulfillmentStatusUpdated"),
                ("shipment.updated", "ShipmentUpdated"),
                ("checkout.updated", "Checkout"),
                ("customer.created", "CustomerChanged"),
                ("customer.updated", "CustomerChanged"),
            ]
        );
        // `occurred_at` is required by a branch exactly where the receiver requires it.
        for ((kind, body), branch) in valid_bodies().into_iter().zip(typed) {
            let without = with(body, |b| {
                b.as_object_mut().unwrap().remove("occurred_at");
            });
            let requires = branch["required"]
                .as_array()
                .unwrap()
                .contains(&json!("occurred_at"));
            assert_eq!(requires, parse_untrusted(&without).is_err(), "{kind}");
        }
        // The last branch excludes every Postflow type: accepted or refused, none is ignored.
        let excluded = &other["properties"]["type"]["not"]["anyOf"];
        let mut listed: Vec<&str> = excluded[0]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        listed.sort_unstable();
        let mut own: Vec<&str> = EventKind::ALL
            .iter()
            .map(|k| k.as_str())
            .filter(|k| !k.starts_with(EMAIL_PREFIX))
            .collect();
        own.sort_unstable();
        assert_eq!(listed, own);
        assert_eq!(excluded[1]["pattern"], r"^email\.");
        // The patterns say what the code checks.
        let props = &schema["properties"];
        assert_eq!(
            props["type"]["pattern"],
            format!("^[a-z0-9][a-z0-9._-]{{0,{}}}$", MAX_TYPE - 1)
        );
        assert_eq!(
            props["idempotency_key"]["pattern"],
            format!("^[!-~]{{1,{MAX_IDEMPOTENCY_KEY}}}$")
        );
    }

    #[test]
    fn order_changes_map_to_the_exact_envelope() {
        let at = datetime!(2026-03-14 18:05:00 +01:00);
        let changed = OrderChanged {
            order: sample_order(),
            reason: Some("customer".to_owned()),
        };
        for (kind, suffix, event) in [
            ("order.paid", "paid", Event::OrderPaid(changed.clone())),
            (
                "order.cancelled",
                "cancelled",
                Event::OrderCancelled(changed.clone()),
            ),
            (
                "order.fulfilled",
                "fulfilled",
                Event::OrderFulfilled(changed.clone()),
            ),
        ] {
            let key = format!("postflow:order:18446744073709551615:{suffix}");
            assert_maps(&changed_body(kind), &key, at, event);
            // The key is the order's and the change's: another time is the same change.
            let later = with(changed_body(kind), |v| {
                v["occurred_at"] = "2026-03-15T08:00:00Z".into()
            });
            assert_eq!(key_of(&later), key);
            // The payload has no time of its own: occurred_at is required.
            for edit in [
                (|v: &mut Value| {
                    v.as_object_mut().unwrap().remove("occurred_at");
                }) as Edit,
                |v| v["occurred_at"] = Value::Null,
            ] {
                assert_eq!(
                    parse_untrusted(&with(changed_body(kind), edit)),
                    Err(AdapterError::Invalid(format!(
                        "missing field `occurred_at`: {kind} carries no time of its own"
                    )))
                );
            }
        }
        // The reason is optional.
        let body = with(changed_body("order.paid"), |v| {
            v["data"].as_object_mut().unwrap().remove("reason");
        });
        let Event::OrderPaid(OrderChanged { reason, .. }) = event(&body) else {
            panic!()
        };
        assert_eq!(reason, None);
    }

    #[test]
    fn fulfillments_map_with_their_keys() {
        let at = datetime!(2026-03-14 18:05:00 +01:00);
        assert_maps(
            &fulfillment_body("fulfillment.created"),
            "postflow:fulfillment:18446744073709551616:created",
            at,
            Event::FulfillmentCreated(sample_fulfillment()),
        );
        assert_maps(
            &fulfillment_body("fulfillment.updated"),
            &format!("postflow:fulfillment:18446744073709551616:updated:{AT_UNIX}"),
            at,
            Event::FulfillmentUpdated(sample_fulfillment()),
        );
        // A creation happens once; each update at another time is another event.
        let later = |kind: &str| {
            key_of(&with(fulfillment_body(kind), |v| {
                v["occurred_at"] = "2026-03-14T19:10:00+01:00".into()
            }))
        };
        assert_eq!(
            later("fulfillment.created"),
            "postflow:fulfillment:18446744073709551616:created"
        );
        assert_eq!(
            later("fulfillment.updated"),
            "postflow:fulfillment:18446744073709551616:updated:1773511800"
        );
        // Without tracking numbers, lines or carrier: tracked by its id.
        let body = with(fulfillment_body("fulfillment.created"), |v| {
            let data = v["data"].as_object_mut().unwrap();
            for field in [
                "tracking_numbers",
                "tracking_urls",
                "lines",
                "carrier",
                "email",
            ] {
                data.remove(field);
            }
        });
        let Event::FulfillmentCreated(f) = event(&body) else {
            panic!()
        };
        assert!(f.tracking_numbers.is_empty() && f.lines.is_empty());
        assert_eq!((f.carrier, f.email), (None, None));
        for kind in ["fulfillment.created", "fulfillment.updated"] {
            let body = with(fulfillment_body(kind), |v| {
                v.as_object_mut().unwrap().remove("occurred_at");
            });
            assert_eq!(
                parse_untrusted(&body),
                Err(AdapterError::Invalid(format!(
                    "missing field `occurred_at`: {kind} carries no time of its own"
                )))
            );
        }
    }

    #[test]
    fn a_fulfillment_status_is_dated_and_keyed_by_its_status() {
        let key = "postflow:fulfillment:18446744073709551616:status:in_transit:1773551564";
        assert_maps(
            &status_body(),
            key,
            datetime!(2026-03-15 06:12:44 +01:00),
            Event::FulfillmentStatusUpdated(sample_status()),
        );
        // occurred_at dates the event, the status time stays the key's.
        let body = with(status_body(), |v| {
            v["occurred_at"] = "2026-03-15T06:20:00+01:00".into()
        });
        match parse_untrusted(&body) {
            Ok(Payload::Event {
                occurred_at,
                idempotency_key,
                ..
            }) => {
                assert_eq!(occurred_at, datetime!(2026-03-15 06:20:00 +01:00));
                assert_eq!(idempotency_key, key);
            }
            other => panic!("{other:?}"),
        }
        let next = with(status_body(), |v| {
            v["data"]["carrier_status"] = "out_for_delivery".into()
        });
        assert_ne!(key_of(&next), key);
    }

    #[test]
    fn a_checkout_is_dated_and_keyed_by_its_update_time() {
        let key = "postflow:checkout:9007199254740993:1773518591";
        assert_maps(
            &checkout_body(),
            key,
            datetime!(2026-03-14 21:03:11 +01:00),
            Event::CheckoutUpdated(sample_checkout()),
        );
        let changed = with(checkout_body(), |v| {
            v["data"]["updated_at"] = "2026-03-14T21:09:00+01:00".into()
        });
        assert_eq!(
            key_of(&changed),
            "postflow:checkout:9007199254740993:1773518940"
        );
        // An emptied cart and a completed checkout are checkouts too.
        let body = with(checkout_body(), |v| {
            v["data"]["lines"] = json!([]);
            v["data"]["completed_at"] = "2026-03-14T21:12:00+01:00".into();
        });
        let Event::CheckoutUpdated(c) = event(&body) else {
            panic!()
        };
        assert!(c.lines.is_empty());
        assert_eq!(c.completed_at, Some(datetime!(2026-03-14 21:12:00 +01:00)));
    }

    #[test]
    fn a_customer_is_keyed_by_email_else_id() {
        let at = datetime!(2026-03-14 18:05:00 +01:00);
        for (kind, what, make) in [
            (
                "customer.created",
                "created",
                Event::CustomerCreated as fn(CustomerChanged) -> Event,
            ),
            ("customer.updated", "updated", Event::CustomerUpdated),
        ] {
            // The address as sent keeps its local part's case; the key is in lowercase.
            let key = format!("postflow:customer:ana.garcia@example.com:{what}:{AT_UNIX}");
            assert_maps(&customer_body(kind), &key, at, make(sample_customer()));
            let without_email = with(customer_body(kind), |v| {
                v["data"]["customer"]["email"] = Value::Null;
            });
            assert_eq!(
                key_of(&without_email),
                format!("postflow:customer:9007199254740993:{what}:{AT_UNIX}")
            );
            let body = with(customer_body(kind), |v| {
                v.as_object_mut().unwrap().remove("occurred_at");
            });
            assert_eq!(
                parse_untrusted(&body),
                Err(AdapterError::Invalid(format!(
                    "missing field `occurred_at`: {kind} carries no time of its own"
                )))
            );
        }
        let body = with(customer_body("customer.updated"), |v| {
            v["data"]["customer"] = json!({"email": "lena.vogel@example.de"});
        });
        assert_eq!(
            key_of(&body),
            format!("postflow:customer:lena.vogel@example.de:updated:{AT_UNIX}")
        );
    }

    #[test]
    fn a_given_idempotency_key_replaces_every_default_key() {
        for (kind, body) in valid_bodies() {
            let body = with(body, |v| v["idempotency_key"] = "shop-42/evt/9".into());
            assert_eq!(key_of(&body), "postflow:shop-42/evt/9", "{kind}");
        }
    }

    /// A base body, a change that breaks it, what the error says, whether the schema tells.
    type Case = (fn() -> Value, Edit, &'static str, bool);

    /// Bodies the receiver refuses, the field its error names, and whether the schema can
    /// tell (a currency that differs from another field's is beyond JSON Schema).
    fn invalid_cases() -> Vec<(Value, &'static str, bool)> {
        let cases: Vec<Case> = vec![
            (
                || changed_body("order.paid"),
                |v| v["occurred_at"] = "yesterday".into(),
                "occurred_at \"yesterday\"",
                true,
            ),
            (
                || changed_body("order.paid"),
                |v| v["data"]["order"]["id"] = " ".into(),
                "data.order.id: must not be blank",
                true,
            ),
            (
                || changed_body("order.cancelled"),
                |v| v["data"]["order"]["id"] = 10421.into(),
                "expected a string",
                true,
            ),
            (
                || changed_body("order.cancelled"),
                |v| v["data"]["order"]["lines"][0]["quantity"] = 0.into(),
                "data.order.lines[0].quantity: must be at least 1",
                true,
            ),
            (
                || changed_body("order.fulfilled"),
                |v| v["data"]["order"]["lines"][0]["product_id"] = " ".into(),
                "data.order.lines[0].product_id: must not be blank",
                true,
            ),
            (
                || changed_body("order.fulfilled"),
                |v| v["data"]["order"]["customer"]["id"] = "".into(),
                "data.order.customer.id: must not be blank",
                true,
            ),
            (
                || changed_body("order.paid"),
                |v| v["data"]["order"]["tax"]["currency"] = "USD".into(),
                "data.order.tax: currency USD differs from the order currency EUR",
                false,
            ),
            (
                || changed_body("order.paid"),
                |v| v["data"]["reason"] = 5.into(),
                "expected a string",
                true,
            ),
            (
                || changed_body("order.paid"),
                |v| {
                    v["data"].as_object_mut().unwrap().remove("order");
                },
                "missing field `order`",
                true,
            ),
            (
                order_body,
                |v| v["data"]["order"]["lines"][1]["quantity"] = 0.into(),
                "data.order.lines[1].quantity: must be at least 1",
                true,
            ),
            (
                || fulfillment_body("fulfillment.created"),
                |v| v["data"]["id"] = " ".into(),
                "data.id: must not be blank",
                true,
            ),
            (
                || fulfillment_body("fulfillment.created"),
                |v| v["data"]["id"] = json!(18446744073709551615u64),
                "expected a string",
                true,
            ),
            (
                || fulfillment_body("fulfillment.updated"),
                |v| v["data"]["order_id"] = "".into(),
                "data.order_id: must not be blank",
                true,
            ),
            (
                || fulfillment_body("fulfillment.updated"),
                |v| v["data"]["status"] = " ".into(),
                "data.status: must not be blank",
                true,
            ),
            (
                || fulfillment_body("fulfillment.created"),
                |v| {
                    v["data"].as_object_mut().unwrap().remove("status");
                },
                "missing field `status`",
                true,
            ),
            (
                || fulfillment_body("fulfillment.created"),
                |v| v["data"]["carrier"] = "DHL".into(),
                "data.carrier \"DHL\"",
                true,
            ),
            (
                || fulfillment_body("fulfillment.created"),
                |v| v["data"]["tracking_numbers"][1] = "  ".into(),
                "data.tracking_numbers[1]: must not be blank",
                true,
            ),
            (
                || fulfillment_body("fulfillment.created"),
                |v| v["data"]["tracking_urls"][0] = "".into(),
                "data.tracking_urls[0]: must not be blank",
                true,
            ),
            (
                || fulfillment_body("fulfillment.created"),
                |v| v["data"]["lines"][0]["quantity"] = 0.into(),
                "data.lines[0].quantity: must be at least 1",
                true,
            ),
            (
                || fulfillment_body("fulfillment.created"),
                |v| v["data"]["lines"][1]["total"]["currency"] = "USD".into(),
                "data.lines[1].total: currency USD differs from the fulfillment currency EUR",
                false,
            ),
            (
                || fulfillment_body("fulfillment.updated"),
                |v| v["data"]["email"] = "ana@localhost".into(),
                "invalid email address",
                true,
            ),
            (
                status_body,
                |v| v["data"]["fulfillment_id"] = " ".into(),
                "data.fulfillment_id: must not be blank",
                true,
            ),
            (
                status_body,
                |v| v["data"]["order_id"] = "".into(),
                "data.order_id: must not be blank",
                true,
            ),
            (
                status_body,
                |v| v["data"]["carrier_status"] = "".into(),
                "data.carrier_status: must not be blank",
                true,
            ),
            (
                status_body,
                |v| v["data"]["status"] = "shipped".into(),
                "unknown variant `shipped`",
                true,
            ),
            (
                status_body,
                |v| {
                    v["data"].as_object_mut().unwrap().remove("status_at");
                },
                "missing field `status_at`",
                true,
            ),
            (
                checkout_body,
                |v| v["data"]["id"] = "".into(),
                "data.id: must not be blank",
                true,
            ),
            (
                checkout_body,
                |v| v["data"]["customer"]["id"] = " ".into(),
                "data.customer.id: must not be blank",
                true,
            ),
            (
                checkout_body,
                |v| v["data"]["total"]["currency"] = "USD".into(),
                "data.total: currency USD differs from the checkout currency EUR",
                false,
            ),
            (
                checkout_body,
                |v| v["data"]["lines"][0]["unit_price"]["currency"] = "USD".into(),
                "data.lines[0].unit_price: currency USD differs from the checkout currency EUR",
                false,
            ),
            (
                checkout_body,
                |v| v["data"]["lines"][0]["quantity"] = 0.into(),
                "data.lines[0].quantity: must be at least 1",
                true,
            ),
            (
                checkout_body,
                |v| {
                    v["data"].as_object_mut().unwrap().remove("updated_at");
                },
                "missing field `updated_at`",
                true,
            ),
            (
                checkout_body,
                |v| v["data"]["updated_at"] = "2026-03-14 21:03:11".into(),
                "could not be parsed",
                true,
            ),
            (
                || customer_body("customer.created"),
                |v| v["data"]["customer"] = json!({"first_name": "Ana"}),
                "data.customer: needs an email or an id",
                true,
            ),
            (
                || customer_body("customer.updated"),
                |v| v["data"]["customer"] = json!({"email": null, "id": null}),
                "data.customer: needs an email or an id",
                true,
            ),
            (
                || customer_body("customer.updated"),
                |v| v["data"]["customer"]["id"] = " ".into(),
                "data.customer.id: must not be blank",
                true,
            ),
            (
                || customer_body("customer.updated"),
                |v| v["data"]["customer"]["email"] = "not an email".into(),
                "invalid email address",
                true,
            ),
            (
                || customer_body("customer.created"),
                |v| {
                    v["data"].as_object_mut().unwrap().remove("customer");
                },
                "missing field `customer`",
                true,
            ),
        ];
        cases
            .into_iter()
            .map(|(base, edit, needle, schema_tells)| {
                let mut body = base();
                edit(&mut body);
                (body, needle, schema_tells)
            })
            .chain(valid_bodies().into_iter().filter_map(|(kind, body)| {
                // Every type without a time of its own, without `occurred_at`.
                let without = with(body, |v| {
                    v.as_object_mut().unwrap().remove("occurred_at");
                });
                parse_untrusted(&without).is_err().then(|| {
                    let needle = match kind {
                        k if k.starts_with("order.") => "missing field `occurred_at`: order.",
                        k if k.starts_with("fulfillment.") => {
                            "missing field `occurred_at`: fulfillment."
                        }
                        _ => "missing field `occurred_at`: customer.",
                    };
                    (serde_json::from_slice(&without).unwrap(), needle, true)
                })
            }))
            .collect()
    }

    #[test]
    fn invalid_journey_bodies_are_refused_naming_the_field() {
        for (body, needle, _) in invalid_cases() {
            let raw = bytes(&body);
            let result = parse_untrusted(&raw);
            assert!(
                matches!(&result, Err(AdapterError::Invalid(m)) if m.contains(needle)),
                "{needle}: {result:?}"
            );
            // Through the whole adapter too: verified, then refused with nothing published.
            assert!(matches!(
                run(&delivery(&raw, SECRET, "msg_1"), &raw),
                Err(AdapterError::Invalid(_))
            ));
        }
    }

    #[test]
    fn postflow_own_types_are_refused_and_the_others_accepted() {
        let (accepted_kinds, refused_kinds): (Vec<EventKind>, Vec<EventKind>) = EventKind::ALL
            .into_iter()
            .partition(|k| accepted(*k).is_ok());
        let names = |kinds: &[EventKind]| kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>();
        // Every accepted type has a valid body that makes an event of that type.
        let bodies = valid_bodies();
        assert_eq!(
            names(&accepted_kinds),
            bodies.iter().map(|(kind, _)| *kind).collect::<Vec<_>>()
        );
        for (kind, body) in &bodies {
            assert_eq!(event(&bytes(body)).kind().as_str(), *kind);
        }
        assert_eq!(
            names(&refused_kinds),
            [
                "shipment.progressed",
                "shipment.stalled",
                "privacy.requested",
                "email.sent",
                "email.bounced",
                "email.complained",
                "email.opened",
                "email.clicked",
                "email.unsubscribed",
                "email.topic_unsubscribed",
                "email.resubscribed",
            ]
        );
        // Refused whatever the body carries, before `data` or `occurred_at` are looked at,
        // and through the whole adapter: 422, nothing published.
        let derived = json!({
            "order_id": "18446744073709551615",
            "shipment": {
                "carrier": "dhl", "tracking_number": "JJD1", "status": "delivered",
                "carrier_status": "delivered", "status_at": "2026-03-16T12:00:00Z"
            }
        });
        for kind in names(&refused_kinds).into_iter().chain(["email.delivered"]) {
            for body in [
                json!({"type": kind, "occurred_at": AT, "data": derived.clone()}),
                json!({"type": kind, "occurred_at": 5}),
                json!({"type": kind}),
            ] {
                let raw = bytes(&body);
                let result = run(&delivery(&raw, SECRET, "msg_1"), &raw);
                assert!(
                    is_invalid_naming(result, &format!("type \"{kind}\": not accepted")),
                    "{kind}"
                );
            }
        }
        let why = |kind: &str| match parse_untrusted(&bytes(&json!({"type": kind}))) {
            Err(AdapterError::Invalid(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(why("shipment.stalled").contains("derives it"));
        assert!(why("privacy.requested").contains("verifies the requester"));
        assert!(why("email.opened").contains("postflow's own"));
        // Names near the refused ones are not Postflow's: acknowledged and ignored.
        for kind in [
            "email",
            "emails.sent",
            "shipment.progress",
            "privacy.request",
        ] {
            assert_eq!(
                parse_untrusted(&bytes(&json!({"type": kind}))),
                Ok(Payload::Unknown {
                    kind: kind.to_owned()
                })
            );
        }

        // The documentation's tables say the same.
        let section = |title: &str| {
            let start = DOC.find(title).unwrap() + title.len();
            let rest = &DOC[start..];
            &rest[..rest.find("\n### ").unwrap()]
        };
        let documented: Vec<&str> = section("### Types\n")
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .skip(1) // the header: | `type` | `data` | …
            .collect();
        assert_eq!(documented, names(&accepted_kinds));
        let refusals = section("### Types Postflow refuses\n");
        for kind in names(&refused_kinds) {
            assert!(refusals.contains(&format!("`{kind}`")), "{kind}");
        }
        assert!(refusals.contains("any other `email.*`"));
    }

    #[test]
    fn the_schema_accepts_what_the_receiver_accepts() {
        let v = Validator::new();
        for (kind, body) in valid_bodies() {
            assert_eq!(v.errors(&body), Vec::<String>::new(), "{kind}");
            let minimal = with(body, |b| {
                b["idempotency_key"] = Value::Null;
            });
            assert!(parse_untrusted(&minimal).is_ok());
            let minimal: Value = serde_json::from_slice(&minimal).unwrap();
            assert_eq!(v.errors(&minimal), Vec::<String>::new(), "{kind}");
        }
        for (body, needle, schema_tells) in invalid_cases() {
            assert!(parse_untrusted(&bytes(&body)).is_err());
            if schema_tells {
                assert!(
                    !v.errors(&body).is_empty(),
                    "the schema lets through: {needle}"
                );
            } else {
                // Beyond the schema: it accepts what only the receiver refuses.
                assert_eq!(v.errors(&body), Vec::<String>::new(), "{needle}");
            }
        }
        // Ignored types pass the schema with anything as data; refused types pass nothing.
        for kind in ["ping", "order.updated", "email", "refund.created"] {
            let body = json!({"type": kind, "data": "anything"});
            assert_eq!(v.errors(&body), Vec::<String>::new(), "{kind}");
            assert!(matches!(
                parse_untrusted(&bytes(&body)),
                Ok(Payload::Unknown { .. })
            ));
        }
        for kind in EventKind::ALL
            .into_iter()
            .filter(|k| accepted(*k).is_err())
            .map(EventKind::as_str)
            .chain(["email.delivered"])
        {
            let body = json!({"type": kind, "occurred_at": AT, "data": {}});
            assert!(!v.errors(&body).is_empty(), "{kind}");
        }
        for bad in [
            json!({}),
            json!({"type": "Order.Placed"}),
            json!({"type": "order.placed"}),
        ] {
            assert!(!v.errors(&bad).is_empty(), "{bad}");
            assert!(parse_untrusted(&bytes(&bad)).is_err());
        }
    }

    #[test]
    fn untrusted_input_never_panics() {
        let body = serde_json::to_vec_pretty(&order_body()).unwrap();
        for end in 0..body.len() {
            let _ = parse_untrusted(&body[..end]);
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let interesting = b"\"0-9.e,:{}[]\\ \x00\xff";
        let bases = valid_bodies()
            .into_iter()
            .map(|(_, b)| serde_json::to_vec_pretty(&b).unwrap());
        for base in std::iter::once(body).chain(bases) {
            for _ in 0..2000 {
                let mut body = base.clone();
                for _ in 0..(1 + next() % 4) {
                    let at = (next() % body.len() as u64) as usize;
                    body[at] = interesting[(next() % interesting.len() as u64) as usize];
                }
                let _ = parse_untrusted(&body);
            }
        }
        let deep = format!(
            "{{\"type\": \"order.placed\", \"data\": {}1{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(parse_untrusted(deep.as_bytes()).is_err());
        let long = format!("{{\"type\": \"{}\"}}", "Q".repeat(100_000));
        match parse_untrusted(long.as_bytes()) {
            Err(AdapterError::Invalid(m)) => assert!(m.len() < 400, "{} chars", m.len()),
            other => panic!("{other:?}"),
        }
        // Very many signature entries cost one MAC per secret, and fail cleanly.
        let body = bytes(&order_body());
        let mut headers = delivery(&body, SECRET, "msg_1");
        headers[3].1 = vec!["v1,AAAA"; 10_000].join(" ");
        assert_eq!(run(&headers, &body), Err(AdapterError::BadSignature));
    }
}
