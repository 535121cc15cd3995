//! Installations and their device lists, built from what each GX publishes on `N/` topics.

use crate::presence::GxPresence;
use bmsfw_vrm_wire::{
    BatteryPath, DevicePath, JobState, ModuleState, Notification, PortalId, SystemPath, WireVersion,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Longest text value kept from a GX.
const MAX_TEXT: usize = 512;
/// Most batteries kept per installation.
const MAX_BATTERIES: usize = 64;
/// Most alarms kept per battery.
const MAX_ALARMS: usize = 32;
/// Most modules kept per battery's update.
const MAX_MODULES: usize = 64;

/// One module behind a battery's BMS in its latest update, as the GX publishes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishedModule {
    /// Where it is.
    pub state: Option<ModuleState>,
    /// The firmware it runs.
    pub version: Option<WireVersion>,
}

/// The latest update of a battery, as the GX publishes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishedUpdate {
    /// The job.
    pub job: Option<u64>,
    /// Its state.
    pub state: Option<JobState>,
    /// Progress of the state.
    pub percent: Option<u8>,
    /// The failure's code.
    pub error_code: Option<u32>,
    /// The failure's message.
    pub error: Option<String>,
    /// The package's file name.
    pub file_name: Option<String>,
    /// When it was initiated (ms since the epoch).
    pub started_at: Option<u64>,
    /// Firmware before.
    pub version_before: Option<WireVersion>,
    /// Firmware the package installs.
    pub version_target: Option<WireVersion>,
    /// Firmware after.
    pub version_after: Option<WireVersion>,
    /// How many modules behind the BMS the update reports on (packs updated module by
    /// module); `None` for batteries that update as one.
    pub module_count: Option<u16>,
    /// Those modules by number.
    pub modules: BTreeMap<u16, PublishedModule>,
}

impl PublishedUpdate {
    /// Changes module `n` with `change`; a module left with neither state nor version is
    /// forgotten, and no more than [`MAX_MODULES`] are kept.
    fn module(&mut self, n: u16, change: impl FnOnce(&mut PublishedModule)) {
        if !self.modules.contains_key(&n) && self.modules.len() >= MAX_MODULES {
            return;
        }
        let m = self.modules.entry(n).or_default();
        change(m);
        if m.state.is_none() && m.version.is_none() {
            self.modules.remove(&n);
        }
    }
}

/// One battery of an installation's device list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Battery {
    /// Its device instance on the GX.
    pub instance: u32,
    /// Model.
    pub product_name: Option<String>,
    /// Manufacturer.
    pub manufacturer: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// How the GX reaches it.
    pub connection: Option<String>,
    /// Whether it communicates.
    pub connected: Option<bool>,
    /// Firmware as its vendor renders it.
    pub firmware_version: Option<String>,
    /// Raw firmware bytes as hex.
    pub firmware_raw: Option<String>,
    /// State of charge, %.
    pub soc: Option<f64>,
    /// Voltage, V.
    pub voltage: Option<f64>,
    /// Current, A.
    pub current: Option<f64>,
    /// Temperature, °C.
    pub temperature: Option<f64>,
    /// Alarm levels by name (0 ok, 1 warning, 2 alarm).
    pub alarms: BTreeMap<String, u8>,
    /// Whether a remote update is possible.
    pub eligible: Option<bool>,
    /// Why not.
    pub eligibility_reason: Option<String>,
    /// The vendor plugin that updates it.
    pub vendor: Option<String>,
    /// Its latest update.
    pub update: PublishedUpdate,
}

/// One installation (one GX).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Installation {
    /// The GX's portal id.
    pub portal_id: PortalId,
    /// The name the portal knows it by.
    pub name: String,
    /// `/Settings/Network/VrmPortal` (0 off, 1 read-only, 2 full), once published.
    pub vrm_portal: Option<u8>,
    /// The GX's firmware version.
    pub gx_firmware: Option<String>,
    /// Last contact: when the GX last sent anything, a value or a reply (ms since the
    /// epoch).
    pub last_seen: Option<u64>,
    /// Whether the GX is online (see [`crate::presence`]). While it is offline the values
    /// below are the last ones it sent.
    pub presence: GxPresence,
    /// Its batteries by device instance.
    pub batteries: BTreeMap<u32, Battery>,
}

fn text(n: &Notification) -> Option<String> {
    match &n.value {
        Some(Value::String(s)) if s.len() <= MAX_TEXT => Some(s.clone()),
        _ => None,
    }
}

fn number(n: &Notification) -> Option<f64> {
    n.value
        .as_ref()
        .and_then(Value::as_f64)
        .filter(|v| v.is_finite())
}

fn integer<T: TryFrom<u64>>(n: &Notification) -> Option<T> {
    n.value
        .as_ref()
        .and_then(Value::as_u64)
        .and_then(|v| T::try_from(v).ok())
}

