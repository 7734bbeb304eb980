//! `postflow-mailcatcher`: runs the SMTP capture server standalone for local development, logging each accepted message.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use smtp_capture::{CaptureConfig, CapturedMail, DEFAULT_MAX_MESSAGE_SIZE, SmtpCapture};
use tokio::sync::broadcast::error::RecvError;
use tracing_subscriber::EnvFilter;

/// Catch all mail sent to a local SMTP port and keep it as `.eml` files.
#[derive(Debug, Parser)]
#[command(name = "postflow-mailcatcher", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(
        long,
        env = "POSTFLOW_MAILCATCHER_ADDR",
        default_value = "127.0.0.1:2525"
    )]
    addr: SocketAddr,
    /// Directory to write each accepted message to (as `<unix-millis>-<seq>.eml`).
    #[arg(long, env = "POSTFLOW_MAILCATCHER_DIR")]
    dir: Option<PathBuf>,
    /// Largest message accepted, in bytes.
    #[arg(long, env = "POSTFLOW_MAILCATCHER_MAX_SIZE", default_value_t = DEFAULT_MAX_MESSAGE_SIZE)]
    max_message_size: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let capture = SmtpCapture::start(CaptureConfig {
        addr: args.addr,
        dir: args.dir,
        max_message_size: args.max_message_size,
        ..CaptureConfig::default()
    })
    .await?;
    let mut mail = capture.subscribe();
    match capture.dir() {
        Some(dir) => println!(
            "listening on {} writing to {}",
            capture.addr(),
            dir.display()
        ),
        None => println!("listening on {}", capture.addr()),
    }

    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            result = &mut stop => {
                result?;
                break;
            }
            received = mail.recv() => match received {
                Ok(mail) => println!("{}", describe(&mail)),
                Err(RecvError::Lagged(missed)) => tracing::warn!(missed, "log fell behind, some messages not listed"),
                Err(RecvError::Closed) => break,
            },
        }
    }
    println!("stopping, {} messages accepted", capture.count());
    capture.shutdown().await;
    Ok(())
}

fn describe(mail: &CapturedMail) -> String {
    let from = if mail.mail_from.is_empty() {
        "<>"
    } else {
        &mail.mail_from
    };
    let mut line = format!("accepted from={from} to={}", mail.rcpt_to.join(","));
    if let Some(subject) = mail.subject() {
        line.push_str(&format!(" subject={subject:?}"));
    }
    if let Some(path) = &mail.path {
        line.push_str(&format!(" file={}", path.display()));
    }
    line.push_str(&format!(" bytes={}", mail.data.len()));
    line
}

#[cfg(unix)]
async fn stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn stop_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await?;
    Ok(())
}
