//! `postflow`: the operator's command line. Validates tenant config, keeps `proto/` in step
//! with the code, and signs sample webhooks for local testing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "postflow", version, about = "Postflow: event-driven email for online shops")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a tenants directory: config files, flows and templates.
    Check {
        #[arg(long, default_value = "tenants")]
        tenants: PathBuf,
    },
    /// Write the generated contracts (JSON Schemas, AsyncAPI) into a proto directory.
    Proto {
        #[arg(long, default_value = "proto")]
        dir: PathBuf,
        /// Fail instead of writing when the files differ.
        #[arg(long)]
        check: bool,
    },
    /// Print the Shopify signature (X-Shopify-Hmac-Sha256) of a file's bytes.
    SignShopify {
        #[arg(long)]
        secret: String,
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Check { tenants } => check(&tenants),
        Command::Proto { dir, check } => proto(&dir, check),
        Command::SignShopify { secret, file } => {
            let body = std::fs::read(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            println!("{}", ingest::sources::shopify::sign(secret.as_bytes(), &body));
            Ok(())
        }
    }
}

fn check(dir: &Path) -> anyhow::Result<()> {
    let tenants = tenancy::Tenants::load_dir(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    renderer::compile_templates(&tenants).map_err(|e| anyhow::anyhow!("{}", e.join("\n")))?;
    for t in tenants.iter() {
        println!("ok: tenant {} ({} flows, {} own templates)", t.id, t.flows.len(), t.templates.len());
    }
    Ok(())
}

fn proto(dir: &Path, check_only: bool) -> anyhow::Result<()> {
    let mut stale = Vec::new();
    for (rel, content) in postflow::generated_proto() {
        let path = dir.join(&rel);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == content {
            continue;
        }
        if check_only {
            stale.push(path.display().to_string());
        } else {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, content)?;
            println!("wrote {}", path.display());
        }
    }
    if stale.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("proto is out of date (run `postflow proto`): {}", stale.join(", "))
    }
}
