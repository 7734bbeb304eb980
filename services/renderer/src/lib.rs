//! Renderer: turns render requests into complete messages. It renders the tenant's
//! MiniJinja + MJML template with the brand kit and sender identity, rewrites links through
//! the tracker with signed tokens, adds the open pixel and the RFC 8058 one-click
//! unsubscribe headers, and derives the plain-text part. Stateless: templates come from
//! the tenant config, compiled once at start.
//!
//! Lanes: marketing mail gets the full footer (unsubscribe link, a "manage preferences"
//! link to the tracker's preferences page, physical address, privacy link) and carries its
//! topic on to the sender. Transactional mail gets neither link in its body — it is about
//! the recipient's order, not a subscription — but keeps the sender's identity (name,
//! physical address, privacy link). Both lanes keep the `List-Unsubscribe` and
//! `List-Unsubscribe-Post` headers: mailbox providers expect them from bulk senders, an
//! unsubscribe only ever suppresses the marketing lane (the sender's rule), and the
//! end-to-end test asserts them on the order confirmation. Only marketing mail is
//! `Precedence: bulk`.

pub mod render;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bus::{Bus, BusSettings, ConsumerSpec, Delivery, Feed, HandleError, Handler};
use contracts::{Lane, OutboundMessage, RenderRequest, SPEC_VERSION, TenantId};
use kit::Supervisor;
use kit::http::Readiness;
use kit::settings::{HttpSettings, ShutdownSettings};
use linktoken::{Action, Claims, Signer};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use telemetry::TelemetrySettings;
use tenancy::{Direction, Tenant, Tenants};
use tokio::net::TcpListener;

use render::{TemplateError, TemplateSet};

/// The HTTP routes this service answers (checked against `proto/openapi.yaml`).
pub const ROUTES: &[(&str, &str)] = &[("POST", "/v1/preview/{tenant}/{template}")];

/// Unknown top-level sections are ignored (one environment can serve every service);
/// unknown keys inside a section are errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub nats: BusSettings,
    pub tenants_dir: PathBuf,
    pub concurrency: usize,
    /// How many marketing messages render at once (CPU threads). 0 = one less than the
    /// machine's cores (at least 1), so a campaign never takes every core from the order
    /// confirmations rendering beside it.
    pub marketing_render_threads: usize,
    pub tracking: TrackingSettings,
    pub shutdown: ShutdownSettings,
    pub telemetry: TelemetrySettings,
}

/// `[tracking]`: where recipients' clicks and opens go, and the key that signs them.
/// The tracker must be configured with the same key.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackingSettings {
    /// Public base URL of the tracker, e.g. `https://t.example.com`.
    pub base_url: String,
    pub signing_key: SecretString,
}

