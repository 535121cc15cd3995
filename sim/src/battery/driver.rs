//! Runs a [`BatteryModel`] on any [`CanInterface`](bmsfw_can::CanInterface) through a
//! [`NodeDriver`], with a handle tests use to change the battery while it runs.

use super::alarms::{Alarm, Level};
use super::config::{ConfigError, CurrentProfile};
use super::control::{BmsHandle, BmsModel};
use super::model::{BatteryModel, BatterySnapshot, ModuleState, PowerState};
use crate::node::{DriverExit, Epoch, NodeDriver, NodeModel};
use bmsfw_can::{CanError, CanFilter, CanId, CanInterface};
use bmsfw_plugin_api::{CanFrame, Timestamp};
use std::sync::Arc;
use tokio::task::JoinHandle;

impl NodeModel for BatteryModel {
    /// A BMS-Can battery only listens for the GX's keep-alive (0x305).
    fn filters(&self) -> Vec<CanFilter> {
        CanId::standard(0x305)
            .map(|id| CanFilter { id, mask: 0x7FF })
            .into_iter()
            .collect()
    }
    fn handle_frame(&mut self, now: Timestamp, frame: &CanFrame) {
        BatteryModel::handle_frame(self, now, frame);
    }
    fn poll_transmit(&mut self, now: Timestamp) -> Option<CanFrame> {
        BatteryModel::poll_transmit(self, now)
    }
    fn poll_timeout(&self) -> Option<Timestamp> {
        BatteryModel::poll_timeout(self)
    }
}

impl BmsModel for BatteryModel {
    fn battery_mut(&mut self) -> &mut BatteryModel {
        self
    }
    fn power_cut(&mut self, now: Timestamp) {
        self.set_power(now, PowerState::Off);
    }
    fn power_restore(&mut self, now: Timestamp) {
        self.set_power(now, PowerState::On);
    }
}

/// A running (or ready to run) simulated battery. Clones share the battery.
///
/// Every control method takes effect at the current tokio time: the physics is advanced
/// to now first, then the change applies, and the driver is woken so that a change of
/// schedule (power restored) is honoured at once. Frames the controller cannot send
/// (bus-off) are lost, as on real hardware; the schedule goes on.
#[derive(Clone)]
pub struct BatteryHandle {
    driver: NodeDriver<BatteryModel>,
}

impl std::fmt::Debug for BatteryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatteryHandle")
            .field("name", &self.driver.name())
            .finish_non_exhaustive()
    }
}

impl BmsHandle for BatteryHandle {
    type Model = BatteryModel;
    fn driver(&self) -> &NodeDriver<BatteryModel> {
        &self.driver
    }
}

impl BatteryHandle {
    /// A handle for `model`, whose timestamps count from `epoch`.
    pub fn new(name: impl Into<String>, model: BatteryModel, epoch: Epoch) -> BatteryHandle {
        BatteryHandle {
            driver: NodeDriver::new(name, model, epoch),
        }
    }

    /// Builds the handle and runs the battery on `iface` in a new task.
    pub fn spawn(
        name: impl Into<String>,
        model: BatteryModel,
        epoch: Epoch,
        iface: Arc<dyn CanInterface>,
    ) -> (BatteryHandle, JoinHandle<Result<DriverExit, CanError>>) {
        let handle = BatteryHandle::new(name, model, epoch);
        let task = handle.driver.spawn(iface);
        (handle, task)
    }

    /// The battery's name.
    pub fn name(&self) -> &str {
        self.driver.name()
    }

    /// The epoch of the battery's timestamps.
    pub fn epoch(&self) -> Epoch {
        self.driver.epoch()
    }

    /// Runs the battery on `iface` until [`stop`](BatteryHandle::stop) is called or the
    /// interface is closed.
    pub async fn run(&self, iface: &dyn CanInterface) -> Result<DriverExit, CanError> {
        self.driver.run(iface).await
    }

    /// Stops the driver (the battery stays as it is; [`run`](BatteryHandle::run) returns
    /// [`DriverExit::Stopped`] from now on).
    pub fn stop(&self) {
        self.driver.stop();
    }

    /// What the battery measures and reports now.
    pub fn snapshot(&self) -> BatterySnapshot {
        self.driver.change(|m, now| {
            m.advance(now);
            m.snapshot()
        })
    }

    /// Sets the state of charge, percent.
    pub fn set_soc(&self, soc: f64) {
        self.driver.change(|m, now| m.set_soc(now, soc));
    }

    /// Sets the pack temperature, degC.
    pub fn set_temperature(&self, celsius: f64) {
        self.driver.change(|m, now| m.set_temperature(now, celsius));
    }

    /// Replaces the current profile.
    pub fn set_profile(&self, profile: CurrentProfile) {
        self.driver.change(|m, now| m.set_profile(now, profile));
    }

    /// Raises an alarm or warning.
    pub fn raise(&self, level: Level, alarm: Alarm) {
        self.driver.change(|m, now| m.raise(now, level, alarm));
    }

    /// Clears an alarm or warning.
    pub fn clear(&self, level: Level, alarm: Alarm) {
        self.driver.change(|m, now| m.clear(now, level, alarm));
    }

    /// Clears every alarm and warning.
    pub fn clear_all_alarms(&self) {
        self.driver.change(|m, now| m.clear_all_alarms(now));
    }

    /// Replaces the firmware bytes of 0x35F.
    pub fn set_firmware_bytes(&self, firmware: [u8; 2]) {
        self.driver.change(|m, _| m.set_firmware_bytes(firmware));
    }

    /// Replaces every byte of 0x35F.
    pub fn set_product_info(&self, bytes: &[u8]) -> Result<(), ConfigError> {
        self.driver.change(|m, _| m.set_product_info(bytes))
    }

    /// Takes a module offline or brings it back.
    pub fn set_module(&self, index: u16, state: ModuleState) -> Result<(), ConfigError> {
        self.driver.change(|m, now| m.set_module(now, index, state))
    }

    /// Cuts power: the battery stops broadcasting and carries no current.
    pub fn power_cut(&self) {
        self.driver
            .change(|m, now| m.set_power(now, PowerState::Off));
    }

    /// Restores power: the BMS boots and broadcasts again.
    pub fn power_restore(&self) {
        self.driver
            .change(|m, now| m.set_power(now, PowerState::On));
    }

    /// Runs `f` on the model at the current time (for changes without a method here).
    pub fn with_model<T>(&self, f: impl FnOnce(&mut BatteryModel, Timestamp) -> T) -> T {
        self.driver.change(f)
    }
}
