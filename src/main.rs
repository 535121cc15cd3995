//! `bmsfw`: one binary that wires the crates together.

#[cfg(all(feature = "sim", feature = "portal"))]
mod campaign;
mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Remote firmware updates for BMS-Can lithium batteries.
#[derive(Parser, Debug)]
#[command(name = "bmsfw", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the BMS-Can batteries seen on each bus
    Devices(cli::devices::DevicesArgs),
    /// Write the frames of one or more buses to a candump log
    Capture(cli::capture::CaptureArgs),
    /// Print the update history and event log kept in a GX state directory.
    History(cli::history::Args),
    /// Vendor plugins: check a library against the allowlist, list the plugin directory,
    /// run the conformance checks.
    #[command(subcommand)]
    Plugin(cli::plugin::PluginCommand),
    /// Run the GX daemon of a gx.toml: plugins, batteries, updates, the VRM link.
    Gx(cli::gx::GxArgs),
    /// Run the portal (the VRM stand-in): web UI, HTTP API, MQTT towards the GX devices.
    #[cfg(feature = "portal")]
    Portal(cli::portal::PortalArgs),
    /// Run the demo: broker, portal, GX daemon and the simulated site in one process
    /// (--run: update every battery through the portal's HTTP API and print a summary).
    #[cfg(all(feature = "sim", feature = "portal"))]
    Demo(cli::demo::DemoArgs),
    /// Run a seeded fault campaign in virtual time: scenarios of every shipped vendor
    /// with faults at random moments, each checked against the battery's ground truth.
    #[cfg(all(feature = "sim", feature = "portal"))]
    Campaign(cli::campaign::CampaignArgs),
    /// Update one battery from this machine (bench, integration, on-site service): the
    /// engine with every gate, the plugin in its host, progress, an exit code per outcome.
    Update(cli::update::UpdateArgs),
    /// Put a site file's simulated batteries on real SocketCAN interfaces (a bench with
    /// two looped CAN adapters, a test machine's virtual controllers).
    #[cfg(feature = "sim")]
    Simulate(cli::simulate::SimulateArgs),
}

fn main() -> anyhow::Result<ExitCode> {
    // `bmsfw plugin-host ...`: the engine starts this binary as a plugin host when no
    // `bmsfw-plugin-host` is installed beside it. Not a user command, so not in the help.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "plugin-host") {
        bmsfw_core::plugin::hosted::child::main(&args[2..]);
    }
    bmsfw_core::crash::configure_from_env();
    let cli = Cli::parse();
    // The demo prints its own account of what happens; its parts log only trouble.
    let default_filter = match cli.command {
        #[cfg(all(feature = "sim", feature = "portal"))]
        Command::Demo(_) => "warn,rumqttd=off",
        // Its scenarios fail on purpose: only the campaign's own report is news.
        #[cfg(all(feature = "sim", feature = "portal"))]
        Command::Campaign(_) => "off",
        // Its own lines tell the update; the engine's log only trouble.
        Command::Update(_) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: a pipe or a log file gets plain lines.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    match cli.command {
        Command::Devices(args) => runtime()?
            .block_on(cli::devices::run(args))
            .map(|()| ExitCode::SUCCESS),
        Command::Capture(args) => runtime()?
            .block_on(cli::capture::run(args))
            .map(|()| ExitCode::SUCCESS),
        Command::History(args) => cli::history::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Plugin(command) => cli::plugin::run(command),
        Command::Gx(args) => server_runtime()?
            .block_on(cli::gx::run(args))
            .map(|()| ExitCode::SUCCESS),
        #[cfg(feature = "portal")]
        Command::Portal(args) => server_runtime()?
            .block_on(cli::portal::run(args))
            .map(|()| ExitCode::SUCCESS),
        #[cfg(all(feature = "sim", feature = "portal"))]
        Command::Demo(args) => server_runtime()?.block_on(cli::demo::run(args)),
        #[cfg(all(feature = "sim", feature = "portal"))]
        Command::Campaign(args) => cli::campaign::run_campaign(args),
        Command::Update(args) => Ok(cli::update::run(args)),
        #[cfg(feature = "sim")]
        Command::Simulate(args) => runtime()?
            .block_on(cli::simulate::run(args))
            .map(|()| ExitCode::SUCCESS),
    }
}

/// A multi-threaded runtime for the servers (the portal, the GX daemon).
fn server_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// A single-threaded runtime: the commands wait on a few interfaces, and the GX has
/// little CPU to spare.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
