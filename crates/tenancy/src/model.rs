//! The validated shape of a tenant. Every value here has been checked.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use contracts::{EmailAddress, EventKind, Lane, Mailbox, Money, TenantId};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    /// Default locale (BCP 47) for recipients whose locale is unknown.
    pub locale: String,
    pub sender: SenderIdentity,
    pub brand: Brand,
    pub tracking: Tracking,
    /// Webhook signing secrets by source (`shopify`, `woocommerce`, …).
    pub sources: BTreeMap<String, SourceSecrets>,
    /// The tenant's flows: the built-in journey (unless switched off), with the tenant's
    /// own files overriding built-in ones of the same id.
    pub flows: Vec<Flow>,
    /// How this tenant's mail leaves: the shared SMTP relay or an HTTP provider account.
    pub delivery: Delivery,
    /// DKIM signing for the sending domain, when configured.
    pub dkim: Option<Dkim>,
    /// Offers (coupons, free shipping) that flow steps attach by name.
    pub offers: BTreeMap<String, Offer>,
    pub cross_sell: CrossSell,
    pub shipments: ShipmentSettings,
    /// The tenant's own templates by name (file stem); they override built-in ones.
    pub templates: Vec<TemplateSource>,
    /// The marketing topics recipients choose from on the preferences page (`[preferences]`,
    /// else [`Topic::defaults`]). Marketing flows and steps name one of them.
    pub topics: Vec<Topic>,
    pub dir: PathBuf,
}

impl Tenant {
    pub fn source(&self, name: &str) -> Option<&SourceSecrets> {
        self.sources.get(name)
    }

    /// Enabled flows started by `kind`.
    pub fn flows_for(&self, kind: EventKind) -> impl Iterator<Item = &Flow> {
        self.flows.iter().filter(move |f| f.enabled && f.trigger == kind)
    }

    pub fn topic(&self, id: &str) -> Option<&Topic> {
        self.topics.iter().find(|t| t.id == id)
    }
}

/// A marketing topic (`newsletter`, `offers`, …): recipients can leave one and keep the
/// others. Declared per tenant in `[preferences]`, with a label per language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// Lowercase letters, digits, `-` and `_`; travels in messages and events.
    pub id: String,
    /// The label by language tag (`en`, `de`, `fa-IR`, …); never empty.
    pub labels: BTreeMap<String, String>,
}

impl Topic {
    /// The built-in topics of a tenant that declares none, labelled in the languages of
    /// the built-in templates.
    pub fn defaults() -> Vec<Topic> {
        const DEFAULTS: &[(&str, &[(&str, &str)])] = &[
            ("newsletter", &[("en", "Newsletter"), ("de", "Newsletter"), ("ar", "النشرة الإخبارية"), ("fa", "خبرنامه")]),
            (
                "offers",
                &[
                    ("en", "Offers and discounts"),
                    ("de", "Angebote und Rabatte"),
                    ("ar", "العروض والخصومات"),
                    ("fa", "پیشنهادها و تخفیف‌ها"),
                ],
            ),
            (
                "recommendations",
                &[
                    ("en", "Product recommendations"),
                    ("de", "Produktempfehlungen"),
                    ("ar", "توصيات المنتجات"),
                    ("fa", "پیشنهاد محصولات"),
                ],
            ),
        ];
        DEFAULTS
            .iter()
            .map(|(id, labels)| Topic {
                id: (*id).to_owned(),
                labels: labels.iter().map(|(l, t)| ((*l).to_owned(), (*t).to_owned())).collect(),
            })
            .collect()
    }

    /// The label for `locale`: the exact tag, else one in its language (`fa-IR` and `fa`
    /// match each other), else the same for `fallback` (the tenant's locale), else
    /// English, else any label.
    pub fn label(&self, locale: &str, fallback: &str) -> &str {
        let norm = |tag: &str| tag.trim().replace('_', "-").to_ascii_lowercase();
        let language = |tag: &str| norm(tag).split('-').next().unwrap_or_default().to_owned();
        let find = |tag: &str| {
            let (tag, lang) = (norm(tag), language(tag));
            let exact = self.labels.iter().find(|(k, _)| norm(k) == tag);
            let same_language = || {
                let mut candidates = self.labels.iter().filter(|(k, _)| language(k) == lang);
                // The bare language (`fa`) before a regional variant (`fa-AF`).
                candidates.clone().find(|(k, _)| norm(k) == lang).or_else(|| candidates.next())
            };
            exact.or_else(same_language).map(|(_, v)| v.as_str())
        };
        find(locale)
            .or_else(|| find(fallback))
            .or_else(|| find("en"))
            .or_else(|| self.labels.values().next().map(String::as_str))
            .unwrap_or(&self.id)
    }
}

