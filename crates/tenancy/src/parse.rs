//! Reading a tenants directory: raw TOML shapes, then validation into the model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use contracts::{Currency, EmailAddress, EventKind, Lane, Money, TenantId};
use serde::Deserialize;
use toml::Spanned;

use crate::model::{
    self, Brand, Condition, CrossSell, Delivery, Direction, Dkim, Flow, FlowStep, Offer, OfferExpiry, OfferKind,
    ProductPick, Provider, Secret, SenderIdentity, ShipmentSettings, SourceSecrets, Tenant, TemplateSource,
    Topic, Tracking,
};
use crate::{ConfigError, ConfigErrors, Tenants};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: String,
    #[serde(default = "default_locale")]
    locale: Spanned<String>,
    sender: RawSender,
    #[serde(default)]
    brand: RawBrand,
    #[serde(default)]
    tracking: RawTracking,
    #[serde(default)]
    sources: BTreeMap<String, RawSource>,
    #[serde(default)]
    delivery: Option<RawDelivery>,
    #[serde(default)]
    dkim: Option<RawDkim>,
    #[serde(default)]
    offers: BTreeMap<String, RawOffer>,
    #[serde(default)]
    cross_sell: Option<RawCrossSell>,
    #[serde(default)]
    shipments: Option<RawShipments>,
    #[serde(default)]
    flows: Option<RawFlowSwitches>,
    #[serde(default)]
    preferences: Option<RawPreferences>,
}

