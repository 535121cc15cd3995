//! The GX engine: owns the buses, their telemetry monitors, the loaded plugins, the
//! staging area and the jobs, and implements the VRM link's boundary
//! ([`crate::vrm::GxEngine`]).
//!
//! - stage 1 runs through the ingest API ([`crate::staging`]) as the link delivers chunks;
//! - once the package is staged, verified and accepted by the battery's plugin, and every
//!   gate passes, stage 2 runs on the battery's bus (one task per bus) with the driver
//!   ([`crate::driver`]);
//! - every job change goes through the job store (journal written, fsynced and renamed
//!   before the event log line), so a GX restart at any moment leaves each job resumed or
//!   cleanly failed with 740 (see `docs/engine.md`); the staged package stays until a job
//!   with it completes, so the installer can retry a failed one at once;
//! - a failed job keeps the battery's state at the time of failure for its diagnostics
//!   bundle.
//!
//! Build one with [`EngineBuilder`], from `gx.toml` with [`EngineBuilder::from_gx_config`].
//! It runs on the current Tokio runtime; dropping it stops its tasks at once, as a power
//! cut would ([`Engine::shutdown`] lets queued job changes reach the journal first).

mod api;
pub mod battery;
mod bus;
pub mod config;
mod jobs;
mod preflight;
mod recovery;
mod stage;

pub use battery::EnginePlugin;
pub use config::EngineConfig;
pub use jobs::JobRequest;

