//! Send-rate limits across replicas: three senders in-process on one database and one NATS
//! (as a deployment runs them), delivering to the SMTP capture server, which records when
//! each message's final dot arrived. Checked from those arrival times: no whole second (the
//! limiter's windows) holds more messages than the tenant's limit, per account and per
//! recipient domain, and every message arrives exactly once. These are counts per window,
//! not speed: the test prints how many windows the messages took against the fewest
//! possible, which is how the redelivery delay after a refused slot was measured.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use bus::{Bus, BusSettings};
use contracts::{Cause, EmailAddress, Lane, Mailbox, MessageId, OutboundMessage, SPEC_VERSION, TenantId};
use kit::db::DbSettings;
use kit::settings::HttpSettings;
use sqlx::PgPool;
use testkit::smtp_capture::{CaptureConfig, CapturedMail, SmtpCapture};
use testkit::{NatsServer, Postgres, eventually, eventually_ok};

const WAIT: Duration = Duration::from_secs(90);
const REPLICAS: usize = 3;

struct World {
    _nats: NatsServer,
    _pg: Postgres,
    _tenants: tempfile::TempDir,
    smtp: SmtpCapture,
    bus: Bus,
    db: PgPool,
}

impl World {
    /// Three sender replicas serving the tenants `(id, [delivery] lines)`.
    async fn start(tenants: &[(&str, &str)]) -> Self {
        Self::start_with_clock(tenants, kit::clock::system()).await
    }

    /// The same, with the senders reading `clock` (a frozen clock never opens a new window).
    async fn start_with_clock(tenants: &[(&str, &str)], clock: kit::clock::SharedClock) -> Self {
        testkit::init_test_tracing();
        let nats = NatsServer::start().await.expect("nats-server");
        let pg = Postgres::start().await.expect("postgres");
        let smtp = SmtpCapture::start(CaptureConfig::default()).await.expect("smtp capture");
        let db_url = pg.create_database("sender").await.unwrap();
        let bus_settings = BusSettings {
            url: nats.url(),
            ack_wait: Duration::from_secs(5),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..BusSettings::default()
        };
        let bus = Bus::connect(&bus_settings, "test").await.unwrap();
        bus.ensure_topology().await.unwrap();

        let tenants_dir = tempfile::Builder::new().prefix("postflow-ratelimit-").tempdir().unwrap();
        let dir = tenants_dir.path().to_path_buf();
        for (id, delivery) in tenants {
            std::fs::create_dir_all(dir.join(id)).unwrap();
            let toml = format!(
                "name = \"{id}\"\n[sender]\nfrom = \"orders@{id}.example\"\nfrom_name = \"Shop\"\nphysical_address = \"1 Main St\"\n\
                 [brand]\nprimary_color = \"#0f766e\"\n[delivery]\nprovider = \"smtp\"\n{delivery}\n"
            );
            std::fs::write(dir.join(id).join("tenant.toml"), toml).unwrap();
        }
        for _ in 0..REPLICAS {
            let settings = sender::Settings {
                http: HttpSettings::on("127.0.0.1:0"),
                nats: bus_settings.clone(),
                database: DbSettings::new(db_url.clone()),
                smtp: sender::SmtpSettings {
                    host: smtp.addr().ip().to_string(),
                    port: smtp.addr().port(),
                    timeout: Duration::from_secs(10),
                    ..Default::default()
                },
                tenants_dir: dir.clone(),
                claim_lease: Duration::from_secs(30),
                ..Default::default()
            };
            let app = sender::Application::build_with_clock(settings, clock.clone()).await.expect("sender");
            tokio::spawn(app.run_until_stopped(std::future::pending()));
        }
        let db = PgPool::connect(&db_url).await.unwrap();
        Self { _nats: nats, _pg: pg, _tenants: tenants_dir, smtp, bus, db }
    }

    async fn send(&self, msg: &OutboundMessage) {
        self.bus.publish_outbound(msg).await.unwrap();
    }

