//! The battery model's broadcast periods, frame contents and plausibility.

use super::*;
use bmsfw_plugin_api::{CanFrame, Timestamp};
use std::collections::BTreeMap;

fn identity() -> IdentityConfig {
    IdentityConfig {
        manufacturer: "VOLTARA".into(),
        bms_name: "VX-48 Pack BMS".into(),
        product_code: 0x1234,
        firmware: [0x04, 0x0F],
        capacity_ah: 200,
        product_info_tail: None,
        serial: Some("VX4800012345".into()),
        product_name: Some("VX48".into()),
    }
}

fn model(config: BatteryConfig) -> BatteryModel {
    BatteryModel::new(config, Timestamp::ZERO).unwrap()
}

/// Every frame sent in `[from, until)`, with its time.
fn run(m: &mut BatteryModel, until: Timestamp) -> Vec<(Timestamp, CanFrame)> {
    let mut out = Vec::new();
    while let Some(t) = m.poll_timeout() {
        if t >= until {
            break;
        }
        while let Some(f) = m.poll_transmit(t) {
            out.push((t, f));
        }
    }
    m.advance(until);
    out
}

fn secs(s: u64) -> Timestamp {
    Timestamp::from_micros(s * 1_000_000)
}

fn last(frames: &[(Timestamp, CanFrame)], id: u32) -> CanFrame {
    frames
        .iter()
        .rev()
        .find(|(_, f)| f.id().raw() == id)
        .map(|&(_, f)| f)
        .unwrap_or_else(|| panic!("no frame {id:03X}"))
}

fn u16_at(f: &CanFrame, i: usize) -> u16 {
    u16::from_le_bytes([f.data()[i], f.data()[i + 1]])
}

fn i16_at(f: &CanFrame, i: usize) -> i16 {
    i16::from_le_bytes([f.data()[i], f.data()[i + 1]])
}

#[test]
fn broadcasts_the_whole_set_at_its_periods() {
    let mut m = model(BatteryConfig::new(identity()));
    let frames = run(&mut m, secs(10));
    let mut per_id: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for (t, f) in &frames {
        assert!(!f.id().is_extended());
        per_id.entry(f.id().raw()).or_default().push(t.as_micros());
    }
    let expected: Vec<u32> = vec![
        0x351, 0x355, 0x356, 0x359, 0x35A, 0x35C, 0x35E, 0x35F, 0x370, 0x371, 0x372, 0x373, 0x378,
        0x379, 0x380, 0x381, 0x382,
    ];
    assert_eq!(per_id.keys().copied().collect::<Vec<_>>(), expected);
    for (id, times) in &per_id {
        let period = match id {
            0x356 => 200_000,
            0x351 | 0x35A => 500_000,
            _ => 1_000_000,
        };
        assert_eq!(times.len() as u64, 10_000_000 / period, "{id:03X}");
        assert!(
            times[0] < 1_000_000,
            "{id:03X} starts within the first second"
        );
        for w in times.windows(2) {
            assert_eq!(w[1] - w[0], period, "{id:03X}");
        }
    }
    // Frames are spread: never more than one frame at an instant.
    let mut instants: Vec<u64> = frames.iter().map(|(t, _)| t.as_micros()).collect();
    let n = instants.len();
    instants.dedup();
    assert_eq!(instants.len(), n);
}

#[test]
fn optional_frames_follow_the_configuration() {
    let mut id = identity();
    id.bms_name = "SHORT".into();
    id.serial = None;
    id.product_name = None;
    let mut config = BatteryConfig::new(id);
    config.extreme_cell_ids = ExtremeCellIds::Sent;
    let mut m = model(config);
    let ids: std::collections::BTreeSet<u32> = run(&mut m, secs(2))
        .iter()
        .map(|(_, f)| f.id().raw())
        .collect();
    for absent in [0x371, 0x380, 0x381, 0x382] {
        assert!(!ids.contains(&absent), "{absent:03X}");
    }
    for present in [0x370, 0x374, 0x375, 0x376, 0x377] {
        assert!(ids.contains(&present), "{present:03X}");
    }
}

