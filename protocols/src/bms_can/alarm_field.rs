//! The two-bit condition fields of 0x35A.

use std::fmt;

/// A condition reported by 0x35A, either as alarm or as warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlarmField {
    /// Byte 0 bits 0-1: general alarm.
    General,
    /// Byte 0 bits 2-3: battery high voltage.
    HighVoltage,
    /// Byte 0 bits 4-5: battery low voltage.
    LowVoltage,
    /// Byte 0 bits 6-7: high temperature.
    HighTemperature,
    /// Byte 1 bits 0-1: low temperature.
    LowTemperature,
    /// Byte 1 bits 2-3: high temperature while charging.
    HighChargeTemperature,
    /// Byte 1 bits 4-5: low temperature while charging.
    LowChargeTemperature,
    /// Byte 1 bits 6-7: high discharge current.
    HighDischargeCurrent,
    /// Byte 2 bits 0-1: high charge current.
    HighChargeCurrent,
    /// Byte 2 bits 2-3: contactor fault.
    Contactor,
    /// Byte 2 bits 4-5: short circuit.
    ShortCircuit,
    /// Byte 2 bits 6-7: BMS internal fault.
    BmsInternal,
    /// Byte 3 bits 0-1: cell imbalance.
    CellImbalance,
}

impl AlarmField {
    /// Every field, in wire order.
    pub const ALL: [AlarmField; 13] = [
        AlarmField::General,
        AlarmField::HighVoltage,
        AlarmField::LowVoltage,
        AlarmField::HighTemperature,
        AlarmField::LowTemperature,
        AlarmField::HighChargeTemperature,
        AlarmField::LowChargeTemperature,
        AlarmField::HighDischargeCurrent,
        AlarmField::HighChargeCurrent,
        AlarmField::Contactor,
        AlarmField::ShortCircuit,
        AlarmField::BmsInternal,
        AlarmField::CellImbalance,
    ];

    /// Byte (0-3, within the alarm half) and bit shift of this field.
    pub const fn position(self) -> (usize, u32) {
        let i = self as usize;
        (i / 4, (i % 4) as u32 * 2)
    }

    /// A short name for tables and logs.
    pub const fn name(self) -> &'static str {
        match self {
            AlarmField::General => "general",
            AlarmField::HighVoltage => "high voltage",
            AlarmField::LowVoltage => "low voltage",
            AlarmField::HighTemperature => "high temperature",
            AlarmField::LowTemperature => "low temperature",
            AlarmField::HighChargeTemperature => "high charge temperature",
            AlarmField::LowChargeTemperature => "low charge temperature",
            AlarmField::HighDischargeCurrent => "high discharge current",
            AlarmField::HighChargeCurrent => "high charge current",
            AlarmField::Contactor => "contactor",
            AlarmField::ShortCircuit => "short circuit",
            AlarmField::BmsInternal => "BMS internal",
            AlarmField::CellImbalance => "cell imbalance",
        }
    }
}

impl fmt::Display for AlarmField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
