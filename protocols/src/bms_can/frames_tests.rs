//! Table tests of every decoder: valid, boundary and malformed frames, and the
//! encoders' exact bytes.

use super::*;
use bmsfw_plugin_api::{CanFrame, CanId};

fn frame(id: u16, data: &[u8]) -> CanFrame {
    CanFrame::new(CanId::standard(id).unwrap(), data).unwrap()
}

fn decode(id: u16, data: &[u8]) -> Result<Telemetry, DecodeError> {
    Telemetry::decode_frame(&frame(id, data)).expect("a BMS-Can id")
}

#[test]
fn limits_0x351() {
    let t = decode(0x351, &[0x28, 0x02, 0xE8, 0x03, 0x18, 0xFC, 0xD0, 0x01]).unwrap();
    assert_eq!(
        t,
        Telemetry::Limits(ChargeLimits {
            charge_voltage: DeciVolts(552),
            charge_current: DeciAmps(1000),
            discharge_current: DeciAmps(-1000),
            discharge_voltage: DeciVolts(464),
        })
    );
    // 0xFFFF is 6553.5 V for the unsigned voltage limits, -0.1 A for the signed currents.
    let Telemetry::Limits(l) = decode(0x351, &[0xFF; 8]).unwrap() else {
        panic!()
    };
    assert_eq!(l.charge_voltage.to_string(), "6553.5 V");
    assert_eq!(l.charge_current.to_string(), "-0.1 A");
}

#[test]
fn state_of_charge_0x355() {
    assert_eq!(
        decode(0x355, &[87, 0, 100, 0]).unwrap(),
        Telemetry::StateOfCharge(StateOfCharge {
            soc: Percent(87),
            soh: Percent(100),
            soc_high_res: None,
        })
    );
    // Five bytes: the high-resolution field is incomplete and therefore absent.
    let Telemetry::StateOfCharge(s) = decode(0x355, &[87, 0, 100, 0, 0xFF]).unwrap() else {
        panic!()
    };
    assert_eq!(s.soc_high_res, None);
    let Telemetry::StateOfCharge(s) = decode(0x355, &[87, 0, 99, 0, 0xFF, 0x21, 0, 0]).unwrap()
    else {
        panic!()
    };
    assert_eq!(s.soc_high_res, Some(CentiPercent(8703)));
    assert_eq!(s.soc_high_res.unwrap().to_string(), "87.03 %");
    // Boundaries: 100 % and 100.00 % are valid, one more is not.
    assert!(decode(0x355, &[100, 0, 100, 0, 0x10, 0x27]).is_ok());
    assert_eq!(
        decode(0x355, &[101, 0, 100, 0]).unwrap_err(),
        DecodeError::OutOfRange {
            kind: FrameKind::StateOfCharge,
            field: "state of charge",
            value: 101,
            max: 100
        }
    );
    assert_eq!(
        decode(0x355, &[50, 0, 0, 1]).unwrap_err().reason(),
        RejectReason::OutOfRange
    );
    assert_eq!(
        decode(0x355, &[50, 0, 100, 0, 0x11, 0x27]).unwrap_err(),
        DecodeError::OutOfRange {
            kind: FrameKind::StateOfCharge,
            field: "high-resolution state of charge",
            value: 10_001,
            max: 10_000
        }
    );
}

#[test]
fn measurements_0x356_with_negative_current_and_temperature() {
    assert_eq!(
        decode(0x356, &[0x14, 0x14, 0x83, 0xFF, 0x9C, 0xFF]).unwrap(),
        Telemetry::Measurements(Measurements {
            voltage: CentiVolts(5140),
            current: DeciAmps(-125),
            temperature: DeciCelsius(-100),
        })
    );
    let Telemetry::Measurements(m) =
        decode(0x356, &[0x00, 0x80, 0xFF, 0x7F, 0xFA, 0x00, 0xAA, 0xBB]).unwrap()
    else {
        panic!()
    };
    assert_eq!(m.voltage.to_string(), "-327.68 V");
    assert_eq!(m.current.to_string(), "3276.7 A");
    assert_eq!(m.temperature.to_string(), "25.0 °C");
}

