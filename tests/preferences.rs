//! The preferences centre through the real stack: a marketing email links a preferences
//! page; the choices made there reach the sender (per-topic suppressions), the segmenter
//! (consent per topic) and the tracker's own record; transactional mail is never affected,
//! and opting back in never revives an address that hard-bounced.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;

use std::time::Duration;

use common::{SHOPIFY_SECRET, Stack, shopify_sample};
use contracts::{Cause, EmailAddress, Lane, Mailbox, MessageId, RenderRequest, SPEC_VERSION, TenantId};
use mail_parser::MessageParser;
use sqlx::PgPool;
use testkit::eventually_ok;
use testkit::smtp_capture::Rule;

const WAIT: Duration = Duration::from_secs(60);
const ALL_TOPICS: &str = "topic=newsletter&topic=offers&topic=recommendations";

/// A marketing email of `topic` for `to`, as a flow naming that topic would request it.
fn marketing(to: &str, topic: &str, n: u32, locale: &str) -> RenderRequest {
    RenderRequest {
        spec: SPEC_VERSION,
        message_id: MessageId::derive(&["preferences-test", to, &n.to_string()]),
        tenant: TenantId::parse("demo").unwrap(),
        lane: Lane::Marketing,
        template: "review_request".into(),
        to: Mailbox { name: None, email: EmailAddress::parse(to).unwrap() },
        locale: Some(locale.into()),
        topic: Some(topic.into()),
        cause: Cause { flow: "campaign".into(), run_id: uuid::Uuid::nil(), step: n, event_id: uuid::Uuid::nil() },
        data: renderer::render::sample_data("review_request").unwrap(),
    }
}

/// Publishes `req` and waits for the sender's outcome: `sent`, `suppressed` or `bounced`.
async fn send(stack: &Stack, sender_db: &PgPool, req: &RenderRequest) -> (String, String) {
    stack.bus.publish_render(req).await.unwrap();
    eventually_ok(WAIT, "a delivery outcome", || async {
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "select state, response from deliveries where message_id = $1 and state in ('sent', 'suppressed', 'bounced')",
        )
        .bind(req.message_id.as_str())
        .fetch_optional(sender_db)
        .await?;
        row.map(|(s, r)| (s, r.unwrap_or_default())).ok_or_else(|| anyhow::anyhow!("no outcome yet"))
    })
    .await
}

/// The URL in `mail`'s HTML part that starts with `prefix`.
fn link(mail: &testkit::smtp_capture::CapturedMail, prefix: &str) -> Option<String> {
    let parsed = MessageParser::default().parse(&mail.data).unwrap();
    let html = parsed.body_html(0).unwrap().into_owned();
    let start = html.find(prefix)?;
    let rest = &html[start..];
    Some(rest[..rest.find(['"', '\'', ' ', '>']).unwrap_or(rest.len())].replace("&amp;", "&"))
}

async fn post_form(url: &str, form: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .unwrap()
}

/// Waits until the sender holds exactly `want` suppressions of `scope` for `email`.
async fn suppressions(sender_db: &PgPool, email: &str, scope: &str, want: i64) {
    eventually_ok(WAIT, &format!("{want} {scope} suppressions of {email}"), || async {
        let n: i64 = sqlx::query_scalar("select count(*) from suppressions where email = $1 and scope = $2")
            .bind(email)
            .bind(scope)
            .fetch_one(sender_db)
            .await?;
        anyhow::ensure!(n == want, "{n}");
        Ok(())
    })
    .await;
}

