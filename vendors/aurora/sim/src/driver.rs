//! Runs an [`AuroraBms`] on any [`CanInterface`] through the simulator's [`NodeDriver`],
//! with a handle tests and the demo use to change the battery, cut its power and inject
//! faults while it runs. The handle offers the simulator's
//! [`BatteryControl`](bmsfw_sim::battery::BatteryControl) through [`BmsHandle`].

use crate::bms::{AuroraBms, AuroraStatus};
use crate::bootloader::Fault;
use crate::flash::{Flash, SlotId};
use crate::protocol::REQUEST_ID;
use bmsfw_can::{CanError, CanFilter, CanId, CanInterface};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_sim::battery::{BatteryModel, BmsHandle, BmsModel, DriverExit, Epoch};
use bmsfw_sim::node::{NodeDriver, NodeModel};
use std::sync::Arc;
use tokio::task::JoinHandle;

impl NodeModel for AuroraBms {
    /// The GX's keep-alive (0x305) and UDS requests (0x7E2).
    fn filters(&self) -> Vec<CanFilter> {
        [0x305, REQUEST_ID]
            .into_iter()
            .filter_map(CanId::standard)
            .map(|id| CanFilter { id, mask: 0x7FF })
            .collect()
    }
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        AuroraBms::handle_frame(self, now, frame);
    }
    fn handle_timeout(&mut self, now: Timestamp) {
        AuroraBms::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        AuroraBms::poll_transmit(self, now)
    }
    fn poll_timeout(&self) -> Option<Timestamp> {
        AuroraBms::poll_timeout(self)
    }
}

impl BmsModel for AuroraBms {
    fn battery_mut(&mut self) -> &mut BatteryModel {
        AuroraBms::battery_mut(self)
    }
    fn power_cut(&mut self, now: Timestamp) {
        AuroraBms::power_cut(self, now);
    }
    fn power_restore(&mut self, now: Timestamp) {
        AuroraBms::power_restore(self, now);
    }
}

/// A running (or ready to run) simulated Aurora BMS. Clones share the BMS.
///
/// Every control takes effect at the current Tokio time and wakes the driver, so that a
/// change of schedule (power restored, a restart) is honoured at once.
#[derive(Clone)]
pub struct AuroraHandle {
    driver: NodeDriver<AuroraBms>,
}

impl std::fmt::Debug for AuroraHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuroraHandle")
            .field("name", &self.driver.name())
            .finish_non_exhaustive()
    }
}

impl BmsHandle for AuroraHandle {
    type Model = AuroraBms;
    fn driver(&self) -> &NodeDriver<AuroraBms> {
        &self.driver
    }
}

impl AuroraHandle {
    /// A handle for `model`, whose timestamps count from `epoch`.
    pub fn new(name: impl Into<String>, model: AuroraBms, epoch: Epoch) -> AuroraHandle {
        AuroraHandle {
            driver: NodeDriver::new(name, model, epoch),
        }
    }

    /// Builds the handle and runs the BMS on `iface` in a new task.
    pub fn spawn(
        name: impl Into<String>,
        model: AuroraBms,
        epoch: Epoch,
        iface: Arc<dyn CanInterface>,
    ) -> (AuroraHandle, JoinHandle<Result<DriverExit, CanError>>) {
        let handle = AuroraHandle::new(name, model, epoch);
        let task = handle.driver.spawn(iface);
        (handle, task)
    }

    /// The epoch of the BMS's timestamps.
    pub fn epoch(&self) -> Epoch {
        self.driver.epoch()
    }

    /// Runs the BMS on `iface` until [`stop`](Self::stop) is called or the interface is
    /// closed.
    pub async fn run(&self, iface: &dyn CanInterface) -> Result<DriverExit, CanError> {
        self.driver.run(iface).await
    }

    /// Stops the driver (the BMS stays as it is).
    pub fn stop(&self) {
        self.driver.stop();
    }

    /// Where the BMS is, its slots and its session.
    pub fn status(&self) -> AuroraStatus {
        self.driver.change(|m, now| {
            m.handle_timeout(now);
            m.status()
        })
    }

    /// A copy of the package in `slot`.
    pub fn slot_package(&self, slot: SlotId) -> Vec<u8> {
        self.driver.model().flash().slot(slot).data().to_vec()
    }

    /// Runs `f` on the flash.
    pub fn with_flash<T>(&self, f: impl FnOnce(&Flash) -> T) -> T {
        f(self.driver.model().flash())
    }

    /// Arms a fault; it fires once.
    pub fn inject(&self, fault: Fault) {
        self.driver.change(|m, _| m.inject(fault));
    }
}
