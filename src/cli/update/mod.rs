//! `bmsfw update`: one battery updated from this machine, as `fwupdtool` is to fwupd. For
//! a vendor at a bench, an integrator, on-site service over SSH.
//!
//! It runs what the GX daemon runs: the engine with every gate, the battery's plugin in
//! its plugin host (approved by an allowlist), stage 1 (the file staged and inspected by
//! the plugin) and stage 2 (the transfer), the journal and the event log in a state
//! directory. Instead of the VRM link, the file comes from the command line and the
//! progress goes to the terminal; the outcome is the exit code (see [`exit`]).
//!
//! The battery is on a SocketCAN interface (`--bus`), or in a simulated site run in this
//! process in real time (`--sim SITE --battery NAME`). The site's state the gates read
//! (GX firmware, VRM access, grid) comes from the flags, or from the `gx.toml` of
//! `--config` (its `[site]` source, live from Venus OS on a GX device).
//!
//! Every wait is bounded (`--wait`, `--timeout`). Ctrl-C while the file is staged
//! cancels the update (719); once the transfer has begun the engine lets it run to its
//! end under its safety rules, as it does for VRM: a second Ctrl-C stops bmsfw there,
//! the job journaled in the state directory (it resumes when bmsfw runs again on it).

mod exit;
mod progress;
mod sim_site;

pub use exit::{EXIT_CODES, Exit};

use crate::cli::gx::{gx_firmware, parse_mode};
use crate::cli::record::Recorder;
use anyhow::{Context, anyhow, bail};
use bmsfw_can::{CanInterface, SocketCanInterface};
use bmsfw_core::config::{GxConfig, SiteSource};
use bmsfw_core::dotted_version::DottedVersion;
use bmsfw_core::engine::{Engine, EngineBuilder, EngineConfig};
use bmsfw_core::errors::codes;
use bmsfw_core::gates::{GridStatus, SiteStatus};
use bmsfw_core::job::{JobId, JobRecord, JobState};
use bmsfw_core::plugin::{Allowlist, LoadReport, LoadedPlugin, PluginLoader, Sha256Digest};
use bmsfw_core::staging::UploadAnnouncement;
use bmsfw_core::staging::area::StagingConfig;
use bmsfw_core::venus::{VenusConfig, VenusHandle, VenusTargets, spawn_venus};
use bmsfw_core::vrm::{
    Acknowledgements, BatteryView, Eligibility, EngineRefusal, EngineUpdate, GxEngine, Presence,
    UpdateOptions, UpdateRequest, VersionPolicy, VrmAccess, VrmPortalMode,
};
use clap::{ArgGroup, Args, ValueEnum};
use progress::Progress;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

/// The GX firmware a simulated site's GX runs unless --gx-firmware says otherwise (the
/// demo's).
const SIM_GX_FIRMWARE: &str = "3.70";
/// The size of the parts the file is staged in.
const CHUNK: u32 = 64 * 1024;
/// How often the job is looked at.
const POLL: Duration = Duration::from_millis(100);
/// How often the journal's record of the job is read besides the published changes.
const LOOK_INTERVAL: Duration = Duration::from_secs(2);
/// How long a battery that is heard may take to be claimed by a plugin (its identity
/// frames come every few seconds).
const CLAIM_GRACE: Duration = Duration::from_secs(5);
/// How long the engine, the site source and the simulated site may take to stop.
const STOP_LIMIT: Duration = Duration::from_secs(10);
/// How long the live site values (venus source) may take to arrive.
const SITE_LIMIT: Duration = Duration::from_secs(15);

