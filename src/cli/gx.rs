//! `bmsfw gx`: the GX daemon. Loads the approved vendor plugins of `gx.toml`, watches the
//! batteries on its CAN interfaces, runs updates, and reports to VRM over MQTT.
//!
//! Interfaces with `backend = "socketcan"` are opened as Linux CAN interfaces; those with
//! `backend = "sim"` are the buses of the simulated site given with `--sim`, run in real
//! time (for trying the daemon without hardware), or the buses `bmsfw simulate --serve`
//! offers in another process (`--site-socket`), which outlive a restart of the daemon.
//!
//! The site's state (VRM portal access, the grid, the GX firmware) comes from the source
//! of `[site] source`: `venus`, live from Venus OS's local MQTT broker (the default on a
//! GX device), or `config`, from `gx.toml` and the flags (the default elsewhere).

use crate::cli::record::Recorder;
#[cfg(feature = "sim")]
use crate::cli::source::vendor_models;
use anyhow::{Context, bail};
use bmsfw_can::{CanInterface, SocketCanInterface};
use bmsfw_core::config::{CanBackend, GxConfig, SiteSource, VENUS_VERSION_FILE};
use bmsfw_core::dotted_version::DottedVersion;
use bmsfw_core::engine::{Engine, EngineBuilder};
use bmsfw_core::gates::{GridStatus, SiteStatus};
use bmsfw_core::venus::{VenusConfig, VenusHandle, VenusTargets, spawn_venus};
use bmsfw_core::vrm::{GxEngine, LinkConfig, LinkHandle, VrmAccess, VrmPortalMode, spawn_link};
#[cfg(feature = "sim")]
use bmsfw_sim::site::{RunningSite, SiteDescription};
use bmsfw_vrm_wire::{BrokerAddr, PortalId};
use clap::{Args, ValueEnum};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    #[cfg(feature = "sim")]
    #[arg(long, value_name = "SITE", conflicts_with = "site_socket")]
    sim: Option<PathBuf>,
    /// The folder where `bmsfw simulate --serve` offers a simulated site's buses: the
    /// interfaces with backend "sim" join the bus of their name there (DIR/<name>.sock),
    /// and the site outlives a restart of this daemon.
    #[cfg(feature = "sim")]
    #[arg(long, value_name = "DIR")]
    site_socket: Option<PathBuf>,
    /// Where the site's state comes from (overrides [site] source): live from Venus OS's
    /// MQTT broker, or from the configuration and these flags.
    #[arg(long, value_enum, value_name = "SOURCE")]
    site_source: Option<SourceArg>,
    /// Venus OS's MQTT broker, mqtt://host:port (overrides [site] broker).
    #[arg(long, value_name = "URL")]
    venus_broker: Option<BrokerAddr>,
    /// With the config source: the GX firmware version the gates check (default: read
    /// from /opt/victronenergy/version, as on a GX device).
    #[arg(long, value_name = "VERSION")]
    gx_firmware: Option<DottedVersion>,
    /// With the config source: /Settings/Network/VrmPortal (overrides [mqtt] vrm_portal).
    #[arg(long, value_name = "off|read-only|full", value_parser = parse_mode)]
    vrm_portal: Option<VrmPortalMode>,
    /// Record every frame and error frame of the buses (the SocketCAN interfaces of the
    /// configuration and the simulated site's buses) into this candump log, in time order.
    #[arg(long, value_name = "LOG")]
    record: Option<PathBuf>,
}

/// `--site-source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SourceArg {
    Venus,
    Config,
}

pub(crate) fn parse_mode(s: &str) -> Result<VrmPortalMode, String> {
    match s {
        "off" => Ok(VrmPortalMode::Off),
        "read-only" => Ok(VrmPortalMode::ReadOnly),
        "full" => Ok(VrmPortalMode::Full),
        other => Err(format!("{other:?}: expected off, read-only or full")),
    }
}

/// The first line of Venus OS's version file, when there is one.
fn version_file() -> Option<anyhow::Result<DottedVersion>> {
    let text = std::fs::read_to_string(VENUS_VERSION_FILE).ok()?;
    let first = text.lines().next().unwrap_or_default().trim();
    // A release candidate (v3.70~12) counts by its release's numbers here; the gates of
    // the config source then read it as that release.
    let base = first.split('~').next().unwrap_or_default();
    Some(
        base.parse()
            .with_context(|| format!("{VENUS_VERSION_FILE} starts with {first:?}, not a version")),
    )
}

