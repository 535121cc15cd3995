//! A site brought to life: one simulated bus per `[[bus]]`, one running battery per
//! `[[bus.battery]]`.
//!
//! Which BMS model runs a battery is the [`BmsRegistry`]'s choice, by the battery's
//! `vendor`: the generic BMS-Can model unless a vendor's simulation crate registered its
//! own (bootloader, update protocol).

use super::{SiteBattery, SiteDescription};
use crate::battery::{BatteryControl, DriverExit, Epoch};
use crate::bus::{NodeId, SimBus};
use crate::registry::{BmsFactory, BmsRegistry, VendorControls};
use bmsfw_can::CanInterface;
use std::any::Any;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Why a site could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("battery {battery:?} (vendor {vendor:?}): {message}")]
pub struct StartError {
    /// The battery.
    pub battery: String,
    /// Its vendor.
    pub vendor: String,
    /// What went wrong.
    pub message: String,
}

impl StartError {
    /// An error about `battery`.
    pub fn new(battery: &SiteBattery, message: impl Into<String>) -> StartError {
        StartError {
            battery: battery.name.clone(),
            vendor: battery.vendor.clone(),
            message: message.into(),
        }
    }
}

/// A battery of a running site.
pub struct RunningBattery {
    /// Its description.
    pub description: SiteBattery,
    /// Its node on its simulated bus (for the bus's fault controls); `None` on a real
    /// interface.
    pub node: Option<NodeId>,
    control: Arc<dyn BatteryControl>,
    vendor: Option<VendorControls>,
    task: JoinHandle<Result<DriverExit, bmsfw_can::CanError>>,
}

impl std::fmt::Debug for RunningBattery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningBattery")
            .field("name", &self.description.name)
            .field("vendor", &self.description.vendor)
            .field("vendor_controls", &self.vendor.is_some())
            .finish_non_exhaustive()
    }
}

impl RunningBattery {
    /// The controls every battery offers.
    pub fn control(&self) -> &Arc<dyn BatteryControl> {
        &self.control
    }

    /// The vendor model's own controls, when they are a `T`.
    pub fn vendor_controls<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.vendor.clone()?.downcast::<T>().ok()
    }
}

/// The buses and batteries of a running site. Dropping it stops every battery (their
/// tasks end on their own); [`RunningSite::shutdown`] also waits for them.
#[derive(Debug)]
pub struct RunningSite {
    epoch: Epoch,
    buses: Vec<SimBus>,
    batteries: Vec<RunningBattery>,
}

impl SiteDescription {
    /// Builds the buses and starts every battery as the generic BMS-Can model, on the
    /// current Tokio runtime (virtual time on a paused runtime, real time otherwise).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn start(&self) -> Result<RunningSite, StartError> {
        self.start_with(&BmsRegistry::new())
    }

    /// Builds the buses and starts every battery with the model `registry` gives its
    /// vendor, each on a node of its own, on the current Tokio runtime. Stops at the
    /// first battery that cannot start.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn start_with(&self, registry: &BmsRegistry) -> Result<RunningSite, StartError> {
        let buses: Vec<SimBus> = self
            .buses
            .iter()
            .map(|b| SimBus::new(b.name.get_ref().clone(), *b.bitrate.get_ref()))
            .collect();
        let mut site = self.start_batteries(registry, |description| {
            let bus = buses
                .iter()
                .find(|b| b.name() == description.bus)
                .unwrap_or_else(|| unreachable!("batteries() only names described buses"));
            let node = bus.attach(&description.name);
            let id = node.id();
            Ok((Arc::new(node) as Arc<dyn CanInterface>, Some(id)))
        })?;
        site.buses = buses;
        Ok(site)
    }

    /// Starts every battery with the model `registry` gives its vendor, each on the
    /// interface `open` gives it (for example a SocketCAN socket of its own on the
    /// interface its `[[bus]]` names), in real time on the current Tokio runtime. The site
    /// has no simulated buses then. Stops at the first battery that cannot start.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn start_on(
        &self,
        registry: &BmsRegistry,
        mut open: impl FnMut(&SiteBattery) -> Result<Arc<dyn CanInterface>, String>,
    ) -> Result<RunningSite, StartError> {
        self.start_batteries(registry, |description| {
            open(description)
                .map(|iface| (iface, None))
                .map_err(|message| StartError::new(description, message))
        })
    }

    fn start_batteries(
        &self,
        registry: &BmsRegistry,
        mut open: impl FnMut(
            &SiteBattery,
        ) -> Result<(Arc<dyn CanInterface>, Option<NodeId>), StartError>,
    ) -> Result<RunningSite, StartError> {
        let epoch = Epoch::starting_now();
        let mut batteries = Vec::new();
        for description in self.batteries() {
            let (iface, node_id) = open(&description)?;
            let spawned = if description.model.is_some() {
                crate::model_library::LibraryFactory.spawn(&description, iface, epoch)?
            } else {
                registry
                    .factory(&description.vendor)
                    .spawn(&description, iface, epoch)?
            };
            tracing::debug!(
                bus = %description.bus,
                battery = %description.name,
                vendor = %description.vendor,
                "simulated battery started"
            );
            batteries.push(RunningBattery {
                description,
                node: node_id,
                control: spawned.control,
                vendor: spawned.vendor,
                task: spawned.task,
            });
        }
        Ok(RunningSite {
            epoch,
            buses: Vec::new(),
            batteries,
        })
    }
}

impl RunningSite {
    /// The epoch of the batteries' timestamps.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The buses, in file order.
    pub fn buses(&self) -> &[SimBus] {
        &self.buses
    }

    /// The bus named `name`.
    pub fn bus(&self, name: &str) -> Option<&SimBus> {
        self.buses.iter().find(|b| b.name() == name)
    }

    /// The batteries, in file order.
    pub fn batteries(&self) -> &[RunningBattery] {
        &self.batteries
    }

    /// The battery named `name`.
    pub fn battery(&self, name: &str) -> Option<&RunningBattery> {
        self.batteries.iter().find(|b| b.description.name == name)
    }

    /// Stops every battery and waits for its driver; returns how each ended.
    pub async fn shutdown(mut self) -> Vec<(String, Result<DriverExit, String>)> {
        let batteries = std::mem::take(&mut self.batteries);
        for b in &batteries {
            b.control.stop();
        }
        let mut out = Vec::new();
        for b in batteries {
            let exit = match b.task.await {
                Ok(Ok(exit)) => Ok(exit),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("driver task failed: {e}")),
            };
            out.push((b.description.name, exit));
        }
        out
    }
}

impl Drop for RunningSite {
    fn drop(&mut self) {
        for b in &self.batteries {
            b.control.stop();
        }
    }
}
