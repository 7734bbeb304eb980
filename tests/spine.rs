//! The spine, end to end: one signed Shopify order webhook becomes exactly one tracked
//! email, through all six services over real NATS JetStream, PostgreSQL and SMTP.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;

use std::time::Duration;

use common::{SHOPIFY_SECRET, Stack, shopify_sample};
use mail_parser::MessageParser;
use testkit::eventually_ok;

const LINE_TITLES: &[&str] = &["Aviator sunglasses", "Mid-century lounger"];
const STATUS_URL: &str = "https://jsmith.myshopify.com/548380009/orders/123456abcd/authenticate?key=abcdefg";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// All `href`/`src` URLs in `html` that start with `prefix`, entity-decoded.
fn urls_with_prefix(html: &str, prefix: &str) -> Vec<String> {
    html.match_indices(prefix)
        .map(|(i, _)| {
            let rest = &html[i..];
            let end = rest.find(['"', '\'', ' ', '>']).unwrap_or(rest.len());
            rest[..end].replace("&amp;", "&")
        })
        .collect()
}

#[tokio::test]
async fn one_signed_order_becomes_one_tracked_email() {
    let stack = Stack::start().await;
    let body = shopify_sample();

    let res = stack.post_shopify(&body, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", Some(SHOPIFY_SECRET)).await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);

    let mails = stack.smtp.wait_for(1, Duration::from_secs(60)).await.expect("an email");
    stack.settle().await;
    assert_eq!(stack.smtp.count(), 1, "exactly one email");
    let mail = &mails[0];
    assert_eq!(mail.rcpt_to, vec!["jon@example.com".to_owned()]);

    let parsed = MessageParser::default().parse(&mail.data).expect("a parseable message");
    let html = parsed.body_html(0).expect("an html part").into_owned();
    let text = parsed.body_text(0).expect("a text part").into_owned();
    let subject = parsed.subject().unwrap_or_default().to_owned();
    assert!(subject.contains("#9999"), "subject: {subject}");
    for part in [&html, &text] {
        assert!(part.contains("#9999"), "order number missing");
        for title in LINE_TITLES {
            assert!(part.contains(title), "line item {title} missing");
        }
        assert!(part.contains("$404.95"), "total missing");
    }
    // Every line item of the sample is in the email.
    let sample: serde_json::Value = serde_json::from_slice(&body).unwrap();
    for line in sample["line_items"].as_array().unwrap() {
        let title = line["title"].as_str().unwrap();
        assert!(html.contains(title), "line {title} missing from html");
    }

    // RFC 8058 one-click unsubscribe headers.
    let list_unsub = mail.header("List-Unsubscribe").expect("List-Unsubscribe");
    assert_eq!(mail.header("List-Unsubscribe-Post").as_deref(), Some("List-Unsubscribe=One-Click"));
    let unsub_url = list_unsub.trim().trim_start_matches('<').trim_end_matches('>').to_owned();
    let tracker_base = format!("http://{}", stack.tracker.addr);
    assert!(unsub_url.starts_with(&format!("{tracker_base}/u/")), "{unsub_url}");

    // The open pixel.
    let pixels = urls_with_prefix(&html, &format!("{tracker_base}/o/"));
    assert_eq!(pixels.len(), 1, "one pixel");
    let res = reqwest::get(&pixels[0]).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/gif");
    assert_eq!(res.bytes().await.unwrap().len(), 43);

    // A tracked link redirects to the original URL, and only there.
    let clicks = urls_with_prefix(&html, &format!("{tracker_base}/c/"));
    assert!(!clicks.is_empty(), "tracked links");
    assert!(!html.contains(&format!("href=\"{}", STATUS_URL.replace('&', "&amp;"))), "status link left untracked");
    let client = no_redirects();
    let mut saw_status = false;
    for url in &clicks {
        let res = client.get(url).header("user-agent", "Mozilla/5.0 (iPhone) Mobile").send().await.unwrap();
        assert!(res.status().is_redirection(), "{url} -> {}", res.status());
        let location = res.headers()["location"].to_str().unwrap().to_owned();
        saw_status |= location == STATUS_URL;
    }
    assert!(saw_status, "the order status link redirects to the shop");
    let forged = format!("{}x", &clicks[0]);
    assert_eq!(client.get(&forged).send().await.unwrap().status(), 404, "forged token");
    let foreign = format!("{tracker_base}/c/eyJ0IjoiZGVtbyJ9.AAAA");
    assert_eq!(client.get(&foreign).send().await.unwrap().status(), 404, "unsigned token");

    // One-click unsubscribe.
    let res = reqwest::Client::new()
        .post(&unsub_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Every hit is recorded and announced (published_at set once JetStream stored it)...
    let tracker_db = stack.db("tracker").await;
    let kinds: Vec<(String, bool)> = eventually_ok(Duration::from_secs(20), "hits published", || async {
        let rows: Vec<(String, bool)> =
            sqlx::query_as("select kind, published_at is not null from hits order by occurred_at").fetch_all(&tracker_db).await?;
        anyhow::ensure!(rows.iter().all(|(_, p)| *p), "unpublished hits: {rows:?}");
        anyhow::ensure!(rows.iter().any(|(k, _)| k == "unsubscribe"), "no unsubscribe yet");
        Ok(rows)
    })
    .await;
    assert_eq!(kinds.iter().filter(|(k, _)| k == "open").count(), 1);
    assert_eq!(kinds.iter().filter(|(k, _)| k == "click").count(), clicks.len());
    let sent: i64 = sqlx::query_scalar("select count(*) from messages").fetch_one(&tracker_db).await.unwrap();
    assert_eq!(sent, 1, "the tracker learnt of the sent email");

    // ...and consumed: the unsubscribe reaches the segmenter's consent and the sender's
    // suppression list.
    let segmenter_db = stack.db("segmenter").await;
    eventually_ok(Duration::from_secs(20), "consent recorded", || async {
        let status: Option<String> =
            sqlx::query_scalar("select status from consents where tenant = 'demo' and email = 'jon@example.com'")
                .fetch_optional(&segmenter_db)
                .await?;
        anyhow::ensure!(status.as_deref() == Some("unsubscribed"), "consent is {status:?}");
        Ok(())
    })
    .await;
    let (count, total): (i32, i64) =
        sqlx::query_as("select order_count, total_spent_minor from profiles where tenant = 'demo' and email = 'jon@example.com'")
            .fetch_one(&segmenter_db)
            .await
            .unwrap();
    assert_eq!((count, total), (1, 40495), "profile from the order");
    let sender_db = stack.db("sender").await;
    eventually_ok(Duration::from_secs(20), "marketing suppression", || async {
        let n: i64 = sqlx::query_scalar("select count(*) from suppressions where scope = 'marketing'").fetch_one(&sender_db).await?;
        anyhow::ensure!(n == 1, "{n} suppressions");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn repeated_deliveries_and_bus_redelivery_still_send_one_email() {
    let stack = Stack::start().await;
    let body = shopify_sample();
    for _ in 0..3 {
        let res = stack.post_shopify(&body, "same-delivery-id", Some(SHOPIFY_SECRET)).await;
        assert_eq!(res.status(), 200);
    }
    // A second subscription delivers the same order under another delivery id.
    assert_eq!(stack.post_shopify(&body, "other-delivery-id", Some(SHOPIFY_SECRET)).await.status(), 200);
    stack.smtp.wait_for(1, Duration::from_secs(60)).await.expect("an email");

    // The same event redelivered inside the bus, past JetStream's duplicate window.
    let tenant = contracts::TenantId::parse("demo").unwrap();
    let headers = vec![
        ("x-shopify-topic".to_owned(), "orders/create".to_owned()),
        ("x-shopify-webhook-id".to_owned(), "same-delivery-id".to_owned()),
        ("x-shopify-hmac-sha256".to_owned(), ingest::sources::shopify::sign(SHOPIFY_SECRET.as_bytes(), &body)),
    ];
    let parsed = ingest::sources::shopify::verify_and_parse(
        &[SHOPIFY_SECRET.as_bytes()],
        &tenant,
        &headers,
        &body,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let ingest::sources::shopify::Parsed::Events(events) = parsed else { panic!("expected events") };
    for _ in 0..2 {
        stack.bus.replay_event(&events[0]).await.unwrap();
    }
    stack.settle().await;
    assert_eq!(stack.bus.stream_len("PF_EVENTS").await.unwrap(), 1 + 2 + 1, "one publish plus two replays plus email.sent");
    assert_eq!(stack.smtp.count(), 1, "still exactly one email");

    let segmenter_db = stack.db("segmenter").await;
    let count: i32 = sqlx::query_scalar("select order_count from profiles where email = 'jon@example.com'")
        .fetch_one(&segmenter_db)
        .await
        .unwrap();
    assert_eq!(count, 1, "the order is counted once");
}

#[tokio::test]
async fn bad_webhooks_are_refused_and_publish_nothing() {
    let stack = Stack::start().await;
    let body = shopify_sample();
    let post = |path: &str, body: Vec<u8>, sig: Option<String>| {
        let mut req = reqwest::Client::new()
            .post(stack.url(&stack.ingest, path))
            .header("x-shopify-topic", "orders/create")
            .header("x-shopify-webhook-id", "w1")
            .body(body);
        if let Some(sig) = sig {
            req = req.header("x-shopify-hmac-sha256", sig);
        }
        req.send()
    };
    let sign = |b: &[u8], secret: &str| Some(ingest::sources::shopify::sign(secret.as_bytes(), b));
    let hook = "/v1/webhooks/demo/shopify";

    let wrong = post(hook, body.clone(), sign(&body, "not-the-secret")).await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains("signature"));
    assert_eq!(post(hook, body.clone(), None).await.unwrap().status(), 401, "missing signature");

    let huge = vec![b' '; 300 * 1024];
    assert_eq!(post(hook, huge.clone(), sign(&huge, SHOPIFY_SECRET)).await.unwrap().status(), 413, "oversized");

    let garbage = b"{\"id\": 1, \"line_items\": [".to_vec();
    let res = post(hook, garbage.clone(), sign(&garbage, SHOPIFY_SECRET)).await.unwrap();
    assert_eq!(res.status(), 400, "malformed json");
    assert!(res.text().await.unwrap().contains("malformed json"));

    let res = post("/v1/webhooks/nobody/shopify", body.clone(), sign(&body, SHOPIFY_SECRET)).await.unwrap();
    assert_eq!(res.status(), 404, "unknown tenant");
    assert_eq!(post("/v1/webhooks/demo/magento", body.clone(), sign(&body, SHOPIFY_SECRET)).await.unwrap().status(), 404);
    assert_eq!(post("/v1/webhooks/Bad.Tenant/shopify", body.clone(), None).await.unwrap().status(), 404);

    assert_eq!(stack.bus.stream_len("PF_EVENTS").await.unwrap(), 0, "nothing published");

    // Ops endpoints of every service.
    for svc in [&stack.ingest, &stack.tracker, &stack.segmenter, &stack.scheduler, &stack.renderer] {
        assert_eq!(reqwest::get(stack.url(svc, "/healthz")).await.unwrap().status(), 200);
        assert_eq!(reqwest::get(stack.url(svc, "/readyz")).await.unwrap().status(), 200);
        let metrics = reqwest::get(stack.url(svc, "/metrics")).await.unwrap();
        assert_eq!(metrics.status(), 200);
    }
    let metrics = reqwest::get(stack.url(&stack.ingest, "/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ingest_webhooks_total"), "{metrics}");
}

#[tokio::test]
async fn a_sender_killed_between_render_and_send_still_sends_once() {
    let mut stack = Stack::start_without_sender().await;
    // The first sender talks to a server that never answers: it takes the message and
    // hangs before it could claim it.
    let stuck = testkit::smtp_capture::SmtpCapture::start(testkit::smtp_capture::CaptureConfig {
        hang_on_connect: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let first = stack.start_sender(stuck.addr()).await;
    let body = shopify_sample();
    assert_eq!(stack.post_shopify(&body, "kill-test", Some(SHOPIFY_SECRET)).await.status(), 200);

    // Wait until the rendered message is in the sender's hands.
    eventually_ok(Duration::from_secs(30), "message delivered to the first sender", || async {
        let pending = stack.bus.consumer_pending("PF_SEND", "sender-send-tx").await?;
        let rendered = stack.bus.stream_len("PF_SEND").await?;
        anyhow::ensure!(rendered == 1 && pending == 1, "rendered {rendered}, pending {pending}");
        Ok(())
    })
    .await;
    first.kill().await;

    let smtp = stack.smtp.addr();
    stack.sender = Some(stack.start_sender(smtp).await);
    stack.smtp.wait_for(1, Duration::from_secs(60)).await.expect("the email after restart");
    stack.settle().await;
    assert_eq!(stack.smtp.count(), 1, "exactly one email");
    let sender_db = stack.db("sender").await;
    let states: Vec<String> = sqlx::query_scalar("select state from deliveries").fetch_all(&sender_db).await.unwrap();
    assert_eq!(states, vec!["sent".to_owned()]);
    if let Some(s) = stack.sender.take() {
        s.stop().await.expect("graceful stop");
    }
}
