//! Per tenant: which transport carries its mail, which DKIM key signs it and which send-rate
//! limits apply. Built once at start from the tenants directory; a key or provider account
//! that cannot work is a startup error naming the tenant.

use std::collections::HashMap;
use std::sync::Arc;

use contracts::TenantId;
use kit::Clock;
use tenancy::Tenants;

use crate::dkim;
use crate::ratelimit::Limits;
use crate::transport::{self, HttpClients, Transport};

pub struct Route {
    pub transport: Arc<dyn Transport>,
    /// Set when the tenant has a DKIM key and the transport sends our MIME as is.
    pub dkim: Option<dkim::Signer>,
    /// `max_per_second` and `max_per_second_per_domain`, shared by all replicas.
    pub limits: Limits,
}

#[derive(Default)]
pub struct Routes {
    by_tenant: HashMap<TenantId, Route>,
}

impl Routes {
    pub fn build(tenants: &Tenants, smtp: Arc<dyn Transport>, http: &HttpClients, clock: &Arc<dyn Clock>) -> anyhow::Result<Self> {
        let mut by_tenant = HashMap::new();
        let mut errors = Vec::new();
        for tenant in tenants.iter() {
            let transport = match transport::for_tenant(tenant, http, clock) {
                Ok(Some(t)) => t,
                Ok(None) => smtp.clone(),
                Err(e) => {
                    errors.push(format!("tenant {}: delivery: {e:#}", tenant.id));
                    continue;
                }
            };
            let signer = match &tenant.dkim {
                None => None,
                Some(d) => match dkim::Signer::from_pem(&d.domain, &d.selector, d.private_key.expose()) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        errors.push(format!("tenant {}: dkim private_key: {e}", tenant.id));
                        continue;
                    }
                },
            };
            let dkim = match signer {
                Some(_) if !transport.sends_our_mime() => {
                    tracing::warn!(
                        tenant = %tenant.id,
                        provider = transport.name(),
                        "the provider builds the message itself, so it is signed with the DKIM key of the provider account, not [dkim]"
                    );
                    None
                }
                other => other,
            };
            let limits = Limits::of(&tenant.delivery);
            tracing::info!(
                tenant = %tenant.id,
                provider = transport.name(),
                dkim = dkim.as_ref().map(|s| s.algorithm()),
                max_per_second = limits.per_second,
                max_per_second_per_domain = limits.per_domain,
                "route"
            );
            by_tenant.insert(tenant.id.clone(), Route { transport, dkim, limits });
        }
        if !errors.is_empty() {
            anyhow::bail!("tenant delivery config is unusable:\n{}", errors.join("\n"));
        }
        Ok(Self { by_tenant })
    }

    pub fn get(&self, tenant: &TenantId) -> Option<&Route> {
        self.by_tenant.get(tenant)
    }
}
