//! `bmsfw`: one binary that wires the crates together.

mod cli;

use clap::{Parser, Subcommand};

/// Remote firmware updates for BMS-Can lithium batteries.
#[derive(Parser, Debug)]
#[command(name = "bmsfw", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the update history and event log kept in a GX state directory.
    History(cli::history::Args),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::History(args) => cli::history::run(&args),
    }
}
