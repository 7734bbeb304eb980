//! In-process SMTP capture server for tests and local development: accepts mail, records it, optionally writes `.eml` files, and can answer scripted faults.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use smtp_capture::{CaptureConfig, Rule, SmtpCapture};
//! use std::time::Duration;
//!
//! let capture = SmtpCapture::start(CaptureConfig::default()).await?;
//! capture.push_rule(Rule::rcpt(451, "try again later").matching("retry@").times(2));
//! // point the SMTP client at capture.addr() ...
//! let mails = capture.wait_for(1, Duration::from_secs(5)).await?;
//! assert_eq!(mails[0].subject().as_deref(), Some("hello"));
//! # Ok(()) }
//! ```

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::{JoinHandle, JoinSet};

/// Default limit for one message (advertised with `SIZE`).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 32 * 1024 * 1024;

/// Longest command line accepted (RFC 5321 asks for 512; be generous).
const MAX_COMMAND_LINE: usize = 64 * 1024;
/// Longest chunk read at once while receiving DATA; longer lines are read in pieces.
const MAX_DATA_CHUNK: usize = 1024 * 1024;

/// How a [`SmtpCapture`] listens and behaves.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Address to bind; port 0 picks a free port (see [`SmtpCapture::addr`]).
    pub addr: SocketAddr,
    /// When set, every accepted message is also written atomically as `<dir>/<unix-millis>-<seq>.eml`.
    pub dir: Option<PathBuf>,
    /// Scripted faults active from the start (more can be added with [`SmtpCapture::push_rule`]).
    pub rules: Vec<Rule>,
    /// Accept TCP connections but never send the greeting (a stuck server).
    pub hang_on_connect: bool,
    /// Name used in the greeting and EHLO reply.
    pub hostname: String,
    /// Largest message accepted; bigger ones get `552`.
    pub max_message_size: usize,
    /// A connection silent for this long is closed with `421`.
    pub idle_timeout: Duration,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            dir: None,
            rules: Vec::new(),
            hang_on_connect: false,
            hostname: "mailcatcher.localhost".to_owned(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Point of the SMTP dialogue where a [`Rule`] answers instead of the normal reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Replaces the `220` greeting; a non-2xx answer closes the connection right after.
    Connect,
    /// Answers a `RCPT TO`; a non-2xx answer leaves that recipient out.
    Rcpt,
    /// Answers the final `.` of `DATA`; a non-2xx answer means the message is not recorded.
    Data,
}

/// A scripted reply, e.g. `451` at RCPT twice, or `550` for `bounce@` forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Where the rule answers.
    pub stage: Stage,
    /// Case-insensitive substring of the recipient address; `None` matches any.
    /// At [`Stage::Data`] it matches when any accepted recipient matches; at
    /// [`Stage::Connect`] it is ignored (no recipient is known yet).
    pub recipient: Option<String>,
    /// SMTP reply code, e.g. 421, 451, 550.
    pub code: u16,
    /// Reply text; several lines give a multi-line reply.
    pub text: String,
    /// How many more times the rule fires; `None` means forever.
    pub times: Option<usize>,
}

impl Rule {
    /// A rule at `stage` matching any recipient, firing forever.
    pub fn new(stage: Stage, code: u16, text: impl Into<String>) -> Self {
        Self {
            stage,
            recipient: None,
            code,
            text: text.into(),
            times: None,
        }
    }

    /// A rule replacing the greeting.
    pub fn connect(code: u16, text: impl Into<String>) -> Self {
        Self::new(Stage::Connect, code, text)
    }

    /// A rule answering `RCPT TO`.
    pub fn rcpt(code: u16, text: impl Into<String>) -> Self {
        Self::new(Stage::Rcpt, code, text)
    }

    /// A rule answering the end of `DATA`.
    pub fn data(code: u16, text: impl Into<String>) -> Self {
        Self::new(Stage::Data, code, text)
    }

    /// Restricts the rule to recipients containing `substring` (case-insensitive).
    #[must_use]
    pub fn matching(mut self, substring: impl Into<String>) -> Self {
        self.recipient = Some(substring.into());
        self
    }

