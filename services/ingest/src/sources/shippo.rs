//! Shippo tracking webhooks: authenticates the delivery and maps `track_updated` to a
//! `shipment.updated` envelope; every other event (`transaction_created`, `batch_created`,
//! …) is acknowledged and ignored.
//!
//! Use [`verify`] first, on the raw body, then [`parse`] with the [`Verified`] token it
//! returns (or [`verify_and_parse`] for both).
//!
//! Wire format (reference README §5: Shippo's webhooks page [primary, excerpt] and the full
//! example quoted by a third party [secondary]; the goshippo SDK model `WebhookPayloadTrack`
//! has the same fields [primary]): `{"event", "test", "data": Track}`, the Track carrying
//! `carrier`, `tracking_number`, `tracking_status{status, substatus{code}, status_details,
//! status_date, location}`, `tracking_history[]` (same shape), `eta` and `metadata`.
//! Shippo sends no event id, and its tracking webhooks "are not idempotent" (duplicate
//! registrations give duplicate notifications).
//!
//! Invariants:
//! - the credential is checked on the raw bytes before any JSON is read;
//! - tracking numbers never pass through a float: a JSON string, or a JSON integer kept as
//!   its digits; floats and integers beyond `u64` are refused;
//! - the idempotency key is the business key
//!   `shippo:shipment:{carrier}:{tracking_number}:{status/substatus}:{status_date unix seconds}`,
//!   so redeliveries and Shippo's duplicate notifications give one envelope id;
//! - unknown fields are ignored, so fields Shippo adds later do not break ingestion.

use contracts::{Checkpoint, ShipmentStatus, ShipmentUpdated, TenantId};
use hmac::Mac;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::common::{
    Text, carrier_status, clip, hex_decode, hex_encode, location_text, missing, parse_time,
    read_json, shipment_events, slug, status_time, text,
};
pub use super::{AdapterError, Headers, Parsed};
use super::{HmacSha256, header};

/// [`Source::system`](contracts::Source::system) of every event from this adapter.
pub const SYSTEM: &str = "shippo";
/// The only event that produces events.
pub const TOPIC_TRACK_UPDATED: &str = "track_updated";

/// Shippo's opt-in HMAC: `t=<unix seconds>,v1=<hex>`.
const SIGNATURE_HEADER: [&str; 1] = ["shippo-auth-signature"];
/// A shared token, for deliveries that carry no HMAC (see [`verify`]).
const TOKEN_HEADER: [&str; 1] = ["x-postflow-token"];

/// Proof that a delivery was authenticated. Only [`verify`] makes one.
#[derive(Debug)]
pub struct Verified(());

/// The `Shippo-Auth-Signature` value Shippo would send for `body` at Unix time
/// `timestamp`: `t={timestamp},v1={hex HMAC-SHA256(secret, "{timestamp}.{body}")}`.
#[must_use]
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    let digest = match HmacSha256::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(t.as_bytes());
            mac.update(b".");
            mac.update(body);
            hex_encode(&mac.finalize().into_bytes())
        }
        // HMAC accepts keys of any length; this arm cannot be reached.
        Err(_) => String::new(),
    };
    format!("t={t},v1={digest}")
}

/// Authenticates a delivery with either credential, each checked against every one of
/// `secrets` (several during a rotation); empty secrets never match.
///
/// 1. `Shippo-Auth-Signature: t=<unix>,v1=<hex>`, where `v1` is the hex
///    HMAC-SHA256 of `"<t>.<raw body>"` keyed with the shared secret (README §5:
///    [secondary], several independent implementations agree; Shippo's own HMAC text was
///    only read through third-party quotes). Every `v1` in the header is tried, compared in
///    constant time. Shippo enables HMAC only on request. The timestamp is not checked for
///    freshness (adapters have no clock here); a replayed delivery yields the same
///    idempotency key, so it publishes nothing new.
/// 2. `x-postflow-token: <secret>`, compared in constant time (through SHA-256 digests, so
///    neither content nor length leaks). Shippo itself cannot send custom headers: its
///    documented alternative to HMAC is a self-generated token in the webhook URL
///    (`https://…?token=123abc`, README §5 [primary]), which this adapter cannot see. The
///    HTTP layer has to copy that query parameter into `x-postflow-token` (or a proxy
///    in front of Postflow has to) before calling [`verify`].
///
/// Either credential that verifies is enough; neither present is
/// [`AdapterError::MissingSignature`]; present but not matching is
/// [`AdapterError::BadSignature`]. Shippo's third option, an IP allowlist, is the
/// network's job.
pub fn verify<H: Headers + ?Sized>(
    secrets: &[&[u8]],
    headers: &H,
    body: &[u8],
) -> Result<Verified, AdapterError> {
    let signature = header(headers, &SIGNATURE_HEADER);
    let token = header(headers, &TOKEN_HEADER);
    if signature.is_none() && token.is_none() {
        return Err(AdapterError::MissingSignature);
    }
    let signed = signature.is_some_and(|s| signature_matches(secrets, s, body));
    let tokened = !signed && token.is_some_and(|t| token_matches(secrets, t));
    if signed || tokened {
        Ok(Verified(()))
    } else {
        Err(AdapterError::BadSignature)
    }
}

