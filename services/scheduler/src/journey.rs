//! The scheduler's memory of the journey: orders, customers, products bought together and
//! parcels, kept in its own database from the events it consumes, and the shipment timers
//! that turn carrier updates into `shipment.progressed` / `shipment.stalled` events.
//!
//! Invariants:
//! - every function here but the housekeeping `expire_unlinked` runs inside the caller's
//!   transaction; the event that caused it is recorded in `applied_events` in the same
//!   transaction, so nothing is applied twice;
//! - a change older (by the source's time) than what is stored never overwrites it;
//! - derived events have keys fixed by the row's sequence numbers, so a publish repeated
//!   after a crash is the same business event and dedupes downstream.

use std::collections::BTreeSet;

use contracts::{
    Envelope, Event, ExternalId, Fulfillment, FulfillmentStatusUpdated, Money, Order, ShipmentProgressed, ShipmentStalled,
    ShipmentStatus, ShipmentUpdated, Source,
};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};
use tenancy::Tenant;
use time::OffsetDateTime;

use crate::context::CustomerFacts;
use crate::shipments::{Applied, Current, Shipment, Timing, Update, tracking_key};

type Tx<'a> = Transaction<'a, Postgres>;

/// Applies `event` to the projections. Returns false when it had been applied before.
pub(crate) async fn apply(tx: &mut Tx<'_>, tenant: &Tenant, event: &Envelope, now: OffsetDateTime) -> sqlx::Result<bool> {
    let fresh = sqlx::query("insert into applied_events (event_id, applied_at) values ($1, $2) on conflict do nothing")
        .bind(event.id)
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected()
        == 1;
    if !fresh {
        return Ok(false);
    }
    let t = tenant.id.as_str();
    match &event.event {
        Event::OrderPlaced(p) => {
            let upsert = upsert_order(tx, t, &p.order, "placed", event.occurred_at).await?;
            if upsert == Upsert::Inserted {
                count_order(tx, t, &p.order).await?;
            }
        }
        Event::OrderPaid(c) => {
            upsert_order(tx, t, &c.order, "paid", event.occurred_at).await?;
        }
        Event::OrderFulfilled(c) => {
            upsert_order(tx, t, &c.order, "fulfilled", event.occurred_at).await?;
        }
        Event::OrderCancelled(c) => {
            upsert_order(tx, t, &c.order, "cancelled", event.occurred_at).await?;
        }
        Event::FulfillmentCreated(f) | Event::FulfillmentUpdated(f) => fulfillment(tx, tenant, f, now).await?,
        Event::FulfillmentStatusUpdated(u) => fulfillment_status(tx, tenant, u, now).await?,
        Event::ShipmentUpdated(u) => carrier_update(tx, tenant, u, now).await?,
        Event::CustomerCreated(c) | Event::CustomerUpdated(c) => {
            if let Some(email) = &c.customer.email {
                sqlx::query(
                    "insert into customers (tenant, email, accepts_marketing, updated_at) values ($1, $2, $3, $4)
                     on conflict (tenant, email) do update set accepts_marketing = coalesce(excluded.accepts_marketing, customers.accepts_marketing),
                       updated_at = excluded.updated_at
                     where customers.updated_at is null or customers.updated_at <= excluded.updated_at",
                )
                .bind(t)
                .bind(email.key())
                .bind(c.customer.accepts_marketing)
                .bind(event.occurred_at)
                .execute(&mut **tx)
                .await?;
            }
        }
        _ => {}
    }
    Ok(true)
}

#[derive(Debug, PartialEq, Eq)]
enum Upsert {
    Inserted,
    Updated,
    Stale,
}

