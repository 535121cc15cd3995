//! Decoders for every BMS-Can broadcast frame.
//!
//! Each decoder checks the frame's length against [`FrameKind::min_len`] before it reads
//! a byte, and checks ranges where the wire format has one (SOC and SOH at most 100 %,
//! high-resolution SOC at most 100.00 %). A frame that fails is rejected whole: no field
//! of a rejected frame is ever used. Bytes past the fields a frame defines are ignored.

use super::alarms::{AlarmStatus, ProtectionFlags};
use super::text::{NotAscii, decode_half, decode_text};
use super::units::{
    AmpHours, CentiPercent, CentiVolts, DeciAmps, DeciCelsius, DeciKilowattHours, DeciVolts,
    Kelvin, MilliVolts, Percent,
};
use bmsfw_plugin_api::CanFrame;
use bmsfw_protocols::bms_can::FrameKind;
use std::fmt;

/// 0x351: what the battery allows the charger and the inverter to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChargeLimits {
    /// Bytes 0-1: charge voltage limit (CVL).
    pub charge_voltage: DeciVolts,
    /// Bytes 2-3: charge current limit (CCL).
    pub charge_current: DeciAmps,
    /// Bytes 4-5: discharge current limit (DCL).
    pub discharge_current: DeciAmps,
    /// Bytes 6-7: discharge voltage limit (DVL).
    pub discharge_voltage: DeciVolts,
}

/// 0x355: state of charge and health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateOfCharge {
    /// Bytes 0-1: state of charge.
    pub soc: Percent,
    /// Bytes 2-3: state of health.
    pub soh: Percent,
    /// Bytes 4-5 when the frame has them: state of charge in 0.01 %.
    pub soc_high_res: Option<CentiPercent>,
}

/// 0x356: what the pack measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measurements {
    /// Bytes 0-1: pack voltage.
    pub voltage: CentiVolts,
    /// Bytes 2-3: current, positive while charging.
    pub current: DeciAmps,
    /// Bytes 4-5: battery temperature.
    pub temperature: DeciCelsius,
}

/// 0x359: Pylontech-style protection and warning words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtectionStatus {
    /// Bytes 0-1.
    pub protection: ProtectionFlags,
    /// Bytes 2-3.
    pub warning: ProtectionFlags,
    /// Byte 4 when sent: number of modules.
    pub module_count: Option<u8>,
    /// Bytes 5-6 when sent: usually `'P','N'`.
    pub marker: Option<[u8; 2]>,
}

/// Whether the battery allows charging or discharging (0x35C bits 7 and 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// The bit is set.
    Enabled,
    /// The bit is clear.
    Disabled,
}

/// Whether the battery asks for a forced charge (0x35C bits 5 and 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ForceCharge {
    /// The bit is set.
    Requested,
    /// The bit is clear.
    NotRequested,
}

/// 0x35C: the battery's requests to the inverter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requests {
    /// Bit 7.
    pub charge: Permission,
    /// Bit 6.
    pub discharge: Permission,
    /// Bit 5: force charge I.
    pub force_charge_1: ForceCharge,
    /// Bit 4: force charge II.
    pub force_charge_2: ForceCharge,
    /// Byte 0 as received (bits 0-3 are kept, not interpreted).
    pub raw: u8,
}

/// 0x35F: product code, firmware version bytes and capacity, plus the raw bytes.
///
/// The firmware bytes are kept raw on purpose: vendors encode them differently (BCD,
/// hex, year/week, a second version in bytes 6-7), so only the vendor's plugin decodes
/// them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProductInfo {
    raw: [u8; 8],
    len: u8,
}

impl ProductInfo {
    /// Wraps the data of a 0x35F frame of 6 to 8 bytes; `None` for any other length.
    pub fn from_data(data: &[u8]) -> Option<ProductInfo> {
        if !(FrameKind::ProductInfo.min_len()..=8).contains(&data.len()) {
            return None;
        }
        let mut raw = [0; 8];
        raw[..data.len()].copy_from_slice(data);
        Some(ProductInfo {
            raw,
            len: data.len() as u8,
        })
    }

