//! Shipments as Postflow sees them, whatever carrier or aggregator reported them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The canonical status set every carrier vocabulary is mapped onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShipmentStatus {
    InfoReceived,
    InTransit,
    OutForDelivery,
    FailedAttempt,
    AvailableForPickup,
    Delivered,
    Exception,
    ReturnedToSender,
    Expired,
}

impl ShipmentStatus {
    pub const ALL: [ShipmentStatus; 9] = [
        Self::InfoReceived,
        Self::InTransit,
        Self::OutForDelivery,
        Self::FailedAttempt,
        Self::AvailableForPickup,
        Self::Delivered,
        Self::Exception,
        Self::ReturnedToSender,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InfoReceived => "info_received",
            Self::InTransit => "in_transit",
            Self::OutForDelivery => "out_for_delivery",
            Self::FailedAttempt => "failed_attempt",
            Self::AvailableForPickup => "available_for_pickup",
            Self::Delivered => "delivered",
            Self::Exception => "exception",
            Self::ReturnedToSender => "returned_to_sender",
            Self::Expired => "expired",
        }
    }

    /// The status named `s` (snake_case, as in JSON), if there is one.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// True for statuses after which nothing more is expected.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::ReturnedToSender | Self::Expired)
    }
}

/// One scan or status line in a shipment's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Checkpoint {
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub at: OffsetDateTime,
    pub status: ShipmentStatus,
    /// The carrier's own status code or tag for this line.
    pub carrier_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// `shipment.updated`: a carrier or aggregator reported a shipment's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShipmentUpdated {
    /// Carrier as lowercase slug, e.g. `fedex`, `ups`, `usps`, `dhl`.
    pub carrier: String,
    pub tracking_number: String,
    pub status: ShipmentStatus,
    /// The carrier's (or aggregator's) own status, kept verbatim.
    pub carrier_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// When the carrier says the current status happened.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub status_at: OffsetDateTime,
    /// An order reference carried by the event (order id or number), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub estimated_delivery: Option<OffsetDateTime>,
    /// History, oldest first, as far as the event carries it.
    #[serde(default)]
    pub checkpoints: Vec<Checkpoint>,
}

/// A shipment as the scheduler tracks it: linked to its order, with its latest status and
/// its history. Carried by the journey events the scheduler derives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShipmentView {
    pub carrier: String,
    pub tracking_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_url: Option<String>,
    pub status: ShipmentStatus,
    /// The carrier's own status of the latest update, verbatim.
    pub carrier_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub status_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>")]
    pub estimated_delivery: Option<OffsetDateTime>,
    /// Every status change seen, oldest first.
    #[serde(default)]
    pub history: Vec<Checkpoint>,
}

/// `shipment.progressed` (derived by the scheduler): a linked shipment reached a new status.
/// Repeats, regressions and late out-of-order updates never produce one; a burst of updates
/// inside the tenant's window produces one, with the latest status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShipmentProgressed {
    pub order_id: crate::ExternalId,
    /// The status the customer was last told about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<ShipmentStatus>,
    pub shipment: ShipmentView,
}

/// `shipment.stalled` (derived by the scheduler): no carrier scan for the tenant's
/// configured number of days, and the parcel has not arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShipmentStalled {
    pub order_id: crate::ExternalId,
    pub shipment: ShipmentView,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub last_scan_at: OffsetDateTime,
    pub days_without_scan: u32,
}
