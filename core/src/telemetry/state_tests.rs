//! Freshness, identity assembly, rejection counting and broadcaster detection.

use super::*;
use bmsfw_plugin_api::{CanFrame, CanId, Timestamp};
use std::time::Duration;

fn frame(id: u16, data: &[u8]) -> CanFrame {
    CanFrame::new(CanId::standard(id).unwrap(), data).unwrap()
}

fn ms(ms: u64) -> Timestamp {
    Timestamp::from_micros(ms * 1000)
}

fn required_frames() -> Vec<CanFrame> {
    vec![
        frame(0x351, &[0x28, 0x02, 0xE8, 0x03, 0xE8, 0x03, 0xD0, 0x01]),
        frame(0x355, &[80, 0, 100, 0]),
        frame(0x356, &[0x14, 0x14, 0x64, 0x00, 0xFA, 0x00]),
        frame(0x35A, &[0xAA; 8]),
    ]
}

#[test]
fn communicating_needs_every_required_frame_fresh() {
    let mut m = BmsCanMonitor::new("sim0");
    assert!(m.battery().is_none());
    for f in required_frames() {
        assert!(matches!(
            m.handle_frame(ms(0), &f),
            FrameOutcome::Applied(_)
        ));
    }
    let b = m.battery().unwrap();
    let max = DEFAULT_MAX_AGE;
    assert_eq!(b.communication(ms(3000), max), Communication::Communicating);
    assert_eq!(
        b.communication(Timestamp::from_micros(3_000_001), max),
        Communication::Stale(FrameKind::REQUIRED.to_vec())
    );
    // Refresh two of them at 2 s: at 4 s only the other two are stale.
    m.handle_frame(ms(2000), &required_frames()[0]);
    m.handle_frame(ms(2000), &required_frames()[3]);
    let b = m.battery().unwrap();
    assert_eq!(
        b.stale_required(ms(4000), max),
        vec![FrameKind::StateOfCharge, FrameKind::Measurements]
    );
    assert!(b.is_fresh(FrameKind::Limits, ms(4000), max));
    assert!(!b.is_fresh(FrameKind::Measurements, ms(4000), max));
    assert_eq!(
        b.age(FrameKind::Limits, ms(4000)),
        Some(Duration::from_secs(2))
    );
    assert_eq!(b.last_frame_at(), Some(ms(2000)));
    assert_eq!(b.frames_received(FrameKind::Limits), 2);
}

#[test]
fn a_missing_required_frame_is_stale() {
    let mut m = BmsCanMonitor::new("sim0");
    for f in &required_frames()[..3] {
        m.handle_frame(ms(0), f);
    }
    let b = m.battery().unwrap();
    assert_eq!(
        b.communication(ms(0), DEFAULT_MAX_AGE),
        Communication::Stale(vec![FrameKind::Alarms])
    );
    assert!(!b.is_fresh(FrameKind::Alarms, ms(0), DEFAULT_MAX_AGE));
    assert_eq!(b.age(FrameKind::Alarms, ms(0)), None);
}

#[test]
fn rejected_frames_change_nothing_and_are_counted() {
    let mut m = BmsCanMonitor::new("sim0");
    m.handle_frame(ms(0), &frame(0x356, &[0x14, 0x14, 0x64, 0x00, 0xFA, 0x00]));
    m.handle_frame(ms(0), &frame(0x355, &[80, 0, 100, 0]));
    let out = m.handle_frame(ms(500), &frame(0x356, &[0xFF, 0xFF, 0xFF]));
    assert!(matches!(
        out,
        FrameOutcome::Rejected(DecodeError::TooShort { len: 3, min: 6, .. })
    ));
    m.handle_frame(ms(600), &frame(0x356, &[0x00]));
    m.handle_frame(ms(700), &frame(0x355, &[200, 0, 100, 0]));
    m.handle_frame(ms(800), &frame(0x35E, b"\xFFPYL"));
    assert_eq!(
        m.handle_frame(ms(900), &frame(0x305, &[0; 8])),
        FrameOutcome::NotBmsCan
    );
    let b = m.battery().unwrap();
    assert_eq!(b.measurements().unwrap().voltage, CentiVolts(5140));
    assert_eq!(b.last_seen(FrameKind::Measurements), Some(ms(0)));
    assert_eq!(b.state_of_charge().unwrap().soc, Percent(80));
    assert_eq!(b.identity().manufacturer, None);
    let r = m.rejections();
    assert_eq!(r.get(FrameKind::Measurements, RejectReason::TooShort), 2);
    assert_eq!(r.get(FrameKind::StateOfCharge, RejectReason::OutOfRange), 1);
    assert_eq!(r.get(FrameKind::Manufacturer, RejectReason::NotAscii), 1);
    assert_eq!(r.by_reason(RejectReason::TooShort), 2);
    assert_eq!(r.total(), 4);
    assert_eq!(r.iter().count(), 3);
    assert_eq!(m.other_frames(), 1);
}

