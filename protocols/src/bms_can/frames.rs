//! The typed frames of the BMS-Can broadcast, each with its decoder and encoder.
//!
//! Every decoder checks the identifier, then the length against [`FrameKind::min_len`]
//! before it reads a byte, then ranges where the wire format has one (SOC and SOH at
//! most 100 %, high-resolution SOC at most 100.00 %). A frame that fails is rejected
//! whole: no field of a rejected frame is ever used. Bytes past the fields a frame
//! defines are ignored.
//!
//! Every encoder writes the layout the simulated batteries send. Where a decoder accepts
//! more than one byte sequence for one value (a shorter or longer frame, ignored tail
//! bytes, text padding), the encoding is not canonical: the type's documentation says
//! which frame it writes.

use super::alarms::{AlarmStatus, ProtectionFlags};
use super::error::{DecodeError, at_most, check_id, check_len};
use super::frame_kind::FrameKind;
use super::text::{NotAscii, decode_half, decode_text};
use super::units::{
    AmpHours, CentiPercent, CentiVolts, DeciAmps, DeciCelsius, DeciKilowattHours, DeciVolts,
    Kelvin, MilliVolts, Percent,
};
use bmsfw_plugin_api::CanFrame;
use std::fmt;

fn u16_at(d: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([d[i], d[i + 1]])
}

fn i16_at(d: &[u8], i: usize) -> i16 {
    i16::from_le_bytes([d[i], d[i + 1]])
}

fn u32_at(d: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]])
}

/// Four little-endian 16-bit words: the eight bytes of most frames.
fn words(w: [u16; 4]) -> [u8; 8] {
    let mut out = [0; 8];
    for (i, word) in w.into_iter().enumerate() {
        out[2 * i..2 * i + 2].copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// Implements `decode(&CanFrame)` for a frame type from its `decode_data`.
macro_rules! decode_frame {
    ($ty:ty, $kind:expr) => {
        impl $ty {
            /// Decodes a frame of this kind; any other identifier, a short frame or a
            /// value out of range is refused.
            pub fn decode(frame: &CanFrame) -> Result<$ty, DecodeError> {
                check_id($kind, frame)?;
                <$ty>::decode_data(frame.data())
            }
        }
    };
}

/// 0x351: what the battery allows the charger and the inverter to do.
///
/// Eight bytes; the encoding is canonical.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChargeLimits {
    /// Bytes 0-1: charge voltage limit (CVL), unsigned.
    pub charge_voltage: DeciVolts,
    /// Bytes 2-3: charge current limit (CCL), signed.
    pub charge_current: DeciAmps,
    /// Bytes 4-5: discharge current limit (DCL), signed.
    pub discharge_current: DeciAmps,
    /// Bytes 6-7: discharge voltage limit (DVL), unsigned.
    pub discharge_voltage: DeciVolts,
}

decode_frame!(ChargeLimits, FrameKind::Limits);

impl ChargeLimits {
    fn decode_data(d: &[u8]) -> Result<ChargeLimits, DecodeError> {
        check_len(FrameKind::Limits, d)?;
        Ok(ChargeLimits {
            charge_voltage: DeciVolts(u16_at(d, 0)),
            charge_current: DeciAmps(i16_at(d, 2)),
            discharge_current: DeciAmps(i16_at(d, 4)),
            discharge_voltage: DeciVolts(u16_at(d, 6)),
        })
    }

    /// Encodes the eight bytes.
    pub fn encode(&self) -> CanFrame {
        FrameKind::Limits.frame(&words([
            self.charge_voltage.0,
            self.charge_current.0 as u16,
            self.discharge_current.0 as u16,
            self.discharge_voltage.0,
        ]))
    }
}

/// 0x355: state of charge and health.
///
/// Encoded as four bytes without the high-resolution SOC, as eight (bytes 6-7 zero)
/// with it. Not canonical: a frame of 5 to 7 bytes, or with bytes 6-7 set, decodes to
/// a value that re-encodes to 4 or 8 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateOfCharge {
    /// Bytes 0-1: state of charge, at most 100 %.
    pub soc: Percent,
    /// Bytes 2-3: state of health, at most 100 %.
    pub soh: Percent,
    /// Bytes 4-5 when the frame has them: state of charge in 0.01 %, at most 100.00 %.
    pub soc_high_res: Option<CentiPercent>,
}

decode_frame!(StateOfCharge, FrameKind::StateOfCharge);

