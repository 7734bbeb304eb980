//! One order's whole life, replayed over HTTP through the real stack with the scheduler's
//! clock in the test's hand: order → fulfillment with tracking → a dozen carrier events
//! (duplicates, a repeated status, a burst, a late out-of-order update) → delivered →
//! review request three days later. Once for Shopify (its own fulfillment events), once for
//! WooCommerce with EasyPost tracking. The scheduler is killed during the three-day wait.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{SHOPIFY_SECRET as SECRET, Stack};
use ingest::sources::{easypost, shopify, woocommerce};
use kit::ManualClock;
use serde_json::{Value, json};
use testkit::smtp_capture::CapturedMail;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

const T0: OffsetDateTime = datetime!(2026-11-24 09:00 UTC);

fn fixture(name: &str) -> Value {
    let bytes = std::fs::read(common::workspace_root().join("services/ingest/fixtures").join(name)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

struct Journey {
    stack: Stack,
    clock: ManualClock,
    http: reqwest::Client,
}

impl Journey {
    async fn start() -> Self {
        let clock = ManualClock::new(T0);
        let stack = Stack::start_with_clock(Arc::new(clock.clone())).await;
        Self { stack, clock, http: reqwest::Client::new() }
    }

    fn now(&self) -> OffsetDateTime {
        kit::Clock::now(&self.clock)
    }

    async fn post(&self, source: &str, headers: Vec<(&str, String)>, body: Vec<u8>) {
        let url = self.stack.url(&self.stack.ingest, &format!("/v1/webhooks/demo/{source}"));
        let mut req = self.http.post(url).header("content-type", "application/json").body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200, "{source}: {:?}", res.text().await);
    }

    async fn shopify(&self, topic: &str, event_id: &str, body: &Value) {
        let body = serde_json::to_vec(body).unwrap();
        let headers = vec![
            ("x-shopify-topic", topic.to_owned()),
            ("x-shopify-webhook-id", format!("w-{event_id}")),
            ("x-shopify-event-id", event_id.to_owned()),
            ("x-shopify-triggered-at", rfc3339(self.now())),
            ("x-shopify-shop-domain", "demo.myshopify.com".to_owned()),
            ("x-shopify-hmac-sha256", shopify::sign(SECRET.as_bytes(), &body)),
        ];
        self.post("shopify", headers, body).await;
    }

    async fn woocommerce(&self, topic: &str, delivery: &str, body: &Value) {
        let body = serde_json::to_vec(body).unwrap();
        let headers = vec![
            ("x-wc-webhook-topic", topic.to_owned()),
            ("x-wc-webhook-delivery-id", delivery.to_owned()),
            ("x-wc-webhook-signature", woocommerce::sign(SECRET.as_bytes(), &body)),
        ];
        self.post("woocommerce", headers, body).await;
    }

    async fn easypost(&self, body: &Value) {
        let body = serde_json::to_vec(body).unwrap();
        let headers = vec![("x-hmac-signature", easypost::sign(SECRET.as_bytes(), &body).unwrap())];
        self.post("easypost", headers, body).await;
    }

    /// Lets everything posted so far be handled at the current time, moves the scheduler's
    /// clock, and waits until everything due by then has happened.
    async fn advance(&self, by: time::Duration) {
        self.settle().await;
        self.clock.advance(by);
        self.settle().await;
    }

    /// Like [`Self::advance`], to a given moment.
    async fn set(&self, to: OffsetDateTime) {
        self.settle().await;
        self.clock.set(to);
        self.settle().await;
    }

    /// Waits until no consumer has work pending and nothing is due by the test's clock.
    /// JetStream may report a consumer's pending count a moment after a publish was
    /// acknowledged, so "at rest" must also be seen twice in a row with nothing new
    /// stored in between: the work-queue streams empty and the event stream unchanged.
    async fn settle(&self) {
        let mut last: Option<(u64, i64)> = None;
        loop {
            let seen = self.at_rest().await;
            if last.is_some() && last == Some(seen) {
                return;
            }
            last = Some(seen);
            tokio::time::sleep(Duration::from_millis(50)).await; // the gap between two observations
        }
    }

    /// One observation of a pipeline at rest: (events stored, deliveries recorded).
    async fn at_rest(&self) -> (u64, i64) {
        let db = self.stack.db("scheduler").await;
        let sender = self.stack.db("sender").await;
        let now = self.now();
        let bus = &self.stack.bus;
        testkit::eventually_ok(Duration::from_secs(60), "pipeline at rest", || async {
            let due: i64 = sqlx::query_scalar(
                "select (select count(*) from timers t join flow_runs r on r.id = t.run_id
                         where t.fired_at is null and t.due_at <= $1 and r.state = 'active')
                      + (select count(*) from shipments where order_id is not null and next_due_at <= $1)",
            )
            .bind(now)
            .fetch_one(&db)
            .await?;
            anyhow::ensure!(due == 0, "{due} timers due");
            for kind in scheduler::CONSUMED {
                let durable = format!("scheduler-{}", kind.as_str().replace('.', "-"));
                let pending = bus.consumer_pending("PF_EVENTS", &durable).await?;
                anyhow::ensure!(pending == 0, "{durable} has {pending} pending");
            }
            for stream in ["PF_RENDER", "PF_SEND"] {
                let queued = bus.stream_len(stream).await?;
                anyhow::ensure!(queued == 0, "{stream} holds {queued}");
            }
            let (sending, total): (i64, i64) =
                sqlx::query_as("select count(*) filter (where state = 'sending'), count(*) from deliveries")
                    .fetch_one(&sender)
                    .await?;
            anyhow::ensure!(sending == 0, "{sending} messages being sent");
            Ok((bus.stream_len("PF_EVENTS").await?, total))
        })
        .await
    }

    /// The templates of every email sent so far, in order.
    async fn sent(&self) -> Vec<String> {
        sqlx::query_scalar("select template from deliveries where state = 'sent' order by claimed_at, message_id")
            .fetch_all(&self.stack.db("sender").await)
            .await
            .unwrap()
    }

    /// Asserts the emails so far are exactly `templates`, and returns the newest one.
    async fn expect(&self, templates: &[&str]) -> CapturedMail {
        let sent = self.sent().await;
        if sent != templates {
            let deliveries: Vec<(String, String)> = sqlx::query_as("select template, state from deliveries order by claimed_at")
                .fetch_all(&self.stack.db("sender").await)
                .await
                .unwrap();
            let runs: Vec<(String, String)> = sqlx::query_as("select flow_id, state from flow_runs order by created_at")
                .fetch_all(&self.stack.db("scheduler").await)
                .await
                .unwrap();
            eprintln!("deliveries: {deliveries:?}\nflow runs: {runs:?}");
        }
        assert_eq!(sent, templates, "emails sent by {}", rfc3339(self.now()));
        let mails = self.stack.smtp.wait_for(templates.len(), Duration::from_secs(30)).await.unwrap();
        assert_eq!(mails.len(), templates.len(), "the SMTP server received exactly these");
        mails.into_iter().last().unwrap()
    }

    /// The scheduler's `shipment.progressed` history for a parcel (statuses in order).
    async fn progressed(&self) -> Vec<String> {
        sqlx::query_scalar(
            "select event->'data'->'shipment'->>'status' from flow_runs
             where event->>'type' = 'shipment.progressed' and flow_id = 'shipment-status' order by created_at, id",
        )
        .fetch_all(&self.stack.db("scheduler").await)
        .await
        .unwrap()
    }
}

