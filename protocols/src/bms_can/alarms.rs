//! Alarms and warnings of 0x35A, and the Pylontech-style flags of 0x359.
//!
//! 0x35A carries one two-bit field per condition: bytes 0-3 the alarms, bytes 4-7 the
//! same fields as warnings. A field reads `01` when the condition is active and `10`
//! when it is OK (so 0xAA in a byte means "all four OK"). `00` means the sender does not
//! support that field (many send all zeros); `11` is not defined and is reported as
//! [`FlagState::Invalid`]. Gates treat only `Active` as an active alarm and may treat
//! `Invalid` as untrustworthy; nothing is guessed.

use super::AlarmField;
use super::error::{DecodeError, check_id, check_len};
use super::frame_kind::FrameKind;
use bmsfw_plugin_api::CanFrame;
use std::fmt;

/// Whether 0x35A reports a condition as alarm or as warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Bytes 0-3.
    Alarm,
    /// Bytes 4-7.
    Warning,
}

impl Severity {
    /// First byte of this half of 0x35A.
    const fn base(self) -> usize {
        match self {
            Severity::Alarm => 0,
            Severity::Warning => 4,
        }
    }
}

/// The value of one two-bit field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlagState {
    /// `00`: the sender does not report this condition.
    NotSupported,
    /// `01`: the condition is present.
    Active,
    /// `10`: the condition is absent.
    Ok,
    /// `11`: undefined; the field cannot be trusted.
    Invalid,
}

impl FlagState {
    /// The state encoded by the two low bits of `bits`.
    pub const fn from_bits(bits: u8) -> FlagState {
        match bits & 0b11 {
            0b00 => FlagState::NotSupported,
            0b01 => FlagState::Active,
            0b10 => FlagState::Ok,
            _ => FlagState::Invalid,
        }
    }

    /// The two bits that encode this state.
    pub const fn bits(self) -> u8 {
        match self {
            FlagState::NotSupported => 0b00,
            FlagState::Active => 0b01,
            FlagState::Ok => 0b10,
            FlagState::Invalid => 0b11,
        }
    }
}

/// 0x35A: the eight bytes of alarms and warnings, read field by field.
///
/// Every byte is kept as received, the six bits past the last field included, so a
/// decoded frame re-encodes to the same bytes. A field reading `11` decodes (the frame
/// is not refused) and reads [`FlagState::Invalid`]: the engine's gates refuse an update
/// on it as an unknown alarm state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AlarmStatus {
    raw: [u8; 8],
}

impl Default for AlarmStatus {
    /// Every field `00` (not supported).
    fn default() -> AlarmStatus {
        AlarmStatus { raw: [0; 8] }
    }
}

impl AlarmStatus {
    /// Wraps the frame's eight data bytes.
    pub const fn from_bytes(raw: [u8; 8]) -> AlarmStatus {
        AlarmStatus { raw }
    }

    /// Decodes a 0x35A frame: eight data bytes, every value accepted.
    pub fn decode(frame: &CanFrame) -> Result<AlarmStatus, DecodeError> {
        check_id(FrameKind::Alarms, frame)?;
        AlarmStatus::decode_data(frame.data())
    }

    pub(crate) fn decode_data(d: &[u8]) -> Result<AlarmStatus, DecodeError> {
        check_len(FrameKind::Alarms, d)?;
        let mut raw = [0; 8];
        raw.copy_from_slice(&d[..8]);
        Ok(AlarmStatus { raw })
    }

    /// Encodes the eight bytes as 0x35A.
    pub fn encode(&self) -> CanFrame {
        FrameKind::Alarms.frame(&self.raw)
    }

    /// Sets `field` at `severity` to `state`, leaving every other bit as it is.
    pub const fn set(&mut self, severity: Severity, field: AlarmField, state: FlagState) {
        let (byte, shift) = field.position();
        let i = severity.base() + byte;
        self.raw[i] = (self.raw[i] & !(0b11 << shift)) | (state.bits() << shift);
    }

    /// The bytes as received.
    pub const fn raw(&self) -> [u8; 8] {
        self.raw
    }

    /// The state of `field` at `severity`.
    pub const fn state(&self, severity: Severity, field: AlarmField) -> FlagState {
        let (byte, shift) = field.position();
        FlagState::from_bits(self.raw[severity.base() + byte] >> shift)
    }

    /// Conditions reported active at `severity`, in wire order.
    pub fn active(&self, severity: Severity) -> Vec<AlarmField> {
        self.with_state(severity, FlagState::Active)
    }

    /// Conditions whose field reads `11` at `severity`.
    pub fn invalid(&self, severity: Severity) -> Vec<AlarmField> {
        self.with_state(severity, FlagState::Invalid)
    }

    fn with_state(&self, severity: Severity, state: FlagState) -> Vec<AlarmField> {
        AlarmField::ALL
            .into_iter()
            .filter(|&f| self.state(severity, f) == state)
            .collect()
    }
}

/// A condition of the 0x359 flag words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protection {
    /// Byte 0 bit 1.
    HighVoltage,
    /// Byte 0 bit 2.
    LowVoltage,
    /// Byte 0 bit 3.
    HighTemperature,
    /// Byte 0 bit 4.
    LowTemperature,
    /// Byte 0 bit 7.
    DischargeOvercurrent,
    /// Byte 1 bit 0.
    ChargeOvercurrent,
    /// Byte 1 bit 3.
    SystemError,
}

