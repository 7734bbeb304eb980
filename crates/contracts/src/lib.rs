//! Postflow's wire contracts: every type that crosses the bus lives here, and only here.
//!
//! Invariant: this crate depends on no runtime, no NATS and no database. Services parse
//! foreign formats at their edge into these types, which cannot hold invalid values
//! (a [`TenantId`] is always subject-safe, [`Money`] is always minor units, ids never pass
//! through `f64`).
//!
//! Versioning: every envelope carries [`SPEC_VERSION`]. A change to a payload is either
//! backward compatible (a new optional field) or becomes a new event type.

mod email;
mod envelope;
mod ids;
mod lifecycle;
mod messages;
mod money;
mod order;
mod shipment;
pub mod schema;

pub use email::{EmailAddress, InvalidEmail, Mailbox};
pub use envelope::{Envelope, Event, EventKind, Source};
pub use ids::{ExternalId, InvalidId, MessageId, TenantId};
pub use messages::{
    Cause, EmailBounced, EmailClicked, EmailComplained, EmailOpened, EmailResubscribed, EmailSent,
    EmailTopicUnsubscribed, EmailUnsubscribed, Lane, OutboundMessage, RenderRequest,
};
pub use lifecycle::{
    Checkout, CustomerChanged, Fulfillment, FulfillmentStatusUpdated, OrderChanged,
    PrivacyRequestKind, PrivacyRequested,
};
pub use money::{Currency, InvalidMoney, Money};
pub use order::{Address, Customer, Order, OrderLine, OrderPlaced};
pub use shipment::{
    Checkpoint, ShipmentProgressed, ShipmentStalled, ShipmentStatus, ShipmentUpdated, ShipmentView,
};

/// Version of the envelope format carried in every event, render request and message.
pub const SPEC_VERSION: u16 = 1;