impl StateOfCharge {
    fn decode_data(d: &[u8]) -> Result<StateOfCharge, DecodeError> {
        let kind = FrameKind::StateOfCharge;
        check_len(kind, d)?;
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
        Ok(StateOfCharge {
            soc: Percent(soc),
            soh: Percent(soh),
            soc_high_res,
        })
    }

    /// Encodes four bytes, or eight with the high-resolution SOC. Values out of range
    /// are sent as they are (and refused by a decoder).
    pub fn encode(&self) -> CanFrame {
        let bytes = words([
            self.soc.0,
            self.soh.0,
            self.soc_high_res.map_or(0, |h| h.0),
            0,
        ]);
        let len = if self.soc_high_res.is_some() { 8 } else { 4 };
        FrameKind::StateOfCharge.frame(&bytes[..len])
    }
}

/// 0x356: what the pack measures.
///
/// Encoded as eight bytes, bytes 6-7 zero. Not canonical: a 6- or 7-byte frame, or
/// one with bytes 6-7 set, decodes to a value that re-encodes to eight bytes, zero
/// at 6-7.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measurements {
    /// Bytes 0-1: pack voltage, signed.
    pub voltage: CentiVolts,
    /// Bytes 2-3: current, signed, positive while charging.
    pub current: DeciAmps,
    /// Bytes 4-5: battery temperature, signed.
    pub temperature: DeciCelsius,
}

decode_frame!(Measurements, FrameKind::Measurements);

impl Measurements {
    fn decode_data(d: &[u8]) -> Result<Measurements, DecodeError> {
        check_len(FrameKind::Measurements, d)?;
        Ok(Measurements {
            voltage: CentiVolts(i16_at(d, 0)),
            current: DeciAmps(i16_at(d, 2)),
            temperature: DeciCelsius(i16_at(d, 4)),
        })
    }

    /// Encodes eight bytes, the last two zero.
    pub fn encode(&self) -> CanFrame {
        FrameKind::Measurements.frame(&words([
            self.voltage.0 as u16,
            self.current.0 as u16,
            self.temperature.0 as u16,
            0,
        ]))
    }
}

/// 0x359: Pylontech-style protection and warning words.
///
/// Encoded as four bytes; five with the module count; eight with the marker too
/// (byte 7 zero). A marker without a module count is sent with a count of 0. Not
/// canonical: a 6-byte frame, or an 8-byte one with byte 7 set, re-encodes differently.
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

decode_frame!(ProtectionStatus, FrameKind::Protection);

impl ProtectionStatus {
    fn decode_data(d: &[u8]) -> Result<ProtectionStatus, DecodeError> {
        check_len(FrameKind::Protection, d)?;
        Ok(ProtectionStatus {
            protection: ProtectionFlags(u16_at(d, 0)),
            warning: ProtectionFlags(u16_at(d, 2)),
            module_count: d.get(4).copied(),
            marker: d.get(5..7).map(|m| [m[0], m[1]]),
        })
    }

    /// Encodes 4, 5 or 8 bytes (see the type).
    pub fn encode(&self) -> CanFrame {
        let mut d = [0u8; 8];
        d[..2].copy_from_slice(&self.protection.0.to_le_bytes());
        d[2..4].copy_from_slice(&self.warning.0.to_le_bytes());
        d[4] = self.module_count.unwrap_or(0);
        let len = match (self.module_count, self.marker) {
            (_, Some(marker)) => {
                d[5..7].copy_from_slice(&marker);
                8
            }
            (Some(_), None) => 5,
            (None, None) => 4,
        };
        FrameKind::Protection.frame(&d[..len])
    }
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
///
/// Encoded as two bytes, the second zero. Not canonical: a frame of one byte or of
/// three or more, or with byte 1 set, re-encodes to two bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requests {
    /// Bit 7: charge enable.
    pub charge: Permission,
    /// Bit 6: discharge enable.
    pub discharge: Permission,
    /// Bit 5: force charge I.
    pub force_charge_1: ForceCharge,
    /// Bit 4: force charge II.
    pub force_charge_2: ForceCharge,
    /// Bits 0-3 as received: kept, not interpreted (bits above 3 are ignored when
    /// encoding).
    pub other_bits: u8,
}

decode_frame!(Requests, FrameKind::Requests);

impl Requests {
    /// Requests with bits 0-3 clear.
    pub const fn new(
        charge: Permission,
        discharge: Permission,
        force_charge_1: ForceCharge,
        force_charge_2: ForceCharge,
    ) -> Requests {
        Requests {
            charge,
            discharge,
            force_charge_1,
            force_charge_2,
            other_bits: 0,
        }
    }

