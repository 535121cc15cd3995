//! Simulated BMS-Can batteries.
//!
//! [`BatteryModel`] is sans-IO: it owns the pack's physics, its alarms, its modules and
//! its broadcast schedule, and is driven by `poll_transmit(now)` / `poll_timeout()`.
//! [`BatteryHandle`] runs a model on any [`bmsfw_can::CanInterface`] (the simulated bus,
//! or vcan/SocketCAN) and lets tests change the battery while it runs: SOC, temperature,
//! alarms, firmware bytes, modules, power. [`BatteryControl`] is the part of those
//! controls every simulated battery offers, whichever BMS model runs it.

pub mod alarms;
pub mod config;
pub mod control;
pub mod driver;
pub mod frames;
pub mod model;
pub mod pack;
pub mod schedule;

#[cfg(test)]
mod model_tests;

pub use crate::node::{DriverExit, Epoch};
pub use alarms::{Alarm, AlarmSet, Level};
pub use bmsfw_protocols::bms_can::FrameKind;
pub use config::{BatteryConfig, ConfigError, CurrentProfile, ExtremeCellIds, IdentityConfig};
pub use control::{BatteryControl, BmsHandle, BmsModel};
pub use driver::BatteryHandle;
pub use model::{BatteryModel, BatterySnapshot, GxPresence, ModuleState, PowerState, Telemetry};
