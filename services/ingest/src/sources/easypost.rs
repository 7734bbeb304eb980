//! EasyPost tracker webhooks: verifies `X-Hmac-Signature` and maps `tracker.created` and
//! `tracker.updated` Events to a `shipment.updated` envelope; every other Event is
//! acknowledged and ignored.
//!
//! Use [`verify`] first, on the raw body, then [`parse`] with the [`Verified`] token it
//! returns (or [`verify_and_parse`] for both).
//!
//! Wire format (reference README §4, [primary]: EasyPost's own client-library fixtures):
//! every webhook is an `Event` object, `description` names it, `id` (`evt_…`) identifies it,
//! `mode` is `production` or `test`, and `result` is the Tracker (`tracking_code`,
//! `carrier`, `status`, `status_detail`, `tracking_details[]`, `est_delivery_date`,
//! `public_url`).
//!
//! Invariants:
//! - the signature is checked over the raw bytes before any JSON is read;
//! - ids and tracking codes never pass through a float: a JSON string, or a JSON integer
//!   kept as its digits; floats and integers beyond `u64` are refused;
//! - the idempotency key is the business key
//!   `easypost:shipment:{carrier}:{tracking_code}:{carrier_status}:{status_at unix seconds}`,
//!   so redeliveries, and the same tracker state sent to two webhooks, give one envelope id;
//! - unknown fields are ignored, so fields EasyPost adds later do not break ingestion.

use contracts::{Checkpoint, ShipmentStatus, ShipmentUpdated, TenantId};
use hmac::Mac;
use serde::Deserialize;
use time::OffsetDateTime;

use super::common::{
    Text, carrier_status, clip, hex_decode, hex_encode, location_text, missing, parse_time,
    read_json, shipment_events, slug, text,
};
pub use super::{AdapterError, Headers, Parsed};
use super::{HmacSha256, header};

/// [`Source::system`](contracts::Source::system) of every event from this adapter.
pub const SYSTEM: &str = "easypost";
/// The Event descriptions that produce events; every other description is ignored.
pub const TOPICS: [&str; 2] = ["tracker.created", "tracker.updated"];

const SIGNATURE_HEADER: [&str; 1] = ["x-hmac-signature"];
const SIGNATURE_PREFIX: &str = "hmac-sha256-hex=";

/// Proof that a body's signature was checked. Only [`verify`] makes one.
#[derive(Debug)]
pub struct Verified(());

/// The `X-Hmac-Signature` value EasyPost would send for `body` with webhook secret `secret`:
/// `hmac-sha256-hex=` and the lowercase hex HMAC-SHA256 keyed with the secret's NFKD form.
/// `None` for a secret that can never verify (see [`verify`]).
#[must_use]
pub fn sign(secret: &[u8], body: &[u8]) -> Option<String> {
    let mut mac = mac_for(secret)?;
    mac.update(body);
    Some(format!(
        "{SIGNATURE_PREFIX}{}",
        hex_encode(&mac.finalize().into_bytes())
    ))
}

/// Checks `X-Hmac-Signature` against the raw body with each of `secrets` (several during a
/// rotation). Does not look at the body's content.
///
/// EasyPost keys the HMAC with the UTF-8 bytes of the NFKD-normalised `webhook_secret`
/// (README §4 [primary]: `easypost-python` `validate_webhook`; proved by the test on
/// `easypost_webhook_hmac_test_vector.json`, whose secret `sécret` only verifies once
/// normalised). The normalisation here is built in and covers ASCII, Latin-1 Supplement,
/// Latin Extended-A and the combining diacritics (U+0300–U+036F), which is what European
/// secrets use. A secret that is empty, not UTF-8, or holds any other character is skipped,
/// so it never verifies anything rather than verifying with a wrongly derived key.
pub fn verify<H: Headers + ?Sized>(
    secrets: &[&[u8]],
    headers: &H,
    body: &[u8],
) -> Result<Verified, AdapterError> {
    let value = header(headers, &SIGNATURE_HEADER).ok_or(AdapterError::MissingSignature)?;
    let digest = value
        .get(..SIGNATURE_PREFIX.len())
        .filter(|prefix| prefix.eq_ignore_ascii_case(SIGNATURE_PREFIX))
        .and_then(|_| value.get(SIGNATURE_PREFIX.len()..))
        .and_then(hex_decode)
        .ok_or(AdapterError::BadSignature)?;
    let matches = secrets
        .iter()
        .filter_map(|secret| mac_for(secret))
        .any(|mut mac| {
            mac.update(body);
            // `verify_slice` compares in constant time and refuses a tag of the wrong length.
            mac.verify_slice(&digest).is_ok()
        });
    if matches {
        Ok(Verified(()))
    } else {
        Err(AdapterError::BadSignature)
    }
}