impl Default for TrackingSettings {
    fn default() -> Self {
        Self { base_url: "http://127.0.0.1:8081".into(), signing_key: SecretString::from("change-me") }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::on("127.0.0.1:8084"),
            nats: BusSettings::default(),
            tenants_dir: "tenants".into(),
            concurrency: 32,
            marketing_render_threads: 0,
            tracking: TrackingSettings::default(),
            shutdown: ShutdownSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

/// Compiles every tenant's templates; errors name the template file and line.
pub fn compile_templates(tenants: &Tenants) -> Result<BTreeMap<TenantId, TemplateSet>, Vec<String>> {
    let mut sets = BTreeMap::new();
    let mut errors = Vec::new();
    for tenant in tenants.iter() {
        let sources = tenant.templates.iter().map(|t| (t.name.clone(), t.source.clone())).collect();
        match TemplateSet::new(sources) {
            Ok(set) => {
                let mut checked = Vec::new();
                for flow in &tenant.flows {
                    for step in &flow.steps {
                        let tenancy::FlowStep::Send { template, .. } = step else { continue };
                        // Every template a flow sends must exist.
                        if !set.names().any(|n| n == template) {
                            errors.push(format!("{}: template {template:?} does not exist", flow.file.display()));
                            continue;
                        }
                        // A built-in email renders with its sample data, so a tenant
                        // override (of it, the layout or a partial) that breaks it fails
                        // here, at load, rather than at the first send. Tenants without
                        // templates of their own use the built-ins as tested.
                        if tenant.templates.is_empty() || checked.contains(template) {
                            continue;
                        }
                        checked.push(template.clone());
                        let Some(data) = render::sample_data(template) else { continue };
                        let req = sample_request(tenant, flow.lane, template, data);
                        if let Err(e) = set.render(template, &context(tenant, &req, &Links::PLACEHOLDERS)) {
                            let file = template_file(tenant, &e).unwrap_or_else(|| flow.file.display().to_string());
                            errors.push(format!("{file}: {e} (rendering the sample data of {template:?})"));
                        }
                    }
                }
                sets.insert(tenant.id.clone(), set);
            }
            Err(e) => {
                errors.push(format!("{}: {e}", template_file(tenant, &e).unwrap_or_else(|| tenant.dir.display().to_string())));
            }
        }
    }
    if errors.is_empty() { Ok(sets) } else { Err(errors) }
}

/// The tenant's file of the template an error names, when it is the tenant's own.
fn template_file(tenant: &Tenant, e: &TemplateError) -> Option<String> {
    match e {
        TemplateError::Syntax { template, .. } | TemplateError::Render { template, .. } => {
            tenant.templates.iter().find(|t| &t.name == template).map(|t| t.file.display().to_string())
        }
        _ => None,
    }
}

/// A request for `template` with `data`, addressed to the tenant's own sender address
/// (previews and load-time checks).
fn sample_request(tenant: &Tenant, lane: Lane, template: &str, data: Value) -> RenderRequest {
    RenderRequest {
        spec: SPEC_VERSION,
        message_id: contracts::MessageId::derive(&["preview"]),
        tenant: tenant.id.clone(),
        lane,
        template: template.to_owned(),
        to: contracts::Mailbox { name: Some("Preview".into()), email: tenant.sender.from.email.clone() },
        locale: data.get("locale").and_then(Value::as_str).map(str::to_owned),
        topic: None,
        cause: contracts::Cause { flow: "preview".into(), run_id: Default::default(), step: 0, event_id: Default::default() },
        data,
    }
}

/// The recipient's links to the tracker that templates may show.
struct Links<'a> {
    unsubscribe: &'a str,
    preferences: &'a str,
}

impl Links<'static> {
    /// For previews and load-time checks: nothing is signed.
    const PLACEHOLDERS: Links<'static> = Links { unsubscribe: "#unsubscribe", preferences: "#preferences" };
}

/// The recipient's locale: the request's, else the tenant's.
fn locale(tenant: &Tenant, req: &RenderRequest) -> String {
    req.locale.clone().unwrap_or_else(|| tenant.locale.clone())
}