/// Maps an authenticated delivery to events. Events other than `track_updated`,
/// test-mode deliveries (`"test": true`, which includes the dashboard's sample sends) and
/// tracks whose status has no canonical equivalent (`UNKNOWN`, or no status yet) are
/// [`Parsed::Ignored`].
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
            test: false,
        } => {
            // Shippo sends no event or delivery id.
            Ok(shipment_events(SYSTEM, tenant, *update, None, topic))
        }
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

/// The mapping alone, without credentials or headers, for fuzzing: never panics on any
/// input. Test-mode deliveries are mapped too; ignored ones give no update. Without any
/// time in the body, `status_at` is the Unix epoch.
pub fn parse_untrusted(body: &[u8]) -> Result<Vec<ShipmentUpdated>, AdapterError> {
    Ok(match interpret(body, OffsetDateTime::UNIX_EPOCH)? {
        Outcome::Update { update, .. } => vec![*update],
        Outcome::Ignored { .. } => Vec::new(),
    })
}

/// Shippo's `tracking_status.status` with its `substatus.code` in the canonical set, or
/// `None` when it has no canonical equivalent.
///
/// Statuses are README §5 [primary: docs excerpt + SDK]; substatus codes are README §5
/// [secondary: a list quoting the docs]. The mapping is the README §8 table [derived]:
/// - `PRE_TRANSIT` (`information_received`) is `info_received`;
/// - `TRANSIT` is `in_transit`, except `out_for_delivery`, `pickup_available`
///   (`available_for_pickup`), `delivery_attempted` and `notice_left` (`failed_attempt`),
///   and `address_issue` and `package_damaged` (`exception`); `delayed`, `package_held`,
///   `contact_carrier` and the rest stay `in_transit`, as the README table has it;
/// - `DELIVERED` is `delivered`, `RETURNED` (`return_to_sender`, `package_unclaimed`) is
///   `returned_to_sender`, `FAILURE` (`package_undeliverable`, `package_disposed`,
///   `package_lost`) is `exception`;
/// - `UNKNOWN` (`other`) is the README's "Pending", which has no canonical equivalent:
///   `None`.
#[must_use]
pub fn map_status(status: &str, substatus: Option<&str>) -> Option<ShipmentStatus> {
    match status {
        "PRE_TRANSIT" => Some(ShipmentStatus::InfoReceived),
        "TRANSIT" => Some(match substatus.map(str::trim) {
            Some("out_for_delivery") => ShipmentStatus::OutForDelivery,
            Some("pickup_available") => ShipmentStatus::AvailableForPickup,
            Some("delivery_attempted" | "notice_left") => ShipmentStatus::FailedAttempt,
            Some("address_issue" | "package_damaged") => ShipmentStatus::Exception,
            _ => ShipmentStatus::InTransit,
        }),
        "DELIVERED" => Some(ShipmentStatus::Delivered),
        "RETURNED" => Some(ShipmentStatus::ReturnedToSender),
        "FAILURE" => Some(ShipmentStatus::Exception),
        // "UNKNOWN", and anything Shippo may add later.
        _ => None,
    }
}

fn signature_matches(secrets: &[&[u8]], value: &str, body: &[u8]) -> bool {
    let Some((timestamp, digests)) = parse_signature(value) else {
        return false;
    };
    secrets
        .iter()
        .filter(|secret| !secret.is_empty())
        .any(|secret| {
            digests.iter().any(|digest| {
                let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
                    return false;
                };
                mac.update(timestamp.as_bytes());
                mac.update(b".");
                mac.update(body);
                // Constant time, and a digest of the wrong length never matches.
                mac.verify_slice(digest).is_ok()
            })
        })
}