/// Waits until the consumers of every change of choice have nothing pending.
async fn choices_applied(stack: &Stack) {
    let durables = ["email-unsubscribed", "email-topic_unsubscribed", "email-resubscribed"]
        .into_iter()
        .flat_map(|feed| ["sender", "segmenter", "tracker"].map(|svc| format!("{svc}-{feed}")));
    let durables: Vec<String> = durables.collect();
    eventually_ok(WAIT, "choice events consumed", || async {
        for durable in &durables {
            let pending = stack.bus.consumer_pending("PF_EVENTS", durable).await?;
            anyhow::ensure!(pending == 0, "{durable} has {pending} pending");
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn topics_are_chosen_on_the_preferences_page_and_order_mail_still_arrives() {
    let stack = Stack::start().await;
    let sender_db = stack.db("sender").await;
    let tracker_db = stack.db("tracker").await;
    let segmenter_db = stack.db("segmenter").await;
    let jon = "jon@example.com";
    let tracker = format!("http://{}", stack.tracker.addr);

    // A marketing email arrives with the unsubscribe and the preferences link.
    assert_eq!(send(&stack, &sender_db, &marketing(jon, "newsletter", 1, "en")).await.0, "sent");
    let mails = stack.smtp.wait_for(1, WAIT).await.unwrap();
    let prefs = link(&mails[0], &format!("{tracker}/p/")).expect("a preferences link in the marketing footer");
    let unsubscribe = link(&mails[0], &format!("{tracker}/u/")).expect("an unsubscribe link");

    // Following it shows every topic, all wanted so far; looking changes nothing.
    let page = reqwest::get(&prefs).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<html lang="en" dir="ltr">"#), "{html}");
    assert!(html.contains("Demo Shop"));
    for (id, label) in [("newsletter", "Newsletter"), ("offers", "Offers and discounts"), ("recommendations", "Product recommendations")] {
        assert!(html.contains(&format!(r#"value="{id}" checked><bdi>{label}</bdi>"#)), "{id} not offered as wanted:\n{html}");
    }
    assert!(html.contains("Unsubscribe from all marketing email"));
    assert_eq!(reqwest::get(&unsubscribe).await.unwrap().status(), 200, "the unsubscribe page (GET) too");
    let changes: i64 = sqlx::query_scalar("select count(*) from hits where kind not in ('open', 'click')")
        .fetch_one(&tracker_db)
        .await
        .unwrap();
    assert_eq!(changes, 0, "a GET never changes a choice");

    // Forged tokens, and tokens for another page, are not found.
    let client = reqwest::Client::new();
    assert_eq!(client.get(format!("{prefs}x")).send().await.unwrap().status(), 404);
    assert_eq!(post_form(&format!("{prefs}x"), "v=1").await.status(), 404);
    let unsub_token = unsubscribe.rsplit('/').next().unwrap();
    assert_eq!(client.get(format!("{tracker}/p/{unsub_token}")).send().await.unwrap().status(), 404);
    assert_eq!(post_form(&prefs, "topic=newsletter").await.status(), 400, "not the page's form");

    // Leaving one topic stops mail of that topic, not of another.
    let saved = post_form(&prefs, "v=1&topic=newsletter&topic=recommendations").await;
    assert_eq!(saved.status(), 200);
    let html = saved.text().await.unwrap();
    assert!(html.contains(r#"role="status">Your preferences are saved."#), "{html}");
    assert!(html.contains(r#"value="offers"><bdi>"#), "offers shown as left:\n{html}");
    suppressions(&sender_db, jon, "topic:offers", 1).await;
    assert_eq!(send(&stack, &sender_db, &marketing(jon, "offers", 2, "en")).await.0, "suppressed");
    assert_eq!(send(&stack, &sender_db, &marketing(jon, "newsletter", 3, "en")).await.0, "sent");
    stack.smtp.wait_for(2, WAIT).await.unwrap();
    let html = reqwest::get(&prefs).await.unwrap().text().await.unwrap();
    assert!(html.contains(r#"value="offers"><bdi>"#) && html.contains(r#"value="newsletter" checked>"#), "the page remembers:\n{html}");

    // Saving the same choices again records nothing.
    assert_eq!(post_form(&prefs, "v=1&topic=newsletter&topic=recommendations").await.status(), 200);
    let changes: i64 = sqlx::query_scalar("select count(*) from hits where kind not in ('open', 'click')")
        .fetch_one(&tracker_db)
        .await
        .unwrap();
    assert_eq!(changes, 1, "one change, however often it is saved");

    // Opting back in restores it.
    assert_eq!(post_form(&prefs, &format!("v=1&{ALL_TOPICS}")).await.status(), 200);
    suppressions(&sender_db, jon, "topic:offers", 0).await;
    assert_eq!(send(&stack, &sender_db, &marketing(jon, "offers", 4, "en")).await.0, "sent");
    stack.smtp.wait_for(3, WAIT).await.unwrap();

    // A replay of the old opt-out changes nothing anywhere: the opt-in is newer.
    let (id, occurred_at): (uuid::Uuid, time::OffsetDateTime) =
        sqlx::query_as("select id, occurred_at from hits where kind = 'topic_unsubscribe'").fetch_one(&tracker_db).await.unwrap();
    let old = contracts::Envelope::new(
        TenantId::parse("demo").unwrap(),
        occurred_at,
        contracts::Source { system: "tracker".into(), delivery_id: None, topic: None },
        format!("hit:{id}"),
        contracts::Event::EmailTopicUnsubscribed(contracts::EmailTopicUnsubscribed {
            message_id: MessageId::derive(&["preferences-test", jon, "1"]),
            recipient: EmailAddress::parse(jon).unwrap(),
            topic: "offers".into(),
            method: "preferences".into(),
        }),
    );
    stack.bus.replay_event(&old).await.unwrap();
    choices_applied(&stack).await;
    suppressions(&sender_db, jon, "topic:offers", 0).await;
    assert_eq!(send(&stack, &sender_db, &marketing(jon, "offers", 5, "en")).await.0, "sent");
    stack.smtp.wait_for(4, WAIT).await.unwrap();
    let html = reqwest::get(&prefs).await.unwrap().text().await.unwrap();
    assert!(html.contains(r#"value="offers" checked>"#), "{html}");

    // Unsubscribing from all marketing stops all of it; the order confirmation still comes.
    let saved = post_form(&prefs, &format!("v=1&all=1&{ALL_TOPICS}")).await.text().await.unwrap();
    assert!(saved.contains("You will not receive marketing email from <bdi>Demo Shop</bdi>."), "{saved}");
    assert!(saved.contains(r#"aria-describedby="all-hint" checked>"#));
    suppressions(&sender_db, jon, "marketing", 1).await;
    for (topic, n) in [("newsletter", 6), ("recommendations", 7)] {
        assert_eq!(send(&stack, &sender_db, &marketing(jon, topic, n, "en")).await.0, "suppressed");
    }
    assert_eq!(stack.smtp.count(), 4);
    assert_eq!(stack.post_shopify(&shopify_sample(), "preferences-order", Some(SHOPIFY_SECRET)).await.status(), 200);
    let mails = stack.smtp.wait_for(5, WAIT).await.unwrap();
    let confirmation = &mails[4];
    assert_eq!(confirmation.rcpt_to, vec![jon.to_owned()]);
    let subject = MessageParser::default().parse(&confirmation.data).unwrap().subject().unwrap_or_default().to_owned();
    assert!(subject.contains("#9999"), "the order confirmation: {subject}");
    assert_eq!(link(confirmation, &format!("{tracker}/p/")), None, "transactional mail has no preferences link");

    // Every change was announced, and the segmenter keeps consent per topic.
    choices_applied(&stack).await;
    let kinds: Vec<(String, Option<String>, bool)> =
        sqlx::query_as("select kind, topic, published_at is not null from hits where kind not in ('open', 'click') order by occurred_at")
            .fetch_all(&tracker_db)
            .await
            .unwrap();
    let expected = [("topic_unsubscribe", Some("offers")), ("resubscribe", Some("offers")), ("unsubscribe", None)];
    assert_eq!(kinds.len(), expected.len(), "{kinds:?}");
    for ((kind, topic, published), (want_kind, want_topic)) in kinds.iter().zip(expected) {
        assert_eq!((kind.as_str(), topic.as_deref()), (want_kind, want_topic));
        assert!(published, "{kind} not published");
    }
    let consents: Vec<(String, String)> =
        sqlx::query_as("select channel, status from consents where email = $1 order by channel").bind(jon).fetch_all(&segmenter_db).await.unwrap();
    assert_eq!(
        consents,
        [("email_marketing".to_owned(), "unsubscribed".to_owned()), ("email_marketing:offers".to_owned(), "subscribed".to_owned())]
    );
}

#[tokio::test]
async fn the_page_speaks_the_recipients_language_right_to_left_for_persian() {
    let stack = Stack::start().await;
    let sender_db = stack.db("sender").await;
    assert_eq!(send(&stack, &sender_db, &marketing("sara@example.com", "offers", 1, "fa-IR")).await.0, "sent");
    let mails = stack.smtp.wait_for(1, WAIT).await.unwrap();
    let tracker = format!("http://{}", stack.tracker.addr);
    let prefs = link(&mails[0], &format!("{tracker}/p/")).unwrap();
    let html = reqwest::get(&prefs).await.unwrap().text().await.unwrap();
    assert!(html.contains(r#"<html lang="fa" dir="rtl">"#), "{html}");
    assert!(html.contains("<h1>تنظیمات ایمیل</h1>"));
    assert!(html.contains(r#"value="offers" checked><bdi>پیشنهادها و تخفیف‌ها</bdi>"#), "{html}");
    assert!(html.contains(r#"<bdi dir="ltr">sara@example.com</bdi>"#));
    let unsubscribe = link(&mails[0], &format!("{tracker}/u/")).unwrap();
    let html = reqwest::get(&unsubscribe).await.unwrap().text().await.unwrap();
    assert!(html.contains(r#"<html lang="fa" dir="rtl">"#) && html.contains("<h1>لغو اشتراک</h1>"), "{html}");
}

#[tokio::test]
async fn opting_back_in_never_revives_a_hard_bounced_address() {
    let stack = Stack::start().await;
    let sender_db = stack.db("sender").await;
    let bob = "bob@example.com";
    assert_eq!(send(&stack, &sender_db, &marketing(bob, "newsletter", 1, "en")).await.0, "sent");
    let mails = stack.smtp.wait_for(1, WAIT).await.unwrap();
    let prefs = link(&mails[0], &format!("http://{}/p/", stack.tracker.addr)).unwrap();

    // The mailbox goes away: a permanent refusal suppresses all mail to it.
    stack.smtp.push_rule(Rule::rcpt(550, "5.1.1 no such user").matching(bob));
    assert_eq!(send(&stack, &sender_db, &marketing(bob, "newsletter", 2, "en")).await.0, "bounced");
    suppressions(&sender_db, bob, "all", 1).await;

    // Leaving and rejoining (a topic, and all marketing) lifts only the unsubscribes.
    assert_eq!(post_form(&prefs, "v=1&all=1&topic=newsletter").await.status(), 200);
    suppressions(&sender_db, bob, "marketing", 1).await;
    suppressions(&sender_db, bob, "topic:offers", 1).await;
    assert_eq!(post_form(&prefs, &format!("v=1&{ALL_TOPICS}")).await.status(), 200);
    suppressions(&sender_db, bob, "marketing", 0).await;
    suppressions(&sender_db, bob, "topic:offers", 0).await;
    choices_applied(&stack).await;
    suppressions(&sender_db, bob, "all", 1).await;

    let (state, reason) = send(&stack, &sender_db, &marketing(bob, "newsletter", 3, "en")).await;
    assert_eq!(state, "suppressed");
    assert!(reason.contains("550"), "still suppressed by the bounce: {reason}");
    assert_eq!(stack.smtp.rejected(), 1, "the server was not tried again");
    assert_eq!(stack.smtp.count(), 1);
}

/// The tracker faces the internet and uses no tenant secret: it loads the tenants without
/// them. A tenant whose secret names a variable that is not set (which stops ingest and
/// sender) still gets its preferences page, from a tracker given no secrets at all.
#[tokio::test]
async fn the_tracker_serves_the_page_without_the_tenants_secrets() {
    let stack = Stack::start().await;
    let sender_db = stack.db("sender").await;
    assert_eq!(send(&stack, &sender_db, &marketing("ana@example.com", "offers", 1, "en")).await.0, "sent");
    let mails = stack.smtp.wait_for(1, WAIT).await.unwrap();
    let tracker = format!("http://{}", stack.tracker.addr);
    let prefs = link(&mails[0], &format!("{tracker}/p/")).unwrap();

    let root = tempfile::tempdir().unwrap();
    let demo = std::fs::read_to_string(common::tenants_dir().join("demo/tenant.toml")).unwrap();
    let (literal, unset) = ("[sources.shopify]\nsecrets = [\"demo-secret\"]", "[sources.shopify]\nsecrets = [\"env:PF_TEST_NEVER_SET\"]");
    assert!(demo.contains(literal), "the demo tenant changed; adapt this test");
    std::fs::create_dir(root.path().join("demo")).unwrap();
    std::fs::write(root.path().join("demo/tenant.toml"), demo.replacen(literal, unset, 1)).unwrap();
    let refused = tenancy::Tenants::load_dir(root.path()).unwrap_err().to_string();
    assert!(refused.contains("environment variable PF_TEST_NEVER_SET is not set"), "{refused}");

    // A second replica on the same database and bus, with that directory.
    let settings = tracker::Settings {
        http: common::http(),
        nats: stack.bus_settings.clone(),
        database: kit::db::DbSettings::new(stack.db_urls["tracker"].clone()),
        tracking: tracker::TrackingSettings {
            signing_key: secrecy::SecretString::from(common::SIGNING_KEY),
            relay_interval: Duration::from_millis(200),
        },
        tenants_dir: root.path().to_path_buf(),
        ..Default::default()
    };
    let app = tracker::Application::build(settings).await.expect("the tracker starts without the secret");
    let replica = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let page = reqwest::get(prefs.replacen(&tracker, &replica, 1)).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Demo Shop") && html.contains("Offers and discounts"), "{html}");
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}