async fn upsert_order(tx: &mut Tx<'_>, tenant: &str, order: &Order, state: &str, at: OffsetDateTime) -> sqlx::Result<Upsert> {
    let snapshot = serde_json::to_value(order).unwrap_or(Value::Null);
    // `xmax = 0` tells an insert from an update. A placed event never downgrades a state
    // reached by a later event; any other event applies only if it is not older.
    let row = sqlx::query(
        "insert into orders (tenant, order_id, number, email, state, snapshot, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7)
         on conflict (tenant, order_id) do update set
           snapshot = excluded.snapshot, email = excluded.email, updated_at = excluded.updated_at,
           state = case when excluded.state = 'placed' then orders.state else excluded.state end
         where orders.updated_at <= excluded.updated_at and orders.state <> 'cancelled'
         returning (xmax = 0) as inserted",
    )
    .bind(tenant)
    .bind(order.id.as_str())
    .bind(&order.number)
    .bind(order.customer.email.as_ref().map(contracts::EmailAddress::key))
    .bind(state)
    .bind(snapshot)
    .bind(at)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match row {
        None => Upsert::Stale,
        Some(r) if r.try_get::<bool, _>("inserted")? => Upsert::Inserted,
        Some(_) => Upsert::Updated,
    })
}

/// A new order: the customer's counts, and what it teaches cross-sell.
async fn count_order(tx: &mut Tx<'_>, tenant: &str, order: &Order) -> sqlx::Result<()> {
    if let Some(email) = &order.customer.email {
        sqlx::query(
            "insert into customers (tenant, email, orders_count, total_spent_minor, currency, first_order_at, last_order_at, accepts_marketing)
             values ($1, $2, 1, $3, $4, $5, $5, $6)
             on conflict (tenant, email) do update set
               orders_count = customers.orders_count + 1,
               total_spent_minor = customers.total_spent_minor
                 + case when customers.currency is null or customers.currency = excluded.currency then excluded.total_spent_minor else 0 end,
               currency = coalesce(customers.currency, excluded.currency),
               first_order_at = least(customers.first_order_at, excluded.first_order_at),
               last_order_at = greatest(customers.last_order_at, excluded.last_order_at),
               accepts_marketing = coalesce(excluded.accepts_marketing, customers.accepts_marketing)",
        )
        .bind(tenant)
        .bind(email.key())
        .bind(order.total.minor)
        .bind(order.currency.as_str())
        .bind(order.placed_at)
        .bind(order.customer.accepts_marketing)
        .execute(&mut **tx)
        .await?;
    }
    let mut ids = BTreeSet::new();
    for line in &order.lines {
        let Some(id) = &line.product_id else { continue };
        ids.insert(id.as_str().to_owned());
        sqlx::query(
            "insert into products (tenant, product_id, title, url, image_url, price) values ($1, $2, $3, $4, $5, $6)
             on conflict (tenant, product_id) do update set title = excluded.title,
               url = coalesce(excluded.url, products.url), image_url = coalesce(excluded.image_url, products.image_url),
               price = excluded.price",
        )
        .bind(tenant)
        .bind(id.as_str())
        .bind(&line.title)
        .bind(&line.url)
        .bind(&line.image_url)
        .bind(serde_json::to_value(&line.unit_price).unwrap_or(Value::Null))
        .execute(&mut **tx)
        .await?;
    }
    let ids: Vec<String> = ids.into_iter().collect();
    if ids.len() > 1 {
        // Every ordered pair once: n² rows per order, bounded by the order's distinct products.
        sqlx::query(
            "insert into co_purchases (tenant, a, b, n)
             select $1, a, b, 1 from unnest($2::text[]) a, unnest($2::text[]) b where a <> b
             on conflict (tenant, a, b) do update set n = co_purchases.n + 1",
        )
        .bind(tenant)
        .bind(&ids)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The latest snapshot of an order.
pub(crate) async fn order(tx: &mut Tx<'_>, tenant: &str, order_id: &str) -> sqlx::Result<Option<Order>> {
    let row = sqlx::query("select snapshot from orders where tenant = $1 and order_id = $2")
        .bind(tenant)
        .bind(order_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.and_then(|r| r.try_get::<Value, _>("snapshot").ok()).and_then(|v| serde_json::from_value(v).ok()))
}

pub(crate) async fn customer(tx: &mut Tx<'_>, tenant: &str, email: Option<&str>) -> sqlx::Result<CustomerFacts> {
    let Some(email) = email else { return Ok(CustomerFacts::default()) };
    let row = sqlx::query(
        "select orders_count, total_spent_minor, currency, first_order_at, last_order_at, accepts_marketing
         from customers where tenant = $1 and email = $2",
    )
    .bind(tenant)
    .bind(email)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(r) = row else { return Ok(CustomerFacts { email: Some(email.to_owned()), ..CustomerFacts::default() }) };
    let currency: Option<String> = r.try_get("currency")?;
    let spent: i64 = r.try_get("total_spent_minor")?;
    Ok(CustomerFacts {
        email: Some(email.to_owned()),
        orders_count: i64::from(r.try_get::<i32, _>("orders_count")?),
        total_spent: currency
            .and_then(|c| contracts::Currency::parse(&c).ok())
            .map(|currency| Money { minor: spent, currency }),
        first_order_at: r.try_get("first_order_at")?,
        last_order_at: r.try_get("last_order_at")?,
        accepts_marketing: r.try_get("accepts_marketing")?,
    })
}

/// Products most often bought with `order`'s, best first, excluding what it contains.
pub(crate) async fn bought_together(tx: &mut Tx<'_>, tenant: &str, order: &Order, limit: usize) -> sqlx::Result<Vec<Value>> {
    let ids: Vec<String> = order.lines.iter().filter_map(|l| l.product_id.as_ref().map(|p| p.as_str().to_owned())).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "select p.title, p.url, p.image_url, p.price, sum(c.n) as score
         from co_purchases c join products p on p.tenant = c.tenant and p.product_id = c.b
         where c.tenant = $1 and c.a = any($2) and not (c.b = any($2)) and p.url is not null
         group by p.product_id, p.title, p.url, p.image_url, p.price
         order by score desc, p.title
         limit $3",
    )
    .bind(tenant)
    .bind(&ids)
    .bind(i64::try_from(limit).unwrap_or(3))
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(serde_json::json!({
                "title": r.try_get::<String, _>("title")?,
                "url": r.try_get::<Option<String>, _>("url")?,
                "image_url": r.try_get::<Option<String>, _>("image_url")?,
                "price": r.try_get::<Option<Value>, _>("price")?,
            }))
        })
        .collect()
}

