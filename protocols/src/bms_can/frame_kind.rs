//! The BMS-Can frame identifiers a battery broadcasts, and what each must carry.

use bmsfw_plugin_api::{CanFrame, CanId};
use std::fmt;

/// One kind of BMS-Can broadcast frame, named for what it carries.
///
/// Only 11-bit identifiers are BMS-Can: an extended frame with the same number is a
/// different frame and maps to no kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrameKind {
    /// 0x351: charge voltage limit, charge and discharge current limits, discharge
    /// voltage limit.
    Limits,
    /// 0x355: state of charge, state of health, optional high-resolution SOC.
    StateOfCharge,
    /// 0x356: pack voltage, current, temperature.
    Measurements,
    /// 0x359: Pylontech-style protection and warning flags, module count.
    Protection,
    /// 0x35A: alarm and warning fields, two bits each.
    Alarms,
    /// 0x35C: charge/discharge enable and force-charge requests.
    Requests,
    /// 0x35E: manufacturer name.
    Manufacturer,
    /// 0x35F: product code, firmware version bytes, capacity.
    ProductInfo,
    /// 0x370: first eight characters of the BMS name.
    BmsName1,
    /// 0x371: characters nine to sixteen of the BMS name.
    BmsName2,
    /// 0x372: modules online, blocking charge, blocking discharge, offline.
    ModuleCounts,
    /// 0x373: lowest and highest cell voltage and temperature.
    CellExtremes,
    /// 0x374: text id of the cell with the lowest voltage (optional).
    MinCellVoltageId,
    /// 0x375: text id of the cell with the highest voltage (optional).
    MaxCellVoltageId,
    /// 0x376: text id of the coldest cell (optional).
    MinCellTemperatureId,
    /// 0x377: text id of the hottest cell (optional).
    MaxCellTemperatureId,
    /// 0x378: energy charged and discharged.
    Energy,
    /// 0x379: installed capacity.
    InstalledCapacity,
    /// 0x380: first eight characters of the serial number.
    Serial1,
    /// 0x381: characters nine to sixteen of the serial number.
    Serial2,
    /// 0x382: product or family name.
    ProductName,
}

impl FrameKind {
    /// Every kind, in identifier order.
    pub const ALL: [FrameKind; 21] = [
        FrameKind::Limits,
        FrameKind::StateOfCharge,
        FrameKind::Measurements,
        FrameKind::Protection,
        FrameKind::Alarms,
        FrameKind::Requests,
        FrameKind::Manufacturer,
        FrameKind::ProductInfo,
        FrameKind::BmsName1,
        FrameKind::BmsName2,
        FrameKind::ModuleCounts,
        FrameKind::CellExtremes,
        FrameKind::MinCellVoltageId,
        FrameKind::MaxCellVoltageId,
        FrameKind::MinCellTemperatureId,
        FrameKind::MaxCellTemperatureId,
        FrameKind::Energy,
        FrameKind::InstalledCapacity,
        FrameKind::Serial1,
        FrameKind::Serial2,
        FrameKind::ProductName,
    ];

    /// Number of kinds.
    pub const COUNT: usize = FrameKind::ALL.len();

    /// The frames a battery must keep sending to count as communicating: limits,
    /// state of charge, measurements and alarms. An inverter stops when 0x351 is
    /// missing for 3 s; the safety gates refuse an update when any of these is stale.
    pub const REQUIRED: [FrameKind; 4] = [
        FrameKind::Limits,
        FrameKind::StateOfCharge,
        FrameKind::Measurements,
        FrameKind::Alarms,
    ];

    /// The kind broadcast under `id`, or `None` for any other frame (including every
    /// extended identifier).
    pub fn from_id(id: CanId) -> Option<FrameKind> {
        if id.is_extended() {
            return None;
        }
        FrameKind::ALL.into_iter().find(|k| k.raw_id() == id.raw())
    }

    /// The 11-bit identifier number.
    pub const fn raw_id(self) -> u32 {
        match self {
            FrameKind::Limits => 0x351,
            FrameKind::StateOfCharge => 0x355,
            FrameKind::Measurements => 0x356,
            FrameKind::Protection => 0x359,
            FrameKind::Alarms => 0x35A,
            FrameKind::Requests => 0x35C,
            FrameKind::Manufacturer => 0x35E,
            FrameKind::ProductInfo => 0x35F,
            FrameKind::BmsName1 => 0x370,
            FrameKind::BmsName2 => 0x371,
            FrameKind::ModuleCounts => 0x372,
            FrameKind::CellExtremes => 0x373,
            FrameKind::MinCellVoltageId => 0x374,
            FrameKind::MaxCellVoltageId => 0x375,
            FrameKind::MinCellTemperatureId => 0x376,
            FrameKind::MaxCellTemperatureId => 0x377,
            FrameKind::Energy => 0x378,
            FrameKind::InstalledCapacity => 0x379,
            FrameKind::Serial1 => 0x380,
            FrameKind::Serial2 => 0x381,
            FrameKind::ProductName => 0x382,
        }
    }

    /// The identifier as a [`CanId`].
    pub fn id(self) -> CanId {
        // Every raw_id is below 0x800, so this never fails.
        CanId::standard(self.raw_id() as u16).unwrap_or_else(|| unreachable!())
    }

