//! The simulated battery's frames, decoded by the engine's monitor in virtual time: the
//! simulator's physical values reach the battery state with their scales and signs. (Both
//! sides share the codec of `bmsfw_protocols::bms_can`; its layout is checked against
//! the BMS-Can table byte by byte in its own tests.)

use bmsfw_core::telemetry::{
    AlarmField, BmsCanMonitor, Broadcasters, Communication, DEFAULT_MAX_AGE, FrameKind,
    FrameOutcome, Permission,
};
use bmsfw_plugin_api::Timestamp;
use bmsfw_sim::battery::{
    Alarm, BatteryConfig, BatteryModel, CurrentProfile, IdentityConfig, Level, ModuleState,
    PowerState,
};

fn secs_f(s: f64) -> Timestamp {
    Timestamp::from_micros((s * 1e6) as u64)
}

fn battery() -> BatteryModel {
    let mut config = BatteryConfig::new(IdentityConfig {
        manufacturer: "VOLTARA".into(),
        bms_name: "VX-48 Pack BMS".into(),
        product_code: 0x0B17,
        firmware: [0x6E, 0x01],
        capacity_ah: 300,
        product_info_tail: Some([0x02, 0x07]),
        serial: Some("VX4800012345".into()),
        product_name: Some("VX48".into()),
    });
    config.modules = 3;
    config.initial_soc = 64.0;
    config.temperature_c = -3.0;
    config.ambient_c = -3.0;
    config.profile = CurrentProfile::Constant { amps: -45.5 };
    BatteryModel::new(config, Timestamp::ZERO).unwrap()
}

/// Runs the model and feeds every frame to the monitor until `until`.
fn pump(model: &mut BatteryModel, monitor: &mut BmsCanMonitor, until: Timestamp) {
    while let Some(t) = model.poll_timeout() {
        if t > until {
            break;
        }
        while let Some(frame) = model.poll_transmit(t) {
            let outcome = monitor.handle_frame(t, &frame);
            assert!(
                matches!(outcome, FrameOutcome::Applied(_)),
                "{frame}: {outcome:?}"
            );
        }
    }
    model.advance(until);
}

#[test]
fn every_frame_of_the_simulated_battery_decodes_to_its_state() {
    let mut model = battery();
    let mut monitor = BmsCanMonitor::new("sim0");
    pump(&mut model, &mut monitor, secs_f(1.0));
    let state = monitor.battery().expect("battery seen");
    let snap = model.snapshot();
    assert_eq!(
        state.communication(secs_f(1.0), DEFAULT_MAX_AGE),
        Communication::Communicating
    );
    assert_eq!(monitor.rejections().total(), 0);

    let id = state.identity();
    assert_eq!(id.manufacturer.as_deref(), Some("VOLTARA"));
    assert_eq!(id.bms_name.as_deref(), Some("VX-48 Pack BMS"));
    assert_eq!(
        id.product_info_raw(),
        Some(&[0x17, 0x0B, 0x6E, 0x01, 0x2C, 0x01, 0x02, 0x07][..])
    );
    assert_eq!(id.product_code(), Some(0x0B17));
    assert_eq!(id.firmware_bytes(), Some([0x6E, 0x01]));
    assert_eq!(id.capacity().map(|c| c.0), Some(300));
    assert_eq!(id.serial.as_deref(), Some("VX4800012345"));
    assert_eq!(id.product_name.as_deref(), Some("VX48"));
    assert_eq!(id.modules.map(|m| (m.online, m.offline)), Some((3, 0)));

    let m = state.measurements().unwrap();
    assert_eq!(m.current.0, -455);
    assert_eq!(m.temperature.0, -30);
    assert!((m.voltage.volts() - snap.voltage).abs() <= 0.005);
    let soc = state.state_of_charge().unwrap();
    assert_eq!(soc.soc.0, 64);
    assert_eq!(soc.soh.0, 100);
    let limits = state.limits().unwrap();
    assert_eq!(limits.charge_voltage.0, 568);
    assert_eq!(limits.charge_current.0, 0, "no charging below 0 degC");
    assert_eq!(limits.discharge_current.0, 3000);
    let req = state.requests().unwrap();
    assert_eq!(
        (req.charge, req.discharge),
        (Permission::Disabled, Permission::Enabled)
    );
    let cells = state.cell_extremes().unwrap();
    assert!(cells.min_cell_voltage < cells.max_cell_voltage);
    assert!((f64::from(cells.min_cell_temperature.0) - (273.15 - 4.0)).abs() <= 1.0);
    assert!(state.active_alarms().is_empty());
    assert!(state.active_warnings().is_empty());
    assert_eq!(
        monitor.broadcasters(secs_f(1.0), DEFAULT_MAX_AGE),
        Broadcasters::Single
    );
}