/// Who the mail is from (CAN-SPAM: a valid physical postal address is required).
#[derive(Debug, Clone)]
pub struct SenderIdentity {
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub physical_address: String,
    pub privacy_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ltr,
    Rtl,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ltr => "ltr",
            Self::Rtl => "rtl",
        }
    }

    /// Right-to-left scripts among the languages we know: Arabic, Persian, Hebrew, Urdu,
    /// Pashto, Sindhi, Kurdish (Sorani), Yiddish, Dhivehi.
    pub fn for_locale(locale: &str) -> Self {
        let lang = locale.split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
        match lang.as_str() {
            "ar" | "fa" | "he" | "ur" | "ps" | "sd" | "ckb" | "yi" | "dv" => Self::Rtl,
            _ => Self::Ltr,
        }
    }
}

/// The brand kit applied to every template.
#[derive(Debug, Clone)]
pub struct Brand {
    pub logo_url: Option<String>,
    pub primary_color: String,
    pub text_color: String,
    pub background_color: String,
    pub font_family: String,
    /// `None` means "from the recipient's locale".
    pub direction: Option<Direction>,
    /// Write numbers in the locale's native digits (Persian ۱۲۳, Arabic-Indic ١٢٣) rather
    /// than ASCII digits.
    pub native_digits: bool,
}

/// Which transport carries a tenant's mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// The sender's configured SMTP relay.
    Smtp,
    /// Amazon SES, API v2.
    Ses,
    Postmark,
    Sendgrid,
    Mailgun,
}

impl Provider {
    pub const ALL: [Provider; 5] = [Self::Smtp, Self::Ses, Self::Postmark, Self::Sendgrid, Self::Mailgun];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Smtp => "smtp",
            Self::Ses => "ses",
            Self::Postmark => "postmark",
            Self::Sendgrid => "sendgrid",
            Self::Mailgun => "mailgun",
        }
    }
}

/// A tenant's delivery account. Which fields are required depends on the provider and is
/// checked at load: SES needs `region`, `access_key_id` and `secret_access_key`; Postmark
/// and SendGrid need `api_key`; Mailgun needs `api_key` and `domain`.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub provider: Provider,
    /// Overrides the provider's API base URL (a regional endpoint, or a test stub).
    pub endpoint: Option<String>,
    pub api_key: Option<Secret>,
    pub region: Option<String>,
    /// The provider-side sending domain (Mailgun).
    pub domain: Option<String>,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    /// What the provider account allows, shared by all sender replicas.
    pub max_per_second: Option<u32>,
    /// Per recipient domain (e.g. gmail.com), shared by all sender replicas.
    pub max_per_second_per_domain: Option<u32>,
    /// Verifies the provider's bounce and complaint webhooks (Mailgun signing key,
    /// SendGrid verification key, Postmark basic-auth password, SES topic ARNs) and, for
    /// the SMTP relay, the bounce messages (DSNs) posted to the sender.
    pub webhook_secret: Option<Secret>,
    /// SMTP relay only: the envelope sender (`MAIL FROM`, the `Return-Path` receivers
    /// see), where asynchronous bounces are mailed. `None`: the `[sender] from` address.
    pub bounce_address: Option<EmailAddress>,
    /// Postmark only: the message stream ids of the two lanes (defaults `outbound`, the
    /// server's default transactional stream, and `broadcast`).
    pub transactional_stream: String,
    pub marketing_stream: String,
}

impl Delivery {
    /// Postmark's default message stream for transactional mail.
    pub const DEFAULT_TRANSACTIONAL_STREAM: &'static str = "outbound";
    /// Postmark's default message stream for marketing (broadcast) mail.
    pub const DEFAULT_MARKETING_STREAM: &'static str = "broadcast";

    /// The Postmark message stream of `lane`.
    pub fn stream(&self, lane: Lane) -> &str {
        match lane {
            Lane::Transactional => &self.transactional_stream,
            Lane::Marketing => &self.marketing_stream,
        }
    }
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            provider: Provider::Smtp,
            endpoint: None,
            api_key: None,
            region: None,
            domain: None,
            access_key_id: None,
            secret_access_key: None,
            max_per_second: None,
            max_per_second_per_domain: None,
            webhook_secret: None,
            bounce_address: None,
            transactional_stream: Self::DEFAULT_TRANSACTIONAL_STREAM.to_owned(),
            marketing_stream: Self::DEFAULT_MARKETING_STREAM.to_owned(),
        }
    }
}

/// DKIM signing (RFC 6376) for the tenant's sending domain.
#[derive(Debug, Clone)]
pub struct Dkim {
    pub domain: String,
    pub selector: String,
    /// PEM: an RSA (PKCS#1 or PKCS#8) or Ed25519 private key.
    pub private_key: Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferKind {
    Coupon,
    FreeShipping,
}

/// When an offer stops being valid, counted from the moment the email is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferExpiry {
    Never,
    /// The end of the day the email is sent (in UTC): "an offer that expires today".
    EndOfDay,
    After(Duration),
}

/// A coupon or free-shipping offer, attached to a send step by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub name: String,
    pub kind: OfferKind,
    pub code: String,
    /// For coupons: the discount in percent (1–100).
    pub percent_off: Option<u8>,
    /// Shown in the email, e.g. "10% off your next order".
    pub description: Option<String>,
    pub expires: OfferExpiry,
}

