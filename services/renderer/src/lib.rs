//! Renderer: turns render requests into complete messages. It renders the tenant's
//! MiniJinja + MJML template with the brand kit and sender identity, rewrites links through
//! the tracker with signed tokens, adds the open pixel and the RFC 8058 one-click
//! unsubscribe headers, and derives the plain-text part. Stateless: templates come from
//! the tenant config, compiled once at start.

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
                // Every template a flow sends must exist.
                for flow in &tenant.flows {
                    for step in &flow.steps {
                        if let tenancy::FlowStep::Send { template, .. } = step
                            && !set.names().any(|n| n == template) {
                                errors.push(format!("{}: template {template:?} does not exist", flow.file.display()));
                            }
                    }
                }
                sets.insert(tenant.id.clone(), set);
            }
            Err(e) => {
                let file = match &e {
                    TemplateError::Syntax { template, .. } | TemplateError::Render { template, .. } => tenant
                        .templates
                        .iter()
                        .find(|t| &t.name == template)
                        .map(|t| t.file.display().to_string()),
                    _ => None,
                };
                errors.push(format!("{}: {e}", file.unwrap_or_else(|| tenant.dir.display().to_string())));
            }
        }
    }
    if errors.is_empty() { Ok(sets) } else { Err(errors) }
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

    /// The template context: the request's data plus brand, sender, recipient and links.
    fn context(&self, tenant: &Tenant, req: &RenderRequest, unsubscribe: &str) -> Value {
        let locale = req.locale.clone().unwrap_or_else(|| tenant.locale.clone());
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
        ctx.insert("links".into(), json!({ "unsubscribe": unsubscribe }));
        Value::Object(ctx)
    }

    pub fn compose(&self, req: &RenderRequest) -> Result<OutboundMessage, HandleError> {
        let Some(tenant) = self.tenants.get(&req.tenant) else {
            return Err(HandleError::transient(anyhow::anyhow!("tenant {} is not configured here", req.tenant)));
        };
        let Some(set) = self.sets.get(&req.tenant) else {
            return Err(HandleError::transient(anyhow::anyhow!("no templates for tenant {}", req.tenant)));
        };
        let claims = |action| Claims { tenant: req.tenant.clone(), message_id: req.message_id.clone(), action };
        let unsubscribe = self.url("u", &claims(Action::Unsubscribe { e: req.to.email.clone() }));
        let ctx = self.context(tenant, req, &unsubscribe);
        let rendered = set.render(&req.template, &ctx).map_err(HandleError::permanent)?;
        let mut html = rendered.html;
        if tenant.tracking.clicks {
            html = render::links::rewrite_links(&html, |url| {
                // The unsubscribe link is already ours; everything else goes via /c/.
                (!url.starts_with(&self.base_url)).then(|| self.url("c", &claims(Action::Click { u: url.to_owned() })))
            });
        }
        if tenant.tracking.opens {
            html = render::links::insert_pixel(&html, &self.url("o", &claims(Action::Open)));
        }
        let text = render::text::html_to_text(&html);
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
            cause: req.cause.clone(),
        })
    }
}

struct Worker {
    composer: Arc<Composer>,
    bus: Bus,
}

impl Handler<RenderRequest> for Worker {
    async fn handle(&self, d: Delivery<RenderRequest>) -> Result<(), HandleError> {
        let req = d.body;
        let composer = self.composer.clone();
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
        let tenants = Tenants::load_dir(&settings.tenants_dir).map_err(|e| anyhow::anyhow!("tenant config is invalid:\n{e}"))?;
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
        let worker = Arc::new(Worker { composer: self.composer.clone(), bus: self.bus.clone() });
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

/// Renders a template with the posted JSON as data, without tracking, for people to look at.
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
    let req = RenderRequest {
        spec: SPEC_VERSION,
        message_id: contracts::MessageId::derive(&["preview"]),
        tenant: t.id.clone(),
        lane: Lane::Transactional,
        template: template.clone(),
        to: contracts::Mailbox { name: Some("Preview".into()), email: t.sender.from.email.clone() },
        locale: data.get("locale").and_then(Value::as_str).map(str::to_owned),
        cause: contracts::Cause { flow: "preview".into(), run_id: Default::default(), step: 0, event_id: Default::default() },
        data,
    };
    let ctx = composer.context(t, &req, "#unsubscribe");
    match set.render(&template, &ctx) {
        Ok(r) => axum::Json(json!({ "subject": r.subject, "preheader": r.preheader, "html": r.html, "text": r.text })).into_response(),
        Err(TemplateError::NotFound { .. }) => (StatusCode::NOT_FOUND, axum::Json(json!({"error": "unknown template"}))).into_response(),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"error": e.to_string()}))).into_response(),
    }
}
