//! 17TRACK (API v2) push webhooks: verifies the `sign` header and maps `TRACKING_UPDATED`
//! to a `shipment.updated` envelope; every other event (`TRACKING_STOPPED`, …) is
//! acknowledged and ignored.
//!
//! Use [`verify`] first, on the raw body, then [`parse`] with the [`Verified`] token it
//! returns (or [`verify_and_parse`] for both).
//!
//! Wire format (reference README §6; the only sample is a third-party test fixture
//! [secondary]): `{"event", "data": {"number", "carrier" (numeric carrier code), "param",
//! "tag", "track_info": {"latest_status": {"status", "sub_status"}, "latest_event",
//! "time_metrics": {"estimated_delivery_date": {"from", "to"}}, "milestone": [...],
//! "tracking": {"providers": [{"events": [...]}]}}}}`. Events carry `time_iso` (with the
//! local offset), `time_utc`, `description`, `location`, `stage` (a milestone key stage) and
//! `sub_status`. 17TRACK sends no event id.
//!
//! Invariants:
//! - the signature is checked over the raw bytes before any JSON is read;
//! - tracking numbers and carrier codes never pass through a float: a JSON string, or a
//!   JSON integer kept as its digits; floats and integers beyond `u64` are refused;
//! - the idempotency key is the business key
//!   `17track:shipment:{carrier code}:{number}:{status/sub_status}:{status_at unix seconds}`,
//!   so redeliveries and repeated pushes of one state give one envelope id;
//! - unknown fields are ignored, so fields 17TRACK adds later do not break ingestion.

use contracts::{Checkpoint, ShipmentStatus, ShipmentUpdated, TenantId};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::common::{
    Text, clip, hex_decode, hex_encode, missing, parse_time, read_json, shipment_events, slug,
    status_time, text,
};
use super::header;
pub use super::{AdapterError, Headers, Parsed};

/// [`Source::system`](contracts::Source::system) of every event from this adapter.
pub const SYSTEM: &str = "17track";
/// The only event that produces events.
pub const TOPIC_TRACKING_UPDATED: &str = "TRACKING_UPDATED";

const SIGNATURE_HEADER: [&str; 1] = ["sign"];

/// Proof that a body's signature was checked. Only [`verify`] makes one.
#[derive(Debug)]
pub struct Verified(());

/// The `sign` value 17TRACK would send: lowercase hex `SHA-256(body + "/" + key)`.
#[must_use]
pub fn sign(key: &[u8], body: &[u8]) -> String {
    hex_encode(&digest(key, body))
}

/// Checks `sign` against the raw body with each of `secrets` (the 17TRACK API key, the
/// `17token`; several during a rotation). Empty secrets never verify. Does not look at
/// the body's content.
///
/// The scheme is README §6 [secondary: third-party code and tests agree; 17TRACK's own v2.2
/// webhook section was not retrieved]: `sign = hex(SHA-256(raw body + "/" + key))`, a
/// plain hash rather than an HMAC. The digests are compared without an early exit.
pub fn verify<H: Headers + ?Sized>(
    secrets: &[&[u8]],
    headers: &H,
    body: &[u8],
) -> Result<Verified, AdapterError> {
    let value = header(headers, &SIGNATURE_HEADER).ok_or(AdapterError::MissingSignature)?;
    let presented = hex_decode(value)
        .filter(|d| d.len() == 32)
        .ok_or(AdapterError::BadSignature)?;
    let matches = secrets
        .iter()
        .filter(|secret| !secret.is_empty())
        .any(|secret| {
            digest(secret, body)
                .iter()
                .zip(&presented)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        });
    if matches {
        Ok(Verified(()))
    } else {
        Err(AdapterError::BadSignature)
    }
}

