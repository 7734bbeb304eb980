//! Provider feedback into the sender over HTTP: real NATS, real PostgreSQL, the sender on
//! port 0 with a tenants directory written here (a Postmark, a Mailgun and a SendGrid
//! tenant, each with its webhook secret, their APIs pointed at one stub). Checked: a
//! verified hard bounce suppresses the address, is announced as `email.bounced` and stops
//! the next message; wrong credentials change nothing; a replayed delivery, or a known
//! event in a new delivery, changes nothing; a spam report suppresses all mail.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::{Bus, BusSettings, ConsumerSpec, Delivery, Feed, HandleError, Handler};
use contracts::{Cause, EmailAddress, EmailBounced, Envelope, Event, EventKind, Lane, Mailbox, MessageId, OutboundMessage, SPEC_VERSION, TenantId};
use kit::db::DbSettings;
use kit::settings::HttpSettings;
use sqlx::PgPool;
use testkit::{NatsServer, Postgres, eventually, eventually_ok};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(30);
const POSTMARK_SECRET: &str = "postmark-hook-password";
const MAILGUN_KEY: &str = "mailgun-signing-key";

// ---------------------------------------------------------------- the provider stub

/// Accepts every send as the provider whose path it is, and counts the requests per path.
#[derive(Clone)]
struct Stub {
    addr: SocketAddr,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Stub {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stub = Self { addr: listener.local_addr().unwrap(), paths: Arc::default() };
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
        let (status, body) = match path.as_str() {
            "/email" => (200, r#"{"To":"x@example.com","SubmittedAt":"2025-03-01T12:00:00Z","MessageID":"postmark-1","ErrorCode":0,"Message":"OK"}"#),
            "/v3/mail/send" => (202, ""),
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

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct World {
    _nats: NatsServer,
    _pg: Postgres,
    _tenants: TempDir,
    bus: Bus,
    db: PgPool,
    stub: Stub,
    sender: SocketAddr,
    bounces: Arc<Bounces>,
    /// SendGrid's side of the SendGrid tenant's verification key.
    sendgrid_key: Vec<u8>,
    http: reqwest::Client,
}

fn tenant_toml(provider: &str, stub: SocketAddr, webhook_secret: &str) -> String {
    let account = match provider {
        "postmark" | "sendgrid" => "api_key = \"test-key\"\n",
        "mailgun" => "api_key = \"test-key\"\ndomain = \"mg.example\"\n",
        _ => unreachable!(),
    };
    format!(
        "name = \"{provider} shop\"\n[sender]\nfrom = \"orders@{provider}-shop.example\"\nfrom_name = \"Shop\"\n\
         physical_address = \"1 Main St\"\n[brand]\nprimary_color = \"#0f766e\"\n\
         [delivery]\nprovider = \"{provider}\"\nendpoint = \"http://{stub}\"\n{account}webhook_secret = \"{webhook_secret}\"\n"
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
        let dir = std::env::temp_dir().join(format!("postflow-feedback-{}", uuid::Uuid::new_v4()));
        for (provider, secret) in [("postmark", POSTMARK_SECRET), ("mailgun", MAILGUN_KEY), ("sendgrid", sendgrid_public.as_str())] {
            let tenant_dir = dir.join(format!("{provider}-shop"));
            std::fs::create_dir_all(&tenant_dir).unwrap();
            std::fs::write(tenant_dir.join("tenant.toml"), tenant_toml(provider, stub.addr, secret)).unwrap();
        }

        // The system clock: Mailgun and SendGrid signatures carry the time they were made.
        let settings = sender::Settings {
            http: HttpSettings::on("127.0.0.1:0"),
            nats: bus_settings,
            database: DbSettings::new(db_url.clone()),
            tenants_dir: dir.clone(),
            providers: sender::ProviderSettings { timeout: Duration::from_secs(2), connect_timeout: Duration::from_secs(1) },
            claim_lease: Duration::from_secs(3),
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
        Self { _nats: nats, _pg: pg, _tenants: TempDir(dir), bus, db, stub, sender, bounces, sendgrid_key, http: reqwest::Client::new() }
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
