//! Postmark: `POST /email`, and `POST /email/batch` for the messages that queue up behind a
//! request in flight; both with the `X-Postmark-Server-Token` header.
//!
//! Postmark takes the message as JSON fields and builds the MIME itself (signing it with
//! the DKIM key of the Postmark account), so our headers travel in `Headers` and our
//! message id in `Metadata`, which Postmark repeats in its bounce and delivery webhooks.
//! Each lane goes to its message stream, the tenant's `[delivery] transactional_stream`
//! and `marketing_stream` (default `outbound` and `broadcast`): Postmark requires
//! marketing mail on a broadcast stream.
//!
//! Batching. `/email/batch` takes an array of up to 500 of the objects `/email` takes (50 MB
//! in all) and answers with a result per message, in order, with status 200 even when some
//! were refused: `ErrorCode` 0 and the `MessageID`, or the code that refused that message.
//! Batches form naturally, with no timer: each tenant (its Postmark server) has a queue per
//! lane, and while no request of that queue is in flight a message goes out at once, alone,
//! over `/email`. Messages that arrive while a request is in flight wait, and go together as
//! the next request (`/email/batch`, up to [`MAX_MESSAGES`] and [`MAX_BYTES`]). An idle lane
//! never waits; a busy one makes one request per round trip instead of one per message.
//! Batches are as large as the messages in flight allow: a replica handles at most
//! `marketing_concurrency` (`transactional_concurrency`) messages of a lane at once.
//! `sender_postmark_batch_size` records how many messages each request carried.
//!
//! Exactly once, per message. A message that waits is not claimed yet: when its request is
//! formed, its own attempt (which holds its [`Claim`]) claims it and says so, and only the
//! messages claimed go into the request. A crash while a message waits leaves nothing
//! claimed, and its redelivery sends it normally; a message whose claim is refused is left
//! out. A claim is therefore no older when its request goes than over `/email` (a batch's
//! claims are taken concurrently), and `claim_lease` needs no more room. The answer is read
//! per message exactly as `/email`'s is: a result with `ErrorCode` 0 is `sent` with its
//! `MessageID`; a non-zero code is what the same code answered by `/email` (a 422) would
//! be — the account's setup (a bad token, a sender signature, a missing message stream, no
//! credits) or Postmark's state (maintenance, its rate limit) is temporary, anything else
//! about the message or recipient (300 invalid address) a permanent bounce of that
//! recipient alone, except 406 (inactive recipient), which is Postmark's own suppression
//! on that stream (a bounce, a complaint, or an unsubscribe on a broadcast stream): the
//! message is recorded `suppressed` and the address suppressed for that lane only. An answer about the whole request (429, 5xx, an account
//! refusal) is every message's: not taken, released and retried; a request refused as a
//! whole says nothing about its recipients, so it never bounces them. A request that went
//! out and got no usable answer (a timeout, a reset connection, a 200 whose results cannot
//! be matched to the messages) leaves every message in it `Unknown`: each keeps its claim
//! and becomes `indeterminate` after the lease, never sent again.
//!
//! That is the trade-off of batching: one lost answer makes every message of the batch
//! indeterminate rather than one (Postmark documents no idempotency key for either endpoint),
//! hence the bounds. A lone message goes over `/email` as before batching, so a quiet
//! tenant's exchanges with Postmark are unchanged.
//!
//! The other providers' bulk APIs do not fit, so they send one request per message: SES v2
//! `SendBulkEmail` takes one stored template (`DefaultContent.Template`) and per-recipient
//! replacement data, not raw messages (ours are DKIM-signed MIME); SendGrid's
//! `personalizations` change the envelope, subject, headers and substitutions per
//! recipient but share one body; Mailgun's batch sending is one message with
//! `%recipient.…%` variables. Each of our messages is rendered for its recipient (its
//! tracking tokens, its unsubscribe link), so none of them can be a template's variation.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use contracts::{Lane, OutboundMessage};
use serde::Deserialize;
use serde_json::json;
use tenancy::Delivery;
use tokio::sync::oneshot;
use tracing::Instrument;

use super::http::{Answer, Exchange, HttpClients, base, exchange, mailbox, parse_url, refusal, secret};
use super::{Accepted, BoxFuture, Claim, Failure, Outgoing, Transport};

/// Postmark's "inactive recipient": the address is suppressed on the message's stream.
const INACTIVE_RECIPIENT: i64 = 406;

/// Postmark's limit of messages in one `/email/batch` request.
const MAX_MESSAGES: usize = 500;

/// The body size a batch is kept under: Postmark's 50 MB less a tenth, so that how Postmark
/// counts a megabyte never matters.
const MAX_BYTES: usize = 45_000_000;

/// The tenant's Postmark server as a transport, batching per lane (see the module docs).
pub(super) fn transport(d: &Delivery, clients: &HttpClients) -> anyhow::Result<Arc<dyn Transport>> {
    Ok(Arc::new(Batching::new(Postmark::new(d)?, clients)))
}