/// Arguments of `bmsfw update`.
#[derive(Args, Debug)]
#[cfg_attr(
    feature = "sim",
    command(group(ArgGroup::new("battery_source").required(true).args(["bus", "sim"])))
)]
#[cfg_attr(
    not(feature = "sim"),
    command(group(ArgGroup::new("battery_source").required(true).args(["bus"])))
)]
#[command(
    group(ArgGroup::new("plugin_source").required(true).args(["plugins", "config"])),
    after_help = EXIT_CODES,
)]
pub struct UpdateArgs {
    /// The battery firmware file, as its manufacturer ships it.
    #[arg(long, value_name = "FILE")]
    package: PathBuf,
    /// The SocketCAN interface the battery is on (one BMS per BMS-Can bus).
    #[arg(long, value_name = "IFACE")]
    bus: Option<String>,
    /// A simulated site to run in this process in real time (e.g. config/demo.toml);
    /// the battery is --battery.
    #[cfg(feature = "sim")]
    #[arg(long, value_name = "SITE", requires = "battery")]
    sim: Option<PathBuf>,
    /// With --sim: the battery's name in the site file.
    #[cfg(feature = "sim")]
    #[arg(long, value_name = "NAME", requires = "sim")]
    battery: Option<String>,
    /// The folder of the vendor plugin libraries (with --allowlist).
    #[arg(
        long,
        value_name = "DIR",
        requires = "allowlist",
        conflicts_with = "config"
    )]
    plugins: Option<PathBuf>,
    /// The allowlist approving the plugin libraries of --plugins.
    #[arg(
        long,
        value_name = "FILE",
        requires = "plugins",
        conflicts_with = "config"
    )]
    allowlist: Option<PathBuf>,
    /// A GX daemon's configuration: its plugins and allowlist, gates, staging limits,
    /// state directory and site source (its [[can]] interfaces are not used: the bus is
    /// --bus or the site's). Stop the `bmsfw gx` daemon of that configuration first:
    /// both would drive the same bus and state.
    #[arg(long, value_name = "GX_TOML")]
    config: Option<PathBuf>,
    /// Accept the same version again or an older one (without it: refused with 731).
    #[arg(long)]
    allow_downgrade: bool,
    /// Write a candump log of the bus(es) during the update.
    #[arg(long, value_name = "LOG")]
    record: Option<PathBuf>,
    /// The state directory (journal, event log, staged file; read it with `bmsfw
    /// history --state-dir DIR`). Default: the state_dir of --config, else a new
    /// temporary folder, removed after a completed update and kept otherwise.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// The GX firmware version the gates check (default: /opt/victronenergy/version on a
    /// GX device; 3.70 for a simulated site).
    #[arg(long, value_name = "VERSION")]
    gx_firmware: Option<DottedVersion>,
    /// /Settings/Network/VrmPortal as the VRM-access gate reads it (default: full, or
    /// [mqtt] vrm_portal of --config).
    #[arg(long, value_name = "off|read-only|full", value_parser = parse_mode)]
    vrm_portal: Option<VrmPortalMode>,
    /// The grid as the backup-power gate reads it (default: not monitored).
    #[arg(long, value_enum, value_name = "GRID")]
    grid: Option<GridArg>,
    /// How long to wait for the battery to be heard and claimed by a plugin, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    wait: u64,
    /// How long the update may take from the request to its end, in seconds.
    #[arg(long, default_value_t = 1800, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
}

/// `--grid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum GridArg {
    Connected,
    Lost,
    NotMonitored,
}

impl From<GridArg> for GridStatus {
    fn from(g: GridArg) -> GridStatus {
        match g {
            GridArg::Connected => GridStatus::Connected,
            GridArg::Lost => GridStatus::Lost,
            GridArg::NotMonitored => GridStatus::NotMonitored,
        }
    }
}

/// Why the command stops before an outcome of the engine: an exit and what to print.
struct Stop {
    exit: Exit,
    error: anyhow::Error,
}

trait OrStop<T> {
    /// A bad input (exit 2).
    fn bad_input(self) -> Result<T, Stop>;
    /// bmsfw could not do it (exit 1).
    fn internal(self) -> Result<T, Stop>;
}

impl<T, E: Into<anyhow::Error>> OrStop<T> for Result<T, E> {
    fn bad_input(self) -> Result<T, Stop> {
        self.map_err(|e| Stop {
            exit: Exit::Usage,
            error: e.into(),
        })
    }

    fn internal(self) -> Result<T, Stop> {
        self.map_err(|e| Stop {
            exit: Exit::Error,
            error: e.into(),
        })
    }
}

/// The firmware file, read.
struct Package {
    path: PathBuf,
    name: String,
    bytes: Vec<u8>,
}

impl Package {
    /// Reads the file at `path`; one above `limit` bytes is refused as the GX refuses it
    /// (701), before it is read.
    fn read(path: &Path, limit: u64) -> Result<Package, Stop> {
        Package::read_bounded(path, limit).map_err(|error| {
            let exit = match error.downcast_ref::<TooLarge>() {
                Some(_) => Exit::Refused,
                None => Exit::Usage,
            };
            Stop { exit, error }
        })
    }

