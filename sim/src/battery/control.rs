//! The controls every simulated battery offers, whichever BMS model runs it.

use super::alarms::{Alarm, Level};
use super::config::CurrentProfile;
use super::model::{BatteryModel, BatterySnapshot};
use crate::node::{NodeDriver, NodeModel};
use bmsfw_plugin_api::Timestamp;

/// What tests and the demo change on a running battery: its pack, its alarms, its
/// power. A plain BMS-Can battery ([`BatteryHandle`](super::BatteryHandle)) and a
/// vendor's BMS model with a bootloader behind it implement the same controls, so a site
/// can be driven without knowing which vendor runs each battery.
///
/// Every [`BmsHandle`] has these controls: a vendor's handle does not implement them
/// itself.
pub trait BatteryControl: Send + Sync {
    /// The battery's name.
    fn name(&self) -> &str;
    /// What the battery measures and reports now.
    fn snapshot(&self) -> BatterySnapshot;
    /// Sets the state of charge, percent.
    fn set_soc(&self, soc: f64);
    /// Sets the pack temperature, degC.
    fn set_temperature(&self, celsius: f64);
    /// Replaces the current profile.
    fn set_profile(&self, profile: CurrentProfile);
    /// Raises an alarm or warning.
    fn raise(&self, level: Level, alarm: Alarm);
    /// Clears an alarm or warning.
    fn clear(&self, level: Level, alarm: Alarm);
    /// Clears every alarm and warning.
    fn clear_all_alarms(&self);
    /// Cuts the BMS's power: it goes silent, loses what it held in RAM, and its pack
    /// carries no current.
    fn power_cut(&self);
    /// Restores power: the BMS boots and broadcasts again.
    fn power_restore(&self);
    /// Stops the task that runs the battery on its bus (the battery stays as it is).
    fn stop(&self);
}

/// A simulated BMS with a BMS-Can battery behind it: a plain battery, or a vendor's BMS
/// whose bootloader and flash sit beside the battery's telemetry.
pub trait BmsModel: NodeModel {
    /// The BMS-Can battery, to change its pack or its alarms.
    fn battery_mut(&mut self) -> &mut BatteryModel;
    /// Cuts the power at `now`: the BMS goes silent and loses its RAM.
    fn power_cut(&mut self, now: Timestamp);
    /// Restores the power at `now`: the BMS boots.
    fn power_restore(&mut self, now: Timestamp);
}

/// Whatever runs a [`BmsModel`] through a [`NodeDriver`]: a vendor's handle names its
/// driver here and gets [`BatteryControl`].
pub trait BmsHandle: Send + Sync {
    /// The model the driver runs.
    type Model: BmsModel;
    /// The driver.
    fn driver(&self) -> &NodeDriver<Self::Model>;

    /// Runs `f` on the battery behind the BMS at the current time.
    fn with_battery<T>(&self, f: impl FnOnce(&mut BatteryModel, Timestamp) -> T) -> T {
        self.driver().change(|m, now| f(m.battery_mut(), now))
    }
}

impl<M: BmsModel> BmsHandle for NodeDriver<M> {
    type Model = M;
    fn driver(&self) -> &NodeDriver<M> {
        self
    }
}

impl<H: BmsHandle> BatteryControl for H {
    fn name(&self) -> &str {
        self.driver().name()
    }
    fn snapshot(&self) -> BatterySnapshot {
        self.with_battery(|b, now| {
            b.advance(now);
            b.snapshot()
        })
    }
    fn set_soc(&self, soc: f64) {
        self.with_battery(|b, now| b.set_soc(now, soc));
    }
    fn set_temperature(&self, celsius: f64) {
        self.with_battery(|b, now| b.set_temperature(now, celsius));
    }
    fn set_profile(&self, profile: CurrentProfile) {
        self.with_battery(|b, now| b.set_profile(now, profile));
    }
    fn raise(&self, level: Level, alarm: Alarm) {
        self.with_battery(|b, now| b.raise(now, level, alarm));
    }
    fn clear(&self, level: Level, alarm: Alarm) {
        self.with_battery(|b, now| b.clear(now, level, alarm));
    }
    fn clear_all_alarms(&self) {
        self.with_battery(|b, now| b.clear_all_alarms(now));
    }
    fn power_cut(&self) {
        self.driver().change(|m, now| m.power_cut(now));
    }
    fn power_restore(&self) {
        self.driver().change(|m, now| m.power_restore(now));
    }
    fn stop(&self) {
        self.driver().stop();
    }
}