/// The template context: the request's data plus brand, sender, recipient and links.
/// `brand.locale` is the recipient's locale (else the tenant's) and picks the
/// language and number formats; `links.unsubscribe` and `links.preferences` are only set
/// for marketing mail.
fn context(tenant: &Tenant, req: &RenderRequest, links: &Links<'_>) -> Value {
    let locale = locale(tenant, req);
    let direction = tenant.brand.direction.unwrap_or_else(|| Direction::for_locale(&locale));
    let mut ctx = match &req.data {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    ctx.insert(
        "brand".into(),
        json!({
            "name": tenant.name,
            "logo_url": tenant.brand.logo_url,
            "primary_color": tenant.brand.primary_color,
            "text_color": tenant.brand.text_color,
            "background_color": tenant.brand.background_color,
            "font_family": tenant.brand.font_family,
            "direction": direction.as_str(),
            "locale": locale,
            "native_digits": tenant.brand.native_digits,
        }),
    );
    ctx.insert(
        "sender".into(),
        json!({
            "from_name": tenant.sender.from.name.clone().unwrap_or_else(|| tenant.name.clone()),
            "physical_address": tenant.sender.physical_address,
            "privacy_url": tenant.sender.privacy_url,
        }),
    );
    ctx.insert("recipient".into(), json!({ "name": req.to.name, "email": req.to.email }));
    let links = match req.lane {
        Lane::Marketing => json!({ "unsubscribe": links.unsubscribe, "preferences": links.preferences }),
        Lane::Transactional => json!({}),
    };
    ctx.insert("links".into(), links);
    Value::Object(ctx)
}

/// Renders one request into a message. Pure apart from signing.
pub struct Composer {
    tenants: Tenants,
    sets: BTreeMap<TenantId, TemplateSet>,
    signer: Signer,
    base_url: String,
}

impl Composer {
    pub fn new(tenants: Tenants, tracking: &TrackingSettings) -> anyhow::Result<Self> {
        let sets = compile_templates(&tenants).map_err(|e| anyhow::anyhow!("templates are invalid:\n{}", e.join("\n")))?;
        Ok(Self {
            tenants,
            sets,
            signer: Signer::new(tracking.signing_key.clone()),
            base_url: tracking.base_url.trim_end_matches('/').to_owned(),
        })
    }

    fn url(&self, path: &str, claims: &Claims) -> String {
        format!("{}/{path}/{}", self.base_url, self.signer.sign(claims))
    }

    pub fn compose(&self, req: &RenderRequest) -> Result<OutboundMessage, HandleError> {
        let Some(tenant) = self.tenants.get(&req.tenant) else {
            return Err(HandleError::transient(anyhow::anyhow!("tenant {} is not configured here", req.tenant)));
        };
        let Some(set) = self.sets.get(&req.tenant) else {
            return Err(HandleError::transient(anyhow::anyhow!("no templates for tenant {}", req.tenant)));
        };
        let claims = |action| Claims { tenant: req.tenant.clone(), message_id: req.message_id.clone(), action };
        let (e, l) = (req.to.email.clone(), Some(locale(tenant, req)));
        let unsubscribe = self.url("u", &claims(Action::Unsubscribe { e: e.clone(), l: l.clone() }));
        // Only marketing mail shows it (transactional mail has no topics to choose).
        let preferences = match req.lane {
            Lane::Marketing => self.url("p", &claims(Action::Preferences { e, l })),
            Lane::Transactional => String::new(),
        };
        let ctx = context(tenant, req, &Links { unsubscribe: &unsubscribe, preferences: &preferences });
        let rendered = set.render(&req.template, &ctx).map_err(HandleError::permanent)?;
        let mut html = rendered.html;
        if tenant.tracking.clicks {
            html = render::links::rewrite_links(&html, |url| {
                // The unsubscribe and preferences links are already ours; everything else
                // goes via /c/.
                (!url.starts_with(&self.base_url)).then(|| self.url("c", &claims(Action::Click { u: url.to_owned() })))
            });
        }
        if tenant.tracking.opens {
            html = render::links::insert_pixel(&html, &self.url("o", &claims(Action::Open)));
        }
        let text = render::text::html_to_text(&html);
        // Both lanes: see the module doc (an unsubscribe only suppresses marketing mail).
        let mut headers = vec![
            ("List-Unsubscribe".to_owned(), format!("<{unsubscribe}>")),
            ("List-Unsubscribe-Post".to_owned(), "List-Unsubscribe=One-Click".to_owned()),
        ];
        if req.lane == Lane::Marketing {
            headers.push(("Precedence".to_owned(), "bulk".to_owned()));
        }
        Ok(OutboundMessage {
            spec: SPEC_VERSION,
            message_id: req.message_id.clone(),
            tenant: req.tenant.clone(),
            lane: req.lane,
            from: tenant.sender.from.clone(),
            reply_to: tenant.sender.reply_to.clone(),
            to: req.to.clone(),
            subject: rendered.subject,
            html,
            text,
            headers,
            template: req.template.clone(),
            topic: req.topic.clone(),
            cause: req.cause.clone(),
        })
    }
}

struct Worker {
    composer: Arc<Composer>,
    bus: Bus,
    /// Caps marketing renders (CPU) so transactional ones always find a core.
    marketing: Arc<tokio::sync::Semaphore>,
}

/// The marketing render cap for `setting` on a machine with `cores` cores.
fn marketing_threads(setting: usize, cores: usize) -> usize {
    if setting > 0 { setting } else { cores.saturating_sub(1).max(1) }
}

impl Handler<RenderRequest> for Worker {
    async fn handle(&self, d: Delivery<RenderRequest>) -> Result<(), HandleError> {
        let req = d.body;
        let composer = self.composer.clone();
        let _cpu = match req.lane {
            Lane::Marketing => Some(self.marketing.clone().acquire_owned().await.map_err(HandleError::transient)?),
            Lane::Transactional => None,
        };
        // MJML rendering is CPU work: keep it off the async workers.
        let msg = tokio::task::spawn_blocking(move || composer.compose(&req))
            .await
            .map_err(HandleError::transient)??;
        self.bus.publish_outbound(&msg).await.map_err(HandleError::transient)?;
        metrics::counter!("renderer_messages_total", "lane" => msg.lane.token()).increment(1);
        tracing::info!(tenant = %msg.tenant, message_id = %msg.message_id, template = %msg.template, "rendered");
        Ok(())
    }
}

pub struct Application {
    listener: TcpListener,
    bus: Bus,
    composer: Arc<Composer>,
    settings: Settings,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        // Without secrets: this service uses none (provider, webhook and DKIM secrets are
        // the sender's and ingest's).
        let tenants =
            Tenants::load_dir_without_secrets(&settings.tenants_dir).map_err(|e| anyhow::anyhow!("tenant config is invalid:\n{e}"))?;
        let composer = Arc::new(Composer::new(tenants, &settings.tracking)?);
        let bus = Bus::connect(&settings.nats, "renderer").await?;
        bus.ensure_topology().await?;
        let listener = TcpListener::bind(settings.http.addr).await?;
        Ok(Self { listener, bus, composer, settings })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.settings.http.addr)
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let mut sup = Supervisor::new("renderer");
        let stop = sup.stop_token();
        let drain = self.settings.shutdown.drain_timeout;
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let marketing = Arc::new(tokio::sync::Semaphore::new(marketing_threads(self.settings.marketing_render_threads, cores)));
        let worker = Arc::new(Worker { composer: self.composer.clone(), bus: self.bus.clone(), marketing });
        // One consumer per lane: a marketing backlog never delays a transactional render.
        for lane in Lane::ALL {
            let spec = ConsumerSpec::new("renderer", Feed::Render(lane), self.settings.concurrency);
            let (bus, worker, stop) = (self.bus.clone(), worker.clone(), stop.clone());
            sup.spawn(spec.durable_name(), async move { bus.run_consumer::<RenderRequest, _>(spec, worker, stop, drain).await });
        }
        let router = Router::new()
            .route("/v1/preview/{tenant}/{template}", post(preview))
            .with_state(self.composer.clone())
            .merge(kit::http::ops_router(Readiness { bus: Some(self.bus.clone()), db: None, stop: stop.clone() }));
        sup.spawn("http", kit::http::serve(self.listener, router, stop));
        sup.run(shutdown, drain).await
    }
}