pub(super) struct Postmark {
    /// `/email` and `/email/batch`.
    url: reqwest::Url,
    batch_url: reqwest::Url,
    token: tenancy::Secret,
    /// The message stream ids, transactional and marketing.
    streams: (String, String),
}

impl Postmark {
    pub fn new(d: &Delivery) -> anyhow::Result<Self> {
        let base = base(d.endpoint.as_ref(), "https://api.postmarkapp.com".into());
        let token = secret("postmark", "api_key", d.api_key.as_ref())?.clone();
        // Checked here, so that building a request (after the claims) cannot fail on it.
        reqwest::header::HeaderValue::from_str(token.expose()).map_err(|_| anyhow::anyhow!("postmark api_key is not a valid header value"))?;
        Ok(Self {
            url: parse_url("postmark", &format!("{base}/email"))?,
            batch_url: parse_url("postmark", &format!("{base}/email/batch"))?,
            token,
            streams: (d.stream(Lane::Transactional).to_owned(), d.stream(Lane::Marketing).to_owned()),
        })
    }

    /// The JSON object `/email` takes for `msg`, and each element of `/email/batch`.
    fn message(&self, msg: &OutboundMessage) -> serde_json::Value {
        let headers: Vec<_> = msg.headers.iter().map(|(name, value)| json!({ "Name": name, "Value": value })).collect();
        let mut body = json!({
            "From": mailbox(&msg.from),
            "To": mailbox(&msg.to),
            "Subject": msg.subject,
            "HtmlBody": msg.html,
            "TextBody": msg.text,
            "Headers": headers,
            // Postflow tracks opens and clicks itself.
            "TrackOpens": false,
            "TrackLinks": "None",
            "Metadata": { "postflow_message_id": msg.message_id.as_str() },
            "MessageStream": match msg.lane {
                Lane::Transactional => &self.streams.0,
                Lane::Marketing => &self.streams.1,
            },
        });
        if let Some(reply_to) = &msg.reply_to {
            body["ReplyTo"] = json!(mailbox(reply_to));
        }
        body
    }

    /// `POST` of a JSON body (one message to `/email`, an array to `/email/batch`).
    fn post(&self, client: &reqwest::Client, url: &reqwest::Url, body: Vec<u8>) -> anyhow::Result<reqwest::Request> {
        Ok(client
            .post(url.clone())
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .header("X-Postmark-Server-Token", self.token.expose())
            .body(body)
            .build()?)
    }

    /// `/email`'s answer: the provider's message id, or why the message was not taken.
    fn outcome(&self, answer: &Answer) -> Result<String, Failure> {
        if answer.ok() {
            let reply: Option<Reply> = serde_json::from_slice(&answer.body).ok();
            return Ok(reply.and_then(|r| r.message_id).unwrap_or_else(|| format!("postmark {}", answer.status)));
        }
        Err(self.refused(answer))
    }

    /// Why a request was not taken, from an answer that is not a 2xx.
    fn refused(&self, answer: &Answer) -> Failure {
        let Some(reply) = serde_json::from_slice::<Reply>(&answer.body).ok() else {
            return refusal("postmark", answer.status, &answer.text());
        };
        if answer.status != 422 {
            return refusal("postmark", answer.status, &reply.detail());
        }
        // 422 is Postmark's "we read your request and will not send it"; the code says why.
        reply.refusal("postmark 422")
    }

    /// `/email/batch`'s answer for the `n` messages of the request, in their order.
    fn batch_outcome(&self, answer: &Answer, n: usize) -> Vec<Result<String, Failure>> {
        if !answer.ok() {
            // About the request, so about every message in it; read as `/email`'s answer
            // would be, except that a refusal of the whole request is no recipient's fault.
            let failure = match self.refused(answer) {
                Failure::Permanent(reason) => Failure::Temporary(format!("{reason} (the batch as a whole)")),
                other => other,
            };
            return vec![Err(failure); n];
        }
        let results: Vec<Reply> = match serde_json::from_slice::<Vec<Reply>>(&answer.body) {
            Ok(r) if r.len() == n => r,
            // Taken in a way we cannot read: which of the messages went is unknown.
            Ok(r) => return vec![Err(Failure::Unknown(format!("postmark batch {}: {} results for {n} messages", answer.status, r.len()))); n],
            Err(e) => return vec![Err(Failure::Unknown(format!("postmark batch {}: unreadable results ({e}): {}", answer.status, answer.text()))); n],
        };
        results
            .into_iter()
            .map(|r| match r.error_code {
                0 => Ok(r.message_id.unwrap_or_else(|| format!("postmark {}", answer.status))),
                _ => Err(r.refusal("postmark batch")),
            })
            .collect()
    }
}

/// Postmark's `ErrorCode`s that describe the account, not the message: a bad token (10), a
/// sender signature that is missing or unconfirmed (400, 401), no credits (405), an account
/// pending review or not allowed to send (412, 413).
const ACCOUNT_ERRORS: &[i64] = &[10, 400, 401, 405, 412, 413];

/// Postmark's `ErrorCode`s that describe Postmark's state at the moment: maintenance (100),
/// the rate limit (429). Normally the status of the whole answer (503, 429) says so; in a
/// batch's result for one message they mean the same.
const BUSY_ERRORS: &[i64] = &[100, 429];

