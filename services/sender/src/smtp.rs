//! SMTP delivery with lettre's low-level connection: our own TCP stream with TCP_NODELAY
//! (lettre's stock transport leaves Nagle on and stalls ≈43 ms per message), a bounded pool
//! of reused connections, and the transaction split in two phases so the caller can claim
//! the message durably between "the server will take it" (354 after DATA) and "here it is".

use std::sync::Mutex;
use std::time::Duration;

use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::ClientId;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain SMTP (a local relay or test server).
    None,
    /// Upgrade with STARTTLS; refuse to send if the server does not offer it.
    Starttls,
}

/// `[smtp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// Name sent in EHLO.
    pub hello_name: String,
    /// Limit for connecting and for each SMTP exchange.
    #[serde(deserialize_with = "kit::settings::secs")]
    pub timeout: Duration,
    /// Connections per lane (the transactional lane has its own, so a marketing send
    /// cannot take them all).
    pub transactional_connections: usize,
    pub marketing_connections: usize,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 25,
            tls: TlsMode::None,
            username: None,
            password: None,
            hello_name: "postflow.localhost".into(),
            timeout: Duration::from_secs(30),
            transactional_connections: 4,
            marketing_connections: 4,
        }
    }
}

/// How an SMTP exchange failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SmtpFailure {
    /// 4xx, or the connection could not be made: try again later.
    #[error("temporary smtp failure: {0}")]
    Transient(String),
    /// 5xx: the server refuses this message for good.
    #[error("permanent smtp failure: {0}")]
    Permanent(String),
    /// The connection broke or timed out in the middle of an exchange.
    #[error("smtp connection lost: {0}")]
    Broken(String),
}

fn classify(e: &lettre::transport::smtp::Error) -> SmtpFailure {
    let text = e.to_string();
    if e.is_permanent() {
        SmtpFailure::Permanent(text)
    } else if e.is_transient() {
        SmtpFailure::Transient(text)
    } else {
        SmtpFailure::Broken(text)
    }
}

async fn timed<T>(limit: Duration, f: impl Future<Output = Result<T, lettre::transport::smtp::Error>>) -> Result<T, SmtpFailure> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(&e)),
        Err(_) => Err(SmtpFailure::Broken(format!("no answer within {limit:?}"))),
    }
}

/// A bounded pool of SMTP connections to one server.
pub struct Pool {
    settings: SmtpSettings,
    idle: Mutex<Vec<Live>>,
    permits: Semaphore,
}

impl Pool {
    pub fn new(settings: SmtpSettings, connections: usize) -> Self {
        Self { settings, idle: Mutex::new(Vec::new()), permits: Semaphore::new(connections.max(1)) }
    }

    /// A connection: an idle one if any, else a new one. Waits while all are busy.
    pub async fn get(&self) -> Result<Conn<'_>, SmtpFailure> {
        let permit = self.permits.acquire().await.map_err(|e| SmtpFailure::Transient(e.to_string()))?;
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let (inner, fresh) = match idle {
            Some(c) => (c, false),
            None => (self.open().await?, true),
        };
        Ok(Conn { inner: Some(inner), fresh, pool: self, _permit: permit })
    }

    async fn open(&self) -> Result<Live, SmtpFailure> {
        let s = &self.settings;
        let limit = s.timeout;
        let stream = tokio::time::timeout(limit, TcpStream::connect((s.host.as_str(), s.port)))
            .await
            .map_err(|_| SmtpFailure::Transient(format!("connecting to {}:{} timed out", s.host, s.port)))?
            .map_err(|e| SmtpFailure::Transient(format!("connecting to {}:{}: {e}", s.host, s.port)))?;
        stream.set_nodelay(true).map_err(|e| SmtpFailure::Transient(e.to_string()))?;
        // A second handle on the same socket, to cut the connection from the body
        // iterator's hook (see `Conn::finish`), where lettre holds the stream.
        let (stream, socket) = (|| {
            let std = stream.into_std()?;
            let socket = std.try_clone()?;
            Ok::<_, std::io::Error>((TcpStream::from_std(std)?, socket))
        })()
        .map_err(|e| SmtpFailure::Transient(e.to_string()))?;
        let hello = ClientId::Domain(s.hello_name.clone());
        let mut conn = match timed(limit, AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello)).await {
            Ok(c) => c,
            // A greeting that never came or a 4xx greeting: the server is busy.
            Err(SmtpFailure::Broken(m) | SmtpFailure::Permanent(m)) => return Err(SmtpFailure::Transient(m)),
            Err(e) => return Err(e),
        };
        if s.tls == TlsMode::Starttls {
            if !conn.can_starttls() {
                return Err(SmtpFailure::Transient("server does not offer STARTTLS".into()));
            }
            let params = TlsParameters::new(s.host.clone()).map_err(|e| SmtpFailure::Transient(e.to_string()))?;
            timed(limit, conn.starttls(params, &hello)).await?;
        }
        if let (Some(user), Some(pass)) = (&s.username, &s.password) {
            let creds = Credentials::new(user.clone(), pass.expose_secret().to_owned());
            timed(limit, conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds)).await?;
        }
        metrics::counter!("sender_smtp_connections_opened_total").increment(1);
        Ok(Live { smtp: conn, socket })
    }
}