// ---- shipments -------------------------------------------------------------------------

fn timing(tenant: &Tenant) -> Timing {
    Timing { burst_window: tenant.shipments.burst_window, stalled_after: tenant.shipments.stalled_after }
}

/// A shipment row with its identity.
struct ShipmentRow {
    key: String,
    order_id: Option<String>,
    fulfillment_id: Option<String>,
    shipment: Shipment,
    notify_seq: i32,
    stall_seq: i32,
    existed: bool,
}

fn status_of(s: Option<String>) -> Option<ShipmentStatus> {
    s.as_deref().and_then(ShipmentStatus::parse)
}

fn decode(r: &PgRow) -> sqlx::Result<ShipmentRow> {
    let current = match (status_of(r.try_get("status")?), r.try_get::<Option<OffsetDateTime>, _>("status_at")?) {
        (Some(status), Some(at)) => Some(Current {
            status,
            carrier_status: r.try_get::<Option<String>, _>("carrier_status")?.unwrap_or_default(),
            message: r.try_get("message")?,
            location: r.try_get("location")?,
            at,
        }),
        _ => None,
    };
    Ok(ShipmentRow {
        key: r.try_get("tracking_key")?,
        order_id: r.try_get("order_id")?,
        fulfillment_id: r.try_get("fulfillment_id")?,
        shipment: Shipment {
            carrier: r.try_get("carrier")?,
            tracking_number: r.try_get("tracking_number")?,
            tracking_url: r.try_get("tracking_url")?,
            current,
            estimated_delivery: r.try_get("estimated_delivery")?,
            history: serde_json::from_value(r.try_get("history")?).unwrap_or_default(),
            notified: status_of(r.try_get("notified")?),
            notify_due_at: r.try_get("notify_due_at")?,
            last_scan_at: r.try_get("last_scan_at")?,
            stall_due_at: r.try_get("stall_due_at")?,
        },
        notify_seq: r.try_get("notify_seq")?,
        stall_seq: r.try_get("stall_seq")?,
        existed: true,
    })
}

