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
//! - `data` must be the contract payload (`OrderPlaced` or `ShipmentUpdated`), so the
//!   contract types reject what they cannot hold (an invalid email or currency, an id that
//!   is a number instead of a string, a float amount); on top of that an order's amounts
//!   must all be in the order's currency, and a shipment needs a carrier slug, a tracking
//!   number and a carrier status;
//! - the idempotency key is `postflow:` + the body's `idempotency_key` if it has one, else
//!   the business key (`postflow:order:{id}:placed`,
//!   `postflow:shipment:{carrier}:{tracking_number}:{carrier_status}:{status_at unix}`);
//! - an unknown `type` is acknowledged and ignored, so senders may post more than Postflow
//!   uses; unknown fields are ignored too.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use contracts::{Envelope, Event, Money, Order, OrderPlaced, ShipmentUpdated, Source, TenantId};
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
        /// `occurred_at`, else the order's `placed_at` or the shipment's `status_at`.
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

/// Maps a verified delivery to events: one for `order.placed` or `shipment.updated`,
/// [`Parsed::Ignored`] (naming the type) for any other `type`.
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

fn parse_payload(body: &[u8]) -> Result<Payload, AdapterError> {
    let head: RawHead = read_json(body)?;
    let kind = string_field("type", head.kind)?.ok_or_else(|| missing("type"))?;
    if !is_event_type(&kind) {
        return Err(AdapterError::Invalid(clip(format!(
            "type {kind:?}: expected 1 to {MAX_TYPE} lowercase letters, digits, '.', '_' or '-'"
        ))));
    }
    let (event, natural_time, business_key) = match kind.as_str() {
        TYPE_ORDER_PLACED => {
            let placed: OrderPlaced = read_data(body)?;
            check_order(&placed.order)?;
            let at = placed.order.placed_at;
            let key = format!("order:{}:placed", placed.order.id);
            (Event::OrderPlaced(placed), at, key)
        }
        TYPE_SHIPMENT_UPDATED => {
            let shipment: ShipmentUpdated = read_data(body)?;
            check_shipment(&shipment)?;
            let at = shipment.status_at;
            let key = format!(
                "shipment:{}:{}:{}:{}",
                shipment.carrier,
                shipment.tracking_number,
                shipment.carrier_status,
                at.unix_timestamp()
            );
            (Event::ShipmentUpdated(shipment), at, key)
        }
        _ => return Ok(Payload::Unknown { kind }),
    };
    let occurred_at = match string_field("occurred_at", head.occurred_at)? {
        Some(s) => OffsetDateTime::parse(s.trim(), &Rfc3339).map_err(|_| {
            AdapterError::Invalid(clip(format!(
                "occurred_at {s:?}: expected an RFC 3339 date-time"
            )))
        })?,
        None => natural_time,
    };
    let key = match string_field("idempotency_key", head.idempotency_key)? {
        Some(k) if is_idempotency_key(&k) => k,
        Some(k) => {
            return Err(AdapterError::Invalid(clip(format!(
                "idempotency_key {k:?}: expected 1 to {MAX_IDEMPOTENCY_KEY} visible ascii characters"
            ))));
        }
        None => business_key,
    };
    Ok(Payload::Event {
        event,
        occurred_at,
        idempotency_key: format!("postflow:{key}"),
    })
}

fn read_data<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, AdapterError> {
    let RawData { data } = read_json::<RawData<T>>(body)?;
    data.ok_or_else(|| missing("data"))
}

/// What the contract types cannot say: an order's amounts are all in its currency, and its
/// id and number are not blank.
fn check_order(order: &Order) -> Result<(), AdapterError> {
    if order.id.as_str().trim().is_empty() {
        return Err(AdapterError::Invalid(
            "data.order.id: must not be blank".to_owned(),
        ));
    }
    if order.number.trim().is_empty() {
        return Err(AdapterError::Invalid(
            "data.order.number: must not be blank".to_owned(),
        ));
    }
    let totals = [
        ("subtotal", &order.subtotal),
        ("shipping", &order.shipping),
        ("tax", &order.tax),
        ("discounts", &order.discounts),
        ("total", &order.total),
    ]
    .into_iter()
    .map(|(name, money)| (name.to_owned(), money));
    let lines = order.lines.iter().enumerate().flat_map(|(i, line)| {
        [
            (format!("lines[{i}].unit_price"), &line.unit_price),
            (format!("lines[{i}].total"), &line.total),
        ]
    });
    for (field, money) in totals.chain(lines) {
        check_currency(&field, money, order)?;
    }
    Ok(())
}