pub(crate) fn gx_firmware(arg: Option<DottedVersion>) -> anyhow::Result<DottedVersion> {
    if let Some(v) = arg {
        return Ok(v);
    }
    version_file().unwrap_or_else(|| {
        Err(anyhow::anyhow!(
            "reading the GX firmware version from {VENUS_VERSION_FILE}: no such file (pass \
             --gx-firmware, or use the venus site source)"
        ))
    })
}

/// Where a running daemon takes the site's state from.
pub enum SiteSetup {
    /// Fixed values: the configuration and the command line.
    Config {
        /// The GX firmware.
        firmware: DottedVersion,
        /// `/Settings/Network/VrmPortal`.
        access: VrmAccess,
        /// The grid.
        grid: GridStatus,
    },
    /// Live values from Venus OS's MQTT broker.
    Venus {
        /// The source's settings.
        config: VenusConfig,
        /// The firmware the diagnostics and the VRM link name until Venus OS tells
        /// (the gates read only the live value).
        firmware_hint: Option<DottedVersion>,
    },
}

impl SiteSetup {
    /// From `gx.toml` and the command line.
    fn from_args(config: &GxConfig, args: &GxArgs) -> anyhow::Result<SiteSetup> {
        let source = match args.site_source {
            Some(SourceArg::Venus) => SiteSource::Venus,
            Some(SourceArg::Config) => SiteSource::Config,
            None => config.site.source(),
        };
        Ok(match source {
            SiteSource::Config => SiteSetup::Config {
                firmware: gx_firmware(args.gx_firmware.clone())?,
                access: VrmAccess::new(args.vrm_portal.unwrap_or(config.mqtt.vrm_portal)),
                grid: GridStatus::NotMonitored,
            },
            SiteSource::Venus => {
                if args.vrm_portal.is_some() {
                    bail!(
                        "--vrm-portal applies to the config site source; the venus source reads \
                         /Settings/Network/VrmPortal from Venus OS"
                    );
                }
                let mut venus = VenusConfig::from_gx(config);
                if let Some(broker) = &args.venus_broker {
                    venus.broker = broker.clone();
                }
                let firmware_hint = match args.gx_firmware.clone() {
                    Some(v) => Some(v),
                    None => version_file().and_then(Result::ok),
                };
                SiteSetup::Venus {
                    config: venus,
                    firmware_hint,
                }
            }
        })
    }
}

/// Runs `bmsfw gx` until Ctrl-C.
pub async fn run(args: GxArgs) -> anyhow::Result<()> {
    let config = GxConfig::load(&args.config)?;
    let setup = SiteSetup::from_args(&config, &args)?;
    let broker = args
        .broker
        .clone()
        .unwrap_or_else(|| config.mqtt.broker.clone());
    #[cfg(feature = "sim")]
    let site = match &args.sim {
        Some(path) => Some(
            SiteDescription::load(path)?
                .start_with(&vendor_models())
                .with_context(|| format!("starting the simulated site of {}", path.display()))?,
        ),
        None => None,
    };
    let recorder = match &args.record {
        Some(path) => {
            let interfaces: Vec<String> = config
                .can
                .0
                .iter()
                .filter(|can| matches!(can.backend, CanBackend::Socketcan))
                .map(|can| can.name.clone())
                .collect();
            #[cfg(feature = "sim")]
            let buses = site.as_ref().map_or(&[][..], |site| site.buses());
            #[cfg(not(feature = "sim"))]
            let buses = &[];
            Some(Recorder::start(path, buses, &interfaces)?)
        }
        None => None,
    };
    #[cfg(feature = "sim")]
    let buses = match (&site, &args.site_socket) {
        (Some(site), _) => SimBuses::InProcess(site),
        (None, Some(dir)) => SimBuses::Served(served_buses(&config, dir).await?),
        (None, None) => SimBuses::Absent,
    };
    #[cfg(not(feature = "sim"))]
    let buses = SimBuses::Absent;
    let gx = RunningGx::start(&config, setup, buses, broker)?;
    outln!("{}", gx.banner);
    if let Some(path) = &args.record {
        outln!("recording the buses to {}", path.display());
    }
    tokio::signal::ctrl_c().await?;
    outln!("stopping");
    gx.shutdown().await?;
    if let Some(recorder) = recorder {
        let recorded = recorder.finish().await?;
        outln!(
            "recorded {} lines to {}",
            recorded.lines,
            recorded.path.display()
        );
    }
    #[cfg(feature = "sim")]
    if let Some(site) = site {
        drop(site.shutdown().await);
    }
    Ok(())
}