fn body_text(mail: &CapturedMail) -> String {
    mail.body()
}

fn minutes(n: i64) -> time::Duration {
    time::Duration::minutes(n)
}

fn hours(n: i64) -> time::Duration {
    time::Duration::hours(n)
}

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

/// A Shopify fulfillment event on the sample fulfillment.
fn shopify_event(id: u64, status: &str, happened_at: OffsetDateTime, message: &str) -> Value {
    let mut e = fixture("shopify_fulfillment_events_create.json");
    e["id"] = json!(id);
    e["status"] = json!(status);
    e["message"] = json!(message);
    e["happened_at"] = json!(rfc3339(happened_at));
    e["created_at"] = json!(rfc3339(happened_at));
    e["updated_at"] = json!(rfc3339(happened_at));
    e
}

#[tokio::test]
async fn shopify_order_life_sends_exactly_the_right_emails_at_the_right_time() {
    let mut j = Journey::start().await;
    let order = fixture("shopify_orders_create.json");

    // Order → confirmation.
    j.shopify("orders/create", "e-order", &order).await;
    j.settle().await;
    let mail = j.expect(&["order_confirmation"]).await;
    let number = order["name"].as_str().unwrap();
    assert!(mail.subject().unwrap().contains(number), "{:?}", mail.subject());

    // Fulfillment with tracking → shipping confirmation with carrier, number and link.
    j.advance(hours(1)).await;
    j.shopify("fulfillments/create", "e-ful", &fixture("shopify_fulfillments_create.json")).await;
    j.settle().await;
    let mail = j.expect(&["order_confirmation", "shipping_confirmation"]).await;
    let body = body_text(&mail);
    assert!(body.contains("1z827wk74630"), "tracking number in the shipping confirmation");
    assert!(body.contains("UPS"), "carrier in the shipping confirmation");

    // Carrier events. Statuses customers are not told about (label, in transit) and a
    // duplicate delivery and a repeated status send nothing.
    let t = j.now();
    j.advance(hours(1)).await;
    j.shopify("fulfillment_events/create", "e-1", &shopify_event(1, "confirmed", t + hours(1), "Label created")).await;
    j.advance(hours(3)).await;
    let transit = shopify_event(2, "in_transit", t + hours(4), "Departed facility");
    j.shopify("fulfillment_events/create", "e-2", &transit).await;
    j.shopify("fulfillment_events/create", "e-2", &transit).await; // the same delivery again
    j.advance(hours(2)).await;
    j.shopify("fulfillment_events/create", "e-3", &shopify_event(3, "in_transit", t + hours(6), "Arrived at facility")).await;
    j.advance(minutes(30)).await;
    j.expect(&["order_confirmation", "shipping_confirmation"]).await;

    // Out for delivery: one email, but only once the burst window (10 min) has passed.
    let day1 = t + days(1);
    j.set(day1).await;
    j.shopify("fulfillment_events/create", "e-4", &shopify_event(4, "out_for_delivery", day1, "Out for delivery")).await;
    j.settle().await;
    j.advance(minutes(9)).await;
    j.expect(&["order_confirmation", "shipping_confirmation"]).await;
    j.advance(minutes(1)).await;
    let mail = j.expect(&["order_confirmation", "shipping_confirmation", "shipment_update"]).await;
    assert!(body_text(&mail).contains("1z827wk74630"));

    // A failed attempt the same afternoon.
    j.advance(hours(5)).await;
    j.shopify("fulfillment_events/create", "e-5", &shopify_event(5, "attempted_delivery", j.now(), "Nobody home")).await;
    j.advance(minutes(10)).await;
    let mail = j.expect(&["order_confirmation", "shipping_confirmation", "shipment_update", "shipment_update"]).await;
    assert!(body_text(&mail).contains("Nobody home"), "the carrier's message is shown");

    // A burst: out for delivery again, then ready for pickup four minutes later → one
    // email with the latest status and the history.
    let day2 = t + days(2);
    j.set(day2).await;
    j.shopify("fulfillment_events/create", "e-6", &shopify_event(6, "out_for_delivery", day2, "Out for delivery again")).await;
    j.advance(minutes(4)).await;
    j.shopify("fulfillment_events/create", "e-7", &shopify_event(7, "ready_for_pickup", day2 + minutes(4), "Ready at the UPS Access Point")).await;
    j.advance(minutes(10)).await;
    let mail = j
        .expect(&["order_confirmation", "shipping_confirmation", "shipment_update", "shipment_update", "shipment_update"])
        .await;
    let body = body_text(&mail);
    assert!(body.contains("Ready at the UPS Access Point"), "the latest status");
    assert!(body.contains("Out for delivery again"), "the history of the burst");
    assert_eq!(j.progressed().await, ["out_for_delivery", "failed_attempt", "available_for_pickup"]);

    // Delivered (reported twice), then a late "in transit" from before: nothing more.
    let day3 = t + days(3);
    j.set(day3).await;
    j.shopify("fulfillment_events/create", "e-8", &shopify_event(8, "delivered", day3, "Delivered")).await;
    j.shopify("fulfillment_events/create", "e-9", &shopify_event(9, "delivered", day3 + minutes(1), "Delivered")).await;
    j.advance(minutes(10)).await;
    let delivered_at = j.now();
    let mut expected = vec!["order_confirmation", "shipping_confirmation", "shipment_update", "shipment_update", "shipment_update"];
    expected.push("delivered");
    j.expect(&expected).await;
    j.shopify("fulfillment_events/create", "e-10", &shopify_event(10, "in_transit", day2 - hours(1), "Late scan")).await;
    j.advance(hours(1)).await;
    j.expect(&expected).await;

    // The scheduler dies (like SIGKILL) during the three-day wait; a new one takes over.
    j.stack.scheduler.abort().await;
    j.stack.scheduler = j.stack.start_scheduler().await;

    // Not a minute early…
    j.set(delivered_at + days(3) - minutes(1)).await;
    j.settle().await;
    j.expect(&expected).await;
    // …and once, on time, with the tenant's review coupon.
    j.set(delivered_at + days(3)).await;
    j.settle().await;
    expected.push("review_request");
    let mail = j.expect(&expected).await;
    assert!(body_text(&mail).contains("THANKS10"), "the review request carries the tenant's coupon");

    // Nothing else, however long we wait (a delivered parcel cannot stall).
    j.advance(days(10)).await;
    j.expect(&expected).await;
}

