//! Helpers shared by the source adapters: JSON error mapping, message clipping, lenient
//! field readers, time parsing, slugs, hex, money and dedupe keys. Pure, like the adapters.

use std::fmt;

use contracts::{
    Checkpoint, Currency, Envelope, Event, ExternalId, Money, ShipmentUpdated, Source, TenantId,
};
use serde::Deserialize;
use serde::de::{self, Deserializer, Unexpected, Visitor};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::{AdapterError, Headers, Parsed, header, verify_hmac_b64};

/// Longest error message or ignored topic built from payload content (serde messages can
/// quote input).
pub(crate) const MAX_MESSAGE: usize = 240;

// ---------------------------------------------------------------------------------------
// Signatures.

/// Checks the signature header (the first of `names` present and not blank) as
/// `base64(HMAC-SHA256(secret, body))` against each of `secrets`: absent is
/// [`AdapterError::MissingSignature`], no match is [`AdapterError::BadSignature`].
pub(crate) fn check_hmac_b64<H: Headers + ?Sized>(
    secrets: &[&[u8]],
    headers: &H,
    names: &[&str],
    body: &[u8],
) -> Result<(), AdapterError> {
    let signature = header(headers, names).ok_or(AdapterError::MissingSignature)?;
    if verify_hmac_b64(secrets, body, signature) {
        Ok(())
    } else {
        Err(AdapterError::BadSignature)
    }
}

// ---------------------------------------------------------------------------------------
// JSON and error messages.

/// serde would also read a struct from a positional array; a webhook body is an object.
pub(crate) fn expect_object(body: &[u8]) -> Result<(), AdapterError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(AdapterError::Invalid(
            "expected a json object, found an array".to_owned(),
        ));
    }
    Ok(())
}

/// A JSON object read into `T`, with errors sorted into malformed and invalid.
pub(crate) fn read_json<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, AdapterError> {
    expect_object(body)?;
    serde_json::from_slice(body).map_err(json_error)
}

pub(crate) fn json_error(e: serde_json::Error) -> AdapterError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => AdapterError::MalformedJson(format!(
            "truncated json at line {} column {}",
            e.line(),
            e.column()
        )),
        Category::Syntax | Category::Io => AdapterError::MalformedJson(clip(e.to_string())),
        Category::Data => AdapterError::Invalid(clip(e.to_string())),
    }
}

