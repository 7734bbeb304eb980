//! AfterShip Tracking webhooks: verifies `aftership-hmac-sha256` and maps `tracking_update`
//! to a `shipment.updated` envelope; every other event (`edd_revise`,
//! `tracking_pending_time`, …) is acknowledged and ignored.
//!
//! Use [`verify`] first, on the raw body, then [`parse`] with the [`Verified`] token it
//! returns (or [`verify_and_parse`] for both).
//!
//! Wire format (reference README §3 [primary]: AfterShip's webhook specification): the body
//! is `{"event", "event_id", "is_tracking_first_tag", "msg", "ts"}`; `event_id` is a UUID
//! per webhook event, `ts` the event's Unix time, and `msg` the Tracking object
//! (`tracking_number`, `slug`, `tag`, `subtag`, `subtag_message`, `order_id`,
//! `order_number`, `checkpoints[]`). The only saved sample is trimmed (README §0
//! [secondary]); checkpoint `location` is read as AfterShip's own tracking SDK models it
//! (an optional string, `aftership-tracking-sdk` `Checkpoint`), and nothing else beyond the
//! README and the sample is read.
//!
//! Invariants:
//! - the signature is checked over the raw bytes before any JSON is read;
//! - ids and tracking numbers never pass through a float: a JSON string, or a JSON integer
//!   kept as its digits; floats and integers beyond `u64` are refused;
//! - the idempotency key is the business key
//!   `aftership:shipment:{slug}:{tracking_number}:{tag/subtag}:{status_at unix seconds}`,
//!   so redeliveries and AfterShip's repeated notifications of one state give one envelope
//!   id;
//! - unknown fields are ignored, so fields AfterShip adds later do not break ingestion.

use contracts::{Checkpoint, ShipmentStatus, ShipmentUpdated, TenantId};
use serde::Deserialize;
use time::OffsetDateTime;

use super::common::{
    Text, carrier_status, check_hmac_b64, clip, missing, parse_time, read_json, shipment_events,
    slug, text,
};
use super::sign_hmac_b64;
pub use super::{AdapterError, Headers, Parsed};

/// [`Source::system`](contracts::Source::system) of every event from this adapter.
pub const SYSTEM: &str = "aftership";
/// The only event that produces events.
pub const TOPIC_TRACKING_UPDATE: &str = "tracking_update";

const SIGNATURE_HEADER: [&str; 1] = ["aftership-hmac-sha256"];

/// Proof that a body's signature was checked. Only [`verify`] makes one.
#[derive(Debug)]
pub struct Verified(());

/// `base64(HMAC-SHA256(secret, body))`: the `aftership-hmac-sha256` value AfterShip would
/// send.
#[must_use]
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    sign_hmac_b64(secret, body)
}

/// Checks `aftership-hmac-sha256` (base64 HMAC-SHA256 of the raw body keyed with the
/// webhook secret from Settings > Webhooks; README §3 [primary]: AfterShip's
/// webhook-signature page) against each of `secrets` (several during a rotation), in
/// constant time. Empty secrets never verify. Does not look at the body's content.
pub fn verify<H: Headers + ?Sized>(
    secrets: &[&[u8]],
    headers: &H,
    body: &[u8],
) -> Result<Verified, AdapterError> {
    check_hmac_b64(secrets, headers, &SIGNATURE_HEADER, body).map(|()| Verified(()))
}

/// Maps a verified delivery to events. Events other than `tracking_update`, and trackings
/// whose tag has no canonical equivalent (`Pending`), are [`Parsed::Ignored`].
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
            update,
            topic,
            delivery_id,
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
/// input. Ignored events give no update. Without any time in the body, `status_at` is the
/// Unix epoch.
pub fn parse_untrusted(body: &[u8]) -> Result<Vec<ShipmentUpdated>, AdapterError> {
    Ok(match interpret(body, OffsetDateTime::UNIX_EPOCH)? {
        Outcome::Update { update, .. } => vec![*update],
        Outcome::Ignored { .. } => Vec::new(),
    })
}

