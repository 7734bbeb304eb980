//! What a flow sees: the variables its conditions read (`event`, `order`, `customer`) and
//! the data its templates get. Pure: the engine loads the pieces, these functions shape
//! them.

use contracts::{Envelope, Event, Mailbox, Money, Order};
use serde_json::{Value, json};
use tenancy::{Condition, Offer, OfferExpiry, OfferKind, ProductPick};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Facts about a customer that the scheduler keeps from the orders it saw.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CustomerFacts {
    pub email: Option<String>,
    pub orders_count: i64,
    pub total_spent: Option<Money>,
    pub first_order_at: Option<OffsetDateTime>,
    pub last_order_at: Option<OffsetDateTime>,
    pub accepts_marketing: Option<bool>,
}

impl CustomerFacts {
    pub fn to_json(&self) -> Value {
        json!({
            "email": self.email,
            "orders_count": self.orders_count,
            "total_spent": self.total_spent,
            "first_order_at": self.first_order_at.and_then(|t| t.format(&Rfc3339).ok()),
            "last_order_at": self.last_order_at.and_then(|t| t.format(&Rfc3339).ok()),
            "accepts_marketing": self.accepts_marketing,
        })
    }
}

/// The event's payload with its `type`, as conditions and templates read it.
pub fn event_json(event: &Envelope) -> Value {
    let mut v = serde_json::to_value(&event.event).unwrap_or(Value::Null);
    let kind = event.kind().as_str();
    match v.get_mut("data").map(Value::take) {
        Some(Value::Object(mut data)) => {
            data.insert("type".into(), Value::from(kind));
            Value::Object(data)
        }
        _ => {
            v = json!({ "type": kind });
            v
        }
    }
}

/// The order and customer email an event is about, for correlation and goals.
pub fn subject_of(event: &Envelope) -> (Option<String>, Option<String>) {
    let lower = contracts::EmailAddress::key;
    match &event.event {
        Event::OrderPlaced(p) => (Some(p.order.id.to_string()), p.order.customer.email.as_ref().map(lower)),
        Event::OrderPaid(c) | Event::OrderCancelled(c) | Event::OrderFulfilled(c) => {
            (Some(c.order.id.to_string()), c.order.customer.email.as_ref().map(lower))
        }
        Event::FulfillmentCreated(f) | Event::FulfillmentUpdated(f) => (Some(f.order_id.to_string()), f.email.as_ref().map(lower)),
        Event::FulfillmentStatusUpdated(u) => (Some(u.order_id.to_string()), None),
        Event::ShipmentProgressed(p) => (Some(p.order_id.to_string()), None),
        Event::ShipmentStalled(s) => (Some(s.order_id.to_string()), None),
        Event::ShipmentUpdated(u) => (u.order_ref.clone(), None),
        Event::CheckoutUpdated(c) => (None, c.customer.email.as_ref().map(lower)),
        Event::CustomerCreated(c) | Event::CustomerUpdated(c) => (None, c.customer.email.as_ref().map(lower)),
        Event::PrivacyRequested(p) => (None, p.email.as_ref().map(lower)),
        Event::EmailSent(_)
        | Event::EmailBounced(_)
        | Event::EmailComplained(_)
        | Event::EmailOpened(_)
        | Event::EmailClicked(_)
        | Event::EmailUnsubscribed(_)
        | Event::EmailTopicUnsubscribed(_)
        | Event::EmailResubscribed(_) => (None, None),
    }
}

/// The order an event carries itself, if it does.
pub fn order_in(event: &Envelope) -> Option<&Order> {
    match &event.event {
        Event::OrderPlaced(p) => Some(&p.order),
        Event::OrderPaid(c) | Event::OrderCancelled(c) | Event::OrderFulfilled(c) => Some(&c.order),
        _ => None,
    }
}

/// The variables of a condition.
pub fn condition_vars(event: &Envelope, order: Option<&Order>, customer: &CustomerFacts) -> Value {
    json!({ "event": event_json(event), "order": order, "customer": customer.to_json() })
}

/// Whether `cond` holds. A condition that fails to evaluate is false: a flow never sends on
/// a question it could not answer. The error is returned for logging.
pub fn holds(cond: &Condition, vars: &Value) -> Result<bool, String> {
    let mut env = minijinja::Environment::new();
    // `event.shipment.status` on an event without a shipment is undefined (false), not an
    // error: one condition can serve several event shapes.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    let expr = env.compile_expression(&cond.expr).map_err(|e| format!("{}: {e}", cond.at))?;
    let v = expr.eval(vars).map_err(|e| format!("{}: {e}", cond.at))?;
    Ok(v.is_true())
}