/// `t=<digits>` and every decodable `v1=<hex>` of a `t=…,v1=…[,v1=…]` header; elements of
/// other schemes are ignored. `None` without a timestamp or a `v1`.
fn parse_signature(value: &str) -> Option<(&str, Vec<Vec<u8>>)> {
    let mut timestamp = None;
    let mut digests = Vec::new();
    for element in value.split(',') {
        let Some((key, val)) = element.split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" => timestamp = Some(val.trim()),
            "v1" => digests.extend(hex_decode(val.trim())),
            _ => {}
        }
    }
    let timestamp = timestamp
        .filter(|t| (1..=20).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()))?;
    (!digests.is_empty()).then_some((timestamp, digests))
}

fn token_matches(secrets: &[&[u8]], token: &str) -> bool {
    let presented = Sha256::digest(token.as_bytes());
    secrets
        .iter()
        .filter(|secret| !secret.is_empty())
        .any(|secret| {
            let expected = Sha256::digest(secret);
            // Fixed-length digests, folded without an early exit.
            presented
                .iter()
                .zip(expected.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        })
}

/// What a delivery amounts to, before the envelope is built.
enum Outcome {
    Update {
        update: Box<ShipmentUpdated>,
        topic: String,
        test: bool,
    },
    Ignored {
        topic: String,
    },
}

fn interpret(body: &[u8], received_at: OffsetDateTime) -> Result<Outcome, AdapterError> {
    // First the head alone, so that other events are acknowledged whatever their `data`.
    let head: RawHead = read_json(body)?;
    let topic = text(head.event.as_deref()).ok_or_else(|| missing("event"))?;
    if topic != TOPIC_TRACK_UPDATED {
        return Ok(Outcome::Ignored { topic: clip(topic) });
    }
    let event: RawEvent = read_json(body)?;
    let track = event.data.ok_or_else(|| missing("data"))?;
    Ok(match track.into_update(received_at)? {
        Mapping::Update(update) => Outcome::Update {
            update,
            topic,
            test: event.test.unwrap_or(false),
        },
        Mapping::Unmapped(carrier_status) => Outcome::Ignored {
            topic: clip(format!("{topic} ({carrier_status})")),
        },
    })
}

enum Mapping {
    Update(Box<ShipmentUpdated>),
    /// The status has no canonical equivalent (or there is none): its carrier status, or
    /// `no status`.
    Unmapped(String),
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a webhook object")]
struct RawHead {
    event: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a webhook object")]
struct RawEvent {
    test: Option<bool>,
    data: Option<RawTrack>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a track object")]
struct RawTrack {
    carrier: Option<String>,
    tracking_number: Option<Text>,
    tracking_status: Option<RawStatus>,
    tracking_history: Option<Vec<RawStatus>>,
    eta: Option<String>,
    metadata: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a tracking status object")]
struct RawStatus {
    status: Option<String>,
    substatus: Option<RawSubstatus>,
    status_details: Option<String>,
    status_date: Option<String>,
    location: Option<RawLocation>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a substatus object")]
struct RawSubstatus {
    code: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a location object")]
struct RawLocation {
    city: Option<String>,
    state: Option<String>,
    zip: Option<String>,
    country: Option<String>,
}

impl RawTrack {
    fn into_update(self, received_at: OffsetDateTime) -> Result<Mapping, AdapterError> {
        let tracking_number = self
            .tracking_number
            .as_ref()
            .and_then(|t| text(Some(&t.0)))
            .ok_or_else(|| missing("data.tracking_number"))?;
        let carrier = text(self.carrier.as_deref()).ok_or_else(|| missing("data.carrier"))?;
        let carrier = slug(&carrier).ok_or_else(|| {
            AdapterError::Invalid(clip(format!(
                "data.carrier: {carrier:?} has no letters or digits"
            )))
        })?;
        // A track without a status yet has nothing to report.
        let current = self.tracking_status.unwrap_or_default();
        let Some(status) = text(current.status.as_deref()) else {
            return Ok(Mapping::Unmapped("no status".to_owned()));
        };
        let code = current.substatus_code();
        let carrier_status = carrier_status(&status, code);
        let Some(canonical) = map_status(&status, code) else {
            return Ok(Mapping::Unmapped(carrier_status));
        };

        // Oldest first; the sort is stable, so entries with the same time keep their order.
        let mut checkpoints: Vec<Checkpoint> = self
            .tracking_history
            .iter()
            .flatten()
            .filter_map(RawStatus::to_checkpoint)
            .collect();
        checkpoints.sort_by_key(|c| c.at);

        let status_at = status_time(
            current.status_date.as_deref().and_then(parse_time),
            checkpoints.last(),
            received_at,
        );

        Ok(Mapping::Update(Box::new(ShipmentUpdated {
            carrier,
            tracking_number,
            status: canonical,
            carrier_status,
            message: text(current.status_details.as_deref()),
            location: current.location.as_ref().and_then(RawLocation::to_text),
            status_at,
            order_ref: self.metadata.as_deref().and_then(order_ref),
            // A Track has no public tracking page link.
            tracking_url: None,
            estimated_delivery: self.eta.as_deref().and_then(parse_time),
            checkpoints,
        })))
    }
}

impl RawStatus {
    fn substatus_code(&self) -> Option<&str> {
        self.substatus.as_ref().and_then(|s| s.code.as_deref())
    }

    /// The history entry as a checkpoint; `None` (skipped) without a usable time or a
    /// status with a canonical equivalent.
    fn to_checkpoint(&self) -> Option<Checkpoint> {
        let at = self.status_date.as_deref().and_then(parse_time)?;
        let status = text(self.status.as_deref())?;
        let code = self.substatus_code();
        Some(Checkpoint {
            at,
            status: map_status(&status, code)?,
            carrier_status: carrier_status(&status, code),
            message: text(self.status_details.as_deref()),
            location: self.location.as_ref().and_then(RawLocation::to_text),
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

/// An order reference in Shippo's free-text `metadata` [derived: Shippo documents the
/// field as the merchant's own text, and the sample uses `"Order 000123"`]. After an
/// optional leading `Order` word and separators (` `, `:`, `#`, `.`, `-`), what is left must
/// be one token of letters, digits, `-`, `_`, `/` or `.` with at least one digit:
/// `Order 000123` → `000123`, `#1001` → `1001`, `SO-2024-17` stays. Prose, JSON and the
/// like are not an order reference.
fn order_ref(metadata: &str) -> Option<String> {
    let s = metadata.trim();
    let rest = match s.get(..5) {
        Some(word) if word.eq_ignore_ascii_case("order") => s.get(5..)?,
        _ => s,
    };
    let token = rest.trim_start_matches([' ', '\t', ':', '#', '.', '-']);
    let ok = (1..=64).contains(&token.len())
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '.'))
        && token.chars().any(|c| c.is_ascii_digit());
    ok.then(|| token.to_owned())
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
    use contracts::{Envelope, Event, Source};
    use time::macros::datetime;

    const SAMPLE: &[u8] =
        include_bytes!("../../fixtures/shippo_track_updated.json");
    const SECRET: &[u8] = b"shippo-secret";
    const OLD_SECRET: &[u8] = b"shippo-previous";
    const T: u64 = 1_700_000_000;

    fn tenant() -> TenantId {
        TenantId::parse("demo").unwrap()
    }

    fn received() -> OffsetDateTime {
        datetime!(2026-01-02 03:04:05 UTC)
    }

    fn with(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(SAMPLE).unwrap();
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    /// The sample as a live (not test-mode) delivery.
    fn live() -> Vec<u8> {
        with(|v| v["test"] = false.into())
    }

    fn headers(body: &[u8], secret: &[u8]) -> Vec<(String, String)> {
        vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("Shippo-Auth-Signature".to_owned(), sign(secret, T, body)),
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
    fn docs_sample_is_test_mode_and_maps_exactly() {
        // The published example has `"test": true`: acknowledged, not published.
        assert_eq!(ignored(SAMPLE), "track_updated (test mode)");

        let u = update(SAMPLE);
        let at = datetime!(2016-07-23 00:00:00 UTC);
        assert_eq!(u.carrier, "usps");
        assert_eq!(u.tracking_number, "9205590164917312751089");
        assert_eq!(u.status, ShipmentStatus::Delivered);
        // As published: DELIVERED with the PRE_TRANSIT substatus code, both kept verbatim.
        assert_eq!(u.carrier_status, "DELIVERED/information_received");
        assert_eq!(u.status_at, at);
        assert_eq!(
            u.message.as_deref(),
            Some("Your shipment has been delivered at the destination mailbox.")
        );
        assert_eq!(u.location.as_deref(), Some("Las Vegas, NV 89101, US"));
        assert_eq!(u.order_ref.as_deref(), Some("000123")); // metadata "Order 000123"
        assert_eq!(u.tracking_url, None);
        assert_eq!(
            u.estimated_delivery,
            Some(datetime!(2019-08-24 14:15:22 UTC))
        );
        assert_eq!(
            u.checkpoints,
            [Checkpoint {
                at,
                status: ShipmentStatus::Delivered,
                carrier_status: "DELIVERED/information_received".to_owned(),
                message: Some(
                    "Your shipment has been delivered at the destination mailbox.".to_owned()
                ),
                location: Some("Las Vegas, NV 89101, US".to_owned()),
            }]
        );

        let env = envelope(&live());
        assert_eq!(
            env.source,
            Source {
                system: "shippo".to_owned(),
                delivery_id: None,
                topic: Some("track_updated".to_owned()),
            }
        );
        assert_eq!(env.occurred_at, at);
        assert_eq!(
            env.idempotency_key,
            format!(
                "shippo:shipment:usps:9205590164917312751089:DELIVERED/information_received:{}",
                at.unix_timestamp()
            )
        );
        assert_eq!(env.event, Event::ShipmentUpdated(u));
    }

    #[test]
    fn hmac_signature_is_over_timestamp_dot_body() {
        // Known answer computed independently (Python hmac/hashlib) over the sample file.
        let expected =
            "t=1700000000,v1=752b13b89d06e6e2843c3004b77d105322009e3409662a2cfe7ce8d0d8daeb6e";
        assert_eq!(sign(SECRET, T, SAMPLE), expected);
        assert!(verify(&[SECRET], &[("shippo-auth-signature", expected)], SAMPLE).is_ok());
        // Another timestamp with the same digest is another message.
        let moved = expected.replace("t=1700000000", "t=1700000001");
        assert_eq!(
            verify(
                &[SECRET],
                &[("Shippo-Auth-Signature", moved.as_str())],
                SAMPLE
            )
            .unwrap_err(),
            AdapterError::BadSignature
        );
        // Spaces, element order, other schemes and several v1 values are accepted.
        let digest = expected.split("v1=").nth(1).unwrap();
        for value in [
            format!("v1={digest}, t=1700000000"),
            format!("t=1700000000,v0=abc,v1={}", "00".repeat(32)) + &format!(",v1={digest}"),
            format!(" t = 1700000000 , v1 = {} ", digest.to_uppercase()),
        ] {
            let h = [("shippo-auth-signature", value.as_str())];
            assert!(verify(&[SECRET], &h, SAMPLE).is_ok(), "{value}");
        }
    }

    #[test]
    fn second_of_two_secrets_verifies_during_rotation() {
        let h = headers(SAMPLE, SECRET);
        assert!(verify(&[OLD_SECRET, SECRET], &h, SAMPLE).is_ok());
        assert_eq!(
            verify(&[OLD_SECRET], &h, SAMPLE).unwrap_err(),
            AdapterError::BadSignature
        );
        let h = [("x-postflow-token", "shippo-secret")];
        assert!(verify(&[OLD_SECRET, SECRET], &h, SAMPLE).is_ok());
        assert_eq!(
            verify(&[OLD_SECRET], &h, SAMPLE).unwrap_err(),
            AdapterError::BadSignature
        );
        assert!(matches!(
            verify_and_parse(&[OLD_SECRET, SECRET], &tenant(), &h, &live(), received()),
            Ok(Parsed::Events(_))
        ));
    }

    #[test]
    fn wrong_missing_and_malformed_credentials_are_refused_before_parsing() {
        assert_eq!(
            run(&headers(SAMPLE, b"someone-else"), SAMPLE),
            Err(AdapterError::BadSignature)
        );
        assert_eq!(
            run(&headers(b"{}", SECRET), b"not json"),
            Err(AdapterError::BadSignature)
        );
        let none = [("content-type", "application/json")];
        assert_eq!(
            verify_and_parse(&[SECRET], &tenant(), &none, SAMPLE, received()),
            Err(AdapterError::MissingSignature)
        );
        let blank = [("shippo-auth-signature", " "), ("x-postflow-token", "")];
        assert_eq!(
            verify(&[SECRET], &blank, SAMPLE).unwrap_err(),
            AdapterError::MissingSignature
        );
        let good = sign(SECRET, T, SAMPLE);
        let digest = good.split("v1=").nth(1).unwrap();
        for bad in [
            digest.to_owned(),             // no elements
            format!("v1={digest}"),        // no timestamp
            "t=1700000000".to_owned(),     // no v1
            format!("t=17e8,v1={digest}"), // timestamp not digits
            format!("t=-1700000000,v1={digest}"),
            format!("t=1700000000,v1={}", &digest[..62]), // short
            format!("t=1700000000,v1={}zz", &digest[..62]), // not hex
            format!("t=1700000000,v2={digest}"),          // another scheme only
            format!("t={},v1={digest}", "9".repeat(21)),
        ] {
            let h = [("shippo-auth-signature", bad.as_str())];
            assert_eq!(
                verify(&[SECRET], &h, SAMPLE).unwrap_err(),
                AdapterError::BadSignature,
                "{bad}"
            );
        }
        for token in ["shippo-secre", "shippo-secret2", "SHIPPO-SECRET", "x"] {
            let h = [("x-postflow-token", token)];
            assert_eq!(
                verify(&[SECRET], &h, SAMPLE).unwrap_err(),
                AdapterError::BadSignature,
                "{token:?}"
            );
        }
        // Empty secrets match neither credential.
        let h = [
            ("shippo-auth-signature", sign(b"", T, SAMPLE)),
            ("x-postflow-token", String::new()),
        ];
        assert_eq!(
            verify(&[b""], &h, SAMPLE).unwrap_err(),
            AdapterError::BadSignature
        );
        let h = [("x-postflow-token", "shippo-secret")];
        assert_eq!(
            verify(&[], &h, SAMPLE).unwrap_err(),
            AdapterError::BadSignature
        );
        // Either valid credential is enough.
        let h = [
            ("shippo-auth-signature", "t=1,v1=00".to_owned()),
            ("x-postflow-token", "shippo-secret".to_owned()),
        ];
        assert!(verify(&[SECRET], &h, SAMPLE).is_ok());
    }

    #[test]
    fn other_events_and_unmapped_statuses_are_ignored() {
        for event in [
            "transaction_created",
            "transaction_updated",
            "batch_created",
            "batch_purchased",
            "all",
            "TRACK_UPDATED",
        ] {
            let body = format!(r#"{{"event":"{event}","test":"no","data":[1]}}"#);
            assert_eq!(ignored(body.as_bytes()), event);
        }
        let body = with(|v| {
            v["test"] = false.into();
            v["data"]["tracking_status"]["status"] = "UNKNOWN".into();
            v["data"]["tracking_status"]["substatus"]["code"] = "other".into();
        });
        assert_eq!(ignored(&body), "track_updated (UNKNOWN/other)");
        for status in [serde_json::Value::Null, serde_json::json!({"status": null})] {
            let body = with(|v| {
                v["test"] = false.into();
                v["data"]["tracking_status"] = status;
            });
            assert_eq!(ignored(&body), "track_updated (no status)");
        }
    }

    #[test]
    fn every_status_and_substatus_maps() {
        use ShipmentStatus::*;
        let table: &[(&str, &[&str], Option<ShipmentStatus>)] = &[
            ("PRE_TRANSIT", &["information_received"], Some(InfoReceived)),
            (
                "TRANSIT",
                &[
                    "contact_carrier",
                    "delayed",
                    "delivery_rescheduled",
                    "delivery_scheduled",
                    "location_inaccessible",
                    "package_accepted",
                    "package_arrived",
                    "package_departed",
                    "package_forwarded",
                    "package_held",
                    "package_processed",
                    "package_processing",
                    "reschedule_delivery",
                ],
                Some(InTransit),
            ),
            ("TRANSIT", &["out_for_delivery"], Some(OutForDelivery)),
            ("TRANSIT", &["pickup_available"], Some(AvailableForPickup)),
            (
                "TRANSIT",
                &["delivery_attempted", "notice_left"],
                Some(FailedAttempt),
            ),
            (
                "TRANSIT",
                &["address_issue", "package_damaged"],
                Some(Exception),
            ),
            ("DELIVERED", &["delivered"], Some(Delivered)),
            (
                "RETURNED",
                &["return_to_sender", "package_unclaimed"],
                Some(ReturnedToSender),
            ),
            (
                "FAILURE",
                &["package_undeliverable", "package_disposed", "package_lost"],
                Some(Exception),
            ),
            ("UNKNOWN", &["other"], None),
            ("transit", &["out_for_delivery"], None),
        ];
        for (status, codes, expected) in table {
            for code in codes.iter() {
                assert_eq!(map_status(status, Some(code)), *expected, "{status}/{code}");
            }
        }
        for (status, expected) in [
            ("PRE_TRANSIT", Some(InfoReceived)),
            ("TRANSIT", Some(InTransit)),
            ("DELIVERED", Some(Delivered)),
            ("RETURNED", Some(ReturnedToSender)),
            ("FAILURE", Some(Exception)),
            ("UNKNOWN", None),
            ("", None),
        ] {
            assert_eq!(map_status(status, None), expected, "{status}");
        }
        let body = with(|v| {
            v["test"] = false.into();
            v["data"]["tracking_status"]["status"] = "TRANSIT".into();
            v["data"]["tracking_status"]["substatus"] = serde_json::json!({"code": "notice_left"});
        });
        let u = update(&body);
        assert_eq!(
            (u.status, u.carrier_status.as_str()),
            (FailedAttempt, "TRANSIT/notice_left")
        );
        let body = with(|v| v["data"]["tracking_status"]["substatus"] = serde_json::Value::Null);
        assert_eq!(update(&body).carrier_status, "DELIVERED");
    }

    #[test]
    fn the_same_update_delivered_twice_has_one_idempotency_key() {
        let a = envelope(&live());
        // A duplicate registration sends the same state again, re-stamped.
        let body = with(|v| {
            v["test"] = false.into();
            v["data"]["tracking_status"]["object_updated"] = "2019-08-25T10:00:00Z".into();
            v["data"]["tracking_status"]["object_id"] = "b7c1".into();
        });
        let b = match run(&headers(&body, OLD_SECRET), &body).unwrap() {
            Parsed::Events(mut e) => e.pop().unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(a.idempotency_key, b.idempotency_key);
        assert_eq!(a.id, b.id);
        let body = with(|v| {
            v["test"] = false.into();
            v["data"]["tracking_status"]["status_date"] = "2016-07-24T00:00:00Z".into();
        });
        assert_ne!(envelope(&body).idempotency_key, a.idempotency_key);
    }

    #[test]
    fn times_fall_back_and_bad_checkpoints_are_skipped() {
        let body = with(|v| {
            let entry = v["data"]["tracking_history"][0].clone();
            let mut early = entry.clone();
            early["status"] = "PRE_TRANSIT".into();
            early["status_date"] = "2016-07-20T08:00:00".into(); // no offset: UTC
            let mut bad = entry.clone();
            bad["status_date"] = "July 21".into();
            let mut unknown = entry.clone();
            unknown["status"] = "UNKNOWN".into();
            v["data"]["tracking_history"] = serde_json::json!([entry, bad, unknown, early]);
            v["data"]["tracking_status"]["status_date"] = "not a date".into();
        });
        let u = update(&body);
        assert_eq!(u.checkpoints.len(), 2);
        assert_eq!(u.checkpoints[0].at, datetime!(2016-07-20 08:00:00 UTC));
        assert_eq!(u.checkpoints[0].status, ShipmentStatus::InfoReceived);
        assert_eq!(u.status_at, datetime!(2016-07-23 00:00:00 UTC)); // newest checkpoint
        let body = with(|v| {
            v["test"] = false.into();
            v["data"]["tracking_history"] = serde_json::Value::Null;
            v["data"]["tracking_status"]
                .as_object_mut()
                .unwrap()
                .remove("status_date");
            v["data"]["eta"] = serde_json::Value::Null;
        });
        let env = envelope(&body);
        assert_eq!(env.occurred_at, received());
        let Event::ShipmentUpdated(u) = env.event else {
            panic!()
        };
        assert_eq!((u.checkpoints.len(), u.estimated_delivery), (0, None));
    }

    #[test]
    fn order_refs_are_read_from_metadata_only_when_they_look_like_one() {
        for (metadata, expected) in [
            ("Order 000123", Some("000123")),
            ("order #1001", Some("1001")),
            ("ORDER: SO-2024-17", Some("SO-2024-17")),
            ("#1001", Some("1001")),
            ("1001", Some("1001")),
            ("ord_7Hx2", Some("ord_7Hx2")),
            ("Order", None),
            ("string", None),
            ("Gift for mom", None),
            ("Order 1001 for Bob", None),
            ("{\"order\": 5}", None),
            ("", None),
        ] {
            assert_eq!(order_ref(metadata).as_deref(), expected, "{metadata:?}");
        }
        assert_eq!(order_ref(&"1".repeat(65)), None);
        let body = with(|v| v["data"]["metadata"] = serde_json::Value::Null);
        assert_eq!(update(&body).order_ref, None);
    }

    #[test]
    fn truncated_body_is_malformed_json() {
        let body = &SAMPLE[..SAMPLE.len() / 2];
        match run(&headers(body, SECRET), body) {
            Err(AdapterError::MalformedJson(m)) => assert!(m.contains("line"), "{m}"),
            other => panic!("{other:?}"),
        }
        for body in [&b""[..], b"{", b"{\"event\": \"track_updated\",}", b"\xff"] {
            assert!(
                matches!(parse_untrusted(body), Err(AdapterError::MalformedJson(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn wrong_types_and_missing_fields_are_invalid() {
        let cases = [
            with(|v| v["event"] = true.into()),
            with(|v| v["test"] = "true".into()),
            with(|v| v["data"] = "track".into()),
            with(|v| v["data"]["tracking_number"] = 1.5.into()),
            with(|v| v["data"]["tracking_number"] = serde_json::json!(["1"])),
            with(|v| v["data"]["carrier"] = 5.into()),
            with(|v| v["data"]["metadata"] = serde_json::json!({"order": "1"})),
            with(|v| v["data"]["tracking_status"] = "DELIVERED".into()),
            with(|v| v["data"]["tracking_status"]["substatus"] = "delivered".into()),
            with(|v| v["data"]["tracking_status"]["location"] = "Las Vegas".into()),
            with(|v| v["data"]["tracking_history"] = serde_json::json!({"a": 1})),
            with(|v| v["data"]["tracking_history"][0]["status_date"] = 1_469_232_000.into()),
            with(|v| {
                v.as_object_mut().unwrap().remove("data");
            }),
            with(|v| {
                v.as_object_mut().unwrap().remove("event");
            }),
            with(|v| {
                v["data"].as_object_mut().unwrap().remove("tracking_number");
            }),
            with(|v| v["data"]["carrier"] = " ".into()),
            b"[{\"event\":\"track_updated\"}]".to_vec(),
            b"42".to_vec(),
        ];
        for body in cases {
            let result = parse_untrusted(&body);
            assert!(
                matches!(result, Err(AdapterError::Invalid(_))),
                "{result:?} for {}",
                String::from_utf8_lossy(&body[..body.len().min(160)])
            );
            assert!(run(&headers(&body, SECRET), &body).is_err());
        }
        match parse_untrusted(&with(|v| {
            v["data"].as_object_mut().unwrap().remove("carrier");
        })) {
            Err(AdapterError::Invalid(m)) => assert!(m.contains("data.carrier"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn huge_numbers_never_pass_through_a_float() {
        let text = String::from_utf8(SAMPLE.to_vec()).unwrap();
        let field = "\"tracking_number\": \"9205590164917312751089\"";
        let body = text.replacen(field, "\"tracking_number\": 18446744073709551615", 1);
        assert_eq!(
            update(body.as_bytes()).tracking_number,
            "18446744073709551615"
        );
        // The sample's own tracking number as a JSON number is beyond u64.
        for huge in ["9205590164917312751089", "1e21", "-5"] {
            let body = text.replacen(field, &format!("\"tracking_number\": {huge}"), 1);
            assert!(
                matches!(
                    parse_untrusted(body.as_bytes()),
                    Err(AdapterError::Invalid(_))
                ),
                "{huge}"
            );
        }
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
        let interesting = b"\"0-9.e,:{}[]\\\x00\xff";
        for _ in 0..3000 {
            let mut body = SAMPLE.to_vec();
            for _ in 0..(1 + next() % 4) {
                let at = (next() % body.len() as u64) as usize;
                body[at] = interesting[(next() % interesting.len() as u64) as usize];
            }
            let _ = parse_untrusted(&body);
        }
        for value in [
            "",
            ",",
            "=",
            "t=",
            "v1=",
            "t=1,v1=",
            ",,t=1,,v1=0,",
            "t=1=2,v1=00=0",
        ] {
            let _ = verify(&[SECRET], &[("shippo-auth-signature", value)], SAMPLE);
        }
    }
}