#[test]
fn protection_0x359() {
    let Telemetry::Protection(p) =
        decode(0x359, &[0x02, 0x08, 0x10, 0x00, 0x04, b'P', b'N', 0]).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        p.protection.active(),
        vec![Protection::HighVoltage, Protection::SystemError]
    );
    assert_eq!(p.warning.active(), vec![Protection::LowTemperature]);
    assert_eq!(p.module_count, Some(4));
    assert_eq!(p.marker, Some(*b"PN"));
    let Telemetry::Protection(p) = decode(0x359, &[0, 0, 0, 0]).unwrap() else {
        panic!()
    };
    assert_eq!((p.module_count, p.marker), (None, None));
    let Telemetry::Protection(p) = decode(0x359, &[0, 0, 0, 0, 2, b'P']).unwrap() else {
        panic!()
    };
    assert_eq!((p.module_count, p.marker), (Some(2), None));
}

#[test]
fn alarms_0x35a() {
    let Telemetry::Alarms(a) = decode(
        0x35A,
        &[
            0xA8 | 0b01,
            0xAA,
            0xAA,
            0xAA,
            0xAA,
            0xAA ^ 0b11 << 6,
            0xAA,
            0xAA,
        ],
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(a.active(Severity::Alarm), vec![AlarmField::General]);
    // Warning byte 1 bits 6-7 = 01: high discharge current.
    assert_eq!(
        a.active(Severity::Warning),
        vec![AlarmField::HighDischargeCurrent]
    );
}

#[test]
fn requests_0x35c() {
    let Telemetry::Requests(r) = decode(0x35C, &[0xC0]).unwrap() else {
        panic!()
    };
    assert_eq!(
        (r.charge, r.discharge, r.force_charge_1, r.force_charge_2),
        (
            Permission::Enabled,
            Permission::Enabled,
            ForceCharge::NotRequested,
            ForceCharge::NotRequested
        )
    );
    let Telemetry::Requests(r) = decode(0x35C, &[0x30, 0xFF]).unwrap() else {
        panic!()
    };
    assert_eq!(
        (r.charge, r.discharge, r.force_charge_1, r.force_charge_2),
        (
            Permission::Disabled,
            Permission::Disabled,
            ForceCharge::Requested,
            ForceCharge::Requested
        )
    );
    let Telemetry::Requests(r) = decode(0x35C, &[0x80]).unwrap() else {
        panic!()
    };
    assert_eq!(
        (r.charge, r.discharge),
        (Permission::Enabled, Permission::Disabled)
    );
}

#[test]
fn texts() {
    assert_eq!(
        decode(0x35E, b"PYLON\0\0\0").unwrap(),
        Telemetry::Text(TextFrame::new(FrameKind::Manufacturer, "PYLON").unwrap())
    );
    // Some senders use DLC 6.
    assert_eq!(
        decode(0x35E, b"BYD   ").unwrap(),
        Telemetry::Text(TextFrame::new(FrameKind::Manufacturer, "BYD").unwrap())
    );
    assert_eq!(
        decode(0x35E, b"X").unwrap_err(),
        DecodeError::TooShort {
            kind: FrameKind::Manufacturer,
            len: 1,
            min: 2
        }
    );
    assert_eq!(
        decode(0x370, b"Battery ").unwrap(),
        Telemetry::Text(TextFrame::new(FrameKind::BmsName1, "Battery ").unwrap())
    );
    assert_eq!(
        decode(0x382, b"LFP\xB0").unwrap_err(),
        DecodeError::NotAscii {
            kind: FrameKind::ProductName,
            offset: 3,
            byte: 0xB0
        }
    );
    for id in [0x374, 0x375, 0x376, 0x377] {
        let t = decode(id, b"M02C11\0\0").unwrap();
        assert_eq!(
            t,
            Telemetry::Text(TextFrame::new(t.kind(), "M02C11").unwrap())
        );
    }
}

#[test]
fn product_info_0x35f() {
    let Telemetry::ProductInfo(p) = decode(0x35F, &[0x34, 0x12, 0x04, 0x0F, 0x64, 0x00]).unwrap()
    else {
        panic!()
    };
    assert_eq!(p.raw(), &[0x34, 0x12, 0x04, 0x0F, 0x64, 0x00]);
    assert_eq!(p.product_code(), 0x1234);
    assert_eq!(p.firmware_bytes(), [0x04, 0x0F]);
    assert_eq!(p.firmware_word(), 0x040F);
    assert_eq!(p.capacity(), AmpHours(100));
    let Telemetry::ProductInfo(p) =
        decode(0x35F, &[0x34, 0x12, 0x6E, 0x01, 0xF4, 0x01, 0x02, 0x03]).unwrap()
    else {
        panic!()
    };
    assert_eq!(p.raw(), &[0x34, 0x12, 0x6E, 0x01, 0xF4, 0x01, 0x02, 0x03]);
    assert_eq!(p.firmware_word(), 0x6E01);
    assert_eq!(p.capacity(), AmpHours(500));
}

#[test]
fn module_counts_cells_energy_capacity() {
    assert_eq!(
        decode(0x372, &[4, 0, 1, 0, 0, 0, 2, 1]).unwrap(),
        Telemetry::ModuleCounts(ModuleCounts {
            online: 4,
            blocking_charge: 1,
            blocking_discharge: 0,
            offline: 0x0102,
        })
    );
    let Telemetry::CellExtremes(c) =
        decode(0x373, &[0xE4, 0x0C, 0x0C, 0x0D, 0x22, 0x01, 0x2A, 0x01]).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (
            c.min_cell_voltage,
            c.max_cell_voltage,
            c.min_cell_temperature,
            c.max_cell_temperature
        ),
        (MilliVolts(3300), MilliVolts(3340), Kelvin(290), Kelvin(298))
    );
    assert_eq!(
        decode(0x378, &[0x10, 0x27, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]).unwrap(),
        Telemetry::Energy(EnergyCounters {
            charged: DeciKilowattHours(10_000),
            discharged: DeciKilowattHours(u32::MAX),
        })
    );
    assert_eq!(
        decode(0x379, &[0xC8, 0x00]).unwrap(),
        Telemetry::InstalledCapacity(InstalledCapacity {
            capacity: AmpHours(200)
        })
    );
}