    /// The frame's data bytes exactly as received (6 to 8 bytes).
    pub fn raw(&self) -> &[u8] {
        &self.raw[..usize::from(self.len).min(8)]
    }

    /// Bytes 0-1, little-endian: model or product code.
    pub fn product_code(&self) -> u16 {
        u16::from_le_bytes([self.raw[0], self.raw[1]])
    }

    /// Bytes 2-3 as sent: the firmware version, in the vendor's own encoding.
    pub fn firmware_bytes(&self) -> [u8; 2] {
        [self.raw[2], self.raw[3]]
    }

    /// Bytes 2-3 read the way a GX reads `/FirmwareVersion`: `byte2 << 8 | byte3`.
    pub fn firmware_word(&self) -> u16 {
        u16::from_be_bytes(self.firmware_bytes())
    }

    /// Bytes 4-5, little-endian: capacity.
    pub fn capacity(&self) -> AmpHours {
        AmpHours(u16::from_le_bytes([self.raw[4], self.raw[5]]))
    }
}

impl fmt::Debug for ProductInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProductInfo")
            .field("raw", &self.raw())
            .field("product_code", &self.product_code())
            .field("firmware_bytes", &self.firmware_bytes())
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// 0x372: module counts of a pack behind one BMS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModuleCounts {
    /// Bytes 0-1.
    pub online: u16,
    /// Bytes 2-3.
    pub blocking_charge: u16,
    /// Bytes 4-5.
    pub blocking_discharge: u16,
    /// Bytes 6-7.
    pub offline: u16,
}

/// 0x373: lowest and highest cell voltage and temperature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CellExtremes {
    /// Bytes 0-1.
    pub min_cell_voltage: MilliVolts,
    /// Bytes 2-3.
    pub max_cell_voltage: MilliVolts,
    /// Bytes 4-5.
    pub min_cell_temperature: Kelvin,
    /// Bytes 6-7.
    pub max_cell_temperature: Kelvin,
}

/// 0x378: lifetime energy counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnergyCounters {
    /// Bytes 0-3.
    pub charged: DeciKilowattHours,
    /// Bytes 4-7.
    pub discharged: DeciKilowattHours,
}

/// The content of one decoded BMS-Can frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Telemetry {
    /// 0x351.
    Limits(ChargeLimits),
    /// 0x355.
    StateOfCharge(StateOfCharge),
    /// 0x356.
    Measurements(Measurements),
    /// 0x359.
    Protection(ProtectionStatus),
    /// 0x35A.
    Alarms(AlarmStatus),
    /// 0x35C.
    Requests(Requests),
    /// 0x35F.
    ProductInfo(ProductInfo),
    /// 0x372.
    ModuleCounts(ModuleCounts),
    /// 0x373.
    CellExtremes(CellExtremes),
    /// 0x378.
    Energy(EnergyCounters),
    /// 0x379.
    InstalledCapacity(AmpHours),
    /// A text frame: 0x35E, 0x370/0x371 (halves), 0x374-0x377, 0x380/0x381 (halves),
    /// 0x382. Whole-frame texts are trimmed of NULs and spaces, halves of NULs only.
    Text(FrameKind, String),
}

/// Why a frame was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer data bytes than the frame's fields need.
    #[error("{kind}: {len} data bytes, at least {min} needed")]
    TooShort {
        /// The frame's kind.
        kind: FrameKind,
        /// Its data length.
        len: usize,
        /// The minimum accepted.
        min: usize,
    },
    /// A text field holds a byte that is not printable ASCII.
    #[error("{kind}: byte {offset} is 0x{byte:02X}, not printable ASCII")]
    NotAscii {
        /// The frame's kind.
        kind: FrameKind,
        /// Offset of the byte in the frame's data.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// A field lies outside the range its unit allows.
    #[error("{kind}: {field} is {value}, above the maximum {max}")]
    OutOfRange {
        /// The frame's kind.
        kind: FrameKind,
        /// The field's name.
        field: &'static str,
        /// The value received.
        value: u32,
        /// The largest valid value.
        max: u32,
    },
}

