//! Transports: how a message leaves. One trait, one implementation per way out — the SMTP
//! relay pool and the providers' HTTP APIs — chosen per tenant by `delivery.provider`.
//!
//! A transport decides *when* the message is claimed (see `delivery.rs`): it calls
//! [`Claim::claim`] at the last moment at which nothing has been handed over yet, and
//! reports how the exchange ended as a [`Failure`] the delivery logic acts on.

mod http;
mod mailgun;
mod postmark;
mod sendgrid;
mod ses;
pub mod sigv4;
mod smtp;

use std::future::Future;
use std::pin::Pin;

use contracts::OutboundMessage;
use lettre::Address;

pub use http::{HttpClients, ProviderSettings, for_tenant};
pub use smtp::SmtpTransport;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One message ready to leave.
pub struct Outgoing<'a> {
    pub msg: &'a OutboundMessage,
    /// The formatted RFC 5322 message, DKIM-signed when the tenant signs.
    pub mime: &'a [u8],
    /// Envelope sender and recipient (SMTP `MAIL FROM` / `RCPT TO`).
    pub from: &'a Address,
    pub to: &'a Address,
}

/// The provider took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The SMTP server's acceptance line, or the provider's message id.
    pub response: String,
}

/// How a send failed. Whether the message had been claimed is known to the caller's
/// [`Claim`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Refused for good (SMTP 5xx, a provider's rejection of the message or recipient):
    /// a permanent bounce, and the address is suppressed.
    #[error("permanent failure: {0}")]
    Permanent(String),
    /// The provider keeps this recipient inactive on the lane's stream (Postmark 406: it
    /// bounced, complained or unsubscribed there before): not sent, and not a new bounce.
    /// The address is suppressed for the lane only (marketing: `marketing`; transactional:
    /// `all`, since only a bounce or complaint deactivates a transactional stream), so an
    /// unsubscribe made at the provider never turns into a block on order mail.
    #[error("recipient inactive at the provider: {0}")]
    Inactive(String),
    /// Not taken this time, and certainly not sent (SMTP 4xx, HTTP 429/5xx, no connection,
    /// an account problem an operator can fix): retried until the deadline.
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// The exchange broke after the message may have been handed over: the claim stays,
    /// and the redelivery after the lease marks it indeterminate.
    #[error("{0}; outcome unknown")]
    Unknown(String),
    /// This message cannot be sent this way at all (our side, not the recipient's): it is
    /// dead-lettered and nobody is suppressed.
    #[error("cannot send: {0}")]
    Invalid(String),
    /// The claim was refused (another attempt holds it, or the database failed): nothing
    /// was sent; the claim says why.
    #[error("not claimed")]
    NotClaimed,
}

/// The durable record that this attempt is handing the message over now.
pub trait Claim: Send + Sync {
    /// True when claimed; false when this attempt must not send.
    fn claim(&self) -> BoxFuture<'_, bool>;

    /// The claim in two phases, for a hand-over that is one write (SMTP's final dot): the
    /// row is written in an open transaction now, and the returned future commits it. The
    /// transport writes everything but the hand-over, starts the commit (its first poll
    /// writes COMMIT), then makes the hand-over, so a crash can leave a durable claim
    /// without a handed-over message only between those two writes; a crash before the
    /// COMMIT write rolls the claim back, and the redelivery sends. Dropping the future
    /// unpolled rolls the claim back. If the commit fails while the message went out, the
    /// outcome is still recorded (outcomes are upserts). `None` when this attempt must not
    /// send.
    fn prepare(&self) -> BoxFuture<'_, Option<BoxFuture<'_, bool>>>;
}

/// A way out for messages.
pub trait Transport: Send + Sync {
    /// `smtp`, `ses`, `postmark`, `sendgrid`, `mailgun`.
    fn name(&self) -> &'static str;

    /// Whether the provider delivers our formatted message byte for byte (so a DKIM
    /// signature over it survives). JSON APIs build their own MIME and sign it with the
    /// key configured in the provider account.
    fn sends_our_mime(&self) -> bool;

    /// Sends one message, calling `claim` before anything is handed over.
    fn send<'a>(&'a self, out: &'a Outgoing<'a>, claim: &'a dyn Claim) -> BoxFuture<'a, Result<Accepted, Failure>>;
}
