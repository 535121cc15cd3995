//! The BMS-Can frames a simulated battery sends: the pack's physical values turned into
//! the wire's units (rounded, saturating at each field's range), then encoded by the
//! one codec, [`bmsfw_protocols::bms_can`].

use super::pack::Allowance;
use bmsfw_plugin_api::CanFrame;
use bmsfw_protocols::bms_can::{
    AlarmStatus, AmpHours, CellExtremes, CentiPercent, CentiVolts, ChargeLimits, DeciAmps,
    DeciCelsius, DeciKilowattHours, DeciVolts, EnergyCounters, FrameKind, InstalledCapacity,
    Kelvin, Measurements, MilliVolts, ModuleCounts, Percent, Permission, ProductInfo,
    ProtectionFlags, ProtectionStatus, Requests, StateOfCharge, TextFrame,
};

pub use bmsfw_protocols::bms_can::ForceCharge;

/// Rounds `value / step` to the nearest integer, saturating at the type's range.
fn scaled_i16(value: f64, step: f64) -> i16 {
    (value / step)
        .round()
        .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
}

fn scaled_u16(value: f64, step: f64) -> u16 {
    (value / step).round().clamp(0.0, f64::from(u16::MAX)) as u16
}

/// 0x351: limits in volts and amperes, 0.1 V / 0.1 A steps.
pub fn limits(cvl_v: f64, ccl_a: f64, dcl_a: f64, dvl_v: f64) -> CanFrame {
    ChargeLimits {
        charge_voltage: DeciVolts(scaled_u16(cvl_v, 0.1)),
        charge_current: DeciAmps(scaled_i16(ccl_a, 0.1)),
        discharge_current: DeciAmps(scaled_i16(dcl_a, 0.1)),
        discharge_voltage: DeciVolts(scaled_u16(dvl_v, 0.1)),
    }
    .encode()
}

/// 0x355: SOC and SOH in 1 % steps, and SOC in 0.01 % steps.
pub fn state_of_charge(soc: f64, soh: u8) -> CanFrame {
    let soc = soc.clamp(0.0, 100.0);
    StateOfCharge {
        soc: Percent(scaled_u16(soc, 1.0)),
        soh: Percent(u16::from(soh.min(100))),
        soc_high_res: Some(CentiPercent(scaled_u16(soc, 0.01))),
    }
    .encode()
}

/// 0x356: voltage 0.01 V, current 0.1 A (positive = charging), temperature 0.1 degC.
pub fn measurements(voltage_v: f64, current_a: f64, temperature_c: f64) -> CanFrame {
    Measurements {
        voltage: CentiVolts(scaled_i16(voltage_v, 0.01)),
        current: DeciAmps(scaled_i16(current_a, 0.1)),
        temperature: DeciCelsius(scaled_i16(temperature_c, 0.1)),
    }
    .encode()
}

/// 0x359: protection and warning words, module count, `'P','N'`.
pub fn protection(protection: u16, warning: u16, modules: u16) -> CanFrame {
    ProtectionStatus {
        protection: ProtectionFlags(protection),
        warning: ProtectionFlags(warning),
        module_count: Some(modules.min(255) as u8),
        marker: Some(*b"PN"),
    }
    .encode()
}

/// 0x35A: the alarm and warning fields.
pub fn alarms(status: AlarmStatus) -> CanFrame {
    status.encode()
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
    let permission = |a| match a {
        Allowance::Allowed => Permission::Enabled,
        Allowance::Forbidden => Permission::Disabled,
    };
    Requests::new(
        permission(bits.charge),
        permission(bits.discharge),
        bits.force_charge,
        ForceCharge::NotRequested,
    )
    .encode()
}

/// A text frame: ASCII, NUL-padded to eight bytes. A text the frame cannot carry (not
/// printable ASCII, which a validated configuration never holds) is sent empty; more
/// than eight bytes are cut to eight.
pub fn text(kind: FrameKind, text: &[u8]) -> CanFrame {
    let text = String::from_utf8_lossy(&text[..text.len().min(8)]).into_owned();
    TextFrame::new(kind, text)
        .or_else(|_| TextFrame::new(kind, ""))
        .map(|t| t.encode())
        // Every caller passes a text kind.
        .unwrap_or_else(|_| unreachable!())
}

/// 0x35F: the bytes as given (6 to 8; the model never holds another length, and any
/// other is sent as given, for the engine to refuse).
pub fn product_info(bytes: &[u8]) -> CanFrame {
    match ProductInfo::from_data(bytes) {
        Some(info) => info.encode(),
        None => CanFrame::new(FrameKind::ProductInfo.id(), &bytes[..bytes.len().min(8)])
            .unwrap_or_else(|| unreachable!()),
    }
}

/// 0x372.
pub fn module_counts(
    online: u16,
    blocking_charge: u16,
    blocking_discharge: u16,
    offline: u16,
) -> CanFrame {
    ModuleCounts {
        online,
        blocking_charge,
        blocking_discharge,
        offline,
    }
    .encode()
}

/// 0x373: cell voltages in volts, temperatures in degC (sent as whole kelvin).
pub fn cell_extremes(min_v: f64, max_v: f64, min_c: f64, max_c: f64) -> CanFrame {
    CellExtremes {
        min_cell_voltage: MilliVolts(scaled_u16(min_v, 0.001)),
        max_cell_voltage: MilliVolts(scaled_u16(max_v, 0.001)),
        min_cell_temperature: Kelvin(scaled_u16(min_c + 273.15, 1.0)),
        max_cell_temperature: Kelvin(scaled_u16(max_c + 273.15, 1.0)),
    }
    .encode()
}

/// 0x378: energy counters in Wh, sent in 0.1 kWh steps (rounded down).
pub fn energy(charged_wh: f64, discharged_wh: f64) -> CanFrame {
    let scaled = |wh: f64| (wh / 100.0).floor().clamp(0.0, f64::from(u32::MAX)) as u32;
    EnergyCounters {
        charged: DeciKilowattHours(scaled(charged_wh)),
        discharged: DeciKilowattHours(scaled(discharged_wh)),
    }
    .encode()
}

/// 0x379.
pub fn installed_capacity(ah: u16) -> CanFrame {
    InstalledCapacity {
        capacity: AmpHours(ah),
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmsfw_plugin_api::CanId;

    fn raw(id: u16, data: &[u8]) -> CanFrame {
        CanFrame::new(CanId::standard(id).unwrap(), data).unwrap()
    }

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
        assert_eq!(
            text(FrameKind::Manufacturer, b"VOLTARA").to_string(),
            "35E#564F4C5441524100"
        );
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
        assert_eq!(
            requests(RequestBits {
                charge: Allowance::Forbidden,
                discharge: Allowance::Allowed,
                force_charge: ForceCharge::Requested,
            })
            .to_string(),
            "35C#6000"
        );
        assert_eq!(
            product_info(&[0x17, 0x0B, 0x6E, 0x01, 0x2C, 0x01]).to_string(),
            "35F#170B6E012C01"
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

    #[test]
    fn texts_the_frame_cannot_carry_are_cut_or_sent_empty() {
        assert_eq!(
            text(FrameKind::Serial1, b"VX4800012345").to_string(),
            "380#5658343830303031"
        );
        assert_eq!(
            text(FrameKind::ProductName, "Lé".as_bytes()),
            raw(0x382, &[0; 8])
        );
        assert_eq!(product_info(&[1, 2, 3]), raw(0x35F, &[1, 2, 3]));
    }
}