/// An EasyPost `tracker.updated` for the WooCommerce order's USPS parcel, with the history
/// up to this scan (`scans`: (status, detail message, time), oldest first).
fn easypost_event(id: &str, scans: &[(&str, &str, OffsetDateTime)]) -> Value {
    let mut e = fixture("easypost_tracker_updated.json");
    let details: Vec<Value> = scans
        .iter()
        .map(|(status, message, at)| {
            json!({ "object": "TrackingDetail", "message": message, "description": message, "status": status,
                    "status_detail": null, "datetime": rfc3339(*at), "source": "USPS", "carrier_code": null,
                    "tracking_location": { "object": "TrackingLocation", "city": "BROOKLYN", "state": "NY", "country": "US", "zip": null } })
        })
        .collect();
    let (status, _, at) = scans.last().unwrap();
    e["id"] = json!(id);
    e["result"]["tracking_code"] = json!(USPS_NUMBER);
    e["result"]["carrier"] = json!("USPS");
    e["result"]["status"] = json!(status);
    e["result"]["status_detail"] = Value::Null;
    e["result"]["tracking_details"] = Value::Array(details);
    e["result"]["updated_at"] = json!(rfc3339(*at));
    e
}

const USPS_NUMBER: &str = "9400111899223817236510";

#[tokio::test]
async fn woocommerce_order_with_easypost_tracking_sends_exactly_the_right_emails() {
    let j = Journey::start().await;
    let mut order = fixture("woocommerce_order_v3_payload.json");

    j.woocommerce("order.created", "d-1", &order).await;
    j.settle().await;
    j.expect(&["order_confirmation"]).await;

    // EasyPost reports the label before the shop marks the order shipped: the update
    // waits for the fulfillment that links it to the order.
    let t = j.now();
    j.advance(hours(2)).await;
    j.easypost(&easypost_event("evt_1", &[("pre_transit", "Shipping label created", t + hours(2))])).await;
    j.advance(minutes(30)).await;
    j.expect(&["order_confirmation"]).await;

    // The shop completes the order with Shipment Tracking: shipping confirmation.
    j.advance(hours(1)).await;
    order["status"] = json!("completed");
    order["date_modified_gmt"] = json!("2017-03-23T10:00:00");
    order["meta_data"] = json!([{ "id": 1, "key": "_wc_shipment_tracking_items", "value": [{
        "tracking_provider": "usps", "custom_tracking_provider": "", "custom_tracking_link": "",
        "tracking_number": USPS_NUMBER, "date_shipped": "1490263200", "tracking_id": "trk-727" }] }]);
    j.woocommerce("order.updated", "d-2", &order).await;
    j.woocommerce("order.updated", "d-2-retry", &order).await; // WooCommerce retries
    j.settle().await;
    let mail = j.expect(&["order_confirmation", "shipping_confirmation"]).await;
    assert!(body_text(&mail).contains(USPS_NUMBER));

    // In transit (twice, the second a byte-identical redelivery): nothing to tell.
    let mut scans = vec![("pre_transit", "Shipping label created", t + hours(2))];
    scans.push(("in_transit", "Accepted at USPS origin facility", t + hours(6)));
    j.set(t + hours(6)).await;
    let transit = easypost_event("evt_2", &scans);
    j.easypost(&transit).await;
    j.easypost(&transit).await;
    j.advance(minutes(10)).await;
    scans.push(("in_transit", "Arrived at USPS regional facility", t + hours(20)));
    j.set(t + hours(20)).await;
    j.easypost(&easypost_event("evt_3", &scans)).await;
    j.advance(minutes(10)).await;
    j.expect(&["order_confirmation", "shipping_confirmation"]).await;

    // An exception, then a burst: out for delivery and delivered seven minutes apart.
    scans.push(("failure", "Weather delay", t + days(1)));
    j.set(t + days(1)).await;
    let exception = easypost_event("evt_4", &scans);
    j.easypost(&exception).await;
    j.easypost(&exception).await; // EasyPost retries
    j.advance(minutes(10)).await;
    let mail = j.expect(&["order_confirmation", "shipping_confirmation", "shipment_update"]).await;
    assert!(body_text(&mail).contains("Weather delay"));

    let day2 = t + days(2);
    scans.push(("in_transit", "Arrived at post office", day2 - hours(3)));
    j.set(day2 - hours(3)).await;
    j.easypost(&easypost_event("evt_4b", &scans)).await;
    scans.push(("out_for_delivery", "Out for delivery", day2));
    j.set(day2).await;
    j.easypost(&easypost_event("evt_5", &scans)).await;
    j.advance(minutes(7)).await;
    scans.push(("delivered", "Delivered, in mailbox", day2 + minutes(7)));
    let delivered = easypost_event("evt_6", &scans);
    j.easypost(&delivered).await;
    j.easypost(&delivered).await; // and again
    j.advance(minutes(10)).await;
    let mail = j.expect(&["order_confirmation", "shipping_confirmation", "shipment_update", "delivered"]).await;
    let delivered_at = j.now();
    let body = body_text(&mail);
    assert!(body.contains("Delivered, in mailbox") || body.contains("Woo Single #1"), "the delivered email");

    // A late, out-of-order "in transit" after delivery changes nothing.
    let mut late = scans.clone();
    late.truncate(3);
    j.easypost(&easypost_event("evt_7", &late)).await;
    late.truncate(2);
    j.easypost(&easypost_event("evt_8", &late)).await;
    j.advance(hours(1)).await;
    j.expect(&["order_confirmation", "shipping_confirmation", "shipment_update", "delivered"]).await;

    j.set(delivered_at + days(3) - minutes(1)).await;
    j.settle().await;
    j.expect(&["order_confirmation", "shipping_confirmation", "shipment_update", "delivered"]).await;
    j.set(delivered_at + days(3)).await;
    j.settle().await;
    let mail = j.expect(&["order_confirmation", "shipping_confirmation", "shipment_update", "delivered", "review_request"]).await;
    assert!(body_text(&mail).contains("THANKS10"));
    assert_eq!(mail.rcpt_to, vec!["john.doe@example.com".to_owned()]);
}

