//! `bmsfw demo`: the whole mission in one process. The embedded MQTT broker, the portal
//! (the VRM stand-in), a GX daemon that loads the shipped vendor plugins through an
//! allowlist exactly as on a GX device, and the simulated site of `config/demo.toml` in
//! real time. Sample firmware files for every battery a plugin can update are written
//! to a folder it prints.
//!
//! `bmsfw demo --run` does the same without a browser: it uploads every sample file
//! through the portal's HTTP API, follows each update with a progress bar, prints a
//! summary and exits non-zero when an update fails.

mod drive;
mod files;
mod vendors;

use crate::cli::gx::{RunningGx, SiteSetup};
use crate::cli::portal::portal_app;
use crate::cli::source::vendor_models;
use anyhow::{Context, bail};
use bmsfw_core::config::GxConfig;
use bmsfw_core::dotted_version::DottedVersion;
use bmsfw_core::venus::VenusConfig;
use bmsfw_portal::EmbeddedBroker;
use bmsfw_portal::auth::Users;
use bmsfw_portal::config::PortalConfig;
use bmsfw_sim::site::SiteDescription;
use bmsfw_sim::venus::SimVenus;
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The demo's logins, as `config/portal.toml` documents them.
const INSTALLER: (&str, &str) = ("installer", "installer-demo");
const MONITOR: (&str, &str) = ("monitor", "monitor-demo");
/// The GX firmware version the demo's simulated Venus OS reports.
const GX_FIRMWARE: &str = "3.70";

/// Arguments of `bmsfw demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Upload every sample file through the portal's HTTP API, follow the updates, print a
    /// summary and exit (non-zero when an update fails), instead of waiting for a browser.
    #[arg(long)]
    run: bool,
    /// The simulated site.
    #[arg(long, default_value = "config/demo.toml", value_name = "SITE")]
    site: PathBuf,
    /// The portal's configuration (installations, users); the GX takes the first
    /// installation's portal id.
    #[arg(long, default_value = "config/portal.toml", value_name = "FILE")]
    portal_config: PathBuf,
    /// Where the portal listens (default: the portal configuration's, 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The demo's folder (plugins, allowlist, GX configuration and state, sample firmware);
    /// must be empty or new. Default: a new temporary folder, removed at the end.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Where the built vendor plugin libraries are (default: beside this executable).
    #[arg(long, value_name = "DIR")]
    plugins: Option<PathBuf>,
    /// With --run: how long the updates may take in all, in seconds.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    timeout: u64,
    /// The simulated Venus OS reports a grid loss (the inverter/charger inverting from
    /// the batteries) this many seconds after the start, for a minute: an update running
    /// then stops with 728, and none starts until the grid is back.
    #[arg(long, value_name = "SECONDS")]
    grid_loss_after: Option<u64>,
}

/// The demo's folder, removed at the end when the demo made it.
enum DemoDir {
    Given(PathBuf),
    Temporary(tempfile::TempDir),
}

impl DemoDir {
    fn open(given: Option<&Path>) -> anyhow::Result<DemoDir> {
        let Some(dir) = given else {
            return Ok(DemoDir::Temporary(
                tempfile::Builder::new()
                    .prefix("bmsfw-demo-")
                    .tempdir()
                    .context("creating the demo's temporary folder")?,
            ));
        };
        match std::fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    bail!(
                        "{} is not empty: give a new or empty folder for the demo (its GX state must start fresh)",
                        dir.display()
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)
                .with_context(|| format!("creating {}", dir.display()))?,
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        }
        Ok(DemoDir::Given(dir.to_path_buf()))
    }

    /// Keeps the folder on disk; returns where it is.
    fn keep(self) -> PathBuf {
        match self {
            DemoDir::Given(p) => p,
            DemoDir::Temporary(t) => t.keep(),
        }
    }

    fn path(&self) -> &Path {
        match self {
            DemoDir::Given(p) => p,
            DemoDir::Temporary(t) => t.path(),
        }
    }
}

/// One battery the demo updates, and its sample file.
pub struct Target {
    /// The battery's name in the site file.
    pub name: String,
    /// Its vendor.
    pub vendor: String,
    /// Its bus.
    pub bus: String,
    /// Its serial number (how the portal's device list names it).
    pub serial: String,
    /// The sample file.
    pub file: PathBuf,
    /// The version the file installs.
    pub version: String,
}

