//! Runs a [`CoralBms`] on any [`CanInterface`] through the simulator's [`NodeDriver`],
//! with a handle tests and the demo use to change the battery, cut its power and inject
//! faults while it runs. The handle offers the simulator's
//! [`BatteryControl`](bmsfw_sim::battery::BatteryControl) through [`BmsHandle`].

use crate::bms::{CoralBms, CoralStatus, Fault};
use crate::protocol::{COMMAND_ID, DATA_BASE, SEQUENCE_MASK};
use bmsfw_can::{CanError, CanFilter, CanId, CanInterface};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_sim::battery::{BatteryModel, BmsHandle, BmsModel, DriverExit, Epoch};
use bmsfw_sim::node::{NodeDriver, NodeModel};
use std::sync::Arc;
use tokio::task::JoinHandle;

impl NodeModel for CoralBms {
    /// The GX's keep-alive, commands, data frames.
    fn filters(&self) -> Vec<CanFilter> {
        let mut f: Vec<CanFilter> = CanId::standard(0x305)
            .map(|id| CanFilter { id, mask: 0x7FF })
            .into_iter()
            .collect();
        f.push(CanFilter {
            id: COMMAND_ID,
            mask: 0x1FFF_FFFF,
        });
        if let Some(id) = CanId::extended(DATA_BASE) {
            f.push(CanFilter {
                id,
                mask: 0x1FFF_FFFF & !SEQUENCE_MASK,
            });
        }
        f
    }
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        CoralBms::handle_frame(self, now, frame);
    }
    fn handle_timeout(&mut self, now: Timestamp) {
        CoralBms::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        CoralBms::poll_transmit(self, now)
    }
    fn poll_timeout(&self) -> Option<Timestamp> {
        CoralBms::poll_timeout(self)
    }
}

impl BmsModel for CoralBms {
    fn battery_mut(&mut self) -> &mut BatteryModel {
        CoralBms::battery_mut(self)
    }
    fn power_cut(&mut self, now: Timestamp) {
        CoralBms::power_cut(self, now);
    }
    fn power_restore(&mut self, now: Timestamp) {
        CoralBms::power_restore(self, now);
    }
}

/// A running (or ready to run) simulated ReefStack master. Clones share the master.
///
/// Every control takes effect at the current Tokio time and wakes the driver.
#[derive(Clone)]
pub struct CoralHandle {
    driver: NodeDriver<CoralBms>,
}

impl std::fmt::Debug for CoralHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoralHandle")
            .field("name", &self.driver.name())
            .finish_non_exhaustive()
    }
}

impl BmsHandle for CoralHandle {
    type Model = CoralBms;
    fn driver(&self) -> &NodeDriver<CoralBms> {
        &self.driver
    }
}

impl CoralHandle {
    /// A handle for `model`, whose timestamps count from `epoch`.
    pub fn new(name: impl Into<String>, model: CoralBms, epoch: Epoch) -> CoralHandle {
        CoralHandle {
            driver: NodeDriver::new(name, model, epoch),
        }
    }

    /// Builds the handle and runs the master on `iface` in a new task.
    pub fn spawn(
        name: impl Into<String>,
        model: CoralBms,
        epoch: Epoch,
        iface: Arc<dyn CanInterface>,
    ) -> (CoralHandle, JoinHandle<Result<DriverExit, CanError>>) {
        let handle = CoralHandle::new(name, model, epoch);
        let task = handle.driver.spawn(iface);
        (handle, task)
    }

    /// The epoch of the master's timestamps.
    pub fn epoch(&self) -> Epoch {
        self.driver.epoch()
    }

    /// Runs the master on `iface` until [`stop`](Self::stop) is called or the interface
    /// is closed.
    pub async fn run(&self, iface: &dyn CanInterface) -> Result<DriverExit, CanError> {
        self.driver.run(iface).await
    }

    /// Stops the driver (the master stays as it is).
    pub fn stop(&self) {
        self.driver.stop();
    }

    /// The master's state, its modules and its staging area.
    pub fn status(&self) -> CoralStatus {
        self.driver.change(|m, now| {
            m.handle_timeout(now);
            m.status()
        })
    }

    /// A copy of the staged bundle.
    pub fn staged_bytes(&self) -> Option<Vec<u8>> {
        self.driver.model().staged_bytes().map(<[u8]>::to_vec)
    }

    /// Arms a fault; it fires once.
    pub fn inject(&self, fault: Fault) {
        self.driver.change(|m, _| m.inject(fault));
    }
}
