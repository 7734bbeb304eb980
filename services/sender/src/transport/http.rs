//! The HTTP providers' common part: the per-lane clients, the claim-then-request
//! exchange, and how an answer that a provider does not document more precisely is read.

use std::sync::Arc;
use std::time::Duration;

use contracts::Lane;
use kit::Clock;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use tenancy::{Provider, Tenant};
use time::OffsetDateTime;

use super::mailgun::Mailgun;
use super::sendgrid::Sendgrid;
use super::ses::Ses;
use super::{Accepted, BoxFuture, Claim, Failure, Outgoing, Transport};

/// `[providers]`: how the sender talks to the providers' HTTP APIs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderSettings {
    /// Limit for one API request, from connecting to the end of the answer. Keep it well
    /// below `claim_lease`.
    #[serde(deserialize_with = "kit::settings::secs")]
    pub timeout: Duration,
    #[serde(deserialize_with = "kit::settings::secs")]
    pub connect_timeout: Duration,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(30), connect_timeout: Duration::from_secs(10) }
    }
}

/// One HTTP client (and so one connection pool) per lane, shared by all tenants: a slow
/// marketing send never holds a connection an order confirmation waits for.
#[derive(Clone)]
pub struct HttpClients {
    tx: reqwest::Client,
    mkt: reqwest::Client,
}

impl HttpClients {
    /// Needs a rustls crypto provider installed for the process (the sender installs ring).
    pub fn new(settings: &ProviderSettings) -> anyhow::Result<Self> {
        let build = || {
            reqwest::Client::builder()
                .timeout(settings.timeout)
                .connect_timeout(settings.connect_timeout)
                // A redirected POST could be replayed as a GET elsewhere: not followed.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("postflow-sender/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        Ok(Self { tx: build()?, mkt: build()? })
    }

    /// The client for everything that is not a send (the SNS certificate fetch and
    /// subscription confirmation of the feedback endpoint): the marketing lane's, so it
    /// never takes a connection an order confirmation waits for.
    pub fn other(&self) -> reqwest::Client {
        self.mkt.clone()
    }

    pub(super) fn lane(&self, lane: Lane) -> &reqwest::Client {
        match lane {
            Lane::Transactional => &self.tx,
            Lane::Marketing => &self.mkt,
        }
    }
}

/// The HTTP transport for a tenant's provider, or `None` for the SMTP relay.
pub fn for_tenant(tenant: &Tenant, clients: &HttpClients, clock: &Arc<dyn Clock>) -> anyhow::Result<Option<Arc<dyn Transport>>> {
    fn wrap<A: Api>(api: A, clients: &HttpClients, clock: &Arc<dyn Clock>) -> Arc<dyn Transport> {
        Arc::new(HttpTransport { api, clients: clients.clone(), clock: clock.clone() })
    }
    let d = &tenant.delivery;
    Ok(Some(match d.provider {
        Provider::Smtp => return Ok(None),
        Provider::Ses => wrap(Ses::new(d)?, clients, clock),
        // Postmark batches the messages that queue up behind a request (see postmark.rs).
        Provider::Postmark => super::postmark::transport(d, clients)?,
        Provider::Sendgrid => wrap(Sendgrid::new(d)?, clients, clock),
        Provider::Mailgun => wrap(Mailgun::new(d)?, clients, clock),
    }))
}

/// A provider's answer, read completely.
pub(super) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as one line of text, cut to a length a log and a bounce reason can carry.
    pub fn text(&self) -> String {
        one_line(&String::from_utf8_lossy(&self.body))
    }
}

/// One provider's API.
pub(super) trait Api: Send + Sync + 'static {
    const NAME: &'static str;
    /// See [`Transport::sends_our_mime`].
    const SENDS_OUR_MIME: bool;

    /// The request that sends `out`; built before the claim, so a message the API cannot
    /// carry is never claimed.
    fn request(&self, client: &reqwest::Client, out: &Outgoing<'_>, now: OffsetDateTime) -> anyhow::Result<reqwest::Request>;

    /// The provider's message id, or why the message was not taken.
    fn outcome(&self, answer: &Answer) -> Result<String, Failure>;
}

struct HttpTransport<A> {
    api: A,
    clients: HttpClients,
    clock: Arc<dyn Clock>,
}

impl<A: Api> HttpTransport<A> {
    async fn deliver(&self, out: &Outgoing<'_>, claim: &dyn Claim) -> Result<Accepted, Failure> {
        let client = self.clients.lane(out.msg.lane);
        let request = self.api.request(client, out, self.clock.now()).map_err(|e| Failure::Invalid(format!("{}: {e:#}", A::NAME)))?;
        // There is no "354" moment over HTTP: the claim comes before the request.
        if !claim.claim().await {
            return Err(Failure::NotClaimed);
        }
        match exchange(A::NAME, client, request).await? {
            Exchange::Answered(answer) => self.api.outcome(&answer).map(|response| Accepted { response }),
            // The status line said it was taken; only the details got lost.
            Exchange::Unreadable { status, error } => {
                Ok(Accepted { response: format!("{} {status}; answer unreadable: {error}", A::NAME) })
            }
        }
    }
}