#[test]
fn every_kind_one_byte_short_is_rejected_with_its_lengths() {
    for kind in FrameKind::ALL {
        let short = vec![b'A'; kind.min_len() - 1];
        let err = Telemetry::decode(kind, &short).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TooShort {
                kind,
                len: kind.min_len() - 1,
                min: kind.min_len()
            }
        );
        assert!(err.to_string().contains("at least"), "{err}");
        // The minimum itself is accepted.
        let exact = vec![b'A'; kind.min_len()];
        let ok = Telemetry::decode(kind, &exact);
        assert!(
            ok.is_ok() || matches!(ok, Err(DecodeError::OutOfRange { .. })),
            "{kind}: {ok:?}"
        );
    }
}

#[test]
fn errors_name_the_frame_and_the_problem() {
    let e = decode(0x356, &[1, 2, 3]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "0x356 measurements: 3 data bytes, at least 6 needed"
    );
    let e = decode(0x35E, b"AB\x80").unwrap_err();
    assert_eq!(
        e.to_string(),
        "0x35E manufacturer: byte 2 is 0x80, not printable ASCII"
    );
}

#[test]
fn other_frames_are_not_bms_can() {
    let ext = CanFrame::new(CanId::extended(0x351).unwrap(), &[0; 8]).unwrap();
    assert!(Telemetry::decode_frame(&ext).is_none());
    assert!(Telemetry::decode_frame(&frame(0x305, &[0; 8])).is_none());
    assert!(Telemetry::decode_frame(&frame(0x383, &[0; 8])).is_none());
}