/// Maps a verified delivery to events. Descriptions other than `tracker.created` and
/// `tracker.updated`, test-mode Events (`"mode": "test"`, which are not real parcels) and
/// trackers whose status has no canonical equivalent are [`Parsed::Ignored`].
pub fn parse<H: Headers + ?Sized>(
    _verified: &Verified,
    tenant: &TenantId,
    _headers: &H,
    body: &[u8],
    received_at: OffsetDateTime,
) -> Result<Parsed, AdapterError> {
    match interpret(body, received_at)? {
        Outcome::Ignored { topic } => Ok(Parsed::Ignored { topic }),
        Outcome::Update {
            test: true, topic, ..
        } => Ok(Parsed::Ignored {
            topic: format!("{topic} (test mode)"),
        }),
        Outcome::Update {
            update,
            topic,
            delivery_id,
            test: false,
        } => Ok(shipment_events(SYSTEM, tenant, *update, delivery_id, topic)),
    }
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

/// The mapping alone, without signature or headers, for fuzzing: never panics on any
/// input. Test-mode Events are mapped too; ignored ones give no update. Without any time
/// in the body, `status_at` is the Unix epoch.
pub fn parse_untrusted(body: &[u8]) -> Result<Vec<ShipmentUpdated>, AdapterError> {
    Ok(match interpret(body, OffsetDateTime::UNIX_EPOCH)? {
        Outcome::Update { update, .. } => vec![*update],
        Outcome::Ignored { .. } => Vec::new(),
    })
}

/// EasyPost's tracker `status` (or a tracking detail's) in the canonical set, or `None`
/// when it has no canonical equivalent.
///
/// The vocabulary is README §4: `pre_transit`, `in_transit`, `delivered` and `unknown` are
/// seen in EasyPost's own fixtures [primary]; the full list is [secondary] (several
/// independent integrations agree; EasyPost's page listing it was not retrieved). The
/// mapping follows the README §8 table [derived], with these decisions:
/// - `unknown` (no tracking information yet) is the README's "Pending", which has no
///   canonical equivalent: `None`;
/// - `cancelled` is a label or tracker cancellation, not something that happened to the
///   parcel (README §8 note): `None`, so no customer email;
/// - `failure` and `error` are `exception`, as the README table says; EasyPost has no
///   distinct failed-attempt status, so an attempt may arrive as `failure`;
/// - `status_detail` (`label_created`, `arrived_at_facility`, `departed_facility`, …) never
///   changes the canonical status: no documented value contradicts its status.
#[must_use]
pub fn map_status(status: &str) -> Option<ShipmentStatus> {
    match status {
        "pre_transit" => Some(ShipmentStatus::InfoReceived),
        "in_transit" => Some(ShipmentStatus::InTransit),
        "out_for_delivery" => Some(ShipmentStatus::OutForDelivery),
        "available_for_pickup" => Some(ShipmentStatus::AvailableForPickup),
        "delivered" => Some(ShipmentStatus::Delivered),
        "return_to_sender" => Some(ShipmentStatus::ReturnedToSender),
        "failure" | "error" => Some(ShipmentStatus::Exception),
        // "unknown", "cancelled", and anything EasyPost may add later.
        _ => None,
    }
}

/// What a delivery amounts to, before the signature-dependent envelope is built.
enum Outcome {
    Update {
        update: Box<ShipmentUpdated>,
        topic: String,
        delivery_id: Option<String>,
        test: bool,
    },
    Ignored {
        topic: String,
    },
}

fn interpret(body: &[u8], received_at: OffsetDateTime) -> Result<Outcome, AdapterError> {
    // First the Event's head alone, so that Events about other objects are acknowledged
    // whatever their `result` looks like.
    let head: RawHead = read_json(body)?;
    let topic = text(head.description.as_deref()).ok_or_else(|| missing("description"))?;
    if !TOPICS.contains(&topic.as_str()) {
        return Ok(Outcome::Ignored { topic: clip(topic) });
    }
    let event: RawEvent = read_json(body)?;
    let tracker = event.result.ok_or_else(|| missing("result"))?;
    Ok(match tracker.into_update(received_at)? {
        Mapping::Update(update) => Outcome::Update {
            update,
            topic,
            delivery_id: head.id.map(|id| id.0),
            test: head.mode.as_deref().map(str::trim) == Some("test"),
        },
        Mapping::Unmapped(carrier_status) => Outcome::Ignored {
            topic: clip(format!("{topic} ({carrier_status})")),
        },
    })
}

enum Mapping {
    Update(Box<ShipmentUpdated>),
    /// The tracker's status has no canonical equivalent (or there is none): its
    /// carrier status, or `no status`.
    Unmapped(String),
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "an event object")]
struct RawHead {
    description: Option<String>,
    id: Option<Text>,
    mode: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "an event object")]