/// A product as a cross-sell block shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductPick {
    pub title: String,
    pub url: String,
    pub image_url: Option<String>,
    pub price: Option<Money>,
}

/// Cross-sell in order confirmations: products frequently bought together with the
/// ordered ones, from the tenant's own orders, else the shop's own picks.
#[derive(Debug, Clone)]
pub struct CrossSell {
    pub enabled: bool,
    /// How many products to show.
    pub count: usize,
    /// Fallback when the order history has nothing to say yet.
    pub picks: Vec<ProductPick>,
}

impl Default for CrossSell {
    fn default() -> Self {
        Self { enabled: true, count: 3, picks: Vec::new() }
    }
}

/// How carrier updates become customer notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShipmentSettings {
    /// Status changes inside this window after the first are merged into one email.
    pub burst_window: Duration,
    /// No carrier scan for this long (and not delivered) raises `shipment.stalled`.
    pub stalled_after: Duration,
    /// How long a carrier update waits for the fulfillment that links it to an order.
    pub link_wait: Duration,
}

impl Default for ShipmentSettings {
    fn default() -> Self {
        Self {
            burst_window: Duration::from_secs(15 * 60),
            stalled_after: Duration::from_secs(5 * 86_400),
            link_wait: Duration::from_secs(3 * 86_400),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Tracking {
    pub opens: bool,
    pub clicks: bool,
}

/// A secret from the config: literal, or `env:NAME` read at load time. Never printed.
///
/// Unresolved when the tenants were loaded without secrets
/// ([`Tenants::load_dir_without_secrets`](crate::Tenants::load_dir_without_secrets)): the
/// reference was checked, but no value was read or kept, not even a literal one. Such a
/// secret has no value to expose; a service that uses secrets loads with
/// [`Tenants::load_dir`](crate::Tenants::load_dir), where every secret is resolved.
#[derive(Clone)]
pub struct Secret(Value);

#[derive(Clone)]
enum Value {
    Resolved(SecretString),
    Unresolved,
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Value::Resolved(SecretString::from(value.into())))
    }

    /// A secret the loader did not read.
    pub(crate) fn unresolved() -> Self {
        Self(Value::Unresolved)
    }

    /// False when loaded without secrets.
    pub fn is_resolved(&self) -> bool {
        matches!(self.0, Value::Resolved(_))
    }

    /// The value.
    ///
    /// # Panics
    ///
    /// On an unresolved secret (tenants loaded without secrets). That is a bug in the
    /// caller, and there is no value that could safely stand in: an empty or made-up key
    /// would sign requests or verify webhooks as if it were the tenant's.
    #[track_caller]
    pub fn expose(&self) -> &str {
        match &self.0 {
            Value::Resolved(s) => s.expose_secret(),
            Value::Unresolved => panic!("secret exposed but the tenants were loaded without secrets"),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::Resolved(_) => f.write_str("Secret(***)"),
            Value::Unresolved => f.write_str("Secret(unresolved)"),
        }
    }
}

/// The signing secrets of one webhook source: the current one first, then older ones
/// still accepted while the platform rotates.
#[derive(Debug, Clone)]
pub struct SourceSecrets {
    pub secrets: Vec<Secret>,
}

impl SourceSecrets {
    pub fn as_bytes(&self) -> Vec<&[u8]> {
        self.secrets.iter().map(|s| s.expose().as_bytes()).collect()
    }
}

#[derive(Debug, Clone)]
pub struct Flow {
    pub id: String,
    pub trigger: EventKind,
    pub lane: Lane,
    pub enabled: bool,
    /// A MiniJinja expression over `event`, `order` and `customer`; the flow starts only
    /// when it is true. Syntax-checked at load.
    pub when: Option<Condition>,
    /// Goal events: when one of these arrives for the same order (or, for events without
    /// an order, the same customer), the run exits before its next step.
    pub exit_on: Vec<EventKind>,
    /// The marketing topic of the flow's messages (marketing flows only); a send step may
    /// name its own.
    pub topic: Option<String>,
    pub steps: Vec<FlowStep>,
    pub file: PathBuf,
    /// Shipped with Postflow rather than written by the tenant.
    pub builtin: bool,
}

/// A condition as written, with where it was written (for error messages at run time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub expr: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowStep {
    /// Wait this long after the previous step.
    Wait(Duration),
    /// Send this template to the customer, with the named offer when the tenant defines
    /// it, and only when `when` (if any) holds at that moment. `topic`: the step's own
    /// marketing topic, else the flow's (resolved at load).
    Send { template: String, offer: Option<String>, when: Option<Condition>, topic: Option<String> },
}

/// A template file: its name (file stem), its text and where it came from.
#[derive(Debug, Clone)]
pub struct TemplateSource {
    pub name: String,
    pub source: String,
    pub file: PathBuf,
}

pub(crate) fn mailbox(name: Option<String>, email: EmailAddress) -> Mailbox {
    Mailbox { name, email }
}