/// `[preferences]`: the marketing topics of the preferences page.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreferences {
    topics: Spanned<Vec<RawTopic>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopic {
    id: Spanned<String>,
    label: Spanned<BTreeMap<String, Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    provider: Spanned<String>,
    endpoint: Option<Spanned<String>>,
    api_key: Option<Spanned<String>>,
    region: Option<String>,
    domain: Option<String>,
    access_key_id: Option<Spanned<String>>,
    secret_access_key: Option<Spanned<String>>,
    max_per_second: Option<u32>,
    max_per_second_per_domain: Option<u32>,
    webhook_secret: Option<Spanned<String>>,
    bounce_address: Option<Spanned<String>>,
    transactional_stream: Option<Spanned<String>>,
    marketing_stream: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDkim {
    selector: Spanned<String>,
    domain: Option<Spanned<String>>,
    private_key: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOffer {
    kind: Spanned<String>,
    code: Spanned<String>,
    percent_off: Option<Spanned<i64>>,
    description: Option<String>,
    expires: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCrossSell {
    #[serde(default = "yes")]
    enabled: bool,
    count: Option<Spanned<i64>>,
    #[serde(default)]
    picks: Vec<RawPick>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPick {
    title: String,
    url: Spanned<String>,
    image_url: Option<Spanned<String>>,
    price: Option<Spanned<String>>,
    currency: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShipments {
    burst_window: Option<Spanned<String>>,
    stalled_after: Option<Spanned<String>>,
    link_wait: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlowSwitches {
    /// Whether the built-in journey flows apply to this tenant.
    #[serde(default = "yes")]
    defaults: bool,
    /// Built-in flows switched off by id.
    #[serde(default)]
    disabled: Vec<Spanned<String>>,
}

fn default_locale() -> Spanned<String> {
    Spanned::new(0..0, "en".to_owned())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSender {
    from: Spanned<String>,
    from_name: Option<String>,
    reply_to: Option<Spanned<String>>,
    physical_address: Spanned<String>,
    privacy_url: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBrand {
    logo_url: Option<Spanned<String>>,
    primary_color: Option<Spanned<String>>,
    text_color: Option<Spanned<String>>,
    background_color: Option<Spanned<String>>,
    font_family: Option<String>,
    direction: Option<Spanned<String>>,
    #[serde(default)]
    native_digits: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTracking {
    #[serde(default = "yes")]
    opens: bool,
    #[serde(default = "yes")]
    clicks: bool,
}

impl Default for RawTracking {
    fn default() -> Self {
        Self { opens: true, clicks: true }
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    secrets: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    id: Option<String>,
    trigger: Spanned<String>,
    #[serde(default = "default_lane")]
    lane: Spanned<String>,
    #[serde(default = "yes")]
    enabled: bool,
    when: Option<Spanned<String>>,
    #[serde(default)]
    exit_on: Vec<Spanned<String>>,
    topic: Option<Spanned<String>>,
    steps: Spanned<Vec<RawStep>>,
}

fn default_lane() -> Spanned<String> {
    Spanned::new(0..0, "transactional".to_owned())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    send: Option<Spanned<String>>,
    wait: Option<Spanned<String>>,
    offer: Option<Spanned<String>>,
    when: Option<Spanned<String>>,
    topic: Option<Spanned<String>>,
}

/// Collects errors for one file.
struct FileCtx<'a> {
    path: &'a Path,
    source: &'a str,
    errors: &'a mut Vec<ConfigError>,
}

impl FileCtx<'_> {
    fn err<T>(&mut self, span: &Spanned<T>, message: impl Into<String>) {
        let e = ConfigError::at(self.path, self.source, span.span().start, message);
        self.errors.push(e);
    }
}

/// What loading does with the secrets in tenant.toml (`env:NAME` or literal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Secrets {
    /// Read each `env:NAME` and keep every value.
    Resolve,
    /// Check how each is written, but read no environment variable and keep no value.
    Leave,
}

pub(crate) fn load_root(root: &Path, secrets: Secrets) -> Result<Tenants, ConfigErrors> {
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) => return Err(ConfigErrors(vec![ConfigError::whole_file(root, format!("cannot read tenants directory: {e}"))])),
    };
    // Hidden entries are not tenants (a mounted Kubernetes ConfigMap has `..data` links).
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
        .collect();
    dirs.sort();
    let mut tenants = Vec::new();
    for dir in dirs {
        if let Some(t) = load_tenant(&dir, secrets, &mut errors) {
            tenants.push(t);
        }
    }
    if errors.is_empty() { Ok(Tenants::from_tenants(tenants)) } else { Err(ConfigErrors(errors)) }
}

fn read(path: &Path, errors: &mut Vec<ConfigError>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) => {
            errors.push(ConfigError::whole_file(path, format!("cannot read: {e}")));
            None
        }
    }
}

fn toml_error(path: &Path, source: &str, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map_or(0, |s| s.start);
    // toml's message repeats the position and a snippet; keep its first line.
    let message = e.message().lines().next().unwrap_or("invalid toml").to_owned();
    ConfigError::at(path, source, offset, message)
}

fn load_tenant(dir: &Path, secrets: Secrets, errors: &mut Vec<ConfigError>) -> Option<Tenant> {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let id = match TenantId::parse(name) {
        Ok(id) => id,
        Err(e) => {
            errors.push(ConfigError::whole_file(dir, format!("directory name is not a tenant id: {e}")));
            return None;
        }
    };
    let path = dir.join("tenant.toml");
    let source = read(&path, errors)?;
    let raw: RawTenant = match toml::from_str(&source) {
        Ok(r) => r,
        Err(e) => {
            errors.push(toml_error(&path, &source, &e));
            return None;
        }
    };
    let before = errors.len();
    let mut cx = FileCtx { path: &path, source: &source, errors };

    let from = parse_email(&mut cx, &raw.sender.from);
    let reply_to = raw.sender.reply_to.as_ref().and_then(|r| parse_email(&mut cx, r));
    if raw.sender.physical_address.get_ref().trim().is_empty() {
        cx.err(&raw.sender.physical_address, "physical_address must not be empty (required in every email by CAN-SPAM)");
    }
    let privacy_url = raw.sender.privacy_url.as_ref().and_then(|u| check_url(&mut cx, u));
    let color = |cx: &mut FileCtx, c: &Option<Spanned<String>>, default: &str| match c {
        None => default.to_owned(),
        Some(c) if is_hex_color(c.get_ref()) => c.get_ref().clone(),
        Some(c) => {
            cx.err(c, format!("{:?} is not a colour like #1a2b3c", c.get_ref()));
            default.to_owned()
        }
    };
    let brand = Brand {
        logo_url: raw.brand.logo_url.as_ref().and_then(|u| check_url(&mut cx, u)),
        primary_color: color(&mut cx, &raw.brand.primary_color, "#111827"),
        text_color: color(&mut cx, &raw.brand.text_color, "#1f2937"),
        background_color: color(&mut cx, &raw.brand.background_color, "#f3f4f6"),
        font_family: raw.brand.font_family.clone().unwrap_or_else(|| "Helvetica, Arial, sans-serif".into()),
        direction: match raw.brand.direction.as_ref() {
            None => None,
            Some(d) => match d.get_ref().as_str() {
                "ltr" => Some(Direction::Ltr),
                "rtl" => Some(Direction::Rtl),
                "auto" => None,
                _ => {
                    cx.err(d, "direction must be \"ltr\", \"rtl\" or \"auto\"");
                    None
                }
            },
        },
        native_digits: raw.brand.native_digits,
    };
    let mut sources = BTreeMap::new();
    for (name, src) in &raw.sources {
        if src.secrets.get_ref().is_empty() {
            cx.err(&src.secrets, format!("source {name} needs at least one secret"));
        }
        let values = src.secrets.get_ref().iter().filter_map(|s| secret(&mut cx, s, secrets, |_| None)).collect();
        sources.insert(name.clone(), SourceSecrets { secrets: values });
    }
    if raw.locale.get_ref().trim().is_empty() {
        cx.err(&raw.locale, "locale must not be empty");
    }

    let delivery = raw.delivery.as_ref().map(|d| parse_delivery(&mut cx, d, secrets)).unwrap_or_default();
    let dkim = raw.dkim.as_ref().and_then(|d| parse_dkim(&mut cx, d, &from, secrets));
    let offers = raw.offers.iter().filter_map(|(name, o)| parse_offer(&mut cx, name, o).map(|o| (name.clone(), o))).collect();
    let cross_sell = raw.cross_sell.as_ref().map(|c| parse_cross_sell(&mut cx, c)).unwrap_or_default();
    let shipments = raw.shipments.as_ref().map(|s| parse_shipments(&mut cx, s)).unwrap_or_default();
    let topics = raw.preferences.as_ref().map_or_else(Topic::defaults, |p| parse_topics(&mut cx, &p.topics));
    let switches = raw.flows.as_ref();
    let mut builtin = Vec::new();
    if switches.is_none_or(|s| s.defaults) {
        builtin = builtin_flows(cx.errors);
        for off in switches.map(|s| s.disabled.as_slice()).unwrap_or_default() {
            match builtin.iter_mut().find(|f| &f.id == off.get_ref()) {
                Some(f) => f.enabled = false,
                None => {
                    let known: Vec<&str> = builtin.iter().map(|f| f.id.as_str()).collect();
                    cx.err(off, format!("no built-in flow {:?}; built-in: {}", off.get_ref(), known.join(", ")));
                }
            }
        }
    }

    let templates = load_templates(&dir.join("templates"), cx.errors);
    let own = load_flows(&dir.join("flows"), &topics, cx.errors);
    // The tenant's file wins over the built-in flow of the same id.
    let mut flows: Vec<Flow> = builtin.into_iter().filter(|b| !own.iter().any(|f| f.id == b.id)).collect();
    flows.extend(own);

    if errors.len() > before {
        return None;
    }
    Some(Tenant {
        id,
        name: raw.name,
        locale: raw.locale.into_inner(),
        sender: SenderIdentity {
            from: model::mailbox(raw.sender.from_name, from?),
            reply_to: reply_to.map(|e| model::mailbox(None, e)),
            physical_address: raw.sender.physical_address.into_inner(),
            privacy_url,
        },
        brand,
        tracking: Tracking { opens: raw.tracking.opens, clicks: raw.tracking.clicks },
        sources,
        flows,
        delivery,
        dkim,
        offers,
        cross_sell,
        shipments,
        templates,
        topics,
        dir: dir.to_path_buf(),
    })
}

fn parse_email(cx: &mut FileCtx, s: &Spanned<String>) -> Option<EmailAddress> {
    match EmailAddress::parse(s.get_ref()) {
        Ok(e) => Some(e),
        Err(e) => {
            cx.err(s, e.to_string());
            None
        }
    }
}

fn check_url(cx: &mut FileCtx, s: &Spanned<String>) -> Option<String> {
    let v = s.get_ref();
    if v.starts_with("https://") || v.starts_with("http://") {
        Some(v.clone())
    } else {
        cx.err(s, format!("{v:?} is not an http(s) url"));
        None
    }
}

fn is_hex_color(s: &str) -> bool {
    let hex = s.strip_prefix('#').unwrap_or("");
    (hex.len() == 3 || hex.len() == 6) && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

fn sorted_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

fn load_templates(dir: &Path, errors: &mut Vec<ConfigError>) -> Vec<TemplateSource> {
    let mut out = Vec::new();
    for sub in ["", "partials"] {
        let d = if sub.is_empty() { dir.to_path_buf() } else { dir.join(sub) };
        for file in sorted_files(&d, "mjml") {
            let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
            let name = if sub.is_empty() { stem } else { format!("{sub}/{stem}") };
            if let Some(source) = read(&file, errors) {
                out.push(TemplateSource { name, source, file });
            }
        }
    }
    out
}

/// The journey every tenant gets unless it switches it off: `defaults/flows/*.toml`.
pub(crate) const BUILTIN_FLOWS: &[(&str, &str)] = &[
    ("order-confirmation.toml", include_str!("../defaults/flows/order-confirmation.toml")),
    ("shipping-confirmation.toml", include_str!("../defaults/flows/shipping-confirmation.toml")),
    ("shipment-status.toml", include_str!("../defaults/flows/shipment-status.toml")),
    ("delivered.toml", include_str!("../defaults/flows/delivered.toml")),
    ("shipment-stalled.toml", include_str!("../defaults/flows/shipment-stalled.toml")),
    ("order-cancelled.toml", include_str!("../defaults/flows/order-cancelled.toml")),
];

fn builtin_flows(errors: &mut Vec<ConfigError>) -> Vec<Flow> {
    let mut flows = Vec::new();
    for (name, source) in BUILTIN_FLOWS {
        let path = Path::new("<built-in>/flows").join(name);
        if let Some(mut flow) = parse_flow(&path, source, &flows, &[], errors) {
            flow.builtin = true;
            flows.push(flow);
        }
    }
    flows
}

fn load_flows(dir: &Path, topics: &[Topic], errors: &mut Vec<ConfigError>) -> Vec<Flow> {
    let mut flows: Vec<Flow> = Vec::new();
    for path in sorted_files(dir, "toml") {
        let Some(source) = read(&path, errors) else { continue };
        if let Some(flow) = parse_flow(&path, &source, &flows, topics, errors) {
            flows.push(flow);
        }
    }
    flows
}

/// The names a condition may read.
pub const CONDITION_VARIABLES: &[&str] = &["event", "order", "customer"];

fn parse_condition(cx: &mut FileCtx, raw: &Spanned<String>) -> Option<Condition> {
    let env = minijinja::Environment::new();
    let expr = match env.compile_expression(raw.get_ref()) {
        Ok(e) => e,
        Err(e) => {
            cx.err(raw, format!("invalid condition: {}", e.detail().unwrap_or("syntax error")));
            return None;
        }
    };
    let mut unknown: Vec<String> =
        expr.undeclared_variables(false).into_iter().filter(|v| !CONDITION_VARIABLES.contains(&v.as_str())).collect();
    if !unknown.is_empty() {
        unknown.sort();
        cx.err(raw, format!("unknown variable {} in condition; known: {}", unknown.join(", "), CONDITION_VARIABLES.join(", ")));
        return None;
    }
    let at = ConfigError::at(cx.path, cx.source, raw.span().start, "").location();
    Some(Condition { expr: raw.get_ref().clone(), at })
}

/// A flow file. `topics` are the tenant's marketing topics, which a flow or step may name.
fn parse_flow(path: &Path, source: &str, earlier: &[Flow], topics: &[Topic], errors: &mut Vec<ConfigError>) -> Option<Flow> {
    let raw: RawFlow = match toml::from_str(source) {
        Ok(r) => r,
        Err(e) => {
            errors.push(toml_error(path, source, &e));
            return None;
        }
    };
    let before = errors.len();
    let mut cx = FileCtx { path, source, errors };
    let id = raw.id.clone().unwrap_or_else(|| path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned());
    let trigger = event_kind(&mut cx, &raw.trigger, "trigger");
    let lane = match raw.lane.get_ref().as_str() {
        "transactional" => Lane::Transactional,
        "marketing" => Lane::Marketing,
        _ => {
            cx.err(&raw.lane, "lane must be \"transactional\" or \"marketing\"");
            Lane::Transactional
        }
    };
    let when = raw.when.as_ref().and_then(|w| parse_condition(&mut cx, w));
    let exit_on = raw.exit_on.iter().filter_map(|k| event_kind(&mut cx, k, "exit_on event")).collect();
    let topic = raw.topic.as_ref().and_then(|t| check_topic(&mut cx, t, lane, topics));
    if raw.steps.get_ref().is_empty() {
        cx.err(&raw.steps, "a flow needs at least one step");
    }
    let mut steps = Vec::new();
    for step in raw.steps.get_ref() {
        match (&step.send, &step.wait) {
            (Some(t), None) => {
                if t.get_ref().trim().is_empty() {
                    cx.err(t, "send needs a template name");
                }
                let when = step.when.as_ref().and_then(|w| parse_condition(&mut cx, w));
                let offer = step.offer.as_ref().map(|o| o.get_ref().clone());
                let own = step.topic.as_ref().and_then(|t| check_topic(&mut cx, t, lane, topics));
                steps.push(FlowStep::Send { template: t.get_ref().clone(), offer, when, topic: own.or_else(|| topic.clone()) });
            }
            (None, Some(w)) => {
                if let Some(extra) = step.offer.as_ref().or(step.when.as_ref()).or(step.topic.as_ref()) {
                    cx.err(extra, "offer, when and topic belong to send steps");
                }
                match parse_wait(w.get_ref()) {
                    Some(d) => steps.push(FlowStep::Wait(d)),
                    None => cx.err(w, format!("{:?} is not a wait like \"30m\", \"2h\" or \"3d\"", w.get_ref())),
                }
            }
            _ => cx.err(&raw.steps, "each step has exactly one of send or wait"),
        }
    }
    if let Some(dup) = earlier.iter().find(|f| f.id == id) {
        let msg = format!("flow id {id:?} is also used by {}", dup.file.display());
        cx.errors.push(ConfigError::whole_file(path, msg));
    }
    if cx.errors.len() > before {
        return None;
    }
    Some(Flow {
        id,
        trigger: trigger?,
        lane,
        enabled: raw.enabled,
        when,
        exit_on,
        topic,
        steps,
        file: path.to_path_buf(),
        builtin: false,
    })
}

/// A flow's or step's `topic`: marketing flows only, and one the tenant declares.
fn check_topic(cx: &mut FileCtx, raw: &Spanned<String>, lane: Lane, topics: &[Topic]) -> Option<String> {
    let id = raw.get_ref();
    if lane != Lane::Marketing {
        cx.err(raw, "topic is for marketing flows (lane = \"marketing\"); transactional mail has no topics");
        return None;
    }
    if !topics.iter().any(|t| &t.id == id) {
        let known: Vec<&str> = topics.iter().map(|t| t.id.as_str()).collect();
        let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
        cx.err(raw, format!("unknown topic {id:?}; [preferences] declares: {known}"));
        return None;
    }
    Some(id.clone())
}

fn event_kind(cx: &mut FileCtx, raw: &Spanned<String>, what: &str) -> Option<EventKind> {
    let kind = EventKind::parse(raw.get_ref());
    if kind.is_none() {
        let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        cx.err(raw, format!("unknown {what} {:?}; known: {}", raw.get_ref(), known.join(", ")));
    }
    kind
}

/// A secret as written: a literal, or `env:NAME` for the value of that environment
/// variable. `problem` says what is wrong with a value beyond being empty. With
/// [`Secrets::Leave`] no variable is read and the result holds no value; a literal is still
/// checked, as it is in the file.
fn secret(cx: &mut FileCtx, raw: &Spanned<String>, secrets: Secrets, problem: fn(&str) -> Option<&'static str>) -> Option<Secret> {
    let value = match raw.get_ref().strip_prefix("env:") {
        Some("") => Err("env: needs the name of an environment variable".to_owned()),
        Some(_) if secrets == Secrets::Leave => return Some(Secret::unresolved()),
        Some(var) => std::env::var(var).map_err(|_| format!("environment variable {var} is not set")),
        None => Ok(raw.get_ref().clone()),
    };
    let wrong = match &value {
        Ok(v) if v.is_empty() => Some("secret is empty".to_owned()),
        Ok(v) => problem(v).map(str::to_owned),
        Err(msg) => Some(msg.clone()),
    };
    if let Some(msg) = wrong {
        cx.err(raw, msg);
        return None;
    }
    match secrets {
        Secrets::Resolve => value.ok().map(Secret::new),
        Secrets::Leave => Some(Secret::unresolved()),
    }
}

fn parse_delivery(cx: &mut FileCtx, raw: &RawDelivery, secrets: Secrets) -> Delivery {
    let provider = match Provider::ALL.into_iter().find(|p| p.as_str() == raw.provider.get_ref()) {
        Some(p) => p,
        None => {
            let known: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
            cx.err(&raw.provider, format!("unknown provider {:?}; known: {}", raw.provider.get_ref(), known.join(", ")));
            Provider::Smtp
        }
    };
    let d = Delivery {
        provider,
        endpoint: raw.endpoint.as_ref().and_then(|u| check_url(cx, u)),
        api_key: raw.api_key.as_ref().and_then(|s| secret(cx, s, secrets, |_| None)),
        region: raw.region.clone(),
        domain: raw.domain.clone(),
        access_key_id: raw.access_key_id.as_ref().and_then(|s| secret(cx, s, secrets, |_| None)),
        secret_access_key: raw.secret_access_key.as_ref().and_then(|s| secret(cx, s, secrets, |_| None)),
        max_per_second: raw.max_per_second,
        max_per_second_per_domain: raw.max_per_second_per_domain,
        webhook_secret: raw.webhook_secret.as_ref().and_then(|s| secret(cx, s, secrets, |_| None)),
        bounce_address: raw.bounce_address.as_ref().and_then(|a| parse_email(cx, a)),
        transactional_stream: raw
            .transactional_stream
            .as_ref()
            .map_or(Delivery::DEFAULT_TRANSACTIONAL_STREAM, |s| s.get_ref().as_str())
            .to_owned(),
        marketing_stream: raw.marketing_stream.as_ref().map_or(Delivery::DEFAULT_MARKETING_STREAM, |s| s.get_ref().as_str()).to_owned(),
    };
    let missing: Vec<&str> = match provider {
        Provider::Smtp => vec![],
        Provider::Ses => [
            ("region", d.region.is_none()),
            ("access_key_id", d.access_key_id.is_none()),
            ("secret_access_key", d.secret_access_key.is_none()),
        ]
        .into_iter()
        .filter_map(|(k, m)| m.then_some(k))
        .collect(),
        Provider::Postmark | Provider::Sendgrid => if d.api_key.is_none() { vec!["api_key"] } else { vec![] },
        Provider::Mailgun => [("api_key", d.api_key.is_none()), ("domain", d.domain.is_none())]
            .into_iter()
            .filter_map(|(k, m)| m.then_some(k))
            .collect(),
    };
    if !missing.is_empty() {
        cx.err(&raw.provider, format!("provider {} needs {}", provider.as_str(), missing.join(", ")));
    }
    if raw.max_per_second == Some(0) || raw.max_per_second_per_domain == Some(0) {
        cx.err(&raw.provider, "rate limits must be at least 1 per second");
    }
    if let Some(a) = &raw.bounce_address
        && provider != Provider::Smtp
    {
        cx.err(a, format!("bounce_address is for the smtp relay; {} sets the envelope sender itself", provider.as_str()));
    }
    for s in [&raw.transactional_stream, &raw.marketing_stream].into_iter().flatten() {
        if provider != Provider::Postmark {
            cx.err(s, format!("message streams are Postmark's; provider is {}", provider.as_str()));
        } else if !is_stream_id(s.get_ref()) {
            cx.err(s, "a message stream id is 1 to 100 letters, digits, '-' or '_'");
        }
    }
    if let Some(s) = raw.marketing_stream.as_ref().or(raw.transactional_stream.as_ref())
        && provider == Provider::Postmark
        && d.marketing_stream == d.transactional_stream
    {
        cx.err(s, "marketing_stream must differ from transactional_stream: Postmark wants marketing mail on a broadcast stream");
    }
    d
}

/// A Postmark message stream id as its UI makes them (`outbound`, `broadcast`,
/// `transactional-dev`); checked conservatively, as it travels in every request.
fn is_stream_id(s: &str) -> bool {
    (1..=100).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn parse_dkim(cx: &mut FileCtx, raw: &RawDkim, from: &Option<EmailAddress>, secrets: Secrets) -> Option<Dkim> {
    let selector = raw.selector.get_ref().trim();
    if selector.is_empty() || !selector.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        cx.err(&raw.selector, "selector must be letters, digits, '-' and '.'");
    }
    let pem = |v: &str| (!v.contains("-----BEGIN")).then_some("private_key must be a PEM private key (or env:NAME holding one)");
    let key = secret(cx, &raw.private_key, secrets, pem)?;
    let domain = match &raw.domain {
        Some(d) => d.get_ref().trim().to_ascii_lowercase(),
        None => from.as_ref().map(|f| f.domain().to_owned())?,
    };
    Some(Dkim { domain, selector: selector.to_owned(), private_key: key })
}

fn parse_offer(cx: &mut FileCtx, name: &str, raw: &RawOffer) -> Option<Offer> {
    let kind = match raw.kind.get_ref().as_str() {
        "coupon" => OfferKind::Coupon,
        "free_shipping" => OfferKind::FreeShipping,
        _ => {
            cx.err(&raw.kind, "kind must be \"coupon\" or \"free_shipping\"");
            return None;
        }
    };
    if raw.code.get_ref().trim().is_empty() {
        cx.err(&raw.code, "an offer needs a code");
    }
    let percent_off = match (&raw.percent_off, kind) {
        (Some(p), _) if !(1..=100).contains(p.get_ref()) => {
            cx.err(p, "percent_off must be between 1 and 100");
            None
        }
        (Some(p), _) => u8::try_from(*p.get_ref()).ok(),
        (None, OfferKind::Coupon) => {
            cx.err(&raw.kind, format!("coupon offer {name:?} needs percent_off"));
            None
        }
        (None, OfferKind::FreeShipping) => None,
    };
    let expires = match raw.expires.as_ref() {
        None => OfferExpiry::Never,
        Some(e) if e.get_ref() == "end_of_day" => OfferExpiry::EndOfDay,
        Some(e) => match parse_wait(e.get_ref()) {
            Some(d) => OfferExpiry::After(d),
            None => {
                cx.err(e, "expires must be \"end_of_day\" or a duration like \"30d\"");
                OfferExpiry::Never
            }
        },
    };
    Some(Offer {
        name: name.to_owned(),
        kind,
        code: raw.code.get_ref().trim().to_owned(),
        percent_off,
        description: raw.description.clone(),
        expires,
    })
}

fn parse_cross_sell(cx: &mut FileCtx, raw: &RawCrossSell) -> CrossSell {
    let count = match &raw.count {
        None => 3,
        Some(c) if (1..=12).contains(c.get_ref()) => usize::try_from(*c.get_ref()).unwrap_or(3),
        Some(c) => {
            cx.err(c, "count must be between 1 and 12");
            3
        }
    };
    let mut picks = Vec::new();
    for p in &raw.picks {
        let url = check_url(cx, &p.url);
        let image_url = p.image_url.as_ref().and_then(|u| check_url(cx, u));
        let price = match (&p.price, &p.currency) {
            (None, None) => None,
            (Some(amount), Some(cur)) => match Currency::parse(cur.get_ref()) {
                Ok(c) => match Money::parse_decimal(amount.get_ref(), c) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        cx.err(amount, e.to_string());
                        None
                    }
                },
                Err(e) => {
                    cx.err(cur, e.to_string());
                    None
                }
            },
            (Some(s), None) | (None, Some(s)) => {
                cx.err(s, "price and currency go together");
                None
            }
        };
        if let Some(url) = url {
            picks.push(ProductPick { title: p.title.clone(), url, image_url, price });
        }
    }
    CrossSell { enabled: raw.enabled, count, picks }
}

fn parse_shipments(cx: &mut FileCtx, raw: &RawShipments) -> ShipmentSettings {
    let d = ShipmentSettings::default();
    let mut dur = |v: &Option<Spanned<String>>, default| match v {
        None => default,
        Some(s) if s.get_ref().trim() == "0" => Duration::ZERO,
        Some(s) => parse_wait(s.get_ref()).unwrap_or_else(|| {
            cx.err(s, format!("{:?} is not a duration like \"15m\", \"2h\" or \"5d\"", s.get_ref()));
            default
        }),
    };
    ShipmentSettings {
        burst_window: dur(&raw.burst_window, d.burst_window),
        stalled_after: dur(&raw.stalled_after, d.stalled_after),
        link_wait: dur(&raw.link_wait, d.link_wait),
    }
}

/// `[preferences] topics`: ids unique and URL-safe, each with at least one label, keyed
/// by language tag. An empty list is allowed (the page then offers only "unsubscribe from
/// all").
fn parse_topics(cx: &mut FileCtx, raw: &Spanned<Vec<RawTopic>>) -> Vec<Topic> {
    let mut topics: Vec<Topic> = Vec::new();
    for t in raw.get_ref() {
        let id = t.id.get_ref();
        let valid = (1..=40).contains(&id.len())
            && id.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            cx.err(&t.id, "a topic id is 1 to 40 lowercase letters, digits, '-' or '_', starting with a letter or digit");
            continue;
        }
        if topics.iter().any(|k| &k.id == id) {
            cx.err(&t.id, format!("topic {id:?} is declared twice"));
            continue;
        }
        if t.label.get_ref().is_empty() {
            cx.err(&t.label, format!("topic {id:?} needs a label, e.g. label = {{ en = \"Offers\" }}"));
            continue;
        }
        let mut labels = BTreeMap::new();
        for (tag, text) in t.label.get_ref() {
            if !is_language_tag(tag) {
                cx.err(text, format!("{tag:?} is not a language tag like \"en\" or \"fa-IR\""));
            } else if text.get_ref().trim().is_empty() {
                cx.err(text, "a label must not be empty");
            } else {
                labels.insert(tag.clone(), text.get_ref().trim().to_owned());
            }
        }
        topics.push(Topic { id: id.clone(), labels });
    }
    topics
}

/// `en`, `de`, `fa-IR`, `zh-Hant-TW`: a language of 2 or 3 letters and optional subtags.
fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split(['-', '_']);
    let language = parts.next().unwrap_or_default();
    (2..=3).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// `"90s"`, `"30m"`, `"2h"`, `"3d"`, `"1w"`.
pub(crate) fn parse_wait(s: &str) -> Option<Duration> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: u64 = s[..s.len() - unit.len_utf8()].trim().parse().ok()?;
    let secs = match unit {
        's' => n,
        'm' => n.checked_mul(60)?,
        'h' => n.checked_mul(3600)?,
        'd' => n.checked_mul(86_400)?,
        'w' => n.checked_mul(604_800)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = r##"name = "Demo"
[sender]
from = "shop@demo.example"
from_name = "Demo"
physical_address = "1 Main St"
[brand]
primary_color = "#0f766e"
[sources.shopify]
secrets = ["one", "two"]
"##;

    const FLOW: &str = r#"trigger = "order.placed"
[[steps]]
send = "order_confirmation"
[[steps]]
wait = "3d"
[[steps]]
send = "review_request"
"#;

    fn write(dir: &Path, rel: &str, body: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    #[test]
    fn loads_a_valid_tenant() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "demo/tenant.toml", TENANT);
        write(root.path(), "demo/flows/order-confirmation.toml", FLOW);
        write(root.path(), "demo/templates/order_confirmation.mjml", "<mjml></mjml>");
        let tenants = Tenants::load_dir(root.path()).unwrap();
        let t = tenants.find("demo").unwrap();
        assert_eq!(t.sender.from.email.as_str(), "shop@demo.example");
        assert_eq!(t.source("shopify").unwrap().secrets.len(), 2);
        let own: Vec<&Flow> = t.flows.iter().filter(|f| f.id == "order-confirmation").collect();
        assert_eq!(own.len(), 1, "the tenant's file replaces the built-in flow of the same id");
        assert!(!own[0].builtin);
        assert_eq!(own[0].steps[1], FlowStep::Wait(Duration::from_secs(3 * 86_400)));
        assert_eq!(t.flows.len(), BUILTIN_FLOWS.len(), "the other built-in flows apply");
        assert_eq!(t.templates[0].name, "order_confirmation");
        assert!(!format!("{:?}", t.sources).contains("one"), "secrets must not print");
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "demo/tenant.toml", &TENANT.replace("shop@demo.example", "not-an-address"));
        write(root.path(), "demo/flows/x.toml", &FLOW.replace("order.placed", "order.teleported"));
        let errs = Tenants::load_dir(root.path()).unwrap_err();
        let text = errs.to_string();
        assert_eq!(errs.0.len(), 2, "{text}");
        assert!(text.contains("tenant.toml:3:8: invalid email address"), "{text}");
        assert!(text.contains("x.toml:1:11: unknown trigger \"order.teleported\""), "{text}");
    }

    #[test]
    fn syntax_errors_and_unknown_keys_are_located() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "demo/tenant.toml", &format!("{TENANT}colour = 1\n"));
        write(root.path(), "bad_id/tenant.toml", TENANT);
        write(root.path(), "..data/tenant.toml", "not a tenant");
        let text = Tenants::load_dir(root.path()).unwrap_err().to_string();
        assert!(text.contains("demo/tenant.toml:10:1: unknown field `colour`"), "{text}");
        assert!(text.contains("bad_id: directory name is not a tenant id"), "{text}");
    }

    #[test]
    fn built_in_journey_loads_and_can_be_switched_off() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "demo/tenant.toml", &format!("{TENANT}[flows]\ndisabled = [\"delivered\"]\n"));
        write(root.path(), "plain/tenant.toml", &format!("{TENANT}[flows]\ndefaults = false\n"));
        let tenants = Tenants::load_dir(root.path()).unwrap();
        let demo = tenants.find("demo").unwrap();
        let ids: Vec<&str> = demo.flows.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            ["order-confirmation", "shipping-confirmation", "shipment-status", "delivered", "shipment-stalled", "order-cancelled"]
        );
        let delivered = demo.flows.iter().find(|f| f.id == "delivered").unwrap();
        assert!(!delivered.enabled);
        assert_eq!(delivered.exit_on, vec![EventKind::OrderCancelled]);
        assert_eq!(delivered.when.as_ref().unwrap().expr, "event.shipment.status == 'delivered'");
        assert_eq!(
            delivered.steps[2],
            FlowStep::Send { template: "review_request".into(), offer: Some("review".into()), when: None, topic: None }
        );
        assert_eq!(demo.flows_for(EventKind::ShipmentProgressed).count(), 1, "disabled flows start nothing");
        assert!(tenants.find("plain").unwrap().flows.is_empty());

        write(root.path(), "demo/tenant.toml", &format!("{TENANT}[flows]\ndisabled = [\"nope\"]\n"));
        let text = Tenants::load_dir(root.path()).unwrap_err().to_string();
        assert!(text.contains("tenant.toml:11:13: no built-in flow \"nope\""), "{text}");
    }

    #[test]
    fn conditions_are_checked_at_load() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "demo/tenant.toml", TENANT);
        let flow = "trigger = \"order.placed\"\nwhen = \"order.total.minor >\"\n[[steps]]\nsend = \"x\"\nwhen = \"shipment.status == 1\"\n";
        write(root.path(), "demo/flows/big.toml", flow);
        let text = Tenants::load_dir(root.path()).unwrap_err().to_string();
        assert!(text.contains("big.toml:2:8: invalid condition"), "{text}");
        assert!(text.contains("big.toml:5:8: unknown variable shipment in condition; known: event, order, customer"), "{text}");

        let ok = "trigger = \"order.placed\"\nwhen = \"order.total.minor > 10000 and customer.orders_count == 1\"\nexit_on = [\"order.cancelled\"]\n[[steps]]\nsend = \"x\"\n";
        write(root.path(), "demo/flows/big.toml", ok);
        let tenants = Tenants::load_dir(root.path()).unwrap();
        let big = tenants.find("demo").unwrap().flows.iter().find(|f| f.id == "big").unwrap().clone();
        assert!(big.when.unwrap().at.ends_with("big.toml:2:8"));
    }

    #[test]
    fn delivery_offers_and_shipments_are_validated() {
        let root = tempfile::tempdir().unwrap();
        let extra = r#"
[delivery]
provider = "postmark"
max_per_second = 0

[dkim]
selector = "pf1"
private_key = "not a key"

[offers.review]
kind = "coupon"
code = "THANKS"
percent_off = 150

[shipments]
burst_window = "soon"
"#;
        write(root.path(), "demo/tenant.toml", &format!("{TENANT}{extra}"));
        let text = Tenants::load_dir(root.path()).unwrap_err().to_string();
        for want in [
            "provider postmark needs api_key",
            "rate limits must be at least 1 per second",
            "private_key must be a PEM private key",
            "percent_off must be between 1 and 100",
            "\"soon\" is not a duration",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }

        let good = r#"
[delivery]
provider = "mailgun"
api_key = "key-1"
domain = "mg.demo.example"
max_per_second = 50

[dkim]
selector = "pf1"
private_key = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----"

[offers.review]
kind = "free_shipping"
code = "SHIPFREE"
expires = "30d"

[offers.same_day]
kind = "coupon"
code = "TODAY10"
percent_off = 10
expires = "end_of_day"

[cross_sell]
count = 2
picks = [{ title = "Socks", url = "https://demo.example/socks", price = "9.90", currency = "EUR" }]

[shipments]
burst_window = "0"
stalled_after = "4d"
"#;
        write(root.path(), "demo/tenant.toml", &format!("{TENANT}{good}"));
        let tenants = Tenants::load_dir(root.path()).unwrap();
        let t = tenants.find("demo").unwrap();
        assert_eq!(t.delivery.provider, crate::Provider::Mailgun);
        assert_eq!(t.delivery.max_per_second, Some(50));
        let dkim = t.dkim.as_ref().unwrap();
        assert_eq!((dkim.domain.as_str(), dkim.selector.as_str()), ("demo.example", "pf1"));
        assert_eq!(t.offers["review"].kind, OfferKind::FreeShipping);
        assert_eq!(t.offers["review"].expires, OfferExpiry::After(Duration::from_secs(30 * 86_400)));
        assert_eq!(t.offers["same_day"].percent_off, Some(10));
        assert_eq!(t.offers["same_day"].expires, OfferExpiry::EndOfDay);
        assert_eq!(t.cross_sell.count, 2);
        assert_eq!(t.cross_sell.picks[0].price.as_ref().unwrap().minor, 990);
        assert_eq!(t.shipments.burst_window, Duration::ZERO);
        assert_eq!(t.shipments.stalled_after, Duration::from_secs(4 * 86_400));
        assert_eq!(t.shipments.link_wait, ShipmentSettings::default().link_wait);
    }

    #[test]
    fn bounce_address_and_message_streams_are_validated() {
        let root = tempfile::tempdir().unwrap();
        let load = |delivery: &str| {
            write(root.path(), "demo/tenant.toml", &format!("{TENANT}[delivery]\n{delivery}"));
            Tenants::load_dir(root.path()).map(|t| t.find("demo").unwrap().delivery.clone()).map_err(|e| e.to_string())
        };

        let smtp = load("provider = \"smtp\"\n").unwrap();
        assert_eq!(smtp.bounce_address, None, "the [sender] from address is the default");
        let smtp = load("provider = \"smtp\"\nbounce_address = \"Bounces@bounce.demo.example\"\n").unwrap();
        assert_eq!(smtp.bounce_address.map(|a| a.key()).as_deref(), Some("bounces@bounce.demo.example"));
        let postmark = load("provider = \"postmark\"\napi_key = \"k\"\n").unwrap();
        assert_eq!((postmark.stream(Lane::Transactional), postmark.stream(Lane::Marketing)), ("outbound", "broadcast"));
        let postmark = load("provider = \"postmark\"\napi_key = \"k\"\ntransactional_stream = \"orders\"\nmarketing_stream = \"news_2\"\n").unwrap();
        assert_eq!((postmark.stream(Lane::Transactional), postmark.stream(Lane::Marketing)), ("orders", "news_2"));

        for (delivery, want) in [
            ("provider = \"smtp\"\nbounce_address = \"nobody\"\n", "tenant.toml:12:18: invalid email address"),
            ("provider = \"postmark\"\napi_key = \"k\"\nbounce_address = \"b@demo.example\"\n", "bounce_address is for the smtp relay; postmark sets the envelope sender itself"),
            ("provider = \"smtp\"\nmarketing_stream = \"news\"\n", "tenant.toml:12:20: message streams are Postmark's; provider is smtp"),
            ("provider = \"postmark\"\napi_key = \"k\"\nmarketing_stream = \"my stream\"\n", "a message stream id is 1 to 100 letters, digits, '-' or '_'"),
            ("provider = \"postmark\"\napi_key = \"k\"\ntransactional_stream = \"\"\n", "a message stream id is 1 to 100"),
            ("provider = \"postmark\"\napi_key = \"k\"\ntransactional_stream = \"broadcast\"\n", "marketing_stream must differ from transactional_stream"),
        ] {
            let text = load(delivery).unwrap_err();
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    /// Never set: the tests cannot set variables (that is unsafe while other threads read
    /// the environment), so they use one nobody sets and one everybody has.
    const MISSING: &str = "TENANCY_TEST_MISSING_VAR";

    #[test]
    fn without_secrets_nothing_is_resolved_and_a_missing_variable_is_no_error() {
        assert!(std::env::var(MISSING).is_err(), "{MISSING} must not be set for this test");
        let root = tempfile::tempdir().unwrap();
        let extra = r#"[sources.woocommerce]
secrets = ["env:TENANCY_TEST_MISSING_VAR", "env:PATH"]
[delivery]
provider = "postmark"
api_key = "env:TENANCY_TEST_MISSING_VAR"
webhook_secret = "literal-webhook-secret"
[dkim]
selector = "pf1"
private_key = "env:TENANCY_TEST_MISSING_VAR"
"#;
        write(root.path(), "demo/tenant.toml", &format!("{TENANT}{extra}"));

        let text = Tenants::load_dir(root.path()).unwrap_err().to_string();
        for want in [
            "demo/tenant.toml:11:12: environment variable TENANCY_TEST_MISSING_VAR is not set",
            "demo/tenant.toml:14:11: environment variable TENANCY_TEST_MISSING_VAR is not set",
            "demo/tenant.toml:18:15: environment variable TENANCY_TEST_MISSING_VAR is not set",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }

        let tenants = Tenants::load_dir_without_secrets(root.path()).unwrap();
        let t = tenants.find("demo").unwrap();
        assert_eq!(t.name, "Demo");
        assert_eq!(t.topics, Topic::defaults());
        let d = &t.delivery;
        assert_eq!(d.provider, Provider::Postmark);
        let dkim = t.dkim.as_ref().unwrap();
        assert_eq!((dkim.domain.as_str(), dkim.selector.as_str()), ("demo.example", "pf1"));
        let all: Vec<&Secret> = t
            .sources
            .values()
            .flat_map(|s| &s.secrets)
            .chain(d.api_key.as_ref())
            .chain(d.webhook_secret.as_ref())
            .chain([&dkim.private_key])
            .collect();
        assert_eq!(all.len(), 7, "two per source, api_key, webhook_secret, private_key");
        assert!(all.iter().all(|s| !s.is_resolved()), "{all:?}");
        let printed = format!("{t:?}");
        assert!(printed.contains("Secret(unresolved)"), "{printed}");
        let path = std::env::var("PATH").unwrap();
        for value in ["literal-webhook-secret", path.as_str()] {
            assert!(!printed.contains(value), "{value:?} was kept: {printed}");
        }
        let sources = format!("{:?}", t.sources);
        assert!(!sources.contains("one") && !sources.contains("two"), "{sources}");

        // The normal load resolves a variable that is set, and literals.
        let without_missing = extra.replace("env:TENANCY_TEST_MISSING_VAR", "k-----BEGIN");
        write(root.path(), "demo/tenant.toml", &format!("{TENANT}{without_missing}"));
        let tenants = Tenants::load_dir(root.path()).unwrap();
        let woo = &tenants.find("demo").unwrap().sources["woocommerce"].secrets;
        assert_eq!(woo[1].expose(), path);
        assert!(woo.iter().all(Secret::is_resolved));
    }

    #[test]
    #[should_panic(expected = "loaded without secrets")]
    fn an_unresolved_secret_has_no_value_to_expose() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "demo/tenant.toml", TENANT);
        let tenants = Tenants::load_dir_without_secrets(root.path()).unwrap();
        let shopify = tenants.find("demo").unwrap().source("shopify").unwrap();
        let _ = shopify.as_bytes();
    }

    #[test]
    fn without_secrets_everything_else_is_still_validated() {
        let root = tempfile::tempdir().unwrap();
        let extra = r#"[sources.etsy]
secrets = ["", "env:"]
[delivery]
provider = "mailgun"
api_key = "env:TENANCY_TEST_MISSING_VAR"
[dkim]
selector = "pf1"
private_key = "not a key"
[preferences]
topics = [{ id = "Bad!", label = { en = "Bad" } }]
"#;
        write(root.path(), "demo/tenant.toml", &format!("{TENANT}{extra}"));
        write(root.path(), "demo/flows/x.toml", &FLOW.replace("order.placed", "order.teleported"));
        let text = Tenants::load_dir_without_secrets(root.path()).unwrap_err().to_string();
        for want in [
            "tenant.toml:11:12: secret is empty",
            "tenant.toml:11:16: env: needs the name of an environment variable",
            "tenant.toml:13:12: provider mailgun needs domain",
            "tenant.toml:17:15: private_key must be a PEM private key",
            "tenant.toml:19:18: a topic id is 1 to 40 lowercase letters",
            "x.toml:1:11: unknown trigger \"order.teleported\"",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        assert!(!text.contains("TENANCY_TEST_MISSING_VAR"), "no variable is read: {text}");

        write(root.path(), "demo/tenant.toml", &format!("{TENANT}colour = 1\n"));
        let text = Tenants::load_dir_without_secrets(root.path()).unwrap_err().to_string();
        assert!(text.contains("demo/tenant.toml:10:1: unknown field `colour`"), "{text}");
    }

    #[test]
    fn waits_parse() {
        assert_eq!(parse_wait("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_wait("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_wait("3x"), None);
        assert_eq!(parse_wait("d"), None);
        assert_eq!(parse_wait("99999999999999999999d"), None);
    }

    #[test]
    fn topics_default_and_are_declared_with_labels() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "demo/tenant.toml", TENANT);
        let tenants = Tenants::load_dir(root.path()).unwrap();
        let t = tenants.find("demo").unwrap();
        let ids: Vec<&str> = t.topics.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["newsletter", "offers", "recommendations"], "the built-in topics");
        for topic in &t.topics {
            for lang in ["en", "de", "ar", "fa"] {
                assert!(topic.labels.contains_key(lang), "{} has no {lang} label", topic.id);
            }
        }
        assert_eq!(t.topic("offers").unwrap().label("de-AT", "en"), "Angebote und Rabatte");
        assert_eq!(t.topic("offers").unwrap().label("pt", "en"), "Offers and discounts", "unknown languages fall back");

        let own = r#"