    fn read_bounded(path: &Path, limit: u64) -> anyhow::Result<Package> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("the firmware file {}", path.display()))?;
        if !meta.is_file() {
            bail!("the firmware file {} is not a file", path.display());
        }
        if meta.len() > limit {
            return Err(TooLarge {
                path: path.to_path_buf(),
                size: meta.len(),
                limit,
            }
            .into());
        }
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading the firmware file {}", path.display()))?;
        if bytes.is_empty() {
            bail!("the firmware file {} is empty", path.display());
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("{} has no file name", path.display()))?;
        Ok(Package {
            path: path.to_path_buf(),
            name,
            bytes,
        })
    }
}

/// A firmware file above the staging area's limit.
#[derive(Debug)]
struct TooLarge {
    path: PathBuf,
    size: u64,
    limit: u64,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let info = bmsfw_core::errors::lookup(codes::PACKAGE_TOO_LARGE);
        write!(
            f,
            "{} {}: {}\n  {} is {} bytes, the GX takes at most {} ([staging] max_package_bytes)",
            codes::PACKAGE_TOO_LARGE,
            info.map_or("", |i| i.name),
            info.map_or("", |i| i.title),
            self.path.display(),
            self.size,
            self.limit
        )
    }
}

impl std::error::Error for TooLarge {}

/// Which battery: by serial (a simulated site's battery), or the one on a bus.
#[derive(Clone)]
enum Wanted {
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    Serial {
        name: String,
        serial: String,
    },
    OnBus(String),
}

impl Wanted {
    fn matches(&self, view: &BatteryView) -> bool {
        match self {
            Wanted::Serial { serial, .. } => view.identity.serial == *serial,
            Wanted::OnBus(bus) => view.bus == *bus,
        }
    }

    fn describe(&self) -> String {
        match self {
            Wanted::Serial { name, serial } => format!("{name} (serial {serial})"),
            Wanted::OnBus(bus) => format!("the battery on {bus}"),
        }
    }
}

/// The state directory: given, or temporary.
enum StateDirectory {
    Given(PathBuf),
    Temporary(tempfile::TempDir),
}

impl StateDirectory {
    fn path(&self) -> &Path {
        match self {
            StateDirectory::Given(p) => p,
            StateDirectory::Temporary(t) => t.path(),
        }
    }
}

/// What the site source of the gates is.
enum SiteSetup {
    Fixed {
        firmware: DottedVersion,
        access: VrmPortalMode,
        grid: GridStatus,
    },
    Venus {
        config: VenusConfig,
        firmware_hint: DottedVersion,
    },
}

/// Runs `bmsfw update`; its exit code says how it ended.
pub fn run(args: UpdateArgs) -> ExitCode {
    // Before any thread or process starts: see `interrupts`.
    let interrupts = interrupts();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return Exit::Error.into();
        }
    };
    let exit = runtime.block_on(async {
        match update(args, interrupts).await {
            Ok(exit) => exit,
            Err(stop) => {
                eprintln!("error: {}", chain(&stop.error));
                stop.exit
            }
        }
    });
    // The plugin hosts and the simulated batteries are stopped; nothing may hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(2));
    exit.into()
}