/// AfterShip's `tag` (refined by `subtag`) in the canonical set, or `None` when it has no
/// canonical equivalent.
///
/// Tags are AfterShip's "9 key statuses" (README §3 [primary]); the mapping is the README
/// §8 table [derived]:
/// - `Pending` (new shipment, no tracking information yet) has no canonical equivalent:
///   `None`; AfterShip does not send `tracking_update` for it anyway;
/// - `AttemptFail` is `failed_attempt`;
/// - `Exception` is `exception`, except the subtags `Exception_010` ("Returning to sender":
///   on its way back) and `Exception_011` ("Returned to sender"), which are
///   `returned_to_sender`. The subtag codes are from AfterShip's delivery sub-statuses page
///   (aftership.com/docs/tracking/enum/delivery-sub-statuses) [primary, looked up for this
///   adapter; the README only says "Exception (+ return subtag)"]. A parcel that is being
///   returned will not reach the customer, so both are reported as returned.
#[must_use]
pub fn map_status(tag: &str, subtag: Option<&str>) -> Option<ShipmentStatus> {
    match tag {
        "InfoReceived" => Some(ShipmentStatus::InfoReceived),
        "InTransit" => Some(ShipmentStatus::InTransit),
        "OutForDelivery" => Some(ShipmentStatus::OutForDelivery),
        "AttemptFail" => Some(ShipmentStatus::FailedAttempt),
        "AvailableForPickup" => Some(ShipmentStatus::AvailableForPickup),
        "Delivered" => Some(ShipmentStatus::Delivered),
        "Exception" => match subtag.map(str::trim) {
            Some("Exception_010" | "Exception_011") => Some(ShipmentStatus::ReturnedToSender),
            _ => Some(ShipmentStatus::Exception),
        },
        "Expired" => Some(ShipmentStatus::Expired),
        // "Pending", and anything AfterShip may add later.
        _ => None,
    }
}

/// What a delivery amounts to, before the envelope is built.
enum Outcome {
    Update {
        update: Box<ShipmentUpdated>,
        topic: String,
        delivery_id: Option<String>,
    },
    Ignored {
        topic: String,
    },
}

fn interpret(body: &[u8], received_at: OffsetDateTime) -> Result<Outcome, AdapterError> {
    // First the head alone, so that other events are acknowledged whatever their `msg`.
    let head: RawHead = read_json(body)?;
    let topic = text(head.event.as_deref()).ok_or_else(|| missing("event"))?;
    if topic != TOPIC_TRACKING_UPDATE {
        return Ok(Outcome::Ignored { topic: clip(topic) });
    }
    let event: RawEvent = read_json(body)?;
    let tracking = event.msg.ok_or_else(|| missing("msg"))?;
    // `ts` is when AfterShip raised the event, a fallback when no checkpoint has a time.
    let event_time = event
        .ts
        .and_then(|ts| OffsetDateTime::from_unix_timestamp(ts).ok());
    Ok(
        match tracking.into_update(event_time.unwrap_or(received_at))? {
            Mapping::Update(update) => Outcome::Update {
                update,
                topic,
                delivery_id: head.event_id.map(|id| id.0),
            },
            Mapping::Unmapped(carrier_status) => Outcome::Ignored {
                topic: clip(format!("{topic} ({carrier_status})")),
            },
        },
    )
}