/// `s` cut to at most [`MAX_MESSAGE`] bytes (on a char boundary), with `…` when cut.
pub(crate) fn clip(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

pub(crate) fn missing(field: &str) -> AdapterError {
    AdapterError::Invalid(format!("missing field `{field}`"))
}

pub(crate) fn out_of_range(field: &str) -> AdapterError {
    AdapterError::Invalid(format!("{field}: amount out of range"))
}

// ---------------------------------------------------------------------------------------
// Field readers.

/// The trimmed value, unless absent or blank.
pub(crate) fn text(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// [`text`] of an optional owned value (`&Option<String>`, `&Option<Amount>`, …).
pub(crate) fn text_of<S: AsRef<str>>(s: &Option<S>) -> Option<String> {
    text(s.as_ref().map(AsRef::as_ref))
}

/// An ISO 3166-1 alpha-2 code, uppercased, or nothing.
pub(crate) fn country_code(s: &Option<String>) -> Option<String> {
    let t = s.as_deref()?.trim();
    (t.len() == 2 && t.bytes().all(|b| b.is_ascii_alphabetic())).then(|| t.to_ascii_uppercase())
}

/// RFC 3339, or `YYYY-MM-DDTHH:MM:SS[.f]` without an offset, read as UTC. The two forms
/// never both match one string (RFC 3339 needs an offset; the other allows nothing after
/// the seconds), so the order they are tried in does not matter.
pub(crate) fn parse_time(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    OffsetDateTime::parse(s, &Rfc3339).ok().or_else(|| {
        PrimitiveDateTime::parse(
            s,
            format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
            ),
        )
        .ok()
        .map(PrimitiveDateTime::assume_utc)
    })
}

/// A carrier code as a lowercase slug: ASCII letters and digits, lowercased, with each run
/// of anything else turned into one `-` (`usps` stays, `Canada Post` → `canada-post`,
/// `dhl_express` → `dhl-express`). `None` when no letter or digit is left.
pub(crate) fn slug(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut gap = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if gap && !out.is_empty() {
                out.push('-');
            }
            gap = false;
            out.push(c.to_ascii_lowercase());
        } else {
            gap = true;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The parts that are present, joined by `separator`; `None` when none is.
pub(crate) fn join<const N: usize>(separator: &str, parts: [Option<String>; N]) -> Option<String> {
    let parts: Vec<String> = parts.into_iter().flatten().collect();
    (!parts.is_empty()).then(|| parts.join(separator))
}

/// `status`, or `status/detail` when there is a detail: both verbatim.
pub(crate) fn carrier_status(status: &str, detail: Option<&str>) -> String {
    match text(detail) {
        Some(detail) => format!("{status}/{detail}"),
        None => status.to_owned(),
    }
}

/// `City, ST 12345, CC`, leaving out what is blank; `None` when all of it is.
pub(crate) fn location_text(
    city: Option<&str>,
    state: Option<&str>,
    zip: Option<&str>,
    country: Option<&str>,
) -> Option<String> {
    let region = join(" ", [text(state), text(zip)]);
    join(", ", [text(city), region, text(country)])
}

// ---------------------------------------------------------------------------------------
// Hex.

/// Lowercase hex digits of `bytes`.
pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Hex digits (either case) as bytes; `None` for an odd length or a non-hex digit.
pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some((nibble(*hi)? << 4) | nibble(*lo)?),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Money.

pub(crate) fn money(field: &str, amount: &str, currency: &Currency) -> Result<Money, AdapterError> {
    Money::parse_decimal(amount, currency.clone())
        .map_err(|e| AdapterError::Invalid(clip(format!("{field}: {e}"))))
}

/// An optional amount: absent or blank is zero.
pub(crate) fn money_or_zero<S: AsRef<str>>(
    field: &str,
    amount: &Option<S>,
    currency: &Currency,
) -> Result<Money, AdapterError> {
    match text_of(amount) {
        Some(a) => money(field, &a, currency),
        None => Ok(Money::zero(currency.clone())),
    }
}

// ---------------------------------------------------------------------------------------
// Dedupe keys.

/// The business dedupe key of a shipment update from the tracking adapter `system`.
pub(crate) fn shipment_key(system: &str, update: &ShipmentUpdated) -> String {
    format!(
        "{system}:shipment:{}:{}:{}:{}",
        update.carrier,
        update.tracking_number,
        update.carrier_status,
        update.status_at.unix_timestamp()
    )
}

/// The one event of a shipment update from the tracking adapter `system`, keyed with
/// [`shipment_key`] and dated at the update's `status_at`.
pub(crate) fn shipment_events(
    system: &str,
    tenant: &TenantId,
    update: ShipmentUpdated,
    delivery_id: Option<String>,
    topic: String,
) -> Parsed {
    let key = shipment_key(system, &update);
    let source = Source {
        system: system.to_owned(),
        delivery_id,
        topic: Some(topic),
    };
    let envelope = Envelope::new(
        tenant.clone(),
        update.status_at,
        source,
        key,
        Event::ShipmentUpdated(update),
    );
    Parsed::Events(vec![envelope])
}

/// When a shipment's status happened: the time the platform gives for the status, else the
/// newest checkpoint's, else `received_at`.
pub(crate) fn status_time(
    stated: Option<OffsetDateTime>,
    newest: Option<&Checkpoint>,
    received_at: OffsetDateTime,
) -> OffsetDateTime {
    stated
        .or_else(|| newest.map(|c| c.at))
        .unwrap_or(received_at)
}

// ---------------------------------------------------------------------------------------
// Lenient scalar fields.

/// A platform id: a JSON integer or a string of ASCII digits, within `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Id(pub(crate) u64);

impl From<Id> for ExternalId {
    fn from(id: Id) -> Self {
        ExternalId::from(id.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;

        impl Visitor<'_> for IdVisitor {
            type Value = Id;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id (a non-negative integer or a string of digits up to 18446744073709551615)")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                u64::try_from(v)
                    .map(Id)
                    .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                let digits = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
                match v.parse::<u64>() {
                    Ok(n) if digits => Ok(Id(n)),
                    _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
                }
            }
        }

        d.deserialize_any(IdVisitor)
    }
}

/// A string that senders may also write as a JSON integer (`"1Z999"`, `"123"` or `123`):
/// an integer is kept as its decimal digits, never through a float. Floats (including
/// integers beyond `u64`, which serde_json reads as floats), negative numbers, booleans,
/// arrays and objects are refused.
pub(crate) struct Text(pub(crate) String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl Visitor<'_> for TextVisitor {
            type Value = Text;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer up to 18446744073709551615")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                u64::try_from(v)
                    .map(|v| Text(v.to_string()))
                    .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
            }
        }

        d.deserialize_any(TextVisitor)
    }
}