#[test]
fn encoders_write_the_documented_bytes() {
    let limits = ChargeLimits {
        charge_voltage: DeciVolts(552),
        charge_current: DeciAmps(1000),
        discharge_current: DeciAmps(-1000),
        discharge_voltage: DeciVolts(464),
    };
    assert_eq!(limits.encode().to_string(), "351#2802E80318FCD001");
    let soc = StateOfCharge {
        soc: Percent(87),
        soh: Percent(99),
        soc_high_res: Some(CentiPercent(8703)),
    };
    assert_eq!(soc.encode().to_string(), "355#57006300FF210000");
    let soc = StateOfCharge {
        soc_high_res: None,
        ..soc
    };
    assert_eq!(soc.encode().to_string(), "355#57006300");
    let m = Measurements {
        voltage: CentiVolts(5140),
        current: DeciAmps(-125),
        temperature: DeciCelsius(-100),
    };
    assert_eq!(m.encode().to_string(), "356#141483FF9CFF0000");
    let p = ProtectionStatus {
        protection: ProtectionFlags(0x0802),
        warning: ProtectionFlags(0x0010),
        module_count: Some(3),
        marker: Some(*b"PN"),
    };
    assert_eq!(p.encode().to_string(), "359#0208100003504E00");
    let p = ProtectionStatus { marker: None, ..p };
    assert_eq!(p.encode().to_string(), "359#0208100003");
    let p = ProtectionStatus {
        module_count: None,
        ..p
    };
    assert_eq!(p.encode().to_string(), "359#02081000");
    let r = Requests::new(
        Permission::Enabled,
        Permission::Disabled,
        ForceCharge::Requested,
        ForceCharge::NotRequested,
    );
    assert_eq!(r.encode().to_string(), "35C#A000");
    assert_eq!(
        Requests {
            other_bits: 0xF5,
            ..r
        }
        .raw(),
        0xA5,
        "bits above 3 of other_bits are not sent"
    );
    let info = ProductInfo::from_data(&[0x34, 0x12, 0x04, 0x0F, 0x64, 0x00]).unwrap();
    assert_eq!(info.encode().to_string(), "35F#3412040F6400");
    assert_eq!(ProductInfo::from_data(&[0; 5]), None);
    assert_eq!(
        EnergyCounters {
            charged: DeciKilowattHours(10_000),
            discharged: DeciKilowattHours(1),
        }
        .encode()
        .to_string(),
        "378#1027000001000000"
    );
    assert_eq!(
        InstalledCapacity {
            capacity: AmpHours(300)
        }
        .encode()
        .to_string(),
        "379#2C01"
    );
    let text = TextFrame::new(FrameKind::Manufacturer, "VOLTARA").unwrap();
    assert_eq!(text.encode().to_string(), "35E#564F4C5441524100");
    assert_eq!(
        AlarmStatus::from_bytes([0xAA; 8]).encode().to_string(),
        "35A#AAAAAAAAAAAAAAAA"
    );
}

#[test]
fn a_0x35a_field_reading_11_decodes_as_invalid_and_re_encodes_as_sent() {
    let data = [0xAA, 0xAB, 0xAA, 0x02, 0xAA, 0xAA, 0xAA, 0x02];
    let status = AlarmStatus::decode(&frame(0x35A, &data)).unwrap();
    assert_eq!(
        status.state(Severity::Alarm, AlarmField::LowTemperature),
        FlagState::Invalid
    );
    assert_eq!(
        status.invalid(Severity::Alarm),
        vec![AlarmField::LowTemperature]
    );
    assert!(status.active(Severity::Alarm).is_empty());
    assert_eq!(status.encode().data(), &data);
    // Built field by field, as a simulated battery does.
    let mut built = AlarmStatus::default();
    for field in AlarmField::ALL {
        for severity in [Severity::Alarm, Severity::Warning] {
            built.set(severity, field, FlagState::Ok);
        }
    }
    built.set(
        Severity::Alarm,
        AlarmField::LowTemperature,
        FlagState::Invalid,
    );
    assert_eq!(built, status);
}

