//! `bmsfw gx`: the GX daemon. Loads the approved vendor plugins of `gx.toml`, watches the
//! batteries on its CAN interfaces, runs updates, and reports to VRM over MQTT.
//!
//! Interfaces with `backend = "socketcan"` are opened as Linux CAN interfaces; those with
//! `backend = "sim"` are the buses of the simulated site given with `--sim`, run in real
//! time (for trying the daemon without hardware).

use crate::cli::source::vendor_models;
use anyhow::{Context, bail};
use bmsfw_can::{CanInterface, SocketCanInterface};
use bmsfw_core::config::{CanBackend, GxConfig};
use bmsfw_core::dotted_version::DottedVersion;
use bmsfw_core::engine::{Engine, EngineBuilder};
use bmsfw_core::vrm::{GxEngine, LinkConfig, LinkHandle, VrmAccess, VrmPortalMode, spawn_link};
use bmsfw_sim::site::{RunningSite, SiteDescription};
use bmsfw_vrm_wire::{BrokerAddr, PortalId};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a GX device keeps its firmware version (Venus OS).
const VENUS_VERSION_FILE: &str = "/opt/victronenergy/version";

/// Arguments of `bmsfw gx`.
#[derive(Args, Debug)]
pub struct GxArgs {
    /// The daemon's configuration.
    #[arg(long, default_value = "config/gx.toml")]
    config: PathBuf,
    /// The MQTT broker of the VRM link, mqtt://host:port (overrides [mqtt] broker).
    #[arg(long)]
    broker: Option<BrokerAddr>,
    /// The simulated site whose buses stand behind the interfaces with backend "sim".
    #[arg(long, value_name = "SITE")]
    sim: Option<PathBuf>,
    /// The GX firmware version the gates check (default: read from
    /// /opt/victronenergy/version, as on a GX device).
    #[arg(long, value_name = "VERSION")]
    gx_firmware: Option<DottedVersion>,
    /// /Settings/Network/VrmPortal at start-up (overrides [mqtt] vrm_portal).
    #[arg(long, value_name = "off|read-only|full", value_parser = parse_mode)]
    vrm_portal: Option<VrmPortalMode>,
}

fn parse_mode(s: &str) -> Result<VrmPortalMode, String> {
    match s {
        "off" => Ok(VrmPortalMode::Off),
        "read-only" => Ok(VrmPortalMode::ReadOnly),
        "full" => Ok(VrmPortalMode::Full),
        other => Err(format!("{other:?}: expected off, read-only or full")),
    }
}

fn gx_firmware(arg: Option<DottedVersion>) -> anyhow::Result<DottedVersion> {
    if let Some(v) = arg {
        return Ok(v);
    }
    let text = std::fs::read_to_string(VENUS_VERSION_FILE).with_context(|| {
        format!("reading the GX firmware version from {VENUS_VERSION_FILE} (or pass --gx-firmware)")
    })?;
    let first = text.lines().next().unwrap_or_default().trim();
    first
        .parse()
        .with_context(|| format!("{VENUS_VERSION_FILE} starts with {first:?}, not a version"))
}

/// Runs `bmsfw gx` until Ctrl-C.
pub async fn run(args: GxArgs) -> anyhow::Result<()> {
    let config = GxConfig::load(&args.config)?;
    let firmware = gx_firmware(args.gx_firmware)?;
    let broker = args.broker.unwrap_or_else(|| {
        BrokerAddr::new(config.mqtt.broker.host.clone(), config.mqtt.broker.port)
    });
    let access = VrmAccess::new(args.vrm_portal.unwrap_or(config.mqtt.vrm_portal));
    let site = match &args.sim {
        Some(path) => Some(
            SiteDescription::load(path)?
                .start_with(&vendor_models())
                .with_context(|| format!("starting the simulated site of {}", path.display()))?,
        ),
        None => None,
    };
    let gx = RunningGx::start(&config, firmware, site.as_ref(), broker, access)?;
    println!("{}", gx.banner);
    tokio::signal::ctrl_c().await?;
    println!("stopping");
    gx.shutdown().await?;
    if let Some(site) = site {
        drop(site.shutdown().await);
    }
    Ok(())
}

/// A GX daemon: the engine with the plugins its allowlist approves, its buses, and the
/// VRM link.
pub struct RunningGx {
    engine: Arc<Engine>,
    link: LinkHandle,
    /// What the daemon runs, in two lines for the operator.
    pub banner: String,
}

impl RunningGx {
    /// Loads the approved plugins of `config`, opens its CAN interfaces (those with
    /// backend "sim" are the buses of `site`), starts the engine and the link to `broker`.
    /// Must run inside a Tokio runtime.
    pub fn start(
        config: &GxConfig,
        firmware: DottedVersion,
        site: Option<&RunningSite>,
        broker: BrokerAddr,
        access: VrmAccess,
    ) -> anyhow::Result<RunningGx> {
        let portal_id = PortalId::new(config.portal_id.as_str())?;
        let (mut builder, report) = EngineBuilder::from_gx_config(config, firmware.clone())?;
        for refused in &report.refused {
            tracing::warn!(%refused, "plugin refused");
        }
        // An unreadable allowlist does not stop the daemon: the engine logged it at error
        // level, watches the batteries and refuses every update naming it; the banner
        // says it too.
        for can in &config.can.0 {
            let iface: Arc<dyn CanInterface> = match can.backend {
                CanBackend::Socketcan => Arc::new(
                    SocketCanInterface::open(&can.name)
                        .with_context(|| format!("opening SocketCAN interface {}", can.name))?,
                ),
                CanBackend::Sim => {
                    let Some(site) = site else {
                        bail!(
                            "interface {} has backend \"sim\": give the simulated site with --sim",
                            can.name
                        );
                    };
                    let Some(bus) = site.buses().iter().find(|b| b.name() == can.name) else {
                        bail!("the simulated site has no bus named {}", can.name);
                    };
                    Arc::new(bus.attach("gx"))
                }
            };
            builder = builder.bus(iface);
        }
        let engine = Arc::new(builder.vrm_access(access.clone()).start()?);
        let banner = format!(
            "GX {portal_id}: firmware v{firmware}, buses {}, plugins {}, VRM access {}\nVRM link to {broker}",
            engine.bus_names().join(", "),
            match engine.plugins_unavailable() {
                Some(why) => format!("none ({why})"),
                None => engine.vendors().join(", "),
            },
            access.get()
        );
        let mut link_config =
            LinkConfig::new(portal_id, broker.clone(), vrm_dir(&config.state_dir));
        link_config.gx_firmware_version = format!("v{firmware}");
        link_config.keepalive_window = config.mqtt.keepalive_seconds.duration();
        link_config.mqtt_keep_alive = config.mqtt.broker_keepalive_seconds.duration();
        let link = spawn_link(
            link_config,
            Arc::clone(&engine) as Arc<dyn GxEngine>,
            access,
        )?;
        Ok(RunningGx {
            engine,
            link,
            banner,
        })
    }

    /// Stops the link, then the engine (a running transfer is journaled and resumes at
    /// the next start).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.link.shutdown().await?;
        if let Ok(engine) = Arc::try_unwrap(self.engine) {
            engine.shutdown().await;
        }
        Ok(())
    }
}

/// The link's directory in the state directory.
fn vrm_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("vrm")
}