#[test]
fn changes_made_by_a_test_reach_the_monitor() {
    let mut model = battery();
    let mut monitor = BmsCanMonitor::new("sim0");
    pump(&mut model, &mut monitor, secs_f(1.0));

    model.raise(secs_f(1.0), Level::Alarm, Alarm::LowTemperature);
    model.raise(secs_f(1.0), Level::Warning, Alarm::HighDischargeCurrent);
    model
        .set_module(secs_f(1.0), 2, ModuleState::Offline)
        .unwrap();
    model.set_firmware_bytes([0x6F, 0x00]);
    pump(&mut model, &mut monitor, secs_f(2.0));
    let state = monitor.battery().unwrap();
    assert_eq!(state.active_alarms(), vec![AlarmField::LowTemperature]);
    assert_eq!(
        state.active_warnings(),
        vec![AlarmField::HighDischargeCurrent]
    );
    let modules = state.identity().modules.unwrap();
    assert_eq!((modules.online, modules.offline), (2, 1));
    assert_eq!(state.identity().firmware_bytes(), Some([0x6F, 0x00]));
    assert_eq!(
        state.measurements().unwrap().current.0,
        0,
        "alarm stops current"
    );
    assert_eq!(monitor.identity_changes(), 1);

    // Power cut: the required frames go stale after the freshness limit.
    model.set_power(secs_f(2.0), PowerState::Off);
    pump(&mut model, &mut monitor, secs_f(10.0));
    let state = monitor.battery().unwrap();
    assert_eq!(
        state.communication(secs_f(4.0), DEFAULT_MAX_AGE),
        Communication::Communicating
    );
    assert_eq!(
        state.communication(secs_f(5.1), DEFAULT_MAX_AGE),
        Communication::Stale(FrameKind::REQUIRED.to_vec())
    );
    // Power back: communicating again within a second.
    model.set_power(secs_f(10.0), PowerState::On);
    pump(&mut model, &mut monitor, secs_f(11.0));
    assert_eq!(
        monitor
            .battery()
            .unwrap()
            .communication(secs_f(11.0), DEFAULT_MAX_AGE),
        Communication::Communicating
    );
}

mod any_history {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Wait(u64),
        Soc(f64),
        Temperature(f64),
        Profile(f64),
        Raise(usize, bool),
        Clear(usize, bool),
        Module(u16, bool),
        Power(bool),
        Firmware([u8; 2]),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u64..120_000).prop_map(Op::Wait),
            (-50.0f64..150.0).prop_map(Op::Soc),
            (-60.0f64..120.0).prop_map(Op::Temperature),
            (-500.0f64..500.0).prop_map(Op::Profile),
            (0usize..13, any::<bool>()).prop_map(|(a, w)| Op::Raise(a, w)),
            (0usize..13, any::<bool>()).prop_map(|(a, w)| Op::Clear(a, w)),
            (0u16..4, any::<bool>()).prop_map(|(m, on)| Op::Module(m, on)),
            any::<bool>().prop_map(Op::Power),
            any::<[u8; 2]>().prop_map(Op::Firmware),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever a test does to the battery, every frame it sends is valid BMS-Can
        /// that the engine accepts, and the decoded SOC is the model's.
        #[test]
        fn every_frame_decodes(ops in proptest::collection::vec(op(), 1..25)) {
            let mut model = battery();
            let mut monitor = BmsCanMonitor::new("p");
            let mut now = Timestamp::ZERO;
            for op in ops {
                let level = |w: bool| if w { Level::Warning } else { Level::Alarm };
                match op {
                    Op::Wait(ms) => {
                        let until = now + std::time::Duration::from_millis(ms);
                        while let Some(t) = model.poll_timeout().filter(|&t| t <= until) {
                            while let Some(frame) = model.poll_transmit(t) {
                                let outcome = monitor.handle_frame(t, &frame);
                                prop_assert!(matches!(outcome, FrameOutcome::Applied(_)), "{} {:?}", frame, outcome);
                            }
                        }
                        model.advance(until);
                        now = until;
                    }
                    Op::Soc(s) => model.set_soc(now, s),
                    Op::Temperature(t) => model.set_temperature(now, t),
                    Op::Profile(a) => model.set_profile(now, CurrentProfile::Constant { amps: a }),
                    Op::Raise(a, w) => model.raise(now, level(w), Alarm::ALL[a]),
                    Op::Clear(a, w) => model.clear(now, level(w), Alarm::ALL[a]),
                    Op::Module(m, on) => model
                        .set_module(now, m % 3, if on { ModuleState::Online } else { ModuleState::Offline })
                        .unwrap(),
                    Op::Power(on) => model.set_power(now, if on { PowerState::On } else { PowerState::Off }),
                    Op::Firmware(fw) => model.set_firmware_bytes(fw),
                }
                let snap = model.snapshot();
                prop_assert!((0.0..=100.0).contains(&snap.soc));
                prop_assert!(snap.voltage.is_finite() && snap.temperature.is_finite());
            }
            prop_assert_eq!(monitor.rejections().total(), 0);
            if let Some(state) = monitor.battery() {
                if let Some(soc) = state.state_of_charge() {
                    prop_assert!(soc.soc.0 <= 100);
                }
            }
        }
    }
}