struct RawEvent {
    result: Option<RawTracker>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a tracker object")]
struct RawTracker {
    tracking_code: Option<Text>,
    carrier: Option<String>,
    status: Option<String>,
    status_detail: Option<String>,
    updated_at: Option<String>,
    est_delivery_date: Option<String>,
    public_url: Option<String>,
    tracking_details: Option<Vec<RawDetail>>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a tracking detail object")]
struct RawDetail {
    message: Option<String>,
    status: Option<String>,
    status_detail: Option<String>,
    datetime: Option<String>,
    tracking_location: Option<RawLocation>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a tracking location object")]
struct RawLocation {
    city: Option<String>,
    state: Option<String>,
    zip: Option<String>,
    country: Option<String>,
}

impl RawTracker {
    fn into_update(self, received_at: OffsetDateTime) -> Result<Mapping, AdapterError> {
        let tracking_number = self
            .tracking_code
            .as_ref()
            .and_then(|t| text(Some(&t.0)))
            .ok_or_else(|| missing("result.tracking_code"))?;
        let carrier = text(self.carrier.as_deref()).ok_or_else(|| missing("result.carrier"))?;
        let carrier = slug(&carrier).ok_or_else(|| {
            AdapterError::Invalid(clip(format!(
                "result.carrier: {carrier:?} has no letters or digits"
            )))
        })?;
        let Some(status) = text(self.status.as_deref()) else {
            return Ok(Mapping::Unmapped("no status".to_owned()));
        };
        let carrier_status = carrier_status(&status, self.status_detail.as_deref());
        let Some(canonical) = map_status(&status) else {
            return Ok(Mapping::Unmapped(carrier_status));
        };

        // Oldest first; the sort is stable, so details with the same time keep their order.
        let mut checkpoints: Vec<Checkpoint> = self
            .tracking_details
            .iter()
            .flatten()
            .filter_map(RawDetail::to_checkpoint)
            .collect();
        checkpoints.sort_by_key(|c| c.at);
        let newest = checkpoints.last();

        // A tracker carries no time of its status: the newest detail is when the carrier
        // says it happened, else the tracker's `updated_at`, else the receive time.
        let status_at = newest
            .map(|c| c.at)
            .or_else(|| self.updated_at.as_deref().and_then(parse_time))
            .unwrap_or(received_at);

        Ok(Mapping::Update(Box::new(ShipmentUpdated {
            carrier,
            tracking_number,
            status: canonical,
            carrier_status,
            message: newest.and_then(|c| c.message.clone()),
            location: newest.and_then(|c| c.location.clone()),
            status_at,
            // A tracker carries no order reference (`shipment_id` is EasyPost's own id).
            order_ref: None,
            tracking_url: text(self.public_url.as_deref()),
            estimated_delivery: self.est_delivery_date.as_deref().and_then(parse_time),
            checkpoints,
        })))
    }
}

impl RawDetail {
    /// The detail as a checkpoint; `None` (skipped) without a usable time or a status
    /// with a canonical equivalent.
    fn to_checkpoint(&self) -> Option<Checkpoint> {
        let at = self.datetime.as_deref().and_then(parse_time)?;
        let status = text(self.status.as_deref())?;
        Some(Checkpoint {
            at,
            status: map_status(&status)?,
            carrier_status: carrier_status(&status, self.status_detail.as_deref()),
            message: text(self.message.as_deref()),
            location: self
                .tracking_location
                .as_ref()
                .and_then(RawLocation::to_text),
        })
    }
}

impl RawLocation {
    /// `City, ST 12345, CC`, leaving out what is blank; `None` when all of it is.
    fn to_text(&self) -> Option<String> {
        location_text(
            self.city.as_deref(),
            self.state.as_deref(),
            self.zip.as_deref(),
            self.country.as_deref(),
        )
    }
}

/// An HMAC keyed with the NFKD form of `secret`, or `None` if `secret` can never verify.
fn mac_for(secret: &[u8]) -> Option<HmacSha256> {
    if secret.is_empty() {
        return None;
    }
    let key = nfkd(std::str::from_utf8(secret).ok()?)?;
    HmacSha256::new_from_slice(key.as_bytes()).ok()
}

// ---------------------------------------------------------------------------------------
// Unicode NFKD for the characters this adapter supports.

/// The NFKD form of `s`, or `None` if `s` has a character outside ASCII, Latin-1
/// Supplement, Latin Extended-A (U+0080–U+017F) and the combining diacritics
/// (U+0300–U+036F). Within those blocks every character is assigned, and decompositions of
/// assigned characters never change (Unicode's normalisation stability policy), so the
/// result equals any conforming NFKD.
fn nfkd(s: &str) -> Option<String> {
    if s.is_ascii() {
        return Some(s.to_owned());
    }
    let mut out: Vec<char> = Vec::with_capacity(s.len() + 8);
    for c in s.chars() {
        let supported = c.is_ascii() || ('\u{80}'..='\u{17F}').contains(&c) || is_diacritic(c);
        if !supported {
            return None;
        }
        match DECOMPOSITIONS.binary_search_by_key(&c, |&(k, _)| k) {
            Ok(i) => out.extend(DECOMPOSITIONS.get(i)?.1.chars()),
            Err(_) => out.push(c),
        }
    }
    // Canonical ordering: each run of non-starters is stably sorted by combining class.
    let mut start = 0;
    while start < out.len() {
        let end = out
            .get(start..)?
            .iter()
            .position(|&c| combining_class(c) == 0)
            .map_or(out.len(), |n| start + n);
        if end > start {
            out.get_mut(start..end)?
                .sort_by_key(|&c| combining_class(c));
            start = end;
        } else {
            start += 1;
        }
    }
    Some(out.into_iter().collect())
}

fn is_diacritic(c: char) -> bool {
    ('\u{300}'..='\u{36F}').contains(&c)
}

/// Canonical combining class; every character this module emits with a non-zero class
/// lies in U+0300–U+036F.
fn combining_class(c: char) -> u8 {
    let cp = u32::from(c);
    COMBINING_CLASSES
        .iter()
        .find(|&&(lo, hi, _)| (lo..=hi).contains(&cp))
        .map_or(0, |&(_, _, class)| class)
}

/// Full compatibility decompositions (already canonically ordered) of every character in
/// U+0080–U+017F and U+0300–U+036F that has one, sorted by character. Generated from
/// Python 3.11 `unicodedata` (Unicode 14.0) with
/// `[(c, normalize("NFKD", c)) for c in block if normalize("NFKD", c) != c]`.
#[rustfmt::skip]
const DECOMPOSITIONS: [(char, &str); 185] = [
    ('\u{A0}', " "), ('\u{A8}', " \u{308}"), ('\u{AA}', "a"), ('\u{AF}', " \u{304}"),
    ('\u{B2}', "2"), ('\u{B3}', "3"), ('\u{B4}', " \u{301}"), ('\u{B5}', "\u{3BC}"),
    ('\u{B8}', " \u{327}"), ('\u{B9}', "1"), ('\u{BA}', "o"), ('\u{BC}', "1\u{2044}4"),
    ('\u{BD}', "1\u{2044}2"), ('\u{BE}', "3\u{2044}4"), ('\u{C0}', "A\u{300}"),
    ('\u{C1}', "A\u{301}"), ('\u{C2}', "A\u{302}"), ('\u{C3}', "A\u{303}"), ('\u{C4}', "A\u{308}"),
    ('\u{C5}', "A\u{30A}"), ('\u{C7}', "C\u{327}"), ('\u{C8}', "E\u{300}"), ('\u{C9}', "E\u{301}"),
    ('\u{CA}', "E\u{302}"), ('\u{CB}', "E\u{308}"), ('\u{CC}', "I\u{300}"), ('\u{CD}', "I\u{301}"),
    ('\u{CE}', "I\u{302}"), ('\u{CF}', "I\u{308}"), ('\u{D1}', "N\u{303}"), ('\u{D2}', "O\u{300}"),
    ('\u{D3}', "O\u{301}"), ('\u{D4}', "O\u{302}"), ('\u{D5}', "O\u{303}"), ('\u{D6}', "O\u{308}"),
    ('\u{D9}', "U\u{300}"), ('\u{DA}', "U\u{301}"), ('\u{DB}', "U\u{302}"), ('\u{DC}', "U\u{308}"),
    ('\u{DD}', "Y\u{301}"), ('\u{E0}', "a\u{300}"), ('\u{E1}', "a\u{301}"), ('\u{E2}', "a\u{302}"),
    ('\u{E3}', "a\u{303}"), ('\u{E4}', "a\u{308}"), ('\u{E5}', "a\u{30A}"), ('\u{E7}', "c\u{327}"),
    ('\u{E8}', "e\u{300}"), ('\u{E9}', "e\u{301}"), ('\u{EA}', "e\u{302}"), ('\u{EB}', "e\u{308}"),
    ('\u{EC}', "i\u{300}"), ('\u{ED}', "i\u{301}"), ('\u{EE}', "i\u{302}"), ('\u{EF}', "i\u{308}"),
    ('\u{F1}', "n\u{303}"), ('\u{F2}', "o\u{300}"), ('\u{F3}', "o\u{301}"), ('\u{F4}', "o\u{302}"),
    ('\u{F5}', "o\u{303}"), ('\u{F6}', "o\u{308}"), ('\u{F9}', "u\u{300}"), ('\u{FA}', "u\u{301}"),
    ('\u{FB}', "u\u{302}"), ('\u{FC}', "u\u{308}"), ('\u{FD}', "y\u{301}"), ('\u{FF}', "y\u{308}"),
    ('\u{100}', "A\u{304}"), ('\u{101}', "a\u{304}"), ('\u{102}', "A\u{306}"),
    ('\u{103}', "a\u{306}"), ('\u{104}', "A\u{328}"), ('\u{105}', "a\u{328}"),
    ('\u{106}', "C\u{301}"), ('\u{107}', "c\u{301}"), ('\u{108}', "C\u{302}"),
    ('\u{109}', "c\u{302}"), ('\u{10A}', "C\u{307}"), ('\u{10B}', "c\u{307}"),
    ('\u{10C}', "C\u{30C}"), ('\u{10D}', "c\u{30C}"), ('\u{10E}', "D\u{30C}"),
    ('\u{10F}', "d\u{30C}"), ('\u{112}', "E\u{304}"), ('\u{113}', "e\u{304}"),
    ('\u{114}', "E\u{306}"), ('\u{115}', "e\u{306}"), ('\u{116}', "E\u{307}"),
    ('\u{117}', "e\u{307}"), ('\u{118}', "E\u{328}"), ('\u{119}', "e\u{328}"),
    ('\u{11A}', "E\u{30C}"), ('\u{11B}', "e\u{30C}"), ('\u{11C}', "G\u{302}"),
    ('\u{11D}', "g\u{302}"), ('\u{11E}', "G\u{306}"), ('\u{11F}', "g\u{306}"),
    ('\u{120}', "G\u{307}"), ('\u{121}', "g\u{307}"), ('\u{122}', "G\u{327}"),
    ('\u{123}', "g\u{327}"), ('\u{124}', "H\u{302}"), ('\u{125}', "h\u{302}"),
    ('\u{128}', "I\u{303}"), ('\u{129}', "i\u{303}"), ('\u{12A}', "I\u{304}"),
    ('\u{12B}', "i\u{304}"), ('\u{12C}', "I\u{306}"), ('\u{12D}', "i\u{306}"),
    ('\u{12E}', "I\u{328}"), ('\u{12F}', "i\u{328}"), ('\u{130}', "I\u{307}"), ('\u{132}', "IJ"),
    ('\u{133}', "ij"), ('\u{134}', "J\u{302}"), ('\u{135}', "j\u{302}"), ('\u{136}', "K\u{327}"),
    ('\u{137}', "k\u{327}"), ('\u{139}', "L\u{301}"), ('\u{13A}', "l\u{301}"),
    ('\u{13B}', "L\u{327}"), ('\u{13C}', "l\u{327}"), ('\u{13D}', "L\u{30C}"),
    ('\u{13E}', "l\u{30C}"), ('\u{13F}', "L\u{B7}"), ('\u{140}', "l\u{B7}"),
    ('\u{143}', "N\u{301}"), ('\u{144}', "n\u{301}"), ('\u{145}', "N\u{327}"),
    ('\u{146}', "n\u{327}"), ('\u{147}', "N\u{30C}"), ('\u{148}', "n\u{30C}"),
    ('\u{149}', "\u{2BC}n"), ('\u{14C}', "O\u{304}"), ('\u{14D}', "o\u{304}"),
    ('\u{14E}', "O\u{306}"), ('\u{14F}', "o\u{306}"), ('\u{150}', "O\u{30B}"),
    ('\u{151}', "o\u{30B}"), ('\u{154}', "R\u{301}"), ('\u{155}', "r\u{301}"),
    ('\u{156}', "R\u{327}"), ('\u{157}', "r\u{327}"), ('\u{158}', "R\u{30C}"),
    ('\u{159}', "r\u{30C}"), ('\u{15A}', "S\u{301}"), ('\u{15B}', "s\u{301}"),
    ('\u{15C}', "S\u{302}"), ('\u{15D}', "s\u{302}"), ('\u{15E}', "S\u{327}"),
    ('\u{15F}', "s\u{327}"), ('\u{160}', "S\u{30C}"), ('\u{161}', "s\u{30C}"),
    ('\u{162}', "T\u{327}"), ('\u{163}', "t\u{327}"), ('\u{164}', "T\u{30C}"),
    ('\u{165}', "t\u{30C}"), ('\u{168}', "U\u{303}"), ('\u{169}', "u\u{303}"),
    ('\u{16A}', "U\u{304}"), ('\u{16B}', "u\u{304}"), ('\u{16C}', "U\u{306}"),
    ('\u{16D}', "u\u{306}"), ('\u{16E}', "U\u{30A}"), ('\u{16F}', "u\u{30A}"),
    ('\u{170}', "U\u{30B}"), ('\u{171}', "u\u{30B}"), ('\u{172}', "U\u{328}"),
    ('\u{173}', "u\u{328}"), ('\u{174}', "W\u{302}"), ('\u{175}', "w\u{302}"),
    ('\u{176}', "Y\u{302}"), ('\u{177}', "y\u{302}"), ('\u{178}', "Y\u{308}"),
    ('\u{179}', "Z\u{301}"), ('\u{17A}', "z\u{301}"), ('\u{17B}', "Z\u{307}"),
    ('\u{17C}', "z\u{307}"), ('\u{17D}', "Z\u{30C}"), ('\u{17E}', "z\u{30C}"), ('\u{17F}', "s"),
    ('\u{340}', "\u{300}"), ('\u{341}', "\u{301}"), ('\u{343}', "\u{313}"),
    ('\u{344}', "\u{308}\u{301}"),
];

/// Canonical combining classes of U+0300–U+036F as `(first, last, class)` ranges
/// (same source as [`DECOMPOSITIONS`]). Every other character emitted here is a starter.
#[rustfmt::skip]
const COMBINING_CLASSES: [(u32, u32, u8); 31] = [
    (0x300, 0x314, 230), (0x315, 0x315, 232), (0x316, 0x319, 220), (0x31A, 0x31A, 232),
    (0x31B, 0x31B, 216), (0x31C, 0x320, 220), (0x321, 0x322, 202), (0x323, 0x326, 220),
    (0x327, 0x328, 202), (0x329, 0x333, 220), (0x334, 0x338, 1), (0x339, 0x33C, 220),
    (0x33D, 0x344, 230), (0x345, 0x345, 240), (0x346, 0x346, 230), (0x347, 0x349, 220),
    (0x34A, 0x34C, 230), (0x34D, 0x34E, 220), (0x34F, 0x34F, 0), (0x350, 0x352, 230),
    (0x353, 0x356, 220), (0x357, 0x357, 230), (0x358, 0x358, 232), (0x359, 0x35A, 220),
    (0x35B, 0x35B, 230), (0x35C, 0x35C, 233), (0x35D, 0x35E, 234), (0x35F, 0x35F, 233),
    (0x360, 0x361, 234), (0x362, 0x362, 233), (0x363, 0x36F, 230),
];

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use contracts::{Envelope, Event, Source};
    use time::macros::datetime;

