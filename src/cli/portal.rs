//! `bmsfw portal`: the VRM stand-in. Serves the installer's web UI and HTTP API and talks
//! MQTT to the GX devices of its installations, through the embedded broker (default) or
//! an external one (`--broker mqtt://host:port`).
//!
//! `bmsfw portal hash-password` reads a password from standard input and prints the
//! argon2id hash to put in `portal.toml`.

use anyhow::Context;
use bmsfw_portal::auth::{Users, hash_password};
use bmsfw_portal::config::PortalConfig;
use bmsfw_portal::{EmbeddedBroker, PortalApp, Store, VrmConfig, VrmSide};
use bmsfw_vrm_wire::BrokerAddr;
use clap::{Args, Subcommand};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `bmsfw portal`.
#[derive(Args, Debug)]
pub struct PortalArgs {
    #[command(subcommand)]
    command: Option<PortalCommand>,
    /// The portal's configuration (installations, users).
    #[arg(long, default_value = "config/portal.toml")]
    config: PathBuf,
    /// Where the web UI listens (overrides the configuration).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// An external MQTT broker, mqtt://host:port (overrides the configuration; without
    /// either, the embedded broker runs).
    #[arg(long)]
    broker: Option<BrokerAddr>,
}

/// `bmsfw portal ...`
#[derive(Subcommand, Debug)]
enum PortalCommand {
    /// Read a password from standard input and print its argon2id hash for portal.toml.
    HashPassword,
}

/// Runs `bmsfw portal`.
pub async fn run(args: PortalArgs) -> anyhow::Result<()> {
    if let Some(PortalCommand::HashPassword) = args.command {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        let password = line.trim_end_matches(['\r', '\n']);
        anyhow::ensure!(!password.is_empty(), "the password is empty");
        println!("{}", hash_password(password)?);
        return Ok(());
    }
    let config = PortalConfig::load(&args.config)?;
    let users = Users::new(config.users.clone())?;
    let broker = match args.broker.or(config.broker.clone()) {
        Some(b) => b,
        None => {
            let embedded = EmbeddedBroker::start(config.embedded_broker_listen)?;
            println!("MQTT broker (embedded) on {}", embedded.url());
            embedded.url()
        }
    };
    let app = portal_app(&config, users, broker.clone()).await?;
    let listen = args.listen.unwrap_or(config.listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    println!(
        "portal on http://{} (MQTT {broker}, {} installation(s), database {})",
        listener.local_addr()?,
        config.installations.len(),
        config.database.display()
    );
    tokio::select! {
        served = bmsfw_portal::web::serve(listener, app) => served.context("serving the portal")?,
        _ = tokio::signal::ctrl_c() => println!("stopping"),
    }
    Ok(())
}

/// The portal of `config` with its `users`, talking MQTT through `broker` and keeping its
/// state in `config.database` (what an earlier run kept comes back: sessions, updates,
/// uploads in progress). Must run inside a Tokio runtime.
pub async fn portal_app(
    config: &PortalConfig,
    users: Users,
    broker: BrokerAddr,
) -> anyhow::Result<Arc<PortalApp>> {
    let (store, mut restored) = Store::open(&config.database).await?;
    let mut vrm_config = VrmConfig::new(broker);
    vrm_config.offline_after = Duration::from_secs(config.gx_offline_after_seconds);
    let vrm = VrmSide::start_with_store(
        vrm_config,
        config
            .installations
            .iter()
            .map(|i| (i.portal_id.clone(), i.name.clone()))
            .collect(),
        store.clone(),
        std::mem::take(&mut restored.installations),
        std::mem::take(&mut restored.updates),
    );
    Ok(PortalApp::with_store(
        vrm,
        users,
        config.web_settings(),
        store,
        restored.sessions,
        restored.pending,
    ))
}