    /// Waits until all `n` messages are recorded sent and acknowledged, then returns what
    /// the server received.
    async fn delivered(&self, n: i64) -> Vec<CapturedMail> {
        eventually_ok(WAIT, &format!("{n} messages sent"), || async {
            let sent: i64 = sqlx::query_scalar("select count(*) from deliveries where state = 'sent'").fetch_one(&self.db).await?;
            anyhow::ensure!(sent == n, "{sent} of {n} sent");
            Ok(())
        })
        .await;
        eventually(WAIT, "the send queue to drain", || async { (self.bus.stream_len("PF_SEND").await.ok()? == 0).then_some(()) }).await;
        self.smtp.messages()
    }
}

fn message(tenant: &str, to: &str, n: usize) -> OutboundMessage {
    OutboundMessage {
        spec: SPEC_VERSION,
        message_id: MessageId::derive(&[tenant, to, &n.to_string()]),
        tenant: TenantId::parse(tenant).unwrap(),
        lane: Lane::Transactional,
        from: Mailbox { name: None, email: EmailAddress::parse(&format!("orders@{tenant}.example")).unwrap() },
        reply_to: None,
        to: Mailbox { name: None, email: EmailAddress::parse(to).unwrap() },
        subject: format!("Your order #{n}"),
        html: "<p>Thanks for your order!</p>".into(),
        text: "Thanks for your order!".into(),
        headers: vec![],
        template: "order_confirmation".into(),
        topic: None,
        cause: Cause { flow: "test".into(), run_id: uuid::Uuid::nil(), step: 0, event_id: uuid::Uuid::nil() },
    }
}

/// Arrivals per whole unix second: how many, and the latest one's milliseconds into it.
fn per_second<'a>(mails: impl IntoIterator<Item = &'a CapturedMail>) -> BTreeMap<u64, (usize, u32)> {
    let mut windows = BTreeMap::new();
    for m in mails {
        let at = m.received_at.duration_since(UNIX_EPOCH).unwrap();
        let w = windows.entry(at.as_secs()).or_insert((0, 0));
        w.0 += 1;
        w.1 = w.1.max(at.subsec_millis());
    }
    windows
}

/// Each sent message arrived exactly once.
fn assert_once(received: &[CapturedMail], sent: &[OutboundMessage]) {
    let mut ids: Vec<String> = received.iter().map(|m| m.header("x-postflow-message-id").unwrap()).collect();
    ids.sort();
    let mut expected: Vec<String> = sent.iter().map(|m| m.message_id.to_string()).collect();
    expected.sort();
    assert_eq!(ids, expected, "every message exactly once");
}

