//! Property tests of the BMS-Can decoders: every numeric field is read from exactly its
//! documented bytes with its documented scale (recomputed here bit by bit,
//! independently of the decoder), and texts are trimmed printable ASCII.

use bmsfw_protocols::bms_can::{DecodeError, FrameKind, Telemetry};
use proptest::prelude::*;

/// Little-endian u16 at `i`, built without from_le_bytes.
fn le16(d: &[u8], i: usize) -> u16 {
    (u16::from(d[i + 1]) << 8) | u16::from(d[i])
}

/// Little-endian i16 at `i`: two's complement by hand.
fn les16(d: &[u8], i: usize) -> i32 {
    let u = i32::from(le16(d, i));
    if u >= 0x8000 { u - 0x1_0000 } else { u }
}

fn le32(d: &[u8], i: usize) -> u32 {
    (0..4).map(|k| u32::from(d[i + k]) << (8 * k)).sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn limits_scale_exactly(d in proptest::array::uniform8(any::<u8>())) {
        let Telemetry::Limits(l) = Telemetry::decode(FrameKind::Limits, &d).unwrap() else { unreachable!() };
        prop_assert_eq!(i32::from(l.charge_voltage.0), i32::from(le16(&d, 0)));
        prop_assert_eq!(i32::from(l.charge_current.0), les16(&d, 2));
        prop_assert_eq!(i32::from(l.discharge_current.0), les16(&d, 4));
        prop_assert_eq!(i32::from(l.discharge_voltage.0), i32::from(le16(&d, 6)));
        prop_assert_eq!(l.charge_voltage.volts(), f64::from(le16(&d, 0)) / 10.0);
        prop_assert_eq!(l.charge_current.amps(), f64::from(les16(&d, 2)) / 10.0);
    }

    #[test]
    fn measurements_scale_exactly(d in proptest::collection::vec(any::<u8>(), 6..=8)) {
        let Telemetry::Measurements(m) = Telemetry::decode(FrameKind::Measurements, &d).unwrap() else { unreachable!() };
        prop_assert_eq!(m.voltage.volts(), f64::from(les16(&d, 0)) / 100.0);
        prop_assert_eq!(m.current.amps(), f64::from(les16(&d, 2)) / 10.0);
        prop_assert_eq!(m.temperature.celsius(), f64::from(les16(&d, 4)) / 10.0);
        // Display agrees with the integer: sign, whole part and decimals.
        let v = les16(&d, 0);
        let expected = format!("{}{}.{:02} V", if v < 0 { "-" } else { "" }, v.abs() / 100, v.abs() % 100);
        prop_assert_eq!(m.voltage.to_string(), expected);
        let c = les16(&d, 2);
        let expected = format!("{}{}.{} A", if c < 0 { "-" } else { "" }, c.abs() / 10, c.abs() % 10);
        prop_assert_eq!(m.current.to_string(), expected);
        let t = les16(&d, 4);
        let expected = format!("{}{}.{} °C", if t < 0 { "-" } else { "" }, t.abs() / 10, t.abs() % 10);
        prop_assert_eq!(m.temperature.to_string(), expected);
    }

    #[test]
    fn soc_is_read_or_refused_never_clamped(d in proptest::collection::vec(any::<u8>(), 4..=8)) {
        match Telemetry::decode(FrameKind::StateOfCharge, &d) {
            Ok(Telemetry::StateOfCharge(s)) => {
                prop_assert_eq!(s.soc.0, le16(&d, 0));
                prop_assert_eq!(s.soh.0, le16(&d, 2));
                prop_assert!(s.soc.0 <= 100 && s.soh.0 <= 100);
                match s.soc_high_res {
                    Some(h) => { prop_assert!(d.len() >= 6); prop_assert_eq!(h.0, le16(&d, 4)); }
                    None => prop_assert!(d.len() < 6),
                }
            }
            Err(DecodeError::OutOfRange { value, max, .. }) => prop_assert!(value > max),
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn packed_counters_scale_exactly(d in proptest::array::uniform8(any::<u8>())) {
        let Telemetry::ModuleCounts(m) = Telemetry::decode(FrameKind::ModuleCounts, &d).unwrap() else { unreachable!() };
        prop_assert_eq!([m.online, m.blocking_charge, m.blocking_discharge, m.offline],
            [le16(&d, 0), le16(&d, 2), le16(&d, 4), le16(&d, 6)]);
        let Telemetry::CellExtremes(c) = Telemetry::decode(FrameKind::CellExtremes, &d).unwrap() else { unreachable!() };
        prop_assert_eq!([c.min_cell_voltage.0, c.max_cell_voltage.0, c.min_cell_temperature.0, c.max_cell_temperature.0],
            [le16(&d, 0), le16(&d, 2), le16(&d, 4), le16(&d, 6)]);
        let Telemetry::Energy(e) = Telemetry::decode(FrameKind::Energy, &d).unwrap() else { unreachable!() };
        prop_assert_eq!([e.charged.0, e.discharged.0], [le32(&d, 0), le32(&d, 4)]);
        let Telemetry::ProductInfo(p) = Telemetry::decode(FrameKind::ProductInfo, &d).unwrap() else { unreachable!() };
        prop_assert_eq!(p.raw(), &d[..]);
        prop_assert_eq!(p.product_code(), le16(&d, 0));
        prop_assert_eq!(p.firmware_word(), (u16::from(d[2]) << 8) | u16::from(d[3]));
        prop_assert_eq!(p.capacity().0, le16(&d, 4));
    }

    #[test]
    fn texts_are_trimmed_printable_ascii(kind in proptest::sample::select(vec![
            FrameKind::Manufacturer, FrameKind::BmsName1, FrameKind::Serial2, FrameKind::ProductName,
            FrameKind::MinCellTemperatureId]),
        d in proptest::collection::vec(any::<u8>(), 2..=8)) {
        match Telemetry::decode(kind, &d) {
            Ok(Telemetry::Text(t)) => {
                prop_assert_eq!(t.kind(), kind);
                let text = t.text();
                prop_assert!(text.bytes().all(|b| (0x20..=0x7E).contains(&b)));
                prop_assert!(!text.starts_with('\0') && !text.ends_with('\0'));
                prop_assert!(text.len() <= d.len());
                // The text appears verbatim in the frame.
                prop_assert!(d.windows(text.len().max(1)).any(|w| text.is_empty() || w == text.as_bytes()));
            }
            Err(DecodeError::NotAscii { offset, byte, .. }) => {
                prop_assert_eq!(d[offset], byte);
                prop_assert!(!(0x20..=0x7E).contains(&byte));
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }
}