/// One Postmark result: `/email`'s answer, or one element of `/email/batch`'s.
#[derive(Deserialize)]
struct Reply {
    #[serde(rename = "ErrorCode", default)]
    error_code: i64,
    #[serde(rename = "Message", default)]
    message: String,
    #[serde(rename = "MessageID")]
    message_id: Option<String>,
}

impl Reply {
    fn detail(&self) -> String {
        format!("ErrorCode {}: {}", self.error_code, self.message.trim())
    }

    /// Postmark refused this message: why, as a [`Failure`]. The same for `/email`'s 422
    /// and for a result in `/email/batch`'s answer.
    fn refusal(&self, what: &str) -> Failure {
        let detail = self.detail();
        let account = ACCOUNT_ERRORS.contains(&self.error_code)
            // 300 (invalid request) also reports a From address without a confirmed sender
            // signature: the tenant's setup, not the recipient.
            || (self.error_code == 300 && self.message.contains("'From'"))
            // A message stream the server does not have (e.g. no stream with the id in
            // `marketing_stream`) is the tenant's setup too.
            || self.message.to_ascii_lowercase().contains("stream");
        if account {
            Failure::Temporary(format!("{what}, account refused: {detail}"))
        } else if BUSY_ERRORS.contains(&self.error_code) {
            Failure::Temporary(format!("{what}: {detail}"))
        } else if self.error_code == INACTIVE_RECIPIENT {
            // Postmark suppresses the address on this stream: it bounced or complained, or
            // (on a broadcast stream) unsubscribed there. Not a new bounce of ours.
            Failure::Inactive(format!("{what}: {detail}"))
        } else {
            // 300 (invalid recipient or content), and the rest.
            Failure::Permanent(format!("{what}: {detail}"))
        }
    }
}

/// The body of `/email/batch`: the messages' JSON objects as one array.
fn batch_body(messages: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::with_capacity(messages.iter().map(|m| m.len() + 1).sum::<usize>() + 2);
    body.push(b'[');
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(m);
    }
    body.push(b']');
    body
}

// ---------------------------------------------------------------- batching

struct Batching {
    shared: Arc<Shared>,
}

impl Batching {
    fn new(api: Postmark, clients: &HttpClients) -> Self {
        Self { shared: Arc::new(Shared { api, clients: clients.clone(), tx: Queue::default(), mkt: Queue::default() }) }
    }
}

struct Shared {
    api: Postmark,
    clients: HttpClients,
    /// The messages of each lane that wait for their request.
    tx: Queue,
    mkt: Queue,
}

#[derive(Default)]
struct Queue(Mutex<QueueState>);

#[derive(Default)]
struct QueueState {
    waiting: VecDeque<Waiting>,
    /// A task is sending this queue's requests; it takes what waits when its request is done.
    driving: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A message waiting for its request: its JSON object, and how to tell its attempt that the
/// request is being formed.
struct Waiting {
    json: Vec<u8>,
    turn: oneshot::Sender<Turn>,
}

/// Given to a waiting attempt when its message is taken into a request: the attempt claims
/// the message, says whether it did over `claimed`, and waits for `outcome`.
struct Turn {
    claimed: oneshot::Sender<bool>,
    outcome: oneshot::Receiver<Result<Accepted, Failure>>,
}

/// A claimed message in a request being made.
struct Claimed {
    json: Vec<u8>,
    outcome: oneshot::Sender<Result<Accepted, Failure>>,
}

impl Transport for Batching {
    fn name(&self) -> &'static str {
        "postmark"
    }

    fn sends_our_mime(&self) -> bool {
        false
    }

    fn send<'a>(&'a self, out: &'a Outgoing<'a>, claim: &'a dyn Claim) -> BoxFuture<'a, Result<Accepted, Failure>> {
        Box::pin(async move {
            let json = serde_json::to_vec(&self.shared.api.message(out.msg)).map_err(|e| Failure::Invalid(format!("postmark: {e}")))?;
            // Nothing is claimed while the message waits: a crash now sends nothing.
            let Ok(turn) = self.shared.enqueue(out.msg.lane, json).await else {
                return Err(Failure::Temporary("postmark: the request this message waited for was abandoned; nothing was sent".into()));
            };
            let claimed = claim.claim().await;
            if !claimed {
                let _ = turn.claimed.send(false);
                return Err(Failure::NotClaimed);
            }
            if turn.claimed.send(true).is_err() {
                // The request was made without this message (its task is gone).
                return Err(Failure::Temporary("postmark: the request went without this message; nothing was sent".into()));
            }
            // Gone without an answer: the request may have carried it.
            turn.outcome.await.unwrap_or_else(|_| Err(Failure::Unknown("postmark: the request carrying this message was abandoned".into())))
        })
    }
}

impl Shared {
    fn queue(&self, lane: Lane) -> &Queue {
        match lane {
            Lane::Transactional => &self.tx,
            Lane::Marketing => &self.mkt,
        }
    }

