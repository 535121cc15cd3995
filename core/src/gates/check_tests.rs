use super::*;
use crate::dotted_version::DottedVersion;
use crate::gates::inputs::VersionInputs;
use crate::gates::site::{GxFirmware, SiteSnapshot};
use crate::plugin::allowlist::FirmwareRange;
use crate::telemetry::Telemetry;
use crate::vrm::{Acknowledgement, Acknowledgements};

const MAX_AGE: Duration = Duration::from_secs(3);

fn t(ms: u64) -> Timestamp {
    Timestamp::from_micros(ms * 1000)
}

/// A battery that sent every required frame at `at`: SOC `soc` %, 25.0 °C, no alarm.
fn battery(at: Timestamp, soc: u16, deci_celsius: i16, alarms: [u8; 8]) -> BatteryState {
    let mut b = BatteryState::new();
    let frames: [(FrameKind, Vec<u8>); 5] = [
        (
            FrameKind::Limits,
            vec![0x30, 0x02, 0xE8, 0x03, 0xE8, 0x03, 0xB8, 0x01],
        ),
        (
            FrameKind::StateOfCharge,
            [soc.to_le_bytes(), 100u16.to_le_bytes()].concat(),
        ),
        (
            FrameKind::Measurements,
            [
                5200i16.to_le_bytes(),
                0i16.to_le_bytes(),
                deci_celsius.to_le_bytes(),
            ]
            .concat(),
        ),
        (FrameKind::Alarms, alarms.to_vec()),
        (FrameKind::Protection, vec![0, 0, 0, 0, 1, b'P', b'N', 0]),
    ];
    for (kind, data) in frames {
        b.apply(at, Telemetry::decode(kind, &data).unwrap());
    }
    b
}

fn version(major: u32, minor: u32) -> DecodedVersion {
    DecodedVersion {
        raw: vec![major as u8, minor as u8],
        display: format!("v{major}.{minor:02}"),
        comparable: vec![major, minor],
    }
}

struct World {
    battery: BatteryState,
    acks: Acknowledgements,
    site: SiteSnapshot,
    installed: DecodedVersion,
    target: DecodedVersion,
    range: FirmwareRange,
}

impl World {
    fn healthy() -> World {
        World {
            battery: battery(
                t(1000),
                80,
                250,
                [0xAA, 0xAA, 0xAA, 0x02, 0xAA, 0xAA, 0xAA, 0x02],
            ),
            acks: Acknowledgements::all(),
            site: SiteSnapshot::known(
                VrmPortalMode::Full,
                DottedVersion::from(vec![3, 70]),
                GridStatus::Connected,
            ),
            installed: version(1, 2),
            target: version(1, 5),
            range: FirmwareRange {
                from: DottedVersion::from(vec![1, 0]),
                to: DottedVersion::from(vec![1, 99]),
            },
        }
    }

    fn inputs(&self, moment: Moment) -> GateInputs<'_> {
        GateInputs {
            moment,
            now: t(1500),
            site: &self.site,
            bitrate: Some(500_000),
            controller: ControllerState::ErrorActive,
            battery: Some(&self.battery),
            silence: Silence::NotExpected,
            other_update: None,
            acknowledgements: &self.acks,
            versions: VersionInputs {
                policy: VersionPolicy::NewerOnly,
                installed: Some(&self.installed),
                target: Some(&self.target),
                approved: Some(&self.range),
            },
        }
    }
}

fn only_failure(report: &GateReport) -> &GateVerdict {
    let failures: Vec<_> = report.failures().collect();
    assert_eq!(failures.len(), 1, "{:#?}", report.verdicts);
    failures[0]
}

#[test]
fn a_healthy_site_passes_every_gate_and_reports_each_one() {
    let w = World::healthy();
    let report = evaluate(
        &w.inputs(Moment::BeforeTransfer),
        &GatesConfig::default(),
        MAX_AGE,
    );
    assert!(report.is_green(), "{:#?}", report.verdicts);
    let gates: Vec<Gate> = report.verdicts.iter().map(|v| v.gate).collect();
    assert_eq!(gates, Gate::ALL.to_vec());
}

