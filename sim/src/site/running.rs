//! A site brought to life: one simulated bus per `[[bus]]`, one running battery per
//! `[[bus.battery]]`.
//!
//! Every battery runs the generic BMS-Can model for now, whatever its vendor; vendor
//! BMS models (bootloaders, update protocols) attach to the same buses by vendor name.

use super::{SiteBattery, SiteDescription};
use crate::battery::{BatteryHandle, BatteryModel, ConfigError, DriverExit, Epoch};
use crate::bus::SimBus;
use bmsfw_can::CanError;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Why a site could not start.
#[derive(Debug, thiserror::Error)]
#[error("battery {battery:?}: {source}")]
pub struct StartError {
    /// The battery.
    pub battery: String,
    /// Its configuration problem.
    #[source]
    pub source: ConfigError,
}

/// A battery of a running site.
#[derive(Debug)]
pub struct RunningBattery {
    /// Its description.
    pub description: SiteBattery,
    /// Its control handle.
    pub handle: BatteryHandle,
    task: JoinHandle<Result<DriverExit, CanError>>,
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
    /// Builds the buses and starts every battery on the current Tokio runtime (virtual
    /// time on a paused runtime, real time otherwise).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn start(&self) -> Result<RunningSite, StartError> {
        let epoch = Epoch::starting_now();
        let buses: Vec<SimBus> = self
            .buses
            .iter()
            .map(|b| SimBus::new(b.name.get_ref().clone(), *b.bitrate.get_ref()))
            .collect();
        let mut batteries = Vec::new();
        for description in self.batteries() {
            let model =
                BatteryModel::new(description.config.clone(), epoch.now()).map_err(|source| {
                    StartError {
                        battery: description.name.clone(),
                        source,
                    }
                })?;
            let bus = buses
                .iter()
                .find(|b| b.name() == description.bus)
                .unwrap_or_else(|| unreachable!("batteries() only names described buses"));
            let node = bus.attach(&description.name);
            let (handle, task) =
                BatteryHandle::spawn(description.name.clone(), model, epoch, Arc::new(node));
            tracing::debug!(
                bus = %description.bus,
                battery = %description.name,
                vendor = %description.vendor,
                "simulated battery started"
            );
            batteries.push(RunningBattery {
                description,
                handle,
                task,
            });
        }
        Ok(RunningSite {
            epoch,
            buses,
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

    /// The control handle of the battery named `name`.
    pub fn battery(&self, name: &str) -> Option<&BatteryHandle> {
        self.batteries
            .iter()
            .find(|b| b.description.name == name)
            .map(|b| &b.handle)
    }

    /// Stops every battery and waits for its driver; returns how each ended.
    pub async fn shutdown(mut self) -> Vec<(String, Result<DriverExit, String>)> {
        let batteries = std::mem::take(&mut self.batteries);
        for b in &batteries {
            b.handle.stop();
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
            b.handle.stop();
        }
    }
}
