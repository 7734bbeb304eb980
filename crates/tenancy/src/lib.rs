//! Tenant configuration as code. A tenant (one shop) is a directory:
//!
//! ```text
//! tenants/<tenant-id>/
//!   tenant.toml          sender identity, brand kit, tracking switches, webhook secrets,
//!                        marketing topics
//!   flows/*.toml         one flow per file: trigger, lane, steps
//!   templates/*.mjml     MiniJinja + MJML templates (override the built-in ones)
//! ```
//!
//! Loading validates everything it can without rendering (syntax, types, addresses,
//! colours, references between flows and templates) and reports every problem as
//! `file:line:column: message`. Nothing is applied unless the whole directory is valid.
//! Template syntax is checked by the renderer, which owns template semantics.
//!
//! Secrets (provider keys, webhook and DKIM secrets; a literal or `env:NAME`) are resolved
//! by [`Tenants::load_dir`]. Services that use none load with
//! [`Tenants::load_dir_without_secrets`], which checks the same things but reads no
//! environment variable and keeps no secret value.

mod error;
mod lang;
mod model;
mod parse;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use contracts::TenantId;

pub use error::{ConfigError, ConfigErrors};
pub use lang::Lang;
pub use model::{
    Brand, Condition, CrossSell, Delivery, Dkim, Direction, Flow, FlowStep, Offer, OfferExpiry,
    OfferKind, ProductPick, Provider, Secret, SenderIdentity, ShipmentSettings, SourceSecrets,
    Tenant, TemplateSource, Topic, Tracking,
};

/// Every tenant known to this process, by id.
#[derive(Debug, Default, Clone)]
pub struct Tenants {
    by_id: BTreeMap<TenantId, Arc<Tenant>>,
}

impl Tenants {
    /// Loads every subdirectory of `root` as a tenant. All errors of all tenants are
    /// collected; on any error nothing is returned. Every `env:NAME` secret is read from
    /// the environment, and a variable that is not set is an error.
    pub fn load_dir(root: &Path) -> Result<Self, ConfigErrors> {
        parse::load_root(root, parse::Secrets::Resolve)
    }

    /// Loads and validates like [`Tenants::load_dir`], except that no secret is resolved:
    /// no environment variable is read, and every [`Secret`] in the result is unresolved
    /// (it holds no value, not even a literal one from the file). For services that use no
    /// secret, so that they neither need the tenants' credentials nor fail to start when
    /// one is missing.
    pub fn load_dir_without_secrets(root: &Path) -> Result<Self, ConfigErrors> {
        parse::load_root(root, parse::Secrets::Leave)
    }

    pub fn get(&self, id: &TenantId) -> Option<&Arc<Tenant>> {
        self.by_id.get(id)
    }

    /// Looks a tenant up by the raw path segment of a URL; `None` if it is not a valid id
    /// or not configured.
    pub fn find(&self, raw: &str) -> Option<&Arc<Tenant>> {
        TenantId::parse(raw).ok().and_then(|id| self.by_id.get(&id))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.by_id.values()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn from_tenants(tenants: impl IntoIterator<Item = Tenant>) -> Self {
        Self { by_id: tenants.into_iter().map(|t| (t.id.clone(), Arc::new(t))).collect() }
    }
}