#[test]
fn identity_frames_carry_the_configured_bytes() {
    let mut m = model(BatteryConfig::new(identity()));
    let frames = run(&mut m, secs(1));
    assert_eq!(last(&frames, 0x35E).data(), b"VOLTARA\0");
    assert_eq!(last(&frames, 0x370).data(), b"VX-48 Pa");
    assert_eq!(last(&frames, 0x371).data(), b"ck BMS\0\0");
    assert_eq!(
        last(&frames, 0x35F).data(),
        &[0x34, 0x12, 0x04, 0x0F, 200, 0]
    );
    assert_eq!(last(&frames, 0x379).data(), &[200, 0]);
    assert_eq!(last(&frames, 0x380).data(), b"VX480001");
    assert_eq!(last(&frames, 0x381).data(), b"2345\0\0\0\0");
    assert_eq!(last(&frames, 0x382).data(), b"VX48\0\0\0\0");

    m.set_firmware_bytes([0x04, 0x10]);
    let frames = run(&mut m, secs(2));
    assert_eq!(
        last(&frames, 0x35F).data(),
        &[0x34, 0x12, 0x04, 0x10, 200, 0]
    );
    m.set_product_info(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    let frames = run(&mut m, secs(3));
    assert_eq!(last(&frames, 0x35F).data(), &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(
        m.set_product_info(&[1, 2, 3]),
        Err(ConfigError::ProductInfoLength { len: 3 })
    );
}

#[test]
fn measurements_follow_the_physics() {
    let mut config = BatteryConfig::new(identity());
    config.initial_soc = 50.0;
    config.profile = CurrentProfile::Constant { amps: -40.0 };
    config.temperature_c = -2.5;
    config.ambient_c = -2.5;
    let mut m = model(config);
    let frames = run(&mut m, secs(1));
    let meas = last(&frames, 0x356);
    let snap = m.snapshot();
    assert_eq!(i16_at(&meas, 2), -400, "current -40.0 A");
    assert_eq!(i16_at(&meas, 4), -25, "temperature -2.5 degC");
    let volts = f64::from(i16_at(&meas, 0)) / 100.0;
    assert!(
        (volts - snap.voltage).abs() < 0.02,
        "{volts} vs {}",
        snap.voltage
    );
    assert!(
        volts < 16.0 * 3.29,
        "discharging sags below the 50 % rest voltage"
    );
    let soc = last(&frames, 0x355);
    assert_eq!(u16_at(&soc, 0), 50);
    assert_eq!(u16_at(&soc, 2), 100);
    // Below 0 degC the BMS forbids charging: CCL 0, charge bit clear, modules block charge.
    let limits = last(&frames, 0x351);
    assert_eq!(u16_at(&limits, 0), 568, "CVL 16 x 3.55 V");
    assert_eq!(i16_at(&limits, 2), 0);
    assert_eq!(i16_at(&limits, 4), 2000, "DCL 200 A");
    assert_eq!(u16_at(&limits, 6), 480, "DVL 16 x 3.0 V");
    assert_eq!(last(&frames, 0x35C).data()[0], 0x40);
    assert_eq!(last(&frames, 0x372).data(), &[1, 0, 1, 0, 0, 0, 0, 0]);

    // One hour later: 40 Ah out of 200 Ah, 20 % less.
    let frames = run(&mut m, secs(3601));
    let soc = last(&frames, 0x355);
    assert_eq!(u16_at(&soc, 0), 30);
    let hi_res = u16_at(&soc, 4);
    assert!((2995..=3005).contains(&hi_res), "{hi_res}");
    let energy = last(&frames, 0x378);
    let discharged = u32::from_le_bytes(energy.data()[4..8].try_into().unwrap());
    // About 40 Ah x 52 V = 2.1 kWh.
    assert!((19..=22).contains(&discharged), "{discharged}");
}

#[test]
fn a_day_of_cycling_stays_plausible() {
    let mut config = BatteryConfig::new(identity());
    config.initial_soc = 30.0;
    config.profile = CurrentProfile::Cycle {
        charge_amps: 80.0,
        discharge_amps: 60.0,
        low_soc: 20.0,
        high_soc: 90.0,
    };
    let mut m = model(config);
    let mut last_soc = m.snapshot().soc;
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for minute in 1..=(24 * 60) {
        m.advance(secs(minute * 60));
        let s = m.snapshot();
        // SOC moves in the direction of the current.
        if s.current > 0.0 {
            assert!(s.soc >= last_soc - 1e-9);
        } else if s.current < 0.0 {
            assert!(s.soc <= last_soc + 1e-9);
        }
        assert!(
            (16.0 * 2.8..=16.0 * 3.65).contains(&s.voltage),
            "{}",
            s.voltage
        );
        assert!((20.0..=40.0).contains(&s.temperature), "{}", s.temperature);
        assert!(s.current <= s.charge_current_limit + 1e-9);
        assert!(-s.current <= s.discharge_current_limit + 1e-9);
        lo = lo.min(s.soc);
        hi = hi.max(s.soc);
        last_soc = s.soc;
    }
    assert!(lo < 21.0 && lo > 19.0, "{lo}");
    assert!(hi > 89.0 && hi < 91.0, "{hi}");
}

#[test]
fn alarms_are_raised_and_cleared_in_the_frames() {
    let mut config = BatteryConfig::new(identity());
    config.profile = CurrentProfile::Constant { amps: 30.0 };
    let mut m = model(config);
    let frames = run(&mut m, secs(1));
    assert_eq!(
        last(&frames, 0x35A).data(),
        &[0xAA, 0xAA, 0xAA, 0x02, 0xAA, 0xAA, 0xAA, 0x02]
    );
    m.raise(secs(1), Level::Alarm, Alarm::HighTemperature);
    m.raise(secs(1), Level::Warning, Alarm::CellImbalance);
    let frames = run(&mut m, secs(2));
    let a = last(&frames, 0x35A);
    assert_eq!(a.data()[0], 0b0110_1010);
    assert_eq!(a.data()[7], 0x01);
    let p = last(&frames, 0x359);
    assert_eq!(&p.data()[..4], &[0x08, 0, 0, 0]);
    assert_eq!(&p.data()[4..7], &[1, b'P', b'N']);
    // A high-temperature alarm stops current both ways.
    assert_eq!(m.snapshot().current, 0.0);
    assert_eq!(last(&frames, 0x35C).data()[0], 0x00);
    m.clear(secs(2), Level::Alarm, Alarm::HighTemperature);
    let frames = run(&mut m, secs(3));
    assert_eq!(last(&frames, 0x35A).data()[0], 0xAA);
    assert_eq!(m.snapshot().current, 30.0);
    m.clear_all_alarms(secs(3));
    assert!(m.snapshot().warnings.is_empty());
}

#[test]
fn modules_go_offline_and_online() {
    let mut config = BatteryConfig::new(identity());
    config.modules = 4;
    config.max_discharge_amps = 400.0;
    let mut m = model(config);
    m.set_module(secs(0), 1, ModuleState::Offline).unwrap();
    m.set_module(secs(0), 3, ModuleState::Offline).unwrap();
    let frames = run(&mut m, secs(1));
    assert_eq!(last(&frames, 0x372).data(), &[2, 0, 0, 0, 0, 0, 2, 0]);
    assert_eq!(last(&frames, 0x359).data()[4], 2);
    assert_eq!(
        i16_at(&last(&frames, 0x351), 4),
        2000,
        "half the modules, half the DCL"
    );
    m.set_module(secs(1), 1, ModuleState::Online).unwrap();
    let frames = run(&mut m, secs(2));
    assert_eq!(last(&frames, 0x372).data(), &[3, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(
        m.set_module(secs(2), 4, ModuleState::Offline),
        Err(ConfigError::NoSuchModule {
            index: 4,
            modules: 4
        })
    );
    assert_eq!(m.modules()[1], ModuleState::Online);
}

#[test]
fn a_power_cut_silences_the_battery_until_restored() {
    let mut config = BatteryConfig::new(identity());
    config.profile = CurrentProfile::Constant { amps: -20.0 };
    let mut m = model(config);
    run(&mut m, secs(1));
    m.set_power(secs(1), PowerState::Off);
    assert_eq!(m.poll_timeout(), None);
    assert_eq!(m.poll_transmit(secs(5)), None);
    let soc = m.snapshot().soc;
    m.advance(secs(100));
    assert_eq!(m.snapshot().current, 0.0);
    assert_eq!(m.snapshot().soc, soc, "no current without power");
    m.set_power(secs(100), PowerState::On);
    let frames = run(&mut m, secs(101));
    assert_eq!(
        frames.len(),
        23,
        "a full set in the first second after boot"
    );
    assert!(frames.iter().all(|(t, _)| *t >= secs(100)));
}

#[test]
fn a_silent_bms_keeps_conducting_and_resumes_on_a_fresh_schedule() {
    let mut config = BatteryConfig::new(identity());
    config.profile = CurrentProfile::Constant { amps: -20.0 };
    let mut m = model(config);
    run(&mut m, secs(1));
    m.set_telemetry(secs(1), Telemetry::Silent);
    assert_eq!(m.telemetry(), Telemetry::Silent);
    assert_eq!(m.poll_timeout(), None);
    assert_eq!(m.poll_transmit(secs(3)), None);
    let soc = m.snapshot().soc;
    m.advance(secs(4));
    assert!(m.snapshot().current < 0.0, "the pack still carries current");
    assert!(m.snapshot().soc < soc);
    m.set_telemetry(secs(4), Telemetry::Sending);
    let frames = run(&mut m, secs(5));
    assert_eq!(
        frames.len(),
        23,
        "a full set in the first second after the restart"
    );
    assert!(frames.iter().all(|(t, _)| *t >= secs(4)));
}

#[test]
fn the_gx_keep_alive_is_noted() {
    let mut m = model(BatteryConfig::new(identity()));
    assert_eq!(m.snapshot().gx, GxPresence::Unknown);
    let ka = CanFrame::new(bmsfw_plugin_api::CanId::standard(0x305).unwrap(), &[0; 8]).unwrap();
    m.handle_frame(secs(3), &ka);
    assert_eq!(m.snapshot().gx, GxPresence::Seen(secs(3)));
}

#[test]
fn invalid_configurations_are_refused() {
    let mut id = identity();
    id.manufacturer = "TOO LONG NAME".into();
    assert!(matches!(
        BatteryModel::new(BatteryConfig::new(id), Timestamp::ZERO),
        Err(ConfigError::TextLength {
            field: "manufacturer",
            len: 13,
            max: 8
        })
    ));
    let mut id = identity();
    id.bms_name = "Bätterie".into();
    assert!(matches!(
        BatteryModel::new(BatteryConfig::new(id), Timestamp::ZERO),
        Err(ConfigError::NotAscii {
            field: "bms_name",
            found: 'ä'
        })
    ));
    let mut c = BatteryConfig::new(identity());
    c.initial_soc = 101.0;
    let err = BatteryModel::new(c, Timestamp::ZERO).unwrap_err();
    assert_eq!(err.to_string(), "soc: 101 is outside 0 to 100 %");
    let mut c = BatteryConfig::new(identity());
    c.modules = 0;
    assert!(BatteryModel::new(c, Timestamp::ZERO).is_err());
    let mut c = BatteryConfig::new(identity());
    c.profile = CurrentProfile::Cycle {
        charge_amps: 10.0,
        discharge_amps: 10.0,
        low_soc: 60.0,
        high_soc: 50.0,
    };
    assert!(BatteryModel::new(c, Timestamp::ZERO).is_err());
    let mut c = BatteryConfig::new(identity());
    c.temperature_c = f64::NAN;
    assert!(BatteryModel::new(c, Timestamp::ZERO).is_err());
}