/// How a request that went out ended, when it got an answer.
pub(super) enum Exchange {
    /// The answer, read completely (a non-2xx body that could not be read is empty).
    Answered(Answer),
    /// A 2xx whose body could not be read: taken, but the details are lost.
    Unreadable { status: u16, error: String },
}

/// Makes one request and reads its answer. No answer is a [`Failure`]: `Temporary` when no
/// connection was made (so nothing was sent), `Unknown` when the request may have reached
/// the provider (a timeout waiting for the answer, a connection reset after writing it).
pub(super) async fn exchange(provider: &str, client: &reqwest::Client, request: reqwest::Request) -> Result<Exchange, Failure> {
    let response = match client.execute(request).await {
        Ok(r) => r,
        // No connection, so no request: nothing was sent.
        Err(e) if e.is_connect() => return Err(Failure::Temporary(format!("{provider}: {}", describe(&e)))),
        // The request may have reached the provider.
        Err(e) => return Err(Failure::Unknown(format!("{provider}: {}", describe(&e)))),
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = match response.bytes().await {
        Ok(b) => b.to_vec(),
        Err(e) if (200..300).contains(&status) => return Ok(Exchange::Unreadable { status, error: describe(&e) }),
        Err(_) => Vec::new(),
    };
    Ok(Exchange::Answered(Answer { status, headers, body }))
}

impl<A: Api> Transport for HttpTransport<A> {
    fn name(&self) -> &'static str {
        A::NAME
    }

    fn sends_our_mime(&self) -> bool {
        A::SENDS_OUR_MIME
    }

    fn send<'a>(&'a self, out: &'a Outgoing<'a>, claim: &'a dyn Claim) -> BoxFuture<'a, Result<Accepted, Failure>> {
        Box::pin(self.deliver(out, claim))
    }
}

/// The generic reading of a refusal, for answers a provider does not document otherwise.
/// Account problems (credentials, payment, a sending domain the provider does not know)
/// are temporary: an operator can fix them, and suppressing every recipient of a
/// misconfigured tenant would be far worse than retrying. Other 4xx reject the message.
pub(super) fn refusal(provider: &str, status: u16, detail: &str) -> Failure {
    match status {
        401..=403 => Failure::Temporary(format!("{provider} {status}, account refused: {detail}")),
        404 => Failure::Temporary(format!("{provider} {status}, endpoint or sending domain not found: {detail}")),
        408 | 429 => Failure::Temporary(format!("{provider} {status}: {detail}")),
        400..=499 => Failure::Permanent(format!("{provider} {status}: {detail}")),
        // 5xx, and anything that is not an answer about the message at all.
        _ => Failure::Temporary(format!("{provider} {status}: {detail}")),
    }
}

/// The base URL: the tenant's override, else the provider's; without a trailing slash.
pub(super) fn base(endpoint: Option<&String>, default: String) -> String {
    endpoint.cloned().unwrap_or(default).trim_end_matches('/').to_owned()
}

pub(super) fn parse_url(provider: &str, url: &str) -> anyhow::Result<reqwest::Url> {
    reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("{provider} endpoint {url:?}: {e}"))
}

pub(super) fn secret<'a>(provider: &str, field: &str, value: Option<&'a tenancy::Secret>) -> anyhow::Result<&'a tenancy::Secret> {
    value.ok_or_else(|| anyhow::anyhow!("provider {provider} needs {field}"))
}

/// A mailbox as the JSON APIs take it: `"Name" <address>` or the bare address.
pub(super) fn mailbox(m: &contracts::Mailbox) -> String {
    match &m.name {
        Some(name) => format!("\"{}\" <{}>", name.replace('\\', "\\\\").replace('"', "\\\""), m.email),
        None => m.email.to_string(),
    }
}

fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn one_line(s: &str) -> String {
    let mut out: String = s.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).take(500).collect();
    out.truncate(out.trim_end().len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_split_account_problems_from_rejections() {
        assert!(matches!(refusal("x", 400, "bad"), Failure::Permanent(m) if m == "x 400: bad"));
        assert!(matches!(refusal("x", 413, "too big"), Failure::Permanent(_)));
        for status in [401, 402, 403, 404, 408, 429, 500, 502, 503, 504, 302] {
            assert!(matches!(refusal("x", status, ""), Failure::Temporary(_)), "{status}");
        }
    }

    #[test]
    fn mailboxes_are_quoted() {
        let email = contracts::EmailAddress::parse("a@b.example").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mailbox(&contracts::Mailbox { name: None, email: email.clone() }), "a@b.example");
        assert_eq!(mailbox(&contracts::Mailbox { name: Some("Jo \"J\" Doe".into()), email }), "\"Jo \\\"J\\\" Doe\" <a@b.example>");
    }

    #[test]
    fn bodies_become_one_bounded_line() {
        let a = Answer { status: 400, headers: HeaderMap::new(), body: format!(" a\nb\t{} ", "x".repeat(600)).into_bytes() };
        let text = a.text();
        assert!(text.starts_with("a b "), "{text}");
        assert_eq!(text.chars().count(), 500);
    }
}