#[tokio::test]
async fn a_silent_parcel_gets_one_apology_and_a_cancelled_order_ends_its_journey() {
    let j = Journey::start().await;
    j.shopify("orders/create", "e-order", &fixture("shopify_orders_create.json")).await;
    j.advance(hours(1)).await;
    j.shopify("fulfillments/create", "e-ful", &fixture("shopify_fulfillments_create.json")).await;
    j.settle().await;
    j.expect(&["order_confirmation", "shipping_confirmation"]).await;

    // No scan for four days: one apology, not one per poll.
    j.advance(days(4)).await;
    let mail = j.expect(&["order_confirmation", "shipping_confirmation", "shipment_stalled"]).await;
    assert!(body_text(&mail).contains("1z827wk74630"));
    j.advance(days(1)).await;
    j.expect(&["order_confirmation", "shipping_confirmation", "shipment_stalled"]).await;

    // The shop cancels: the cancellation email, and nothing of the journey after it.
    let mut cancelled = fixture("shopify_orders_create.json");
    cancelled["cancel_reason"] = json!("customer");
    cancelled["cancelled_at"] = json!(rfc3339(j.now()));
    j.shopify("orders/cancelled", "e-cancel", &cancelled).await;
    j.settle().await;
    j.expect(&["order_confirmation", "shipping_confirmation", "shipment_stalled", "order_cancelled"]).await;
    j.shopify("fulfillment_events/create", "e-late", &shopify_event(20, "delivered", j.now(), "Delivered")).await;
    j.advance(minutes(10)).await;
    j.advance(days(4)).await;
    let sent = j.sent().await;
    assert!(!sent.contains(&"review_request".to_owned()), "a cancelled order gets no review request: {sent:?}");
}