    /// Queues a message; the returned receiver gets its [`Turn`]. Starts the lane's sending
    /// task when none runs, so a message to an idle lane goes at once.
    fn enqueue(self: &Arc<Self>, lane: Lane, json: Vec<u8>) -> oneshot::Receiver<Turn> {
        let (turn, receiver) = oneshot::channel();
        let start = {
            let mut state = self.queue(lane).lock();
            state.waiting.push_back(Waiting { json, turn });
            !std::mem::replace(&mut state.driving, true)
        };
        if start {
            let shared = self.clone();
            let span = tracing::info_span!("postmark_requests", lane = lane.token());
            tokio::spawn(async move { shared.drive(lane).await }.instrument(span));
        }
        receiver
    }

    /// Sends what waits in the lane's queue, one request at a time, until it is empty.
    async fn drive(self: Arc<Self>, lane: Lane) {
        let queue = self.queue(lane);
        let mut driving = Driving { queue, done: false };
        loop {
            let batch = {
                let mut state = queue.lock();
                let batch = take(&mut state.waiting, MAX_MESSAGES, MAX_BYTES);
                if batch.is_empty() {
                    state.driving = false;
                    driving.done = true;
                    return;
                }
                batch
            };
            self.request(lane, batch).await;
        }
    }

    /// One request for `batch`: each message's attempt claims it first (concurrently, in
    /// its own task); the claimed ones go, alone over `/email` or together over
    /// `/email/batch`, and each attempt gets its message's outcome.
    async fn request(&self, lane: Lane, batch: Vec<Waiting>) {
        let mut asked = Vec::with_capacity(batch.len());
        for w in batch {
            let (claimed, claimed_rx) = oneshot::channel();
            let (outcome, outcome_rx) = oneshot::channel();
            // An attempt that is gone has claimed nothing.
            if w.turn.send(Turn { claimed, outcome: outcome_rx }).is_ok() {
                asked.push((claimed_rx, Claimed { json: w.json, outcome }));
            }
        }
        let mut claimed = Vec::with_capacity(asked.len());
        for (answer, message) in asked {
            if answer.await == Ok(true) {
                claimed.push(message);
            }
        }
        if claimed.is_empty() {
            return;
        }
        metrics::histogram!("sender_postmark_batch_size", "lane" => lane.token()).record(claimed.len() as f64);
        tracing::debug!(messages = claimed.len(), "postmark request");
        let client = self.clients.lane(lane);
        let outcomes = if let [one] = claimed.as_slice() {
            vec![self.single(client, &one.json).await]
        } else {
            let jsons: Vec<&[u8]> = claimed.iter().map(|c| c.json.as_slice()).collect();
            self.batch(client, &jsons).await
        };
        for (message, outcome) in claimed.into_iter().zip(outcomes) {
            let _ = message.outcome.send(outcome);
        }
    }

    async fn single(&self, client: &reqwest::Client, json: &[u8]) -> Result<Accepted, Failure> {
        let request = self.api.post(client, &self.api.url, json.to_vec()).map_err(|e| Failure::Invalid(format!("postmark: {e:#}")))?;
        match exchange("postmark", client, request).await? {
            Exchange::Answered(answer) => self.api.outcome(&answer).map(|response| Accepted { response }),
            // The status line said it was taken; only the details got lost.
            Exchange::Unreadable { status, error } => Ok(Accepted { response: format!("postmark {status}; answer unreadable: {error}") }),
        }
    }

    /// The outcomes of the messages in `jsons`, in their order.
    async fn batch(&self, client: &reqwest::Client, jsons: &[&[u8]]) -> Vec<Result<Accepted, Failure>> {
        let n = jsons.len();
        let request = match self.api.post(client, &self.api.batch_url, batch_body(jsons)) {
            Ok(r) => r,
            Err(e) => return vec![Err(Failure::Invalid(format!("postmark: {e:#}"))); n],
        };
        match exchange("postmark", client, request).await {
            Err(failure) => vec![Err(failure); n],
            // Which of its messages Postmark took is in the body we could not read.
            Ok(Exchange::Unreadable { status, error }) => {
                vec![Err(Failure::Unknown(format!("postmark batch {status}; answer unreadable: {error}"))); n]
            }
            Ok(Exchange::Answered(answer)) => {
                self.api.batch_outcome(&answer, n).into_iter().map(|r| r.map(|response| Accepted { response })).collect()
            }
        }
    }
}

/// Ends a lane's sending task: when it stops without finishing (a panic, the runtime
/// shutting down), the messages still waiting are let go (their attempts see that nothing
/// was sent) and the next message starts a new task.
struct Driving<'a> {
    queue: &'a Queue,
    done: bool,
}

impl Drop for Driving<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let orphans = {
            let mut state = self.queue.lock();
            state.driving = false;
            std::mem::take(&mut state.waiting)
        };
        drop(orphans);
    }
}

