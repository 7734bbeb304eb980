//! The sender against each HTTP provider: real NATS, real PostgreSQL, the sender on port 0
//! with a tenants directory written here (one tenant per provider, its endpoint pointed at
//! a stub), and per provider an HTTP stub that records every request and answers from a
//! script. Checked: what goes over the wire (URL, auth, body, our MIME and DKIM, the
//! tenant's Postmark message streams), that a rate-limited request is retried and
//! delivered once, that a documented rejection is a permanent bounce with a suppression
//! and no retry, that the retry deadline turns a temporary failure into a non-permanent
//! bounce, and that an unanswered request is not sent again. Postmark's stub also serves
//! `/email/batch` as documented (a result per message, in order): messages that queue up
//! behind a request in flight go in fewer requests, each exactly once; a refused recipient
//! in a batch bounces alone; a batch answered 5xx or 429 is retried and still arrives once.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use bus::{Bus, BusSettings, ConsumerSpec, Delivery, Feed, HandleError, Handler};
use contracts::{Cause, EmailAddress, Envelope, Event, EventKind, Lane, Mailbox, MessageId, OutboundMessage, SPEC_VERSION, TenantId};
use kit::ManualClock;
use kit::db::DbSettings;
use kit::settings::HttpSettings;
use sqlx::PgPool;
use testkit::{NatsServer, Postgres, eventually, eventually_ok};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const PROVIDERS: [&str; 4] = ["ses", "postmark", "sendgrid", "mailgun"];
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- the HTTP stub

/// One request as the stub received it; header names in lowercase.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The status and body the stub answered (or will, once let go); `None` for a hang.
    answered: Option<(u16, String)>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