#[test]
fn at_request_time_the_package_gates_are_deferred_not_skipped() {
    let w = World::healthy();
    let mut i = w.inputs(Moment::Request);
    i.versions.target = None;
    let report = evaluate(&i, &GatesConfig::default(), MAX_AGE);
    assert!(report.is_green());
    for gate in [Gate::VersionChoice, Gate::TargetApproved] {
        assert!(
            matches!(
                report.verdict(gate).unwrap().outcome,
                Outcome::Deferred { .. }
            ),
            "{gate}"
        );
    }
    // Right before the transfer an unknown target refuses.
    let mut i = w.inputs(Moment::BeforeTransfer);
    i.versions.target = None;
    let report = evaluate(&i, &GatesConfig::default(), MAX_AGE);
    assert_eq!(report.first_failure().unwrap().gate, Gate::VersionChoice);
    assert_eq!(report.failures().count(), 2);
}

/// Makes one gate fail and returns the inputs.
type Breaker = Box<dyn Fn(&mut World) -> GateInputs<'_>>;

/// Each gate, made to fail alone, refuses with its own code and names what it measured
/// and the limit.
#[test]
fn each_gate_refuses_alone_with_its_code() {
    let config = GatesConfig::default();
    let cases: Vec<(Gate, Breaker, &str, &str)> = vec![
        (
            Gate::VrmAccess,
            Box::new(|w| {
                w.site.vrm = SiteValue::Known(VrmPortalMode::ReadOnly);
                w.inputs(Moment::Request)
            }),
            "read-only",
            "full",
        ),
        (
            Gate::GxFirmware,
            Box::new(|w| {
                w.site.gx_firmware =
                    SiteValue::Known(GxFirmware::release(DottedVersion::from(vec![3, 50])));
                w.inputs(Moment::Request)
            }),
            "v3.50",
            "v3.60 or later",
        ),
        (
            Gate::BusBitrate,
            Box::new(|w| {
                let mut i = w.inputs(Moment::Request);
                i.bitrate = Some(250_000);
                i
            }),
            "250000 bit/s",
            "500000 bit/s",
        ),
        (
            Gate::StateOfCharge,
            Box::new(|w| {
                w.battery = battery(t(1000), 49, 250, [0xAA, 0xAA, 0xAA, 0x02, 0, 0, 0, 0]);
                w.inputs(Moment::Request)
            }),
            "49 %",
            "at least 50 %",
        ),
        (
            Gate::Communicating,
            Box::new(|w| {
                let mut i = w.inputs(Moment::Request);
                i.now = t(4100);
                i
            }),
            "stale or missing: 0x351, 0x355, 0x356, 0x35A",
            "within 3 s",
        ),
        (
            Gate::BusErrorState,
            Box::new(|w| {
                let mut i = w.inputs(Moment::DuringTransfer);
                i.controller = ControllerState::ErrorPassive;
                i
            }),
            "error passive",
            "error active or error warning",
        ),
        (
            Gate::NoActiveAlarm,
            Box::new(|w| {
                // High temperature alarm: byte 0 bits 6-7 = 01.
                w.battery = battery(t(1000), 80, 250, [0x6A, 0xAA, 0xAA, 0x02, 0, 0, 0, 0]);
                w.inputs(Moment::DuringTransfer)
            }),
            "high temperature alarm",
            "no alarm in 0x35A",
        ),
        (
            Gate::Temperature,
            Box::new(|w| {
                w.battery = battery(t(1000), 80, 412, [0xAA, 0xAA, 0xAA, 0x02, 0, 0, 0, 0]);
                w.inputs(Moment::Request)
            }),
            "41.2 °C",
            "5 °C to 40 °C",
        ),
        (
            Gate::NoBackupPowerEvent,
            Box::new(|w| {
                w.site.grid = SiteValue::Known(GridStatus::Lost);
                w.inputs(Moment::DuringTransfer)
            }),
            "grid lost",
            "no grid loss",
        ),
        (
            Gate::BusFree,
            Box::new(|w| {
                let mut i = w.inputs(Moment::Request);
                i.other_update = Some(crate::job::JobId(7));
                i
            }),
            "job 7",
            "none",
        ),
        (
            Gate::Acknowledgements,
            Box::new(|w| {
                w.acks.0.remove(&Acknowledgement::BackupCapacity);
                w.inputs(Moment::Request)
            }),
            "missing: backup capacity",
            "maintenance window",
        ),
        (
            Gate::VersionChoice,
            Box::new(|w| {
                w.target = version(1, 2);
                w.inputs(Moment::BeforeTransfer)
            }),
            "v1.02 [0102]",
            "newer than v1.02 [0102]",
        ),
        (
            Gate::TargetApproved,
            Box::new(|w| {
                w.target = version(2, 0);
                w.inputs(Moment::BeforeTransfer)
            }),
            "v2.00 [0200]",
            "v1.0 to v1.99 (allowlist)",
        ),
        (
            Gate::InstalledApproved,
            Box::new(|w| {
                w.installed = version(0, 9);
                w.inputs(Moment::Request)
            }),
            "v0.09 [0009]",
            "v1.0 to v1.99 (allowlist)",
        ),
    ];
    assert_eq!(cases.len(), Gate::ALL.len(), "every gate has a case");
    for (gate, make, measured, limit) in cases {
        let mut w = World::healthy();
        let inputs = make(&mut w);
        let report = evaluate(&inputs, &config, MAX_AGE);
        let failure = only_failure(&report);
        assert_eq!(failure.gate, gate);
        assert_eq!(failure.code(), gate.code());
        assert!(failure.measured.contains(measured), "{gate}: {failure}");
        assert!(failure.limit.contains(limit), "{gate}: {failure}");
        assert!(report.refusal_message().contains(&gate.code().to_string()));
    }
}

