//! Speaks raw SMTP over TCP to the capture server: dialogue, pipelining, dot-stuffing, scripted faults, file output and waiting.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use smtp_capture::{CaptureConfig, Rule, SmtpCapture, Stage};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const WAIT: Duration = Duration::from_secs(10);

/// A minimal SMTP client that reads one (possibly multi-line) reply at a time.
struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (r, w) = stream.into_split();
        Self {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    /// Connects and checks the 220 greeting.
    async fn open(addr: SocketAddr) -> Self {
        let mut client = Self::connect(addr).await;
        let (code, _) = client.reply().await;
        assert_eq!(code, 220);
        client
    }

    async fn send(&mut self, raw: &str) {
        self.writer.write_all(raw.as_bytes()).await.expect("write");
    }

    /// Reads one reply: its code and the text of all its lines.
    async fn reply(&mut self) -> (u16, Vec<String>) {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
                .await
                .expect("reply in time")
                .expect("read");
            assert!(n > 0, "connection closed while waiting for a reply");
            assert!(
                line.ends_with("\r\n"),
                "reply line must end with crlf: {line:?}"
            );
            let code: u16 = line[..3].parse().expect("reply code");
            let more = line.as_bytes()[3] == b'-';
            lines.push(line[4..].trim_end().to_owned());
            if !more {
                return (code, lines);
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> u16 {
        self.send(&format!("{line}\r\n")).await;
        self.reply().await.0
    }

    /// Sends a complete transaction and returns the final reply code (or the first failing one).
    async fn mail(&mut self, from: &str, to: &[&str], body: &str) -> u16 {
        let code = self.cmd(&format!("MAIL FROM:<{from}>")).await;
        if code != 250 {
            return code;
        }
        for rcpt in to {
            let code = self.cmd(&format!("RCPT TO:<{rcpt}>")).await;
            if code != 250 {
                self.cmd("RSET").await;
                return code;
            }
        }
        assert_eq!(self.cmd("DATA").await, 354);
        self.send(&format!("{body}.\r\n")).await;
        self.reply().await.0
    }

    async fn assert_closed(&mut self) {
        let mut rest = Vec::new();
        let n = tokio::time::timeout(WAIT, self.reader.read_to_end(&mut rest))
            .await
            .expect("close in time")
            .expect("read to end");
        assert_eq!(
            n,
            0,
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

/// Polls `f` every 10 ms until it yields `Some`, panicking after `deadline`.
async fn poll_until<T, Fut: Future<Output = Option<T>>>(
    deadline: Duration,
    what: &str,
    mut f: impl FnMut() -> Fut,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn start() -> SmtpCapture {
    SmtpCapture::start(CaptureConfig::default())
        .await
        .expect("start capture")
}

#[tokio::test]
async fn full_dialogue_with_dot_stuffing() {
    let capture = start().await;
    let mut c = Client::open(capture.addr()).await;

    c.send("EHLO tester\r\n").await;
    let (code, lines) = c.reply().await;
    assert_eq!(code, 250);
    for ext in ["PIPELINING", "8BITMIME", "SMTPUTF8"] {
        assert!(lines.iter().any(|l| l == ext), "missing {ext} in {lines:?}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("SIZE ")),
        "missing SIZE in {lines:?}"
    );

    assert_eq!(c.cmd("NOOP").await, 250);
    assert_eq!(c.cmd("VRFY someone").await, 252);
    assert_eq!(c.cmd("FROB").await, 502);
    assert_eq!(c.cmd("RCPT TO:<x@example.com>").await, 503);
    assert_eq!(c.cmd("DATA").await, 503);

    // Already dot-stuffed as a client sends it; `mail` adds the terminating dot line.
    let body = "Subject: first\r\n\r\nline one\r\n..starts with a dot\r\n...two dots\r\n";
    assert_eq!(
        c.mail(
            "alice@example.com",
            &["bob@example.com", "carol@example.com"],
            body
        )
        .await,
        250
    );

    // RSET drops a half-built transaction; the next one starts clean.
    assert_eq!(c.cmd("MAIL FROM:<x@example.com>").await, 250);
    assert_eq!(c.cmd("RSET").await, 250);
    assert_eq!(c.cmd("MAIL FROM:<>").await, 250);
    assert_eq!(c.cmd("RCPT TO:<dave@example.com>").await, 250);
    assert_eq!(c.cmd("DATA").await, 354);
    c.send("Subject: second\r\n\r\nbody\r\n.\r\n").await;
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.cmd("QUIT").await, 221);
    c.assert_closed().await;

    let mails = capture.wait_for(2, WAIT).await.expect("two mails");
    assert_eq!(mails.len(), 2);
    assert_eq!(mails[0].mail_from, "alice@example.com");
    assert_eq!(mails[0].rcpt_to, ["bob@example.com", "carol@example.com"]);
    assert_eq!(
        String::from_utf8_lossy(&mails[0].data),
        "Subject: first\r\n\r\nline one\r\n.starts with a dot\r\n..two dots\r\n"
    );
    assert_eq!(mails[0].subject().as_deref(), Some("first"));
    assert_eq!(mails[0].path, None);
    assert_eq!(mails[1].mail_from, "");
    assert_eq!(mails[1].rcpt_to, ["dave@example.com"]);
    assert_eq!(mails[1].body(), "body\r\n");
    assert_eq!(capture.count(), 2);
    assert_eq!(capture.rejected(), 0);
}

#[tokio::test]
async fn pipelined_batches_get_replies_in_order() {
    let capture = start().await;
    capture.push_rule(Rule::rcpt(550, "no such user").matching("nobody@"));
    let mut c = Client::open(capture.addr()).await;

    // One write carrying a whole envelope, as a PIPELINING client sends it.
    c.send(
        "EHLO pipe\r\nMAIL FROM:<a@example.com> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<b@example.com>\r\n\
         RCPT TO:<nobody@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n",
    )
    .await;
    assert_eq!(c.reply().await.0, 250);
    let codes = [
        c.reply().await.0,
        c.reply().await.0,
        c.reply().await.0,
        c.reply().await.0,
        c.reply().await.0,
    ];
    assert_eq!(codes, [250, 250, 550, 250, 354]);
    // Message, terminator, and the next transaction plus QUIT in one write.
    c.send(
        "Subject: piped\r\n\r\n..dot\r\n.\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<nobody@example.com>\r\n\
         DATA\r\nNOOP\r\nQUIT\r\n",
    )
    .await;
    let codes = [
        c.reply().await.0,
        c.reply().await.0,
        c.reply().await.0,
        c.reply().await.0,
        c.reply().await.0,
        c.reply().await.0,
    ];
    assert_eq!(codes, [250, 250, 550, 554, 250, 221]);
    c.assert_closed().await;

    let mails = capture.wait_for(1, WAIT).await.expect("one mail");
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].rcpt_to, ["b@example.com", "c@example.com"]);
    assert_eq!(mails[0].data, b"Subject: piped\r\n\r\n.dot\r\n");
    assert_eq!(capture.rejected(), 2);
}

#[tokio::test]
async fn rcpt_rule_answers_451_twice_then_accepts() {
    let capture = start().await;
    capture.push_rule(
        Rule::rcpt(451, "try again later")
            .matching("retry@")
            .times(2),
    );
    let mut c = Client::open(capture.addr()).await;
    assert_eq!(c.cmd("EHLO x").await, 250);
    let body = "Subject: retry\r\n\r\nhi\r\n";
    assert_eq!(
        c.mail("a@example.com", &["retry@example.com"], body).await,
        451
    );
    assert_eq!(
        c.mail("a@example.com", &["retry@example.com"], body).await,
        451
    );
    assert_eq!(capture.count(), 0);
    assert_eq!(capture.rejected(), 2);
    assert_eq!(
        c.mail("a@example.com", &["retry@example.com"], body).await,
        250
    );
    let mails = capture
        .wait_for(1, WAIT)
        .await
        .expect("accepted after retries");
    assert_eq!(mails[0].rcpt_to, ["retry@example.com"]);
    assert_eq!(capture.rejected(), 2);
}

#[tokio::test]
async fn data_rule_bounces_forever_and_connect_rule_refuses() {
    let capture = SmtpCapture::start(CaptureConfig {
        rules: vec![Rule::data(550, "mailbox unavailable").matching("bounce@")],
        ..CaptureConfig::default()
    })
    .await
    .expect("start");
    let mut c = Client::open(capture.addr()).await;
    assert_eq!(c.cmd("HELO x").await, 250);
    for _ in 0..3 {
        assert_eq!(
            c.mail(
                "a@example.com",
                &["ok@example.com", "BOUNCE@example.com"],
                "x\r\n"
            )
            .await,
            550
        );
    }
    assert_eq!(
        c.mail("a@example.com", &["ok@example.com"], "x\r\n").await,
        250
    );
    assert_eq!(capture.wait_for(1, WAIT).await.expect("one").len(), 1);
    assert_eq!(capture.rejected(), 3);

    capture.push_rule(Rule::new(Stage::Connect, 421, "too busy").times(1));
    let mut refused = Client::connect(capture.addr()).await;
    assert_eq!(refused.reply().await, (421, vec!["too busy".to_owned()]));
    refused.assert_closed().await;
    // The rule was used up: the next connection is greeted normally.
    let mut c2 = Client::open(capture.addr()).await;
    assert_eq!(c2.cmd("QUIT").await, 221);
    assert_eq!(capture.rejected(), 4);

    capture.clear_rules();
    assert_eq!(
        c.mail("a@example.com", &["bounce@example.com"], "x\r\n")
            .await,
        250
    );
    assert_eq!(capture.wait_for(2, WAIT).await.expect("two").len(), 2);
}

#[tokio::test]
async fn writes_eml_files_atomically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mail_dir = dir.path().join("mail");
    let capture = SmtpCapture::start(CaptureConfig {
        dir: Some(mail_dir.clone()),
        ..CaptureConfig::default()
    })
    .await
    .expect("start");
    let mut c = Client::open(capture.addr()).await;
    assert_eq!(c.cmd("EHLO x").await, 250);
    assert_eq!(
        c.mail(
            "a@example.com",
            &["b@example.com"],
            "Subject: one\r\n\r\n1\r\n"
        )
        .await,
        250
    );
    assert_eq!(
        c.mail(
            "a@example.com",
            &["b@example.com"],
            "Subject: two\r\n\r\n2\r\n"
        )
        .await,
        250
    );
    let mails = capture.wait_for(2, WAIT).await.expect("two mails");

    let mut names: Vec<String> = std::fs::read_dir(&mail_dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "only final files remain: {names:?}");
    for (mail, seq) in mails.iter().zip(1..) {
        let path = mail.path.as_ref().expect("path recorded");
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let (millis, rest) = name.split_once('-').expect("millis-seq.eml");
        assert!(millis.parse::<u128>().is_ok(), "bad name {name}");
        assert_eq!(rest, format!("{seq}.eml"));
        assert!(names.contains(&name));
        assert_eq!(std::fs::read(path).expect("read eml"), mail.data);
    }
}

#[tokio::test]
async fn wait_for_reports_count_on_timeout_and_wakes_on_arrival() {
    let capture = start().await;
    let err = capture
        .wait_for(1, Duration::from_millis(50))
        .await
        .expect_err("nothing sent yet");
    assert!(err.to_string().contains("saw 0"), "{err}");

    let addr = capture.addr();
    let waiter = capture.wait_for(3, WAIT);
    let sender = async move {
        let mut c = Client::open(addr).await;
        assert_eq!(c.cmd("EHLO x").await, 250);
        for i in 0..3 {
            assert_eq!(
                c.mail("a@example.com", &["b@example.com"], &format!("n: {i}\r\n"))
                    .await,
                250
            );
        }
    };
    let (mails, ()) = tokio::join!(waiter, sender);
    assert_eq!(mails.expect("three").len(), 3);
}

#[tokio::test]
async fn many_concurrent_connections() {
    let capture = start().await;
    let addr = capture.addr();
    let mut clients = tokio::task::JoinSet::new();
    for n in 0..20 {
        clients.spawn(async move {
            let mut c = Client::open(addr).await;
            assert_eq!(c.cmd("EHLO x").await, 250);
            for m in 0..5 {
                let rcpt = format!("u{n}@example.com");
                let code = c
                    .mail(
                        "a@example.com",
                        &[&rcpt],
                        &format!("Subject: {n}-{m}\r\n\r\nx\r\n"),
                    )
                    .await;
                assert_eq!(code, 250);
            }
            assert_eq!(c.cmd("QUIT").await, 221);
        });
    }
    while let Some(result) = clients.join_next().await {
        result.expect("client task");
    }
    assert_eq!(
        capture.wait_for(100, WAIT).await.expect("all mail").len(),
        100
    );
}

#[tokio::test]
async fn hang_mode_never_greets_until_turned_off() {
    let capture = SmtpCapture::start(CaptureConfig {
        hang_on_connect: true,
        ..CaptureConfig::default()
    })
    .await
    .expect("start");
    let mut stuck = TcpStream::connect(capture.addr())
        .await
        .expect("tcp accepted");
    let mut buf = [0u8; 64];
    let silent = tokio::time::timeout(Duration::from_millis(300), stuck.read(&mut buf)).await;
    assert!(silent.is_err(), "hung server must not send anything");

    capture.set_hang(false);
    let mut c = Client::open(capture.addr()).await;
    assert_eq!(c.cmd("QUIT").await, 221);
}

#[tokio::test]
async fn oversized_messages_get_552() {
    let capture = SmtpCapture::start(CaptureConfig {
        max_message_size: 64,
        ..CaptureConfig::default()
    })
    .await
    .expect("start");
    let mut c = Client::open(capture.addr()).await;
    assert_eq!(c.cmd("EHLO x").await, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@example.com> SIZE=1000").await, 552);
    let big = format!("{}\r\n", "x".repeat(100));
    assert_eq!(c.mail("a@example.com", &["b@example.com"], &big).await, 552);
    assert_eq!(
        c.mail("a@example.com", &["b@example.com"], "small\r\n")
            .await,
        250
    );
    assert_eq!(capture.wait_for(1, WAIT).await.expect("one").len(), 1);
}

#[tokio::test]
async fn subscribe_sees_new_mail() {
    let capture = start().await;
    let mut rx = capture.subscribe();
    let mut c = Client::open(capture.addr()).await;
    assert_eq!(c.cmd("EHLO x").await, 250);
    assert_eq!(
        c.mail("a@example.com", &["b@example.com"], "Subject: hi\r\n\r\n")
            .await,
        250
    );
    let mail = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("in time")
        .expect("mail");
    assert_eq!(mail.subject().as_deref(), Some("hi"));
}

#[tokio::test]
async fn shutdown_closes_listener_and_connections() {
    let capture = start().await;
    let addr = capture.addr();
    let mut open = Client::open(addr).await;
    capture.shutdown().await;
    open.assert_closed().await;
    poll_until(WAIT, "listener to close", || async {
        TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;
}