    fn decode_data(d: &[u8]) -> Result<Requests, DecodeError> {
        check_len(FrameKind::Requests, d)?;
        let b = d[0];
        let set = |bit: u8| b & (1 << bit) != 0;
        let permission = |bit| {
            if set(bit) {
                Permission::Enabled
            } else {
                Permission::Disabled
            }
        };
        let force = |bit| {
            if set(bit) {
                ForceCharge::Requested
            } else {
                ForceCharge::NotRequested
            }
        };
        Ok(Requests {
            charge: permission(7),
            discharge: permission(6),
            force_charge_1: force(5),
            force_charge_2: force(4),
            other_bits: b & 0x0F,
        })
    }

    /// Byte 0 of the frame.
    pub fn raw(&self) -> u8 {
        let mut b = self.other_bits & 0x0F;
        if self.charge == Permission::Enabled {
            b |= 0x80;
        }
        if self.discharge == Permission::Enabled {
            b |= 0x40;
        }
        if self.force_charge_1 == ForceCharge::Requested {
            b |= 0x20;
        }
        if self.force_charge_2 == ForceCharge::Requested {
            b |= 0x10;
        }
        b
    }

    /// Encodes two bytes: the flags, then zero.
    pub fn encode(&self) -> CanFrame {
        FrameKind::Requests.frame(&[self.raw(), 0])
    }
}

/// 0x35F: product code, firmware version bytes and capacity, plus the raw bytes.
///
/// The firmware bytes are kept raw on purpose: vendors encode them differently (BCD,
/// hex, year/week, big- or little-endian, a second version in bytes 6-7), so only the
/// vendor's plugin decodes them; the GX itself reads `byte2 << 8 | byte3`
/// ([`ProductInfo::firmware_word`]). Every byte (6 to 8) is kept, so the encoding is
/// canonical.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProductInfo {
    raw: [u8; 8],
    len: u8,
}

decode_frame!(ProductInfo, FrameKind::ProductInfo);

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

    fn decode_data(d: &[u8]) -> Result<ProductInfo, DecodeError> {
        let kind = FrameKind::ProductInfo;
        check_len(kind, d)?;
        // min_len is 6 and a CanFrame never holds more than 8 bytes.
        ProductInfo::from_data(d).ok_or(DecodeError::TooShort {
            kind,
            len: d.len(),
            min: kind.min_len(),
        })
    }

    /// Encodes the bytes exactly as held.
    pub fn encode(&self) -> CanFrame {
        FrameKind::ProductInfo.frame(self.raw())
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
///
/// Eight bytes; the encoding is canonical.
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

decode_frame!(ModuleCounts, FrameKind::ModuleCounts);

impl ModuleCounts {
    fn decode_data(d: &[u8]) -> Result<ModuleCounts, DecodeError> {
        check_len(FrameKind::ModuleCounts, d)?;
        Ok(ModuleCounts {
            online: u16_at(d, 0),
            blocking_charge: u16_at(d, 2),
            blocking_discharge: u16_at(d, 4),
            offline: u16_at(d, 6),
        })
    }

    /// Encodes the eight bytes.
    pub fn encode(&self) -> CanFrame {
        FrameKind::ModuleCounts.frame(&words([
            self.online,
            self.blocking_charge,
            self.blocking_discharge,
            self.offline,
        ]))
    }
}

/// 0x373: lowest and highest cell voltage and temperature.
///
/// Eight bytes; the encoding is canonical.
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

decode_frame!(CellExtremes, FrameKind::CellExtremes);

impl CellExtremes {
    fn decode_data(d: &[u8]) -> Result<CellExtremes, DecodeError> {
        check_len(FrameKind::CellExtremes, d)?;
        Ok(CellExtremes {
            min_cell_voltage: MilliVolts(u16_at(d, 0)),
            max_cell_voltage: MilliVolts(u16_at(d, 2)),
            min_cell_temperature: Kelvin(u16_at(d, 4)),
            max_cell_temperature: Kelvin(u16_at(d, 6)),
        })
    }

    /// Encodes the eight bytes.
    pub fn encode(&self) -> CanFrame {
        FrameKind::CellExtremes.frame(&words([
            self.min_cell_voltage.0,
            self.max_cell_voltage.0,
            self.min_cell_temperature.0,
            self.max_cell_temperature.0,
        ]))
    }
}

/// 0x378: lifetime energy counters.
///
/// Eight bytes; the encoding is canonical.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnergyCounters {
    /// Bytes 0-3.
    pub charged: DeciKilowattHours,
    /// Bytes 4-7.
    pub discharged: DeciKilowattHours,
}