/// An offer as templates get it, with its expiry fixed at `now`.
pub fn offer_json(offer: &Offer, now: OffsetDateTime) -> Value {
    let expires_at = match offer.expires {
        OfferExpiry::Never => None,
        OfferExpiry::EndOfDay => now.replace_time(time::Time::MIDNIGHT).checked_add(time::Duration::seconds(86_399)),
        OfferExpiry::After(d) => now.checked_add(time::Duration::try_from(d).unwrap_or(time::Duration::ZERO)),
    };
    json!({
        "kind": match offer.kind { OfferKind::Coupon => "coupon", OfferKind::FreeShipping => "free_shipping" },
        "code": offer.code,
        "percent_off": offer.percent_off,
        "description": offer.description,
        "expires_at": expires_at.and_then(|t| t.format(&Rfc3339).ok()),
    })
}

/// A product as the cross-sell block shows it.
pub fn product_json(p: &ProductPick) -> Value {
    json!({ "title": p.title, "url": p.url, "image_url": p.image_url, "price": p.price })
}

/// Who gets the email and in which locale: the order's customer, else whoever the event names.
pub fn recipient(event: &Envelope, order: Option<&Order>) -> Option<(Mailbox, Option<String>)> {
    let own = match &event.event {
        Event::CheckoutUpdated(c) => Some(&c.customer),
        Event::CustomerCreated(c) | Event::CustomerUpdated(c) => Some(&c.customer),
        _ => None,
    };
    let customer = order.map(|o| &o.customer).or(own);
    if let Some(c) = customer
        && let Some(email) = c.email.clone()
    {
        let name = match (&c.first_name, &c.last_name) {
            (Some(f), Some(l)) => Some(format!("{f} {l}")),
            (Some(n), None) | (None, Some(n)) => Some(n.clone()),
            (None, None) => None,
        };
        return Some((Mailbox { name, email }, c.locale.clone()));
    }
    match &event.event {
        Event::FulfillmentCreated(f) | Event::FulfillmentUpdated(f) => f.email.clone().map(|email| (Mailbox { name: None, email }, None)),
        _ => None,
    }
}