    /// Limits the rule to its next `n` matches.
    #[must_use]
    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }

    fn applies(&self, stage: Stage, recipients: &[String]) -> bool {
        if self.stage != stage || self.times == Some(0) {
            return false;
        }
        match (&self.recipient, stage) {
            (None, _) | (Some(_), Stage::Connect) => true,
            (Some(pattern), _) => {
                let pattern = pattern.to_ascii_lowercase();
                recipients
                    .iter()
                    .any(|r| r.to_ascii_lowercase().contains(&pattern))
            }
        }
    }
}

/// One message accepted by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedMail {
    /// Reverse path from `MAIL FROM` (empty for the null sender `<>`).
    pub mail_from: String,
    /// Accepted recipients from `RCPT TO`, in order.
    pub rcpt_to: Vec<String>,
    /// The raw RFC 5322 message as transmitted (CRLF line ends, dot-stuffing undone, final `.` removed).
    pub data: Vec<u8>,
    /// When the final `.` was received.
    pub received_at: SystemTime,
    /// Where the message was written when [`CaptureConfig::dir`] is set.
    pub path: Option<PathBuf>,
}

impl CapturedMail {
    /// First header named `name` (case-insensitive), unfolded and trimmed; not MIME-decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        header_value(&self.data, name)
    }

    /// The `Subject` header, if any.
    pub fn subject(&self) -> Option<String> {
        self.header("subject")
    }

    /// Everything after the blank line that ends the header section (lossy UTF-8).
    pub fn body(&self) -> String {
        let data = self.data.as_slice();
        let start = find(data, b"\r\n\r\n")
            .map(|i| i + 4)
            .or_else(|| find(data, b"\n\n").map(|i| i + 2))
            .unwrap_or(data.len());
        String::from_utf8_lossy(&data[start..]).into_owned()
    }
}

/// A running capture server; stops when dropped or via [`SmtpCapture::shutdown`].
#[derive(Debug)]
pub struct SmtpCapture {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl SmtpCapture {
    /// Binds `config.addr` and starts accepting connections in the background.
    pub async fn start(config: CaptureConfig) -> anyhow::Result<Self> {
        if let Some(dir) = &config.dir {
            tokio::fs::create_dir_all(dir)
                .await
                .with_context(|| format!("creating mail dir {}", dir.display()))?;
        }
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("binding smtp capture to {}", config.addr))?;
        let addr = listener
            .local_addr()
            .context("reading smtp capture address")?;
        let (count_tx, _) = watch::channel(0);
        let (events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            hostname: config.hostname,
            max_message_size: config.max_message_size,
            idle_timeout: config.idle_timeout,
            dir: config.dir,
            messages: Mutex::new(Vec::new()),
            count_tx,
            events,
            rejected: AtomicUsize::new(0),
            rules: Mutex::new(config.rules),
            hang: AtomicBool::new(config.hang_on_connect),
            seq: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        tracing::debug!(%addr, "smtp capture listening");
        Ok(Self {
            addr,
            shared,
            task: Some(task),
        })
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The directory messages are written to, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.shared.dir.as_deref()
    }

    /// All messages accepted so far, oldest first.
    pub fn messages(&self) -> Vec<CapturedMail> {
        lock(&self.shared.messages).clone()
    }

    /// Number of messages accepted so far.
    pub fn count(&self) -> usize {
        lock(&self.shared.messages).len()
    }

