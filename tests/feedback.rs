//! Provider feedback into the sender over HTTP: real NATS, real PostgreSQL, a real SMTP
//! server, the sender on port 0 with a tenants directory written here (a Postmark, a
//! Mailgun, a SendGrid and an SES tenant, each with its webhook secret, their APIs pointed
//! at one stub; an SMTP-relay tenant with its own bounce address). Checked: a verified hard
//! bounce suppresses the address, is announced as `email.bounced` and stops the next
//! message; wrong credentials change nothing; a replayed delivery, or a known event in a
//! new delivery, changes nothing; a spam report suppresses all mail; SES notifications
//! signed by SNS (an RSA key and certificate made here, the certificate served by the stub
//! and trusted only through `insecure_sns_url_prefix`) confirm a subscription, suppress and
//! announce, and a forged signature is refused; relayed mail leaves with the tenant's
//! bounce address as envelope sender, and a DSN posted to the intake suppresses once,
//! while delay reports, DSNs naming no message of ours and malformed posts change nothing.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::{Bus, BusSettings, ConsumerSpec, Delivery, Feed, HandleError, Handler};
use contracts::{Cause, EmailAddress, EmailBounced, Envelope, Event, EventKind, Lane, Mailbox, MessageId, OutboundMessage, SPEC_VERSION, TenantId};
use kit::db::DbSettings;
use kit::settings::HttpSettings;
use sqlx::PgPool;
use testkit::smtp_capture::{CaptureConfig, SmtpCapture};
use testkit::{NatsServer, Postgres, eventually, eventually_ok};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(30);
const POSTMARK_SECRET: &str = "postmark-hook-password";
const MAILGUN_KEY: &str = "mailgun-signing-key";
/// The SES tenant's `webhook_secret`: the SNS topic allowed to post.
const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:postflow-ses-feedback";
/// The SMTP tenant's `webhook_secret`: the password the DSN pipe presents.
const DSN_SECRET: &str = "dsn-pipe-password";
const BOUNCE_ADDRESS: &str = "bounces@bounce.smtp-shop.example";

// ---------------------------------------------------------------- the provider stub

/// Accepts every send as the provider whose path it is, and counts the requests per path.
/// Under `/sns/` it stands in for SNS: `cert.pem` is the signing certificate of the test,
/// `confirm?…` a subscription confirmation.
#[derive(Clone)]
struct Stub {
    addr: SocketAddr,
    paths: Arc<Mutex<Vec<String>>>,
    sns_cert: Arc<Mutex<String>>,
}