/// The next request's messages, oldest first: at least one, then as many as fit under
/// `max_messages` and `max_bytes` (the array's brackets and commas counted). A single
/// message larger than `max_bytes` goes alone.
fn take(waiting: &mut VecDeque<Waiting>, max_messages: usize, max_bytes: usize) -> Vec<Waiting> {
    let mut batch = Vec::new();
    let mut bytes = 2;
    while let Some(next) = waiting.front() {
        let size = next.json.len() + usize::from(!batch.is_empty());
        if !batch.is_empty() && (batch.len() >= max_messages || bytes + size > max_bytes) {
            break;
        }
        bytes += size;
        batch.extend(waiting.pop_front());
    }
    batch
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use contracts::{Cause, EmailAddress, Mailbox, MessageId, TenantId};
    use reqwest::header::HeaderMap;
    use tokio::sync::{Semaphore, mpsc};

    use super::*;
    use crate::transport::ProviderSettings;

    fn clients(timeout: Duration) -> HttpClients {
        let _ = rustls::crypto::ring::default_provider().install_default();
        HttpClients::new(&ProviderSettings { timeout, connect_timeout: timeout }).unwrap_or_else(|e| panic!("{e}"))
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer { status, headers: HeaderMap::new(), body: body.as_bytes().to_vec() }
    }

    fn api() -> Postmark {
        Postmark {
            url: parse_url("postmark", "http://stub/email").unwrap_or_else(|e| panic!("{e}")),
            batch_url: parse_url("postmark", "http://stub/email/batch").unwrap_or_else(|e| panic!("{e}")),
            token: tenancy::Secret::new("t"),
            streams: ("outbound".into(), "broadcast".into()),
        }
    }

    fn message(to: &str, lane: Lane) -> OutboundMessage {
        let email = |s: &str| EmailAddress::parse(s).unwrap_or_else(|e| panic!("{e}"));
        OutboundMessage {
            spec: contracts::SPEC_VERSION,
            message_id: MessageId::derive(&[to]),
            tenant: TenantId::parse("shop").unwrap_or_else(|e| panic!("{e}")),
            lane,
            from: Mailbox { name: Some("Shop".into()), email: email("orders@shop.example") },
            reply_to: Some(Mailbox { name: None, email: email("help@shop.example") }),
            to: Mailbox { name: None, email: email(to) },
            subject: "Hi".into(),
            html: "<p>Hi</p>".into(),
            text: "Hi".into(),
            headers: vec![("List-Unsubscribe".into(), "<https://t.example/u/x>".into())],
            template: "t".into(),
            topic: None,
            cause: Cause { flow: "f".into(), run_id: uuid::Uuid::nil(), step: 0, event_id: uuid::Uuid::nil() },
        }
    }

    #[test]
    fn reads_postmark_answers() {
        let ok = r#"{"To":"a@b.example","SubmittedAt":"2025-01-01T00:00:00Z","MessageID":"b7bc2f4a-e38e-4336-af7d-e6c392c2f817","ErrorCode":0,"Message":"OK"}"#;
        assert_eq!(api().outcome(&answer(200, ok)), Ok("b7bc2f4a-e38e-4336-af7d-e6c392c2f817".into()));
        let inactive = r#"{"ErrorCode":406,"Message":"You tried to send to recipient(s) that have been marked as inactive."}"#;
        assert_eq!(
            api().outcome(&answer(422, inactive)),
            Err(Failure::Inactive("postmark 422: ErrorCode 406: You tried to send to recipient(s) that have been marked as inactive.".into()))
        );
        let unsigned = r#"{"ErrorCode":300,"Message":"Invalid 'From' address: 'x@y.example' is not a verified sender signature."}"#;
        assert!(matches!(api().outcome(&answer(422, unsigned)), Err(Failure::Temporary(_))));
        let no_stream = r#"{"ErrorCode":1235,"Message":"The message stream for the provided 'ID' was not found."}"#;
        assert!(matches!(api().outcome(&answer(422, no_stream)), Err(Failure::Temporary(_))));
        let bad_to = r#"{"ErrorCode":300,"Message":"Error parsing 'To': Illegal email address 'nope'."}"#;
        assert!(matches!(api().outcome(&answer(422, bad_to)), Err(Failure::Permanent(_))));
        for code in ACCOUNT_ERRORS {
            let body = format!(r#"{{"ErrorCode":{code},"Message":"account"}}"#);
            assert!(matches!(api().outcome(&answer(422, &body)), Err(Failure::Temporary(_))), "{code}");
        }
        let token = r#"{"ErrorCode":10,"Message":"No Account or Server API tokens were supplied in the HTTP headers."}"#;
        assert!(matches!(api().outcome(&answer(401, token)), Err(Failure::Temporary(_))));
        assert!(matches!(api().outcome(&answer(429, "")), Err(Failure::Temporary(_))));
        assert!(matches!(api().outcome(&answer(500, "<html>oops</html>")), Err(Failure::Temporary(m)) if m.contains("oops")));
    }

    #[test]
    fn a_batch_is_an_array_of_the_objects_email_takes() {
        let pm = api();
        let (a, b) = (message("ana@example.com", Lane::Marketing), message("bo@example.com", Lane::Marketing));
        let one = pm.message(&a);
        assert_eq!(one["To"], "ana@example.com");
        assert_eq!(one["From"], "\"Shop\" <orders@shop.example>");
        assert_eq!(one["ReplyTo"], "help@shop.example");
        assert_eq!(one["MessageStream"], "broadcast");
        assert_eq!(one["Metadata"]["postflow_message_id"], a.message_id.as_str());
        assert_eq!(one["Headers"], json!([{ "Name": "List-Unsubscribe", "Value": "<https://t.example/u/x>" }]));
        assert_eq!(pm.message(&message("c@example.com", Lane::Transactional))["MessageStream"], "outbound");

        let jsons = [serde_json::to_vec(&one).unwrap_or_default(), serde_json::to_vec(&pm.message(&b)).unwrap_or_default()];
        let parts: Vec<&[u8]> = jsons.iter().map(Vec::as_slice).collect();
        let body: serde_json::Value = serde_json::from_slice(&batch_body(&parts)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body, json!([one, pm.message(&b)]));
        assert_eq!(batch_body(&[]), b"[]");

        let client = clients(Duration::from_secs(5)).lane(Lane::Marketing).clone();
        let request = pm.post(&client, &pm.batch_url, batch_body(&parts)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(request.url().as_str(), "http://stub/email/batch");
        assert_eq!(request.headers()["x-postmark-server-token"], "t");
        assert_eq!(request.headers()["content-type"], "application/json");
        assert_eq!(request.headers()["accept"], "application/json");
    }

    #[test]
    fn reads_each_result_of_a_batch_like_a_lone_answer() {
        // Postmark's documented shape; one recipient inactive, one address invalid, one
        // sender signature unconfirmed (the account, so temporary).
        let body = r#"[
            {"ErrorCode":0,"Message":"OK","MessageID":"b7bc2f4a-e38e-4336-af7d-e6c392c2f817","SubmittedAt":"2010-11-26T12:01:05.1794748-05:00","To":"receiver1@example.com"},
            {"ErrorCode":406,"Message":"You tried to send to a recipient that has been marked as inactive. Found inactive addresses: nothing@example.com."},
            {"ErrorCode":300,"Message":"Error parsing 'To': Illegal email address 'nope'."},
            {"ErrorCode":400,"Message":"Sender signature not found"},
            {"ErrorCode":429,"Message":"Rate limit exceeded."},
            {"ErrorCode":0,"Message":"OK","MessageID":"e2ecbbfc-fe12-463d-b933-9fe22915106d","SubmittedAt":"2010-11-26T12:01:05.1794748-05:00","To":"receiver2@example.com"}
        ]"#;
        let results = api().batch_outcome(&answer(200, body), 6);
        assert_eq!(results[0], Ok("b7bc2f4a-e38e-4336-af7d-e6c392c2f817".into()));
        assert!(matches!(&results[1], Err(Failure::Inactive(m)) if m.starts_with("postmark batch: ErrorCode 406: ")), "{:?}", results[1]);
        assert!(matches!(&results[2], Err(Failure::Permanent(_))), "{:?}", results[2]);
        assert!(matches!(&results[3], Err(Failure::Temporary(m)) if m.contains("account refused")), "{:?}", results[3]);
        assert!(matches!(&results[4], Err(Failure::Temporary(_))), "{:?}", results[4]);
        assert_eq!(results[5], Ok("e2ecbbfc-fe12-463d-b933-9fe22915106d".into()));

        // The same code means the same thing alone and in a batch.
        for result in [
            r#"{"ErrorCode":406,"Message":"inactive"}"#,
            r#"{"ErrorCode":300,"Message":"Invalid 'From' address"}"#,
            r#"{"ErrorCode":1235,"Message":"The message stream for the provided 'ID' was not found."}"#,
            r#"{"ErrorCode":405,"Message":"Not allowed to send"}"#,
        ] {
            let kind = |r: Result<String, Failure>| r.err().map(|f| std::mem::discriminant(&f));
            let alone = kind(api().outcome(&answer(422, result)));
            let batched = kind(api().batch_outcome(&answer(200, &format!("[{result}]")), 1).remove(0));
            assert!(alone.is_some());
            assert_eq!(alone, batched, "{result}");
        }
    }

    #[test]
    fn an_answer_about_the_whole_batch_is_every_messages() {
        let all = |status, body: &str| api().batch_outcome(&answer(status, body), 3);
        for results in [
            all(503, r#"{"ErrorCode":100,"Message":"Maintenance"}"#),
            all(500, "<html>oops</html>"),
            all(429, r#"{"ErrorCode":429,"Message":"Rate limit exceeded."}"#),
            all(401, r#"{"ErrorCode":10,"Message":"Bad or missing API token"}"#),
            all(422, r#"{"ErrorCode":405,"Message":"Not allowed to send"}"#),
            // A refusal of the request itself is no recipient's fault: never a bounce.
            all(422, r#"{"ErrorCode":410,"Message":"Too many batch messages"}"#),
            all(422, r#"{"ErrorCode":402,"Message":"Invalid JSON"}"#),
            all(413, r#"{"ErrorCode":0,"Message":"Payload too large"}"#),
        ] {
            assert_eq!(results.len(), 3);
            for r in &results {
                assert!(matches!(r, Err(Failure::Temporary(_))), "{r:?}");
            }
        }
        // A 200 whose results cannot be matched to the messages: any of them may have gone.
        for body in [r#"[{"ErrorCode":0,"MessageID":"x"}]"#, r#"{"ErrorCode":0,"MessageID":"x"}"#, "", "[1,2,3]"] {
            for r in all(200, body) {
                assert!(matches!(r, Err(Failure::Unknown(_))), "{body}: {r:?}");
            }
        }
    }

    fn waiting(sizes: &[usize]) -> (VecDeque<Waiting>, Vec<oneshot::Receiver<Turn>>) {
        sizes
            .iter()
            .map(|&n| {
                let (turn, rx) = oneshot::channel();
                (Waiting { json: vec![b'x'; n], turn }, rx)
            })
            .unzip()
    }

    #[test]
    fn batches_are_bounded_by_count_and_size_in_arrival_order() {
        let (mut q, _rx) = waiting(&[10; 7]);
        let sizes = |b: &[Waiting]| b.iter().map(|w| w.json.len()).collect::<Vec<_>>();
        assert_eq!(take(&mut q, 3, 1000).len(), 3);
        assert_eq!(take(&mut q, 3, 1000).len(), 3);
        assert_eq!(take(&mut q, 3, 1000).len(), 1);
        assert!(take(&mut q, 3, 1000).is_empty());

        // `[` + 10 + `,` + 10 + `]` = 23 bytes: two fit in 23, not in 22.
        let (mut q, _rx) = waiting(&[10, 10, 10]);
        assert_eq!(take(&mut q, 500, 23).len(), 2);
        let (mut q, _rx) = waiting(&[10, 10, 10]);
        assert_eq!(take(&mut q, 500, 22).len(), 1);

        // A message over the size alone still goes (alone); order is kept.
        let (mut q, _rx) = waiting(&[50, 5, 6, 7]);
        assert_eq!(sizes(&take(&mut q, 500, 20)), [50]);
        assert_eq!(sizes(&take(&mut q, 500, 20)), [5, 6]);
        assert_eq!(sizes(&take(&mut q, 500, 20)), [7]);
        assert_eq!(take(&mut q, MAX_MESSAGES, MAX_BYTES).len(), 0);
    }

    // ------------------------------------------------------------ the queue, against a stub

    /// A claim that says yes or no, and counts how often it was asked.
    struct Verdict(bool, AtomicUsize);

    impl Claim for Verdict {
        fn claim(&self) -> BoxFuture<'_, bool> {
            self.1.fetch_add(1, Ordering::SeqCst);
            Box::pin(std::future::ready(self.0))
        }

        fn prepare(&self) -> BoxFuture<'_, Option<BoxFuture<'_, bool>>> {
            Box::pin(std::future::ready(None))
        }
    }

    /// Postmark's endpoints on a local port: `/email` answers `MessageID` = the recipient;
    /// `/email/batch` answers a result per message likewise, in order. Each request is
    /// reported on `seen` when it arrives; it is answered once `gate` gives a permit (or,
    /// with `hang_batches`, never).
    #[derive(Clone)]
    struct Stub {
        requests: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
        seen: mpsc::UnboundedSender<String>,
        gate: Arc<Semaphore>,
        hang_batches: bool,
    }

    async fn stub(hang_batches: bool) -> (String, Stub, mpsc::UnboundedReceiver<String>) {
        use axum::routing::post;
        async fn answer(stub: Stub, path: &str, body: axum::body::Bytes) -> axum::Json<serde_json::Value> {
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}"));
            stub.requests.lock().unwrap_or_else(PoisonError::into_inner).push((path.to_owned(), body.clone()));
            let _ = stub.seen.send(path.to_owned());
            if path == "/email/batch" && stub.hang_batches {
                std::future::pending::<()>().await;
            }
            stub.gate.acquire().await.unwrap_or_else(|e| panic!("{e}")).forget();
            let result = |m: &serde_json::Value| json!({ "ErrorCode": 0, "Message": "OK", "MessageID": m["To"], "To": m["To"] });
            axum::Json(match body.as_array() {
                Some(all) => all.iter().map(result).collect(),
                None => result(&body),
            })
        }
        let (seen, seen_rx) = mpsc::unbounded_channel();
        let stub = Stub { requests: Arc::default(), seen, gate: Arc::new(Semaphore::new(0)), hang_batches };
        let (s1, s2) = (stub.clone(), stub.clone());
        let app = axum::Router::new()
            .route("/email", post(move |b: axum::body::Bytes| answer(s1.clone(), "/email", b)))
            .route("/email/batch", post(move |b: axum::body::Bytes| answer(s2.clone(), "/email/batch", b)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), stub, seen_rx)
    }

    fn batching(base: &str, timeout: Duration) -> Batching {
        let d = Delivery {
            provider: tenancy::Provider::Postmark,
            endpoint: Some(base.to_owned()),
            api_key: Some(tenancy::Secret::new("t")),
            ..Delivery::default()
        };
        Batching::new(Postmark::new(&d).unwrap_or_else(|e| panic!("{e}")), &clients(timeout))
    }

    /// Sends `msg` from a task of its own, as a delivery attempt does.
    fn spawn_send(t: &Arc<Batching>, msg: OutboundMessage, claim: bool) -> tokio::task::JoinHandle<(Result<Accepted, Failure>, usize)> {
        let t = t.clone();
        tokio::spawn(async move {
            let address = |a: &EmailAddress| a.as_str().parse().unwrap_or_else(|e| panic!("{e}"));
            let (from, to) = (address(&msg.from.email), address(&msg.to.email));
            let out = Outgoing { msg: &msg, mime: b"", from: &from, to: &to };
            let verdict = Verdict(claim, AtomicUsize::new(0));
            let result = t.send(&out, &verdict).await;
            (result, verdict.1.load(Ordering::SeqCst))
        })
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let wait = async {
            while !done() {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait).await.unwrap_or_else(|_| panic!("waiting for {what}"));
    }

    fn waiting_in(t: &Batching, lane: Lane) -> usize {
        t.shared.queue(lane).lock().waiting.len()
    }

    #[tokio::test]
    async fn messages_that_arrive_during_a_request_go_together_as_the_next() {
        let (base, stub, mut seen) = stub(false).await;
        let t = Arc::new(batching(&base, Duration::from_secs(20)));
        let to = |n: &str| format!("{n}@example.com");

        // An idle lane: the first message goes at once, alone, over /email.
        let first = spawn_send(&t, message(&to("a"), Lane::Marketing), true);
        assert_eq!(seen.recv().await.as_deref(), Some("/email"));
        // While it is in flight, three more arrive and wait, unclaimed; c's claim will be
        // refused (another attempt holds it).
        let later: Vec<_> = [("b", true), ("c", false), ("d", true)]
            .into_iter()
            .map(|(n, claim)| spawn_send(&t, message(&to(n), Lane::Marketing), claim))
            .collect();
        until("three messages waiting", || waiting_in(&t, Lane::Marketing) == 3).await;
        // The other lane is not held up by this one.
        let tx = spawn_send(&t, message(&to("tx"), Lane::Transactional), true);
        assert_eq!(seen.recv().await.as_deref(), Some("/email"));

        stub.gate.add_permits(3);
        assert_eq!(first.await.unwrap_or_else(|e| panic!("{e}")), (Ok(Accepted { response: to("a") }), 1));
        assert_eq!(tx.await.unwrap_or_else(|e| panic!("{e}")), (Ok(Accepted { response: to("tx") }), 1));
        assert_eq!(seen.recv().await.as_deref(), Some("/email/batch"));
        let mut results = Vec::new();
        for task in later {
            results.push(task.await.unwrap_or_else(|e| panic!("{e}")));
        }
        assert_eq!(
            results,
            [
                (Ok(Accepted { response: to("b") }), 1),
                (Err(Failure::NotClaimed), 1),
                (Ok(Accepted { response: to("d") }), 1),
            ]
        );
        let requests = stub.requests.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(requests.len(), 3, "{requests:?}");
        let (path, body) = &requests[2];
        assert_eq!(path, "/email/batch");
        let recipients: Vec<_> = body.as_array().map(|a| a.iter().map(|m| m["To"].clone()).collect()).unwrap_or_default();
        assert_eq!(recipients, [json!(to("b")), json!(to("d"))], "only claimed messages, in arrival order");

        // Idle again: no task runs, and the next message goes at once.
        until("the sending task to end", || !t.shared.mkt.lock().driving).await;
        let again = spawn_send(&t, message(&to("e"), Lane::Marketing), true);
        assert_eq!(seen.recv().await.as_deref(), Some("/email"));
        stub.gate.add_permits(1);
        assert_eq!(again.await.unwrap_or_else(|e| panic!("{e}")).0, Ok(Accepted { response: to("e") }));
    }

    #[tokio::test]
    async fn an_unanswered_batch_leaves_each_of_its_messages_unknown() {
        let (base, stub, mut seen) = stub(true).await;
        let t = Arc::new(batching(&base, Duration::from_secs(1)));
        let first = spawn_send(&t, message("a@example.com", Lane::Marketing), true);
        assert_eq!(seen.recv().await.as_deref(), Some("/email"));
        let later: Vec<_> = ["b", "c"].iter().map(|n| spawn_send(&t, message(&format!("{n}@example.com"), Lane::Marketing), true)).collect();
        until("two messages waiting", || waiting_in(&t, Lane::Marketing) == 2).await;
        stub.gate.add_permits(1);
        assert!(first.await.unwrap_or_else(|e| panic!("{e}")).0.is_ok());
        for task in later {
            let (result, claims) = task.await.unwrap_or_else(|e| panic!("{e}"));
            assert!(matches!(&result, Err(Failure::Unknown(_))), "{result:?}");
            assert_eq!(claims, 1);
        }
        assert_eq!(stub.requests.lock().unwrap_or_else(PoisonError::into_inner).len(), 2, "never sent again");
    }
}
