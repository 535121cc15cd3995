//! The controls every simulated battery offers, whichever BMS model runs it.

use super::alarms::{Alarm, Level};
use super::config::CurrentProfile;
use super::driver::BatteryHandle;
use super::model::BatterySnapshot;

/// What tests and the demo change on a running battery: its pack, its alarms, its
/// power. A plain BMS-Can battery ([`BatteryHandle`]) and a vendor's BMS model with a
/// bootloader behind it implement the same controls, so a site can be driven without
/// knowing which vendor runs each battery.
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

impl BatteryControl for BatteryHandle {
    fn name(&self) -> &str {
        BatteryHandle::name(self)
    }
    fn snapshot(&self) -> BatterySnapshot {
        BatteryHandle::snapshot(self)
    }
    fn set_soc(&self, soc: f64) {
        BatteryHandle::set_soc(self, soc)
    }
    fn set_temperature(&self, celsius: f64) {
        BatteryHandle::set_temperature(self, celsius)
    }
    fn set_profile(&self, profile: CurrentProfile) {
        BatteryHandle::set_profile(self, profile)
    }
    fn raise(&self, level: Level, alarm: Alarm) {
        BatteryHandle::raise(self, level, alarm)
    }
    fn clear(&self, level: Level, alarm: Alarm) {
        BatteryHandle::clear(self, level, alarm)
    }
    fn clear_all_alarms(&self) {
        BatteryHandle::clear_all_alarms(self)
    }
    fn power_cut(&self) {
        BatteryHandle::power_cut(self)
    }
    fn power_restore(&self) {
        BatteryHandle::power_restore(self)
    }
    fn stop(&self) {
        BatteryHandle::stop(self)
    }
}