/// Maps a verified delivery to events. Events other than `TRACKING_UPDATED` (notably
/// `TRACKING_STOPPED`, which carries no status), and numbers whose status has no canonical
/// equivalent (`NotFound`, or none), are [`Parsed::Ignored`].
pub fn parse<H: Headers + ?Sized>(
    _verified: &Verified,
    tenant: &TenantId,
    _headers: &H,
    body: &[u8],
    received_at: OffsetDateTime,
) -> Result<Parsed, AdapterError> {
    match interpret(body, received_at)? {
        Outcome::Ignored { topic } => Ok(Parsed::Ignored { topic }),
        Outcome::Update { update, topic } => {
            // 17TRACK sends no event or delivery id.
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

/// The mapping alone, without signature or headers, for fuzzing: never panics on any
/// input. Ignored events give no update. Without any time in the body, `status_at` is the
/// Unix epoch.
pub fn parse_untrusted(body: &[u8]) -> Result<Vec<ShipmentUpdated>, AdapterError> {
    Ok(match interpret(body, OffsetDateTime::UNIX_EPOCH)? {
        Outcome::Update { update, .. } => vec![*update],
        Outcome::Ignored { .. } => Vec::new(),
    })
}

/// 17TRACK's main status (`latest_status.status`) refined by its `sub_status`, in the
/// canonical set, or `None` when it has no canonical equivalent.
///
/// Main statuses are README §6 (`Delivered`, `InTransit`, `InfoReceived` seen in fixtures;
/// `NotFound`, `OutForDelivery`, `AvailableForPickup`, `DeliveryFailure`, `Exception`,
/// `Expired` from third-party code) [secondary; the official list was not confirmed]. The
/// mapping is the README §8 table [derived]:
/// - `NotFound` is the README's "Pending", which has no canonical equivalent: `None`;
/// - `DeliveryFailure` is `failed_attempt`;
/// - `Exception` is `exception`, except the sub-statuses `Exception_Returning` and
///   `Exception_Returned`, which are `returned_to_sender` (README: "Exception
///   (+ sub_status)"; the two names come from several independent third-party
///   integrations [secondary]). A parcel on its way back will not reach the customer, so
///   both are reported as returned.
#[must_use]
pub fn map_status(status: &str, sub_status: Option<&str>) -> Option<ShipmentStatus> {
    match status {
        "InfoReceived" => Some(ShipmentStatus::InfoReceived),
        "InTransit" => Some(ShipmentStatus::InTransit),
        "OutForDelivery" => Some(ShipmentStatus::OutForDelivery),
        "AvailableForPickup" => Some(ShipmentStatus::AvailableForPickup),
        "DeliveryFailure" => Some(ShipmentStatus::FailedAttempt),
        "Delivered" => Some(ShipmentStatus::Delivered),
        "Exception" => match sub_status.map(str::trim) {
            Some("Exception_Returning" | "Exception_Returned") => {
                Some(ShipmentStatus::ReturnedToSender)
            }
            _ => Some(ShipmentStatus::Exception),
        },
        "Expired" => Some(ShipmentStatus::Expired),
        // "NotFound", and anything 17TRACK may add later.
        _ => None,
    }
}

/// A milestone key stage (an event's `stage`) in the canonical set (README §6 lists the
/// stages; the mapping is README §8 [derived]): `PickedUp`, `Departure` and `Arrival` are
/// `in_transit`, `Returning` and `Returned` are `returned_to_sender`.
#[must_use]
pub fn map_stage(stage: &str) -> Option<ShipmentStatus> {
    match stage {
        "InfoReceived" => Some(ShipmentStatus::InfoReceived),
        "PickedUp" | "Departure" | "Arrival" => Some(ShipmentStatus::InTransit),
        "AvailableForPickup" => Some(ShipmentStatus::AvailableForPickup),
        "OutForDelivery" => Some(ShipmentStatus::OutForDelivery),
        "Delivered" => Some(ShipmentStatus::Delivered),
        "Returning" | "Returned" => Some(ShipmentStatus::ReturnedToSender),
        _ => None,
    }
}

/// `SHA-256(body + "/" + key)`.
fn digest(key: &[u8], body: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(body);
    hash.update(b"/");
    hash.update(key);
    hash.finalize().into()
}

/// What a delivery amounts to, before the envelope is built.
enum Outcome {
    Update {
        update: Box<ShipmentUpdated>,
        topic: String,
    },
    Ignored {
        topic: String,
    },
}

fn interpret(body: &[u8], received_at: OffsetDateTime) -> Result<Outcome, AdapterError> {
    // First the head alone, so that other events are acknowledged whatever their `data`.
    let head: RawHead = read_json(body)?;
    let topic = text(head.event.as_deref()).ok_or_else(|| missing("event"))?;
    if topic != TOPIC_TRACKING_UPDATED {
        return Ok(Outcome::Ignored { topic: clip(topic) });
    }
    let event: RawEvent = read_json(body)?;
    let data = event.data.ok_or_else(|| missing("data"))?;
    Ok(match data.into_update(received_at)? {
        Mapping::Update(update) => Outcome::Update { update, topic },
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
#[serde(default, expecting = "a push object")]
struct RawHead {
    event: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a push object")]
struct RawEvent {
    data: Option<RawData>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a tracking data object")]
struct RawData {
    number: Option<Text>,
    carrier: Option<Text>,
    track_info: Option<RawTrackInfo>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a track info object")]
struct RawTrackInfo {
    latest_status: Option<RawLatestStatus>,
    latest_event: Option<RawTrackEvent>,
    time_metrics: Option<RawTimeMetrics>,
    tracking: Option<RawTracking>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a latest status object")]
struct RawLatestStatus {
    status: Option<String>,
    sub_status: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a tracking event object")]
struct RawTrackEvent {
    time_iso: Option<String>,
    time_utc: Option<String>,
    description: Option<String>,
    location: Option<String>,
    stage: Option<String>,
    sub_status: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a time metrics object")]
struct RawTimeMetrics {
    estimated_delivery_date: Option<RawEstimate>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "an estimated delivery date object")]
struct RawEstimate {
    from: Option<String>,
    to: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a tracking object")]
struct RawTracking {
    providers: Option<Vec<RawProvider>>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a provider object")]
struct RawProvider {
    events: Option<Vec<RawTrackEvent>>,
}

impl RawData {
    fn into_update(self, received_at: OffsetDateTime) -> Result<Mapping, AdapterError> {
        let tracking_number = self
            .number
            .as_ref()
            .and_then(|t| text(Some(&t.0)))
            .ok_or_else(|| missing("data.number"))?;
        // README §6 gives no code-to-name table, so the carrier is 17TRACK's numeric code
        // as a string (`3011`), which is already a slug.
        let carrier = self
            .carrier
            .as_ref()
            .and_then(|c| text(Some(&c.0)))
            .ok_or_else(|| missing("data.carrier"))?;
        let carrier = slug(&carrier).ok_or_else(|| {
            AdapterError::Invalid(clip(format!(
                "data.carrier: {carrier:?} has no letters or digits"
            )))
        })?;
        let info = self.track_info.unwrap_or_default();
        let latest = info.latest_status.unwrap_or_default();
        let Some(status) = text(latest.status.as_deref()) else {
            return Ok(Mapping::Unmapped("no status".to_owned()));
        };
        let carrier_status = join_status(Some(&status), latest.sub_status.as_deref());
        let Some(canonical) = map_status(&status, latest.sub_status.as_deref()) else {
            return Ok(Mapping::Unmapped(carrier_status));
        };

        // Every provider's events (17TRACK lists them newest first), oldest first.
        let mut checkpoints: Vec<Checkpoint> = info
            .tracking
            .iter()
            .flat_map(|t| t.providers.iter().flatten())
            .flat_map(|p| p.events.iter().flatten())
            .filter_map(RawTrackEvent::to_checkpoint)
            .collect();
        checkpoints.sort_by_key(|c| c.at);
        let newest = checkpoints.last();

        let latest_event = info.latest_event.as_ref();
        let status_at = status_time(
            latest_event.and_then(RawTrackEvent::time),
            newest,
            received_at,
        );
        let message = latest_event
            .and_then(|e| text(e.description.as_deref()))
            .or_else(|| newest.and_then(|c| c.message.clone()));
        let location = latest_event
            .and_then(|e| text(e.location.as_deref()))
            .or_else(|| newest.and_then(|c| c.location.clone()));
        // The latest end of 17TRACK's delivery window [derived: the README names the
        // object but documents neither bound].
        let estimated_delivery = info
            .time_metrics
            .and_then(|m| m.estimated_delivery_date)
            .and_then(|e| {
                [e.to, e.from]
                    .into_iter()
                    .flatten()
                    .find_map(|t| parse_time(&t))
            });

        Ok(Mapping::Update(Box::new(ShipmentUpdated {
            carrier,
            tracking_number,
            status: canonical,
            carrier_status,
            message,
            location,
            status_at,
            // `tag` and `param` are whatever the account set when registering the number,
            // not a documented order reference.
            order_ref: None,
            tracking_url: None,
            estimated_delivery,
            checkpoints,
        })))
    }
}

impl RawTrackEvent {
    /// `time_iso` (local time with its offset), else `time_utc`.
    fn time(&self) -> Option<OffsetDateTime> {
        [&self.time_iso, &self.time_utc]
            .into_iter()
            .find_map(|t| t.as_deref().and_then(parse_time))
    }

    /// The event as a checkpoint; `None` (skipped) without a usable time or a status.
    /// The status comes from `sub_status` (`InTransit_PickedUp` is main status `InTransit`)
    /// else from the milestone `stage`; an event with neither (the sample's "Arrived at
    /// Facility" and "Origin Scan") says nothing about the status, so it is skipped rather
    /// than given an invented one.
    fn to_checkpoint(&self) -> Option<Checkpoint> {
        let at = self.time()?;
        let sub_status = text(self.sub_status.as_deref());
        let stage = text(self.stage.as_deref());
        let status = sub_status
            .as_deref()
            .and_then(|s| map_status(s.split('_').next().unwrap_or(s), Some(s)))
            .or_else(|| stage.as_deref().and_then(map_stage))?;
        Some(Checkpoint {
            at,
            status,
            carrier_status: join_status(stage.as_deref(), sub_status.as_deref()),
            message: text(self.description.as_deref()),
            location: text(self.location.as_deref()),
        })
    }
}

/// The non-blank parts of `first/second`, verbatim.
fn join_status(first: Option<&str>, second: Option<&str>) -> String {
    [text(first), text(second)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("/")
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
        include_bytes!("../../fixtures/17track_tracking_updated.json");
    const SECRET: &[u8] = b"17token-key";
    const OLD_SECRET: &[u8] = b"17token-previous";

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

    fn headers(body: &[u8], secret: &[u8]) -> Vec<(String, String)> {
        vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("sign".to_owned(), sign(secret, body)),
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
    fn fixture_maps_exactly() {
        let env = envelope(SAMPLE);
        let at = datetime!(2022-04-04 16:35:22 -07:00);
        assert_eq!(
            env.source,
            Source {
                system: "17track".to_owned(),
                delivery_id: None,
                topic: Some("TRACKING_UPDATED".to_owned()),
            }
        );
        assert_eq!(env.occurred_at, at);
        assert_eq!(
            env.idempotency_key,
            format!(
                "17track:shipment:3011:1Z2617V10397725789:Delivered/Delivered_Other:{}",
                at.unix_timestamp()
            )
        );
        let Event::ShipmentUpdated(u) = &env.event else {
            panic!("{:?}", env.event)
        };
        assert_eq!(u.carrier, "3011");
        assert_eq!(u.tracking_number, "1Z2617V10397725789");
        assert_eq!(u.status, ShipmentStatus::Delivered);
        assert_eq!(u.carrier_status, "Delivered/Delivered_Other");
        assert_eq!(u.status_at, at);
        assert_eq!(u.message.as_deref(), Some("DELIVERED"));
        assert_eq!(u.location.as_deref(), Some("GASQUET, CA, US"));
        assert_eq!(
            (&u.order_ref, &u.tracking_url, &u.estimated_delivery),
            (&None, &None, &None)
        );
        // Five provider events; the two without stage or sub_status are skipped.
        let got: Vec<_> = u
            .checkpoints
            .iter()
            .map(|c| {
                (
                    c.at,
                    c.status,
                    c.carrier_status.as_str(),
                    c.message.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    datetime!(2022-03-29 05:43:08 UTC),
                    ShipmentStatus::InfoReceived,
                    "InfoReceived",
                    Some("Shipper created a label, UPS has not received the package yet.")
                ),
                (
                    datetime!(2022-04-04 15:46:06 UTC),
                    ShipmentStatus::OutForDelivery,
                    "OutForDelivery",
                    Some("Out For Delivery Today")
                ),
                (
                    datetime!(2022-04-04 23:35:22 UTC),
                    ShipmentStatus::Delivered,
                    "Delivered",
                    Some("DELIVERED")
                ),
            ]
        );
        assert_eq!(
            u.checkpoints[1].location.as_deref(),
            Some("Crescent City, CA, US")
        );
    }

    #[test]
    fn sign_is_sha256_of_body_slash_key() {
        // Known answer computed independently (Python hashlib) over the fixture file.
        let expected = "bc1995604fb3b489c0817e38c3d6df2bf4b2fad1e3da10da8c5c74e0cc344337";
        assert_eq!(sign(SECRET, SAMPLE), expected);
        assert!(verify(&[SECRET], &[("sign", expected)], SAMPLE).is_ok());
        assert!(verify(&[SECRET], &[("Sign", expected.to_uppercase())], SAMPLE).is_ok());
        // Key and body the other way round is not the scheme.
        let mut swapped = Sha256::new();
        swapped.update(SECRET);
        swapped.update(b"/");
        swapped.update(SAMPLE);
        let swapped = hex_encode(&swapped.finalize());
        assert_eq!(
            verify(&[SECRET], &[("sign", swapped)], SAMPLE).unwrap_err(),
            AdapterError::BadSignature
        );
    }

    #[test]
    fn second_of_two_secrets_verifies_during_rotation() {
        let h = headers(SAMPLE, SECRET);
        assert!(verify(&[OLD_SECRET, SECRET], &h, SAMPLE).is_ok());
        assert_eq!(
            verify(&[OLD_SECRET], &h, SAMPLE).unwrap_err(),
            AdapterError::BadSignature
        );
        assert!(matches!(run(&h, SAMPLE), Ok(Parsed::Events(_))));
    }

    #[test]
    fn wrong_missing_and_malformed_signatures_are_refused_before_parsing() {
        assert_eq!(
            run(&headers(SAMPLE, b"someone-else"), SAMPLE),
            Err(AdapterError::BadSignature)
        );
        assert_eq!(
            run(&headers(b"{}", SECRET), b"not json"),
            Err(AdapterError::BadSignature)
        );
        let none = [("17token", "17token-key")];
        assert_eq!(
            verify_and_parse(&[SECRET], &tenant(), &none, SAMPLE, received()),
            Err(AdapterError::MissingSignature)
        );
        let good = sign(SECRET, SAMPLE);
        for bad in [
            &good[..62],
            &good[..63],
            &format!("{good}00"),
            &format!("{}zz", &good[..62]),
            &format!("sha256={good}"),
            "0",
        ] {
            assert_eq!(
                verify(&[SECRET], &[("sign", bad)], SAMPLE).unwrap_err(),
                AdapterError::BadSignature,
                "{bad}"
            );
        }
        assert_eq!(
            verify(&[SECRET], &[("sign", "  ")], SAMPLE).unwrap_err(),
            AdapterError::MissingSignature
        );
        let h = headers(SAMPLE, b"");
        assert_eq!(
            verify(&[b""], &h, SAMPLE).unwrap_err(),
            AdapterError::BadSignature
        );
        assert_eq!(
            verify(&[], &h, SAMPLE).unwrap_err(),
            AdapterError::BadSignature
        );
    }

    #[test]
    fn other_events_and_unmapped_statuses_are_ignored() {
        let stopped = br#"{"event":"TRACKING_STOPPED","data":{"number":"1Z2617V10397725789","carrier":3011,"param":null,"tag":""}}"#;
        assert_eq!(ignored(stopped), "TRACKING_STOPPED");
        for event in ["tracking_updated", "SOMETHING_NEW"] {
            let body = format!(r#"{{"event":"{event}","data":"whatever"}}"#);
            assert_eq!(ignored(body.as_bytes()), event);
        }
        let body = with(|v| {
            v["data"]["track_info"]["latest_status"] =
                serde_json::json!({"status": "NotFound", "sub_status": "NotFound_Other"});
        });
        assert_eq!(ignored(&body), "TRACKING_UPDATED (NotFound/NotFound_Other)");
        let body = with(|v| v["data"]["track_info"] = serde_json::Value::Null);
        assert_eq!(ignored(&body), "TRACKING_UPDATED (no status)");
        assert!(parse_untrusted(&body).unwrap().is_empty());
    }

    #[test]
    fn every_status_sub_status_and_stage_maps() {
        use ShipmentStatus::*;
        let statuses = [
            ("NotFound", Some("NotFound_Other"), None),
            ("NotFound", Some("NotFound_InvalidCode"), None),
            ("InfoReceived", None, Some(InfoReceived)),
            ("InTransit", Some("InTransit_PickedUp"), Some(InTransit)),
            ("InTransit", Some("InTransit_Other"), Some(InTransit)),
            (
                "InTransit",
                Some("InTransit_CustomsProcessing"),
                Some(InTransit),
            ),
            (
                "OutForDelivery",
                Some("OutForDelivery_Other"),
                Some(OutForDelivery),
            ),
            (
                "AvailableForPickup",
                Some("AvailableForPickup_Other"),
                Some(AvailableForPickup),
            ),
            (
                "DeliveryFailure",
                Some("DeliveryFailure_InvalidAddress"),
                Some(FailedAttempt),
            ),
            (
                "DeliveryFailure",
                Some("DeliveryFailure_NoBody"),
                Some(FailedAttempt),
            ),
            ("Delivered", Some("Delivered_Other"), Some(Delivered)),
            ("Exception", Some("Exception_Other"), Some(Exception)),
            ("Exception", Some("Exception_Lost"), Some(Exception)),
            ("Exception", Some("Exception_Damage"), Some(Exception)),
            (
                "Exception",
                Some("Exception_Returning"),
                Some(ReturnedToSender),
            ),
            (
                "Exception",
                Some("Exception_Returned"),
                Some(ReturnedToSender),
            ),
            ("Exception", None, Some(Exception)),
            ("Expired", Some("Expired_Other"), Some(Expired)),
            ("delivered", None, None),
            ("", None, None),
        ];
        for (status, sub, expected) in statuses {
            assert_eq!(map_status(status, sub), expected, "{status} {sub:?}");
        }
        let stages = [
            ("InfoReceived", Some(InfoReceived)),
            ("PickedUp", Some(InTransit)),
            ("Departure", Some(InTransit)),
            ("Arrival", Some(InTransit)),
            ("AvailableForPickup", Some(AvailableForPickup)),
            ("OutForDelivery", Some(OutForDelivery)),
            ("Delivered", Some(Delivered)),
            ("Returning", Some(ReturnedToSender)),
            ("Returned", Some(ReturnedToSender)),
            ("InTransit", None),
            ("", None),
        ];
        for (stage, expected) in stages {
            assert_eq!(map_stage(stage), expected, "{stage}");
        }
        // An event's sub_status wins over its stage; a stage-less event with a sub_status
        // is kept.
        let body = with(|v| {
            let events = &mut v["data"]["track_info"]["tracking"]["providers"][0]["events"];
            events[2]["sub_status"] = "InTransit_Arrival".into();
            events[0]["sub_status"] = "Exception_Returned".into();
        });
        let u = update(&body);
        assert_eq!(u.checkpoints.len(), 4);
        assert_eq!(u.checkpoints[1].carrier_status, "InTransit_Arrival");
        assert_eq!(u.checkpoints[1].status, InTransit);
        assert_eq!(
            u.checkpoints[3].carrier_status,
            "Delivered/Exception_Returned"
        );
        assert_eq!(u.checkpoints[3].status, ReturnedToSender);
    }

    #[test]
    fn the_same_update_delivered_twice_has_one_idempotency_key() {
        let a = envelope(SAMPLE);
        // A later push of the same state differs in sync metadata only.
        let body = with(|v| {
            v["data"]["track_info"]["tracking"]["providers"][0]["latest_sync_time"] =
                "2022-04-30T08:06:06Z".into();
            v["data"]["track_info"]["time_metrics"]["days_after_last_update"] = 26.into();
        });
        let b = match run(&headers(&body, OLD_SECRET), &body).unwrap() {
            Parsed::Events(mut e) => e.pop().unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(a.idempotency_key, b.idempotency_key);
        assert_eq!(a.id, b.id);
        let body = with(|v| {
            v["data"]["track_info"]["latest_status"]["sub_status"] = "Delivered_Signed".into();
        });
        assert_ne!(envelope(&body).idempotency_key, a.idempotency_key);
    }

    #[test]
    fn times_fall_back_and_bad_checkpoints_are_skipped() {
        let body = with(|v| {
            let info = &mut v["data"]["track_info"];
            info["latest_event"]["time_iso"] = "04/04/2022".into();
            info["latest_event"]["time_utc"] = serde_json::Value::Null;
            let events = &mut info["tracking"]["providers"][0]["events"];
            events[0]["time_iso"] = "bad".into();
            events[0]["time_utc"] = "2022-04-04T23:35:22".into(); // no offset: UTC
            events[1]["time_iso"] = serde_json::Value::Null;
            events[1]["time_utc"] = serde_json::Value::Null;
            info["time_metrics"]["estimated_delivery_date"] = serde_json::json!({"source": "17TRACK", "from": "2022-04-05T00:00:00Z", "to": "2022-04-07T00:00:00-07:00"});
        });
        let u = update(&body);
        assert_eq!(u.checkpoints.len(), 2);
        assert_eq!(u.status_at, datetime!(2022-04-04 23:35:22 UTC));
        assert_eq!(
            u.estimated_delivery,
            Some(datetime!(2022-04-07 00:00:00 -07:00))
        );
        let body = with(|v| {
            let info = &mut v["data"]["track_info"];
            info["latest_event"] = serde_json::Value::Null;
            info["tracking"] = serde_json::Value::Null;
            info["time_metrics"]["estimated_delivery_date"]["from"] = "2022-04-05T00:00:00Z".into();
        });
        let env = envelope(&body);
        assert_eq!(env.occurred_at, received());
        let Event::ShipmentUpdated(u) = env.event else {
            panic!()
        };
        assert_eq!((u.message, u.location), (None, None));
        assert_eq!(
            u.estimated_delivery,
            Some(datetime!(2022-04-05 00:00:00 UTC))
        );
    }

    #[test]
    fn truncated_body_is_malformed_json() {
        let body = &SAMPLE[..SAMPLE.len() / 2];
        match run(&headers(body, SECRET), body) {
            Err(AdapterError::MalformedJson(m)) => assert!(m.contains("line"), "{m}"),
            other => panic!("{other:?}"),
        }
        for body in [
            &b""[..],
            b"{",
            b"{\"event\": \"TRACKING_UPDATED\",}",
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
            with(|v| v["event"] = 1.into()),
            with(|v| v["data"] = serde_json::json!("1Z")),
            with(|v| v["data"]["number"] = serde_json::json!({"n": 1})),
            with(|v| v["data"]["carrier"] = 30.11.into()),
            with(|v| v["data"]["carrier"] = (-1).into()),
            with(|v| v["data"]["track_info"]["latest_status"] = "Delivered".into()),
            with(|v| v["data"]["track_info"]["latest_status"]["status"] = 40.into()),
            with(|v| v["data"]["track_info"]["latest_event"]["location"] = serde_json::json!({})),
            with(|v| v["data"]["track_info"]["tracking"]["providers"] = "UPS".into()),
            with(|v| {
                v["data"]["track_info"]["tracking"]["providers"][0]["events"][0]["time_iso"] =
                    1_649_115_322.into();
            }),
            with(|v| v["data"]["track_info"]["time_metrics"]["estimated_delivery_date"] = 3.into()),
            with(|v| {
                v.as_object_mut().unwrap().remove("data");
            }),
            with(|v| {
                v.as_object_mut().unwrap().remove("event");
            }),
            with(|v| {
                v["data"].as_object_mut().unwrap().remove("number");
            }),
            with(|v| v["data"]["carrier"] = serde_json::Value::Null),
            with(|v| v["data"]["number"] = "\t".into()),
            b"[\"TRACKING_UPDATED\"]".to_vec(),
            b"true".to_vec(),
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
        let body = with(|v| {
            v["data"]["carrier"] = "100002".into();
            v["data"]["number"] = 12_345_678_901_234_567_890u64.into();
        });
        let u = update(&body);
        assert_eq!(
            (u.carrier.as_str(), u.tracking_number.as_str()),
            ("100002", "12345678901234567890")
        );
        let text = String::from_utf8(SAMPLE.to_vec()).unwrap();
        for huge in [
            "18446744073709551616",
            "300000000000000000000011",
            "3.011e3",
        ] {
            let body = text.replacen("\"carrier\": 3011", &format!("\"carrier\": {huge}"), 1);
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
        let deep = format!(
            "{{\"event\":\"TRACKING_UPDATED\",\"data\":{}}}",
            "[".repeat(100_000)
        );
        assert!(parse_untrusted(deep.as_bytes()).is_err());
    }
}