#[test]
fn a_raised_soc_minimum_applies_and_the_floor_holds() {
    let w = World::healthy();
    let config: GatesConfig = toml::from_str("soc_min_percent = 85").unwrap();
    let report = evaluate(&w.inputs(Moment::Request), &config, MAX_AGE);
    let f = only_failure(&report);
    assert_eq!(
        (f.gate, f.measured.as_str(), f.limit.as_str()),
        (Gate::StateOfCharge, "80 %", "at least 85 %")
    );
    assert!(toml::from_str::<GatesConfig>("soc_min_percent = 49").is_err());
}

#[test]
fn silence_is_suspended_only_inside_the_restart_window_and_says_so() {
    let w = World::healthy();
    let restarting = Silence::Restarting {
        since: t(2000),
        until: t(12_000),
    };
    let mut i = w.inputs(Moment::DuringTransfer);
    i.now = t(9000);
    i.silence = restarting;
    let v = verdict(Gate::Communicating, &i, &GatesConfig::default(), MAX_AGE);
    match &v.outcome {
        Outcome::Suspended { reason } => {
            assert!(reason.contains("up to 10.0 s"), "{reason}");
            assert!(reason.contains("7.0 s have passed"), "{reason}");
        }
        other => panic!("expected a suspension, got {other:?}"),
    }
    // Past the declared limit the gate refuses again.
    i.now = t(12_000);
    let v = verdict(Gate::Communicating, &i, &GatesConfig::default(), MAX_AGE);
    assert_eq!(v.outcome, Outcome::Fail);
    // A battery that talks again passes inside the window.
    i.now = t(2500);
    let v = verdict(Gate::Communicating, &i, &GatesConfig::default(), MAX_AGE);
    assert_eq!(v.outcome, Outcome::Pass);
}

#[test]
fn a_reinstall_or_downgrade_passes_only_by_the_installers_choice() {
    let mut w = World::healthy();
    w.target = version(1, 1);
    let mut i = w.inputs(Moment::BeforeTransfer);
    assert_eq!(
        verdict(Gate::VersionChoice, &i, &GatesConfig::default(), MAX_AGE).outcome,
        Outcome::Fail
    );
    i.versions.policy = VersionPolicy::AllowReinstallOrDowngrade;
    assert_eq!(
        verdict(Gate::VersionChoice, &i, &GatesConfig::default(), MAX_AGE).outcome,
        Outcome::Pass
    );
    // The approved range still bounds a chosen downgrade.
    w.target = version(0, 5);
    let mut i = w.inputs(Moment::BeforeTransfer);
    i.versions.policy = VersionPolicy::AllowReinstallOrDowngrade;
    let report = evaluate(&i, &GatesConfig::default(), MAX_AGE);
    assert_eq!(only_failure(&report).gate, Gate::TargetApproved);
}

#[test]
fn a_version_0x35f_shows_without_its_build_is_left_to_the_batterys_own_reading() {
    let mut w = World::healthy();
    let build = |b: u32| DecodedVersion {
        raw: vec![1, 2, b as u8],
        display: format!("v1.02 (build {b:02X})"),
        comparable: vec![1, 2, b],
    };
    // 0x35F shows v1.02; the package is v1.02 build 07: neither newer nor the same yet.
    w.target = build(7);
    let i = w.inputs(Moment::BeforeTransfer);
    let v = verdict(Gate::VersionChoice, &i, &GatesConfig::default(), MAX_AGE);
    match &v.outcome {
        Outcome::Deferred { reason } => {
            assert!(reason.contains("v1.02 [0102]"), "{reason}");
            assert!(reason.contains("v1.02 (build 07) [010207]"), "{reason}");
        }
        other => panic!("expected the decision deferred, got {other:?}"),
    }
    // A build of a newer minor is newer, of an older minor older, whatever the build.
    w.target = DecodedVersion {
        comparable: vec![1, 3, 0],
        ..build(0)
    };
    let i = w.inputs(Moment::BeforeTransfer);
    assert_eq!(
        verdict(Gate::VersionChoice, &i, &GatesConfig::default(), MAX_AGE).outcome,
        Outcome::Pass
    );
    w.target = DecodedVersion {
        comparable: vec![1, 1, 0xFF],
        ..build(0xFF)
    };
    let i = w.inputs(Moment::BeforeTransfer);
    assert_eq!(
        verdict(Gate::VersionChoice, &i, &GatesConfig::default(), MAX_AGE).outcome,
        Outcome::Fail
    );
}