fn version(n: &Notification) -> Option<WireVersion> {
    let v: WireVersion = serde_json::from_value(n.value.clone()?).ok()?;
    (v.raw.len() <= MAX_TEXT && v.display.len() <= MAX_TEXT).then_some(v)
}

impl Installation {
    /// An installation nothing has been heard of yet.
    pub fn new(portal_id: PortalId, name: impl Into<String>) -> Installation {
        Installation {
            portal_id,
            name: name.into(),
            vrm_portal: None,
            gx_firmware: None,
            last_seen: None,
            presence: GxPresence::default(),
            batteries: BTreeMap::new(),
        }
    }

    /// Whether VRM may start updates on this GX (access Full).
    pub fn allows_updates(&self) -> bool {
        self.vrm_portal == Some(2)
    }

    /// Takes one value the GX published. Values of unexpected type are ignored; nothing
    /// the GX sends can make the model grow without bound. (The last contact and the
    /// presence are kept by the MQTT side, which knows when a message is live.)
    pub fn apply(&mut self, path: &DevicePath, value: &Notification) {
        if let Some(system) = SystemPath::parse(path) {
            match system {
                SystemPath::VrmPortal => self.vrm_portal = integer(value),
                SystemPath::GxFirmware => self.gx_firmware = text(value),
                SystemPath::Batteries => {
                    if let Some(Value::Array(list)) = &value.value {
                        let present: Vec<u32> = list
                            .iter()
                            .filter_map(Value::as_u64)
                            .filter_map(|v| u32::try_from(v).ok())
                            .take(MAX_BATTERIES)
                            .collect();
                        self.batteries.retain(|i, _| present.contains(i));
                        for i in present {
                            self.batteries.entry(i).or_insert_with(|| Battery {
                                instance: i,
                                ..Battery::default()
                            });
                        }
                    }
                }
                SystemPath::PortalSerial => {}
            }
            return;
        }
        let Some((instance, field)) = BatteryPath::parse(path) else {
            return;
        };
        if !self.batteries.contains_key(&instance) && self.batteries.len() >= MAX_BATTERIES {
            return;
        }
        let b = self.batteries.entry(instance).or_insert_with(|| Battery {
            instance,
            ..Battery::default()
        });
        let u = &mut b.update;
        match field {
            BatteryPath::ProductName => b.product_name = text(value),
            BatteryPath::Manufacturer => b.manufacturer = text(value),
            BatteryPath::Serial => b.serial = text(value),
            BatteryPath::Connection => b.connection = text(value),
            BatteryPath::Connected => b.connected = integer::<u8>(value).map(|v| v != 0),
            BatteryPath::FirmwareVersion => b.firmware_version = text(value),
            BatteryPath::FirmwareVersionRaw => b.firmware_raw = text(value),
            BatteryPath::Soc => b.soc = number(value),
            BatteryPath::Voltage => b.voltage = number(value),
            BatteryPath::Current => b.current = number(value),
            BatteryPath::Temperature => b.temperature = number(value),
            BatteryPath::Alarm(name) => match integer::<u8>(value) {
                Some(level) if b.alarms.len() < MAX_ALARMS || b.alarms.contains_key(&name) => {
                    b.alarms.insert(name, level);
                }
                Some(_) => {}
                None => {
                    b.alarms.remove(&name);
                }
            },
            BatteryPath::UpdateEligible => b.eligible = integer::<u8>(value).map(|v| v != 0),
            BatteryPath::UpdateEligibilityReason => b.eligibility_reason = text(value),
            BatteryPath::UpdateVendor => b.vendor = text(value),
            BatteryPath::UpdateJob => u.job = integer(value),
            BatteryPath::UpdateState => {
                u.state = text(value).and_then(|s| JobState::from_name(&s));
            }
            BatteryPath::UpdatePercent => u.percent = integer::<u8>(value).filter(|p| *p <= 100),
            BatteryPath::UpdateErrorCode => u.error_code = integer(value),
            BatteryPath::UpdateError => u.error = text(value),
            BatteryPath::UpdateFileName => u.file_name = text(value),
            BatteryPath::UpdateStartedAt => u.started_at = integer(value),
            BatteryPath::UpdateVersionBefore => u.version_before = version(value),
            BatteryPath::UpdateVersionTarget => u.version_target = version(value),
            BatteryPath::UpdateVersionAfter => u.version_after = version(value),
            BatteryPath::UpdateModuleCount => u.module_count = integer(value),
            BatteryPath::UpdateModuleState(n) => {
                let state = text(value).and_then(|s| ModuleState::from_name(&s));
                u.module(n, |m| m.state = state);
            }
            BatteryPath::UpdateModuleVersion(n) => {
                let v = version(value);
                u.module(n, |m| m.version = v);
            }
        }
    }