#[derive(Debug, Clone)]
enum Reply {
    Answer { status: u16, headers: Vec<(&'static str, &'static str)>, body: &'static str },
    /// Read the request, never answer.
    Hang,
    /// Postmark as documented. `/email`: the one message's result (`postmark-message-1`).
    /// `/email/batch`: 200 and an array with a result per message, in order — accepted with
    /// `MessageID` `pm-{our message id}`, or `ErrorCode` 406 for a recipient in `inactive`
    /// (alone, that recipient gets `/email`'s 422 with 406).
    Postmark { inactive: Vec<&'static str> },
    /// The inner reply, once the test lets it go (one permit per request held).
    Held(Arc<Semaphore>, Box<Reply>),
}

/// An answer as the stub writes it: status, headers, body.
type Response = (u16, Vec<(&'static str, &'static str)>, String);

impl Reply {
    /// The answer to `request`, or `None` for a hang.
    fn respond(&self, request: &Recorded) -> Option<Response> {
        match self {
            Reply::Answer { status, headers, body } => Some((*status, headers.clone(), (*body).to_owned())),
            Reply::Hang => None,
            Reply::Held(_, inner) => inner.respond(request),
            Reply::Postmark { inactive } => {
                let refused = |m: &serde_json::Value| inactive.iter().any(|a| m["To"].as_str().is_some_and(|to| to.contains(a)));
                let inactive_result = serde_json::json!({
                    "ErrorCode": 406,
                    "Message": "You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: x. \
                                Inactive recipients are ones that have generated a hard bounce, a spam complaint, or a manual suppression.",
                });
                let body = request.json();
                if request.path == "/email/batch" {
                    let results: Vec<_> = body
                        .as_array()
                        .unwrap_or_else(|| panic!("/email/batch takes an array: {body}"))
                        .iter()
                        .map(|m| {
                            if refused(m) {
                                inactive_result.clone()
                            } else {
                                let id = m["Metadata"]["postflow_message_id"].as_str().unwrap();
                                serde_json::json!({
                                    "ErrorCode": 0,
                                    "Message": "OK",
                                    "MessageID": format!("pm-{id}"),
                                    "SubmittedAt": "2025-03-01T12:00:00Z",
                                    "To": m["To"],
                                })
                            }
                        })
                        .collect();
                    Some((200, vec![], serde_json::Value::from(results).to_string()))
                } else if refused(&body) {
                    Some((422, vec![], inactive_result.to_string()))
                } else {
                    let ok = r#"{"To":"ada@example.com","SubmittedAt":"2025-03-01T12:00:00Z","MessageID":"postmark-message-1","ErrorCode":0,"Message":"OK"}"#;
                    Some((200, vec![], ok.to_owned()))
                }
            }
        }
    }
}

fn answer(status: u16, body: &'static str) -> Reply {
    Reply::Answer { status, headers: vec![], body }
}

/// A minimal HTTP/1.1 server: records each request, answers with the next scripted reply
/// (or the default one), and closes the connection.
#[derive(Clone)]
struct Stub {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    default: Arc<Mutex<Reply>>,
}

impl Stub {
    async fn start(default: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stub = Self {
            addr: listener.local_addr().unwrap(),
            requests: Arc::default(),
            script: Arc::default(),
            default: Arc::new(Mutex::new(default)),
        };
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
        let Some(mut request) = read_request(&mut conn).await else { return };
        let reply = self.script.lock().unwrap().pop_front().unwrap_or_else(|| self.default.lock().unwrap().clone());
        let response = reply.respond(&request);
        request.answered = response.as_ref().map(|(status, _, body)| (*status, body.clone()));
        self.requests.lock().unwrap().push(request);
        if let Reply::Held(gate, _) = &reply {
            gate.acquire().await.unwrap().forget();
        }
        let Some((status, headers, body)) = response else { return std::future::pending::<()>().await };
        let mut out = format!("HTTP/1.1 {status} Stub\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
        for (n, v) in headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&body);
        let _ = conn.get_mut().write_all(out.as_bytes()).await;
        let _ = conn.get_mut().shutdown().await;
    }

    fn then(&self, reply: Reply) {
        self.script.lock().unwrap().push_back(reply);
    }

    /// The next request is answered with `reply` only once the returned gate gets a permit.
    fn then_held(&self, reply: Reply) -> Arc<Semaphore> {
        let gate = Arc::new(Semaphore::new(0));
        self.then(Reply::Held(gate.clone(), Box::new(reply)));
        gate
    }

    fn set_default(&self, reply: Reply) {
        *self.default.lock().unwrap() = reply;
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn read_request(conn: &mut BufReader<tokio::net::TcpStream>) -> Option<Recorded> {
    let mut line = String::new();
    conn.read_line(&mut line).await.ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        conn.read_line(&mut h).await.ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Some(len) = get("content-length") {
        body.resize(len.parse().ok()?, 0);
        conn.read_exact(&mut body).await.ok()?;
    } else if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            conn.read_line(&mut size).await.ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            conn.read_exact(&mut chunk).await.ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    Some(Recorded { method, path, headers, body, answered: None })
}

// ---------------------------------------------------------------- the world

/// Collects the sender's `email.sent` and `email.bounced` events.
#[derive(Default)]
struct Events(Mutex<Vec<Envelope>>);

impl Handler<Envelope> for Events {
    async fn handle(&self, d: Delivery<Envelope>) -> Result<(), HandleError> {
        self.0.lock().unwrap().push(d.body);
        Ok(())
    }
}

impl Events {
    fn for_message(&self, id: &MessageId) -> Vec<Event> {
        let mine = |e: &Event| match e {
            Event::EmailSent(s) => &s.message_id == id,
            Event::EmailBounced(b) => &b.message_id == id,
            _ => false,
        };
        self.0.lock().unwrap().iter().map(|e| e.event.clone()).filter(mine).collect()
    }
}

struct World {
    _nats: NatsServer,
    _pg: Postgres,
    _tenants: tempfile::TempDir,
    bus: Bus,
    db: PgPool,
    clock: ManualClock,
    stubs: Vec<(&'static str, Stub)>,
    events: Arc<Events>,
}

fn key(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("services/sender/tests/data").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn tenant_toml(provider: &str, stub: SocketAddr) -> String {
    let account = match provider {
        "ses" => "region = \"eu-west-1\"\naccess_key_id = \"AKIDTEST\"\nsecret_access_key = \"ses-test-secret\"\n",
        // The marketing lane on a stream of the tenant's own; transactional keeps the default.
        // A rate limit no test reaches: each message takes a slot just before it is handed to
        // the transport, so the slots taken say how many got that far.
        "postmark" => "api_key = \"postmark-test-token\"\nmarketing_stream = \"shop-newsletters\"\nmax_per_second = 100000\n",
        "sendgrid" => "api_key = \"sendgrid-test-key\"\n",
        "mailgun" => "api_key = \"mailgun-test-key\"\ndomain = \"mg.example\"\n",
        _ => unreachable!(),
    };
    // SES and Mailgun carry our MIME, signed with RSA and Ed25519 keys; Postmark also has a
    // key, which it must not use (it builds the message itself).
    let dkim = match provider {
        "ses" | "postmark" => format!("[dkim]\nselector = \"pf1\"\nprivate_key = '''\n{}'''\n", key("dkim-rsa2048.pem")),
        "mailgun" => format!("[dkim]\nselector = \"ed1\"\nprivate_key = '''\n{}'''\n", key("dkim-ed25519.pem")),
        _ => String::new(),
    };
    format!(
        "name = \"{provider} shop\"\n[sender]\nfrom = \"orders@{provider}-shop.example\"\nfrom_name = \"Shop\"\n\
         physical_address = \"1 Main St\"\n[brand]\nprimary_color = \"#0f766e\"\n\
         [delivery]\nprovider = \"{provider}\"\nendpoint = \"http://{stub}\"\n{account}{dkim}"
    )
}

/// The provider's documented success answer.
fn accepted(provider: &str) -> Reply {
    match provider {
        "ses" => answer(200, r#"{"MessageId":"ses-message-1"}"#),
        // `/email` and `/email/batch`.
        "postmark" => Reply::Postmark { inactive: vec![] },
        "sendgrid" => Reply::Answer { status: 202, headers: vec![("x-message-id", "sendgrid-message-1")], body: "" },
        "mailgun" => answer(200, r#"{"id":"<mailgun-message-1@mg.example>","message":"Queued. Thank you."}"#),
        _ => unreachable!(),
    }
}

fn provider_id(provider: &str) -> &'static str {
    match provider {
        "ses" => "ses-message-1",
        "postmark" => "postmark-message-1",
        "sendgrid" => "sendgrid-message-1",
        "mailgun" => "<mailgun-message-1@mg.example>",
        _ => unreachable!(),
    }
}

/// The provider's documented "slow down".
fn rate_limited(provider: &str) -> Reply {
    match provider {
        "ses" => Reply::Answer {
            status: 429,
            headers: vec![("x-amzn-errortype", "TooManyRequestsException")],
            body: r#"{"message":"Maximum sending rate exceeded."}"#,
        },
        "postmark" => answer(429, r#"{"ErrorCode":429,"Message":"Rate limit exceeded."}"#),
        "sendgrid" => answer(429, r#"{"errors":[{"message":"too many requests"}]}"#),
        "mailgun" => answer(429, r#"{"message":"Too many requests"}"#),
        _ => unreachable!(),
    }
}

/// The provider's documented permanent rejection of a recipient or message.
fn rejected(provider: &str) -> (Reply, &'static str) {
    match provider {
        "ses" => (
            Reply::Answer {
                status: 400,
                headers: vec![("x-amzn-errortype", "MessageRejected:http://internal.amazon.com/coral/com.amazonaws.sesv2/")],
                body: r#"{"message":"Email address is on the account-level suppression list."}"#,
            },
            "MessageRejected",
        ),
        // (406, "inactive recipient", is Postmark's own suppression, not a rejection: see
        // the batch test below.)
        "postmark" => (
            answer(422, r#"{"ErrorCode":300,"Message":"Error parsing 'To': Illegal email address 'gone@example.com'."}"#),
            "ErrorCode 300",
        ),
        "sendgrid" => (
            answer(400, r#"{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to.0.email"}]}"#),
            "Does not contain a valid address",
        ),
        "mailgun" => (answer(400, r#"{"message":"to parameter is not a valid address. please check documentation"}"#), "not a valid address"),
        _ => unreachable!(),
    }
}

fn tenant(provider: &str) -> String {
    format!("{provider}-shop")
}

fn message(provider: &str, to: &str, tag: &str) -> OutboundMessage {
    let tenant = tenant(provider);
    OutboundMessage {
        spec: SPEC_VERSION,
        message_id: MessageId::derive(&[&tenant, to, tag]),
        tenant: TenantId::parse(&tenant).unwrap(),
        lane: Lane::Transactional,
        from: Mailbox { name: Some("Shop".into()), email: EmailAddress::parse(&format!("orders@{tenant}.example")).unwrap() },
        reply_to: None,
        to: Mailbox { name: Some("Ada".into()), email: EmailAddress::parse(to).unwrap() },
        subject: "Your order #1001".into(),
        html: "<p>Thanks for your order!</p>".into(),
        text: "Thanks for your order!".into(),
        headers: vec![
            ("List-Unsubscribe".into(), "<https://t.example/u/tok>".into()),
            ("List-Unsubscribe-Post".into(), "List-Unsubscribe=One-Click".into()),
        ],
        template: "order_confirmation".into(),
        topic: None,
        cause: Cause { flow: "test".into(), run_id: uuid::Uuid::nil(), step: 0, event_id: uuid::Uuid::nil() },
    }
}

impl World {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// With the sender's settings changed by `tune` before it starts.
    async fn start_with(tune: impl FnOnce(&mut sender::Settings)) -> Self {
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

        let tenants_dir = tempfile::Builder::new().prefix("postflow-providers-").tempdir().unwrap();
        let dir = tenants_dir.path().to_path_buf();
        let mut stubs = Vec::new();
        for provider in PROVIDERS {
            let stub = Stub::start(accepted(provider)).await;
            let tenant_dir = dir.join(tenant(provider));
            std::fs::create_dir_all(&tenant_dir).unwrap();
            std::fs::write(tenant_dir.join("tenant.toml"), tenant_toml(provider, stub.addr)).unwrap();
            stubs.push((provider, stub));
        }

        let clock = ManualClock::new(time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap());
        let mut settings = sender::Settings {
            http: HttpSettings::on("127.0.0.1:0"),
            nats: bus_settings,
            database: DbSettings::new(db_url.clone()),
            tenants_dir: dir.clone(),
            providers: sender::ProviderSettings { timeout: Duration::from_secs(1), connect_timeout: Duration::from_secs(1) },
            claim_lease: Duration::from_secs(3),
            ..Default::default()
        };
        tune(&mut settings);
        let app = sender::Application::build_with_clock(settings, Arc::new(clock.clone())).await.expect("sender");
        tokio::spawn(app.run_until_stopped(std::future::pending()));

        let events = Arc::new(Events::default());
        let stop = kit::Supervisor::new("test").stop_token();
        for kind in [EventKind::EmailSent, EventKind::EmailBounced] {
            let (bus, events, stop) = (bus.clone(), events.clone(), stop.clone());
            let spec = ConsumerSpec::new("test", Feed::Events(kind), 4);
            tokio::spawn(async move { bus.run_consumer::<Envelope, _>(spec, events, stop, Duration::from_secs(1)).await });
        }
        let db = PgPool::connect(&db_url).await.unwrap();
        Self { _nats: nats, _pg: pg, _tenants: tenants_dir, bus, db, clock, stubs, events }
    }

    fn stub(&self, provider: &str) -> &Stub {
        &self.stubs.iter().find(|(p, _)| *p == provider).unwrap().1
    }

    async fn send(&self, msg: &OutboundMessage) {
        self.bus.publish_outbound(msg).await.unwrap();
    }

    /// Waits until the message's delivery row is in `state`; returns its response.
    async fn outcome(&self, msg: &OutboundMessage, state: &str) -> String {
        eventually_ok(WAIT, &format!("{} {state}", msg.tenant), || async {
            let row: Option<(String, Option<String>)> =
                sqlx::query_as("select state, response from deliveries where tenant = $1 and message_id = $2")
                    .bind(msg.tenant.as_str())
                    .bind(msg.message_id.as_str())
                    .fetch_optional(&self.db)
                    .await?;
            match row {
                Some((s, response)) if s == state => Ok(response.unwrap_or_default()),
                other => anyhow::bail!("delivery is {other:?}"),
            }
        })
        .await
    }

    /// Waits until every outbound message is acknowledged (the work queue is empty).
    async fn settled(&self) {
        eventually(WAIT, "the send queue to drain", || async { (self.bus.stream_len("PF_SEND").await.ok()? == 0).then_some(()) }).await;
    }

    async fn event(&self, msg: &OutboundMessage) -> Event {
        let events = eventually(WAIT, "the outcome event", || async {
            let e = self.events.for_message(&msg.message_id);
            (!e.is_empty()).then_some(e)
        })
        .await;
        assert_eq!(events.len(), 1, "one outcome event: {events:?}");
        events.into_iter().next().unwrap()
    }

    /// How many of the tenant's messages have reached its transport: each takes a slot
    /// under the tenant's `max_per_second` just before it is handed over.
    async fn reached_transport(&self, tenant: &str) -> i64 {
        sqlx::query_scalar("select coalesce(sum(used), 0)::bigint from rate_windows where key = $1")
            .bind(format!("acct:{tenant}"))
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    async fn failures(&self, msg: &OutboundMessage) -> Option<i32> {
        sqlx::query_scalar("select failures from retries where tenant = $1 and message_id = $2")
            .bind(msg.tenant.as_str())
            .bind(msg.message_id.as_str())
            .fetch_optional(&self.db)
            .await
            .unwrap()
    }

    async fn suppression(&self, msg: &OutboundMessage) -> Option<(String, String)> {
        sqlx::query_as("select scope, reason from suppressions where tenant = $1 and email = $2")
            .bind(msg.tenant.as_str())
            .bind(msg.to.email.key())
            .fetch_optional(&self.db)
            .await
            .unwrap()
    }
}

/// Our formatted message, as the provider received it, checked for our headers and a
/// DKIM signature of the tenant's domain.
fn assert_our_signed_mime(mime: &str, msg: &OutboundMessage, algorithm: &str, selector: &str) {
    let dkim = format!("DKIM-Signature: v=1; a={algorithm}; c=relaxed/relaxed; d={}.example; s={selector};", msg.tenant);
    assert!(mime.starts_with(&dkim), "signed first thing: {mime}");
    assert!(mime.contains("h=from:to:subject:date:message-id:mime-version:content-type:list-unsubscribe:list-unsubscribe-post;"), "{mime}");
    let parsed = mail_parser::MessageParser::default().parse(mime.as_bytes()).unwrap();
    assert_eq!(parsed.subject(), Some("Your order #1001"));
    assert_eq!(parsed.message_id(), Some(format!("{}@{}.example", msg.message_id, msg.tenant).as_str()));
    assert_eq!(parsed.header_raw("List-Unsubscribe").map(str::trim), Some("<https://t.example/u/tok>"));
    assert_eq!(parsed.body_text(0).as_deref().map(str::trim), Some("Thanks for your order!"));
}

// ---------------------------------------------------------------- the tests

#[tokio::test]
async fn ses_gets_our_signed_mime_with_a_sigv4_signature() {
    let world = World::start().await;
    let msg = message("ses", "ada@example.com", "ses-ok");
    world.send(&msg).await;
    assert_eq!(world.outcome(&msg, "sent").await, "ses-message-1", "the provider's id is kept");
    world.settled().await;

    let requests = world.stub("ses").requests();
    assert_eq!(requests.len(), 1, "exactly one request");
    let r = &requests[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v2/email/outbound-emails"));
    // The signature must hold for the bytes as they arrived.
    let host = r.header("host").unwrap();
    assert_eq!(host, world.stub("ses").addr.to_string());
    let headers = [("host", host), ("content-type", r.header("content-type").unwrap())];
    let signed = sender::transport::sigv4::sign(
        &sender::transport::sigv4::Request { method: "POST", path: &r.path, query: &[], headers: &headers, payload: &r.body },
        &sender::transport::sigv4::Credentials { access_key_id: "AKIDTEST", secret_access_key: "ses-test-secret" },
        "eu-west-1",
        "ses",
        kit::Clock::now(&world.clock),
    );
    assert_eq!(r.header("x-amz-date"), Some(signed.amz_date.as_str()));
    assert_eq!(r.header("authorization"), Some(signed.authorization.as_str()));
    assert!(signed.authorization.contains("/eu-west-1/ses/aws4_request, SignedHeaders=content-type;host;x-amz-date, "));

    let body = r.json();
    assert_eq!(body["Destination"]["ToAddresses"], serde_json::json!(["ada@example.com"]));
    assert_eq!(body["EmailTags"][0]["Value"], msg.message_id.as_str());
    let raw = body["Content"]["Raw"]["Data"].as_str().unwrap();
    let mime = String::from_utf8(base64_decode(raw)).unwrap();
    assert_our_signed_mime(&mime, &msg, "rsa-sha256", "pf1");

    match world.event(&msg).await {
        Event::EmailSent(sent) => assert_eq!(sent.response, "ses-message-1"),
        other => panic!("expected email.sent, got {other:?}"),
    }
}

#[tokio::test]
async fn postmark_gets_json_with_the_server_token() {
    let world = World::start().await;
    let msg = message("postmark", "ada@example.com", "postmark-ok");
    world.send(&msg).await;
    assert_eq!(world.outcome(&msg, "sent").await, "postmark-message-1");
    world.settled().await;

    let requests = world.stub("postmark").requests();
    assert_eq!(requests.len(), 1, "exactly one request");
    let r = &requests[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/email"));
    assert_eq!(r.header("x-postmark-server-token"), Some("postmark-test-token"));
    assert_eq!(r.header("accept"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["From"], "\"Shop\" <orders@postmark-shop.example>");
    assert_eq!(body["To"], "\"Ada\" <ada@example.com>");
    assert_eq!(body["Subject"], "Your order #1001");
    assert_eq!(body["TextBody"], "Thanks for your order!");
    assert_eq!(body["HtmlBody"], "<p>Thanks for your order!</p>");
    assert_eq!(body["MessageStream"], "outbound", "transactional_stream's default");
    assert_eq!(body["Metadata"]["postflow_message_id"], msg.message_id.as_str());
    assert_eq!(body["TrackLinks"], "None");
    assert_eq!(body["Headers"][0], serde_json::json!({ "Name": "List-Unsubscribe", "Value": "<https://t.example/u/tok>" }));
    assert!(!r.text().contains("DKIM-Signature"), "Postmark signs the MIME it builds itself");
    assert!(matches!(world.event(&msg).await, Event::EmailSent(s) if s.response == "postmark-message-1"));
}

#[tokio::test]
async fn postmark_gets_the_tenants_message_stream_for_marketing() {
    let world = World::start().await;
    let msg = OutboundMessage { lane: Lane::Marketing, ..message("postmark", "ada@example.com", "postmark-newsletter") };
    world.send(&msg).await;
    assert_eq!(world.outcome(&msg, "sent").await, "postmark-message-1");
    world.settled().await;

    let requests = world.stub("postmark").requests();
    assert_eq!(requests.len(), 1, "exactly one request");
    let body = requests[0].json();
    assert_eq!(body["MessageStream"], "shop-newsletters", "the configured marketing_stream, not Postmark's default broadcast");
    assert_eq!(body["Metadata"]["postflow_message_id"], msg.message_id.as_str());
}

#[tokio::test]
async fn sendgrid_gets_json_with_a_bearer_key() {
    let world = World::start().await;
    let msg = message("sendgrid", "ada@example.com", "sendgrid-ok");
    world.send(&msg).await;
    assert_eq!(world.outcome(&msg, "sent").await, "sendgrid-message-1", "from X-Message-Id");
    world.settled().await;

    let requests = world.stub("sendgrid").requests();
    assert_eq!(requests.len(), 1, "exactly one request");
    let r = &requests[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v3/mail/send"));
    assert_eq!(r.header("authorization"), Some("Bearer sendgrid-test-key"));
    let body = r.json();
    assert_eq!(body["personalizations"][0]["to"], serde_json::json!([{ "email": "ada@example.com", "name": "Ada" }]));
    assert_eq!(body["from"], serde_json::json!({ "email": "orders@sendgrid-shop.example", "name": "Shop" }));
    assert_eq!(body["subject"], "Your order #1001");
    assert_eq!(
        body["content"],
        serde_json::json!([
            { "type": "text/plain", "value": "Thanks for your order!" },
            { "type": "text/html", "value": "<p>Thanks for your order!</p>" }
        ])
    );
    assert_eq!(body["headers"]["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click");
    assert_eq!(body["custom_args"]["postflow_message_id"], msg.message_id.as_str());
    assert_eq!(body["tracking_settings"]["click_tracking"]["enable"], false);
    assert!(matches!(world.event(&msg).await, Event::EmailSent(s) if s.response == "sendgrid-message-1"));
}

#[tokio::test]
async fn mailgun_gets_our_signed_mime_as_multipart() {
    let world = World::start().await;
    let msg = message("mailgun", "ada@example.com", "mailgun-ok");
    world.send(&msg).await;
    assert_eq!(world.outcome(&msg, "sent").await, "<mailgun-message-1@mg.example>");
    world.settled().await;

    let requests = world.stub("mailgun").requests();
    assert_eq!(requests.len(), 1, "exactly one request");
    let r = &requests[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v3/mg.example/messages.mime"));
    // base64("api:mailgun-test-key")
    assert_eq!(r.header("authorization"), Some("Basic YXBpOm1haWxndW4tdGVzdC1rZXk="));
    let boundary = r.header("content-type").unwrap().strip_prefix("multipart/form-data; boundary=").unwrap().to_owned();
    let form = multipart(&r.text(), &boundary);
    assert_eq!(form.iter().find(|(n, _)| n == "to").unwrap().1, "ada@example.com");
    assert_eq!(form.iter().find(|(n, _)| n == "v:postflow_message_id").unwrap().1, msg.message_id.as_str());
    assert_eq!(form.iter().find(|(n, _)| n == "o:tracking").unwrap().1, "no", "tracking would rewrite the signed body");
    let mime = &form.iter().find(|(n, _)| n == "message").unwrap().1;
    assert_our_signed_mime(mime, &msg, "ed25519-sha256", "ed1");
    assert!(matches!(world.event(&msg).await, Event::EmailSent(s) if s.response == "<mailgun-message-1@mg.example>"));
}

#[tokio::test]
async fn a_rate_limited_request_is_retried_and_delivered_once() {
    let world = World::start().await;
    let mut sent = Vec::new();
    for provider in PROVIDERS {
        world.stub(provider).then(rate_limited(provider));
        let msg = message(provider, "ada@example.com", "retry");
        world.send(&msg).await;
        sent.push((provider, msg));
    }
    for (provider, msg) in &sent {
        assert_eq!(world.outcome(msg, "sent").await, provider_id(provider), "{provider}");
    }
    world.settled().await;
    for (provider, msg) in &sent {
        let requests = world.stub(provider).requests();
        assert_eq!(requests.len(), 2, "{provider}: refused once, then accepted");
        for r in &requests {
            assert!(r.text().contains(msg.message_id.as_str()), "{provider}: the same message both times");
        }
        assert!(matches!(world.event(msg).await, Event::EmailSent(_)), "{provider}: one email.sent");
        let failures: i32 = sqlx::query_scalar("select failures from retries where tenant = $1 and message_id = $2")
            .bind(msg.tenant.as_str())
            .bind(msg.message_id.as_str())
            .fetch_one(&world.db)
            .await
            .unwrap();
        assert_eq!(failures, 1, "{provider}");
        assert_eq!(world.suppression(msg).await, None, "{provider}: a rate limit says nothing about the address");
    }
}

#[tokio::test]
async fn a_documented_rejection_bounces_suppresses_and_is_not_retried() {
    let world = World::start().await;
    let mut sent = Vec::new();
    for provider in PROVIDERS {
        let (reply, reason) = rejected(provider);
        world.stub(provider).then(reply);
        let msg = message(provider, "gone@example.com", "reject");
        world.send(&msg).await;
        sent.push((provider, msg, reason));
    }
    for (provider, msg, reason) in &sent {
        let response = world.outcome(msg, "bounced").await;
        assert!(response.contains(reason), "{provider}: the reason is kept: {response}");
        match world.event(msg).await {
            Event::EmailBounced(b) => {
                assert!(b.permanent, "{provider}");
                assert_eq!(b.reason, response);
                assert_eq!(b.recipient.as_str(), "gone@example.com");
            }
            other => panic!("{provider}: expected email.bounced, got {other:?}"),
        }
        let (scope, why) = world.suppression(msg).await.unwrap_or_else(|| panic!("{provider}: no suppression"));
        assert_eq!(scope, "all", "{provider}");
        assert_eq!(why, response);
    }
    world.settled().await;

    // A later message to the same address is not even offered to the provider.
    let mut later = Vec::new();
    for provider in PROVIDERS {
        let msg = message(provider, "Gone@Example.com", "later");
        world.send(&msg).await;
        later.push((provider, msg));
    }
    for (provider, msg) in &later {
        world.outcome(msg, "suppressed").await;
        assert_eq!(world.stub(provider).requests().len(), 1, "{provider}: refused once, never retried, never sent again");
    }
    assert!(world.bus.dead_letters(10).await.unwrap().is_empty(), "a bounce is an outcome, not a dead letter");
}

#[tokio::test]
async fn past_the_retry_deadline_a_temporary_failure_becomes_a_bounce() {
    let world = World::start().await;
    let stub = world.stub("postmark");
    stub.set_default(answer(503, r#"{"ErrorCode":0,"Message":"Service unavailable"}"#));
    let msg = message("postmark", "ada@example.com", "deadline");
    world.send(&msg).await;
    eventually(WAIT, "a first attempt", || async { (!stub.requests().is_empty()).then_some(()) }).await;
    // A day and an hour later, the provider is still down.
    world.clock.advance(time::Duration::hours(25));

    let response = world.outcome(&msg, "expired").await;
    assert!(response.starts_with("gave up after 1d 1h: last error postmark 503"), "{response}");
    match world.event(&msg).await {
        Event::EmailBounced(b) => {
            assert!(!b.permanent, "the address did nothing wrong");
            assert_eq!(b.reason, response);
        }
        other => panic!("expected email.bounced, got {other:?}"),
    }
    world.settled().await;
    assert_eq!(world.suppression(&msg).await, None, "not suppressed");
    assert!(world.bus.dead_letters(10).await.unwrap().is_empty(), "acked, not dead-lettered");
}

#[tokio::test]
async fn an_unanswered_request_is_not_sent_again() {
    let world = World::start().await;
    let stub = world.stub("postmark");
    stub.then(Reply::Hang);
    let msg = message("postmark", "ada@example.com", "hang");
    world.send(&msg).await;
    eventually(WAIT, "the request", || async { (!stub.requests().is_empty()).then_some(()) }).await;
    // The provider may have taken it. Once the claim lease has run out, the redelivery
    // marks the message indeterminate instead of sending it a second time.
    world.clock.advance(time::Duration::seconds(4));
    assert_eq!(world.outcome(&msg, "indeterminate").await, "claim expired without an outcome");
    world.settled().await;
    assert_eq!(stub.requests().len(), 1, "sent at most once");
    assert!(world.events.for_message(&msg.message_id).is_empty(), "no outcome to announce");
}

// ---------------------------------------------------------------- Postmark batches

/// A world in which the stub may hold a request as long as a test needs (a generous
/// provider timeout, claim lease and ack wait), and the marketing lane takes enough
/// messages at once for all of a test's messages to queue up behind one request.
async fn batching_world() -> World {
    World::start_with(|s| {
        s.providers.timeout = Duration::from_secs(60);
        s.claim_lease = Duration::from_secs(120);
        s.nats.ack_wait = Duration::from_secs(120);
        s.marketing_concurrency = 64;
    })
    .await
}

fn newsletter(to: &str, tag: &str) -> OutboundMessage {
    OutboundMessage { lane: Lane::Marketing, subject: "New in this week".into(), ..message("postmark", to, tag) }
}

/// Sends `first` and holds its request at the stub (with `reply`) until every one of `rest`
/// has reached the transport, so they wait behind it. The returned gate lets it go.
async fn queue_behind_one(world: &World, first: &OutboundMessage, rest: &[OutboundMessage], reply: Reply) -> Arc<Semaphore> {
    let stub = world.stub("postmark");
    let (requests, reached) = (stub.requests().len(), world.reached_transport("postmark-shop").await);
    let gate = stub.then_held(reply);
    world.send(first).await;
    eventually(WAIT, "the first request", || async { (stub.requests().len() > requests).then_some(()) }).await;
    for m in rest {
        world.send(m).await;
    }
    let all = reached + 1 + rest.len() as i64;
    eventually(WAIT, "every message to reach the transport", || async {
        (world.reached_transport("postmark-shop").await >= all).then_some(())
    })
    .await;
    gate
}

/// Our message ids in a Postmark request, in order.
fn ids_in(r: &Recorded) -> Vec<String> {
    let body = r.json();
    let id = |m: &serde_json::Value| m["Metadata"]["postflow_message_id"].as_str().unwrap().to_owned();
    match r.path.as_str() {
        "/email/batch" => body.as_array().unwrap().iter().map(id).collect(),
        _ => vec![id(&body)],
    }
}

/// The ids of the messages the stub took, once per time it took one: a 200 from `/email`,
/// each result with `ErrorCode` 0 in a 200 from `/email/batch`.
fn taken_by_postmark(requests: &[Recorded]) -> Vec<String> {
    let mut taken = Vec::new();
    for r in requests {
        let Some((200, answer)) = &r.answered else { continue };
        let results: serde_json::Value = serde_json::from_str(answer).unwrap();
        let results = results.as_array().cloned().unwrap_or_else(|| vec![results]);
        for (id, result) in ids_in(r).into_iter().zip(results) {
            if result["ErrorCode"] == 0 {
                taken.push(id);
            }
        }
    }
    taken.sort();
    taken
}

fn sorted_ids(msgs: &[OutboundMessage]) -> Vec<String> {
    let mut ids: Vec<_> = msgs.iter().map(|m| m.message_id.as_str().to_owned()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn postmark_sends_what_queues_behind_a_request_as_a_batch_each_message_once() {
    let world = batching_world().await;
    let stub = world.stub("postmark");
    let msgs: Vec<_> = (0..24).map(|i| newsletter(&format!("reader{i}@example.com"), "weekly")).collect();
    let gate = queue_behind_one(&world, &msgs[0], &msgs[1..], Reply::Postmark { inactive: vec![] }).await;
    gate.add_permits(1);

    // The first went alone, at once: its lane was idle.
    assert_eq!(world.outcome(&msgs[0], "sent").await, "postmark-message-1");
    for m in &msgs[1..] {
        assert_eq!(world.outcome(m, "sent").await, format!("pm-{}", m.message_id.as_str()), "its own result, by position");
    }
    world.settled().await;

    let requests = stub.requests();
    let sizes: Vec<_> = requests.iter().map(|r| ids_in(r).len()).collect();
    assert!(requests.len() < msgs.len(), "fewer requests than messages: {sizes:?}");
    assert!(sizes.iter().any(|&n| n > 1), "messages went together: {sizes:?}");
    assert_eq!((requests[0].path.as_str(), sizes[0]), ("/email", 1));
    assert_eq!(sizes.iter().sum::<usize>(), msgs.len(), "no message in two requests: {sizes:?}");
    assert_eq!(taken_by_postmark(&requests), sorted_ids(&msgs), "each message taken exactly once");
    for r in &requests {
        assert_eq!((r.method.as_str(), r.header("x-postmark-server-token")), ("POST", Some("postmark-test-token")));
    }
    for r in requests.iter().filter(|r| r.path == "/email/batch") {
        for m in r.json().as_array().unwrap() {
            assert_eq!(m["MessageStream"], "shop-newsletters", "each message keeps its stream");
            assert_eq!(m["Subject"], "New in this week");
            assert_eq!(m["TrackLinks"], "None");
        }
    }
    for m in &msgs {
        assert!(matches!(world.event(m).await, Event::EmailSent(s) if s.recipient == m.to.email), "one email.sent each");
    }
}

#[tokio::test]
async fn a_recipient_postmark_keeps_inactive_in_a_batch_is_suppressed_alone_for_marketing() {
    let world = batching_world().await;
    let stub = world.stub("postmark");
    let inactive = Reply::Postmark { inactive: vec!["gone@example.com"] };
    stub.set_default(inactive.clone());
    let first = newsletter("first@example.com", "offers");
    let rest: Vec<_> = ["ana", "gone", "bo", "cy"].iter().map(|n| newsletter(&format!("{n}@example.com"), "offers")).collect();
    let gate = queue_behind_one(&world, &first, &rest, inactive).await;
    gate.add_permits(1);

    // 406: Postmark keeps the address inactive on the broadcast stream (it may have
    // unsubscribed there). Not a bounce of ours: recorded `suppressed`, and suppressed for
    // marketing only, so order mail to the same customer still goes.
    let gone = &rest[1];
    let response = world.outcome(gone, "suppressed").await;
    assert!(response.starts_with("postmark batch: ErrorCode 406: "), "{response}");
    eventually(WAIT, "the lane's suppression", || async {
        (world.suppression(gone).await == Some(("marketing".into(), format!("inactive at the provider: {response}")))).then_some(())
    })
    .await;
    for m in rest.iter().filter(|m| m.to.email != gone.to.email) {
        assert_eq!(world.outcome(m, "sent").await, format!("pm-{}", m.message_id.as_str()));
        assert!(matches!(world.event(m).await, Event::EmailSent(_)));
        assert_eq!(world.suppression(m).await, None, "{}: the refusal was someone else's", m.to.email);
    }
    assert!(world.events.for_message(&gone.message_id).is_empty(), "nothing was sent and nothing bounced");
    world.settled().await;

    let requests = stub.requests();
    let carrying: Vec<_> = requests.iter().filter(|r| ids_in(r).contains(&gone.message_id.as_str().to_owned())).collect();
    assert_eq!(carrying.len(), 1, "refused once, never retried");
    assert_eq!(carrying[0].path, "/email/batch");
    assert!(ids_in(carrying[0]).len() > 1, "in a batch with others");
    let mut sent = sorted_ids(&rest);
    sent.retain(|id| id != gone.message_id.as_str());
    sent.push(first.message_id.as_str().to_owned());
    sent.sort();
    assert_eq!(taken_by_postmark(&requests), sent);
    assert!(world.bus.dead_letters(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_postmark_batch_answered_5xx_or_429_is_retried_and_each_message_arrives_once() {
    let world = batching_world().await;
    let stub = world.stub("postmark");
    let mut everything = Vec::new();
    for (status, refusal) in [(503, answer(503, r#"{"ErrorCode":100,"Message":"Maintenance"}"#)), (429, rate_limited("postmark"))] {
        let msgs: Vec<_> = (0..8).map(|i| newsletter(&format!("reader{i}@example.com"), &format!("round-{status}"))).collect();
        let before = stub.requests().len();
        let gate = queue_behind_one(&world, &msgs[0], &msgs[1..], Reply::Postmark { inactive: vec![] }).await;
        // The request after the held one (the batch of the rest) is refused as a whole.
        stub.then(refusal);
        gate.add_permits(1);
        for m in &msgs {
            world.outcome(m, "sent").await;
        }
        world.settled().await;

        let requests = stub.requests().split_off(before);
        let refused: Vec<_> = requests.iter().filter(|r| r.answered.as_ref().is_some_and(|(s, _)| *s == status)).collect();
        assert_eq!(refused.len(), 1, "{status}");
        assert_eq!(refused[0].path, "/email/batch", "{status}");
        let retried = ids_in(refused[0]);
        assert!(retried.len() > 1, "{status}: a batch was refused");
        for m in msgs.iter().filter(|m| retried.contains(&m.message_id.as_str().to_owned())) {
            assert_eq!(world.failures(m).await, Some(1), "{status}: released and retried once");
            assert_eq!(world.suppression(m).await, None, "{status}: says nothing about the address");
        }
        assert_eq!(taken_by_postmark(&requests), sorted_ids(&msgs), "{status}: each message taken exactly once");
        everything.extend(msgs);
    }
    for m in &everything {
        assert!(matches!(world.event(m).await, Event::EmailSent(_)), "one email.sent each");
    }
    assert!(world.bus.dead_letters(10).await.unwrap().is_empty());
}

// ---------------------------------------------------------------- small helpers

/// The named parts of a multipart/form-data body: (name, content).
fn multipart(body: &str, boundary: &str) -> Vec<(String, String)> {
    body.split(&format!("--{boundary}"))
        .filter_map(|part| {
            let (head, content) = part.split_once("\r\n\r\n")?;
            let name = head.split("name=\"").nth(1)?.split('"').next()?.to_owned();
            Some((name, content.strip_suffix("\r\n").unwrap_or(content).to_owned()))
        })
        .collect()
}

fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).unwrap_or_else(|| panic!("not base64: {c}")) as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
