//! `bmsfw portal`: the VRM stand-in. Serves the installer's web UI and HTTP API and talks
//! MQTT to the GX devices of its installations, through the embedded broker (default) or
//! an external one (`--broker mqtt://host:port`).
//!
//! `bmsfw portal hash-password` reads a password from standard input and prints the
//! argon2id hash to put in `portal.toml`.
//!
//! `bmsfw portal provision ID --out FILE` gives a GX (or, with `vrm.portal`, the portal
//! itself on an external broker) a new MQTT password: its entry in `[mqtt] password_file`
//! and a credentials file for the GX. `bmsfw portal revoke ID` removes the entry.

use anyhow::Context;
use bmsfw_core::vrm::tls::{MqttCredentials, MqttSecurity, Secret};
use bmsfw_portal::auth::{Users, hash_password};
use bmsfw_portal::broker::{SecureBroker, ServerTls};
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
    /// An external MQTT broker, mqtts://host:port or mqtt://host:port (overrides the
    /// configuration; without either, the embedded broker runs).
    #[arg(long)]
    broker: Option<BrokerAddr>,
}

/// `bmsfw portal ...`
#[derive(Subcommand, Debug)]
enum PortalCommand {
    /// Read a password from standard input and print its argon2id hash for portal.toml.
    HashPassword,
    /// Give a GX a new MQTT password: its entry in [mqtt] password_file and a credentials
    /// file for the GX (provisioning again rotates it; the old password stops working).
    Provision {
        /// The GX's portal id (or vrm.portal: the portal's own identity on an external
        /// broker).
        id: String,
        /// The credentials file to write (mode 0600), for the GX's [mqtt] credentials.
        #[arg(long)]
        out: PathBuf,
    },
    /// Remove a GX's entry from [mqtt] password_file: it can no longer log in (the
    /// embedded broker also ends its connection within seconds).
    Revoke {
        /// The GX's portal id.
        id: String,
    },
}

/// `[mqtt] password_file` of `config`, or why there is none.
fn password_file(config: &PortalConfig, path: &std::path::Path) -> anyhow::Result<PathBuf> {
    config.mqtt.password_file.clone().with_context(|| {
        format!(
            "{} has no [mqtt] password_file: name the file the broker reads its entries from",
            path.display()
        )
    })
}

/// `provision` and `revoke`.
fn credentials_command(args: &PortalArgs, command: &PortalCommand) -> anyhow::Result<()> {
    let config = PortalConfig::load(&args.config)?;
    let file = password_file(&config, &args.config)?;
    match command {
        PortalCommand::Provision { id, out } => {
            bmsfw_portal::provision::provision(&file, id, out)?;
            outln!("{id}: new MQTT password; entry in {}", file.display());
            outln!(
                "copy {} to the GX (mode 0600) and name it in gx.toml: [mqtt] credentials = \"...\"",
                out.display()
            );
            outln!(
                "the embedded broker takes the new entry at once (a connection made with an \
                 older password ends); mosquitto reads it on SIGHUP"
            );
            if id != bmsfw_portal::acl::PORTAL_USERNAME
                && !config
                    .installations
                    .iter()
                    .any(|i| i.portal_id.as_str() == id)
            {
                outln!(
                    "note: {id} is not among the installations of {}",
                    args.config.display()
                );
            }
        }
        PortalCommand::Revoke { id } => {
            if bmsfw_portal::provision::revoke(&file, id)? {
                outln!(
                    "{id}: entry removed from {}; it can no longer log in",
                    file.display()
                );
            } else {
                outln!("{id}: no entry in {}", file.display());
            }
        }
        PortalCommand::HashPassword => {}
    }
    Ok(())
}