/// An open SMTP connection and a second handle on its socket.
struct Live {
    smtp: AsyncSmtpConnection,
    socket: std::net::TcpStream,
}

/// A checked-out connection; goes back to the pool on drop unless it broke.
pub struct Conn<'p> {
    inner: Option<Live>,
    /// Opened for this checkout (an idle one may have been closed by the server).
    fresh: bool,
    pool: &'p Pool,
    _permit: SemaphorePermit<'p>,
}

impl Conn<'_> {
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    fn conn(&mut self) -> Result<&mut AsyncSmtpConnection, SmtpFailure> {
        self.inner.as_mut().map(|l| &mut l.smtp).ok_or_else(|| SmtpFailure::Broken("connection already discarded".into()))
    }

    fn discard_on<T>(&mut self, r: Result<T, SmtpFailure>) -> Result<T, SmtpFailure> {
        if matches!(r, Err(SmtpFailure::Broken(_))) {
            self.inner = None;
        }
        r
    }

    /// MAIL FROM, RCPT TO, DATA. After `Ok`, the server waits for the message body.
    pub async fn begin(&mut self, from: &Address, to: &Address) -> Result<(), SmtpFailure> {
        let limit = self.pool.settings.timeout;
        let r = async {
            let c = self.conn()?;
            timed(limit, c.command(Mail::new(Some(from.clone()), vec![]))).await?;
            timed(limit, c.command(Rcpt::new(to.clone(), vec![]))).await?;
            timed(limit, c.command(Data)).await?;
            Ok(())
        }
        .await;
        if matches!(r, Err(SmtpFailure::Transient(_) | SmtpFailure::Permanent(_))) {
            self.reset().await;
        }
        self.discard_on(r)
    }

    /// Sends the body, calls `before_dot`, then sends the final dot; `Ok` carries the
    /// server's acceptance line.
    ///
    /// `before_dot` runs after the whole body has been written and right before the final
    /// dot is, with no await in between: lettre asks its body iterator for the next part
    /// after writing the previous one and writes the dot as soon as the iterator ends. So
    /// whatever `before_dot` writes to another socket and the dot leave this process one
    /// system call apart (unless the socket's send buffer is full). It never runs if the
    /// body could not be written — the dot was then never sent either. If it returns
    /// false, the dot is withheld: the connection is cut, and the server discards the
    /// transaction (the exchange then fails as broken).
    pub async fn finish(&mut self, body: &[u8], before_dot: impl FnOnce() -> bool + Send) -> Result<String, SmtpFailure> {
        let limit = self.pool.settings.timeout;
        let r = async {
            let Live { smtp, socket } = self.inner.as_mut().ok_or_else(|| SmtpFailure::Broken("connection already discarded".into()))?;
            let hook = || {
                if !before_dot() {
                    // Both directions: lettre's write of the dot fails at once.
                    let _ = socket.shutdown(std::net::Shutdown::Both);
                }
            };
            let parts = ThenBeforeDot { body: Some(body), before_dot: Some(hook) };
            let resp = timed(limit, smtp.message_iter(parts)).await?;
            Ok(format!("{} {}", resp.code(), resp.message().collect::<Vec<_>>().join(" ")))
        }
        .await;
        self.discard_on(r)
    }

    /// Abandons the current transaction (RSET). A connection that cannot is discarded.
    pub async fn reset(&mut self) {
        let limit = self.pool.settings.timeout;
        if let Some(c) = self.inner.as_mut()
            && timed(limit, c.smtp.command(Rset)).await.is_err() {
                self.inner = None;
            }
    }

    /// Closes this connection instead of returning it to the pool (after a body that was
    /// cut off, the server's state is unknown).
    pub fn discard(&mut self) {
        self.inner = None;
    }
}

