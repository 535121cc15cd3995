//! BMS-Can telemetry: decoding the frames a battery broadcasts to the GX.
//!
//! - [`FrameKind`]: the broadcast identifiers, their minimum lengths, which are required;
//! - [`Telemetry::decode`]: one frame into typed values, or a [`DecodeError`] that names
//!   the frame and what was wrong (a rejected frame never updates anything);
//! - [`BatteryState`]: the last value of every field, with per-kind freshness and the
//!   [`BatteryIdentity`] plugins match on;
//! - [`BmsCanMonitor`]: the sans-IO tracker of one bus, with rejection counts and the
//!   one-identity-per-bus rule explained in [`monitor`].

pub mod alarms;
pub mod decode;
pub mod identity;
pub mod monitor;
pub mod state;
pub mod text;
pub mod units;

#[cfg(test)]
mod decode_tests;
#[cfg(test)]
mod state_tests;

pub use alarms::{AlarmField, AlarmStatus, FlagState, Protection, ProtectionFlags, Severity};
pub use bmsfw_protocols::bms_can::{FrameKind, Requirement};
pub use decode::{
    CellExtremes, ChargeLimits, DecodeError, EnergyCounters, ForceCharge, Measurements,
    ModuleCounts, Permission, ProductInfo, ProtectionStatus, RejectReason, Requests, StateOfCharge,
    Telemetry,
};
pub use identity::BatteryIdentity;
pub use monitor::{BmsCanMonitor, Broadcasters, FrameOutcome, IdentityChange, RejectCounts};
pub use state::{BatteryState, Communication, DEFAULT_MAX_AGE};
pub use units::{
    AmpHours, CentiPercent, CentiVolts, DeciAmps, DeciCelsius, DeciKilowattHours, DeciVolts,
    Kelvin, MilliVolts, Percent,
};
