//! Shopify webhooks: verifies `X-Shopify-Hmac-Sha256` and maps `orders/create` (the REST
//! Order JSON) to an `order.placed` envelope; every other topic is acknowledged and ignored.
//!
//! Use [`verify`] first, on the raw body, then [`parse`] with the [`Verified`] token it
//! returns (or [`verify_and_parse`] for both). Headers are looked up case-insensitively
//! with either prefix: `X-Shopify-…` (HTTPS webhooks) or `shopify-…` (the newer Events
//! delivery).
//!
//! Invariants:
//! - ids never pass through a float: they are read as `u64` from a JSON integer or a string
//!   of digits; a float, a negative number or anything above `u64::MAX` is rejected;
//! - amounts are decimal strings read exactly into minor units of the order's `currency`
//!   (the shop currency), and every sum or product is checked;
//! - the idempotency key is the business key `shopify:order:{id}:placed`, so redeliveries
//!   and duplicate subscriptions of the same order yield the same envelope id;
//! - unknown fields are ignored, so fields Shopify adds later do not break ingestion.

use std::fmt;

use contracts::{
    Address, Currency, Customer, EmailAddress, Envelope, Event, ExternalId, Money, Order,
    OrderLine, OrderPlaced, Source, TenantId,
};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::common::{
    Id, check_hmac_b64, clip, country_code, json_error, missing, money, money_or_zero,
    out_of_range, text_of as text,
};
pub use super::{AdapterError, Headers, Parsed};
use super::{header, sign_hmac_b64};

/// [`Source::system`] of every event from this adapter.
pub const SYSTEM: &str = "shopify";
/// The only topic that produces events so far.
pub const TOPIC_ORDERS_CREATE: &str = "orders/create";

const HMAC_HEADER: [&str; 2] = ["x-shopify-hmac-sha256", "shopify-hmac-sha256"];
const TOPIC_HEADER: [&str; 2] = ["x-shopify-topic", "shopify-topic"];
const WEBHOOK_ID_HEADER: [&str; 2] = ["x-shopify-webhook-id", "shopify-webhook-id"];
const TRIGGERED_AT_HEADER: [&str; 2] = ["x-shopify-triggered-at", "shopify-triggered-at"];

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
/// other than `orders/create` are [`Parsed::Ignored`] whatever their body.
pub fn parse<H: Headers + ?Sized>(
    _verified: &Verified,
    tenant: &TenantId,
    headers: &H,
    body: &[u8],
    received_at: OffsetDateTime,
) -> Result<Parsed, AdapterError> {
    let topic =
        header(headers, &TOPIC_HEADER).ok_or(AdapterError::MissingHeader(TOPIC_HEADER[0]))?;
    if topic != TOPIC_ORDERS_CREATE {
        return Ok(Parsed::Ignored {
            topic: topic.to_owned(),
        });
    }
    let fallback_time = header(headers, &TRIGGERED_AT_HEADER)
        .and_then(parse_rfc3339)
        .unwrap_or(received_at);
    let order = parse_order(body, fallback_time)?;
    let source = Source {
        system: SYSTEM.to_owned(),
        delivery_id: header(headers, &WEBHOOK_ID_HEADER).map(str::to_owned),
        topic: Some(topic.to_owned()),
    };
    let key = format!("shopify:order:{}:placed", order.id);
    let envelope = Envelope::new(
        tenant.clone(),
        order.placed_at,
        source,
        key,
        Event::OrderPlaced(OrderPlaced { order }),
    );
    Ok(Parsed::Events(vec![envelope]))
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

fn parse_order(body: &[u8], fallback_time: OffsetDateTime) -> Result<Order, AdapterError> {
    // serde would also read a struct from a positional array; an order is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(AdapterError::Invalid(
            "expected a json object, found an array".to_owned(),
        ));
    }
    let raw: RawOrder = serde_json::from_slice(body).map_err(json_error)?;
    raw.into_order(fallback_time)
}

fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339).ok()
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

        let mut lines = Vec::with_capacity(raw_lines.len());
        for (i, line) in raw_lines.iter().enumerate() {
            lines.push(line.to_line(i, &currency)?);
        }

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
        let customer = self.customer.as_ref();
        let email = [&self.email, &self.contact_email]
            .into_iter()
            .chain(customer.map(|c| &c.email))
            .filter_map(|e| e.as_deref())
            .find_map(|e| EmailAddress::parse(e).ok());
        // Both names from the first source that has either, so names are never mixed.
        let (first_name, last_name) = customer
            .map(|c| (text(&c.first_name), text(&c.last_name)))
            .into_iter()
            .chain(self.billing_address.as_ref().map(RawAddress::names))
            .chain(self.shipping_address.as_ref().map(RawAddress::names))
            .find(|(first, last)| first.is_some() || last.is_some())
            .unwrap_or((None, None));
        let country = self
            .shipping_address
            .as_ref()
            .and_then(|a| country_code(&a.country_code))
            .or_else(|| {
                self.billing_address
                    .as_ref()
                    .and_then(|a| country_code(&a.country_code))
            });
        Customer {
            id: customer.and_then(|c| c.id).map(ExternalId::from),
            email,
            first_name,
            last_name,
            locale: locale(&self.customer_locale),
            country,
            accepts_marketing: self.buyer_accepts_marketing,
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

    const SAMPLE: &[u8] =
        include_bytes!("../../fixtures/shopify_orders_create.json");
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
            "orders/paid",
            "app/uninstalled",
            "customers/redact",
            "ORDERS/CREATE",
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
        let only_topic = vec![("SHOPIFY-TOPIC".to_owned(), "orders/paid".to_owned())];
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
                topic: "orders/paid".to_owned()
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
}