enum Mapping {
    Update(Box<ShipmentUpdated>),
    /// The tag has no canonical equivalent (or there is none): its carrier status, or
    /// `no status`.
    Unmapped(String),
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a webhook object")]
struct RawHead {
    event: Option<String>,
    event_id: Option<Text>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a webhook object")]
struct RawEvent {
    ts: Option<i64>,
    msg: Option<RawTracking>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a tracking object")]
struct RawTracking {
    tracking_number: Option<Text>,
    slug: Option<String>,
    tag: Option<String>,
    subtag: Option<String>,
    subtag_message: Option<String>,
    order_id: Option<Text>,
    order_number: Option<Text>,
    checkpoints: Option<Vec<RawCheckpoint>>,
}

#[derive(Default, Deserialize)]
#[serde(default, expecting = "a checkpoint object")]
struct RawCheckpoint {
    checkpoint_time: Option<String>,
    message: Option<String>,
    location: Option<String>,
    tag: Option<String>,
    subtag: Option<String>,
}

impl RawTracking {
    fn into_update(self, fallback_time: OffsetDateTime) -> Result<Mapping, AdapterError> {
        let tracking_number = self
            .tracking_number
            .as_ref()
            .and_then(|t| text(Some(&t.0)))
            .ok_or_else(|| missing("msg.tracking_number"))?;
        let carrier = text(self.slug.as_deref()).ok_or_else(|| missing("msg.slug"))?;
        let carrier = slug(&carrier).ok_or_else(|| {
            AdapterError::Invalid(clip(format!(
                "msg.slug: {carrier:?} has no letters or digits"
            )))
        })?;
        let Some(tag) = text(self.tag.as_deref()) else {
            return Ok(Mapping::Unmapped("no status".to_owned()));
        };
        let carrier_status = carrier_status(&tag, self.subtag.as_deref());
        let Some(status) = map_status(&tag, self.subtag.as_deref()) else {
            return Ok(Mapping::Unmapped(carrier_status));
        };

        // Oldest first; the sort is stable, so checkpoints with the same time keep their
        // order.
        let mut checkpoints: Vec<Checkpoint> = self
            .checkpoints
            .iter()
            .flatten()
            .filter_map(RawCheckpoint::to_checkpoint)
            .collect();
        checkpoints.sort_by_key(|c| c.at);
        let newest = checkpoints.last();

        // The tracking carries no time of its tag: the newest checkpoint is when the
        // carrier says it happened, else the event's `ts`, else the receive time.
        let status_at = newest.map_or(fallback_time, |c| c.at);

        // `order_id` is the shop's order id, `order_number` its human number (README §3).
        let order_ref = [&self.order_id, &self.order_number]
            .into_iter()
            .find_map(|r| r.as_ref().and_then(|r| text(Some(&r.0))));

        Ok(Mapping::Update(Box::new(ShipmentUpdated {
            carrier,
            tracking_number,
            status,
            carrier_status,
            message: newest
                .and_then(|c| c.message.clone())
                .or_else(|| text(self.subtag_message.as_deref())),
            location: newest.and_then(|c| c.location.clone()),
            status_at,
            order_ref,
            // Not in the README nor the sample, so not read.
            tracking_url: None,
            estimated_delivery: None,
            checkpoints,
        })))
    }
}

impl RawCheckpoint {
    /// The checkpoint in canonical form; `None` (skipped) without a usable time or a tag
    /// with a canonical equivalent.
    fn to_checkpoint(&self) -> Option<Checkpoint> {
        let at = self.checkpoint_time.as_deref().and_then(parse_time)?;
        let tag = text(self.tag.as_deref())?;
        Some(Checkpoint {
            at,
            status: map_status(&tag, self.subtag.as_deref())?,
            carrier_status: carrier_status(&tag, self.subtag.as_deref()),
            message: text(self.message.as_deref()),
            location: text(self.location.as_deref()),
        })
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
    use contracts::{Envelope, Event, Source};
    use time::macros::datetime;

    const SAMPLE: &[u8] = include_bytes!(
        "../../fixtures/aftership_tracking_update_TRIMMED.json"
    );
    const SECRET: &[u8] = b"as-webhook-secret";
    const OLD_SECRET: &[u8] = b"as-webhook-previous";

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
            ("aftership-hmac-sha256".to_owned(), sign(secret, body)),
            ("As-Webhook-Version".to_owned(), "2026-07".to_owned()),
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
    fn trimmed_sample_maps_exactly() {
        let env = envelope(SAMPLE);
        let at = datetime!(2021-01-14 00:52:00 UTC);
        assert_eq!(
            env.source,
            Source {
                system: "aftership".to_owned(),
                delivery_id: Some("94dadd60-ed26-46d0-aa52-3ced925a50ff".to_owned()),
                topic: Some("tracking_update".to_owned()),
            }
        );
        assert_eq!(env.occurred_at, at);
        assert_eq!(
            env.idempotency_key,
            format!(
                "aftership:shipment:usps:0000000000000000:InTransit/InTransit_001:{}",
                at.unix_timestamp()
            )
        );
        let Event::ShipmentUpdated(u) = &env.event else {
            panic!("{:?}", env.event)
        };
        assert_eq!(u.carrier, "usps");
        assert_eq!(u.tracking_number, "0000000000000000");
        assert_eq!(u.status, ShipmentStatus::InTransit);
        assert_eq!(u.carrier_status, "InTransit/InTransit_001");
        assert_eq!(u.status_at, at);
        assert_eq!(u.order_ref.as_deref(), Some("string")); // order_number, as published
        assert_eq!(
            u.message.as_deref(),
            Some("Departed Shipping Partner Facility, USPS Awaiting Item")
        );
        assert_eq!(
            (u.location.as_deref(), u.tracking_url.as_deref()),
            (None, None)
        );
        assert_eq!(u.estimated_delivery, None);
        assert_eq!(
            u.checkpoints,
            [Checkpoint {
                at,
                status: ShipmentStatus::InTransit,
                carrier_status: "InTransit/InTransit_001".to_owned(),
                message: Some("Departed Shipping Partner Facility, USPS Awaiting Item".to_owned()),
                location: None,
            }]
        );
    }

    #[test]
    fn signature_is_base64_hmac_of_the_raw_body() {
        // Known answer computed independently (Python hmac/hashlib) over the sample file.
        let expected = "WMNCVN7KrVgkVgBO6XLEH1BhUKu/DWCZWm+QifSWKgA=";
        assert_eq!(sign(SECRET, SAMPLE), expected);
        let h = [("aftership-hmac-sha256", expected)];
        assert!(verify(&[SECRET], &h, SAMPLE).is_ok());
        // Header names match in any case.
        let h = [("AfterShip-Hmac-SHA256", expected)];
        assert!(verify(&[SECRET], &h, SAMPLE).is_ok());
        // Re-serialised JSON is another body.
        let reserialised = with(|_| {});
        assert_eq!(
            verify(&[SECRET], &h, &reserialised).unwrap_err(),
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
        let no_header = [("content-type", "application/json")];
        assert_eq!(
            verify_and_parse(&[SECRET], &tenant(), &no_header, SAMPLE, received()),
            Err(AdapterError::MissingSignature)
        );
        // The Returns/Warranty header is another product's and does not count.
        let other = [("as-signature-hmac-sha256", sign(SECRET, SAMPLE))];
        assert_eq!(
            verify(&[SECRET], &other, SAMPLE).unwrap_err(),
            AdapterError::MissingSignature
        );
        let good = sign(SECRET, SAMPLE);
        for bad in [
            "%%%not-base64%%%",
            &good[..good.len() - 4],
            "AAAA",
            "hmac-sha256=AAAA",
            &good.replace('=', ""),
        ] {
            let h = [("aftership-hmac-sha256", bad)];
            assert_eq!(
                verify(&[SECRET], &h, SAMPLE).unwrap_err(),
                AdapterError::BadSignature,
                "{bad}"
            );
        }
        let h = [("aftership-hmac-sha256", " ")];
        assert_eq!(
            verify(&[SECRET], &h, SAMPLE).unwrap_err(),
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
    fn other_events_and_pending_are_ignored() {
        for event in [
            "edd_revise",
            "tracking_pending_time",
            "something_new",
            "TRACKING_UPDATE",
        ] {
            let body = format!(r#"{{"event":"{event}","msg":[{{"not":"a tracking"}}],"ts":"x"}}"#);
            assert_eq!(ignored(body.as_bytes()), event);
        }
        let body = with(|v| {
            v["msg"]["tag"] = "Pending".into();
            v["msg"]["subtag"] = "Pending_001".into();
        });
        assert_eq!(ignored(&body), "tracking_update (Pending/Pending_001)");
        let body = with(|v| v["msg"]["tag"] = serde_json::Value::Null);
        assert_eq!(ignored(&body), "tracking_update (no status)");
        assert!(parse_untrusted(&body).unwrap().is_empty());
    }

    #[test]
    fn every_tag_and_return_subtag_maps() {
        let table = [
            ("Pending", None, None),
            (
                "InfoReceived",
                Some("InfoReceived_001"),
                Some(ShipmentStatus::InfoReceived),
            ),
            (
                "InTransit",
                Some("InTransit_007"),
                Some(ShipmentStatus::InTransit),
            ),
            ("OutForDelivery", None, Some(ShipmentStatus::OutForDelivery)),
            (
                "AttemptFail",
                Some("AttemptFail_001"),
                Some(ShipmentStatus::FailedAttempt),
            ),
            (
                "Delivered",
                Some("Delivered_002"),
                Some(ShipmentStatus::Delivered),
            ),
            (
                "AvailableForPickup",
                Some("AvailableForPickup_001"),
                Some(ShipmentStatus::AvailableForPickup),
            ),
            ("Exception", None, Some(ShipmentStatus::Exception)),
            (
                "Expired",
                Some("Expired_001"),
                Some(ShipmentStatus::Expired),
            ),
            (
                "Exception",
                Some("Exception_010"),
                Some(ShipmentStatus::ReturnedToSender),
            ),
            (
                "Exception",
                Some("Exception_011"),
                Some(ShipmentStatus::ReturnedToSender),
            ),
            ("intransit", None, None),
            ("", None, None),
        ];
        for (tag, subtag, expected) in table {
            assert_eq!(map_status(tag, subtag), expected, "{tag} {subtag:?}");
        }
        for n in (1..=18).filter(|n| ![10, 11].contains(n)) {
            let subtag = format!("Exception_{n:03}");
            assert_eq!(
                map_status("Exception", Some(&subtag)),
                Some(ShipmentStatus::Exception),
                "{subtag}"
            );
        }
        // A returned parcel end to end: tag and subtag of the tracking and its checkpoint.
        let body = with(|v| {
            v["msg"]["tag"] = "Exception".into();
            v["msg"]["subtag"] = "Exception_011".into();
            v["msg"]["checkpoints"][0]["tag"] = "Exception".into();
            v["msg"]["checkpoints"][0]["subtag"] = "Exception_010".into();
        });
        let u = update(&body);
        assert_eq!(
            (u.status, u.carrier_status.as_str()),
            (ShipmentStatus::ReturnedToSender, "Exception/Exception_011")
        );
        assert_eq!(u.checkpoints[0].status, ShipmentStatus::ReturnedToSender);
    }

    #[test]
    fn the_same_update_delivered_twice_has_one_idempotency_key() {
        let a = envelope(SAMPLE);
        // AfterShip notifies the same state again as a new event with a new time.
        let body = with(|v| {
            v["event_id"] = "5d3a0d37-9b0c-4c39-9c6e-1f3f0a7f1e11".into();
            v["ts"] = 1_712_745_296.into();
        });
        let b = match run(&headers(&body, OLD_SECRET), &body).unwrap() {
            Parsed::Events(mut e) => e.pop().unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(a.idempotency_key, b.idempotency_key);
        assert_eq!(a.id, b.id);
        assert_ne!(a.source.delivery_id, b.source.delivery_id);
        let body = with(|v| v["msg"]["subtag"] = "InTransit_002".into());
        assert_ne!(envelope(&body).idempotency_key, a.idempotency_key);
    }

    #[test]
    fn times_fall_back_and_bad_checkpoints_are_skipped() {
        let body = with(|v| {
            let cp = v["msg"]["checkpoints"][0].clone();
            let mut later = cp.clone();
            later["checkpoint_time"] = "2021-01-15T09:10:00+01:00".into();
            later["location"] = "Memphis, TN".into();
            let mut bad = cp.clone();
            bad["checkpoint_time"] = "15/01/2021".into();
            let mut untagged = cp.clone();
            untagged["tag"] = serde_json::Value::Null;
            untagged["checkpoint_time"] = "2021-01-16T00:00:00Z".into();
            v["msg"]["checkpoints"] = serde_json::json!([later, bad, cp, untagged]);
        });
        let u = update(&body);
        assert_eq!(u.checkpoints.len(), 2);
        assert_eq!(u.checkpoints[0].at, datetime!(2021-01-14 00:52:00 UTC)); // oldest first
        assert_eq!(u.status_at, datetime!(2021-01-15 09:10:00 +01:00));
        assert_eq!(u.location.as_deref(), Some("Memphis, TN"));

        let body = with(|v| v["msg"]["checkpoints"] = serde_json::json!([]));
        let u = update(&body);
        assert_eq!(u.status_at, datetime!(2024-04-10 09:34:56 UTC)); // ts 1712741696
        assert_eq!(u.message.as_deref(), Some("In Transit")); // subtag_message
        let body = with(|v| {
            v["msg"]["checkpoints"] = serde_json::Value::Null;
            v.as_object_mut().unwrap().remove("ts");
        });
        assert_eq!(envelope(&body).occurred_at, received());
        let body = with(|v| {
            v["msg"].as_object_mut().unwrap().remove("checkpoints");
            v["ts"] = i64::MAX.into();
        });
        assert_eq!(envelope(&body).occurred_at, received());
    }

    #[test]
    fn order_ref_prefers_order_id() {
        let body = with(|v| v["msg"]["order_id"] = 5_678_901_234_567_890_123u64.into());
        assert_eq!(
            update(&body).order_ref.as_deref(),
            Some("5678901234567890123")
        );
        let body = with(|v| {
            v["msg"]["order_id"] = "".into();
            v["msg"]["order_number"] = "#1001".into();
        });
        assert_eq!(update(&body).order_ref.as_deref(), Some("#1001"));
        let body = with(|v| {
            v["msg"].as_object_mut().unwrap().remove("order_number");
        });
        assert_eq!(update(&body).order_ref, None);
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
            b"{\"event\": \"tracking_update\",}",
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
            with(|v| v["event"] = serde_json::json!(["tracking_update"])),
            with(|v| v["event_id"] = 1.5.into()),
            with(|v| v["ts"] = "1712741696".into()),
            with(|v| v["ts"] = 1.5.into()),
            with(|v| v["msg"] = "tracking".into()),
            with(|v| v["msg"]["tracking_number"] = false.into()),
            with(|v| v["msg"]["tracking_number"] = (-1).into()),
            with(|v| v["msg"]["tag"] = 3.into()),
            with(|v| v["msg"]["order_id"] = serde_json::json!({"id": 1})),
            with(|v| v["msg"]["checkpoints"] = serde_json::json!({"0": {}})),
            with(|v| v["msg"]["checkpoints"][0]["message"] = 7.into()),
            with(|v| v["msg"]["checkpoints"][0]["location"] = serde_json::json!({"city": "x"})),
            with(|v| {
                v.as_object_mut().unwrap().remove("msg");
            }),
            with(|v| {
                v.as_object_mut().unwrap().remove("event");
            }),
            with(|v| {
                v["msg"].as_object_mut().unwrap().remove("tracking_number");
            }),
            with(|v| v["msg"]["slug"] = "".into()),
            with(|v| v["msg"]["slug"] = "***".into()),
            b"[]".to_vec(),
            b"null".to_vec(),
            br#"{"event":"tracking_update","event":"edd_revise"}"#.to_vec(),
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
            v["msg"].as_object_mut().unwrap().remove("slug");
        })) {
            Err(AdapterError::Invalid(m)) => assert!(m.contains("msg.slug"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn huge_numbers_never_pass_through_a_float() {
        let body = with(|v| v["msg"]["tracking_number"] = u64::MAX.into());
        assert_eq!(update(&body).tracking_number, "18446744073709551615");
        let text = String::from_utf8(SAMPLE.to_vec()).unwrap();
        for huge in [
            "18446744073709551616",
            "99999999999999999999999999",
            "9.2e18",
        ] {
            for field in [
                "\"tracking_number\": \"0000000000000000\"",
                "\"order_number\": \"string\"",
            ] {
                let name = field.split(':').next().unwrap();
                let body = text.replacen(field, &format!("{name}: {huge}"), 1);
                assert!(
                    matches!(
                        parse_untrusted(body.as_bytes()),
                        Err(AdapterError::Invalid(_))
                    ),
                    "{field} = {huge}"
                );
            }
        }
        let body = text.replacen("\"ts\": 1712741696", "\"ts\": 99999999999999999999", 1);
        assert!(matches!(
            parse_untrusted(body.as_bytes()),
            Err(AdapterError::Invalid(_))
        ));
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
            "{{\"event\":\"tracking_update\",\"msg\":{}}}",
            "{\"a\":".repeat(100_000)
        );
        assert!(parse_untrusted(deep.as_bytes()).is_err());
    }
}