use crate::config::GxConfig;
use crate::gates::SiteStatus;
use crate::job::{JobStore, JobStoreError, StartupReport};
use crate::plugin::{Allowlist, LoadReport, LoadedPlugin, PluginLoader, ScanError};
use crate::staging::{StagingArea, StagingError, Upload};
use crate::toml_file::LoadError;
use crate::unix_time::UnixMillis;
use crate::vrm::engine::UPDATE_CHANNEL_CAPACITY;
use crate::vrm::{EngineUpdate, VrmAccess, VrmPortalMode};
use bmsfw_can::CanInterface;
use bmsfw_plugin_api::Timestamp;
use bus::{AbortOnDrop, Bus};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use tokio::time::Instant;

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The job journal or the event log could not be opened.
    #[error("cannot open the job store: {0}")]
    Jobs(#[from] JobStoreError),
    /// The staging area could not be opened.
    #[error("cannot open the staging area: {0}")]
    Staging(#[from] StagingError),
    /// A directory of the state could not be created.
    #[error("cannot prepare {path}: {source}")]
    Io {
        /// The directory.
        path: std::path::PathBuf,
        /// The reason.
        #[source]
        source: std::io::Error,
    },
    /// The allowlist could not be read.
    #[error(transparent)]
    Allowlist(#[from] LoadError),
    /// The plugin directory could not be listed.
    #[error(transparent)]
    Plugins(#[from] ScanError),
    /// Two buses share a name.
    #[error("two CAN interfaces are named {0}")]
    DuplicateBus(String),
}

/// What every task of the engine shares.
pub(crate) struct Shared {
    pub config: EngineConfig,
    pub plugins: Vec<EnginePlugin>,
    /// Why the engine runs without plugins (the allowlist could not be read), for the
    /// refusals of updates.
    pub plugins_unavailable: Option<String>,
    pub buses: Vec<Bus>,
    pub jobs: jobs::Jobs,
    pub staging: StagingArea,
    pub uploads: Mutex<HashMap<crate::job::JobId, Arc<Mutex<Option<Upload>>>>>,
    /// Pre-flight uploads by the file's digest, oldest first.
    pub preflights: Mutex<Vec<(crate::staging::Sha256Digest, Upload)>>,
    pub vrm: VrmAccess,
    pub site: SiteStatus,
    pub updates: broadcast::Sender<EngineUpdate>,
    pub epoch: Instant,
}

impl Shared {
    /// The engine's time of `at`.
    pub(crate) fn timestamp(&self, at: Instant) -> Timestamp {
        let micros = at.saturating_duration_since(self.epoch).as_micros();
        Timestamp::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// Which plugin takes the battery heard in `state`, or why none does.
    pub(crate) fn choose_plugin(
        &self,
        state: &crate::telemetry::BatteryState,
    ) -> battery::PluginChoice {
        battery::choose_plugin(&self.plugins, self.plugins_unavailable.as_deref(), state)
    }

    /// The engine's time now.
    pub(crate) fn now(&self) -> Timestamp {
        self.timestamp(Instant::now())
    }

    /// The instant of engine time `t`.
    pub(crate) fn instant(&self, t: Timestamp) -> Instant {
        self.epoch + std::time::Duration::from_micros(t.as_micros())
    }

    /// The bus named `name`.
    pub(crate) fn bus_named(&self, name: &str) -> Option<&Bus> {
        self.buses.iter().find(|b| b.name == name)
    }
}

/// The running engine. See the [module](self) documentation.
pub struct Engine {
    pub(crate) shared: Arc<Shared>,
    tasks: Vec<AbortOnDrop>,
    writer: Option<tokio::task::JoinHandle<()>>,
    startup: StartupReport,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field(
                "buses",
                &self
                    .shared
                    .buses
                    .iter()
                    .map(|b| &b.name)
                    .collect::<Vec<_>>(),
            )
            .field("plugins", &self.shared.plugins)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A builder for an engine with `config`.
    pub fn builder(config: EngineConfig) -> EngineBuilder {
        EngineBuilder {
            config,
            plugins: Vec::new(),
            plugins_unavailable: None,
            buses: Vec::new(),
            vrm: None,
            site: None,
        }
    }

    /// What start-up found in the journal and did about interrupted jobs.
    pub fn startup_report(&self) -> &StartupReport {
        &self.startup
    }

    /// The `/Settings/Network/VrmPortal` handle the gates read.
    pub fn vrm_access(&self) -> &VrmAccess {
        &self.shared.vrm
    }

    /// The site's grid status handle the backup-power gate reads.
    pub fn site_status(&self) -> &SiteStatus {
        &self.shared.site
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// The names of the engine's buses, in order.
    pub fn bus_names(&self) -> Vec<String> {
        self.shared.buses.iter().map(|b| b.name.clone()).collect()
    }

    /// Why the engine runs without plugins (the allowlist could not be read), if it does.
    pub fn plugins_unavailable(&self) -> Option<&str> {
        self.shared.plugins_unavailable.as_deref()
    }

    /// The vendor ids of the loaded plugins.
    pub fn vendors(&self) -> Vec<String> {
        self.shared
            .plugins
            .iter()
            .map(|p| p.entry.vendor_id.to_string())
            .collect()
    }

    /// Stops the engine after the job changes already queued are journaled.
    pub async fn shutdown(mut self) {
        self.tasks.clear();
        // The bus tasks were the writer's only other senders; the engine's own handle
        // goes with `shared` once the API calls in flight are done.
        if let Some(writer) = self.writer.take() {
            let shared = self.shared.clone();
            drop(self);
            drop(shared);
            let _ = writer.await;
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(writer) = &self.writer {
            writer.abort();
        }
    }
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    config: EngineConfig,
    plugins: Vec<EnginePlugin>,
    plugins_unavailable: Option<String>,
    buses: Vec<Arc<dyn CanInterface>>,
    vrm: Option<VrmAccess>,
    site: Option<SiteStatus>,
}

impl EngineBuilder {
    /// A builder from `gx.toml`: the engine's settings, and the plugins of the plugin
    /// directory that the allowlist approves (the report lists those that loaded and
    /// those refused).
    /// Buses are added by the caller, who knows their backends.
    ///
    /// An allowlist that cannot be read or parsed does not stop the engine: it is logged
    /// at error level and recorded in the report (`allowlist_error`), no library is
    /// loaded (none is even read), and the engine monitors its batteries and refuses
    /// every update naming the allowlist's problem.
    pub fn from_gx_config(
        gx: &GxConfig,
        gx_firmware: crate::dotted_version::DottedVersion,
    ) -> Result<(EngineBuilder, LoadReport), EngineError> {
        let mut builder = Engine::builder(EngineConfig::from_gx(gx, gx_firmware));
        let allowlist = match Allowlist::load(&gx.plugins.allowlist) {
            Ok(allowlist) => allowlist,
            Err(e) => {
                let why = crate::plugin::one_line(&format!("the allowlist could not be read: {e}"));
                tracing::error!(
                    error = %why,
                    "no plugin loaded: every battery update will be refused until the \
                     allowlist is fixed and the daemon restarted"
                );
                let report = LoadReport {
                    allowlist_error: Some(why.clone()),
                    ..LoadReport::default()
                };
                return Ok((builder.plugins_unavailable(why), report));
            }
        };
        let loader = PluginLoader::new(allowlist)
            .with_method(gx.load_method())
            .with_isolation(gx.isolation())
            .with_max_library_bytes(gx.plugins.max_library_bytes);
        let report = loader.load_dir(&gx.plugins.dir)?;
        // The report keeps what loaded: the builder gets handles to the same plugins.
        for loaded in &report.loaded {
            builder = builder.plugin(LoadedPlugin {
                path: loaded.path.clone(),
                sha256: loaded.sha256,
                entry: loaded.entry.clone(),
                plugin: Arc::clone(&loaded.plugin),
            });
        }
        Ok((builder, report))
    }

    /// Records why the engine runs without plugins (e.g. the allowlist could not be
    /// read): update refusals name it.
    pub fn plugins_unavailable(mut self, why: impl Into<String>) -> EngineBuilder {
        self.plugins_unavailable = Some(why.into());
        self
    }

    /// Adds an approved plugin.
    pub fn plugin(mut self, loaded: LoadedPlugin) -> EngineBuilder {
        self.plugins.push(EnginePlugin {
            plugin: loaded.plugin,
            entry: loaded.entry,
        });
        self
    }

    /// Adds a bus (its interface's name names it).
    pub fn bus(mut self, iface: Arc<dyn CanInterface>) -> EngineBuilder {
        self.buses.push(iface);
        self
    }

    /// Shares `/Settings/Network/VrmPortal` with the VRM link (default: a new handle set to
    /// read-only, the GX default).
    pub fn vrm_access(mut self, vrm: VrmAccess) -> EngineBuilder {
        self.vrm = Some(vrm);
        self
    }

    /// Shares the site's grid status (default: a new handle, grid connected).
    pub fn site_status(mut self, site: SiteStatus) -> EngineBuilder {
        self.site = Some(site);
        self
    }

    /// Opens the state, recovers interrupted jobs and starts the tasks on the current
    /// Tokio runtime.
    pub fn start(self) -> Result<Engine, EngineError> {
        let config = self.config;
        for (i, bus) in self.buses.iter().enumerate() {
            if self.buses[..i].iter().any(|b| b.name() == bus.name()) {
                return Err(EngineError::DuplicateBus(bus.name().to_owned()));
            }
        }
        let (store, startup) = JobStore::open(&config.state_dir, config.events, UnixMillis::now())?;
        let staging = StagingArea::open(config.staging.clone())?;
        let (updates, _) = broadcast::channel(UPDATE_CHANNEL_CAPACITY);
        let requests = config.state_dir.root().join("requests");
        let (jobs, writer_rx) =
            jobs::Jobs::new(store, requests.clone(), updates.clone()).map_err(|source| {
                EngineError::Io {
                    path: requests,
                    source,
                }
            })?;
        let epoch = Instant::now();
        let buses = self
            .buses
            .into_iter()
            .enumerate()
            .map(|(i, iface)| Bus::new(i, iface, &config, Timestamp::ZERO))
            .collect();
        let shared = Arc::new(Shared {
            config,
            plugins: self.plugins,
            plugins_unavailable: self.plugins_unavailable,
            buses,
            jobs,
            staging,
            uploads: Mutex::new(HashMap::new()),
            preflights: Mutex::new(Vec::new()),
            vrm: self
                .vrm
                .unwrap_or_else(|| VrmAccess::new(VrmPortalMode::ReadOnly)),
            site: self.site.unwrap_or_default(),
            updates,
            epoch,
        });
        let writer = tokio::spawn(jobs::run_writer(shared.jobs.book(), writer_rx));
        let mut tasks: Vec<AbortOnDrop> = (0..shared.buses.len())
            .map(|i| AbortOnDrop(tokio::spawn(bus::run(shared.clone(), i))))
            .collect();
        tasks.extend(recovery::after_start(&shared, &startup));
        Ok(Engine {
            shared,
            tasks,
            writer: Some(writer),
            startup,
        })
    }
}