#[test]
fn a_first_rejected_frame_creates_no_battery() {
    let mut m = BmsCanMonitor::new("sim0");
    m.handle_frame(ms(0), &frame(0x351, &[1, 2, 3]));
    assert!(m.battery().is_none());
    assert_eq!(m.rejections().total(), 1);
}

#[test]
fn identity_is_assembled_from_its_frames() {
    let mut m = BmsCanMonitor::new("sim0");
    for f in [
        frame(0x35E, b"PYLON\0\0\0"),
        frame(0x35F, &[0x34, 0x12, 0x04, 0x0F, 0x64, 0x00, 0, 0]),
        frame(0x370, b"US5000 B"),
        frame(0x371, b"MS\0\0\0\0\0\0"),
        frame(0x372, &[3, 0, 0, 0, 0, 0, 1, 0]),
        frame(0x379, &[0x2C, 0x01]),
        frame(0x380, b"PPTAP012"),
        frame(0x381, b"34\0\0\0\0\0\0"),
        frame(0x382, b"LFP48\0\0\0"),
    ] {
        assert!(matches!(
            m.handle_frame(ms(10), &f),
            FrameOutcome::Applied(_)
        ));
    }
    let id = m.battery().unwrap().identity();
    assert_eq!(id.manufacturer.as_deref(), Some("PYLON"));
    assert_eq!(id.bms_name.as_deref(), Some("US5000 BMS"));
    assert_eq!(
        id.product_info_raw(),
        Some(&[0x34, 0x12, 0x04, 0x0F, 0x64, 0, 0, 0][..])
    );
    assert_eq!(id.product_code(), Some(0x1234));
    assert_eq!(id.firmware_bytes(), Some([0x04, 0x0F]));
    assert_eq!(id.capacity(), Some(AmpHours(300)));
    assert_eq!(id.modules.map(|mc| (mc.online, mc.offline)), Some((3, 1)));
    assert_eq!(id.serial.as_deref(), Some("PPTAP01234"));
    assert_eq!(id.product_name.as_deref(), Some("LFP48"));
    assert_eq!(
        id.to_string(),
        "PYLON US5000 BMS (fw 04 0F, product 0x1234, 300 Ah, serial PPTAP01234)"
    );
    // Without 0x379 the capacity of 0x35F stands.
    let mut m = BmsCanMonitor::new("sim1");
    m.handle_frame(ms(0), &frame(0x35F, &[0x34, 0x12, 0x04, 0x0F, 0x64, 0x00]));
    assert_eq!(
        m.battery().unwrap().identity().capacity(),
        Some(AmpHours(100))
    );
    assert_eq!(m.battery().unwrap().identity().bms_name, None);
}

#[test]
fn alarms_in_state() {
    let mut m = BmsCanMonitor::new("sim0");
    let mut raw = [0xAA; 8];
    raw[0] = 0b1010_0110; // high voltage active
    raw[7] = 0b1010_1001; // cell imbalance warning
    m.handle_frame(ms(0), &frame(0x35A, &raw));
    let b = m.battery().unwrap();
    assert_eq!(b.active_alarms(), vec![AlarmField::HighVoltage]);
    assert_eq!(b.active_warnings(), vec![AlarmField::CellImbalance]);
}

#[test]
fn a_firmware_update_is_one_identity_change_interleaved_bmss_are_a_conflict() {
    let window = Duration::from_secs(10);
    let mut m = BmsCanMonitor::new("sim0");
    let old = frame(0x35F, &[0x34, 0x12, 0x04, 0x0F, 0x64, 0x00]);
    let new = frame(0x35F, &[0x34, 0x12, 0x04, 0x10, 0x64, 0x00]);
    for s in 0..5 {
        m.handle_frame(ms(s * 1000), &old);
    }
    for s in 5..10 {
        m.handle_frame(ms(s * 1000), &new);
    }
    assert_eq!(m.identity_changes(), 1);
    assert_eq!(m.broadcasters(ms(10_000), window), Broadcasters::Single);

    let a = frame(0x35E, b"PYLON\0\0\0");
    let b = frame(0x35E, b"BYD\0\0\0\0\0");
    for s in 0..6 {
        m.handle_frame(ms(20_000 + s * 500), if s % 2 == 0 { &a } else { &b });
    }
    assert_eq!(m.identity_changes(), 6);
    match m.broadcasters(ms(23_000), window) {
        Broadcasters::Conflicting { changes, last } => {
            assert_eq!(changes, 5);
            assert_eq!(last.kind, FrameKind::Manufacturer);
            assert_eq!(last.at, ms(22_500));
        }
        other => panic!("{other:?}"),
    }
    // Long after the interleaving stopped, the bus counts as single again.
    assert_eq!(m.broadcasters(ms(60_000), window), Broadcasters::Single);
}