impl Protection {
    /// Every condition, in bit order.
    pub const ALL: [Protection; 7] = [
        Protection::HighVoltage,
        Protection::LowVoltage,
        Protection::HighTemperature,
        Protection::LowTemperature,
        Protection::DischargeOvercurrent,
        Protection::ChargeOvercurrent,
        Protection::SystemError,
    ];

    /// The condition's bit in the little-endian flag word (byte 0 = bits 0-7).
    pub const fn mask(self) -> u16 {
        match self {
            Protection::HighVoltage => 1 << 1,
            Protection::LowVoltage => 1 << 2,
            Protection::HighTemperature => 1 << 3,
            Protection::LowTemperature => 1 << 4,
            Protection::DischargeOvercurrent => 1 << 7,
            Protection::ChargeOvercurrent => 1 << 8,
            Protection::SystemError => 1 << 11,
        }
    }

    /// A short name for tables and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Protection::HighVoltage => "high voltage",
            Protection::LowVoltage => "low voltage",
            Protection::HighTemperature => "high temperature",
            Protection::LowTemperature => "low temperature",
            Protection::DischargeOvercurrent => "discharge overcurrent",
            Protection::ChargeOvercurrent => "charge overcurrent",
            Protection::SystemError => "system error",
        }
    }
}

impl fmt::Display for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One 16-bit flag word of 0x359 (protection or warning).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProtectionFlags(pub u16);

impl ProtectionFlags {
    /// The conditions whose bit is set, in bit order.
    pub fn active(self) -> Vec<Protection> {
        Protection::ALL
            .into_iter()
            .filter(|p| self.0 & p.mask() != 0)
            .collect()
    }

    /// Set bits that name no known condition (kept, never interpreted).
    pub fn unknown_bits(self) -> u16 {
        let known = Protection::ALL.iter().fold(0, |m, p| m | p.mask());
        self.0 & !known
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_position_of_the_alarm_half() {
        // One field active at a time, everything else OK: only that field is active.
        for field in AlarmField::ALL {
            let (byte, shift) = field.position();
            let mut raw = [0xAA; 8];
            raw[byte] = (raw[byte] & !(0b11 << shift)) | (0b01 << shift);
            let status = AlarmStatus::from_bytes(raw);
            assert_eq!(status.active(Severity::Alarm), vec![field], "{field}");
            assert!(status.active(Severity::Warning).is_empty());
            raw.swap(byte, byte + 4);
            let status = AlarmStatus::from_bytes(raw);
            assert_eq!(status.active(Severity::Warning), vec![field], "{field}");
            assert!(status.active(Severity::Alarm).is_empty());
        }
    }

    #[test]
    fn documented_positions() {
        assert_eq!(AlarmField::General.position(), (0, 0));
        assert_eq!(AlarmField::HighVoltage.position(), (0, 2));
        assert_eq!(AlarmField::LowVoltage.position(), (0, 4));
        assert_eq!(AlarmField::HighTemperature.position(), (0, 6));
        assert_eq!(AlarmField::LowTemperature.position(), (1, 0));
        assert_eq!(AlarmField::HighDischargeCurrent.position(), (1, 6));
        assert_eq!(AlarmField::HighChargeCurrent.position(), (2, 0));
        assert_eq!(AlarmField::BmsInternal.position(), (2, 6));
        assert_eq!(AlarmField::CellImbalance.position(), (3, 0));
    }

    #[test]
    fn two_bit_states() {
        let status = AlarmStatus::from_bytes([0b1110_0100, 0, 0, 0, 0xAA, 0xAA, 0xAA, 0xAA]);
        assert_eq!(
            status.state(Severity::Alarm, AlarmField::General),
            FlagState::NotSupported
        );
        assert_eq!(
            status.state(Severity::Alarm, AlarmField::HighVoltage),
            FlagState::Active
        );
        assert_eq!(
            status.state(Severity::Alarm, AlarmField::LowVoltage),
            FlagState::Ok
        );
        assert_eq!(
            status.state(Severity::Alarm, AlarmField::HighTemperature),
            FlagState::Invalid
        );
        assert_eq!(
            status.invalid(Severity::Alarm),
            vec![AlarmField::HighTemperature]
        );
        assert!(status.active(Severity::Warning).is_empty());
        // All zeros: nothing supported, nothing active.
        let silent = AlarmStatus::from_bytes([0; 8]);
        assert!(silent.active(Severity::Alarm).is_empty());
        assert!(silent.invalid(Severity::Alarm).is_empty());
    }

    #[test]
    fn protection_bits() {
        let table = [
            (0x0002, Protection::HighVoltage),
            (0x0004, Protection::LowVoltage),
            (0x0008, Protection::HighTemperature),
            (0x0010, Protection::LowTemperature),
            (0x0080, Protection::DischargeOvercurrent),
            (0x0100, Protection::ChargeOvercurrent),
            (0x0800, Protection::SystemError),
        ];
        for (word, p) in table {
            assert_eq!(ProtectionFlags(word).active(), vec![p]);
            assert_eq!(ProtectionFlags(word).unknown_bits(), 0);
        }
        let odd = ProtectionFlags(0x0001 | 0x0040 | 0x8000 | 0x0002);
        assert_eq!(odd.active(), vec![Protection::HighVoltage]);
        assert_eq!(odd.unknown_bits(), 0x8041);
    }
}