decode_frame!(EnergyCounters, FrameKind::Energy);

impl EnergyCounters {
    fn decode_data(d: &[u8]) -> Result<EnergyCounters, DecodeError> {
        check_len(FrameKind::Energy, d)?;
        Ok(EnergyCounters {
            charged: DeciKilowattHours(u32_at(d, 0)),
            discharged: DeciKilowattHours(u32_at(d, 4)),
        })
    }

    /// Encodes the eight bytes.
    pub fn encode(&self) -> CanFrame {
        let mut d = [0u8; 8];
        d[..4].copy_from_slice(&self.charged.0.to_le_bytes());
        d[4..].copy_from_slice(&self.discharged.0.to_le_bytes());
        FrameKind::Energy.frame(&d)
    }
}

/// 0x379: installed capacity.
///
/// Encoded as two bytes. Not canonical: bytes past the second are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InstalledCapacity {
    /// Bytes 0-1.
    pub capacity: AmpHours,
}

decode_frame!(InstalledCapacity, FrameKind::InstalledCapacity);

impl InstalledCapacity {
    fn decode_data(d: &[u8]) -> Result<InstalledCapacity, DecodeError> {
        check_len(FrameKind::InstalledCapacity, d)?;
        Ok(InstalledCapacity {
            capacity: AmpHours(u16_at(d, 0)),
        })
    }

    /// Encodes the two bytes.
    pub fn encode(&self) -> CanFrame {
        FrameKind::InstalledCapacity.frame(&self.capacity.0.to_le_bytes())
    }
}

/// Whether a text frame kind carries a whole text or half of a two-frame one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextPart {
    /// 0x35E, 0x374-0x377, 0x382: a whole text, trimmed of NULs and spaces at both ends.
    Whole,
    /// 0x370/0x371, 0x380/0x381: half of a 16-character text, trimmed of NULs only
    /// (a space at the seam survives [`join_halves`](super::join_halves)).
    Half,
}

impl TextPart {
    /// Whether `kind` is a text frame, and which part it carries; `None` for the
    /// numeric kinds.
    pub const fn of(kind: FrameKind) -> Option<TextPart> {
        match kind {
            FrameKind::Manufacturer
            | FrameKind::MinCellVoltageId
            | FrameKind::MaxCellVoltageId
            | FrameKind::MinCellTemperatureId
            | FrameKind::MaxCellTemperatureId
            | FrameKind::ProductName => Some(TextPart::Whole),
            FrameKind::BmsName1 | FrameKind::BmsName2 | FrameKind::Serial1 | FrameKind::Serial2 => {
                Some(TextPart::Half)
            }
            _ => None,
        }
    }
}

/// Why a [`TextFrame`] cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// The kind carries numbers, not text.
    #[error("{0} is not a text frame")]
    NotText(FrameKind),
    /// More than eight bytes.
    #[error("{kind}: {len} characters, at most 8 fit")]
    TooLong {
        /// The frame kind.
        kind: FrameKind,
        /// The text's length in bytes.
        len: usize,
    },
    /// A character that is not printable ASCII.
    #[error("{kind}: {found:?} is not printable ASCII")]
    NotAscii {
        /// The frame kind.
        kind: FrameKind,
        /// The first such character.
        found: char,
    },
}

/// A text frame: 0x35E, 0x370/0x371 (halves), 0x374-0x377, 0x380/0x381 (halves),
/// 0x382. Holds 0 to 8 printable ASCII characters.
///
/// Encoded NUL-padded to eight bytes. Not canonical: a shorter frame, space padding,
/// or leading NULs decode to a text that re-encodes NUL-padded; and a whole text built
/// with spaces at either end is sent with them but decodes trimmed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TextFrame {
    kind: FrameKind,
    text: String,
}

impl TextFrame {
    /// A text frame of `kind` carrying `text`.
    pub fn new(kind: FrameKind, text: impl Into<String>) -> Result<TextFrame, TextError> {
        let text = text.into();
        if TextPart::of(kind).is_none() {
            return Err(TextError::NotText(kind));
        }
        if let Some(found) = text.chars().find(|c| !(' '..='~').contains(c)) {
            return Err(TextError::NotAscii { kind, found });
        }
        if text.len() > 8 {
            return Err(TextError::TooLong {
                kind,
                len: text.len(),
            });
        }
        Ok(TextFrame { kind, text })
    }