/// The number of Ctrl-Cs (SIGINT) so far.
///
/// A Ctrl-C at a terminal goes to every process of the foreground group, the plugin
/// hosts too: one killed mid-transfer would fail the update the engine is letting run to
/// its end. So SIGINT is blocked in every thread of this process, a mask its plugin hosts
/// inherit, and one thread takes it with `sigwait`: the signal reaches bmsfw alone.
/// Must run before any other thread starts.
fn interrupts() -> watch::Receiver<u32> {
    let (tx, rx) = watch::channel(0u32);
    // SAFETY: sigemptyset, sigaddset and pthread_sigmask on a local, initialised set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            tracing::warn!("cannot block SIGINT: Ctrl-C ends bmsfw at once");
            return rx;
        }
        set
    };
    let spawned = std::thread::Builder::new()
        .name("ctrl-c".into())
        .spawn(move || {
            loop {
                let mut signal = 0;
                // SAFETY: sigwait on the set blocked above, into a local.
                if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
                    tx.send_modify(|n| *n += 1);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot wait for Ctrl-C");
    }
    rx
}

/// Waits for the next Ctrl-C; returns how many there were.
async fn next_interrupt(rx: &mut watch::Receiver<u32>) -> u32 {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
    *rx.borrow_and_update()
}

/// The running parts, stopped in order at the end.
struct Running {
    engine: Option<Engine>,
    venus: Option<VenusHandle>,
    recorder: Option<Recorder>,
    site: Option<sim_site::Running>,
    /// Whether a job was made (the state directory then has something to look at).
    job: bool,
}

impl Running {
    async fn stop(mut self, progress: &Progress) {
        if let Some(venus) = self.venus.take()
            && tokio::time::timeout(STOP_LIMIT, venus.shutdown())
                .await
                .is_err()
        {
            progress.line("the Venus OS site source did not stop in time");
        }
        if let Some(engine) = self.engine.take()
            && tokio::time::timeout(STOP_LIMIT, engine.shutdown())
                .await
                .is_err()
        {
            progress.line("the engine did not stop in time");
        }
        if let Some(recorder) = self.recorder.take() {
            match recorder.finish().await {
                Ok(r) => progress.line(&format!(
                    "recorded {} lines of the bus(es) to {}",
                    r.lines,
                    r.path.display()
                )),
                Err(e) => progress.line(&format!("recording: {e:#}")),
            }
        }
        if let Some(site) = self.site.take() {
            sim_site::stop(site, progress).await;
        }
    }
}

async fn update(args: UpdateArgs, mut interrupts: watch::Receiver<u32>) -> Result<Exit, Stop> {
    // Everything given is checked before anything starts.
    let gx = match &args.config {
        Some(path) => Some(GxConfig::load(path).bad_input()?),
        None => None,
    };
    let limit = gx
        .as_ref()
        .map_or(StagingConfig::DEFAULT_MAX_PACKAGE_SIZE, |gx| {
            gx.staging.max_package_bytes
        });
    let package = Package::read(&args.package, limit)?;
    let site = sim_site::load(&args)?;
    let wanted = match (&site, &args.bus) {
        (Some(site), _) => sim_site::wanted(&args, site)?,
        (None, Some(bus)) => Wanted::OnBus(bus.clone()),
        (None, None) => {
            return Err(anyhow!("give --bus IFACE, or --sim SITE --battery NAME")).bad_input();
        }
    };
    let setup = site_setup(&args, gx.as_ref()).bad_input()?;
    if let (Some(bus), Some(_)) = (&args.bus, &args.record) {
        // Checked here, so a wrong name is a bad input rather than a failure later.
        if !Path::new("/sys/class/net").join(bus).exists() {
            return Err(anyhow!(
                "there is no network interface {bus} on this machine (ip link shows those there are)"
            ))
            .bad_input();
        }
    }
    let state = match (&args.state, &gx) {
        (Some(dir), _) => StateDirectory::Given(dir.clone()),
        (None, Some(gx)) => StateDirectory::Given(gx.state_dir.clone()),
        (None, None) => StateDirectory::Temporary(
            tempfile::Builder::new()
                .prefix("bmsfw-update-")
                .tempdir()
                .context("creating a temporary state directory")
                .internal()?,
        ),
    };
    let firmware = match &setup {
        SiteSetup::Fixed { firmware, .. } => firmware.clone(),
        SiteSetup::Venus { firmware_hint, .. } => firmware_hint.clone(),
    };

    // The plugins.
    let (builder, report) = match gx {
        Some(mut gx) => {
            if args.state.is_some() {
                gx.state_dir = state.path().to_path_buf();
                gx.staging.dir = state.path().join("staging");
            }
            let (builder, report) =
                EngineBuilder::from_gx_config(&gx, firmware.clone()).internal()?;
            if let Some(why) = &report.allowlist_error {
                return Err(anyhow!("{why} ({})", gx.plugins.allowlist.display())).bad_input();
            }
            (builder, report)
        }
        None => {
            let (Some(dir), Some(allowlist)) = (&args.plugins, &args.allowlist) else {
                return Err(anyhow!(
                    "give --plugins DIR --allowlist FILE, or --config GX_TOML"
                ))
                .bad_input();
            };
            let allowlist = Allowlist::load(allowlist).bad_input()?;
            let report = PluginLoader::new(allowlist).load_dir(dir).bad_input()?;
            let mut builder = Engine::builder(EngineConfig::in_dir(state.path(), firmware));
            for loaded in &report.loaded {
                builder = builder.plugin(LoadedPlugin {
                    path: loaded.path.clone(),
                    sha256: loaded.sha256,
                    entry: loaded.entry.clone(),
                    plugin: Arc::clone(&loaded.plugin),
                });
            }
            (builder, report)
        }
    };

    let mut progress = Progress::new();
    outln!("bmsfw update");
    outln!(
        "  file      {} ({} bytes, sha256 {})",
        package.path.display(),
        package.bytes.len(),
        Sha256Digest::of(&package.bytes)
    );
    outln!("  battery   {}", wanted.describe());
    print_plugins(&report);

    // The buses, the site source, the engine.
    let mut running = Running {
        engine: None,
        venus: None,
        recorder: None,
        site: None,
        job: false,
    };
    let result = start_and_update(
        &args,
        &package,
        &wanted,
        site,
        setup,
        builder,
        &state,
        &mut running,
        &mut progress,
        &mut interrupts,
    )
    .await;
    progress.finish();
    let job_made = running.job;
    running.stop(&progress).await;
    let exit = match result {
        Ok(exit) => exit,
        Err(stop) => {
            eprintln!("error: {}", chain(&stop.error));
            stop.exit
        }
    };
    match (state, exit) {
        // Nothing to look at: the update completed, or no job was made.
        (StateDirectory::Temporary(dir), Exit::Completed) => drop(dir),
        (StateDirectory::Temporary(dir), _) if !job_made => drop(dir),
        (StateDirectory::Temporary(dir), _) => {
            let kept = dir.keep();
            outln!(
                "the state directory is kept for a look: {} (bmsfw history --state-dir {})",
                kept.display(),
                kept.display()
            );
        }
        (StateDirectory::Given(dir), _) => {
            outln!("history: bmsfw history --state-dir {}", dir.display());
        }
    }
    outln!("exit {}: {}", exit as u8, exit.meaning());
    Ok(exit)
}

/// `error`'s message and its causes, each cause once (many messages already end with
/// their cause's).
fn chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

fn site_setup(args: &UpdateArgs, gx: Option<&GxConfig>) -> anyhow::Result<SiteSetup> {
    let source = gx.map_or(SiteSource::Config, |gx| gx.site.source());
    let firmware = || -> anyhow::Result<DottedVersion> {
        match (&args.gx_firmware, sim_site::given(args)) {
            (Some(v), _) => Ok(v.clone()),
            (None, true) => SIM_GX_FIRMWARE
                .parse()
                .map_err(|e| anyhow!("the simulated GX firmware: {e}")),
            (None, false) => gx_firmware(None),
        }
    };
    Ok(match source {
        SiteSource::Config => SiteSetup::Fixed {
            firmware: firmware()?,
            access: args
                .vrm_portal
                .or(gx.map(|gx| gx.mqtt.vrm_portal))
                .unwrap_or(VrmPortalMode::Full),
            grid: args.grid.map_or(GridStatus::NotMonitored, Into::into),
        },
        SiteSource::Venus => {
            if args.vrm_portal.is_some() || args.grid.is_some() {
                bail!(
                    "--vrm-portal and --grid apply to the config site source; [site] source of \
                     the GX configuration is venus, which reads them live from Venus OS"
                );
            }
            let gx = gx.context("the venus site source needs a GX configuration")?;
            SiteSetup::Venus {
                config: VenusConfig::from_gx(gx),
                firmware_hint: firmware().unwrap_or_else(|_| DottedVersion::from(vec![0])),
            }
        }
    })
}

fn print_plugins(report: &LoadReport) {
    if report.loaded.is_empty() {
        outln!("  plugins   none loaded: every battery update is refused");
    }
    for (i, p) in report.loaded.iter().enumerate() {
        let info = p.plugin.info();
        outln!(
            "  {:<9} {} {} ({})",
            if i == 0 { "plugins" } else { "" },
            info.vendor_id,
            info.version,
            p.path.display()
        );
    }
    for r in &report.refused {
        outln!("  refused   {r}");
    }
}

#[allow(clippy::too_many_arguments)]
async fn start_and_update(
    args: &UpdateArgs,
    package: &Package,
    wanted: &Wanted,
    site: Option<sim_site::Description>,
    setup: SiteSetup,
    mut builder: EngineBuilder,
    state: &StateDirectory,
    running: &mut Running,
    progress: &mut Progress,
    interrupts: &mut watch::Receiver<u32>,
) -> Result<Exit, Stop> {
    if let Some(site) = site {
        builder = sim_site::start(args, site, builder, running)?;
    }
    if let Some(bus) = &args.bus {
        let iface = SocketCanInterface::open(bus)
            .with_context(|| {
                format!(
                    "opening SocketCAN interface {bus} (is it there and up? ip link show {bus})"
                )
            })
            .bad_input()?;
        builder = builder.bus(Arc::new(iface) as Arc<dyn CanInterface>);
        if let Some(log) = &args.record {
            running.recorder =
                Some(Recorder::start(log, &[], std::slice::from_ref(bus)).bad_input()?);
        }
    }
    let (access, status, venus, site_line) = match setup {
        SiteSetup::Fixed {
            firmware,
            access,
            grid,
        } => (
            VrmAccess::new(access),
            SiteStatus::new(grid),
            None,
            format!("GX firmware v{firmware}, VRM access {access}, {grid}"),
        ),
        SiteSetup::Venus { config, .. } => {
            let why = "not yet received from Venus OS";
            let line = format!(
                "live from Venus OS at {}:{}",
                config.broker.host, config.broker.port
            );
            (
                VrmAccess::unknown(why),
                SiteStatus::unknown(why),
                Some(config),
                line,
            )
        }
    };
    let engine = builder
        .vrm_access(access.clone())
        .site_status(status.clone())
        .start()
        .context("starting the engine")
        .internal()?;
    outln!("  site      {site_line}");
    outln!("  state     {}", state.path().display());
    if let Some(log) = &args.record {
        outln!("  recording {}", log.display());
    }
    let engine = running.engine.insert(engine);
    if let Some(config) = venus {
        running.venus = Some(spawn_venus(
            config,
            VenusTargets {
                vrm: access.clone(),
                site: status.clone(),
                engine: None,
            },
        ));
        if !site_known(engine, SITE_LIMIT).await {
            return Err(anyhow!(
                "the site's state (VRM access, grid, GX firmware) did not arrive from Venus OS \
                 within {} s",
                SITE_LIMIT.as_secs()
            ))
            .map_err(|error| Stop {
                exit: Exit::TimedOut,
                error,
            });
        }
    }

    // The battery.
    let view = tokio::select! {
        found = find_battery(engine, wanted, Duration::from_secs(args.wait)) => found?,
        _ = next_interrupt(interrupts) => {
            outln!("cancelled while waiting for the battery: nothing was sent to it");
            return Ok(Exit::Cancelled);
        }
    };
    outln!(
        "  found     {} {}, serial {}, on {}, firmware {}{}",
        view.identity.manufacturer,
        view.identity.model,
        view.identity.serial,
        view.bus,
        view.firmware
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), |v| v.display.clone()),
        view.soc_percent
            .map(|s| format!(", {s:.0}% charged"))
            .unwrap_or_default()
    );

    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut feed = Feed::new(engine);
    // A job of this battery that a stopped run left unfinished resumes with the engine:
    // follow it rather than ask for another.
    let unfinished = engine
        .jobs()
        .await
        .into_iter()
        .find(|r| !r.state().is_terminal() && r.battery().serial == view.identity.serial);
    let (job, began) = match unfinished {
        Some(record) => {
            outln!(
                "  resuming  update {} of {} left unfinished in the state directory ({})",
                record.id(),
                record.package().file_name(),
                record.state().label()
            );
            if record.package().sha256() != Sha256Digest::of(&package.bytes) {
                outln!(
                    "            that is not {}: the unfinished update runs to its end first; \
                     run bmsfw update again for this file",
                    package.name
                );
            }
            running.job = true;
            (record.id(), record.version_target().is_some())
        }
        None => {
            match request_and_stage(
                engine, &mut feed, &view, package, args, progress, interrupts,
            )
            .await
            {
                Ok(job) => {
                    running.job = true;
                    (job, true)
                }
                Err(Staged::Refused(job, refusal)) => {
                    if let Some(job) = job {
                        running.job = true;
                        feed.drain(engine, job, progress).await;
                    }
                    progress.finish();
                    for line in exit::explain(refusal.code, &refusal.message) {
                        outln!("{line}");
                    }
                    return Ok(Exit::for_code(refusal.code, false));
                }
                Err(Staged::Cancelled(job)) => {
                    running.job = true;
                    feed.drain(engine, job, progress).await;
                    progress.finish();
                    outln!("cancelled while the file was staged: nothing was sent to the battery");
                    return Ok(Exit::Cancelled);
                }
            }
        }
    };
    follow(
        engine, &mut feed, job, began, deadline, progress, interrupts, state,
    )
    .await
}