/// The template data for a send step: the event's own pieces under their names, the order,
/// the customer, and the extras (offer, recommendations).
pub fn template_data(event: &Envelope, order: Option<&Order>, offer: Option<Value>, recommendations: Vec<Value>) -> Value {
    let customer = order.map(|o| serde_json::to_value(&o.customer).unwrap_or(Value::Null));
    let mut data = json!({
        "order": order,
        "customer": customer,
        "offer": offer,
        "recommendations": recommendations,
    });
    let extra = match &event.event {
        Event::FulfillmentCreated(f) | Event::FulfillmentUpdated(f) => json!({ "fulfillment": f }),
        Event::ShipmentProgressed(p) => json!({ "shipment": p.shipment, "previous": p.previous }),
        Event::ShipmentStalled(s) => json!({
            "shipment": s.shipment,
            "days_without_scan": s.days_without_scan,
            "last_scan_at": s.last_scan_at.format(&Rfc3339).ok(),
        }),
        Event::OrderPaid(c) | Event::OrderCancelled(c) | Event::OrderFulfilled(c) => json!({ "reason": c.reason }),
        Event::CheckoutUpdated(c) => json!({ "checkout": c, "customer": c.customer }),
        Event::CustomerCreated(c) | Event::CustomerUpdated(c) => json!({ "customer": c.customer }),
        _ => json!({}),
    };
    if let (Value::Object(d), Value::Object(e)) = (&mut data, extra) {
        d.extend(e);
    }
    data
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use contracts::{
        Currency, Customer, EmailAddress, ExternalId, OrderPlaced, ShipmentProgressed, ShipmentStatus, ShipmentView,
        Source, TenantId,
    };
    use time::macros::datetime;

    fn money(minor: i64) -> Money {
        Money { minor, currency: Currency::parse("EUR").unwrap() }
    }

    pub(crate) fn order() -> Order {
        Order {
            id: ExternalId::new("820982911946154508"),
            number: "#1001".into(),
            currency: Currency::parse("EUR").unwrap(),
            placed_at: datetime!(2026-11-24 09:00 UTC),
            customer: Customer {
                id: None,
                email: Some(EmailAddress::parse("Jon@Example.com").unwrap()),
                first_name: Some("Jon".into()),
                last_name: None,
                locale: Some("fa".into()),
                country: None,
                accepts_marketing: None,
            },
            lines: vec![],
            subtotal: money(0),
            shipping: money(0),
            tax: money(0),
            discounts: money(0),
            total: money(12_000),
            shipping_address: None,
            status_url: None,
            test: false,
        }
    }

    pub(crate) fn envelope(event: Event) -> Envelope {
        let source = Source { system: "test".into(), delivery_id: None, topic: None };
        Envelope::new(TenantId::parse("demo").unwrap(), datetime!(2026-11-24 09:00 UTC), source, "k".into(), event)
    }

    fn progressed(status: ShipmentStatus) -> Envelope {
        envelope(Event::ShipmentProgressed(ShipmentProgressed {
            order_id: ExternalId::new("820982911946154508"),
            previous: Some(ShipmentStatus::InTransit),
            shipment: ShipmentView {
                carrier: "ups".into(),
                tracking_number: "1Z".into(),
                tracking_url: None,
                status,
                carrier_status: "D".into(),
                message: None,
                location: None,
                status_at: datetime!(2026-11-26 09:00 UTC),
                estimated_delivery: None,
                history: vec![],
            },
        }))
    }

    fn cond(expr: &str) -> Condition {
        Condition { expr: expr.into(), at: "flows/x.toml:2:8".into() }
    }

    #[test]
    fn conditions_read_the_event_the_order_and_the_customer() {
        let o = order();
        let facts = CustomerFacts { orders_count: 1, ..CustomerFacts::default() };
        let vars = condition_vars(&progressed(ShipmentStatus::Delivered), Some(&o), &facts);
        assert_eq!(holds(&cond("event.shipment.status == 'delivered'"), &vars), Ok(true));
        assert_eq!(holds(&cond("event.type == 'shipment.progressed' and event.previous == 'in_transit'"), &vars), Ok(true));
        assert_eq!(holds(&cond("order.total.minor > 10000 and customer.orders_count == 1"), &vars), Ok(true));
        assert_eq!(holds(&cond("event.shipment.status in ['out_for_delivery', 'exception']"), &vars), Ok(false));
        assert_eq!(holds(&cond("order.nothing.here == 1"), &vars), Ok(false), "missing values are undefined, not errors");
        let err = holds(&cond("event.type | no_such_filter"), &vars).unwrap_err();
        assert!(err.starts_with("flows/x.toml:2:8: "), "{err}");
    }

    #[test]
    fn ids_stay_exact_in_everything_a_flow_sees() {
        let o = order();
        let vars = condition_vars(&envelope(Event::OrderPlaced(OrderPlaced { order: o.clone() })), Some(&o), &CustomerFacts::default());
        assert_eq!(vars["event"]["order"]["id"], "820982911946154508");
        assert_eq!(subject_of(&progressed(ShipmentStatus::Delivered)).0.as_deref(), Some("820982911946154508"));
    }

    #[test]
    fn offers_expire_at_the_end_of_the_day_or_after_their_duration() {
        let now = datetime!(2026-11-24 15:30 UTC);
        let mut offer = Offer {
            name: "same_day".into(),
            kind: OfferKind::Coupon,
            code: "TODAY10".into(),
            percent_off: Some(10),
            description: None,
            expires: OfferExpiry::EndOfDay,
        };
        assert_eq!(offer_json(&offer, now)["expires_at"], "2026-11-24T23:59:59Z");
        offer.expires = OfferExpiry::After(std::time::Duration::from_secs(30 * 86_400));
        assert_eq!(offer_json(&offer, now)["expires_at"], "2026-12-24T15:30:00Z");
        offer.kind = OfferKind::FreeShipping;
        offer.expires = OfferExpiry::Never;
        let v = offer_json(&offer, now);
        assert_eq!((v["kind"].as_str(), v["expires_at"].is_null()), (Some("free_shipping"), true));
    }

    #[test]
    fn shipment_mail_goes_to_the_order_customer_with_the_shipment() {
        let o = order();
        let ev = progressed(ShipmentStatus::OutForDelivery);
        let (to, locale) = recipient(&ev, Some(&o)).unwrap();
        assert_eq!((to.email.as_str(), to.name.as_deref(), locale.as_deref()), ("Jon@example.com", Some("Jon"), Some("fa")));
        let data = template_data(&ev, Some(&o), None, vec![]);
        assert_eq!(data["shipment"]["status"], "out_for_delivery");
        assert_eq!(data["previous"], "in_transit");
        assert_eq!(data["order"]["number"], "#1001");
        assert_eq!(data["customer"]["first_name"], "Jon");
        assert!(recipient(&ev, None).is_none(), "no order, no address: nobody to tell");
    }
}
