//! Per tenant: which transport carries its mail, with which envelope sender, which DKIM key
//! signs it and which send-rate limits apply. Built once at start from the tenants
//! directory; a key or provider account that cannot work is a startup error naming the
//! tenant.
//!
//! The envelope sender (`MAIL FROM`, the `Return-Path` the recipient's server records) is
//! where asynchronous bounces go. Over the SMTP relay it is the tenant's `[delivery]
//! bounce_address` when set — an address whose mail is piped to the DSN intake
//! (`POST /v1/feedback/{tenant}/dsn`) — else the message's From address, as before: an
//! address the shop already runs, where a guessed default like `bounces@` might not exist
//! (and receivers that verify the envelope sender with a callout would refuse the mail).
//! HTTP providers choose their own (SES, Postmark, SendGrid and Mailgun take the bounces
//! and report them by webhook).

use std::collections::HashMap;
use std::sync::Arc;

use contracts::TenantId;
use kit::Clock;
use lettre::Address;
use tenancy::Tenants;

use crate::dkim;
use crate::ratelimit::Limits;
use crate::transport::{self, Accepted, BoxFuture, Claim, Failure, HttpClients, Outgoing, Transport};

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
                Ok(None) => match &tenant.delivery.bounce_address {
                    None => smtp.clone(),
                    Some(bounce) => match crate::mime::address(bounce) {
                        Ok(mail_from) => Arc::new(EnvelopeSender { relay: smtp.clone(), mail_from }),
                        Err(e) => {
                            errors.push(format!("tenant {}: delivery bounce_address: {e:#}", tenant.id));
                            continue;
                        }
                    },
                },
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
                bounce_address = tenant.delivery.bounce_address.as_ref().map(|a| a.as_str()),
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

/// The SMTP relay with the tenant's own envelope sender: everything as the relay does it
/// (same pool, same claim), except that `MAIL FROM` is the tenant's bounce address.
struct EnvelopeSender {
    relay: Arc<dyn Transport>,
    mail_from: Address,
}

impl Transport for EnvelopeSender {
    fn name(&self) -> &'static str {
        self.relay.name()
    }

    fn sends_our_mime(&self) -> bool {
        self.relay.sends_our_mime()
    }

    fn send<'a>(&'a self, out: &'a Outgoing<'a>, claim: &'a dyn Claim) -> BoxFuture<'a, Result<Accepted, Failure>> {
        Box::pin(async move {
            let out = Outgoing { from: &self.mail_from, ..*out };
            self.relay.send(&out, claim).await
        })
    }
}