#[test]
fn a_silent_battery_fails_every_telemetry_gate() {
    let w = World::healthy();
    let mut i = w.inputs(Moment::Request);
    i.battery = None;
    let report = evaluate(&i, &GatesConfig::default(), MAX_AGE);
    let failed: Vec<Gate> = report.failures().map(|v| v.gate).collect();
    assert_eq!(
        failed,
        vec![
            Gate::StateOfCharge,
            Gate::Communicating,
            Gate::NoActiveAlarm,
            Gate::Temperature
        ]
    );
}

#[test]
fn a_protection_flag_counts_as_an_alarm() {
    let mut w = World::healthy();
    w.battery.apply(
        t(1000),
        Telemetry::decode(FrameKind::Protection, &[0x08, 0, 0, 0]).unwrap(),
    );
    let report = evaluate(&w.inputs(Moment::Request), &GatesConfig::default(), MAX_AGE);
    let f = only_failure(&report);
    assert_eq!(f.gate, Gate::NoActiveAlarm);
    assert_eq!(f.measured, "high temperature protection");
}

/// A site value that is unknown (missing, invalid or stale) makes its gate refuse with
/// "unknown" and why, at every moment; the other gates stay green.
#[test]
fn an_unknown_site_value_refuses_its_gate_and_never_passes() {
    let config = GatesConfig::default();
    type Spoil = fn(&mut SiteSnapshot);
    let cases: [(Gate, Spoil); 3] = [
        (Gate::VrmAccess, |s| {
            s.vrm = SiteValue::unknown("not received from Venus OS")
        }),
        (Gate::GxFirmware, |s| {
            s.gx_firmware = SiteValue::unknown("not received from Venus OS")
        }),
        (Gate::NoBackupPowerEvent, |s| {
            s.grid = SiteValue::unknown("not received from Venus OS")
        }),
    ];
    for (gate, spoil) in cases {
        for moment in [
            Moment::Request,
            Moment::BeforeTransfer,
            Moment::DuringTransfer,
        ] {
            let mut w = World::healthy();
            spoil(&mut w.site);
            let report = evaluate(&w.inputs(moment), &config, MAX_AGE);
            let red = only_failure(&report);
            assert_eq!(red.gate, gate);
            assert_eq!(red.code(), gate.code());
            assert_eq!(
                red.measured, "unknown (not received from Venus OS)",
                "{red}"
            );
        }
    }
    // A pre-release of the minimum does not meet it; the grid not monitored passes.
    let mut w = World::healthy();
    w.site.gx_firmware = SiteValue::Known(GxFirmware::parse("v3.60~4").unwrap());
    w.site.grid = SiteValue::Known(GridStatus::NotMonitored);
    let report = evaluate(&w.inputs(Moment::Request), &config, MAX_AGE);
    let red = only_failure(&report);
    assert_eq!(
        (red.gate, red.measured.as_str()),
        (Gate::GxFirmware, "v3.60~4")
    );
}

/// The verdict of `gate` for `w` at request time, with the default thresholds.
fn outcome_of(gate: Gate, w: &World) -> Outcome {
    verdict(
        gate,
        &w.inputs(Moment::Request),
        &GatesConfig::default(),
        MAX_AGE,
    )
    .outcome
}