/// The simulated site whose buses stand behind a daemon's interfaces with backend "sim".
#[cfg(feature = "sim")]
pub type SimSite = RunningSite;
/// A build without the simulator has no simulated site.
#[cfg(not(feature = "sim"))]
pub enum SimSite {}

/// Where the interfaces with backend "sim" come from.
pub enum SimBuses<'a> {
    /// Nowhere: an interface with backend "sim" is an error.
    Absent,
    /// The buses of a site run in this process.
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    InProcess(&'a SimSite),
    /// Buses another process serves, already joined, by name.
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    Served(BTreeMap<String, Arc<dyn CanInterface>>),
}

impl SimBuses<'_> {
    /// The GX's node on the simulated bus `name`.
    fn interface(&mut self, name: &str) -> anyhow::Result<Arc<dyn CanInterface>> {
        match self {
            SimBuses::Absent => bail!(
                "interface {name} has backend \"sim\": give the simulated site with --sim{}",
                if cfg!(feature = "sim") {
                    " or --site-socket"
                } else {
                    " (this build has no simulator)"
                }
            ),
            #[cfg(feature = "sim")]
            SimBuses::InProcess(site) => {
                let Some(bus) = site.bus(name) else {
                    bail!("the simulated site has no bus named {name}");
                };
                Ok(Arc::new(bus.attach("gx")))
            }
            #[cfg(not(feature = "sim"))]
            SimBuses::InProcess(site) => match **site {},
            SimBuses::Served(joined) => joined
                .remove(name)
                .ok_or_else(|| anyhow::anyhow!("no served bus joined for interface {name}")),
        }
    }
}

/// Joins the served bus of each interface with backend "sim", at `dir/<name>.sock`.
#[cfg(feature = "sim")]
async fn served_buses(
    config: &GxConfig,
    dir: &Path,
) -> anyhow::Result<BTreeMap<String, Arc<dyn CanInterface>>> {
    let mut joined = BTreeMap::new();
    for can in config.can.0.iter().filter(|c| c.backend == CanBackend::Sim) {
        let path = dir.join(format!("{}.sock", can.name));
        let iface = bmsfw_sim::bridge::BridgeInterface::connect(&path, &can.name)
            .await
            .with_context(|| {
                format!(
                    "joining simulated bus {} (is `bmsfw simulate --serve {}` running?)",
                    can.name,
                    dir.display()
                )
            })?;
        joined.insert(can.name.clone(), Arc::new(iface) as Arc<dyn CanInterface>);
    }
    Ok(joined)
}

/// A GX daemon: the engine with the plugins its allowlist approves, its buses, and the
/// VRM link.
pub struct RunningGx {
    engine: Arc<Engine>,
    link: LinkHandle,
    venus: Option<VenusHandle>,
    /// What the daemon runs, in two lines for the operator.
    pub banner: String,
}