/// What a preview renders: the posted data, or — when it holds nothing but `locale` and
/// `lane` — the built-in sample data of the template with those two added.
fn preview_data(template: &str, posted: Value) -> Value {
    let only_settings = match &posted {
        Value::Object(m) => m.keys().all(|k| k == "locale" || k == "lane"),
        Value::Null => true,
        _ => false,
    };
    match render::sample_data(template) {
        Some(Value::Object(mut sample)) if only_settings => {
            if let Value::Object(settings) = posted {
                sample.extend(settings);
            }
            Value::Object(sample)
        }
        _ => posted,
    }
}

/// Renders a template with the posted JSON as data, without tracking, for people to look at.
/// The data may say `"locale": "fa"` and `"lane": "marketing"` (default transactional);
/// with nothing else in it, a built-in email shows its sample data.
async fn preview(
    State(composer): State<Arc<Composer>>,
    Path((tenant, template)): Path<(String, String)>,
    axum::Json(data): axum::Json<Value>,
) -> Response {
    let Some(t) = composer.tenants.find(&tenant) else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "unknown tenant"}))).into_response();
    };
    let Some(set) = composer.sets.get(&t.id) else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "unknown tenant"}))).into_response();
    };
    let lane = if data.get("lane").and_then(Value::as_str) == Some("marketing") { Lane::Marketing } else { Lane::Transactional };
    let req = sample_request(t, lane, &template, preview_data(&template, data));
    let ctx = context(t, &req, &Links::PLACEHOLDERS);
    match set.render(&template, &ctx) {
        Ok(r) => axum::Json(json!({ "subject": r.subject, "preheader": r.preheader, "html": r.html, "text": r.text })).into_response(),
        Err(TemplateError::NotFound { .. }) => (StatusCode::NOT_FOUND, axum::Json(json!({"error": "unknown template"}))).into_response(),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"error": e.to_string()}))).into_response(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    #[test]
    fn marketing_leaves_a_core_to_transactional_renders() {
        assert_eq!(super::marketing_threads(0, 2), 1);
        assert_eq!(super::marketing_threads(0, 8), 7);
        assert_eq!(super::marketing_threads(0, 1), 1, "a single core still renders campaigns");
        assert_eq!(super::marketing_threads(3, 2), 3, "an explicit setting wins");
    }

    use contracts::{Cause, EmailAddress, Mailbox, MessageId};
    use tenancy::{Brand, CrossSell, Delivery, SenderIdentity, ShipmentSettings, Tracking};

    use super::*;

    fn tenant(locale: &str, native_digits: bool) -> Tenant {
        Tenant {
            id: TenantId::parse("northwind").unwrap(),
            name: "Northwind Outfitters".into(),
            locale: locale.into(),
            sender: SenderIdentity {
                from: Mailbox { name: None, email: EmailAddress::parse("orders@northwind.example").unwrap() },
                reply_to: None,
                physical_address: "100 Main Street\nPortland, OR 97201".into(),
                privacy_url: Some("https://northwind.example/privacy".into()),
            },
            brand: Brand {
                logo_url: Some("https://cdn.northwind.example/logo.png".into()),
                primary_color: "#0f766e".into(),
                text_color: "#1f2937".into(),
                background_color: "#f3f4f6".into(),
                font_family: "Helvetica, Arial, sans-serif".into(),
                direction: None,
                native_digits,
            },
            tracking: Tracking { opens: true, clicks: true },
            sources: BTreeMap::new(),
            flows: Vec::new(),
            delivery: Delivery::default(),
            dkim: None,
            offers: BTreeMap::new(),
            cross_sell: CrossSell::default(),
            shipments: ShipmentSettings::default(),
            templates: Vec::new(),
            topics: tenancy::Topic::defaults(),
            dir: "tenants/northwind".into(),
        }
    }

    fn composer(tenant: Tenant) -> Composer {
        let tracking = TrackingSettings { base_url: "https://t.northwind.example".into(), signing_key: SecretString::from("k") };
        Composer::new(Tenants::from_tenants([tenant]), &tracking).unwrap()
    }

    fn request(template: &str, lane: Lane, locale: Option<&str>) -> RenderRequest {
        let raw = match template {
            "shipping_confirmation" => include_str!("../samples/shipping_confirmation.json"),
            "review_request" => include_str!("../samples/review_request.json"),
            other => panic!("no sample for {other}"),
        };
        RenderRequest {
            spec: SPEC_VERSION,
            message_id: MessageId::derive(&["test", template]),
            tenant: TenantId::parse("northwind").unwrap(),
            lane,
            template: template.into(),
            to: Mailbox { name: Some("Ana Silva".into()), email: EmailAddress::parse("ana.silva@example.com").unwrap() },
            locale: locale.map(str::to_owned),
            topic: None,
            cause: Cause { flow: "test".into(), run_id: Default::default(), step: 0, event_id: Default::default() },
            data: serde_json::from_str(raw).unwrap(),
        }
    }

    fn header<'a>(msg: &'a OutboundMessage, name: &str) -> Option<&'a str> {
        msg.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn transactional_mail_has_no_unsubscribe_link_but_keeps_the_sender_identity() {
        let c = composer(tenant("en", false));
        let msg = c.compose(&request("shipping_confirmation", Lane::Transactional, None)).unwrap();
        assert!(!msg.html.contains("https://t.northwind.example/u/"), "no unsubscribe link in the body");
        assert!(!msg.html.contains("https://t.northwind.example/p/"), "no preferences link: no topics to choose");
        assert!(!msg.text.contains("Manage preferences"), "{}", msg.text);
        assert!(!msg.text.contains("Unsubscribe"), "{}", msg.text);
        assert!(msg.text.contains("Northwind Outfitters\n100 Main Street, Portland, OR 97201"), "{}", msg.text);
        assert!(msg.text.contains("Privacy policy (https://t.northwind.example/c/"), "{}", msg.text);
        // The headers stay on both lanes (an unsubscribe only suppresses marketing mail).
        assert!(header(&msg, "List-Unsubscribe").is_some_and(|v| v.starts_with("<https://t.northwind.example/u/")));
        assert_eq!(header(&msg, "List-Unsubscribe-Post"), Some("List-Unsubscribe=One-Click"));
        assert_eq!(header(&msg, "Precedence"), None);
        // Links are tracked, the text part shows the tracked tracking link.
        assert!(msg.text.contains("Track your parcel (https://t.northwind.example/c/"), "{}", msg.text);
        assert!(!msg.html.contains("href=\"https://www.ups.com/"));
    }

    /// The URLs in `text` that start with `prefix`.
    fn urls<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.match_indices(prefix).map(|(i, _)| &text[i..i + text[i..].find([')', '"', ' ']).unwrap_or(text.len() - i)]).collect()
    }

    #[test]
    fn marketing_mail_has_the_full_footer() {
        let c = composer(tenant("en", false));
        let mut req = request("review_request", Lane::Marketing, None);
        req.topic = Some("offers".into());
        let msg = c.compose(&req).unwrap();
        assert_eq!(msg.topic.as_deref(), Some("offers"), "the topic travels on to the sender");
        let unsubscribe = header(&msg, "List-Unsubscribe").unwrap().trim_matches(['<', '>']).to_owned();
        assert!(msg.html.contains(&format!("href=\"{unsubscribe}\"")), "the footer links the unsubscribe URL untracked");
        assert!(msg.text.contains(&format!("Unsubscribe ({unsubscribe})")), "{}", msg.text);
        // The preferences link sits next to it, untracked, and is a signed token for the
        // recipient in their locale.
        let preferences = urls(&msg.text, "https://t.northwind.example/p/");
        assert_eq!(preferences.len(), 1, "{}", msg.text);
        assert!(msg.text.contains(&format!("Unsubscribe ({unsubscribe}) · Manage preferences ({})", preferences[0])), "{}", msg.text);
        assert!(msg.html.contains(&format!("href=\"{}\"", preferences[0])));
        let token = preferences[0].rsplit('/').next().unwrap();
        let claims = Signer::new(SecretString::from("k")).verify(token).unwrap();
        assert_eq!(
            claims.action,
            Action::Preferences { e: EmailAddress::parse("ana.silva@example.com").unwrap(), l: Some("en".into()) }
        );
        assert_eq!(claims.message_id, req.message_id);
        assert!(msg.text.contains("100 Main Street, Portland, OR 97201"));
        assert!(msg.text.contains("Privacy policy ("));
        assert_eq!(header(&msg, "Precedence"), Some("bulk"));
    }

    #[test]
    fn recipient_locale_and_native_digits_come_from_request_and_brand() {
        let c = composer(tenant("en", true));
        let fa = c.compose(&request("review_request", Lane::Marketing, Some("fa-IR"))).unwrap();
        assert!(fa.html.contains(r#"lang="fa-IR" dir="rtl""#));
        assert!(fa.subject.contains("راضی"), "{}", fa.subject);
        assert!(fa.text.contains("۱۵٪"), "{}", fa.text);
        assert!(fa.text.contains("لغو اشتراک ("), "{}", fa.text);
        assert!(fa.text.contains("مدیریت تنظیمات ایمیل (https://t.northwind.example/p/"), "{}", fa.text);
        // Unknown languages fall back to English; the tenant's locale fills in a missing one.
        let pt = c.compose(&request("review_request", Lane::Transactional, Some("pt-BR"))).unwrap();
        assert!(pt.subject.starts_with("How do you like"), "{}", pt.subject);
        let c = composer(tenant("ar", false));
        let ar = c.compose(&request("review_request", Lane::Transactional, None)).unwrap();
        assert!(ar.html.contains(r#"lang="ar" dir="rtl""#));
        assert!(ar.text.contains("15%"), "ASCII digits when native_digits is off: {}", ar.text);
    }

    /// A tenant directory `northwind` with a minimal tenant.toml plus `files`, loaded.
    fn load(test: &str, files: &[(&str, &str)]) -> Tenants {
        let dir = std::env::temp_dir().join(format!("postflow-renderer-{test}-{}", std::process::id()));
        let tenant_dir = dir.join("northwind");
        std::fs::create_dir_all(tenant_dir.join("templates/partials")).unwrap();
        let mut all = vec![(
            "tenant.toml",
            "name = \"Northwind\"\nlocale = \"en\"\n[sender]\nfrom = \"orders@northwind.example\"\nphysical_address = \"100 Main Street\"\n",
        )];
        all.extend_from_slice(files);
        for (path, text) in all {
            std::fs::write(tenant_dir.join(path), text).unwrap();
        }
        let loaded = Tenants::load_dir(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        loaded.unwrap()
    }

    #[test]
    fn every_builtin_flow_template_exists() {
        let tenants = load("builtin", &[]);
        let flows: Vec<_> = tenants.iter().flat_map(|t| t.flows.iter()).collect();
        assert!(flows.len() >= 6, "the built-in journey is loaded");
        compile_templates(&tenants).unwrap();
    }

    #[test]
    fn a_tenant_override_that_breaks_a_builtin_email_fails_at_load() {
        let broken = r#"{% extends "layout" %}{% block subject %}Update {{ shipment.tracking_numbr }}{% endblock %}"#;
        let tenants = load("override", &[("templates/shipment_update.mjml", broken)]);
        let errors = compile_templates(&tenants).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("templates/shipment_update.mjml"), "{}", errors[0]);
        assert!(errors[0].contains("shipment.tracking_numbr"), "{}", errors[0]);
        assert!(errors[0].contains("sample data of \"shipment_update\""), "{}", errors[0]);

        // A partial the built-ins import, overridden without a macro they call.
        let tenants = load("partial", &[("templates/partials/offer.mjml", "{% macro other() %}{% endmacro %}")]);
        let errors = compile_templates(&tenants).unwrap_err();
        assert!(errors.iter().any(|e| e.contains("offer_block")), "{errors:?}");

        // A working override loads.
        let fine = r#"{% extends "layout" %}{% block subject %}Update {{ shipment.tracking_number }}{% endblock %}"#;
        compile_templates(&load("fine", &[("templates/shipment_update.mjml", fine)])).unwrap();
    }

    #[test]
    fn previews_fall_back_to_the_sample_data() {
        let data = preview_data("shipment_update", json!({ "locale": "fa" }));
        assert_eq!(data["locale"], "fa");
        assert_eq!(data["shipment"]["tracking_number"], "1Z999AA10123456784");
        let own = json!({ "order": { "number": "#7" } });
        assert_eq!(preview_data("shipment_update", own.clone()), own);
        assert_eq!(preview_data("winback", json!({})), json!({}));
    }
}