    /// The battery with serial number `serial`.
    pub fn battery_by_serial(&self, serial: &str) -> Option<&Battery> {
        self.batteries
            .values()
            .find(|b| b.serial.as_deref() == Some(serial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn apply(inst: &mut Installation, path: &str, value: Value) {
        let (service, rest) = path.split_once('/').unwrap();
        let (instance, p) = rest.split_once('/').unwrap();
        let dp = DevicePath::new(service, instance.parse().unwrap(), p).unwrap();
        inst.apply(&dp, &Notification { value: Some(value) });
    }

    #[test]
    fn builds_the_device_list_from_values() {
        let mut i = Installation::new(PortalId::new("gx1").unwrap(), "Site");
        apply(&mut i, "system/0/Batteries", json!([512]));
        apply(&mut i, "battery/512/ProductName", json!("AX-5"));
        apply(&mut i, "battery/512/Serial", json!("SN-1"));
        apply(&mut i, "battery/512/Soc", json!(71.5));
        apply(&mut i, "battery/512/Alarms/HighTemperature", json!(2));
        apply(
            &mut i,
            "battery/512/FirmwareUpdate/State",
            json!("transferring"),
        );
        apply(&mut i, "battery/512/FirmwareUpdate/Percent", json!(40));
        apply(
            &mut i,
            "battery/512/FirmwareUpdate/VersionBefore",
            json!({"raw": "040f", "display": "v4.15"}),
        );
        apply(&mut i, "settings/0/Settings/Network/VrmPortal", json!(2));
        let b = i.battery_by_serial("SN-1").unwrap();
        assert_eq!(b.product_name.as_deref(), Some("AX-5"));
        assert_eq!(b.soc, Some(71.5));
        assert_eq!(b.alarms["HighTemperature"], 2);
        assert_eq!(b.update.state, Some(JobState::Transferring));
        assert_eq!(b.update.percent, Some(40));
        assert_eq!(b.update.version_before.as_ref().unwrap().display, "v4.15");
        assert!(i.allows_updates());
        // Hostile values are ignored, not trusted.
        apply(&mut i, "battery/512/FirmwareUpdate/Percent", json!(101));
        apply(&mut i, "battery/512/Soc", json!("lots"));
        apply(
            &mut i,
            "battery/512/FirmwareUpdate/State",
            json!("exploded"),
        );
        let b = &i.batteries[&512];
        assert_eq!(b.update.percent, None);
        assert_eq!(b.soc, None);
        assert_eq!(b.update.state, None);
        // A battery that leaves the list disappears.
        apply(&mut i, "system/0/Batteries", json!([]));
        assert!(i.batteries.is_empty());
    }

    #[test]
    fn keeps_each_module_of_a_pack_and_forgets_cleared_ones() {
        let mut i = Installation::new(PortalId::new("gx1").unwrap(), "Site");
        apply(&mut i, "system/0/Batteries", json!([512]));
        apply(&mut i, "battery/512/FirmwareUpdate/Modules/Count", json!(2));
        apply(
            &mut i,
            "battery/512/FirmwareUpdate/Modules/1/State",
            json!("done"),
        );
        apply(
            &mut i,
            "battery/512/FirmwareUpdate/Modules/1/Version",
            json!({"raw": "020401", "display": "v2.04 (build 01)"}),
        );
        apply(
            &mut i,
            "battery/512/FirmwareUpdate/Modules/2/State",
            json!("failed"),
        );
        let u = &i.batteries[&512].update;
        assert_eq!(u.module_count, Some(2));
        assert_eq!(u.modules[&1].state, Some(ModuleState::Done));
        assert_eq!(
            u.modules[&1].version.as_ref().unwrap().display,
            "v2.04 (build 01)"
        );
        assert_eq!(u.modules[&2].state, Some(ModuleState::Failed));
        // An unknown state is not trusted; a module whose values are cleared is forgotten.
        apply(
            &mut i,
            "battery/512/FirmwareUpdate/Modules/2/State",
            json!("exploded"),
        );
        assert!(!i.batteries[&512].update.modules.contains_key(&2));
        apply(
            &mut i,
            "battery/512/FirmwareUpdate/Modules/1/State",
            Value::Null,
        );
        apply(
            &mut i,
            "battery/512/FirmwareUpdate/Modules/1/Version",
            Value::Null,
        );
        assert!(i.batteries[&512].update.modules.is_empty());
        // However many a GX publishes, a battery keeps at most 64.
        for n in 1..=255 {
            apply(
                &mut i,
                &format!("battery/512/FirmwareUpdate/Modules/{n}/State"),
                json!("pending"),
            );
        }
        assert_eq!(i.batteries[&512].update.modules.len(), MAX_MODULES);
    }

    proptest! {
        #[test]
        fn never_grows_without_bound(instances in proptest::collection::vec(0u32..10_000, 0..200)) {
            let mut i = Installation::new(PortalId::new("gx1").unwrap(), "Site");
            for inst in instances {
                let dp = DevicePath::new("battery", inst, "Soc").unwrap();
                i.apply(&dp, &Notification::new(1.0));
            }
            prop_assert!(i.batteries.len() <= MAX_BATTERIES);
        }
    }
}