/// Runs `bmsfw demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let description = SiteDescription::load(&args.site)?;
    let mut portal_config = PortalConfig::load(&args.portal_config)?;
    let Some(installation) = portal_config.installations.first().cloned() else {
        bail!(
            "{} lists no installation: the demo GX needs a portal id",
            args.portal_config.display()
        );
    };
    let dir = DemoDir::open(args.dir.as_deref())?;
    let plugin_source = files::locate_plugins(args.plugins.as_deref())?;
    let plugin_lines = files::install_plugins(&plugin_source, dir.path())?;

    // The samples: one per battery a shipped plugin can update.
    let mut targets = Vec::new();
    for battery in description.batteries() {
        let Some(vendor) = vendors::vendor(&battery.vendor) else {
            continue;
        };
        let Some(serial) = battery.config.identity.serial.clone() else {
            bail!(
                "battery {} of {} has no serial: the portal needs one to name it",
                battery.name,
                args.site.display()
            );
        };
        let sample = (vendor.sample)(&battery)?;
        let file = files::write_sample(dir.path(), &sample)?;
        targets.push(Target {
            name: battery.name.clone(),
            vendor: battery.vendor.clone(),
            bus: battery.bus.clone(),
            serial,
            file,
            version: sample.version,
        });
    }
    if targets.is_empty() {
        bail!(
            "{} has no battery of a vendor whose plugin ships with bmsfw",
            args.site.display()
        );
    }

    // The broker, the site, the GX, the portal.
    let broker = EmbeddedBroker::start(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let broker_url = broker.url();
    let site = description
        .start_with(&vendor_models())
        .with_context(|| format!("starting the simulated site of {}", args.site.display()))?;
    // Venus OS's local broker, and the simulated Venus OS on it.
    let venus_broker = EmbeddedBroker::start(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let venus_url = venus_broker.url();
    let venus = SimVenus::start(
        &venus_url.host,
        venus_url.port,
        installation.portal_id.as_str(),
    );
    venus.set_firmware(&format!("v{GX_FIRMWARE}"));
    tokio::time::timeout(Duration::from_secs(10), venus.connected())
        .await
        .context("the simulated Venus OS did not connect to its broker")?;
    let gx_config_path = files::write_gx_config(
        dir.path(),
        installation.portal_id.as_str(),
        &description,
        &broker_url,
        &venus_url,
    )?;
    let gx_config = GxConfig::load(&gx_config_path)?;
    let firmware: DottedVersion = GX_FIRMWARE.parse().context("the demo's GX firmware")?;
    let gx = RunningGx::start(
        &gx_config,
        SiteSetup::Venus {
            config: VenusConfig::from_gx(&gx_config),
            firmware_hint: Some(firmware),
        },
        Some(&site),
        broker_url.clone(),
    )?;
    if !gx.site_known(Duration::from_secs(10)).await {
        bail!("the GX did not hear the simulated Venus OS's values");
    }
    let venus = std::sync::Arc::new(venus);
    let _grid_loss = args.grid_loss_after.map(|after| {
        let venus = std::sync::Arc::clone(&venus);
        AbortOnDrop(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(after)).await;
            println!("  venus     the grid is lost: the site runs on its batteries for 60 s");
            venus.grid_loss();
            tokio::time::sleep(Duration::from_secs(60)).await;
            println!("  venus     the grid is back");
            venus.grid_restored();
        }))
    });
    // The demo's portal keeps its database in the demo's folder.
    portal_config.database = dir.path().join("portal.sqlite");
    let app = portal_app(
        &portal_config,
        Users::new(portal_config.users.clone())?,
        broker_url.clone(),
    )
    .await?;
    let listen = args.listen.unwrap_or(portal_config.listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("the portal cannot listen on {listen} (choose another with --listen)")
        })?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(bmsfw_portal::web::serve(listener, app));

    println!("bmsfw demo");
    println!("  portal    {url}");
    println!(
        "            log in as {} / {} (Full control) or {} / {} (Monitor only)",
        INSTALLER.0, INSTALLER.1, MONITOR.0, MONITOR.1
    );
    println!("  broker    {broker_url} (embedded)");
    println!("  venus     {venus_url} (simulated Venus OS: VRM access Full, grid connected)");
    println!("  database  {}", portal_config.database.display());
    for line in gx.banner.lines() {
        println!("  {line}");
    }
    println!(
        "  plugins   approved in {}",
        dir.path().join("allowlist.toml").display()
    );
    for line in &plugin_lines {
        println!("            {line}");
    }
    println!(
        "  site      {}: {} buses, {} batteries",
        args.site.display(),
        description.buses.len(),
        description.batteries().len()
    );
    println!("  firmware  {}", dir.path().join("firmware").display());
    for t in &targets {
        println!(
            "            {:<10} {:<7} on {:<5} {} (installs {})",
            t.name,
            t.vendor,
            t.bus,
            t.file.file_name().unwrap_or_default().to_string_lossy(),
            t.version
        );
    }

    let outcome = if args.run {
        let login = drive::Login {
            user: INSTALLER.0.into(),
            password: INSTALLER.1.into(),
        };
        let result = drive::run_updates(
            &url,
            installation.portal_id.as_str(),
            &login,
            &targets,
            Duration::from_secs(args.timeout),
        )
        .await;
        match result {
            Ok(summary) if summary.all_completed() => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("demo run failed: {e:#}");
                ExitCode::FAILURE
            }
        }
    } else {
        println!("Open the portal in a browser; press Ctrl-C to stop.");
        tokio::select! {
            served = server => {
                served.context("the portal stopped")?.context("serving the portal")?;
            }
            _ = tokio::signal::ctrl_c() => println!("stopping"),
        }
        ExitCode::SUCCESS
    };
    gx.shutdown().await?;
    for (battery, exit) in site.shutdown().await {
        if let Err(e) = exit {
            tracing::warn!(%battery, error = %e, "simulated battery ended with an error");
        }
    }
    if outcome != ExitCode::SUCCESS {
        // Nothing lost on failure: the GX's state (jobs, event log) stays for a look.
        let kept = dir.keep();
        println!(
            "the demo's folder is kept for inspection: {} (bmsfw history --state-dir {})",
            kept.display(),
            kept.join("state").display()
        );
    }
    Ok(outcome)
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