/// The reason of a [`DecodeError`], without its details: what rejections are counted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// See [`DecodeError::TooShort`].
    TooShort,
    /// See [`DecodeError::NotAscii`].
    NotAscii,
    /// See [`DecodeError::OutOfRange`].
    OutOfRange,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejectReason::TooShort => "too short",
            RejectReason::NotAscii => "not ASCII",
            RejectReason::OutOfRange => "out of range",
        })
    }
}

impl DecodeError {
    /// The frame kind that was rejected.
    pub fn kind(&self) -> FrameKind {
        match *self {
            DecodeError::TooShort { kind, .. }
            | DecodeError::NotAscii { kind, .. }
            | DecodeError::OutOfRange { kind, .. } => kind,
        }
    }

    /// The reason, for counting.
    pub fn reason(&self) -> RejectReason {
        match self {
            DecodeError::TooShort { .. } => RejectReason::TooShort,
            DecodeError::NotAscii { .. } => RejectReason::NotAscii,
            DecodeError::OutOfRange { .. } => RejectReason::OutOfRange,
        }
    }
}

fn u16_at(d: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([d[i], d[i + 1]])
}

fn i16_at(d: &[u8], i: usize) -> i16 {
    i16::from_le_bytes([d[i], d[i + 1]])
}

fn u32_at(d: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]])
}

fn at_most(kind: FrameKind, field: &'static str, value: u16, max: u16) -> Result<(), DecodeError> {
    if value > max {
        return Err(DecodeError::OutOfRange {
            kind,
            field,
            value: value.into(),
            max: max.into(),
        });
    }
    Ok(())
}

impl Telemetry {
    /// Decodes `frame`; `None` when it is no BMS-Can broadcast frame.
    pub fn decode_frame(frame: &CanFrame) -> Option<Result<Telemetry, DecodeError>> {
        let kind = FrameKind::from_id(frame.id())?;
        Some(Telemetry::decode(kind, frame.data()))
    }

