//! The validated shape of a tenant. Every value here has been checked.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use contracts::{EmailAddress, EventKind, Lane, Mailbox, TenantId};
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
    pub flows: Vec<Flow>,
    /// The tenant's own templates by name (file stem); they override built-in ones.
    pub templates: Vec<TemplateSource>,
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
}

#[derive(Debug, Clone, Copy)]
pub struct Tracking {
    pub opens: bool,
    pub clicks: bool,
}

/// A secret from the config: literal, or `env:NAME` read at load time. Never printed.
#[derive(Clone)]
pub struct Secret(pub(crate) SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
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
    pub steps: Vec<FlowStep>,
    pub file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowStep {
    /// Wait this long after the previous step.
    Wait(Duration),
    /// Send this template to the customer.
    Send { template: String },
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