/// Waits (bounded) for the engine to hear the site's values from Venus OS.
async fn site_known(engine: &Engine, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        let known = engine.vrm_access().reading().known().is_some()
            && engine.site_status().grid().known().is_some()
            && engine
                .site_status()
                .gx_firmware()
                .is_none_or(|f| f.known().is_some());
        if known || Instant::now() >= until {
            return known;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits up to `limit` for the battery to be heard and claimed by a plugin.
async fn find_battery(
    engine: &Engine,
    wanted: &Wanted,
    limit: Duration,
) -> Result<BatteryView, Stop> {
    let start = Instant::now();
    let mut heard_at: Option<Instant> = None;
    let mut last: Option<BatteryView> = None;
    loop {
        let view = engine
            .batteries()
            .await
            .into_iter()
            .find(|b| wanted.matches(b) && b.presence == Presence::Communicating);
        if let Some(view) = view {
            if matches!(view.eligibility, Eligibility::Eligible { .. }) {
                return Ok(view);
            }
            let heard = *heard_at.get_or_insert_with(Instant::now);
            if heard.elapsed() >= CLAIM_GRACE {
                if let Eligibility::NotEligible { code, reason } = &view.eligibility {
                    let lines = exit::explain(*code, reason);
                    return Err(Stop {
                        exit: Exit::for_code(*code, false),
                        error: anyhow!(
                            "{} {} (serial {}) cannot be updated:\n{}",
                            view.identity.manufacturer,
                            view.identity.model,
                            view.identity.serial,
                            lines.join("\n")
                        ),
                    });
                }
            }
            last = Some(view);
        }
        if start.elapsed() >= limit {
            let error = match last {
                Some(v) => anyhow!(
                    "{} is heard on {} but no approved plugin claimed it within {} s",
                    wanted.describe(),
                    v.bus,
                    limit.as_secs()
                ),
                None => anyhow!(
                    "{} was not heard within {} s on {} (is it powered, on this bus, at 500 kbit/s?)",
                    wanted.describe(),
                    limit.as_secs(),
                    engine.bus_names().join(", ")
                ),
            };
            return Err(Stop {
                exit: Exit::TimedOut,
                error,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Why stage 1 did not lead to a transfer.
enum Staged {
    /// Refused, with the job when there was one.
    Refused(Option<JobId>, EngineRefusal),
    /// Cancelled with Ctrl-C (the job failed with 719).
    Cancelled(JobId),
}

/// Requests the update, stages the file chunk by chunk, hands it over to stage 2.
async fn request_and_stage(
    engine: &Engine,
    feed: &mut Feed,
    view: &BatteryView,
    package: &Package,
    args: &UpdateArgs,
    progress: &mut Progress,
    interrupts: &mut watch::Receiver<u32>,
) -> Result<JobId, Staged> {
    let announcement = UploadAnnouncement::new(
        package.name.clone(),
        package.bytes.len() as u64,
        CHUNK,
        Sha256Digest::of(&package.bytes),
    )
    .map_err(|e| Staged::Refused(None, EngineRefusal::new(e.code(), e.to_string())))?;
    let request = UpdateRequest {
        battery_serial: view.identity.serial.clone(),
        package: announcement,
        // Running the command is the installer's confirmation of the warnings.
        acknowledgements: Acknowledgements::all(),
        options: UpdateOptions {
            version_policy: if args.allow_downgrade {
                VersionPolicy::AllowReinstallOrDowngrade
            } else {
                VersionPolicy::NewerOnly
            },
            ..UpdateOptions::default()
        },
    };
    let status = engine
        .request_update(request)
        .await
        .map_err(|r| Staged::Refused(None, r))?;
    let job = status.job;
    let refused = |r| Staged::Refused(Some(job), r);
    let first = status.first_missing;
    for (i, part) in package.bytes.chunks(CHUNK as usize).enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        if first.is_none_or(|f| index < f) {
            continue;
        }
        if interrupts.has_changed().unwrap_or(false) {
            interrupts.mark_unchanged();
            return Err(cancel_stage1(engine, job).await);
        }
        engine
            .accept_chunk(job, index, part.to_vec())
            .await
            .map_err(refused)?;
        feed.drain(engine, job, progress).await;
    }
    if interrupts.has_changed().unwrap_or(false) {
        interrupts.mark_unchanged();
        return Err(cancel_stage1(engine, job).await);
    }
    // The upload's own changes first (a file still staged from an earlier job is
    // complete at once).
    feed.drain(engine, job, progress).await;
    let staged = engine.finish_upload(job).await.map_err(refused)?;
    progress.line(&format!(
        "      the plugin read the file: it installs {}",
        staged.target.display
    ));
    feed.drain(engine, job, progress).await;
    Ok(job)
}

async fn cancel_stage1(engine: &Engine, job: JobId) -> Staged {
    let reason = EngineRefusal::new(
        codes::UPDATE_CANCELLED,
        "cancelled with Ctrl-C at the command line before the transfer began",
    );
    match engine.cancel_update(job, reason).await {
        Ok(_) => Staged::Cancelled(job),
        Err(r) => Staged::Refused(Some(job), r),
    }
}

/// Every change of the jobs, as the engine publishes them: the display sees each state,
/// however short (a look at the journal now and then could miss one).
struct Feed {
    rx: broadcast::Receiver<EngineUpdate>,
}

impl Feed {
    fn new(engine: &Engine) -> Feed {
        Feed {
            rx: engine.subscribe(),
        }
    }

    /// Shows each change of `job` published since the last call; returns the latest.
    async fn drain(
        &mut self,
        engine: &Engine,
        job: JobId,
        progress: &mut Progress,
    ) -> Option<JobRecord> {
        let mut latest = None;
        loop {
            match self.rx.try_recv() {
                Ok(EngineUpdate::Job(record)) if record.id() == job => {
                    progress.show(&record);
                    latest = Some(*record);
                }
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    if let Some(record) = job_record(engine, job).await {
                        progress.show(&record);
                        latest = Some(record);
                    }
                }
                Err(_) => return latest,
            }
        }
    }
}

async fn job_record(engine: &Engine, job: JobId) -> Option<JobRecord> {
    engine.jobs().await.into_iter().find(|r| r.id() == job)
}

/// Follows `job` to its end, the deadline or a second Ctrl-C.
#[allow(clippy::too_many_arguments)]
async fn follow(
    engine: &Engine,
    feed: &mut Feed,
    job: JobId,
    began: bool,
    deadline: Instant,
    progress: &mut Progress,
    interrupts: &mut watch::Receiver<u32>,
    state: &StateDirectory,
) -> Result<Exit, Stop> {
    let Some(mut record) = job_record(engine, job).await else {
        return Err(anyhow!("update {job} is not in the journal")).internal();
    };
    progress.show(&record);
    let mut looked = Instant::now();
    loop {
        if let Some(latest) = feed.drain(engine, job, progress).await {
            record = latest;
        } else if looked.elapsed() >= LOOK_INTERVAL {
            // Now and then the journal's record itself, should a change not be heard.
            looked = Instant::now();
            if let Some(latest) = job_record(engine, job).await {
                record = feed.drain(engine, job, progress).await.unwrap_or(latest);
                progress.show(&record);
            }
        }
        if record.state().is_terminal() {
            progress.finish();
            return Ok(outcome(&record, began));
        }
        let stop_note = || {
            format!(
                "update {job} is journaled in {}: it resumes when bmsfw runs again on this state \
                 directory (bmsfw update --state {} ...)",
                state.path().display(),
                state.path().display()
            )
        };
        if Instant::now() >= deadline {
            progress.finish();
            outln!(
                "timed out: update {job} did not end within --timeout ({})",
                record.state().label()
            );
            outln!("{}", stop_note());
            return Ok(Exit::TimedOut);
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            n = next_interrupt(interrupts) => {
                if n >= 2 {
                    progress.finish();
                    outln!("stopped during {}", record.state().label());
                    outln!("{}", stop_note());
                    return Ok(Exit::Cancelled);
                }
                let reason = EngineRefusal::new(
                    codes::UPDATE_CANCELLED,
                    "cancelled with Ctrl-C at the command line",
                );
                if let Err(refusal) = engine.cancel_update(job, reason).await {
                    progress.line(&format!("error {}: {}", refusal.code, refusal.message));
                    progress.line(
                        "press Ctrl-C again to stop bmsfw now: the transfer stops where it is \
                         and is journaled, to resume when bmsfw runs again on this state \
                         directory",
                    );
                }
            }
        }
    }
}

/// Prints how `record` ended; its exit.
fn outcome(record: &JobRecord, began: bool) -> Exit {
    match record.state() {
        JobState::Completed => {
            let after = record
                .version_after()
                .or(record.version_target())
                .map_or_else(|| "the new firmware".to_owned(), |v| v.display.clone());
            let before = record
                .version_before()
                .map(|v| format!(" (was {})", v.display))
                .unwrap_or_default();
            outln!(
                "completed: {} {} (serial {}) runs {after}{before}",
                record.battery().manufacturer,
                record.battery().model,
                record.battery().serial
            );
            Exit::Completed
        }
        _ => {
            let Some(failure) = record.failure() else {
                outln!("update {} ended without a failure record", record.id());
                return Exit::Error;
            };
            outln!("failed: update {}", record.id());
            for line in exit::explain(failure.code, &failure.message) {
                outln!("{line}");
            }
            // A job that had a target version had passed stage 1.
            Exit::for_code(failure.code, began || record.version_target().is_some())
        }
    }
}