#[test]
fn typed_decoders_refuse_other_identifiers() {
    let e = ChargeLimits::decode(&frame(0x356, &[0; 8])).unwrap_err();
    assert_eq!(
        e,
        DecodeError::WrongId {
            kind: FrameKind::Limits,
            id: CanId::standard(0x356).unwrap()
        }
    );
    assert_eq!(e.to_string(), "0x351 limits: frame 356 is another frame");
    assert_eq!(e.reason(), RejectReason::WrongId);
    let ext = CanFrame::new(CanId::extended(0x35A).unwrap(), &[0xAA; 8]).unwrap();
    assert!(matches!(
        AlarmStatus::decode(&ext),
        Err(DecodeError::WrongId { .. })
    ));
    let e = TextFrame::decode(&frame(0x351, b"PYLON\0\0\0")).unwrap_err();
    assert_eq!(e.to_string(), "frame 351 is no BMS-Can text frame");
    assert_eq!(e.kind(), None);
    // Any text kind decodes through TextFrame, keeping its kind.
    let t = TextFrame::decode(&frame(0x381, b"34\0\0\0\0\0\0")).unwrap();
    assert_eq!((t.kind(), t.text()), (FrameKind::Serial2, "34"));
}

#[test]
fn text_frames_are_built_only_from_what_the_frame_carries() {
    assert_eq!(
        TextFrame::new(FrameKind::Limits, "X"),
        Err(TextError::NotText(FrameKind::Limits))
    );
    assert_eq!(
        TextFrame::new(FrameKind::Serial1, "123456789"),
        Err(TextError::TooLong {
            kind: FrameKind::Serial1,
            len: 9
        })
    );
    assert_eq!(
        TextFrame::new(FrameKind::ProductName, "LFP\u{b0}"),
        Err(TextError::NotAscii {
            kind: FrameKind::ProductName,
            found: '\u{b0}'
        })
    );
    // A space at the seam of a half survives; a whole text's spaces are trimmed.
    let half = TextFrame::new(FrameKind::BmsName1, "Battery ").unwrap();
    assert_eq!(TextFrame::decode(&half.encode()), Ok(half));
    let whole = TextFrame::new(FrameKind::Manufacturer, " BYD ").unwrap();
    assert_eq!(TextFrame::decode(&whole.encode()).unwrap().text(), "BYD");
}

#[test]
fn gx_frames() {
    assert_eq!(KeepAlive.encode().to_string(), "305#0000000000000000");
    assert_eq!(
        GxIdentification.encode().to_string(),
        "307#0000000056494300"
    );
    assert_eq!(KeepAlive::decode(&frame(0x305, &[])), Ok(KeepAlive));
    assert_eq!(
        GxIdentification::decode(&frame(0x307, &[1, 2, 3, 4, b'V', b'I', b'C'])),
        Ok(GxIdentification)
    );
    let e =
        GxIdentification::decode(&frame(0x307, &[0, 0, 0, 0, b'S', b'M', b'A', 0])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "0x307 GX identification: bytes 4-6 are [53, 4D, 41], not 'VIC'"
    );
    assert_eq!(
        GxIdentification::decode(&frame(0x307, &[0; 6])),
        Err(GxFrameError::TooShort { len: 6 })
    );
    assert_eq!(
        KeepAlive::decode(&frame(0x307, &[0; 8])),
        Err(GxFrameError::WrongId {
            expected: 0x305,
            id: CanId::standard(0x307).unwrap()
        })
    );
    let ext = CanFrame::new(CanId::extended(0x305).unwrap(), &[0; 8]).unwrap();
    assert!(KeepAlive::decode(&ext).is_err());
    assert!(!is_gx_frame(&ext));
}