impl Stub {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stub = Self { addr: listener.local_addr().unwrap(), paths: Arc::default(), sns_cert: Arc::default() };
        let s = stub.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move { s.serve(conn).await });
            }
        });
        stub
    }

    async fn serve(&self, conn: tokio::net::TcpStream) {
        let mut conn = BufReader::new(conn);
        let Some(path) = read_request(&mut conn).await else { return };
        let cert = self.sns_cert.lock().unwrap().clone();
        let (status, body) = match path.as_str() {
            "/email" => (200, r#"{"To":"x@example.com","SubmittedAt":"2025-03-01T12:00:00Z","MessageID":"postmark-1","ErrorCode":0,"Message":"OK"}"#),
            "/v3/mail/send" => (202, ""),
            "/v2/email/outbound-emails" => (200, r#"{"MessageId":"ses-1"}"#),
            "/sns/cert.pem" => (200, cert.as_str()),
            p if p.starts_with("/sns/confirm?") => (200, "<ConfirmSubscriptionResponse/>"),
            p if p.starts_with("/sns/") => (404, ""),
            _ => (200, r#"{"id":"<mailgun-1@mg.example>","message":"Queued. Thank you."}"#),
        };
        self.paths.lock().unwrap().push(path);
        let out = format!(
            "HTTP/1.1 {status} Stub\r\ncontent-type: application/json\r\nx-message-id: sendgrid-1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = conn.get_mut().write_all(out.as_bytes()).await;
        let _ = conn.get_mut().shutdown().await;
    }

    fn sends(&self, path: &str) -> usize {
        self.paths.lock().unwrap().iter().filter(|p| p.as_str() == path).count()
    }
}

/// Reads one request; returns its path.
async fn read_request(conn: &mut BufReader<tokio::net::TcpStream>) -> Option<String> {
    let mut line = String::new();
    conn.read_line(&mut line).await.ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let (mut length, mut chunked) = (0, false);
    loop {
        let mut h = String::new();
        conn.read_line(&mut h).await.ok()?;
        let h = h.trim_end().to_ascii_lowercase();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        chunked |= h.starts_with("transfer-encoding:") && h.contains("chunked");
    }
    if chunked {
        loop {
            let mut size = String::new();
            conn.read_line(&mut size).await.ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            conn.read_exact(&mut chunk).await.ok()?;
            if size == 0 {
                break;
            }
        }
    } else {
        let mut body = vec![0; length];
        conn.read_exact(&mut body).await.ok()?;
    }
    Some(path)
}

// ---------------------------------------------------------------- the world

/// Collects the sender's `email.bounced` events.
#[derive(Default)]
struct Bounces(Mutex<Vec<Envelope>>);

impl Handler<Envelope> for Bounces {
    async fn handle(&self, d: Delivery<Envelope>) -> Result<(), HandleError> {
        self.0.lock().unwrap().push(d.body);
        Ok(())
    }
}

struct World {
    _nats: NatsServer,
    _pg: Postgres,
    _tenants: tempfile::TempDir,
    bus: Bus,
    db: PgPool,
    stub: Stub,
    /// The SMTP relay of the SMTP tenant.
    smtp: SmtpCapture,
    sender: SocketAddr,
    bounces: Arc<Bounces>,
    /// SendGrid's side of the SendGrid tenant's verification key.
    sendgrid_key: Vec<u8>,
    http: reqwest::Client,
}

fn tenant_toml(provider: &str, stub: SocketAddr, webhook_secret: &str) -> String {
    let account = match provider {
        "postmark" | "sendgrid" => format!("endpoint = \"http://{stub}\"\napi_key = \"test-key\"\n"),
        "mailgun" => format!("endpoint = \"http://{stub}\"\napi_key = \"test-key\"\ndomain = \"mg.example\"\n"),
        "ses" => format!("endpoint = \"http://{stub}\"\nregion = \"eu-west-1\"\naccess_key_id = \"AKIDTEST\"\nsecret_access_key = \"ses-test-secret\"\n"),
        "smtp" => format!("bounce_address = \"{BOUNCE_ADDRESS}\"\n"),
        _ => unreachable!(),
    };
    format!(
        "name = \"{provider} shop\"\n[sender]\nfrom = \"orders@{provider}-shop.example\"\nfrom_name = \"Shop\"\n\
         physical_address = \"1 Main St\"\n[brand]\nprimary_color = \"#0f766e\"\n\
         [delivery]\nprovider = \"{provider}\"\n{account}webhook_secret = \"{webhook_secret}\"\n"
    )
}

fn message(provider: &str, to: &str, tag: &str) -> OutboundMessage {
    let tenant = format!("{provider}-shop");
    OutboundMessage {
        spec: SPEC_VERSION,
        message_id: MessageId::derive(&[&tenant, to, tag]),
        tenant: TenantId::parse(&tenant).unwrap(),
        lane: Lane::Transactional,
        from: Mailbox { name: Some("Shop".into()), email: EmailAddress::parse(&format!("orders@{tenant}.example")).unwrap() },
        reply_to: None,
        to: Mailbox { name: None, email: EmailAddress::parse(to).unwrap() },
        subject: "Your order #1001".into(),
        html: "<p>Thanks for your order!</p>".into(),
        text: "Thanks for your order!".into(),
        headers: vec![],
        template: "order_confirmation".into(),
        topic: None,
        cause: Cause { flow: "test".into(), run_id: uuid::Uuid::nil(), step: 0, event_id: uuid::Uuid::nil() },
    }
}

impl World {
    async fn start() -> Self {
        testkit::init_test_tracing();
        let nats = NatsServer::start().await.expect("nats-server");
        let pg = Postgres::start().await.expect("postgres");
        let db_url = pg.create_database("sender").await.unwrap();
        let bus_settings = BusSettings {
            url: nats.url(),
            ack_wait: Duration::from_secs(2),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..BusSettings::default()
        };
        let bus = Bus::connect(&bus_settings, "test").await.unwrap();
        bus.ensure_topology().await.unwrap();

        let stub = Stub::start().await;
        let (sendgrid_key, sendgrid_public) = sender::feedback::sendgrid::generate_key().unwrap();
        let tenants_dir = tempfile::Builder::new().prefix("postflow-feedback-").tempdir().unwrap();
        let dir = tenants_dir.path().to_path_buf();
        let tenants = [("postmark", POSTMARK_SECRET), ("mailgun", MAILGUN_KEY), ("sendgrid", sendgrid_public.as_str()), ("ses", TOPIC), ("smtp", DSN_SECRET)];
        for (provider, secret) in tenants {
            let tenant_dir = dir.join(format!("{provider}-shop"));
            std::fs::create_dir_all(&tenant_dir).unwrap();
            std::fs::write(tenant_dir.join("tenant.toml"), tenant_toml(provider, stub.addr, secret)).unwrap();
        }

        let smtp = SmtpCapture::start(CaptureConfig::default()).await.unwrap();

        // The system clock: Mailgun, SendGrid and SNS signatures carry the time they were made.
        let settings = sender::Settings {
            http: HttpSettings::on("127.0.0.1:0"),
            nats: bus_settings,
            database: DbSettings::new(db_url.clone()),
            tenants_dir: dir.clone(),
            smtp: sender::SmtpSettings { host: smtp.addr().ip().to_string(), port: smtp.addr().port(), timeout: Duration::from_secs(2), ..Default::default() },
            providers: sender::ProviderSettings { timeout: Duration::from_secs(2), connect_timeout: Duration::from_secs(1) },
            claim_lease: Duration::from_secs(3),
            // The SNS stand-in: the one explicit way to trust a certificate not on SNS.
            insecure_sns_url_prefix: Some(format!("http://{}/sns/", stub.addr)),
            ..Default::default()
        };
        let app = sender::Application::build(settings).await.expect("sender");
        let sender = app.local_addr();
        tokio::spawn(app.run_until_stopped(std::future::pending()));

        let bounces = Arc::new(Bounces::default());
        let stop = kit::Supervisor::new("test").stop_token();
        for kind in [EventKind::EmailBounced, EventKind::EmailComplained] {
            let spec = ConsumerSpec::new("test", Feed::Events(kind), 4);
            let (b, h, stop) = (bus.clone(), bounces.clone(), stop.clone());
            tokio::spawn(async move { b.run_consumer::<Envelope, _>(spec, h, stop, Duration::from_secs(1)).await });
        }
        let db = PgPool::connect(&db_url).await.unwrap();
        Self { _nats: nats, _pg: pg, _tenants: tenants_dir, bus, db, stub, smtp, sender, bounces, sendgrid_key, http: reqwest::Client::new() }
    }

    /// Sends `msg` through the sender and waits for its delivery row to be in `state`.
    async fn deliver(&self, msg: &OutboundMessage, state: &str) {
        self.bus.publish_outbound(msg).await.unwrap();
        eventually_ok(WAIT, &format!("{} {state}", msg.message_id), || async {
            let s: Option<String> = sqlx::query_scalar("select state from deliveries where tenant = $1 and message_id = $2")
                .bind(msg.tenant.as_str())
                .bind(msg.message_id.as_str())
                .fetch_optional(&self.db)
                .await?;
            anyhow::ensure!(s.as_deref() == Some(state), "delivery is {s:?}");
            Ok(())
        })
        .await;
    }

    fn url(&self, tenant: &str, provider: &str) -> String {
        format!("http://{}/v1/feedback/{tenant}/{provider}", self.sender)
    }

    /// Posts and returns the status and JSON answer.
    async fn post(&self, request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn suppressions(&self, tenant: &str, email: &str) -> Vec<(String, String)> {
        sqlx::query_as("select scope, reason from suppressions where tenant = $1 and email = $2 order by scope")
            .bind(tenant)
            .bind(email)
            .fetch_all(&self.db)
            .await
            .unwrap()
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("select count(*) from {table}")).fetch_one(&self.db).await.unwrap()
    }

    /// The one `email.bounced` for `id`, once it arrived.
    async fn bounce(&self, id: &MessageId) -> (Envelope, EmailBounced) {
        let mine = |e: &Envelope| matches!(&e.event, Event::EmailBounced(b) if &b.message_id == id);
        let envelopes = eventually(WAIT, "email.bounced", || async {
            let found: Vec<Envelope> = self.bounces.0.lock().unwrap().iter().filter(|e| mine(e)).cloned().collect();
            (!found.is_empty()).then_some(found)
        })
        .await;
        assert_eq!(envelopes.len(), 1, "one email.bounced: {envelopes:?}");
        let envelope = envelopes.into_iter().next().unwrap();
        let Event::EmailBounced(b) = envelope.event.clone() else { unreachable!() };
        (envelope, b)
    }

    /// Events stored on the bus (every `email.sent` and `email.bounced` of the test). The
    /// feedback endpoint publishes before it answers, so after an answer this is final.
    async fn events_stored(&self) -> u64 {
        self.bus.stream_len("PF_EVENTS").await.unwrap()
    }

    /// Waits until `n` events are stored (`email.sent` follows the delivery row a little).
    async fn events_are(&self, n: u64) {
        eventually(WAIT, &format!("{n} events stored"), || async { (self.bus.stream_len("PF_EVENTS").await.ok()? == n).then_some(()) }).await;
    }

    fn mailgun_body(&self, token: &str, event: serde_json::Value) -> String {
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
        let signature = sender::feedback::mailgun::sign(MAILGUN_KEY, &timestamp, token);
        serde_json::json!({
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": event
        })
        .to_string()
    }
}

fn postmark_bounce(msg: &OutboundMessage) -> String {
    serde_json::json!({
        "RecordType": "Bounce", "ID": 4323372036854775807_i64, "Type": "HardBounce", "TypeCode": 1,
        "Name": "Hard bounce", "MessageStream": "outbound", "Tag": "", "MessageID": "postmark-1",
        "Metadata": {"postflow_message_id": msg.message_id.as_str()},
        "ServerID": 23, "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": msg.to.email.as_str(), "From": "orders@postmark-shop.example",
        "BouncedAt": "2025-03-01T12:05:00Z", "DumpAvailable": false, "Inactive": true, "CanActivate": true,
        "Subject": "Your order #1001", "Content": null
    })
    .to_string()
}

// ---------------------------------------------------------------- the tests

#[tokio::test]
async fn a_postmark_hard_bounce_suppresses_the_address_and_is_announced() {
    let world = World::start().await;
    let first = message("postmark", "gone@example.com", "first");
    world.deliver(&first, "sent").await;

    let (status, answer) =
        world.post(world.http.post(world.url("postmark-shop", "postmark")).basic_auth("postmark", Some(POSTMARK_SECRET)).body(postmark_bounce(&first))).await;
    assert_eq!((status, answer), (200, serde_json::json!({"status": "recorded", "feedback": 1})));

    let reason = "hard bounce (postmark): smtp;550 5.1.1 The email account that you tried to reach does not exist.";
    assert_eq!(world.suppressions("postmark-shop", "gone@example.com").await, vec![("all".to_owned(), reason.to_owned())]);
    let (envelope, bounced) = world.bounce(&first.message_id).await;
    assert!(bounced.permanent);
    assert_eq!(bounced.recipient.as_str(), "gone@example.com");
    assert_eq!(bounced.reason, reason);
    assert_eq!(envelope.tenant.as_str(), "postmark-shop");
    assert_eq!(envelope.source.system, "postmark");
    assert_eq!(envelope.occurred_at, time::macros::datetime!(2025-03-01 12:05 UTC));

    // The next message to that address is not offered to Postmark.
    let later = message("postmark", "Gone@Example.com", "later");
    world.deliver(&later, "suppressed").await;
    assert_eq!(world.stub.sends("/email"), 1, "only the first message went out");
}

/// A Postmark `SubscriptionChange` (the recipient unsubscribed at Postmark) at `at`.
fn postmark_unsubscribe(msg: &OutboundMessage, at: &str) -> String {
    serde_json::json!({
        "RecordType": "SubscriptionChange", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "ServerID": 23,
        "MessageStream": "broadcast", "ChangedAt": at, "Recipient": msg.to.email.as_str(), "Origin": "Recipient",
        "SuppressSending": true, "SuppressionReason": "ManualSuppression", "Tag": "",
        "Metadata": {"postflow_message_id": msg.message_id.as_str()}
    })
    .to_string()
}

#[tokio::test]
async fn a_provider_unsubscribe_older_than_an_opt_in_changes_nothing() {
    let world = World::start().await;
    let first = message("postmark", "ana@example.com", "first");
    world.deliver(&first, "sent").await;

    // Ana opts back in on the preferences page on 2 March...
    let tenant = TenantId::parse("postmark-shop").unwrap();
    let opt_in = Envelope::new(
        tenant.clone(),
        time::macros::datetime!(2025-03-02 09:00 UTC),
        contracts::Source { system: "tracker".into(), delivery_id: None, topic: None },
        "test:opt-in".into(),
        Event::EmailResubscribed(contracts::EmailResubscribed {
            message_id: first.message_id.clone(),
            recipient: first.to.email.clone(),
            topic: None,
            method: "preferences".into(),
        }),
    );
    world.bus.publish_event(&opt_in).await.unwrap();
    eventually(WAIT, "the opt-in recorded", || async { (world.count("subscription_changes").await == 1).then_some(()) }).await;

    // ...and Postmark's report of her unsubscribing on 1 March arrives late: it is older
    // than her latest choice, so it suppresses nothing.
    let late = postmark_unsubscribe(&first, "2025-03-01T10:00:00Z");
    let (status, answer) = world.post(world.http.post(world.url("postmark-shop", "postmark")).basic_auth("postmark", Some(POSTMARK_SECRET)).body(late)).await;
    assert_eq!((status, answer), (200, serde_json::json!({"status": "recorded", "feedback": 0, "ignored": 1})));
    assert!(world.suppressions("postmark-shop", "ana@example.com").await.is_empty());

    // One made after the opt-in does.
    let newer = postmark_unsubscribe(&first, "2025-03-03T10:00:00Z").replace("883953f4", "993953f4");
    let (status, _) = world.post(world.http.post(world.url("postmark-shop", "postmark")).basic_auth("postmark", Some(POSTMARK_SECRET)).body(newer)).await;
    assert_eq!(status, 200);
    let scopes: Vec<String> = world.suppressions("postmark-shop", "ana@example.com").await.into_iter().map(|(scope, _)| scope).collect();
    assert_eq!(scopes, ["marketing"]);
}

#[tokio::test]
async fn wrong_credentials_are_refused_and_change_nothing() {
    let world = World::start().await;
    let msg = message("postmark", "ada@example.com", "refused");
    world.deliver(&msg, "sent").await;
    world.events_are(1).await;
    let url = world.url("postmark-shop", "postmark");

    let (status, answer) = world.post(world.http.post(&url).basic_auth("postmark", Some("guessed")).body(postmark_bounce(&msg))).await;
    assert_eq!((status, answer), (401, serde_json::json!({"error": "bad signature"})));
    let (status, _) = world.post(world.http.post(&url).body(postmark_bounce(&msg))).await;
    assert_eq!(status, 401, "no credentials");
    // Another tenant's password does not open this one, nor another provider's URL.
    let (status, _) = world.post(world.http.post(world.url("mailgun-shop", "postmark")).basic_auth("postmark", Some(POSTMARK_SECRET)).body(postmark_bounce(&msg))).await;
    assert_eq!(status, 404);

    // Everything is written before the answer: nothing was.
    assert_eq!(world.count("suppressions").await, 0);
    assert_eq!(world.count("feedback_replays").await, 0);
    assert_eq!(world.events_stored().await, 1, "no event published besides email.sent");
    world.deliver(&message("postmark", "ada@example.com", "still-mailable"), "sent").await;
}

#[tokio::test]
async fn a_replayed_mailgun_delivery_changes_nothing() {
    let world = World::start().await;
    let msg = message("mailgun", "alice@example.com", "bounced");
    world.deliver(&msg, "sent").await;
    world.events_are(1).await;
    let event = serde_json::json!({
        "event": "failed", "id": "G9Bn5sl1TC6nu79C8C0bwg", "timestamp": 1521472262.908181, "severity": "permanent",
        "reason": "bounce", "recipient": "alice@example.com",
        "delivery-status": {"code": 550, "message": "5.1.1 The email account that you tried to reach does not exist.", "enhanced-code": "5.1.1"},
        "user-variables": {"postflow_message_id": msg.message_id.as_str()}
    });
    let url = world.url("mailgun-shop", "mailgun");
    let body = world.mailgun_body("token-one", event.clone());

    let (status, answer) = world.post(world.http.post(&url).header("content-type", "application/json").body(body.clone())).await;
    assert_eq!((status, answer), (200, serde_json::json!({"status": "recorded", "feedback": 1})));
    let (_, bounced) = world.bounce(&msg.message_id).await;
    assert_eq!(bounced.reason, "hard bounce (mailgun): 550 5.1.1 The email account that you tried to reach does not exist.");
    assert_eq!(world.events_stored().await, 2, "email.sent and email.bounced");

    // The same delivery again (same signature token): a replay.
    let (status, answer) = world.post(world.http.post(&url).header("content-type", "application/json").body(body)).await;
    assert_eq!((status, answer), (200, serde_json::json!({"status": "replay", "feedback": 0})));
    // The same event in a new delivery (Mailgun retrying with a fresh signature): skipped.
    let again = world.mailgun_body("token-two", event);
    let (status, _) = world.post(world.http.post(&url).header("content-type", "application/json").body(again)).await;
    assert_eq!(status, 200);

    assert_eq!(world.suppressions("mailgun-shop", "alice@example.com").await.len(), 1, "one suppression row");
    assert_eq!(world.count("suppressions").await, 1);
    assert_eq!(world.events_stored().await, 2, "no second event");
    let replays: Vec<String> = sqlx::query_scalar("select key from feedback_replays order by key").fetch_all(&world.db).await.unwrap();
    assert_eq!(replays, ["delivery:token-one", "delivery:token-two", "event:G9Bn5sl1TC6nu79C8C0bwg:alice@example.com"]);
}

#[tokio::test]
async fn a_sendgrid_spam_report_suppresses_all_mail() {
    let world = World::start().await;
    let msg = message("sendgrid", "spam@example.com", "reported");
    world.deliver(&msg, "sent").await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let body = serde_json::json!([
        {"email": "spam@example.com", "timestamp": now - 60, "event": "spamreport", "sg_event_id": "spam-1",
         "sg_message_id": "sendgrid-1.filter", "postflow_message_id": msg.message_id.as_str()},
        {"email": "spam@example.com", "timestamp": now - 120, "event": "delivered", "response": "250 OK", "sg_event_id": "delivered-1"}
    ])
    .to_string();
    let timestamp = now.to_string();
    let signature = sender::feedback::sendgrid::sign(&world.sendgrid_key, &timestamp, body.as_bytes()).unwrap();
    let request = world
        .http
        .post(world.url("sendgrid-shop", "sendgrid"))
        .header("content-type", "application/json")
        .header("X-Twilio-Email-Event-Webhook-Signature", signature)
        .header("X-Twilio-Email-Event-Webhook-Timestamp", timestamp)
        .body(body);
    let (status, answer) = world.post(request).await;
    assert_eq!((status, answer), (200, serde_json::json!({"status": "recorded", "feedback": 1})));

    assert_eq!(world.suppressions("sendgrid-shop", "spam@example.com").await, vec![("all".to_owned(), "complaint (sendgrid): spamreport".to_owned())]);
    let id = msg.message_id.clone();
    let envelope = eventually(WAIT, "email.complained", || async {
        world.bounces.0.lock().unwrap().iter().find(|e| matches!(&e.event, Event::EmailComplained(c) if c.message_id == id)).cloned()
    })
    .await;
    assert_eq!(envelope.idempotency_key, format!("email.complained:{}", msg.message_id));
    assert_eq!(envelope.source.topic.as_deref(), Some("complaint"));

    // All mail: transactional too.
    world.deliver(&message("sendgrid", "spam@example.com", "next-order"), "suppressed").await;
    assert_eq!(world.stub.sends("/v3/mail/send"), 1);
}

// ---------------------------------------------------------------- SES via SNS

/// An RSA key made for this test and a self-signed certificate for it: what SNS signs with.
struct SnsSigner {
    key: rsa::RsaPrivateKey,
    cert_pem: String,
}

impl SnsSigner {
    fn new() -> Self {
        use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let key_pair = rcgen::KeyPair::from_pem(&key.to_pkcs8_pem(LineEnding::LF).unwrap()).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["sns.eu-west-1.amazonaws.com".to_owned()]).unwrap().self_signed(&key_pair).unwrap();
        Self { key, cert_pem: cert.pem() }
    }

    /// Signs `m` as SNS does with `SignatureVersion` 2 (SHA256withRSA, PKCS#1 v1.5) over the
    /// string its documentation defines: the fields below, in this order, present ones only,
    /// each as `Name\nvalue\n`. Written out here, independently of the verifier.
    fn sign(&self, m: &mut serde_json::Value) {
        use base64::Engine as _;
        use rsa::sha2::{Digest as _, Sha256};
        let names: &[&str] = if m["Type"] == "Notification" {
            &["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        } else {
            &["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
        };
        let mut canonical = String::new();
        for name in names {
            if let Some(value) = m[name].as_str() {
                canonical.push_str(&format!("{name}\n{value}\n"));
            }
        }
        let signature = self.key.sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(canonical.as_bytes())).unwrap();
        m["Signature"] = base64::engine::general_purpose::STANDARD.encode(signature).into();
    }
}

impl World {
    /// An SNS message from the SES tenant's topic, signed with the certificate the stub serves.
    fn sns(&self, kind: &str, id: &str, message: String) -> serde_json::Value {
        let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
        serde_json::json!({
            "Type": kind, "MessageId": id, "TopicArn": TOPIC, "Message": message, "Timestamp": now,
            "SignatureVersion": "2", "Signature": "",
            "SigningCertURL": format!("http://{}/sns/cert.pem", self.stub.addr),
            "UnsubscribeURL": format!("http://{}/sns/unsubscribe", self.stub.addr)
        })
    }

    /// Posts an SNS message as SNS does (JSON as text/plain, the type in a header).
    async fn post_sns(&self, m: &serde_json::Value) -> (u16, serde_json::Value) {
        let request = self
            .http
            .post(self.url("ses-shop", "ses"))
            .header("content-type", "text/plain; charset=UTF-8")
            .header("x-amz-sns-message-type", m["Type"].as_str().unwrap())
            .body(m.to_string());
        self.post(request).await
    }
}

/// SES's bounce notification for `msg`, as SES publishes it to SNS.
fn ses_bounce(msg: &OutboundMessage, feedback_id: &str) -> String {
    serde_json::json!({
        "notificationType": "Bounce",
        "bounce": {
            "feedbackId": feedback_id, "bounceType": "Permanent", "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": msg.to.email.as_str(), "action": "failed", "status": "5.1.1",
                                   "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
            "timestamp": "2025-03-01T12:05:00.000Z", "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com"
        },
        "mail": {
            "timestamp": "2025-03-01T12:04:58.000Z", "source": "orders@ses-shop.example", "messageId": "ses-1",
            "destination": [msg.to.email.as_str()],
            "tags": {"postflow_message_id": [msg.message_id.as_str()]}
        }
    })
    .to_string()
}

#[tokio::test]
async fn ses_feedback_signed_by_sns_confirms_suppresses_and_is_announced() {
    let world = World::start().await;
    let signer = SnsSigner::new();
    *world.stub.sns_cert.lock().unwrap() = signer.cert_pem.clone();

    // SNS's first message: confirmed by GETting its SubscribeURL.
    let subscribe = format!("http://{}/sns/confirm?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=2336412f37", world.stub.addr);
    let mut m = world.sns("SubscriptionConfirmation", "165545c9-2a5c-472c-8df2-7ff2be2b3b1b", format!("You have chosen to subscribe to the topic {TOPIC}."));
    m["SubscribeURL"] = subscribe.clone().into();
    m["Token"] = "2336412f37".into();
    signer.sign(&mut m);
    assert_eq!(world.post_sns(&m).await, (200, serde_json::json!({"status": "confirmed", "feedback": 0})));
    assert_eq!(world.stub.sends(subscribe.strip_prefix(&format!("http://{}", world.stub.addr)).unwrap()), 1, "the subscription was confirmed");

    // A permanent bounce of a message we sent through SES.
    let bounced = message("ses", "jane@example.com", "bounced");
    world.deliver(&bounced, "sent").await;
    let mut m = world.sns("Notification", "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324", ses_bounce(&bounced, "0102017f-bounce"));
    signer.sign(&mut m);
    assert_eq!(world.post_sns(&m).await, (200, serde_json::json!({"status": "recorded", "feedback": 1})));
    let reason = "hard bounce (ses): smtp; 550 5.1.1 user unknown";
    assert_eq!(world.suppressions("ses-shop", "jane@example.com").await, vec![("all".to_owned(), reason.to_owned())]);
    let (envelope, b) = world.bounce(&bounced.message_id).await;
    assert!(b.permanent);
    assert_eq!(b.reason, reason);
    assert_eq!((envelope.source.system.as_str(), envelope.source.delivery_id.as_deref()), ("ses", Some("0102017f-bounce")));
    // SNS retrying the same notification: a replay.
    assert_eq!(world.post_sns(&m).await, (200, serde_json::json!({"status": "replay", "feedback": 0})));

    // A complaint, with a subject (which is then part of what is signed).
    let complained = message("ses", "bob@example.com", "complained");
    world.deliver(&complained, "sent").await;
    let complaint = serde_json::json!({
        "notificationType": "Complaint",
        "complaint": {"feedbackId": "0102017f-complaint", "complainedRecipients": [{"emailAddress": "bob@example.com"}],
                      "timestamp": "2025-03-01T13:00:00.000Z", "complaintFeedbackType": "abuse"},
        "mail": {"messageId": "ses-1", "destination": ["bob@example.com"],
                 "headers": [{"name": "X-Postflow-Message-Id", "value": complained.message_id.as_str()}]}
    });
    let mut m = world.sns("Notification", "f2b1a8d3-3a6e-4a0b-9b51-1c7f0e5d2c44", complaint.to_string());
    m["Subject"] = "Amazon SES Email Event Notification".into();
    signer.sign(&mut m);
    assert_eq!(world.post_sns(&m).await, (200, serde_json::json!({"status": "recorded", "feedback": 1})));
    assert_eq!(world.suppressions("ses-shop", "bob@example.com").await, vec![("all".to_owned(), "complaint (ses): complaint: abuse".to_owned())]);
    let id = complained.message_id.clone();
    eventually(WAIT, "email.complained", || async {
        world.bounces.0.lock().unwrap().iter().find(|e| matches!(&e.event, Event::EmailComplained(c) if c.message_id == id)).cloned()
    })
    .await;

    assert_eq!(world.stub.sends("/sns/cert.pem"), 1, "the certificate is fetched once and cached");
    world.deliver(&message("ses", "jane@example.com", "after"), "suppressed").await;
}

#[tokio::test]
async fn a_forged_sns_message_is_refused_and_changes_nothing() {
    let world = World::start().await;
    let signer = SnsSigner::new();
    *world.stub.sns_cert.lock().unwrap() = signer.cert_pem.clone();
    let msg = message("ses", "jane@example.com", "forged");
    world.deliver(&msg, "sent").await;
    world.events_are(1).await;

    // Signed, then the recipient changed: the signature no longer holds.
    let mut m = world.sns("Notification", "0b7d1c59-7f7b-4f7e-9d0c-7a7b1e3f9a11", ses_bounce(&msg, "0102017f-forged"));
    signer.sign(&mut m);
    let tampered = m["Message"].as_str().unwrap().replace("jane@example.com", "ceo@example.com");
    m["Message"] = tampered.into();
    assert_eq!(world.post_sns(&m).await, (401, serde_json::json!({"error": "bad signature"})));

    // Signed with a key of its own, whose certificate is served from outside the override.
    let other = SnsSigner::new();
    let mut m = world.sns("Notification", "5f0f3a3c-4a51-4d0b-8a43-0e0b8d8f6c21", ses_bounce(&msg, "0102017f-other"));
    m["SigningCertURL"] = format!("http://{}/elsewhere/cert.pem", world.stub.addr).into();
    other.sign(&mut m);
    let (status, answer) = world.post_sns(&m).await;
    assert_eq!((status, answer["error"].as_str().unwrap()), (401, "untrusted certificate: signing certificate url is not an sns endpoint"));
    assert_eq!(world.stub.sends("/elsewhere/cert.pem"), 0, "not even fetched");

    assert_eq!(world.count("suppressions").await, 0);
    assert_eq!(world.count("feedback_replays").await, 0);
    assert_eq!(world.events_stored().await, 1, "no event besides email.sent");
    world.deliver(&message("ses", "jane@example.com", "still-mailable"), "sent").await;
}

// ---------------------------------------------------------------- DSNs by mail

/// A DSN as Postfix writes it when `recipient` failed (or was delayed): `returned` is the
/// header block of the message it is about.
fn dsn(id: &str, recipient: &str, action: &str, status: &str, returned: &str) -> String {
    format!(
        "Return-Path: <>\r\n\
Delivered-To: {BOUNCE_ADDRESS}\r\n\
Date: Sat,  1 Mar 2025 13:12:39 +0100 (CET)\r\n\
From: MAILER-DAEMON@mx.example.com (Mail Delivery System)\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
To: {BOUNCE_ADDRESS}\r\n\
Auto-Submitted: auto-replied\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n\
\tboundary=\"4Bx9Y22Q3Mz9sPk.1709554359/mx.example.com\"\r\n\
Message-Id: <{id}@mx.example.com>\r\n\
\r\n\
This is a MIME-encapsulated message.\r\n\
\r\n\
--4Bx9Y22Q3Mz9sPk.1709554359/mx.example.com\r\n\
Content-Description: Notification\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
I'm sorry to have to inform you that your message could not\r\n\
be delivered to one or more recipients.\r\n\
\r\n\
--4Bx9Y22Q3Mz9sPk.1709554359/mx.example.com\r\n\
Content-Description: Delivery report\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.com\r\n\
X-Postfix-Queue-ID: 4Bx9Y22Q3Mz9sPk\r\n\
Arrival-Date: Sat,  1 Mar 2025 13:12:37 +0100 (CET)\r\n\
\r\n\
Final-Recipient: rfc822; {recipient}\r\n\
Original-Recipient: rfc822;{recipient}\r\n\
Action: {action}\r\n\
Status: {status}\r\n\
Remote-MTA: dns; mx.example.com\r\n\
Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address rejected: User unknown\r\n\
\r\n\
--4Bx9Y22Q3Mz9sPk.1709554359/mx.example.com\r\n\
Content-Description: Undelivered Message Headers\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
{returned}\r\n\
--4Bx9Y22Q3Mz9sPk.1709554359/mx.example.com--\r\n"
    )
}

/// The header block of a message as it went out.
fn header_block(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    text.split_once("\r\n\r\n").map_or(text.to_string(), |(head, _)| head.to_owned())
}

impl World {
    /// Posts a raw message to the SMTP tenant's DSN intake as the pipe would.
    async fn post_dsn(&self, body: impl Into<reqwest::Body>, password: &str) -> (u16, serde_json::Value) {
        let request = self.http.post(self.url("smtp-shop", "dsn")).basic_auth("postflow", Some(password)).header("content-type", "message/rfc822").body(body);
        self.post(request).await
    }
}

#[tokio::test]
async fn relayed_mail_bounces_to_the_bounce_address_and_its_dsn_suppresses_once() {
    let world = World::start().await;
    let msg = message("smtp", "gone@example.com", "relayed");
    world.deliver(&msg, "sent").await;
    world.events_are(1).await;

    // The envelope sender is the tenant's bounce address; the From header is unchanged.
    let sent = world.smtp.wait_for(1, WAIT).await.unwrap();
    assert_eq!(sent[0].mail_from, BOUNCE_ADDRESS);
    assert_eq!(sent[0].rcpt_to, ["gone@example.com"]);
    assert_eq!(sent[0].header("From").as_deref(), Some("Shop <orders@smtp-shop.example>"));
    assert_eq!(sent[0].header("X-Postflow-Message-Id").as_deref(), Some(msg.message_id.as_str()));

    // The receiving server gives up and mails a DSN to the bounce address, returning the
    // message's headers; the MTA there pipes it to the intake.
    let report = dsn("20250301121239.4Bx9Y22Q3Mz9sPk", "gone@example.com", "failed", "5.1.1", &header_block(&sent[0].data));
    assert_eq!(world.post_dsn(report.clone(), DSN_SECRET).await, (200, serde_json::json!({"status": "recorded", "feedback": 1})));
    let reason = "hard bounce (dsn): smtp; 550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown";
    assert_eq!(world.suppressions("smtp-shop", "gone@example.com").await, vec![("all".to_owned(), reason.to_owned())]);
    let (envelope, bounced) = world.bounce(&msg.message_id).await;
    assert!(bounced.permanent);
    assert_eq!(bounced.reason, reason);
    assert_eq!(envelope.source.system, "dsn");
    assert_eq!(envelope.occurred_at, time::macros::datetime!(2025-03-01 12:12:37 UTC), "the DSN's arrival date");

    // The pipe retried (or the MTA delivered the DSN twice): recorded once.
    assert_eq!(world.post_dsn(report, DSN_SECRET).await, (200, serde_json::json!({"status": "replay", "feedback": 0})));
    assert_eq!(world.count("suppressions").await, 1);
    assert_eq!(world.events_stored().await, 2, "email.sent and one email.bounced");

    // The next message to the address is not relayed.
    world.deliver(&message("smtp", "Gone@Example.com", "later"), "suppressed").await;
    assert_eq!(world.smtp.count(), 1);
}

#[tokio::test]
async fn delays_strangers_dsns_and_bad_posts_change_nothing() {
    let world = World::start().await;
    let msg = message("smtp", "slow@example.com", "slow");
    world.deliver(&msg, "sent").await;
    world.events_are(1).await;
    let ours = header_block(&world.smtp.wait_for(1, WAIT).await.unwrap()[0].data);

    // A delay warning, and a server that gave up after temporary failures: nothing to suppress.
    let delayed = dsn("delayed-1", "slow@example.com", "delayed", "4.4.1", &ours);
    assert_eq!(world.post_dsn(delayed, DSN_SECRET).await, (200, serde_json::json!({"status": "recorded", "feedback": 0})));
    let gave_up = dsn("gave-up-1", "slow@example.com", "failed", "4.2.2", &ours);
    assert_eq!(world.post_dsn(gave_up, DSN_SECRET).await, (200, serde_json::json!({"status": "recorded", "feedback": 1})));

    // Permanent failures that no message of ours stands behind: another recipient than the
    // one our message went to, or a message id we never sent. Ignored.
    let other_recipient = dsn("forged-1", "victim@example.com", "failed", "5.1.1", &ours);
    let strange_id = dsn("forged-2", "slow@example.com", "failed", "5.1.1", &ours.replace(msg.message_id.as_str(), "m_ffffffffffffffffffffffffffffffff"));
    let no_headers = dsn("forged-3", "slow@example.com", "failed", "5.1.1", "Subject: hello");
    for forged in [other_recipient, strange_id, no_headers] {
        assert_eq!(world.post_dsn(forged, DSN_SECRET).await, (200, serde_json::json!({"status": "recorded", "feedback": 0, "ignored": 1})));
    }

    // Refused with a reason: wrong password, not sent as message/rfc822, not a DSN (an
    // auto-reply to the bounce address), too large; another tenant's intake.
    let real = dsn("real-1", "slow@example.com", "failed", "5.1.1", &ours);
    assert_eq!(world.post_dsn(real.clone(), "guessed").await, (401, serde_json::json!({"error": "bad signature"})));
    let (status, answer) = world.post(world.http.post(world.url("smtp-shop", "dsn")).basic_auth("postflow", Some(DSN_SECRET)).body(real.clone())).await;
    assert_eq!((status, answer), (415, serde_json::json!({"error": "content-type must be message/rfc822"})));
    let auto_reply = "From: slow@example.com\r\nTo: bounces@bounce.smtp-shop.example\r\nSubject: Out of office\r\n\r\nBack on Monday.\r\n";
    assert_eq!(world.post_dsn(auto_reply, DSN_SECRET).await, (400, serde_json::json!({"error": "invalid payload: not a multipart message"})));
    let huge = world.http.post(world.url("smtp-shop", "dsn")).basic_auth("postflow", Some(DSN_SECRET)).header("content-type", "message/rfc822");
    let status = huge.body(vec![b'x'; 10 * 1024 * 1024 + 1]).send().await.unwrap().status();
    assert_eq!(status, 413);
    let (status, _) = world.post(world.http.post(world.url("postmark-shop", "dsn")).basic_auth("postflow", Some(POSTMARK_SECRET)).header("content-type", "message/rfc822").body(real)).await;
    assert_eq!(status, 404, "only an SMTP-relay tenant has a DSN intake");

    assert_eq!(world.count("suppressions").await, 0);
    assert_eq!(world.events_stored().await, 1, "no event besides email.sent");
    world.deliver(&message("smtp", "slow@example.com", "still-mailable"), "sent").await;
}
