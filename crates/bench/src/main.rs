//! postflow-bench: starts the real stack (nats-server with JetStream file storage,
//! PostgreSQL, postfix's smtp-sink, the service binaries as separate processes), runs each
//! scenario next to a baseline measured in the same run, and writes a Markdown table and
//! JSON. `--quick` runs every scenario briefly as a smoke test (no timing assertions).

mod load;
mod procs;
mod report;
mod sample;
mod scenarios;

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "postflow-bench", about = "Measure Postflow against same-run baselines")]
pub struct Cli {
    /// Run each scenario briefly (smoke test for CI).
    #[arg(long)]
    pub quick: bool,
    /// The workspace root (for the demo tenant and sample order).
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    /// Write the Markdown table here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Messages in the send and sender scenarios and in the latency scenario's marketing
    /// backlog (default 100,000; 300 with --quick). The target scale is 1,000,000.
    #[arg(long)]
    pub messages: Option<usize>,
    /// Orders per second in the latency scenario (default 200; 20 with --quick).
    #[arg(long)]
    pub rate: Option<u64>,
    /// SMTP connections of the sender's marketing lane in the sender scenario, and of the
    /// smtp-source baseline (default 4, the sender's default); 4 messages in flight per
    /// connection (16 at the default, the sender's default).
    #[arg(long, default_value_t = 4)]
    pub sender_connections: usize,
    /// The demo tenant's provider limit (`[delivery] max_per_second`) for every scenario,
    /// as a real provider account would have; unset, the demo tenant has none.
    #[arg(long)]
    pub max_per_second: Option<u32>,
    /// Run only these scenarios (ingest, latency, send, sender, tracker).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = scenarios::run_all(&cli).await?;
    let markdown = report.markdown();
    println!("{markdown}");
    if let Some(path) = &cli.out {
        std::fs::write(path, &markdown)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