const COLUMNS: &str = "tracking_key, fulfillment_id, order_id, carrier, tracking_number, tracking_url, status, carrier_status,
    message, location, status_at, estimated_delivery, history, notified, notify_due_at, last_scan_at, stall_due_at,
    notify_seq, stall_seq";

async fn load(tx: &mut Tx<'_>, tenant: &str, key: &str) -> sqlx::Result<Option<ShipmentRow>> {
    let row = sqlx::query(&format!("select {COLUMNS} from shipments where tenant = $1 and tracking_key = $2 for update"))
        .bind(tenant)
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(decode).transpose()
}

async fn save(tx: &mut Tx<'_>, tenant: &str, r: &ShipmentRow, link_deadline: Option<OffsetDateTime>, now: OffsetDateTime) -> sqlx::Result<()> {
    let s = &r.shipment;
    let c = s.current.as_ref();
    sqlx::query(
        "insert into shipments (tenant, tracking_key, fulfillment_id, order_id, carrier, tracking_number, tracking_url, status,
           carrier_status, message, location, status_at, estimated_delivery, history, notified, notify_due_at, last_scan_at,
           stall_due_at, notify_seq, stall_seq, next_due_at, link_deadline, created_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)
         on conflict (tenant, tracking_key) do update set fulfillment_id = excluded.fulfillment_id, order_id = excluded.order_id,
           carrier = excluded.carrier, tracking_url = excluded.tracking_url, status = excluded.status,
           carrier_status = excluded.carrier_status, message = excluded.message, location = excluded.location,
           status_at = excluded.status_at, estimated_delivery = excluded.estimated_delivery, history = excluded.history,
           notified = excluded.notified, notify_due_at = excluded.notify_due_at, last_scan_at = excluded.last_scan_at,
           stall_due_at = excluded.stall_due_at, notify_seq = excluded.notify_seq, stall_seq = excluded.stall_seq,
           next_due_at = excluded.next_due_at, link_deadline = excluded.link_deadline",
    )
    .bind(tenant)
    .bind(&r.key)
    .bind(&r.fulfillment_id)
    .bind(&r.order_id)
    .bind(&s.carrier)
    .bind(&s.tracking_number)
    .bind(&s.tracking_url)
    .bind(c.map(|c| c.status.as_str()))
    .bind(c.map(|c| c.carrier_status.as_str()))
    .bind(c.and_then(|c| c.message.as_deref()))
    .bind(c.and_then(|c| c.location.as_deref()))
    .bind(c.map(|c| c.at))
    .bind(s.estimated_delivery)
    .bind(serde_json::to_value(&s.history).unwrap_or(Value::Array(vec![])))
    .bind(s.notified.map(ShipmentStatus::as_str))
    .bind(s.notify_due_at)
    .bind(s.last_scan_at)
    .bind(s.stall_due_at)
    .bind(r.notify_seq)
    .bind(r.stall_seq)
    .bind(s.next_due())
    .bind(if r.order_id.is_some() { None } else { link_deadline })
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn fresh_row(key: String, carrier: String, number: String, now: OffsetDateTime, timing: Timing) -> ShipmentRow {
    ShipmentRow {
        key,
        order_id: None,
        fulfillment_id: None,
        shipment: Shipment::new(carrier, number, now, timing),
        notify_seq: 0,
        stall_seq: 0,
        existed: false,
    }
}

