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
pub(crate) mod files;
pub(crate) mod vendors;

use crate::cli::gx::{RunningGx, SimBuses, SiteSetup};
use crate::cli::portal::portal_app;
use crate::cli::record::Recorder;
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
/// The demo's site, built in: `bmsfw demo` runs from any folder. `--site` overrides it.
pub(crate) const BUILT_IN_SITE: &str = include_str!("../../../config/demo.toml");
const BUILT_IN_SITE_NAME: &str = "the built-in demo site (config/demo.toml)";
/// The demo portal's installations and users, built in. `--portal-config` overrides them.
const BUILT_IN_PORTAL: &str = include_str!("../../../config/portal.toml");
const BUILT_IN_PORTAL_NAME: &str = "the built-in portal configuration (config/portal.toml)";
/// The GX firmware version the demo's simulated Venus OS reports.
const GX_FIRMWARE: &str = "3.70";

/// Arguments of `bmsfw demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Upload every sample file through the portal's HTTP API, follow the updates, print a
    /// summary and exit (non-zero when an update fails), instead of waiting for a browser.
    #[arg(long)]
    run: bool,
    /// The simulated site (default: the demo site built into bmsfw, config/demo.toml of
    /// its sources).
    #[arg(long, value_name = "SITE")]
    site: Option<PathBuf>,
    /// The portal's configuration (installations, users); the GX takes the first
    /// installation's portal id (default: the one built into bmsfw, config/portal.toml
    /// of its sources).
    #[arg(long, value_name = "FILE")]
    portal_config: Option<PathBuf>,
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
    /// Record every frame and error frame of the site's buses, from the start to the end
    /// of the demo, into this candump log (one log for all buses, in time order).
    #[arg(long, value_name = "LOG")]
    record: Option<PathBuf>,
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
    let (description, site_name) = match &args.site {
        Some(path) => (SiteDescription::load(path)?, path.display().to_string()),
        None => (
            SiteDescription::parse(BUILT_IN_SITE, BUILT_IN_SITE_NAME)?,
            BUILT_IN_SITE_NAME.to_owned(),
        ),
    };
    let (mut portal_config, portal_name) = match &args.portal_config {
        Some(path) => (PortalConfig::load(path)?, path.display().to_string()),
        None => (
            PortalConfig::parse(BUILT_IN_PORTAL).map_err(|p| {
                anyhow::anyhow!(
                    "{BUILT_IN_PORTAL_NAME}, line {}, column {}: {}",
                    p.line,
                    p.column,
                    p.message
                )
            })?,
            BUILT_IN_PORTAL_NAME.to_owned(),
        ),
    };
    let Some(installation) = portal_config.installations.first().cloned() else {
        bail!("{portal_name} lists no installation: the demo GX needs a portal id");
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
                site_name
            );
        };
        let sample = (vendor.sample)(&battery, vendors::IMAGE_BYTES)?;
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
        bail!("{site_name} has no battery of a vendor whose plugin ships with bmsfw");
    }

    // The broker, the site, the GX, the portal.
    // The VRM broker runs the secure path: a CA and the broker's certificate made for
    // this run, the GX provisioned with credentials of its own, TLS and the topic rules.
    let ca = bmsfw_portal::pki::Ca::new("bmsfw demo CA")?;
    ca.write(&dir.path().join(files::MQTT_CA))?;
    let (server_cert, server_key) = (
        dir.path().join("mqtt-server.pem"),
        dir.path().join("mqtt-server.key"),
    );
    ca.server(
        &["localhost", "127.0.0.1"],
        bmsfw_portal::pki::Validity::From(30),
    )?
    .write(&server_cert, &server_key)?;
    let password_file = dir.path().join("mqtt-passwords");
    bmsfw_portal::provision::provision(
        &password_file,
        installation.portal_id.as_str(),
        &dir.path().join(files::GX_CREDENTIALS),
    )?;
    portal_config.embedded_broker_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    portal_config.mqtt.tls_cert = Some(server_cert);
    portal_config.mqtt.tls_key = Some(server_key);
    portal_config.mqtt.password_file = Some(password_file);
    let (portal_broker, portal_security, broker) =
        crate::cli::portal::mqtt_link(&portal_config, None)?;
    let broker = broker.context("the demo's embedded broker")?;
    let broker_url = bmsfw_vrm_wire::BrokerAddr::tls("127.0.0.1", broker.addr().port());
    let site = description
        .start_with(&vendor_models())
        .with_context(|| format!("starting the simulated site of {site_name}"))?;
    let recorder = args
        .record
        .as_deref()
        .map(|path| Recorder::start(path, site.buses(), &[]))
        .transpose()?;
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
    // The portal's command-signing key, and the GX trusting it: the demo runs the
    // secure path.
    let key_file = dir.path().join("portal-signing.key");
    let signer = bmsfw_portal::signer::PortalSigner::load_or_create(&key_file)?;
    {
        use std::io::Write;
        let mut gx_toml = std::fs::OpenOptions::new()
            .append(true)
            .open(&gx_config_path)
            .with_context(|| format!("opening {}", gx_config_path.display()))?;
        writeln!(
            gx_toml,
            "\n[command_signing]\nportal_keys = [\"{}\"]",
            signer.public_key()
        )
        .with_context(|| format!("writing {}", gx_config_path.display()))?;
    }
    portal_config.signing_key = Some(key_file);
    let gx_config = GxConfig::load(&gx_config_path)?;
    let firmware: DottedVersion = GX_FIRMWARE.parse().context("the demo's GX firmware")?;
    let gx = RunningGx::start(
        &gx_config,
        SiteSetup::Venus {
            config: VenusConfig::from_gx(&gx_config),
            firmware_hint: Some(firmware),
        },
        SimBuses::InProcess(&site),
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
            outln!("  venus     the grid is lost: the site runs on its batteries for 60 s");
            venus.grid_loss();
            tokio::time::sleep(Duration::from_secs(60)).await;
            outln!("  venus     the grid is back");
            venus.grid_restored();
        }))
    });
    // The demo's portal keeps its database in the demo's folder.
    portal_config.database = dir.path().join("portal.sqlite");
    let app = portal_app(
        &portal_config,
        Users::new(portal_config.users.clone())?,
        portal_broker,
        portal_security,
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

    outln!("bmsfw demo");
    outln!("  portal    {url}");
    outln!(
        "            log in as {} / {} (Full control) or {} / {} (Monitor only)",
        INSTALLER.0,
        INSTALLER.1,
        MONITOR.0,
        MONITOR.1
    );
    outln!("  broker    {broker_url} (embedded: TLS, per-GX credentials, topic rules)");
    outln!("  venus     {venus_url} (simulated Venus OS: VRM access Full, grid connected)");
    outln!("  database  {}", portal_config.database.display());
    for line in gx.banner.lines() {
        outln!("  {line}");
    }
    outln!(
        "  plugins   approved in {}",
        dir.path().join("allowlist.toml").display()
    );
    for line in &plugin_lines {
        outln!("            {line}");
    }
    outln!(
        "  site      {}: {} buses, {} batteries",
        site_name,
        description.buses.len(),
        description.batteries().len()
    );
    outln!("  firmware  {}", dir.path().join("firmware").display());
    for t in &targets {
        outln!(
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
        outln!("Open the portal in a browser; press Ctrl-C to stop.");
        tokio::select! {
            served = server => {
                served.context("the portal stopped")?.context("serving the portal")?;
            }
            _ = tokio::signal::ctrl_c() => outln!("stopping"),
        }
        ExitCode::SUCCESS
    };
    gx.shutdown().await?;
    if let Some(recorder) = recorder {
        let recorded = recorder.finish().await?;
        outln!(
            "recorded {} lines of the site's buses to {}",
            recorded.lines,
            recorded.path.display()
        );
    }
    for (battery, exit) in site.shutdown().await {
        if let Err(e) = exit {
            tracing::warn!(%battery, error = %e, "simulated battery ended with an error");
        }
    }
    if outcome != ExitCode::SUCCESS {
        // Nothing lost on failure: the GX's state (jobs, event log) stays for a look.
        let kept = dir.keep();
        outln!(
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