/// The broker the portal talks to, and how. Without `external`: the embedded broker,
/// started here behind its gate (TLS with `[mqtt] tls_cert` and `tls_key`, plain on a
/// loopback address otherwise; the GXs of `[mqtt] password_file`), which the portal joins
/// with an identity made for this run (over TLS, pinning the broker's certificate). With
/// `external`: that broker, with `[mqtt] ca`, `credentials` and `insecure`.
pub fn mqtt_link(
    config: &PortalConfig,
    external: Option<BrokerAddr>,
) -> anyhow::Result<(BrokerAddr, MqttSecurity, Option<EmbeddedBroker>)> {
    if let Some(broker) = external {
        let security = MqttSecurity::from_settings(&broker, &config.mqtt.client())
            .context("[mqtt] of the portal configuration")?;
        if security.credentials().is_none() {
            tracing::warn!(
                %broker,
                "the portal logs in to the broker without credentials ([mqtt] credentials): \
                 a broker with topic rules will refuse it"
            );
        }
        return Ok((broker, security, None));
    }
    let tls = match (&config.mqtt.tls_cert, &config.mqtt.tls_key) {
        (Some(cert), Some(key)) => Some(ServerTls::load(cert, key)?),
        _ => None,
    };
    let pinned = tls.as_ref().map(|t| t.chain[0].to_vec());
    if config.mqtt.password_file.is_none() {
        tracing::warn!("[mqtt] password_file is not set: no GX can log in to the embedded broker");
    }
    let secret = bmsfw_portal::passwd::new_password();
    let embedded = EmbeddedBroker::start_secure(SecureBroker {
        listen: config.embedded_broker_listen,
        tls,
        password_file: config.mqtt.password_file.clone(),
        portal: Some(Secret::new(secret.clone())),
    })?;
    // The portal reaches its broker on loopback when it listens on every address.
    let addr = embedded.addr();
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        addr.ip().to_string()
    };
    let credentials = MqttCredentials::new(
        bmsfw_portal::acl::PORTAL_USERNAME.into(),
        Secret::new(secret),
    )
    .map_err(anyhow::Error::msg)?;
    let (broker, security) = match pinned {
        Some(cert) => {
            let broker = BrokerAddr::tls(host, addr.port());
            let security = MqttSecurity::pinned(&broker, cert, Some(credentials))?;
            (broker, security)
        }
        None => {
            let broker = BrokerAddr::new(host, addr.port());
            let security = MqttSecurity::plain(&broker, Some(credentials), false)?;
            (broker, security)
        }
    };
    Ok((broker, security, Some(embedded)))
}

/// Runs `bmsfw portal`.
pub async fn run(args: PortalArgs) -> anyhow::Result<()> {
    if let Some(command @ (PortalCommand::Provision { .. } | PortalCommand::Revoke { .. })) =
        &args.command
    {
        return credentials_command(&args, command);
    }
    if let Some(PortalCommand::HashPassword) = args.command {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        let password = line.trim_end_matches(['\r', '\n']);
        anyhow::ensure!(!password.is_empty(), "the password is empty");
        outln!("{}", hash_password(password)?);
        return Ok(());
    }
    let config = PortalConfig::load(&args.config)?;
    let users = Users::new(config.users.clone())?;
    let (broker, security, embedded) = mqtt_link(&config, args.broker.or(config.broker.clone()))?;
    if let Some(embedded) = &embedded {
        outln!(
            "MQTT broker (embedded) on {} ({}; GX credentials from {})",
            embedded.url(),
            if embedded.url().tls {
                "TLS"
            } else {
                "plain, loopback only"
            },
            config.mqtt.password_file.as_ref().map_or_else(
                || "nowhere: set [mqtt] password_file".to_owned(),
                |p| p.display().to_string()
            )
        );
    }
    let app = portal_app(&config, users, broker.clone(), security).await?;
    let listen = args.listen.unwrap_or(config.listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    outln!(
        "portal on http://{} (MQTT {broker}, {} installation(s), database {})",
        listener.local_addr()?,
        config.installations.len(),
        config.database.display()
    );
    tokio::select! {
        served = bmsfw_portal::web::serve(listener, app) => served.context("serving the portal")?,
        _ = tokio::signal::ctrl_c() => outln!("stopping"),
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
    security: MqttSecurity,
) -> anyhow::Result<Arc<PortalApp>> {
    let (store, mut restored) = Store::open(&config.database).await?;
    let mut vrm_config = VrmConfig::new(broker);
    vrm_config.security = security;
    vrm_config.offline_after = Duration::from_secs(config.gx_offline_after_seconds);
    let key_file = config.signing_key_path();
    let signer = bmsfw_portal::signer::PortalSigner::load_or_create(&key_file)?;
    outln!(
        "command-signing key {} (public key {}; put it in each GX's gx.toml, [command_signing] portal_keys)",
        key_file.display(),
        signer.public_key()
    );
    vrm_config.signer = Some(Arc::new(signer));
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