/// The message as lettre's body iterator: one part (the body), then, when lettre asks for
/// the next part — the body is written and the final dot comes next — the hook.
struct ThenBeforeDot<'a, F> {
    body: Option<&'a [u8]>,
    before_dot: Option<F>,
}

impl<'a, F: FnOnce()> Iterator for ThenBeforeDot<'a, F> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if let Some(body) = self.body.take() {
            return Some(body);
        }
        if let Some(hook) = self.before_dot.take() {
            hook();
        }
        None
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.inner.take()
            && !c.smtp.has_broken() {
                self.pool.idle.lock().unwrap_or_else(|p| p.into_inner()).push(c);
            }
    }
}

#[cfg(test)]
mod tests {
    use smtp_capture::{CaptureConfig, SmtpCapture};

    use super::*;

    fn pool(server: &SmtpCapture) -> Pool {
        let settings = SmtpSettings { host: server.addr().ip().to_string(), port: server.addr().port(), ..SmtpSettings::default() };
        Pool::new(settings, 1)
    }

    const BODY: &[u8] = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\n.leading dot\r\nbye";

    #[tokio::test]
    async fn the_hook_runs_between_the_body_and_the_dot() {
        let server = SmtpCapture::start(CaptureConfig::default()).await.unwrap();
        let pool = pool(&server);
        let mut conn = pool.get().await.unwrap();
        let (from, to) = ("a@example.com".parse().unwrap(), "b@example.com".parse().unwrap());
        conn.begin(&from, &to).await.unwrap();
        let mut seen_before_dot = None;
        let accepted = conn.finish(BODY, || {
            seen_before_dot = Some(server.count());
            true
        });
        assert!(accepted.await.unwrap().starts_with("250"));
        assert_eq!(seen_before_dot, Some(0), "nothing was accepted when the hook ran");
        assert_eq!(server.count(), 1);
        let data = String::from_utf8(server.messages()[0].data.clone()).unwrap();
        assert!(data.contains("\r\n.leading dot\r\n"), "the body arrived whole, its dot-stuffing undone: {data:?}");
    }

    #[tokio::test]
    async fn a_hook_that_says_no_withholds_the_dot_and_the_server_takes_nothing() {
        let server = SmtpCapture::start(CaptureConfig::default()).await.unwrap();
        let pool = pool(&server);
        let (from, to) = ("a@example.com".parse().unwrap(), "b@example.com".parse().unwrap());
        let mut conn = pool.get().await.unwrap();
        conn.begin(&from, &to).await.unwrap();
        let withheld = conn.finish(BODY, || false).await;
        assert!(matches!(withheld, Err(SmtpFailure::Broken(_))), "{withheld:?}");
        drop(conn);
        // The cut connection is not pooled: the next message gets a fresh one and goes.
        let mut conn = pool.get().await.unwrap();
        assert!(conn.is_fresh());
        conn.begin(&from, &to).await.unwrap();
        conn.finish(BODY, || true).await.unwrap();
        assert_eq!(server.count(), 1, "only the second message was taken");
    }
}