/// A fulfillment announces parcels and links them (and any carrier updates that came
/// first) to the order.
async fn fulfillment(tx: &mut Tx<'_>, tenant: &Tenant, f: &Fulfillment, now: OffsetDateTime) -> sqlx::Result<()> {
    if f.status == "cancelled" {
        return Ok(());
    }
    let t = tenant.id.as_str();
    let carrier = f.carrier.clone().unwrap_or_default();
    let numbers: Vec<(String, String)> = if f.tracking_numbers.is_empty() {
        vec![(format!("#{}", f.id), String::new())]
    } else {
        f.tracking_numbers.iter().map(|n| (tracking_key(n), n.clone())).collect()
    };
    for (i, (key, number)) in numbers.into_iter().enumerate() {
        let mut row = match load(tx, t, &key).await? {
            Some(r) => r,
            None => fresh_row(key, carrier.clone(), number, now, timing(tenant)),
        };
        let was_unlinked = row.existed && row.order_id.is_none();
        row.order_id = Some(f.order_id.as_str().to_owned());
        row.fulfillment_id = Some(f.id.as_str().to_owned());
        if row.shipment.carrier.is_empty() {
            row.shipment.carrier.clone_from(&carrier);
        }
        if let Some(url) = f.tracking_urls.get(i).or(f.tracking_urls.first()) {
            row.shipment.tracking_url = Some(url.clone());
        }
        if was_unlinked {
            metrics::counter!("scheduler_shipments_linked_late_total").increment(1);
            tracing::info!(tracking_key = %row.key, "carrier updates that arrived first are now linked to their order");
        }
        save(tx, t, &row, None, now).await?;
    }
    Ok(())
}

/// A shop-reported status for its own fulfillment (Shopify fulfillment events).
async fn fulfillment_status(tx: &mut Tx<'_>, tenant: &Tenant, u: &FulfillmentStatusUpdated, now: OffsetDateTime) -> sqlx::Result<()> {
    let t = tenant.id.as_str();
    let keys: Vec<String> = sqlx::query("select tracking_key from shipments where tenant = $1 and fulfillment_id = $2")
        .bind(t)
        .bind(u.fulfillment_id.as_str())
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| r.try_get("tracking_key"))
        .collect::<sqlx::Result<_>>()?;
    let keys = if keys.is_empty() { vec![format!("#{}", u.fulfillment_id)] } else { keys };
    let update = Update {
        current: Current {
            status: u.status,
            carrier_status: u.carrier_status.clone(),
            message: u.message.clone(),
            location: u.location.clone(),
            at: u.status_at,
        },
        estimated_delivery: u.estimated_delivery,
        tracking_url: None,
        checkpoints: Vec::new(),
    };
    for key in keys {
        let mut row = match load(tx, t, &key).await? {
            Some(r) => r,
            None => fresh_row(key, String::new(), String::new(), now, timing(tenant)),
        };
        row.order_id = Some(u.order_id.as_str().to_owned());
        row.fulfillment_id = Some(u.fulfillment_id.as_str().to_owned());
        record(row.shipment.apply(update.clone(), now, timing(tenant)));
        save(tx, t, &row, None, now).await?;
    }
    Ok(())
}

/// A carrier's update: applied to the parcel whether or not its order is known yet; one
/// that cannot be linked waits (bounded by the tenant's `link_wait`) for its fulfillment.
async fn carrier_update(tx: &mut Tx<'_>, tenant: &Tenant, u: &ShipmentUpdated, now: OffsetDateTime) -> sqlx::Result<()> {
    let t = tenant.id.as_str();
    let key = tracking_key(&u.tracking_number);
    let mut row = match load(tx, t, &key).await? {
        Some(r) => r,
        None => fresh_row(key, u.carrier.clone(), u.tracking_number.clone(), now, timing(tenant)),
    };
    if row.order_id.is_none()
        && let Some(reference) = &u.order_ref
    {
        row.order_id = order_by_reference(tx, t, reference).await?;
    }
    let update = Update {
        current: Current {
            status: u.status,
            carrier_status: u.carrier_status.clone(),
            message: u.message.clone(),
            location: u.location.clone(),
            at: u.status_at,
        },
        estimated_delivery: u.estimated_delivery,
        tracking_url: u.tracking_url.clone(),
        checkpoints: u.checkpoints.clone(),
    };
    record(row.shipment.apply(update, now, timing(tenant)));
    let deadline = now.checked_add(time::Duration::try_from(tenant.shipments.link_wait).unwrap_or(time::Duration::ZERO));
    save(tx, t, &row, deadline, now).await
}