    /// Decodes a text frame of any text kind: padding trimmed (see [`TextPart`]), the
    /// rest printable ASCII.
    pub fn decode(frame: &CanFrame) -> Result<TextFrame, DecodeError> {
        let Some(kind) = FrameKind::from_id(frame.id()).filter(|k| TextPart::of(*k).is_some())
        else {
            return Err(DecodeError::NotText { id: frame.id() });
        };
        TextFrame::decode_data(kind, frame.data())
    }

    fn decode_data(kind: FrameKind, d: &[u8]) -> Result<TextFrame, DecodeError> {
        check_len(kind, d)?;
        let text_err = |NotAscii { offset, byte }| DecodeError::NotAscii { kind, offset, byte };
        let text = match TextPart::of(kind) {
            Some(TextPart::Half) => decode_half(d),
            _ => decode_text(d),
        }
        .map_err(text_err)?;
        Ok(TextFrame { kind, text })
    }

    /// Encodes the text, NUL-padded to eight bytes.
    pub fn encode(&self) -> CanFrame {
        let mut d = [0u8; 8];
        let n = self.text.len().min(8);
        d[..n].copy_from_slice(&self.text.as_bytes()[..n]);
        self.kind.frame(&d)
    }

    /// The frame kind.
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text, consumed.
    pub fn into_text(self) -> String {
        self.text
    }
}

/// The content of one decoded BMS-Can broadcast frame, of any kind.
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
    InstalledCapacity(InstalledCapacity),
    /// A text frame: 0x35E, 0x370/0x371, 0x374-0x377, 0x380/0x381, 0x382.
    Text(TextFrame),
}

impl Telemetry {
    /// Decodes `frame`; `None` when it is no BMS-Can broadcast frame (another
    /// identifier, or any extended one).
    pub fn decode_frame(frame: &CanFrame) -> Option<Result<Telemetry, DecodeError>> {
        let kind = FrameKind::from_id(frame.id())?;
        Some(Telemetry::decode(kind, frame.data()))
    }

    /// Decodes the data of a frame of `kind`.
    pub fn decode(kind: FrameKind, d: &[u8]) -> Result<Telemetry, DecodeError> {
        Ok(match kind {
            FrameKind::Limits => Telemetry::Limits(ChargeLimits::decode_data(d)?),
            FrameKind::StateOfCharge => Telemetry::StateOfCharge(StateOfCharge::decode_data(d)?),
            FrameKind::Measurements => Telemetry::Measurements(Measurements::decode_data(d)?),
            FrameKind::Protection => Telemetry::Protection(ProtectionStatus::decode_data(d)?),
            FrameKind::Alarms => Telemetry::Alarms(AlarmStatus::decode_data(d)?),
            FrameKind::Requests => Telemetry::Requests(Requests::decode_data(d)?),
            FrameKind::ProductInfo => Telemetry::ProductInfo(ProductInfo::decode_data(d)?),
            FrameKind::ModuleCounts => Telemetry::ModuleCounts(ModuleCounts::decode_data(d)?),
            FrameKind::CellExtremes => Telemetry::CellExtremes(CellExtremes::decode_data(d)?),
            FrameKind::Energy => Telemetry::Energy(EnergyCounters::decode_data(d)?),
            FrameKind::InstalledCapacity => {
                Telemetry::InstalledCapacity(InstalledCapacity::decode_data(d)?)
            }
            FrameKind::Manufacturer
            | FrameKind::BmsName1
            | FrameKind::BmsName2
            | FrameKind::MinCellVoltageId
            | FrameKind::MaxCellVoltageId
            | FrameKind::MinCellTemperatureId
            | FrameKind::MaxCellTemperatureId
            | FrameKind::Serial1
            | FrameKind::Serial2
            | FrameKind::ProductName => Telemetry::Text(TextFrame::decode_data(kind, d)?),
        })
    }

    /// Encodes the frame, as the kind's own `encode` does.
    pub fn encode(&self) -> CanFrame {
        match self {
            Telemetry::Limits(v) => v.encode(),
            Telemetry::StateOfCharge(v) => v.encode(),
            Telemetry::Measurements(v) => v.encode(),
            Telemetry::Protection(v) => v.encode(),
            Telemetry::Alarms(v) => v.encode(),
            Telemetry::Requests(v) => v.encode(),
            Telemetry::ProductInfo(v) => v.encode(),
            Telemetry::ModuleCounts(v) => v.encode(),
            Telemetry::CellExtremes(v) => v.encode(),
            Telemetry::Energy(v) => v.encode(),
            Telemetry::InstalledCapacity(v) => v.encode(),
            Telemetry::Text(v) => v.encode(),
        }
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
            Telemetry::Text(t) => t.kind(),
        }
    }
}
