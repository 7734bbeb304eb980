//! Routes a webhook to its source's adapter, and lets adapters read axum's headers.

use axum::http::HeaderMap;
use contracts::TenantId;
use time::OffsetDateTime;

use crate::sources::{
    AdapterError, Headers, Parsed, aftership, easypost, postflow, seventeen_track, shippo, shopify, woocommerce,
};

/// The sources this build accepts, as they appear in `/v1/webhooks/{tenant}/{source}`.
pub const KNOWN: &[&str] = &["shopify", "woocommerce", "postflow", "easypost", "aftership", "shippo", "17track"];

/// axum's header map seen through the adapters' [`Headers`] trait, plus the URL's
/// `token` query parameter for platforms that can only put a shared secret in the URL
/// (Shippo): it is offered to adapters as the `x-postflow-token` header when that header
/// is absent.
pub struct HttpHeaders<'a> {
    pub headers: &'a HeaderMap,
    pub url_token: Option<&'a str>,
}

impl Headers for HttpHeaders<'_> {
    fn get(&self, lowercase_name: &str) -> Option<&str> {
        let header = self.headers.get(lowercase_name).and_then(|v| v.to_str().ok());
        match (header, lowercase_name) {
            (None, "x-postflow-token") => self.url_token,
            (h, _) => h,
        }
    }
}

/// Verifies the signature (before reading the body) and parses the delivery.
pub fn verify_and_parse(
    source: &str,
    secrets: &[&[u8]],
    tenant: &TenantId,
    headers: &HttpHeaders,
    body: &[u8],
    received_at: OffsetDateTime,
) -> Result<Parsed, AdapterError> {
    match source {
        "shopify" => shopify::verify_and_parse(secrets, tenant, headers, body, received_at),
        "woocommerce" => woocommerce::verify_and_parse(secrets, tenant, headers, body, received_at),
        "postflow" => postflow::verify_and_parse(secrets, tenant, headers, body, received_at),
        "easypost" => easypost::verify_and_parse(secrets, tenant, headers, body, received_at),
        "aftership" => aftership::verify_and_parse(secrets, tenant, headers, body, received_at),
        "shippo" => shippo::verify_and_parse(secrets, tenant, headers, body, received_at),
        "17track" => seventeen_track::verify_and_parse(secrets, tenant, headers, body, received_at),
        _ => Err(AdapterError::Invalid("unknown source".into())),
    }
}
