//! Every shop source reaches an email through the real stack, and carrier events reach
//! the bus; a WooCommerce ping is answered with 200 and publishes nothing.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;

use std::time::Duration;

use common::{SHOPIFY_SECRET as SECRET, Stack};
use ingest::sources::{easypost, postflow, woocommerce};

fn reference(name: &str) -> Vec<u8> {
    std::fs::read(common::workspace_root().join("services/ingest/fixtures").join(name)).unwrap()
}

async fn post(stack: &Stack, source: &str, headers: &[(&str, String)], body: Vec<u8>) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(stack.url(&stack.ingest, &format!("/v1/webhooks/demo/{source}"))).body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn woocommerce_ping_is_answered_and_its_orders_are_confirmed() {
    let stack = Stack::start().await;
    let ping = post(&stack, "woocommerce", &[("content-type", "application/x-www-form-urlencoded".into())], b"webhook_id=42".to_vec()).await;
    assert_eq!(ping.status(), 200, "the creation ping needs exactly 200");
    assert_eq!(stack.bus.stream_len("PF_EVENTS").await.unwrap(), 0, "a ping publishes nothing");

    let body = reference("woocommerce_order_v3_payload.json");
    let headers = [
        ("content-type", "application/json".to_owned()),
        ("x-wc-webhook-topic", "order.created".to_owned()),
        ("x-wc-webhook-delivery-id", "d1".to_owned()),
        ("x-wc-webhook-signature", woocommerce::sign(SECRET.as_bytes(), &body)),
    ];
    let res = post(&stack, "woocommerce", &headers, body.clone()).await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let unsigned = post(&stack, "woocommerce", &headers[..2], body).await;
    assert_eq!(unsigned.status(), 401);

    let mail = stack.smtp.wait_for(1, Duration::from_secs(60)).await.unwrap().remove(0);
    assert_eq!(mail.rcpt_to, vec!["john.doe@example.com".to_owned()]);
    assert!(mail.subject().unwrap().contains("#727"), "{:?}", mail.subject());
}

#[tokio::test]
async fn generic_format_orders_are_confirmed_and_replays_are_refused() {
    let stack = Stack::start().await;
    let body = serde_json::to_vec(&serde_json::json!({
        "type": "order.placed",
        "data": { "order": {
            "id": "A-1", "number": "A-1", "currency": "EUR", "placed_at": "2026-11-24T09:30:00Z",
            "customer": { "email": "grace@example.com", "first_name": "Grace", "locale": "en" },
            "lines": [{ "title": "Teapot", "quantity": 1,
                        "unit_price": { "minor": 2500, "currency": "EUR" }, "total": { "minor": 2500, "currency": "EUR" } }],
            "subtotal": { "minor": 2500, "currency": "EUR" }, "shipping": { "minor": 0, "currency": "EUR" },
            "tax": { "minor": 0, "currency": "EUR" }, "discounts": { "minor": 0, "currency": "EUR" },
            "total": { "minor": 2500, "currency": "EUR" }
        } }
    }))
    .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let signed = |ts: i64| {
        vec![
            ("content-type", "application/json".to_owned()),
            ("webhook-id", "msg_1".to_owned()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", postflow::sign(SECRET.as_bytes(), "msg_1", ts, &body).unwrap()),
        ]
    };
    let stale = post(&stack, "postflow", &signed(now - 3600), body.clone()).await;
    assert_eq!(stale.status(), 401, "an hour-old signature is a replay");
    let res = post(&stack, "postflow", &signed(now), body.clone()).await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let mail = stack.smtp.wait_for(1, Duration::from_secs(60)).await.unwrap().remove(0);
    assert_eq!(mail.rcpt_to, vec!["grace@example.com".to_owned()]);
    assert!(mail.subject().unwrap().contains("A-1"));
}

#[tokio::test]
async fn carrier_updates_become_shipment_events() {
    let stack = Stack::start().await;
    let body = reference("easypost_tracker_updated.json");
    let headers = [
        ("content-type", "application/json".to_owned()),
        ("x-hmac-signature", easypost::sign(SECRET.as_bytes(), &body).unwrap()),
    ];
    for _ in 0..2 {
        let res = post(&stack, "easypost", &headers, body.clone()).await;
        assert_eq!(res.status(), 200, "{:?}", res.text().await);
    }
    let wrong = [("content-type", "application/json".to_owned()), ("x-hmac-signature", "hmac-sha256-hex=00".to_owned())];
    assert_eq!(post(&stack, "easypost", &wrong, body).await.status(), 401);
    assert_eq!(stack.bus.stream_len("PF_EVENTS").await.unwrap(), 1, "one shipment.updated, the repeat deduplicated");
}

#[tokio::test]
async fn shippo_authenticates_with_a_url_token() {
    let stack = Stack::start().await;
    let body = reference("shippo_track_updated.json");
    let url = |q: &str| stack.url(&stack.ingest, &format!("/v1/webhooks/demo/shippo{q}"));
    let client = reqwest::Client::new();
    let no_token = client.post(url("")).body(body.clone()).send().await.unwrap();
    assert_eq!(no_token.status(), 401);
    let wrong = client.post(url("?token=guess")).body(body.clone()).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = client.post(url(&format!("?token={SECRET}"))).body(body).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    // The official sample is a test-mode delivery: acknowledged, never published, so a
    // dashboard test cannot email a real customer.
    assert!(ok.text().await.unwrap().contains("ignored"));
    assert_eq!(stack.bus.stream_len("PF_EVENTS").await.unwrap(), 0);
}