[preferences]
topics = [
  { id = "drops", label = { en = "New drops", fa-IR = "محصولات تازه" } },
  { id = "events", label = { de = "Veranstaltungen" } },
]
"#;
        write(root.path(), "demo/tenant.toml", &format!("{TENANT}{own}"));
        let marketing = "trigger = \"customer.created\"\nlane = \"marketing\"\ntopic = \"drops\"\n[[steps]]\nsend = \"welcome\"\n[[steps]]\nwait = \"1d\"\n[[steps]]\nsend = \"invite\"\ntopic = \"events\"\n";
        write(root.path(), "demo/flows/welcome.toml", marketing);
        let tenants = Tenants::load_dir(root.path()).unwrap();
        let t = tenants.find("demo").unwrap();
        assert_eq!(t.topics.len(), 2, "declared topics replace the built-in ones");
        let drops = t.topic("drops").unwrap();
        assert_eq!(drops.label("fa", "en"), "محصولات تازه", "a language matches a regional label");
        assert_eq!(drops.label("de", "en"), "New drops");
        assert_eq!(t.topic("events").unwrap().label("en", "en"), "Veranstaltungen", "any label rather than none");
        let welcome = t.flows.iter().find(|f| f.id == "welcome").unwrap();
        assert_eq!(welcome.topic.as_deref(), Some("drops"));
        let topics: Vec<Option<&str>> = welcome
            .steps
            .iter()
            .filter_map(|s| match s {
                FlowStep::Send { topic, .. } => Some(topic.as_deref()),
                FlowStep::Wait(_) => None,
            })
            .collect();
        assert_eq!(topics, [Some("drops"), Some("events")], "a step's own topic wins over the flow's");

        std::fs::remove_file(root.path().join("demo/flows/welcome.toml")).unwrap();
        // The array-of-tables spelling, as in the README.
        let tables = "[[preferences.topics]]\nid = \"drops\"\nlabel = { en = \"New arrivals\", de = \"Neuheiten\" }\n";
        write(root.path(), "demo/tenant.toml", &format!("{TENANT}{tables}"));
        let tenants = Tenants::load_dir(root.path()).unwrap();
        assert_eq!(tenants.find("demo").unwrap().topic("drops").unwrap().label("de", "en"), "Neuheiten");

        write(root.path(), "demo/tenant.toml", &format!("{TENANT}[preferences]\ntopics = []\n"));
        assert!(Tenants::load_dir(root.path()).unwrap().find("demo").unwrap().topics.is_empty(), "no topics at all is allowed");
    }

    #[test]
    fn topics_are_validated_with_file_and_line() {
        let root = tempfile::tempdir().unwrap();
        let bad = r#"
[preferences]
topics = [
  { id = "Offers!", label = { en = "Offers" } },
  { id = "news", label = { en = "News" } },
  { id = "news", label = { en = "News again" } },
  { id = "empty", label = {} },
  { id = "blank", label = { en = " ", english = "Blank" } },
]
"#;
        write(root.path(), "demo/tenant.toml", &format!("{TENANT}{bad}"));
        write(root.path(), "demo/flows/tx.toml", "trigger = \"order.placed\"\ntopic = \"news\"\n[[steps]]\nsend = \"x\"\n");
        let mkt = "trigger = \"order.placed\"\nlane = \"marketing\"\ntopic = \"nope\"\n[[steps]]\nwait = \"1d\"\ntopic = \"news\"\n";
        write(root.path(), "demo/flows/mkt.toml", mkt);
        let text = Tenants::load_dir(root.path()).unwrap_err().to_string();
        for want in [
            "tenant.toml:13:10: a topic id is 1 to 40 lowercase letters",
            "tenant.toml:15:10: topic \"news\" is declared twice",
            "tenant.toml:16:27: topic \"empty\" needs a label",
            "tenant.toml:17:34: a label must not be empty",
            "tenant.toml:17:49: \"english\" is not a language tag",
            "tx.toml:2:9: topic is for marketing flows",
            "mkt.toml:3:9: unknown topic \"nope\"; [preferences] declares: news, blank",
            "mkt.toml:6:9: offer, when and topic belong to send steps",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        write(root.path(), "demo/tenant.toml", &format!("{TENANT}[preferences]\ntopics = [{{ id = \"a\", label = {{ en = \"A\" }}, colour = 1 }}]\n"));
        let text = Tenants::load_dir(root.path()).unwrap_err().to_string();
        assert!(text.contains("unknown field `colour`"), "{text}");
    }

    #[test]
    fn direction_follows_locale() {
        assert_eq!(Direction::for_locale("fa-IR"), Direction::Rtl);
        assert_eq!(Direction::for_locale("ar"), Direction::Rtl);
        assert_eq!(Direction::for_locale("en-CA"), Direction::Ltr);
    }
}
