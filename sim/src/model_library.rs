//! BMS models loaded from libraries: a vendor's simulated BMS built against
//! `bmsfw-sim-api`, named by path in a site file (`model = "libacme_model.so"`).
//!
//! The simulator keeps the battery's pack and its BMS-Can telemetry ([`BatteryModel`]);
//! the library's model answers the vendor's own frames and says, after every call,
//! which firmware the telemetry names and whether the BMS is silent. Loading a model
//! library runs its code in the simulating process: model libraries are for simulated
//! sites (`--sim`, the demo, tests), never for a GX's real buses, and no allowlist
//! guards them.

use crate::battery::{BatteryModel, BmsModel, DriverExit, Epoch, PowerState, Telemetry};
use crate::node::{NodeDriver, NodeModel};
use crate::registry::{BmsFactory, SpawnedBms};
use crate::site::{SiteBattery, StartError};
use bmsfw_can::{CanError, CanFilter, CanInterface};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_sim_api::abi_stable::library::{LibraryError, lib_header_from_path};
use bmsfw_sim_api::{
    BmsView, BoxedModel, FlashView, FrameFilter, MODEL_CONTRACT_VERSION, ModelIdentity,
    ModelModule_Ref, ModelSetup,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Where a battery's model comes from: a library and the options handed to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSource {
    /// The library's path (resolved against the site file's folder).
    pub path: PathBuf,
    /// The site file's `model_options` table as TOML text (empty when there is none).
    pub options: String,
}

/// Why a model library could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelLoadError {
    /// The path is not a regular file.
    #[error("model library {path}: {reason}")]
    NotAFile {
        /// The path.
        path: String,
        /// What it is instead, or the OS error.
        reason: String,
    },
    /// The dynamic loader or abi_stable refused it (not a model library, another
    /// contract, a layout that does not match).
    #[error("model library {path}: {detail}")]
    Refused {
        /// The path.
        path: String,
        /// Why, in one line.
        detail: String,
    },
}

/// A loaded model library.
#[derive(Clone, Copy)]
pub struct ModelLibrary {
    module: ModelModule_Ref,
}

impl std::fmt::Debug for ModelLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelLibrary")
            .field("identity", &self.identity())
            .finish()
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl ModelLibrary {
    /// Loads the model library at `path`: a regular file, built against this contract's
    /// major version, with the contract's layout.
    pub fn open(path: &Path) -> Result<ModelLibrary, ModelLoadError> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| ModelLoadError::NotAFile {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        if !meta.is_file() {
            return Err(ModelLoadError::NotAFile {
                path: shown,
                reason: "not a regular file".into(),
            });
        }
        let refused = |detail: String| ModelLoadError::Refused {
            path: shown.clone(),
            detail: one_line(&detail),
        };
        let header = lib_header_from_path(path).map_err(|e| refused(e.to_string()))?;
        let module = header
            .init_root_module::<ModelModule_Ref>()
            .map_err(|e| match e {
                LibraryError::IncompatibleVersionNumber { .. } => refused(format!(
                    "built against model contract {}, this simulator runs {}",
                    header.version_strings(),
                    MODEL_CONTRACT_VERSION
                )),
                LibraryError::AbiInstability(_) => refused(
                    "not a bmsfw model library, or one whose types do not match this \
                     contract's layout"
                        .into(),
                ),
                other => refused(other.to_string()),
            })?;
        let library = ModelLibrary { module };
        let identity = library.identity();
        if identity.contract.major != MODEL_CONTRACT_VERSION.major {
            return Err(refused(format!(
                "model {} says contract {}, this simulator runs {}",
                identity.name, identity.contract, MODEL_CONTRACT_VERSION
            )));
        }
        Ok(library)
    }

    /// Who the model is.
    pub fn identity(&self) -> ModelIdentity {
        (self.module.identity())()
    }

    /// Starts the model of one battery.
    pub fn start(&self, setup: &ModelSetup) -> Result<BoxedModel, String> {
        (self.module.new_model())(setup)
            .into_result()
            .map_err(|e| e.into_string())
    }
}

/// The setup a model gets for `battery`.
pub fn setup_for(battery: &SiteBattery, options: &str) -> ModelSetup {
    let identity = &battery.config.identity;
    ModelSetup {
        battery: battery.name.as_str().into(),
        manufacturer: identity.manufacturer.as_str().into(),
        product_code: identity.product_code,
        firmware: identity.firmware,
        serial: identity.serial.clone().unwrap_or_default().into(),
        modules: battery.config.modules,
        options: options.into(),
    }
}

/// A battery whose BMS is a library's model: the simulator's pack and telemetry, the
/// library's protocol and flash.
pub struct LibraryBms {
    battery: BatteryModel,
    model: BoxedModel,
    filters: Vec<FrameFilter>,
    shown: BmsView,
    name: String,
    fault_reported: bool,
}

impl LibraryBms {
    /// The BMS of `battery` run by `model`, at `now`.
    pub fn new(
        battery: &SiteBattery,
        model: BoxedModel,
        now: Timestamp,
    ) -> Result<LibraryBms, String> {
        let pack = BatteryModel::new(battery.config.clone(), now).map_err(|e| e.to_string())?;
        let filters = model.filters().into_vec();
        let mut bms = LibraryBms {
            battery: pack,
            model,
            filters,
            shown: BmsView::running(battery.config.identity.firmware),
            name: battery.name.clone(),
            fault_reported: false,
        };
        bms.sync(now);
        Ok(bms)
    }

    /// The ground truth of the model's flash.
    pub fn flash(&self) -> FlashView {
        self.model.flash()
    }

