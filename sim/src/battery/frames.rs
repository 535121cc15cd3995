//! Encoders of the BMS-Can frames a simulated battery sends, written from the frame
//! layout (not from the engine's decoder), so that tests of one check the other.

use super::pack::Allowance;
use bmsfw_plugin_api::{CanFrame, CanId};

fn frame(id: u16, data: &[u8]) -> CanFrame {
    // Identifiers are below 0x800 and callers pass at most eight bytes.
    let id = CanId::standard(id).unwrap_or_else(|| unreachable!());
    CanFrame::new(id, &data[..data.len().min(8)]).unwrap_or_else(|| unreachable!())
}

/// Rounds `value / step` to the nearest integer, saturating at the type's range.
fn scaled_i16(value: f64, step: f64) -> i16 {
    (value / step)
        .round()
        .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
}

fn scaled_u16(value: f64, step: f64) -> u16 {
    (value / step).round().clamp(0.0, f64::from(u16::MAX)) as u16
}

fn le(words: &[u16]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// 0x351: limits in volts and amperes, 0.1 V / 0.1 A steps.
pub fn limits(cvl_v: f64, ccl_a: f64, dcl_a: f64, dvl_v: f64) -> CanFrame {
    let words = [
        scaled_u16(cvl_v, 0.1),
        scaled_i16(ccl_a, 0.1) as u16,
        scaled_i16(dcl_a, 0.1) as u16,
        scaled_u16(dvl_v, 0.1),
    ];
    frame(0x351, &le(&words))
}

/// 0x355: SOC and SOH in 1 % steps, and SOC in 0.01 % steps.
pub fn state_of_charge(soc: f64, soh: u8) -> CanFrame {
    let soc = soc.clamp(0.0, 100.0);
    let words = [
        scaled_u16(soc, 1.0),
        u16::from(soh.min(100)),
        scaled_u16(soc, 0.01),
        0,
    ];
    frame(0x355, &le(&words))
}

/// 0x356: voltage 0.01 V, current 0.1 A (positive = charging), temperature 0.1 degC.
pub fn measurements(voltage_v: f64, current_a: f64, temperature_c: f64) -> CanFrame {
    let words = [
        scaled_i16(voltage_v, 0.01) as u16,
        scaled_i16(current_a, 0.1) as u16,
        scaled_i16(temperature_c, 0.1) as u16,
        0,
    ];
    frame(0x356, &le(&words))
}

/// 0x359: protection and warning words, module count, `'P','N'`.
pub fn protection(protection: u16, warning: u16, modules: u16) -> CanFrame {
    let mut data = le(&[protection, warning]);
    data.push(modules.min(255) as u8);
    data.extend_from_slice(b"PN\0");
    frame(0x359, &data)
}

/// 0x35A: the alarm and warning bytes as given.
pub fn alarms(bytes: [u8; 8]) -> CanFrame {
    frame(0x35A, &bytes)
}

/// Whether the battery asks for a forced charge (0x35C bit 5, force charge I).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForceCharge {
    /// Bit set.
    Requested,
    /// Bit clear.
    NotRequested,
}

/// The requests of 0x35C.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestBits {
    /// Bit 7: charge enable.
    pub charge: Allowance,
    /// Bit 6: discharge enable.
    pub discharge: Allowance,
    /// Bit 5: force charge I.
    pub force_charge: ForceCharge,
}

/// 0x35C.
pub fn requests(bits: RequestBits) -> CanFrame {
    let mut b = 0u8;
    if bits.charge == Allowance::Allowed {
        b |= 0x80;
    }
    if bits.discharge == Allowance::Allowed {
        b |= 0x40;
    }
    if bits.force_charge == ForceCharge::Requested {
        b |= 0x20;
    }
    frame(0x35C, &[b, 0])
}

/// A text frame: ASCII, NUL-padded to eight bytes.
pub fn text(id: u16, text: &[u8]) -> CanFrame {
    let mut data = [0u8; 8];
    let n = text.len().min(8);
    data[..n].copy_from_slice(&text[..n]);
    frame(id, &data)
}

/// 0x35F: the bytes as given (6 to 8).
pub fn product_info(bytes: &[u8]) -> CanFrame {
    frame(0x35F, bytes)
}

/// 0x372.
pub fn module_counts(
    online: u16,
    blocking_charge: u16,
    blocking_discharge: u16,
    offline: u16,
) -> CanFrame {
    frame(
        0x372,
        &le(&[online, blocking_charge, blocking_discharge, offline]),
    )
}

/// 0x373: cell voltages in volts, temperatures in degC (sent as whole kelvin).
pub fn cell_extremes(min_v: f64, max_v: f64, min_c: f64, max_c: f64) -> CanFrame {
    frame(
        0x373,
        &le(&[
            scaled_u16(min_v, 0.001),
            scaled_u16(max_v, 0.001),
            scaled_u16(min_c + 273.15, 1.0),
            scaled_u16(max_c + 273.15, 1.0),
        ]),
    )
}

/// 0x378: energy counters in Wh, sent in 0.1 kWh steps.
pub fn energy(charged_wh: f64, discharged_wh: f64) -> CanFrame {
    let scaled = |wh: f64| (wh / 100.0).floor().clamp(0.0, f64::from(u32::MAX)) as u32;
    let mut data = scaled(charged_wh).to_le_bytes().to_vec();
    data.extend_from_slice(&scaled(discharged_wh).to_le_bytes());
    frame(0x378, &data)
}

/// 0x379.
pub fn installed_capacity(ah: u16) -> CanFrame {
    frame(0x379, &ah.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_bms_can_table() {
        assert_eq!(
            limits(56.8, 50.0, -100.0, 48.0).to_string(),
            "351#3802F40118FCE001"
        );
        assert_eq!(
            state_of_charge(87.03, 99).to_string(),
            "355#57006300FF210000"
        );
        assert_eq!(
            measurements(51.4, -12.5, -10.0).to_string(),
            "356#141483FF9CFF0000"
        );
        assert_eq!(
            protection(0x0802, 0x10, 3).to_string(),
            "359#0208100003504E00"
        );
        assert_eq!(text(0x35E, b"VOLTARA").to_string(), "35E#564F4C5441524100");
        assert_eq!(
            module_counts(3, 0, 0, 1).to_string(),
            "372#0300000000000100"
        );
        assert_eq!(
            cell_extremes(3.3, 3.34, 16.85, 24.85).to_string(),
            "373#E40C0C0D22012A01"
        );
        assert_eq!(
            energy(1_000_099.0, 50.0).to_string(),
            "378#1027000000000000"
        );
        assert_eq!(installed_capacity(300).to_string(), "379#2C01");
        assert_eq!(
            requests(RequestBits {
                charge: Allowance::Allowed,
                discharge: Allowance::Allowed,
                force_charge: ForceCharge::NotRequested,
            })
            .to_string(),
            "35C#C000"
        );
    }

    #[test]
    fn out_of_range_values_saturate() {
        assert_eq!(
            measurements(1e9, -1e9, f64::NAN).to_string(),
            "356#FF7F008000000000"
        );
        assert_eq!(
            state_of_charge(150.0, 200).to_string(),
            "355#6400640010270000"
        );
    }
}
