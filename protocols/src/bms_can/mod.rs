//! BMS-Can, the broadcast a battery sends its GX, and the GX's keep-alive: the one
//! codec of the project.
//!
//! - [`FrameKind`]: the broadcast identifiers, their minimum lengths, which are required;
//! - one type per frame kind, each with `decode(&CanFrame)` and `encode()`:
//!   [`ChargeLimits`] (0x351), [`StateOfCharge`] (0x355), [`Measurements`] (0x356),
//!   [`ProtectionStatus`] (0x359), [`AlarmStatus`] (0x35A), [`Requests`] (0x35C),
//!   [`ProductInfo`] (0x35F), [`ModuleCounts`] (0x372), [`CellExtremes`] (0x373),
//!   [`EnergyCounters`] (0x378), [`InstalledCapacity`] (0x379) and [`TextFrame`]
//!   (0x35E, 0x370/0x371, 0x374-0x377, 0x380/0x381, 0x382);
//! - [`Telemetry`]: any one of them, decoded by identifier;
//! - [`DecodeError`]: why a frame was refused, naming the frame and what was wrong;
//! - [`KeepAlive`] (0x305) and [`GxIdentification`] (0x307), the GX's own frames;
//! - the units the fields are carried in ([`DeciVolts`], [`CentiVolts`]...), exact
//!   integers with their scale.
//!
//! Decoders take hostile input: they check identifier and length before reading a
//! byte, never panic, and reject a frame whole. Each type's documentation says which
//! bytes its encoder writes and where that encoding is not canonical (several frames
//! decoding to one value).

mod alarm_field;
mod alarms;
mod error;
mod frame_kind;
mod frames;
mod gx;
mod text;
mod units;

#[cfg(test)]
mod frames_tests;
#[cfg(test)]
mod props;

pub use alarm_field::AlarmField;
pub use alarms::{AlarmStatus, FlagState, Protection, ProtectionFlags, Severity};
pub use error::{DecodeError, RejectReason};
pub use frame_kind::{FrameKind, Requirement};
pub use frames::{
    CellExtremes, ChargeLimits, EnergyCounters, ForceCharge, InstalledCapacity, Measurements,
    ModuleCounts, Permission, ProductInfo, ProtectionStatus, Requests, StateOfCharge, Telemetry,
    TextError, TextFrame, TextPart,
};
pub use gx::{
    GX_MARKER, GxFrameError, GxIdentification, IDENTIFICATION_ID, KEEP_ALIVE_ID, KeepAlive,
    is_gx_frame,
};
pub use text::join_halves;
pub use units::{
    AmpHours, CentiPercent, CentiVolts, DeciAmps, DeciCelsius, DeciKilowattHours, DeciVolts,
    Kelvin, MilliVolts, Percent,
};