/// A generic-format order with the given (product id, title) lines.
fn generic_order(id: &str, email: &str, lines: &[(&str, &str)]) -> Value {
    let money = |minor: i64| json!({ "minor": minor, "currency": "EUR" });
    let lines: Vec<Value> = lines
        .iter()
        .map(|(product, title)| {
            json!({ "product_id": product, "title": title, "quantity": 1, "unit_price": money(1500), "total": money(1500),
                    "url": format!("https://demo-shop.example/products/{product}") })
        })
        .collect();
    let total = 1500 * lines.len() as i64;
    json!({ "type": "order.placed", "data": { "order": {
        "id": id, "number": id, "currency": "EUR", "placed_at": "2026-11-24T09:00:00Z",
        "customer": { "email": email, "first_name": "Grace", "locale": "en" },
        "lines": lines, "subtotal": money(total), "shipping": money(0), "tax": money(0), "discounts": money(0),
        "total": money(total)
    } } })
}

#[tokio::test]
async fn cross_sell_learns_what_the_shops_customers_buy_together() {
    let j = Journey::start().await;
    let post = |order: Value, msg: &'static str| {
        let body = serde_json::to_vec(&order).unwrap();
        let ts = time::OffsetDateTime::now_utc().unix_timestamp();
        let headers = vec![
            ("webhook-id", msg.to_owned()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", ingest::sources::postflow::sign(SECRET.as_bytes(), msg, ts, &body).unwrap()),
        ];
        (headers, body)
    };
    for (order, msg) in [
        (generic_order("A-1", "ada@example.com", &[("teapot", "Teapot"), ("cups", "Tea cups")]), "m1"),
        (generic_order("A-2", "bo@example.com", &[("teapot", "Teapot"), ("kettle", "Kettle")]), "m2"),
        (generic_order("A-3", "cy@example.com", &[("teapot", "Teapot"), ("cups", "Tea cups")]), "m3"),
    ] {
        let (headers, body) = post(order, msg);
        j.post("postflow", headers, body).await;
        j.settle().await;
    }
    let first = j.stack.smtp.messages().into_iter().find(|m| m.rcpt_to == ["ada@example.com"]).unwrap();
    assert!(!body_text(&first).contains("Kettle"), "nothing learned yet: the shop's picks");
    assert!(body_text(&first).contains("Lens cleaning kit"), "the shop's own picks fill in");

    // A new customer buys a teapot: cups were bought with it twice, the kettle once.
    let (headers, body) = post(generic_order("A-4", "di@example.com", &[("teapot", "Teapot")]), "m4");
    j.post("postflow", headers, body).await;
    j.settle().await;
    let mail = j.stack.smtp.messages().into_iter().find(|m| m.rcpt_to == ["di@example.com"]).unwrap();
    let text = body_text(&mail);
    let (cups, kettle) = (text.find("Tea cups").expect("cups recommended"), text.find("Kettle").expect("kettle recommended"));
    assert!(cups < kettle, "most often bought together first");
}