    /// The smallest data length a decoder should accept; shorter frames must be
    /// rejected without touching any field.
    ///
    /// The first six follow the validators seen in the field (0x351 8, 0x355 4, 0x356 6,
    /// 0x35A 8, 0x35E 2, 0x35F 6). For the others the minimum is the length that holds
    /// every field they are decoded into: 0x359 needs both flag words (4), 0x35C its
    /// flag byte (1), 0x372, 0x373 and 0x378 their four u16 or two u32 values (8),
    /// 0x379 its u16 (2), and the text frames one character (1).
    pub const fn min_len(self) -> usize {
        match self {
            FrameKind::Limits => 8,
            FrameKind::StateOfCharge => 4,
            FrameKind::Measurements => 6,
            FrameKind::Protection => 4,
            FrameKind::Alarms => 8,
            FrameKind::Requests => 1,
            FrameKind::Manufacturer => 2,
            FrameKind::ProductInfo => 6,
            FrameKind::ModuleCounts | FrameKind::CellExtremes | FrameKind::Energy => 8,
            FrameKind::InstalledCapacity => 2,
            FrameKind::BmsName1
            | FrameKind::BmsName2
            | FrameKind::MinCellVoltageId
            | FrameKind::MaxCellVoltageId
            | FrameKind::MinCellTemperatureId
            | FrameKind::MaxCellTemperatureId
            | FrameKind::Serial1
            | FrameKind::Serial2
            | FrameKind::ProductName => 1,
        }
    }

    /// Whether this kind is one of [`FrameKind::REQUIRED`].
    pub fn requirement(self) -> Requirement {
        if FrameKind::REQUIRED.contains(&self) {
            Requirement::Required
        } else {
            Requirement::Optional
        }
    }

    /// Position of this kind in [`FrameKind::ALL`], for per-kind tables.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A frame of this kind carrying `data` (callers pass at most eight bytes).
    pub(crate) fn frame(self, data: &[u8]) -> CanFrame {
        CanFrame::new(self.id(), &data[..data.len().min(8)]).unwrap_or_else(|| unreachable!())
    }
}

/// Whether a frame kind is needed for a battery to count as communicating.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Requirement {
    /// Must be fresh for the battery to be communicating.
    Required,
    /// Decoded when sent; its absence is no fault.
    Optional,
}

/// Prints the identifier and the name, `0x356 measurements`.
impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            FrameKind::Limits => "limits",
            FrameKind::StateOfCharge => "state of charge",
            FrameKind::Measurements => "measurements",
            FrameKind::Protection => "protection flags",
            FrameKind::Alarms => "alarms",
            FrameKind::Requests => "requests",
            FrameKind::Manufacturer => "manufacturer",
            FrameKind::ProductInfo => "product info",
            FrameKind::BmsName1 => "BMS name (1/2)",
            FrameKind::BmsName2 => "BMS name (2/2)",
            FrameKind::ModuleCounts => "module counts",
            FrameKind::CellExtremes => "cell extremes",
            FrameKind::MinCellVoltageId => "lowest cell voltage id",
            FrameKind::MaxCellVoltageId => "highest cell voltage id",
            FrameKind::MinCellTemperatureId => "lowest cell temperature id",
            FrameKind::MaxCellTemperatureId => "highest cell temperature id",
            FrameKind::Energy => "energy counters",
            FrameKind::InstalledCapacity => "installed capacity",
            FrameKind::Serial1 => "serial number (1/2)",
            FrameKind::Serial2 => "serial number (2/2)",
            FrameKind::ProductName => "product name",
        };
        write!(f, "0x{:03X} {name}", self.raw_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_position_and_ids_round_trip() {
        for (i, kind) in FrameKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), i);
            assert_eq!(FrameKind::from_id(kind.id()), Some(kind));
            assert!(!kind.id().is_extended());
        }
    }

    #[test]
    fn only_standard_bms_can_ids_map_to_a_kind() {
        assert_eq!(FrameKind::from_id(CanId::standard(0x350).unwrap()), None);
        assert_eq!(FrameKind::from_id(CanId::standard(0x305).unwrap()), None);
        assert_eq!(FrameKind::from_id(CanId::extended(0x351).unwrap()), None);
        assert_eq!(
            FrameKind::from_id(CanId::standard(0x35A).unwrap()),
            Some(FrameKind::Alarms)
        );
    }

    #[test]
    fn documented_minimum_lengths() {
        let table = [
            (0x351, 8),
            (0x355, 4),
            (0x356, 6),
            (0x359, 4),
            (0x35A, 8),
            (0x35C, 1),
            (0x35E, 2),
            (0x35F, 6),
            (0x370, 1),
            (0x372, 8),
            (0x373, 8),
            (0x378, 8),
            (0x379, 2),
            (0x380, 1),
        ];
        for (id, min) in table {
            let kind = FrameKind::from_id(CanId::standard(id).unwrap()).unwrap();
            assert_eq!(kind.min_len(), min, "{kind}");
        }
    }

    #[test]
    fn required_kinds() {
        let required: Vec<u32> = FrameKind::ALL
            .into_iter()
            .filter(|k| k.requirement() == Requirement::Required)
            .map(FrameKind::raw_id)
            .collect();
        assert_eq!(required, vec![0x351, 0x355, 0x356, 0x35A]);
    }
}