fn check_currency(field: &str, money: &Money, order: &Order) -> Result<(), AdapterError> {
    if money.currency == order.currency {
        return Ok(());
    }
    Err(AdapterError::Invalid(format!(
        "data.order.{field}: currency {} differs from the order currency {}",
        money.currency, order.currency
    )))
}

/// What the contract types cannot say: a carrier slug, and a tracking number and carrier
/// status that are not blank (all three make up the business key).
fn check_shipment(shipment: &ShipmentUpdated) -> Result<(), AdapterError> {
    if !is_carrier_slug(&shipment.carrier) {
        return Err(AdapterError::Invalid(clip(format!(
            "data.carrier {:?}: expected a lowercase slug such as \"ups\" or \"dhl-express\"",
            shipment.carrier
        ))));
    }
    if shipment.tracking_number.trim().is_empty() {
        return Err(AdapterError::Invalid(
            "data.tracking_number: must not be blank".to_owned(),
        ));
    }
    if shipment.carrier_status.trim().is_empty() {
        return Err(AdapterError::Invalid(
            "data.carrier_status: must not be blank".to_owned(),
        ));
    }
    Ok(())
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
    use contracts::{
        Address, Checkpoint, Currency, Customer, EmailAddress, ExternalId, OrderLine,
        ShipmentStatus,
    };
    use serde_json::{Value, json};
    use time::macros::datetime;

    const VECTOR: &[u8] = include_bytes!(
        "../../fixtures/standard_webhooks_test_vector.json"
    );
    const SCHEMA: &str = include_str!("../../../../proto/webhooks/postflow-generic.schema.json");
    const DOC: &str = include_str!("../../../../proto/webhooks/postflow-generic.md");
    // The `$ref` targets of the schema, relative to it (a missing file fails the build).
    const ORDER_SCHEMA: &str = include_str!("../../../../proto/schemas/order.placed.schema.json");
    const SHIPMENT_SCHEMA: &str =
        include_str!("../../../../proto/schemas/shipment.updated.schema.json");

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
        // Every ```json block in the documentation is a body this adapter accepts.
        let blocks: Vec<&str> = DOC
            .split("```json\n")
            .skip(1)
            .map(|rest| rest.split("\n```").next().unwrap())
            .collect();
        assert_eq!(blocks.len(), 2);
        let mut got = Vec::new();
        for block in blocks {
            match parse_untrusted(block.as_bytes()) {
                Ok(Payload::Event {
                    event,
                    idempotency_key,
                    ..
                }) => got.push((event.kind().as_str(), idempotency_key)),
                other => panic!("{other:?} for\n{block}"),
            }
        }
        let shipment_key = "postflow:shipment:dhl:JJD000390007882719:out-for-delivery:1773643330";
        assert!(DOC.contains(shipment_key));
        assert_eq!(
            got,
            [
                (TYPE_ORDER_PLACED, "postflow:order:10421:placed".to_owned()),
                (TYPE_SHIPMENT_UPDATED, shipment_key.to_owned()),
            ]
        );
        // The worked example is the test vector.
        let v = vector();
        assert!(DOC.contains(&v.signature) && DOC.contains(&v.secret) && DOC.contains(&v.id));

        let schema: Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(schema["required"], json!(["type"]));
        let branches: Vec<(String, String)> = schema["allOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["if"]["properties"]["type"]["const"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    b["then"]["properties"]["data"]["$ref"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
            })
            .collect();
        assert_eq!(
            branches,
            [
                (
                    TYPE_ORDER_PLACED.to_owned(),
                    "../schemas/order.placed.schema.json".to_owned()
                ),
                (
                    TYPE_SHIPMENT_UPDATED.to_owned(),
                    "../schemas/shipment.updated.schema.json".to_owned()
                ),
            ]
        );
        let title = |s: &str| serde_json::from_str::<Value>(s).unwrap()["title"].clone();
        assert_eq!(title(ORDER_SCHEMA), "OrderPlaced");
        assert_eq!(title(SHIPMENT_SCHEMA), "ShipmentUpdated");
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
        assert_eq!(
            schema["allOf"][1]["then"]["properties"]["data"]["properties"]["carrier"]["pattern"],
            "^[a-z0-9][a-z0-9_-]{0,63}$"
        );
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
        for base in [body, serde_json::to_vec_pretty(&shipment_body()).unwrap()] {
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