    /// The panic that stopped the model, if one did.
    pub fn fault(&self) -> Option<String> {
        self.model.fault().into_option().map(|s| s.into_string())
    }

    /// Brings the telemetry in step with what the model shows.
    fn sync(&mut self, now: Timestamp) {
        if let Some(fault) = self.fault() {
            if !self.fault_reported {
                tracing::warn!(battery = %self.name, %fault, "the simulated BMS model stopped");
                self.fault_reported = true;
            }
            self.battery.set_telemetry(now, Telemetry::Silent);
            return;
        }
        let view = self.model.bms();
        if view.firmware != self.shown.firmware {
            self.battery.set_firmware_bytes(view.firmware);
        }
        if view.telemetry != self.shown.telemetry {
            self.battery.set_telemetry(
                now,
                match view.telemetry {
                    bmsfw_sim_api::Telemetry::Sending => Telemetry::Sending,
                    bmsfw_sim_api::Telemetry::Silent => Telemetry::Silent,
                },
            );
        }
        self.shown = view;
    }

    fn is_models(&self, frame: &CanFrame) -> bool {
        self.filters.iter().any(|f| f.matches(frame))
    }
}

impl NodeModel for LibraryBms {
    /// The GX's keep-alive (the pack's) and the model's own frames.
    fn filters(&self) -> Vec<CanFilter> {
        let mut filters = NodeModel::filters(&self.battery);
        filters.extend(self.filters.iter().map(|f| CanFilter {
            id: f.id,
            mask: f.mask,
        }));
        filters
    }
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        if self.battery.power() == PowerState::Off {
            return;
        }
        if self.is_models(frame) {
            self.model.handle_frame(now, *frame);
            self.sync(now);
        } else {
            BatteryModel::handle_frame(&mut self.battery, now, frame);
        }
    }
    fn handle_timeout(&mut self, now: Timestamp) {
        if self
            .model
            .poll_timeout()
            .into_option()
            .is_some_and(|t| t <= now)
        {
            self.model.handle_timeout(now);
            self.sync(now);
        }
    }
    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        if let Some(frame) = BatteryModel::poll_transmit(&mut self.battery, now) {
            return Some(frame);
        }
        if self.battery.power() == PowerState::Off {
            return None;
        }
        let frame = self.model.poll_transmit(now).into_option();
        self.sync(now);
        frame
    }
    fn poll_timeout(&self) -> Option<Timestamp> {
        let pack = BatteryModel::poll_timeout(&self.battery);
        let model = self.model.poll_timeout().into_option();
        match (pack, model) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl BmsModel for LibraryBms {
    fn battery_mut(&mut self) -> &mut BatteryModel {
        &mut self.battery
    }
    fn power_cut(&mut self, now: Timestamp) {
        self.battery.set_power(now, PowerState::Off);
        self.model.power_cut(now);
        self.sync(now);
    }
    fn power_restore(&mut self, now: Timestamp) {
        self.battery.set_power(now, PowerState::On);
        self.model.power_restore(now);
        self.sync(now);
    }
}

/// A running library model: its battery controls, and the ground truth of its flash.
#[derive(Clone)]
pub struct LibraryHandle {
    driver: NodeDriver<LibraryBms>,
}

impl crate::battery::BmsHandle for LibraryHandle {
    type Model = LibraryBms;
    fn driver(&self) -> &NodeDriver<LibraryBms> {
        &self.driver
    }
}

impl LibraryHandle {
    /// The ground truth of the model's flash now.
    pub fn flash(&self) -> FlashView {
        self.driver.change(|m, _| m.flash())
    }

    /// The panic that stopped the model, if one did.
    pub fn fault(&self) -> Option<String> {
        self.driver.change(|m, _| m.fault())
    }
}

/// Starts the library model of batteries that name one (`model = ...`).
#[derive(Clone, Copy, Debug, Default)]
pub struct LibraryFactory;

impl LibraryFactory {
    /// Spawns `battery`'s model from `source` on `iface`.
    pub fn spawn_from(
        source: &ModelSource,
        battery: &SiteBattery,
        iface: Arc<dyn CanInterface>,
        epoch: Epoch,
    ) -> Result<(LibraryHandle, JoinHandle<Result<DriverExit, CanError>>), StartError> {
        let library = ModelLibrary::open(&source.path)
            .map_err(|e| StartError::new(battery, e.to_string()))?;
        let identity = library.identity();
        let model = library
            .start(&setup_for(battery, &source.options))
            .map_err(|e| {
                StartError::new(
                    battery,
                    format!("model {} ({}): {e}", identity.name, source.path.display()),
                )
            })?;
        let bms = LibraryBms::new(battery, model, epoch.now())
            .map_err(|e| StartError::new(battery, e))?;
        let driver = NodeDriver::new(battery.name.clone(), bms, epoch);
        let task = driver.spawn(iface);
        Ok((LibraryHandle { driver }, task))
    }
}

impl BmsFactory for LibraryFactory {
    fn spawn(
        &self,
        battery: &SiteBattery,
        iface: Arc<dyn CanInterface>,
        epoch: Epoch,
    ) -> Result<SpawnedBms, StartError> {
        let Some(source) = &battery.model else {
            return Err(StartError::new(
                battery,
                "the battery names no model library",
            ));
        };
        let (handle, task) = LibraryFactory::spawn_from(source, battery, iface, epoch)?;
        let handle = Arc::new(handle);
        Ok(SpawnedBms {
            control: handle.clone(),
            vendor: Some(handle),
            task,
        })
    }
}