    /// EasyPost's client-library fixture: one line of JSON and a final newline that the
    /// test vector's signature does not cover (README §0).
    const FIXTURE: &[u8] =
        include_bytes!("../../fixtures/easypost_tracker_updated.json");
    const DOCS_SAMPLE: &[u8] = include_bytes!(
        "../../fixtures/easypost_tracker_updated_delivered_docs.json"
    );
    const VECTOR: &[u8] = include_bytes!(
        "../../fixtures/easypost_webhook_hmac_test_vector.json"
    );
    const SECRET: &[u8] = b"whsec-current";
    const OLD_SECRET: &[u8] = b"whsec-previous";

    fn sample() -> &'static [u8] {
        FIXTURE.strip_suffix(b"\n").unwrap()
    }

    fn vector() -> (String, String) {
        let v: serde_json::Value = serde_json::from_slice(VECTOR).unwrap();
        (
            v["secret"].as_str().unwrap().to_owned(),
            v["hmac_signature"].as_str().unwrap().to_owned(),
        )
    }

    fn tenant() -> TenantId {
        TenantId::parse("demo").unwrap()
    }

    fn received() -> OffsetDateTime {
        datetime!(2026-01-02 03:04:05 UTC)
    }

    fn with(body: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    fn headers(body: &[u8], secret: &[u8]) -> Vec<(String, String)> {
        vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("X-Hmac-Signature".to_owned(), sign(secret, body).unwrap()),
        ]
    }