/// Prints the windows used against the fewest possible (the measure of how promptly a
/// deferred message comes back), without asserting on it.
fn report(what: &str, windows: &BTreeMap<u64, (usize, u32)>, messages: usize, limit: usize) {
    let (first, last) = (windows.keys().next().unwrap(), windows.keys().last().unwrap());
    eprintln!(
        "{what}: {messages} messages at {limit}/s arrived over {} seconds ({} with mail; fewest possible {}); \
         (count, latest ms into the second) per second: {:?}",
        last - first + 1,
        windows.len(),
        messages.div_ceil(limit),
        windows.values().collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn three_replicas_together_keep_a_tenants_account_limit() {
    let world = World::start(&[("limited", "max_per_second = 5")]).await;
    let sent: Vec<OutboundMessage> = (0..60).map(|n| message("limited", &format!("customer{n}@example{}.com", n % 7), n)).collect();
    for msg in &sent {
        world.send(msg).await;
    }
    let received = world.delivered(60).await;

    assert_once(&received, &sent);
    let windows = per_second(&received);
    report("account limit", &windows, 60, 5);
    for (second, (n, _)) in &windows {
        assert!(*n <= 5, "{n} messages arrived in second {second}, over the limit of 5: {windows:?}");
    }
    let used: i64 = sqlx::query_scalar("select coalesce(max(used), 0)::bigint from rate_windows").fetch_one(&world.db).await.unwrap();
    assert!(used <= 5, "no window counted more than the limit: {used}");
}

#[tokio::test]
async fn each_recipient_domain_has_its_own_limit_and_tenants_do_not_share_one() {
    // `wide` may send 100/s in all but 3/s to each domain; `other` has an account limit
    // of 4 and shares the replicas (and the domains) with it.
    let world = World::start(&[("wide", "max_per_second = 100\nmax_per_second_per_domain = 3"), ("other", "max_per_second = 4")]).await;
    let wide: Vec<OutboundMessage> =
        (0..30).map(|n| message("wide", &format!("c{n}@{}", if n % 2 == 0 { "gmail.example" } else { "outlook.example" }), n)).collect();
    let other: Vec<OutboundMessage> = (0..12).map(|n| message("other", &format!("o{n}@gmail.example"), n)).collect();
    for msg in wide.iter().zip(&other).flat_map(|(a, b)| [a, b]).chain(&wide[other.len()..]) {
        world.send(msg).await;
    }
    let received = world.delivered(42).await;
    assert_once(&received, &[wide.clone(), other.clone()].concat());

    let from = |tenant: &str| {
        let want = format!("orders@{tenant}.example");
        move |m: &&CapturedMail| m.mail_from == want
    };
    for domain in ["gmail.example", "outlook.example"] {
        let to_domain = |m: &&CapturedMail| m.rcpt_to.iter().all(|r| r.ends_with(&format!("@{domain}")));
        let windows = per_second(received.iter().filter(from("wide")).filter(to_domain));
        report(&format!("wide to {domain}"), &windows, 15, 3);
        assert_eq!(windows.values().map(|(n, _)| n).sum::<usize>(), 15);
        for (second, (n, _)) in &windows {
            assert!(*n <= 3, "wide: {n} messages to {domain} in second {second}: {windows:?}");
        }
    }
    let windows = per_second(received.iter().filter(from("other")));
    report("other", &windows, 12, 4);
    for (second, (n, _)) in &windows {
        assert!(*n <= 4, "other: {n} messages in second {second}, over its own limit: {windows:?}");
    }
}

#[tokio::test]
async fn a_campaign_that_fills_every_window_still_leaves_room_for_order_confirmations() {
    // The clock stands still 0.1 s into a second: one window, which never ends, so what
    // each lane got out of it can be counted exactly.
    let clock = kit::clock::ManualClock::new(time::macros::datetime!(2026-11-24 10:00:00.1 UTC));
    let world = World::start_with_clock(&[("busy", "max_per_second = 10")], std::sync::Arc::new(clock.clone())).await;
    // Messages sent, by the lane's token in the send log ("tx" or "mkt").
    let count = |lane: &'static str| {
        let db = world.db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("select count(*) from deliveries where state = 'sent' and lane = $1")
                .bind(lane)
                .fetch_one(&db)
                .await
        }
    };

    // A campaign: 30 marketing messages. Marketing may fill the window up to 10 − 2.
    let campaign: Vec<OutboundMessage> =
        (0..30).map(|n| OutboundMessage { lane: Lane::Marketing, ..message("busy", &format!("fan{n}@example.com"), n) }).collect();
    for msg in &campaign {
        world.send(msg).await;
    }
    eventually_ok(WAIT, "marketing fills its share of the window", || async {
        let sent = count("mkt").await?;
        anyhow::ensure!(sent == 8, "{sent} marketing messages sent");
        Ok(())
    })
    .await;

    // Two order confirmations in the same (full, for marketing) window: both go now.
    for n in 100..102 {
        world.send(&message("busy", &format!("buyer{n}@example.com"), n)).await;
    }
    eventually_ok(WAIT, "the confirmations take the reserved slots", || async {
        let sent = count("tx").await?;
        anyhow::ensure!(sent == 2, "{sent} confirmations sent");
        Ok(())
    })
    .await;
    assert_eq!(count("mkt").await.unwrap(), 8, "marketing never took the reserve");
    let used: i64 = sqlx::query_scalar("select coalesce(max(used), 0)::bigint from rate_windows").fetch_one(&world.db).await.unwrap();
    assert_eq!(used, 10, "the window holds the whole limit and no more");

    // The next second: marketing again gets its share, and only that.
    clock.advance(time::Duration::seconds(1));
    eventually_ok(WAIT, "marketing's share of the next window", || async {
        let sent = count("mkt").await?;
        anyhow::ensure!(sent == 16, "{sent} marketing messages sent");
        Ok(())
    })
    .await;
}