impl RunningGx {
    /// Loads the approved plugins of `config`, opens its CAN interfaces (those with
    /// backend "sim" come from `sim`), starts the engine, the site source of
    /// `setup` and the link to `broker`. Must run inside a Tokio runtime.
    pub fn start(
        config: &GxConfig,
        setup: SiteSetup,
        mut sim: SimBuses<'_>,
        broker: BrokerAddr,
    ) -> anyhow::Result<RunningGx> {
        let portal_id = PortalId::new(config.portal_id.as_str())?;
        let mqtt_security =
            bmsfw_core::vrm::tls::MqttSecurity::from_settings(&broker, &config.mqtt.security())
                .context("[mqtt] of the GX configuration")?;
        if let Some(c) = mqtt_security.credentials()
            && c.username != portal_id.as_str()
        {
            bail!(
                "[mqtt] credentials are those of {:?}, not of this GX ({portal_id}): provision \
                 this GX with `bmsfw portal provision {portal_id}`",
                c.username
            );
        }
        let (firmware, access, status, venus, source_line) = match setup {
            SiteSetup::Config {
                firmware,
                access,
                grid,
            } => {
                let line = format!(
                    "site state from the configuration: firmware v{firmware}, VRM access {}, {grid}",
                    access.get()
                );
                (firmware, access, SiteStatus::new(grid), None, line)
            }
            SiteSetup::Venus {
                config: venus,
                firmware_hint,
            } => {
                let why = "not yet received from Venus OS";
                let line = format!(
                    "site state live from Venus OS at {}:{} (stale after {} s)",
                    venus.broker.host,
                    venus.broker.port,
                    venus.stale_after.as_secs()
                );
                (
                    firmware_hint.unwrap_or_else(|| DottedVersion::from(vec![0])),
                    VrmAccess::unknown(why),
                    SiteStatus::unknown(why),
                    Some(venus),
                    line,
                )
            }
        };
        let (mut builder, report) = EngineBuilder::from_gx_config(config, firmware.clone())?;
        for refused in &report.refused {
            tracing::warn!(%refused, "plugin refused");
        }
        // An unreadable allowlist does not stop the daemon: the engine logged it at error
        // level, watches the batteries and refuses every update naming it; the banner
        // says it too.
        for can in &config.can.0 {
            let iface: Arc<dyn CanInterface> = match can.backend {
                CanBackend::Socketcan => {
                    if let Some(rate) = can.bitrate {
                        let changed = bmsfw_can::socketcan::ensure_bitrate(&can.name, rate)
                            .with_context(|| {
                                format!("setting the bit rate of {} to {rate} bit/s", can.name)
                            })?;
                        if changed {
                            tracing::info!(interface = %can.name, rate, "CAN bit rate set");
                        }
                    }
                    Arc::new(
                        SocketCanInterface::open(&can.name)
                            .with_context(|| format!("opening SocketCAN interface {}", can.name))?,
                    )
                }
                CanBackend::Sim => sim.interface(&can.name)?,
            };
            builder = builder.bus(iface);
        }
        let engine = Arc::new(
            builder
                .vrm_access(access.clone())
                .site_status(status.clone())
                .start()?,
        );
        let banner = format!(
            "GX {portal_id}: buses {}, plugins {}\n{source_line}\nVRM link to {broker}{}",
            engine.bus_names().join(", "),
            match engine.plugins_unavailable() {
                Some(why) => format!("none ({why})"),
                None => engine.vendors().join(", "),
            },
            match (broker.tls, mqtt_security.credentials()) {
                (true, Some(c)) => format!(" (TLS, user {})", c.username),
                (true, None) => " (TLS, no credentials)".to_owned(),
                (false, _) if mqtt_security.insecure() => " (PLAIN, insecure = true)".to_owned(),
                (false, _) => " (plain, loopback)".to_owned(),
            },
        );
        let venus = venus.map(|venus| {
            spawn_venus(
                venus,
                VenusTargets {
                    vrm: access.clone(),
                    site: status,
                    engine: Some(Arc::clone(&engine) as Arc<dyn GxEngine>),
                },
            )
        });
        let mut link_config =
            LinkConfig::new(portal_id, broker.clone(), vrm_dir(&config.state_dir));
        link_config.mqtt_security = mqtt_security;
        link_config.gx_firmware_version = format!("v{firmware}");
        link_config.keepalive_window = config.mqtt.keepalive_seconds.duration();
        link_config.mqtt_keep_alive = config.mqtt.broker_keepalive_seconds.duration();
        link_config.upload_timeout = config.mqtt.upload_timeout_seconds.duration();
        link_config.command_signing = config.command_signing.clone();
        let link = spawn_link(
            link_config,
            Arc::clone(&engine) as Arc<dyn GxEngine>,
            access,
        )?;
        Ok(RunningGx {
            engine,
            link,
            venus,
            banner,
        })
    }

    /// Waits up to `limit` until the site's values are known (the `venus` source has
    /// heard them); returns whether they are.
    #[cfg_attr(not(all(feature = "sim", feature = "portal")), allow(dead_code))]
    pub async fn site_known(&self, limit: std::time::Duration) -> bool {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let known = self.engine.vrm_access().reading().known().is_some()
                && self.engine.site_status().grid().known().is_some()
                && self
                    .engine
                    .site_status()
                    .gx_firmware()
                    .is_none_or(|f| f.known().is_some());
            if known || tokio::time::Instant::now() >= until {
                return known;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Stops the site source, the link, then the engine (a running transfer is journaled and resumes at
    /// the next start).
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(venus) = self.venus.take() {
            venus.shutdown().await;
        }
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