    fn run(headers: &[(String, String)], body: &[u8]) -> Result<Parsed, AdapterError> {
        verify_and_parse(&[OLD_SECRET, SECRET], &tenant(), headers, body, received())
    }

    fn envelope(body: &[u8]) -> Envelope {
        match run(&headers(body, SECRET), body).unwrap() {
            Parsed::Events(mut events) => {
                assert_eq!(events.len(), 1);
                events.pop().unwrap()
            }
            other => panic!("expected events, got {other:?}"),
        }
    }

    fn update(body: &[u8]) -> ShipmentUpdated {
        let mut updates = parse_untrusted(body).unwrap();
        assert_eq!(updates.len(), 1);
        updates.pop().unwrap()
    }

    fn ignored(body: &[u8]) -> String {
        match run(&headers(body, SECRET), body) {
            Ok(Parsed::Ignored { topic }) => topic,
            other => panic!("expected ignored, got {other:?}"),
        }
    }

    #[test]
    fn official_fixture_maps_exactly_with_the_official_signature() {
        let (secret, signature) = vector();
        let headers = [("X-Hmac-Signature", signature.as_str())];
        let parsed = verify_and_parse(
            &[OLD_SECRET, secret.as_bytes()],
            &tenant(),
            &headers,
            sample(),
            received(),
        )
        .unwrap();
        let Parsed::Events(events) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(events.len(), 1);
        let env = &events[0];
        assert_eq!(
            env.source,
            Source {
                system: "easypost".to_owned(),
                delivery_id: Some("evt_1".to_owned()),
                topic: Some("tracker.updated".to_owned()),
            }
        );
        assert_eq!(
            env.idempotency_key,
            format!(
                "easypost:shipment:fedex:1:in_transit/arrived_at_facility:{}",
                datetime!(2024-08-02 18:50:00 UTC).unix_timestamp()
            )
        );
        assert_eq!(env.occurred_at, datetime!(2024-08-02 18:50:00 UTC));
        let Event::ShipmentUpdated(u) = &env.event else {
            panic!("{:?}", env.event)
        };
        assert_eq!(u.carrier, "fedex");
        assert_eq!(u.tracking_number, "1");
        assert_eq!(u.status, ShipmentStatus::InTransit);
        assert_eq!(u.carrier_status, "in_transit/arrived_at_facility");
        assert_eq!(u.status_at, datetime!(2024-08-02 18:50:00 UTC));
        assert_eq!(u.message.as_deref(), Some("Arrived at FedEx location"));
        assert_eq!(u.location.as_deref(), Some("EDISON, NJ 08817, US"));
        assert_eq!(u.order_ref, None);
        assert_eq!(
            u.tracking_url.as_deref(),
            Some("https://track.easypost.com/1")
        );
        assert_eq!(
            u.estimated_delivery,
            Some(datetime!(2024-08-05 00:00:00 UTC))
        );
        assert_eq!(u.checkpoints.len(), 7);
        let first = &u.checkpoints[0];
        assert_eq!(first.at, datetime!(2024-07-31 15:00:00 UTC));
        assert_eq!(first.status, ShipmentStatus::InfoReceived);
        assert_eq!(first.carrier_status, "pre_transit/label_created");
        assert_eq!(
            first.message.as_deref(),
            Some("Shipment information sent to FedEx")
        );
        assert_eq!(first.location.as_deref(), Some("32837, US"));
        assert_eq!(u.checkpoints[4].carrier_status, "in_transit/unknown");
        assert!(u.checkpoints.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn the_test_vector_proves_the_nfkd_key_and_the_raw_body() {
        let (secret, signature) = vector();
        assert_eq!(secret, "s\u{e9}cret"); // precomposed é in the fixture
        assert_eq!(sample().len(), 3550);
        assert_eq!(sign(secret.as_bytes(), sample()).unwrap(), signature);
        let headers = [("x-hmac-signature", signature.as_str())];
        assert!(verify(&[secret.as_bytes()], &headers, sample()).is_ok());
        // The file with its final newline is another body.
        assert_eq!(
            verify(&[secret.as_bytes()], &headers, FIXTURE).unwrap_err(),
            AdapterError::BadSignature
        );
        // Keyed with the secret as typed (not NFKD) the digest is the README's wrong one.
        let mut raw = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
        raw.update(sample());
        assert!(hex_encode(&raw.finalize().into_bytes()).starts_with("7f1669d6"));
        // The already decomposed secret is the same key.
        assert!(verify(&["se\u{301}cret".as_bytes()], &headers, sample()).is_ok());
    }

    #[test]
    fn nfkd_matches_python_unicodedata() {
        let cases = [
            ("A1B2C3", Some("A1B2C3")),
            ("s\u{e9}cret", Some("se\u{301}cret")),
            ("\u{c5}ngstr\u{f6}m", Some("A\u{30a}ngstro\u{308}m")),
            // Marks are reordered by combining class (cedilla 202 before acute 230).
            ("a\u{301}\u{327}", Some("a\u{327}\u{301}")),
            ("\u{e9}\u{327}", Some("e\u{327}\u{301}")),
            ("x\u{341}\u{316}", Some("x\u{316}\u{301}")),
            ("\u{bd}\u{133} \u{149}", Some("1\u{2044}2ij \u{2bc}n")),
            ("\u{17f}\u{a0}\u{aa}\u{b5}", Some("s a\u{3bc}")),
            ("\u{344}", Some("\u{308}\u{301}")),
            (
                "\u{142}\u{f0}\u{df}\u{fe}",
                Some("\u{142}\u{f0}\u{df}\u{fe}"),
            ), // no decomposition
            ("\u{1c4}", None),  // Latin Extended-B
            ("\u{212b}", None), // Angstrom sign
            ("\u{fb01}", None), // ligature fi
            ("\u{65e5}\u{672c}", None),
        ];
        for (input, expected) in cases {
            assert_eq!(nfkd(input).as_deref(), expected, "{input:?}");
        }
        assert!(DECOMPOSITIONS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn second_of_two_secrets_verifies_during_rotation() {
        let body = sample();
        let h = headers(body, SECRET);
        assert!(verify(&[OLD_SECRET, SECRET], &h, body).is_ok());
        assert_eq!(
            verify(&[OLD_SECRET], &h, body).unwrap_err(),
            AdapterError::BadSignature
        );
        assert!(matches!(run(&h, body), Ok(Parsed::Events(_))));
    }

    #[test]
    fn wrong_missing_and_malformed_signatures_are_refused_before_parsing() {
        let body = sample();
        let good = sign(SECRET, body).unwrap();
        assert_eq!(
            run(&headers(body, b"someone-else"), body),
            Err(AdapterError::BadSignature)
        );
        // A valid signature over another body does not carry over, even to garbage.
        assert_eq!(
            run(&headers(b"{}", SECRET), b"not json"),
            Err(AdapterError::BadSignature)
        );
        let no_header: [(&str, &str); 0] = [];
        assert_eq!(
            verify_and_parse(&[SECRET], &tenant(), &no_header, body, received()),
            Err(AdapterError::MissingSignature)
        );
        let digest = &good[SIGNATURE_PREFIX.len()..];
        for bad in [
            "  ".to_owned(),
            digest.to_owned(),                              // no prefix
            format!("hmac-sha1-hex={digest}"),              // another scheme
            format!("{SIGNATURE_PREFIX}{}", &digest[..62]), // short
            format!("{SIGNATURE_PREFIX}{digest}00"),        // long
            format!("{SIGNATURE_PREFIX}{}zz", &digest[..62]),
            SIGNATURE_PREFIX.to_owned(),
            "hmac-sha256-hex=é".to_owned(),
        ] {
            let h = [("X-Hmac-Signature", bad.as_str())];
            let err = verify_and_parse(&[SECRET], &tenant(), &h, body, received()).unwrap_err();
            let expected = if bad.trim().is_empty() {
                AdapterError::MissingSignature
            } else {
                AdapterError::BadSignature
            };
            assert_eq!(err, expected, "{bad:?}");
        }
        // Upper-case hex and prefix are the same signature.
        let upper = good.to_uppercase();
        assert!(verify(&[SECRET], &[("x-hmac-signature", upper.as_str())], body).is_ok());
    }

    #[test]
    fn empty_non_utf8_and_unsupported_secrets_never_verify() {
        let body = sample();
        for secret in [&b""[..], b"\xff\xfe", "\u{1c4}".as_bytes()] {
            assert_eq!(sign(secret, body), None);
            // Whatever the attacker signs with, such a secret matches nothing.
            let mut mac = HmacSha256::new_from_slice(secret).unwrap();
            mac.update(body);
            let sig = format!(
                "{SIGNATURE_PREFIX}{}",
                hex_encode(&mac.finalize().into_bytes())
            );
            assert_eq!(
                verify(&[secret], &[("x-hmac-signature", sig.as_str())], body).unwrap_err(),
                AdapterError::BadSignature
            );
        }
        let h = headers(body, SECRET);
        assert_eq!(
            verify(&[], &h, body).unwrap_err(),
            AdapterError::BadSignature
        );
    }

    #[test]
    fn docs_sample_is_test_mode_and_maps_exactly() {
        // "mode": "test" is an EasyPost test-mode tracker: acknowledged, not published.
        assert_eq!(ignored(DOCS_SAMPLE), "tracker.updated (test mode)");

        let u = update(DOCS_SAMPLE);
        assert_eq!(u.carrier, "ups");
        assert_eq!(u.tracking_number, "EZ4000000004");
        assert_eq!(u.status, ShipmentStatus::Delivered);
        assert_eq!(u.carrier_status, "delivered");
        assert_eq!(u.checkpoints.len(), 6);
        assert_eq!(u.status_at, datetime!(2014-08-24 15:33:00 UTC));
        assert_eq!(u.message.as_deref(), Some("DELIVERED"));
        assert_eq!(u.location.as_deref(), Some("SAN FRANCISCO, CA, US"));
        assert_eq!(u.checkpoints[0].location, None);
        assert_eq!(
            u.checkpoints.iter().map(|c| c.status).collect::<Vec<_>>(),
            [
                ShipmentStatus::InfoReceived,
                ShipmentStatus::InTransit,
                ShipmentStatus::InTransit,
                ShipmentStatus::InTransit,
                ShipmentStatus::OutForDelivery,
                ShipmentStatus::Delivered,
            ]
        );

        // The same body in production mode is published.
        let body = with(DOCS_SAMPLE, |v| v["mode"] = "production".into());
        let env = envelope(&body);
        assert_eq!(env.source.delivery_id.as_deref(), Some("evt_qatAiJDM"));
        assert_eq!(env.event, Event::ShipmentUpdated(u));
    }

    #[test]
    fn other_events_and_unmapped_statuses_are_ignored() {
        for description in [
            "batch.created",
            "shipment.invoice.created",
            "scanform.updated",
        ] {
            let body = format!(r#"{{"description":"{description}","result":[1,2,{{}}]}}"#);
            assert_eq!(ignored(body.as_bytes()), description);
        }
        for (status, topic) in [
            ("unknown", "tracker.updated (unknown/arrived_at_facility)"),
            (
                "cancelled",
                "tracker.updated (cancelled/arrived_at_facility)",
            ),
            (
                "something_new",
                "tracker.updated (something_new/arrived_at_facility)",
            ),
        ] {
            let body = with(sample(), |v| v["result"]["status"] = status.into());
            assert_eq!(ignored(&body), topic);
        }
        let body = with(sample(), |v| {
            v["result"]["status"] = serde_json::Value::Null;
        });
        assert_eq!(ignored(&body), "tracker.updated (no status)");
        // tracker.created is mapped like tracker.updated.
        let body = with(sample(), |v| v["description"] = "tracker.created".into());
        assert_eq!(
            envelope(&body).source.topic.as_deref(),
            Some("tracker.created")
        );
        let long = format!(r#"{{"description":"{}"}}"#, "x".repeat(1000));
        assert!(ignored(long.as_bytes()).len() < 300);
    }

    #[test]
    fn every_status_of_the_vocabulary_maps() {
        let table = [
            ("unknown", None),
            ("pre_transit", Some(ShipmentStatus::InfoReceived)),
            ("in_transit", Some(ShipmentStatus::InTransit)),
            ("out_for_delivery", Some(ShipmentStatus::OutForDelivery)),
            (
                "available_for_pickup",
                Some(ShipmentStatus::AvailableForPickup),
            ),
            ("delivered", Some(ShipmentStatus::Delivered)),
            ("return_to_sender", Some(ShipmentStatus::ReturnedToSender)),
            ("failure", Some(ShipmentStatus::Exception)),
            ("error", Some(ShipmentStatus::Exception)),
            ("cancelled", None),
            ("IN_TRANSIT", None),
            ("", None),
        ];
        for (status, expected) in table {
            assert_eq!(map_status(status), expected, "{status}");
            if let Some(expected) = expected {
                let body = with(sample(), |v| v["result"]["status"] = status.into());
                assert_eq!(
                    envelope(&body).occurred_at,
                    datetime!(2024-08-02 18:50:00 UTC)
                );
                assert_eq!(update(&body).status, expected);
            }
        }
    }

    #[test]
    fn the_same_update_delivered_twice_has_one_idempotency_key() {
        let a = envelope(sample());
        // A second webhook gets the same tracker state as another Event, signed with the
        // other secret.
        let body = with(sample(), |v| {
            v["id"] = "evt_2".into();
            v["created_at"] = "2024-08-02T19:30:00.000Z".into();
            v["result"]["updated_at"] = "2024-08-02T19:29:00Z".into();
        });
        let b = match run(&headers(&body, OLD_SECRET), &body).unwrap() {
            Parsed::Events(mut e) => e.pop().unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(a.idempotency_key, b.idempotency_key);
        assert_eq!(a.id, b.id);
        assert_ne!(a.source.delivery_id, b.source.delivery_id);
        // A new scan is a new update.
        let body = with(sample(), |v| {
            v["result"]["tracking_details"][6]["datetime"] = "2024-08-02T20:00:00Z".into();
        });
        assert_ne!(envelope(&body).idempotency_key, a.idempotency_key);
    }

    #[test]
    fn times_fall_back_and_bad_checkpoints_are_skipped() {
        let body = with(sample(), |v| {
            let details = &mut v["result"]["tracking_details"];
            details[6]["datetime"] = "yesterday".into();
            details[5]["datetime"] = serde_json::Value::Null;
            details[4]["status"] = "unknown".into();
            details[3]["datetime"] = "2024-08-01T14:42:13".into(); // no offset: UTC
        });
        let u = update(&body);
        assert_eq!(u.checkpoints.len(), 4);
        assert_eq!(u.status_at, datetime!(2024-08-01 14:42:13 UTC));
        assert_eq!(u.message.as_deref(), Some("Departed FedEx location"));

        let body = with(sample(), |v| {
            v["result"]["tracking_details"] = serde_json::json!([]);
        });
        assert_eq!(update(&body).status_at, datetime!(2024-08-02 19:26:51 UTC));
        let body = with(sample(), |v| {
            v["result"]["tracking_details"] = serde_json::Value::Null;
            v["result"]["updated_at"] = "soon".into();
            v["result"]["est_delivery_date"] = "2024-08-05".into();
        });
        let u = update(&body);
        assert_eq!(u.status_at, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(
            (u.message, u.location, u.estimated_delivery),
            (None, None, None)
        );
        assert_eq!(envelope(&body).occurred_at, received());
    }

    #[test]
    fn truncated_body_is_malformed_json() {
        let body = &sample()[..sample().len() / 2];
        match run(&headers(body, SECRET), body) {
            Err(AdapterError::MalformedJson(m)) => assert!(m.contains("line"), "{m}"),
            other => panic!("{other:?}"),
        }
        for body in [
            &b""[..],
            b"{",
            b"{\"description\": \"tracker.updated\",}",
            b"\xff",
        ] {
            assert!(
                matches!(parse_untrusted(body), Err(AdapterError::MalformedJson(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn wrong_types_and_missing_fields_are_invalid() {
        let cases = [
            with(sample(), |v| v["description"] = 7.into()),
            with(sample(), |v| v["id"] = 1.5.into()),
            with(sample(), |v| v["id"] = (-3).into()),
            with(sample(), |v| v["result"] = "trk_1".into()),
            with(sample(), |v| v["result"]["tracking_code"] = true.into()),
            with(sample(), |v| {
                v["result"]["tracking_code"] = serde_json::json!({"a": 1})
            }),
            with(sample(), |v| v["result"]["status"] = 3.into()),
            with(sample(), |v| {
                v["result"]["tracking_details"] = "none".into()
            }),
            with(sample(), |v| {
                v["result"]["tracking_details"][0]["datetime"] = 1.into()
            }),
            with(sample(), |v| {
                v["result"]["tracking_details"][0]["tracking_location"]["zip"] = 32837.into();
            }),
            with(sample(), |v| {
                v.as_object_mut().unwrap().remove("result");
            }),
            with(sample(), |v| {
                v.as_object_mut().unwrap().remove("description");
            }),
            with(sample(), |v| {
                v["result"].as_object_mut().unwrap().remove("tracking_code");
            }),
            with(sample(), |v| v["result"]["tracking_code"] = "  ".into()),
            with(sample(), |v| {
                v["result"]["carrier"] = serde_json::Value::Null
            }),
            with(sample(), |v| v["result"]["carrier"] = "—".into()),
            b"[1, 2]".to_vec(),
            b"\"tracker.updated\"".to_vec(),
            br#"{"description":"tracker.updated","description":"tracker.updated"}"#.to_vec(),
        ];
        for body in cases {
            let result = parse_untrusted(&body);
            assert!(
                matches!(result, Err(AdapterError::Invalid(_))),
                "{result:?} for {}",
                String::from_utf8_lossy(&body[..body.len().min(120)])
            );
            assert!(run(&headers(&body, SECRET), &body).is_err());
        }
        match parse_untrusted(&with(sample(), |v| {
            v["result"].as_object_mut().unwrap().remove("tracking_code");
        })) {
            Err(AdapterError::Invalid(m)) => assert!(m.contains("result.tracking_code"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tracking_codes_and_ids_accept_integers_without_floats() {
        let body = sample_text().replacen(
            "\"tracking_code\":\"1\"",
            "\"tracking_code\":18446744073709551615",
            1,
        );
        assert_eq!(
            update(body.as_bytes()).tracking_number,
            "18446744073709551615"
        );
        let body = sample_text().replacen("\"id\":\"evt_1\"", "\"id\":9007199254740993", 1);
        assert_eq!(
            envelope(body.as_bytes()).source.delivery_id.as_deref(),
            Some("9007199254740993")
        );
        for huge in [
            "18446744073709551616",
            "123456789012345678901234567890",
            "1e3",
            "1.0",
        ] {
            let body = sample_text().replacen(
                "\"tracking_code\":\"1\"",
                &format!("\"tracking_code\":{huge}"),
                1,
            );
            assert!(
                matches!(
                    parse_untrusted(body.as_bytes()),
                    Err(AdapterError::Invalid(_))
                ),
                "{huge}"
            );
        }
    }

    fn sample_text() -> String {
        String::from_utf8(sample().to_vec()).unwrap()
    }

    #[test]
    fn carriers_become_slugs() {
        for (name, expected) in [
            ("FedEx", Some("fedex")),
            ("USPS", Some("usps")),
            (" Canada Post ", Some("canada-post")),
            ("DHL eCommerce Asia", Some("dhl-ecommerce-asia")),
            ("La_Poste!", Some("la-poste")),
            ("—", None),
        ] {
            assert_eq!(slug(name).as_deref(), expected, "{name}");
        }
    }

    #[test]
    fn untrusted_input_never_panics() {
        for end in 0..sample().len() {
            let _ = parse_untrusted(&sample()[..end]);
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let interesting = b"\"0-9.e,:{}[]\\\x00\xff";
        for body in [sample(), DOCS_SAMPLE] {
            for _ in 0..2000 {
                let mut body = body.to_vec();
                for _ in 0..(1 + next() % 4) {
                    let at = (next() % body.len() as u64) as usize;
                    body[at] = interesting[(next() % interesting.len() as u64) as usize];
                }
                let _ = parse_untrusted(&body);
            }
        }
        let deep = format!(
            "{{\"description\":\"tracker.updated\",\"x\":{}1{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(parse_untrusted(deep.as_bytes()).is_err());
        for secret in [&b"\xcc\x81\xcc\xa7"[..], "\u{345}\u{300}\u{334}".as_bytes()] {
            let _ = sign(secret, b"{}");
        }
    }
}
