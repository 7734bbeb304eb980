//! The SMTP relay as a transport: the lane's connection pool, MAIL/RCPT/DATA, the claim
//! after the server's 354 (written in a transaction whose COMMIT goes out after the body
//! and right before its final dot), then the outcome.

use contracts::Lane;

use super::{Accepted, BoxFuture, Claim, Failure, Outgoing, Transport};
use crate::smtp::{Pool, SmtpFailure, SmtpSettings};

/// The configured relay, with separate connections per lane.
pub struct SmtpTransport {
    tx: Pool,
    mkt: Pool,
}

impl SmtpTransport {
    pub fn new(settings: &SmtpSettings) -> Self {
        Self {
            tx: Pool::new(settings.clone(), settings.transactional_connections),
            mkt: Pool::new(settings.clone(), settings.marketing_connections),
        }
    }

    fn pool(&self, lane: Lane) -> &Pool {
        match lane {
            Lane::Transactional => &self.tx,
            Lane::Marketing => &self.mkt,
        }
    }

    async fn deliver(&self, out: &Outgoing<'_>, claim: &dyn Claim) -> Result<Accepted, Failure> {
        let pool = self.pool(out.msg.lane);
        let mut conn = pool.get().await.map_err(|e| Failure::Temporary(e.to_string()))?;
        let mut began = conn.begin(out.from, out.to).await;
        if matches!(began, Err(SmtpFailure::Broken(_))) && !conn.is_fresh() {
            // An idle pooled connection the server had closed: one fresh try.
            drop(conn);
            conn = pool.get().await.map_err(|e| Failure::Temporary(e.to_string()))?;
            began = conn.begin(out.from, out.to).await;
        }
        match began {
            Ok(()) => {}
            Err(SmtpFailure::Permanent(reason)) => return Err(Failure::Permanent(reason)),
            // Nothing was handed over before DATA's 354: safe to try again.
            Err(e) => return Err(Failure::Temporary(e.to_string())),
        }
        let Some(mut commit) = claim.prepare().await else {
            // Another attempt claimed it between our check and now, or the database failed.
            conn.reset().await;
            return Err(Failure::NotClaimed);
        };
        // The body goes to the server first (without its final dot the server keeps
        // waiting and will discard it if we die). Then one poll of the commit writes COMMIT
        // to the database and the final dot follows with no await in between (see
        // `Conn::finish`), so a crash strands a durable claim without a handed-over message
        // only between those two system calls. The commit is polled once with a no-op
        // waker and then driven to the end below with the task's own.
        let mut committed: Option<bool> = None;
        let mut commit_started = false;
        let sent = conn
            .finish(out.mime, || {
                commit_started = true;
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                match commit.as_mut().poll(&mut cx) {
                    std::task::Poll::Ready(v) => {
                        committed = Some(v);
                        // A claim that could not be committed withholds the dot.
                        v
                    }
                    std::task::Poll::Pending => true,
                }
            })
            .await;
        if committed == Some(false)
            && let Err(e) = &sent
        {
            // The claim failed before the dot, so the dot was withheld (the connection cut)
            // and the server discards the transaction: nothing was handed over. Try again
            // later. (Had the cut failed and the server accepted, `sent` is `Ok` and the
            // outcome is recorded below like any other.)
            conn.discard();
            return Err(Failure::Temporary(format!("the claim could not be committed; message withheld ({e})")));
        }
        if !commit_started {
            // The body never went out whole, so neither did the dot: nothing was handed
            // over. Dropping the open transaction rolls the claim back; try again later.
            drop(commit);
            conn.discard();
            let reason = match sent {
                Err(e) => e.to_string(),
                Ok(r) => format!("server answered {r} before the end of the message"),
            };
            return Err(Failure::Temporary(reason));
        }
        if committed.is_none() {
            commit.await;
        }
        match sent {
            Ok(response) => Ok(Accepted { response }),
            Err(SmtpFailure::Permanent(reason)) => Err(Failure::Permanent(reason)),
            // A 4xx after the final dot: the server did not take it.
            Err(SmtpFailure::Transient(reason)) => Err(Failure::Temporary(reason)),
            Err(SmtpFailure::Broken(reason)) => {
                // We cannot know whether the server took it.
                conn.discard();
                Err(Failure::Unknown(reason))
            }
        }
    }
}

impl Transport for SmtpTransport {
    fn name(&self) -> &'static str {
        "smtp"
    }

    fn sends_our_mime(&self) -> bool {
        true
    }

    fn send<'a>(&'a self, out: &'a Outgoing<'a>, claim: &'a dyn Claim) -> BoxFuture<'a, Result<Accepted, Failure>> {
        Box::pin(self.deliver(out, claim))
    }
}
