//! Runs a [`BorealBank`] on any [`CanInterface`] through the simulator's [`NodeDriver`],
//! with a handle tests and the demo use to change the bank, cut its power and inject
//! faults while it runs. The handle offers the simulator's
//! [`BatteryControl`](bmsfw_sim::battery::BatteryControl) through [`BmsHandle`].
//!
//! The bank's nodes share the one interface the site gives the battery: their frames
//! leave through it in the order the model hands them out (telemetry first), which the
//! bus then arbitrates against every other node's.

use crate::bank::{BorealBank, NodeStatus};
use crate::dictionary::Fault;
use crate::flash::SlotId;
use crate::protocol::MAX_NODE;
use bmsfw_can::{CanError, CanFilter, CanId, CanInterface};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use bmsfw_sim::battery::{BatteryModel, BmsHandle, BmsModel, DriverExit, Epoch};
use bmsfw_sim::node::{NodeDriver, NodeModel};
use std::sync::Arc;
use tokio::task::JoinHandle;

impl NodeModel for BorealBank {
    /// The GX's keep-alive (0x305) and SDO requests to the bank's nodes
    /// (0x600 + node-id).
    fn filters(&self) -> Vec<CanFilter> {
        let sdo = self.nodes().iter().map(|n| 0x600 + u16::from(n.id().get()));
        std::iter::once(0x305)
            .chain(sdo)
            .filter_map(CanId::standard)
            .map(|id| CanFilter { id, mask: 0x7FF })
            .collect()
    }
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        BorealBank::handle_frame(self, now, frame);
    }
    fn handle_timeout(&mut self, now: Timestamp) {
        BorealBank::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        BorealBank::poll_transmit(self, now)
    }
    fn poll_timeout(&self) -> Option<Timestamp> {
        BorealBank::poll_timeout(self)
    }
}

impl BmsModel for BorealBank {
    fn battery_mut(&mut self) -> &mut BatteryModel {
        BorealBank::battery_mut(self)
    }
    fn power_cut(&mut self, now: Timestamp) {
        BorealBank::power_cut(self, now);
    }
    fn power_restore(&mut self, now: Timestamp) {
        BorealBank::power_restore(self, now);
    }
}

/// A running (or ready to run) simulated bank. Clones share the bank.
#[derive(Clone)]
pub struct BankHandle {
    driver: NodeDriver<BorealBank>,
}

impl std::fmt::Debug for BankHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BankHandle")
            .field("name", &self.driver.name())
            .finish_non_exhaustive()
    }
}

impl BmsHandle for BankHandle {
    type Model = BorealBank;
    fn driver(&self) -> &NodeDriver<BorealBank> {
        &self.driver
    }
}

impl BankHandle {
    /// A handle for `model`, whose timestamps count from `epoch`.
    pub fn new(name: impl Into<String>, model: BorealBank, epoch: Epoch) -> BankHandle {
        BankHandle {
            driver: NodeDriver::new(name, model, epoch),
        }
    }

    /// Builds the handle and runs the bank on `iface` in a new task.
    pub fn spawn(
        name: impl Into<String>,
        model: BorealBank,
        epoch: Epoch,
        iface: Arc<dyn CanInterface>,
    ) -> (BankHandle, JoinHandle<Result<DriverExit, CanError>>) {
        let handle = BankHandle::new(name, model, epoch);
        let task = handle.driver.spawn(iface);
        (handle, task)
    }

    /// The epoch of the bank's timestamps.
    pub fn epoch(&self) -> Epoch {
        self.driver.epoch()
    }

    /// Runs the bank on `iface` until [`stop`](Self::stop) is called or the interface is
    /// closed.
    pub async fn run(&self, iface: &dyn CanInterface) -> Result<DriverExit, CanError> {
        self.driver.run(iface).await
    }

    /// Stops the driver (the bank stays as it is).
    pub fn stop(&self) {
        self.driver.stop();
    }

    /// Where every node is, at the current time.
    pub fn status(&self) -> Vec<NodeStatus> {
        self.driver.change(|m, now| {
            m.handle_timeout(now);
            m.status()
        })
    }

    /// Node `id` at the current time.
    ///
    /// # Panics
    ///
    /// When the bank has no node `id`: a test's own mistake.
    pub fn node(&self, id: u8) -> NodeStatus {
        assert!((1..=MAX_NODE).contains(&id), "node-ids are 1 to {MAX_NODE}");
        self.status()
            .into_iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("the bank has no node {id}"))
    }

    /// The lowest version any node runs.
    pub fn lowest_version(&self) -> [u8; 2] {
        self.driver.model().lowest_version()
    }

    /// A copy of `slot` of node `id` (empty when there is no such node).
    pub fn slot_image(&self, id: u8, slot: SlotId) -> Vec<u8> {
        self.driver
            .model()
            .node(id)
            .map(|n| n.dictionary().flash().slot(slot).data().to_vec())
            .unwrap_or_default()
    }

    /// Arms a fault in node `id`; it fires once. Returns whether the node exists.
    pub fn inject(&self, id: u8, fault: Fault) -> bool {
        self.driver.change(|m, _| m.inject(id, fault))
    }
}