/// Each threshold is inclusive: a value exactly at the limit passes, one step beyond it
/// refuses.
#[test]
fn a_value_exactly_at_a_gate_limit_passes_and_one_step_beyond_refuses() {
    // GX firmware: the minimum v3.60 passes, v3.59 refuses.
    for (version, expected) in [
        (vec![3, 60], Outcome::Pass),
        (vec![3, 59], Outcome::Fail),
        (vec![3, 61], Outcome::Pass),
    ] {
        let mut w = World::healthy();
        w.site.gx_firmware =
            SiteValue::Known(GxFirmware::release(DottedVersion::from(version.clone())));
        assert_eq!(outcome_of(Gate::GxFirmware, &w), expected, "{version:?}");
    }
    // State of charge: the minimum 50 % passes, 49 % refuses.
    for (soc, expected) in [(50, Outcome::Pass), (49, Outcome::Fail)] {
        let mut w = World::healthy();
        w.battery = battery(t(1000), soc, 250, [0xAA, 0xAA, 0xAA, 0x02, 0, 0, 0, 0]);
        assert_eq!(outcome_of(Gate::StateOfCharge, &w), expected, "{soc} %");
    }
    // Temperature: 5.0 °C and 40.0 °C pass; 4.9 °C and 40.1 °C refuse.
    for (deci_celsius, expected) in [
        (50, Outcome::Pass),
        (49, Outcome::Fail),
        (400, Outcome::Pass),
        (401, Outcome::Fail),
        (-300, Outcome::Fail),
    ] {
        let mut w = World::healthy();
        w.battery = battery(
            t(1000),
            80,
            deci_celsius,
            [0xAA, 0xAA, 0xAA, 0x02, 0, 0, 0, 0],
        );
        assert_eq!(
            outcome_of(Gate::Temperature, &w),
            expected,
            "{deci_celsius} d°C"
        );
    }
}

/// A 0x35A alarm field that reads `11` is undefined: the gate cannot trust it and
/// refuses, whichever field it is; the same value in the warning half does not refuse.
#[test]
fn an_undefined_alarm_field_refuses_the_alarm_gate() {
    use crate::telemetry::AlarmField;
    for field in AlarmField::ALL {
        let (byte, shift) = field.position();
        let mut alarms = [0xAA, 0xAA, 0xAA, 0x02, 0xAA, 0xAA, 0xAA, 0x02];
        alarms[byte] |= 0b11 << shift;
        let mut w = World::healthy();
        w.battery = battery(t(1000), 80, 250, alarms);
        let report = evaluate(&w.inputs(Moment::Request), &GatesConfig::default(), MAX_AGE);
        let f = only_failure(&report);
        assert_eq!(f.gate, Gate::NoActiveAlarm, "{field}");
        assert_eq!(f.measured, format!("{field} alarm field invalid (11)"));
        // As a warning the field is not an alarm.
        let mut alarms = [0xAA, 0xAA, 0xAA, 0x02, 0xAA, 0xAA, 0xAA, 0x02];
        alarms[byte + 4] |= 0b11 << shift;
        let mut w = World::healthy();
        w.battery = battery(t(1000), 80, 250, alarms);
        assert_eq!(
            outcome_of(Gate::NoActiveAlarm, &w),
            Outcome::Pass,
            "{field}"
        );
    }
}

/// A state of charge older than the frames' maximum age says how old it is; one exactly at
/// the limit or fresher does not.
#[test]
fn a_stale_state_of_charge_says_how_old_it_is() {
    let w = World::healthy();
    let config = GatesConfig::default();
    let measured = |now: u64| {
        let mut i = w.inputs(Moment::Request);
        i.now = t(now);
        verdict(Gate::StateOfCharge, &i, &config, MAX_AGE).measured
    };
    assert_eq!(measured(1_500), "80 %");
    assert_eq!(measured(4_000), "80 %", "exactly the maximum age");
    assert_eq!(measured(5_200), "80 % (last received 4.2 s ago)");
}

/// An unknown installed version refuses at every moment: only the package's version may
/// be deferred, and only at request time.
#[test]
fn an_unknown_installed_version_is_never_deferred() {
    let w = World::healthy();
    for moment in [
        Moment::Request,
        Moment::BeforeTransfer,
        Moment::DuringTransfer,
    ] {
        let mut i = w.inputs(moment);
        i.versions.installed = None;
        let v = verdict(
            Gate::InstalledApproved,
            &i,
            &GatesConfig::default(),
            MAX_AGE,
        );
        assert_eq!(
            (v.outcome, v.measured.as_str()),
            (Outcome::Fail, "unknown"),
            "{moment:?}"
        );
        let v = verdict(Gate::VersionChoice, &i, &GatesConfig::default(), MAX_AGE);
        assert_eq!(v.outcome, Outcome::Fail, "{moment:?}");
    }
    // The package's version unknown while the transfer runs refuses too.
    let mut i = w.inputs(Moment::DuringTransfer);
    i.versions.target = None;
    let v = verdict(Gate::TargetApproved, &i, &GatesConfig::default(), MAX_AGE);
    assert_eq!(v.outcome, Outcome::Fail);
}