fn record(applied: Applied) {
    let outcome = match applied {
        Applied::Changed => "changed",
        Applied::Recorded => "recorded",
        Applied::IgnoredFinal => "ignored_final",
    };
    metrics::counter!("scheduler_shipment_updates_total", "outcome" => outcome).increment(1);
}

/// An order id from a carrier's order reference: the platform id or the number customers see.
async fn order_by_reference(tx: &mut Tx<'_>, tenant: &str, reference: &str) -> sqlx::Result<Option<String>> {
    let trimmed = reference.trim();
    let with_hash = if trimmed.starts_with('#') { trimmed.to_owned() } else { format!("#{trimmed}") };
    let row = sqlx::query(
        "select order_id from orders where tenant = $1 and (order_id = $2 or number = $2 or number = $3) order by order_id limit 1",
    )
    .bind(tenant)
    .bind(trimmed)
    .bind(with_hash)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| r.try_get("order_id")).transpose()
}

/// The derived events due at `now` for up to `batch` parcels, with the rows updated in
/// `tx`. The caller publishes them, then commits.
pub(crate) async fn due_shipment_events(
    tx: &mut Tx<'_>,
    tenants: &tenancy::Tenants,
    now: OffsetDateTime,
    batch: i64,
) -> sqlx::Result<Vec<Envelope>> {
    let rows = sqlx::query(&format!(
        "select tenant, {COLUMNS} from shipments
         where order_id is not null and next_due_at <= $1
         order by next_due_at limit $2 for update skip locked"
    ))
    .bind(now)
    .bind(batch)
    .fetch_all(&mut **tx)
    .await?;
    let mut out = Vec::new();
    for r in &rows {
        let tenant_id: String = r.try_get("tenant")?;
        let mut row = decode(r)?;
        let Some(order_id) = row.order_id.clone() else { continue };
        let Some(tenant) = tenants.find(&tenant_id) else {
            // The tenant is gone: stop the alarms rather than fire into nowhere.
            row.shipment.notify_due_at = None;
            row.shipment.stall_due_at = None;
            save(tx, &tenant_id, &row, None, now).await?;
            continue;
        };
        let source = Source { system: "scheduler".into(), delivery_id: None, topic: None };
        let order_id = ExternalId::new(order_id);
        if let Some((previous, view)) = row.shipment.take_notification(now) {
            row.notify_seq += 1;
            let key = format!("shipment:{}:progressed:{}", row.key, row.notify_seq);
            let event = Event::ShipmentProgressed(ShipmentProgressed { order_id: order_id.clone(), previous, shipment: view });
            out.push(Envelope::new(tenant.id.clone(), now, source.clone(), key, event));
        }
        if let Some(days) = row.shipment.take_stall(now) {
            row.stall_seq += 1;
            let key = format!("shipment:{}:stalled:{}", row.key, row.stall_seq);
            let announced = row.shipment.last_scan_at;
            let event = Event::ShipmentStalled(ShipmentStalled {
                order_id,
                shipment: row.shipment.view_or_announced(announced),
                last_scan_at: row.shipment.last_scan_at,
                days_without_scan: days,
            });
            out.push(Envelope::new(tenant.id.clone(), now, source, key, event));
        }
        save(tx, &tenant_id, &row, None, now).await?;
    }
    Ok(out)
}

/// Drops carrier updates whose fulfillment never came within the tenant's `link_wait`.
pub(crate) async fn expire_unlinked(pool: &sqlx::PgPool, now: OffsetDateTime) -> sqlx::Result<u64> {
    let n = sqlx::query("delete from shipments where order_id is null and link_deadline <= $1")
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected();
    if n > 0 {
        metrics::counter!("scheduler_shipments_unlinked_expired_total").increment(n);
        tracing::warn!(count = n, "carrier updates expired without a fulfillment to link them to an order");
    }
    Ok(n)
}
