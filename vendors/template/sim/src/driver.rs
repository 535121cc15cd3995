//! Runs a [`TemplateBms`] on any [`CanInterface`] through the simulator's
//! [`NodeDriver`], with a handle tests use to change the battery, cut its power and
//! inject faults while it runs. The handle gets the simulator's
//! [`BatteryControl`](bmsfw_sim::battery::BatteryControl) through [`BmsHandle`].

use crate::bms::{TemplateBms, TemplateStatus};
use crate::bootloader::Fault;
use crate::protocol::REQUEST_ID;
use bmsfw_can::{CanError, CanFilter, CanId, CanInterface};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_sim::battery::{BatteryModel, BmsHandle, BmsModel, DriverExit, Epoch};
use bmsfw_sim::flash::SlotId;
use bmsfw_sim::node::{NodeDriver, NodeModel};
use std::sync::Arc;
use tokio::task::JoinHandle;

impl NodeModel for TemplateBms {
    /// The GX's keep-alive (0x305) and UDS requests (0x7E5).
    fn filters(&self) -> Vec<CanFilter> {
        [0x305, REQUEST_ID]
            .into_iter()
            .filter_map(CanId::standard)
            .map(|id| CanFilter { id, mask: 0x7FF })
            .collect()
    }
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        TemplateBms::handle_frame(self, now, frame);
    }
    fn handle_timeout(&mut self, now: Timestamp) {
        TemplateBms::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        TemplateBms::poll_transmit(self, now)
    }
    fn poll_timeout(&self) -> Option<Timestamp> {
        TemplateBms::poll_timeout(self)
    }
}

impl BmsModel for TemplateBms {
    fn battery_mut(&mut self) -> &mut BatteryModel {
        TemplateBms::battery_mut(self)
    }
    fn power_cut(&mut self, now: Timestamp) {
        TemplateBms::power_cut(self, now);
    }
    fn power_restore(&mut self, now: Timestamp) {
        TemplateBms::power_restore(self, now);
    }
}

/// A running (or ready to run) simulated Acme BMS. Clones share the BMS.
#[derive(Clone)]
pub struct TemplateHandle {
    driver: NodeDriver<TemplateBms>,
}

impl std::fmt::Debug for TemplateHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateHandle")
            .field("name", &self.driver.name())
            .finish_non_exhaustive()
    }
}

impl BmsHandle for TemplateHandle {
    type Model = TemplateBms;
    fn driver(&self) -> &NodeDriver<TemplateBms> {
        &self.driver
    }
}

impl TemplateHandle {
    /// Builds the handle and runs the BMS on `iface` in a new task.
    pub fn spawn(
        name: impl Into<String>,
        model: TemplateBms,
        epoch: Epoch,
        iface: Arc<dyn CanInterface>,
    ) -> (TemplateHandle, JoinHandle<Result<DriverExit, CanError>>) {
        let handle = TemplateHandle {
            driver: NodeDriver::new(name, model, epoch),
        };
        let task = handle.driver.spawn(iface);
        (handle, task)
    }

    /// Where the BMS is, at the current time.
    pub fn status(&self) -> TemplateStatus {
        self.driver.change(|m, now| {
            m.handle_timeout(now);
            m.status()
        })
    }

    /// A copy of the package in `slot`.
    pub fn slot_package(&self, slot: SlotId) -> Vec<u8> {
        self.driver.model().flash().slot(slot).data().to_vec()
    }

    /// Arms a fault; it fires once.
    pub fn inject(&self, fault: Fault) {
        self.driver.change(|m, _| m.inject(fault));
    }
}
