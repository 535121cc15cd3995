//! `bmsfw`: one binary that wires the crates together.

use clap::Parser;

/// Remote firmware updates for BMS-Can lithium batteries.
#[derive(Parser, Debug)]
#[command(name = "bmsfw", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let _cli = Cli::parse();
    Ok(())
}
