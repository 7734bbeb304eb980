//! Delivery failures through the real stack: a permanent SMTP refusal becomes a bounce and
//! a suppression, temporary refusals are retried, and a message no retry can help is
//! dead-lettered with its reason.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;

use std::time::Duration;

use common::{SHOPIFY_SECRET, Stack, shopify_sample};
use contracts::{Cause, Lane, Mailbox, MessageId, RenderRequest, SPEC_VERSION, TenantId};
use testkit::eventually_ok;
use testkit::smtp_capture::Rule;

#[tokio::test]
async fn a_permanent_refusal_bounces_and_suppresses_the_address() {
    let stack = Stack::start().await;
    stack.smtp.push_rule(Rule::rcpt(550, "5.1.1 no such user").matching("jon@example.com"));
    let res = stack.post_shopify(&shopify_sample(), "bounce", Some(SHOPIFY_SECRET)).await;
    assert_eq!(res.status(), 200);

    let sender_db = stack.db("sender").await;
    let (state, response): (String, String) = eventually_ok(Duration::from_secs(30), "bounce recorded", || async {
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("select state, response from deliveries").fetch_optional(&sender_db).await?;
        match row {
            Some((state, resp)) if state == "bounced" => Ok((state, resp.unwrap_or_default())),
            other => anyhow::bail!("delivery is {other:?}"),
        }
    })
    .await;
    assert_eq!(state, "bounced");
    assert!(response.contains("550"), "the reason is kept: {response}");
    let scope: String = sqlx::query_scalar("select scope from suppressions where email = 'jon@example.com'")
        .fetch_one(&sender_db)
        .await
        .unwrap();
    assert_eq!(scope, "all");
    stack.settle().await;
    assert_eq!(stack.smtp.count(), 0, "nothing was accepted");
    assert_eq!(stack.smtp.rejected(), 1, "refused once, not retried");
}

#[tokio::test]
async fn temporary_refusals_are_retried_until_accepted() {
    let stack = Stack::start().await;
    stack.smtp.push_rule(Rule::rcpt(451, "4.7.1 try again later").times(2));
    let res = stack.post_shopify(&shopify_sample(), "retry", Some(SHOPIFY_SECRET)).await;
    assert_eq!(res.status(), 200);
    stack.smtp.wait_for(1, Duration::from_secs(60)).await.unwrap();
    stack.settle().await;
    assert_eq!(stack.smtp.count(), 1, "delivered once");
    assert_eq!(stack.smtp.rejected(), 2, "after two temporary refusals");
}

#[tokio::test]
async fn a_server_closing_with_421_is_retried_and_the_message_sent_once() {
    let stack = Stack::start().await;
    // 421 at the greeting: the server is shutting down or overloaded (RFC 5321 §3.8).
    stack.smtp.push_rule(Rule::connect(421, "4.3.2 service not available, closing channel").times(2));
    let res = stack.post_shopify(&shopify_sample(), "busy", Some(SHOPIFY_SECRET)).await;
    assert_eq!(res.status(), 200);
    stack.smtp.wait_for(1, Duration::from_secs(60)).await.unwrap();
    stack.settle().await;
    assert_eq!(stack.smtp.count(), 1, "delivered once");
    assert_eq!(stack.smtp.rejected(), 2, "after two 421 greetings");
}

#[tokio::test]
async fn a_message_nothing_can_help_is_dead_lettered_with_its_reason() {
    let stack = Stack::start().await;
    let req = RenderRequest {
        spec: SPEC_VERSION,
        message_id: MessageId::derive(&["dlq-test"]),
        tenant: TenantId::parse("demo").unwrap(),
        lane: Lane::Transactional,
        template: "no_such_template".into(),
        to: Mailbox { name: None, email: contracts::EmailAddress::parse("ada@example.com").unwrap() },
        locale: None,
        topic: None,
        cause: Cause { flow: "test".into(), run_id: uuid::Uuid::nil(), step: 0, event_id: uuid::Uuid::nil() },
        data: serde_json::json!({}),
    };
    stack.bus.publish_render(&req).await.unwrap();
    let letters = eventually_ok(Duration::from_secs(30), "a dead letter", || async {
        let l = stack.bus.dead_letters(10).await?;
        anyhow::ensure!(!l.is_empty(), "none yet");
        Ok(l)
    })
    .await;
    assert_eq!(letters.len(), 1);
    let dl = &letters[0];
    assert_eq!(dl.consumer, "renderer-render-tx");
    assert_eq!(dl.subject, "pf.render.tx.demo");
    assert!(dl.reason.contains("no_such_template"), "reason: {}", dl.reason);
    assert_eq!(dl.attempts, 1, "permanent failures are not retried");
    let back: RenderRequest = serde_json::from_slice(&dl.payload).unwrap();
    assert_eq!(back, req, "the original message is kept");
    assert_eq!(stack.bus.stream_len("PF_RENDER").await.unwrap(), 0, "and removed from the work queue");
}
