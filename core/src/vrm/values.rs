//! What the GX publishes on `N/` topics, made from the engine's batteries and jobs, and
//! the engine's types in their wire form.

use crate::events::{EventKind, EventRecord};
use crate::job::{JobRecord, VersionInfo};
use crate::vrm::access::VrmPortalMode;
use crate::vrm::engine::{BatteryView, Eligibility, Presence};
use bmsfw_vrm_wire::{
    BatteryPath, DevicePath, Notification, PortalId, SystemPath, Topic, WireEvent, WireVersion,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The wire form of a version.
pub fn wire_version(v: &VersionInfo) -> WireVersion {
    WireVersion {
        raw: hex::encode(&v.raw),
        display: v.display.clone(),
    }
}

fn version_value(v: Option<&VersionInfo>) -> Notification {
    match v {
        Some(v) => Notification::new(json!({"raw": hex::encode(&v.raw), "display": v.display})),
        None => Notification::invalid(),
    }
}

fn opt<T: Into<Value>>(v: Option<T>) -> Notification {
    v.map_or_else(Notification::invalid, Notification::new)
}

/// A float rounded to what the GX shows (two decimals), keeping JSON free of noise.
fn measured(v: Option<f32>) -> Notification {
    match v {
        Some(v) if v.is_finite() => Notification::new((f64::from(v) * 100.0).round() / 100.0),
        _ => Notification::invalid(),
    }
}

/// Every `N/` value of one battery, with its latest job, by topic.
pub fn battery_values(
    portal: &PortalId,
    battery: &BatteryView,
    job: Option<&JobRecord>,
) -> BTreeMap<String, Notification> {
    let mut out = BTreeMap::new();
    let mut put = |path: BatteryPath, value: Notification| {
        if let Some(path) = path.device_path(battery.instance) {
            let topic = Topic::Notify {
                portal: portal.clone(),
                path,
            };
            out.insert(topic.to_string(), value);
        }
    };
    let id = &battery.identity;
    put(
        BatteryPath::ProductName,
        Notification::new(id.model.clone()),
    );
    put(
        BatteryPath::Manufacturer,
        Notification::new(id.manufacturer.clone()),
    );
    put(BatteryPath::Serial, Notification::new(id.serial.clone()));
    put(
        BatteryPath::Connection,
        Notification::new(format!("BMS-Can {}", battery.bus)),
    );
    put(
        BatteryPath::Connected,
        Notification::new(u8::from(battery.presence == Presence::Communicating)),
    );
    put(
        BatteryPath::FirmwareVersion,
        opt(battery.firmware.as_ref().map(|v| v.display.clone())),
    );
    put(
        BatteryPath::FirmwareVersionRaw,
        opt(battery.firmware.as_ref().map(|v| hex::encode(&v.raw))),
    );
    put(BatteryPath::Soc, measured(battery.soc_percent));
    put(BatteryPath::Voltage, measured(battery.voltage_v));
    put(BatteryPath::Current, measured(battery.current_a));
    put(BatteryPath::Temperature, measured(battery.temperature_c));
    for alarm in &battery.alarms {
        put(
            BatteryPath::Alarm(alarm.name.clone()),
            Notification::new(alarm.level.as_number()),
        );
    }
    match &battery.eligibility {
        Eligibility::Eligible { vendor } => {
            put(BatteryPath::UpdateEligible, Notification::new(1));
            put(
                BatteryPath::UpdateEligibilityReason,
                Notification::invalid(),
            );
            put(BatteryPath::UpdateVendor, Notification::new(vendor.clone()));
        }
        Eligibility::NotEligible { code, reason } => {
            put(BatteryPath::UpdateEligible, Notification::new(0));
            put(
                BatteryPath::UpdateEligibilityReason,
                Notification::new(format!("{reason} (error {code})")),
            );
            put(BatteryPath::UpdateVendor, Notification::invalid());
        }
    }
    let failure = job.and_then(JobRecord::failure);
    put(BatteryPath::UpdateJob, opt(job.map(|j| j.id().0)));
    put(BatteryPath::UpdateState, opt(job.map(|j| j.state().name())));
    put(
        BatteryPath::UpdatePercent,
        opt(job.map(|j| j.percent().get())),
    );
    put(BatteryPath::UpdateErrorCode, opt(failure.map(|f| f.code)));
    put(
        BatteryPath::UpdateError,
        opt(failure.map(|f| f.message.clone())),
    );
    put(
        BatteryPath::UpdateFileName,
        opt(job.map(|j| j.package().file_name().to_owned())),
    );
    put(
        BatteryPath::UpdateStartedAt,
        opt(job.map(|j| j.created_at().0)),
    );
    put(
        BatteryPath::UpdateVersionBefore,
        version_value(job.and_then(JobRecord::version_before)),
    );
    put(
        BatteryPath::UpdateVersionTarget,
        version_value(job.and_then(JobRecord::version_target)),
    );
    put(
        BatteryPath::UpdateVersionAfter,
        version_value(job.and_then(JobRecord::version_after)),
    );
    // Packs whose BMS updates its modules one by one: each module's state and version.
    let modules = job.map(JobRecord::modules).unwrap_or_default();
    put(
        BatteryPath::UpdateModuleCount,
        opt((!modules.is_empty()).then_some(modules.len())),
    );
    for m in modules {
        put(
            BatteryPath::UpdateModuleState(m.index),
            Notification::new(m.state.name()),
        );
        put(
            BatteryPath::UpdateModuleVersion(m.index),
            version_value(m.version.as_ref()),
        );
    }
    out
}

/// The GX's own values: its portal id, its batteries, the VRM access setting, its firmware.
pub fn system_values(
    portal: &PortalId,
    mode: VrmPortalMode,
    gx_firmware: &str,
    instances: &[u32],
) -> BTreeMap<String, Notification> {
    let topic = |p: SystemPath| {
        Topic::Notify {
            portal: portal.clone(),
            path: p.device_path(),
        }
        .to_string()
    };
    BTreeMap::from([
        (
            topic(SystemPath::PortalSerial),
            Notification::new(portal.as_str()),
        ),
        (topic(SystemPath::Batteries), Notification::new(instances)),
        (
            topic(SystemPath::VrmPortal),
            Notification::new(mode.as_number()),
        ),
        (
            topic(SystemPath::GxFirmware),
            Notification::new(gx_firmware),
        ),
    ])
}

/// The `N/` topic of `path` on this GX.
pub fn notify_topic(portal: &PortalId, path: DevicePath) -> String {
    Topic::Notify {
        portal: portal.clone(),
        path,
    }
    .to_string()
}

/// One event-log line in its wire form.
pub fn wire_event(record: &EventRecord) -> WireEvent {
    let kind = serde_json::to_value(&record.event)
        .ok()
        .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let (version_before, version_after, state) = match &record.event {
        EventKind::Initiated { version_before, .. } => {
            (version_before.as_ref().map(wire_version), None, None)
        }
        EventKind::TargetVersion { version } => (None, Some(wire_version(version)), None),
        EventKind::Completed {
            version_before,
            version_after,
        } => (
            version_before.as_ref().map(wire_version),
            Some(wire_version(version_after)),
            None,
        ),
        EventKind::StateChanged { to, .. } => (None, None, Some(*to)),
        _ => (None, None, None),
    };
    WireEvent {
        at: record.at.0,
        job: record.job.0,
        label: record.event.label(),
        kind,
        versions: record.event.versions(),
        version_before,
        version_after,
        code: record.event.code(),
        state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{BatteryIdentity, JobId, ModuleState};
    use crate::staging::{Sha256Digest, UploadAnnouncement};
    use crate::unix_time::UnixMillis;
    use crate::vrm::engine::{AlarmLevel, AlarmView};

    fn battery() -> BatteryView {
        BatteryView {
            instance: 512,
            bus: "can0".into(),
            identity: BatteryIdentity {
                manufacturer: "Aurora".into(),
                model: "AX-5".into(),
                serial: "SN-1".into(),
            },
            firmware: Some(VersionInfo {
                raw: vec![4, 15],
                display: "v4.15".into(),
            }),
            soc_percent: Some(71.456),
            voltage_v: Some(52.3),
            current_a: None,
            temperature_c: Some(24.5),
            alarms: vec![AlarmView {
                name: "HighTemperature".into(),
                level: AlarmLevel::Warning,
            }],
            presence: Presence::Communicating,
            eligibility: Eligibility::Eligible {
                vendor: "aurora".into(),
            },
        }
    }

    #[test]
    fn a_battery_publishes_its_identity_state_and_latest_job() {
        let portal = PortalId::new("gx1").unwrap();
        let job = JobRecord::new(
            JobId(9),
            battery().identity,
            UploadAnnouncement::new("fw.bin".into(), 10, 4, Sha256Digest([0; 32])).unwrap(),
            battery().firmware,
            UnixMillis(1234),
        );
        let v = battery_values(&portal, &battery(), Some(&job));
        let get = |p: &str| v[&format!("N/gx1/battery/512/{p}")].encode();
        let s = |p: &str| String::from_utf8(get(p)).unwrap();
        assert_eq!(s("ProductName"), r#"{"value":"AX-5"}"#);
        assert_eq!(s("FirmwareVersion"), r#"{"value":"v4.15"}"#);
        assert_eq!(s("FirmwareVersionRaw"), r#"{"value":"040f"}"#);
        assert_eq!(s("Soc"), r#"{"value":71.46}"#);
        assert_eq!(s("Dc/0/Current"), r#"{"value":null}"#);
        assert_eq!(s("Alarms/HighTemperature"), r#"{"value":1}"#);
        assert_eq!(s("Connected"), r#"{"value":1}"#);
        assert_eq!(s("FirmwareUpdate/Eligible"), r#"{"value":1}"#);
        assert_eq!(s("FirmwareUpdate/State"), r#"{"value":"uploading"}"#);
        assert_eq!(s("FirmwareUpdate/Job"), r#"{"value":9}"#);
        assert_eq!(s("FirmwareUpdate/StartedAt"), r#"{"value":1234}"#);
        assert_eq!(s("FirmwareUpdate/ErrorCode"), r#"{"value":null}"#);
        assert_eq!(
            s("FirmwareUpdate/VersionBefore"),
            r#"{"value":{"display":"v4.15","raw":"040f"}}"#
        );
        let none = battery_values(&portal, &battery(), None);
        assert_eq!(
            none["N/gx1/battery/512/FirmwareUpdate/State"].encode(),
            br#"{"value":null}"#
        );
    }

    #[test]
    fn a_pack_publishes_each_module_of_its_latest_job() {
        use crate::job::{JobEvent, ModuleProgress};
        let portal = PortalId::new("gx1").unwrap();
        let mut job = JobRecord::new(
            JobId(4),
            battery().identity,
            UploadAnnouncement::new("pack.crb".into(), 10, 4, Sha256Digest([0; 32])).unwrap(),
            battery().firmware,
            UnixMillis(1),
        );
        let target = VersionInfo {
            raw: vec![0x10, 0x01],
            display: "v1.10".into(),
        };
        job.apply(JobEvent::TransferStarted { target }, UnixMillis(2))
            .unwrap();
        job.apply(
            JobEvent::ModulesChanged(vec![
                ModuleProgress {
                    index: 1,
                    state: ModuleState::Done,
                    version: Some(VersionInfo {
                        raw: vec![2, 4, 1],
                        display: "v2.04 (build 01)".into(),
                    }),
                },
                ModuleProgress {
                    index: 2,
                    state: ModuleState::Updating,
                    version: None,
                },
            ]),
            UnixMillis(3),
        )
        .unwrap();
        let v = battery_values(&portal, &battery(), Some(&job));
        let s = |p: &str| String::from_utf8(v[&format!("N/gx1/battery/512/{p}")].encode()).unwrap();
        assert_eq!(s("FirmwareUpdate/Modules/Count"), r#"{"value":2}"#);
        assert_eq!(s("FirmwareUpdate/Modules/1/State"), r#"{"value":"done"}"#);
        assert_eq!(
            s("FirmwareUpdate/Modules/1/Version"),
            r#"{"value":{"display":"v2.04 (build 01)","raw":"020401"}}"#
        );
        assert_eq!(
            s("FirmwareUpdate/Modules/2/State"),
            r#"{"value":"updating"}"#
        );
        assert_eq!(s("FirmwareUpdate/Modules/2/Version"), r#"{"value":null}"#);
        assert!(!v.contains_key("N/gx1/battery/512/FirmwareUpdate/Modules/3/State"));
        // A battery that updates as one publishes no modules.
        let single = battery_values(&portal, &battery(), None);
        assert_eq!(
            single["N/gx1/battery/512/FirmwareUpdate/Modules/Count"].encode(),
            br#"{"value":null}"#
        );
    }

    #[test]
    fn system_values_name_the_setting() {
        let portal = PortalId::new("gx1").unwrap();
        let v = system_values(&portal, VrmPortalMode::ReadOnly, "v3.60", &[512, 513]);
        assert_eq!(
            v["N/gx1/settings/0/Settings/Network/VrmPortal"].encode(),
            br#"{"value":1}"#
        );
        assert_eq!(
            v["N/gx1/system/0/Batteries"].encode(),
            br#"{"value":[512,513]}"#
        );
    }
}