    /// Decodes the data of a frame of `kind`.
    pub fn decode(kind: FrameKind, d: &[u8]) -> Result<Telemetry, DecodeError> {
        if d.len() < kind.min_len() {
            return Err(DecodeError::TooShort {
                kind,
                len: d.len(),
                min: kind.min_len(),
            });
        }
        let text_err = |NotAscii { offset, byte }| DecodeError::NotAscii { kind, offset, byte };
        Ok(match kind {
            FrameKind::Limits => Telemetry::Limits(ChargeLimits {
                charge_voltage: DeciVolts(u16_at(d, 0)),
                charge_current: DeciAmps(i16_at(d, 2)),
                discharge_current: DeciAmps(i16_at(d, 4)),
                discharge_voltage: DeciVolts(u16_at(d, 6)),
            }),
            FrameKind::StateOfCharge => {
                let soc = u16_at(d, 0);
                let soh = u16_at(d, 2);
                at_most(kind, "state of charge", soc, 100)?;
                at_most(kind, "state of health", soh, 100)?;
                let soc_high_res = match d.get(4..6) {
                    Some(_) => {
                        let v = u16_at(d, 4);
                        at_most(kind, "high-resolution state of charge", v, 10_000)?;
                        Some(CentiPercent(v))
                    }
                    None => None,
                };
                Telemetry::StateOfCharge(StateOfCharge {
                    soc: Percent(soc),
                    soh: Percent(soh),
                    soc_high_res,
                })
            }
            FrameKind::Measurements => Telemetry::Measurements(Measurements {
                voltage: CentiVolts(i16_at(d, 0)),
                current: DeciAmps(i16_at(d, 2)),
                temperature: DeciCelsius(i16_at(d, 4)),
            }),
            FrameKind::Protection => Telemetry::Protection(ProtectionStatus {
                protection: ProtectionFlags(u16_at(d, 0)),
                warning: ProtectionFlags(u16_at(d, 2)),
                module_count: d.get(4).copied(),
                marker: d.get(5..7).map(|m| [m[0], m[1]]),
            }),
            FrameKind::Alarms => {
                let mut raw = [0; 8];
                raw.copy_from_slice(&d[..8]);
                Telemetry::Alarms(AlarmStatus::from_bytes(raw))
            }
            FrameKind::Requests => {
                let b = d[0];
                let permission = |bit: u8| {
                    if b & (1 << bit) != 0 {
                        Permission::Enabled
                    } else {
                        Permission::Disabled
                    }
                };
                let force = |bit: u8| {
                    if b & (1 << bit) != 0 {
                        ForceCharge::Requested
                    } else {
                        ForceCharge::NotRequested
                    }
                };
                Telemetry::Requests(Requests {
                    charge: permission(7),
                    discharge: permission(6),
                    force_charge_1: force(5),
                    force_charge_2: force(4),
                    raw: b,
                })
            }
            FrameKind::ProductInfo => {
                // min_len is 6 and a CanFrame never holds more than 8 bytes.
                let info = ProductInfo::from_data(d).ok_or(DecodeError::TooShort {
                    kind,
                    len: d.len(),
                    min: kind.min_len(),
                })?;
                Telemetry::ProductInfo(info)
            }
            FrameKind::ModuleCounts => Telemetry::ModuleCounts(ModuleCounts {
                online: u16_at(d, 0),
                blocking_charge: u16_at(d, 2),
                blocking_discharge: u16_at(d, 4),
                offline: u16_at(d, 6),
            }),
            FrameKind::CellExtremes => Telemetry::CellExtremes(CellExtremes {
                min_cell_voltage: MilliVolts(u16_at(d, 0)),
                max_cell_voltage: MilliVolts(u16_at(d, 2)),
                min_cell_temperature: Kelvin(u16_at(d, 4)),
                max_cell_temperature: Kelvin(u16_at(d, 6)),
            }),
            FrameKind::Energy => Telemetry::Energy(EnergyCounters {
                charged: DeciKilowattHours(u32_at(d, 0)),
                discharged: DeciKilowattHours(u32_at(d, 4)),
            }),
            FrameKind::InstalledCapacity => Telemetry::InstalledCapacity(AmpHours(u16_at(d, 0))),
            FrameKind::BmsName1 | FrameKind::BmsName2 | FrameKind::Serial1 | FrameKind::Serial2 => {
                Telemetry::Text(kind, decode_half(d).map_err(text_err)?)
            }
            FrameKind::Manufacturer
            | FrameKind::MinCellVoltageId
            | FrameKind::MaxCellVoltageId
            | FrameKind::MinCellTemperatureId
            | FrameKind::MaxCellTemperatureId
            | FrameKind::ProductName => Telemetry::Text(kind, decode_text(d).map_err(text_err)?),
        })
    }

    /// The kind of frame this came from.
    pub fn kind(&self) -> FrameKind {
        match self {
            Telemetry::Limits(_) => FrameKind::Limits,
            Telemetry::StateOfCharge(_) => FrameKind::StateOfCharge,
            Telemetry::Measurements(_) => FrameKind::Measurements,
            Telemetry::Protection(_) => FrameKind::Protection,
            Telemetry::Alarms(_) => FrameKind::Alarms,
            Telemetry::Requests(_) => FrameKind::Requests,
            Telemetry::ProductInfo(_) => FrameKind::ProductInfo,
            Telemetry::ModuleCounts(_) => FrameKind::ModuleCounts,
            Telemetry::CellExtremes(_) => FrameKind::CellExtremes,
            Telemetry::Energy(_) => FrameKind::Energy,
            Telemetry::InstalledCapacity(_) => FrameKind::InstalledCapacity,
            Telemetry::Text(kind, _) => *kind,
        }
    }
}
