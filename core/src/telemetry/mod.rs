//! BMS-Can telemetry: the state of the battery broadcasting on each bus.
//!
//! The frames themselves (kinds, typed values, decoding and encoding) are
//! [`bmsfw_protocols::bms_can`]'s, re-exported here. This module keeps what the engine
//! makes of them:
//!
//! - [`BatteryState`]: the last value of every field, with per-kind freshness and the
//!   [`BatteryIdentity`] plugins match on;
//! - [`BmsCanMonitor`]: the sans-IO tracker of one bus, with rejection counts and the
//!   one-identity-per-bus rule explained in [`monitor`].

pub mod identity;
pub mod monitor;
pub mod state;

#[cfg(test)]
mod state_tests;

pub use bmsfw_protocols::bms_can::{
    AlarmField, AlarmStatus, AmpHours, CellExtremes, CentiPercent, CentiVolts, ChargeLimits,
    DeciAmps, DeciCelsius, DeciKilowattHours, DeciVolts, DecodeError, EnergyCounters, FlagState,
    ForceCharge, FrameKind, InstalledCapacity, Kelvin, Measurements, MilliVolts, ModuleCounts,
    Percent, Permission, ProductInfo, Protection, ProtectionFlags, ProtectionStatus, RejectReason,
    Requests, Requirement, Severity, StateOfCharge, Telemetry, TextFrame,
};
pub use identity::BatteryIdentity;
pub use monitor::{BmsCanMonitor, Broadcasters, FrameOutcome, IdentityChange, RejectCounts};
pub use state::{BatteryState, Communication, DEFAULT_MAX_AGE};