    /// Number of negative (4xx/5xx) replies given by scripted rules, at any stage.
    pub fn rejected(&self) -> usize {
        self.shared.rejected.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` messages were accepted and returns all of them.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> anyhow::Result<Vec<CapturedMail>> {
        let mut rx = self.shared.count_tx.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|count| *count >= n)).await {
            Ok(Ok(_)) => Ok(self.messages()),
            Ok(Err(_)) => anyhow::bail!("smtp capture stopped while waiting for {n} messages"),
            Err(_) => anyhow::bail!(
                "timed out after {timeout:?} waiting for {n} messages, saw {} (rejected {})",
                self.count(),
                self.rejected()
            ),
        }
    }

    /// Receives every message accepted from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<CapturedMail> {
        self.shared.events.subscribe()
    }

    /// Adds a scripted fault; rules are tried in the order they were added, the first match answers.
    pub fn push_rule(&self, rule: Rule) {
        lock(&self.shared.rules).push(rule);
    }

    /// Removes all scripted faults.
    pub fn clear_rules(&self) {
        lock(&self.shared.rules).clear();
    }

    /// Turns the stuck-server mode on or off for connections accepted from now on.
    pub fn set_hang(&self, hang: bool) {
        self.shared.hang.store(hang, Ordering::SeqCst);
    }

    /// Stops accepting, closes open connections and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for SmtpCapture {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[derive(Debug)]
struct Shared {
    hostname: String,
    max_message_size: usize,
    idle_timeout: Duration,
    dir: Option<PathBuf>,
    messages: Mutex<Vec<CapturedMail>>,
    count_tx: watch::Sender<usize>,
    events: broadcast::Sender<CapturedMail>,
    rejected: AtomicUsize,
    rules: Mutex<Vec<Rule>>,
    hang: AtomicBool,
    seq: AtomicU64,
}

impl Shared {
    /// Finds the first rule applying here, consumes one use of it and returns its reply.
    fn fire(&self, stage: Stage, recipients: &[String]) -> Option<(u16, String)> {
        let mut rules = lock(&self.rules);
        let index = rules.iter().position(|r| r.applies(stage, recipients))?;
        let rule = &mut rules[index];
        let reply = (rule.code, rule.text.clone());
        if let Some(left) = rule.times.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                rules.remove(index);
            }
        }
        drop(rules);
        if reply.0 >= 400 {
            self.rejected.fetch_add(1, Ordering::SeqCst);
        }
        tracing::debug!(?stage, code = reply.0, "scripted smtp reply");
        Some(reply)
    }

    async fn record(
        &self,
        mail_from: String,
        rcpt_to: Vec<String>,
        data: Vec<u8>,
    ) -> anyhow::Result<u64> {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let received_at = SystemTime::now();
        let path = match &self.dir {
            Some(dir) => Some(write_eml(dir, received_at, seq, &data).await?),
            None => None,
        };
        let mail = CapturedMail {
            mail_from,
            rcpt_to,
            data,
            received_at,
            path,
        };
        {
            let mut messages = lock(&self.messages);
            messages.push(mail.clone());
            self.count_tx.send_replace(messages.len());
        }
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(mail);
        }
        Ok(seq)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn write_eml(
    dir: &Path,
    received_at: SystemTime,
    seq: u64,
    data: &[u8],
) -> anyhow::Result<PathBuf> {
    let millis = received_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let name = format!("{millis}-{seq}.eml");
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    if let Err(err) = tokio::fs::write(&tmp, data).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(err).with_context(|| format!("writing {}", tmp.display()));
    }
    tokio::fs::rename(&tmp, &path)
        .await
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(path)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Dropping the set (when this task is aborted) aborts every connection task.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = Arc::clone(&shared);
                    connections.spawn(async move {
                        if let Err(err) = handle_connection(shared, stream).await {
                            tracing::debug!(%peer, error = %err, "smtp connection ended with error");
                        }
                    });
                }
                Err(err) => {
                    tracing::warn!(error = %err, "smtp accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn hang(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    while stream.read(&mut buf).await? != 0 {}
    Ok(())
}

/// State of one mail transaction.
#[derive(Debug, Default)]
struct Transaction {
    from: Option<String>,
    rcpts: Vec<String>,
}

async fn handle_connection(shared: Arc<Shared>, stream: TcpStream) -> io::Result<()> {
    if shared.hang.load(Ordering::SeqCst) {
        return hang(stream).await;
    }
    let (read_half, write_half) = stream.into_split();
    let mut reader = BufReader::new(read_half);
    let mut writer = BufWriter::new(write_half);

    match shared.fire(Stage::Connect, &[]) {
        Some((code, text)) => {
            reply(&mut writer, code, &text).await?;
            if !(200..300).contains(&code) {
                writer.flush().await?;
                return Ok(());
            }
        }
        None => {
            let greeting = format!("{} ESMTP postflow-mailcatcher ready", shared.hostname);
            reply(&mut writer, 220, &greeting).await?;
        }
    }

    let idle = shared.idle_timeout;
    let mut greeted = false;
    let mut txn = Transaction::default();
    let mut line = Vec::new();
    loop {
        // Answer a pipelined batch in one write: flush only when no more input is buffered.
        if reader.buffer().is_empty() {
            writer.flush().await?;
        }
        match read_chunk(&mut reader, MAX_COMMAND_LINE, idle, &mut line).await {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                reply(&mut writer, 421, "idle timeout, closing connection").await?;
                writer.flush().await?;
                return Ok(());
            }
            Err(err) => return Err(err),
        }
        if !line.ends_with(b"\n") && line.len() >= MAX_COMMAND_LINE {
            // Skip the rest of the overlong line.
            while read_chunk(&mut reader, MAX_COMMAND_LINE, idle, &mut line).await? {
                if line.ends_with(b"\n") {
                    break;
                }
            }
            reply(&mut writer, 500, "line too long").await?;
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let (verb, arg) = match text.split_once(' ') {
            Some((verb, arg)) => (verb.to_ascii_uppercase(), arg.trim()),
            None => (text.to_ascii_uppercase(), ""),
        };
        match verb.as_str() {
            "EHLO" => {
                greeted = true;
                txn = Transaction::default();
                let client = if arg.is_empty() { "client" } else { arg };
                let lines = format!(
                    "{} greets {client}\nPIPELINING\n8BITMIME\nSMTPUTF8\nSIZE {}\nAUTH PLAIN LOGIN",
                    shared.hostname, shared.max_message_size
                );
                reply(&mut writer, 250, &lines).await?;
            }
            "HELO" => {
                greeted = true;
                txn = Transaction::default();
                reply(&mut writer, 250, &shared.hostname).await?;
            }
            "MAIL" => {
                if !greeted {
                    reply(&mut writer, 503, "send ehlo or helo first").await?;
                } else if txn.from.is_some() {
                    reply(&mut writer, 503, "nested mail command").await?;
                } else {
                    match strip_prefix_ci(arg, "FROM:").and_then(parse_path) {
                        None => reply(&mut writer, 501, "syntax: mail from:<address>").await?,
                        Some((address, params)) => {
                            let declared = params
                                .split_whitespace()
                                .find_map(|p| strip_prefix_ci(p, "SIZE="))
                                .and_then(|n| n.parse::<usize>().ok());
                            if declared.is_some_and(|n| n > shared.max_message_size) {
                                reply(&mut writer, 552, "message size exceeds fixed limit").await?;
                            } else {
                                txn.from = Some(address);
                                reply(&mut writer, 250, "ok").await?;
                            }
                        }
                    }
                }
            }
            "RCPT" => {
                if txn.from.is_none() {
                    reply(&mut writer, 503, "need mail command first").await?;
                } else {
                    match strip_prefix_ci(arg, "TO:").and_then(parse_path) {
                        Some((address, _)) if !address.is_empty() => {
                            let (code, text) = shared
                                .fire(Stage::Rcpt, std::slice::from_ref(&address))
                                .unwrap_or_else(|| (250, "ok".to_owned()));
                            if (200..300).contains(&code) {
                                txn.rcpts.push(address);
                            }
                            reply(&mut writer, code, &text).await?;
                        }
                        _ => reply(&mut writer, 501, "syntax: rcpt to:<address>").await?,
                    }
                }
            }
            "DATA" => {
                if txn.from.is_none() {
                    reply(&mut writer, 503, "need mail command first").await?;
                    continue;
                }
                if txn.rcpts.is_empty() {
                    reply(&mut writer, 554, "no valid recipients").await?;
                    continue;
                }
                reply(&mut writer, 354, "end data with <cr><lf>.<cr><lf>").await?;
                writer.flush().await?;
                let Some((data, too_big)) =
                    read_data(&mut reader, shared.max_message_size, idle).await?
                else {
                    return Ok(());
                };
                let txn_done = std::mem::take(&mut txn);
                if too_big {
                    reply(&mut writer, 552, "message size exceeds fixed limit").await?;
                    continue;
                }
                if let Some((code, text)) = shared.fire(Stage::Data, &txn_done.rcpts)
                    && !(200..300).contains(&code)
                {
                    reply(&mut writer, code, &text).await?;
                    continue;
                }
                let from = txn_done.from.unwrap_or_default();
                match shared.record(from, txn_done.rcpts, data).await {
                    Ok(seq) => reply(&mut writer, 250, &format!("ok: queued as {seq}")).await?,
                    Err(err) => {
                        tracing::warn!(error = format!("{err:#}"), "storing captured mail failed");
                        reply(&mut writer, 451, "local error storing message").await?;
                    }
                }
            }
            "RSET" => {
                txn = Transaction::default();
                reply(&mut writer, 250, "ok").await?;
            }
            "NOOP" => reply(&mut writer, 250, "ok").await?,
            "VRFY" => {
                reply(
                    &mut writer,
                    252,
                    "cannot vrfy user, but will accept message",
                )
                .await?
            }
            "AUTH" => {
                let mut parts = arg.split_whitespace();
                let mechanism = parts.next().unwrap_or_default().to_ascii_uppercase();
                let initial = parts.next();
                match mechanism.as_str() {
                    "PLAIN" => {
                        if initial.is_none() {
                            reply(&mut writer, 334, "").await?;
                            writer.flush().await?;
                            if !read_chunk(&mut reader, MAX_COMMAND_LINE, idle, &mut line).await? {
                                return Ok(());
                            }
                        }
                        reply(&mut writer, 235, "authentication succeeded").await?;
                    }
                    "LOGIN" => {
                        let prompts: &[&str] = if initial.is_some() {
                            &["UGFzc3dvcmQ6"]
                        } else {
                            &["VXNlcm5hbWU6", "UGFzc3dvcmQ6"]
                        };
                        for prompt in prompts {
                            reply(&mut writer, 334, prompt).await?;
                            writer.flush().await?;
                            if !read_chunk(&mut reader, MAX_COMMAND_LINE, idle, &mut line).await? {
                                return Ok(());
                            }
                        }
                        reply(&mut writer, 235, "authentication succeeded").await?;
                    }
                    _ => reply(&mut writer, 504, "unrecognized authentication type").await?,
                }
            }
            "QUIT" => {
                reply(&mut writer, 221, "bye").await?;
                writer.flush().await?;
                return Ok(());
            }
            _ => reply(&mut writer, 502, "command not implemented").await?,
        }
    }
}

/// Writes a reply; each line of `text` becomes one line of a multi-line reply.
async fn reply<W: AsyncWrite + Unpin>(writer: &mut W, code: u16, text: &str) -> io::Result<()> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    if lines.is_empty() {
        out.push_str(&format!("{code} \r\n"));
    }
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.push_str(&format!("{code}{sep}{line}\r\n"));
    }
    writer.write_all(out.as_bytes()).await
}

/// Reads up to and including the next `\n`, but at most `limit` bytes, into `out`.
/// Returns `false` at end of input with nothing read; a silent peer yields `TimedOut`.
async fn read_chunk<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
    idle: Duration,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    out.clear();
    loop {
        let available = match tokio::time::timeout(idle, reader.fill_buf()).await {
            Ok(result) => result?,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")),
        };
        if available.is_empty() {
            return Ok(!out.is_empty());
        }
        let room = limit.saturating_sub(out.len());
        let window = &available[..available.len().min(room)];
        if let Some(pos) = window.iter().position(|b| *b == b'\n') {
            out.extend_from_slice(&window[..=pos]);
            reader.consume(pos + 1);
            return Ok(true);
        }
        let taken = window.len();
        out.extend_from_slice(window);
        reader.consume(taken);
        if out.len() >= limit {
            return Ok(true);
        }
    }
}

/// Reads DATA up to the terminating `.` line, undoing dot-stuffing.
/// Returns `None` when the peer went away first; the flag says the size limit was exceeded.
async fn read_data<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
    idle: Duration,
) -> io::Result<Option<(Vec<u8>, bool)>> {
    let mut data = Vec::new();
    let mut chunk = Vec::new();
    let mut at_line_start = true;
    let mut too_big = false;
    loop {
        if !read_chunk(reader, MAX_DATA_CHUNK, idle, &mut chunk).await? {
            return Ok(None);
        }
        let mut payload = chunk.as_slice();
        if at_line_start {
            if payload == b".\r\n" || payload == b".\n" {
                return Ok(Some((data, too_big)));
            }
            if payload.first() == Some(&b'.') {
                payload = &payload[1..];
            }
        }
        at_line_start = chunk.ends_with(b"\n");
        if !too_big {
            if data.len() + payload.len() > limit {
                too_big = true;
                data = Vec::new();
            } else {
                data.extend_from_slice(payload);
            }
        }
    }
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Parses `<address> params` (angle brackets optional); returns the address and the rest.
fn parse_path(text: &str) -> Option<(String, &str)> {
    let text = text.trim_start();
    if let Some(rest) = text.strip_prefix('<') {
        let end = rest.find('>')?;
        let address = &rest[..end];
        // Drop a source route ("@a,@b:user@host") if one is present.
        let address = match address.strip_prefix('@') {
            Some(_) => address.rsplit_once(':').map_or(address, |(_, a)| a),
            None => address,
        };
        Some((address.to_owned(), rest[end + 1..].trim()))
    } else {
        let mut parts = text.splitn(2, char::is_whitespace);
        let address = parts.next().filter(|a| !a.is_empty())?;
        Some((address.to_owned(), parts.next().unwrap_or("").trim()))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn header_value(data: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    let mut found: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(value) = found.as_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if found.is_some() {
            break;
        }
        if let Some((key, value)) = line.split_once(':')
            && key.trim().eq_ignore_ascii_case(name)
        {
            found = Some(value.trim().to_owned());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths() {
        assert_eq!(parse_path("<a@b.c>"), Some(("a@b.c".to_owned(), "")));
        assert_eq!(
            parse_path(" <a@b.c> SIZE=10 BODY=8BITMIME"),
            Some(("a@b.c".to_owned(), "SIZE=10 BODY=8BITMIME"))
        );
        assert_eq!(parse_path("<>"), Some((String::new(), "")));
        assert_eq!(parse_path("<@relay:x@y.z>"), Some(("x@y.z".to_owned(), "")));
        assert_eq!(parse_path("bare@host"), Some(("bare@host".to_owned(), "")));
        assert_eq!(parse_path("<unterminated"), None);
        assert_eq!(strip_prefix_ci("from:<x>", "FROM:"), Some("<x>"));
        assert_eq!(strip_prefix_ci("fr", "FROM:"), None);
    }

    #[test]
    fn reads_headers() {
        let mail = CapturedMail {
            mail_from: String::new(),
            rcpt_to: Vec::new(),
            data: b"From: a@b\r\nSubject: hello\r\n  world\r\nX-Other: 1\r\n\r\nSubject: not a header\r\n".to_vec(),
            received_at: SystemTime::now(),
            path: None,
        };
        assert_eq!(mail.subject().as_deref(), Some("hello world"));
        assert_eq!(mail.header("x-other").as_deref(), Some("1"));
        assert_eq!(mail.header("missing"), None);
        assert_eq!(mail.body(), "Subject: not a header\r\n");
    }

    #[test]
    fn rules_match_and_expire() {
        let rule = Rule::rcpt(550, "no").matching("Bounce@");
        assert!(rule.applies(Stage::Rcpt, &["x.bounce@example.com".to_owned()]));
        assert!(!rule.applies(Stage::Rcpt, &["ok@example.com".to_owned()]));
        assert!(!rule.applies(Stage::Data, &["bounce@example.com".to_owned()]));
        assert!(!Rule::data(451, "x").times(0).applies(Stage::Data, &[]));
        assert!(
            Rule::connect(421, "x")
                .matching("y")
                .applies(Stage::Connect, &[])
        );
    }

    #[tokio::test]
    async fn replies_are_formatted() -> anyhow::Result<()> {
        let mut out = Vec::new();
        reply(&mut out, 250, "a\nb\nc").await?;
        reply(&mut out, 334, "").await?;
        assert_eq!(out, b"250-a\r\n250-b\r\n250 c\r\n334 \r\n");
        Ok(())
    }

    #[tokio::test]
    async fn data_reader_handles_long_lines_and_stuffing() -> anyhow::Result<()> {
        let mut input: &[u8] = b"..x\r\n.\r\nnext";
        let got = read_data(&mut input, 100, Duration::from_secs(1)).await?;
        assert_eq!(got, Some((b".x\r\n".to_vec(), false)));

        let long = format!("{}\r\n.\r\n", "a".repeat(MAX_DATA_CHUNK + 10));
        let mut input = long.as_bytes();
        let got = read_data(&mut input, usize::MAX, Duration::from_secs(1)).await?;
        assert_eq!(got.map(|(d, _)| d.len()), Some(MAX_DATA_CHUNK + 12));

        let mut input: &[u8] = b"abcdef\r\n.\r\n";
        let got = read_data(&mut input, 4, Duration::from_secs(1)).await?;
        assert_eq!(got, Some((Vec::new(), true)));

        let mut input: &[u8] = b"cut off";
        assert_eq!(
            read_data(&mut input, 100, Duration::from_secs(1)).await?,
            None
        );
        Ok(())
    }
}
