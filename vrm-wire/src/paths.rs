//! The values a GX publishes on `N/` topics for the portal.
//!
//! A battery is the service `battery` with its device instance; the GX itself publishes a
//! few values under `system/0`, `settings/0` and `platform/0`.

use crate::limits::MAX_MODULE_INDEX;
use crate::topic::DevicePath;

/// The service name of batteries.
pub const BATTERY_SERVICE: &str = "battery";

/// Longest alarm name accepted in `Alarms/<name>`.
const MAX_ALARM_NAME: usize = 40;

/// A value of one battery (`N/<portalId>/battery/<instance>/<path>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BatteryPath {
    /// `ProductName`: the model (text).
    ProductName,
    /// `Manufacturer` (text).
    Manufacturer,
    /// `Serial` (text).
    Serial,
    /// `Mgmt/Connection`: how the GX reaches it, e.g. `BMS-Can can0` (text).
    Connection,
    /// `Connected`: 1 while it communicates, 0 when silent.
    Connected,
    /// `FirmwareVersion`: the firmware as its vendor renders it (text).
    FirmwareVersion,
    /// `FirmwareVersionRaw`: the raw version bytes as hex (text).
    FirmwareVersionRaw,
    /// `Soc`: state of charge in percent.
    Soc,
    /// `Dc/0/Voltage` in volts.
    Voltage,
    /// `Dc/0/Current` in amperes.
    Current,
    /// `Dc/0/Temperature` in degrees Celsius.
    Temperature,
    /// `Alarms/<name>`: 0 ok, 1 warning, 2 alarm.
    Alarm(String),
    /// `FirmwareUpdate/Eligible`: 1 when a remote update is possible.
    UpdateEligible,
    /// `FirmwareUpdate/EligibilityReason`: why not (text, null when eligible).
    UpdateEligibilityReason,
    /// `FirmwareUpdate/Vendor`: the vendor id of the plugin that updates it.
    UpdateVendor,
    /// `FirmwareUpdate/Job`: the latest update job (number).
    UpdateJob,
    /// `FirmwareUpdate/State`: that job's state (`uploading`, ..., `failed`).
    UpdateState,
    /// `FirmwareUpdate/Percent`: progress of the state.
    UpdatePercent,
    /// `FirmwareUpdate/ErrorCode`: the failure's code (null unless failed).
    UpdateErrorCode,
    /// `FirmwareUpdate/Error`: the failure's message.
    UpdateError,
    /// `FirmwareUpdate/FileName`: the package's file name.
    UpdateFileName,
    /// `FirmwareUpdate/StartedAt`: when the update was initiated (ms since the epoch).
    UpdateStartedAt,
    /// `FirmwareUpdate/VersionBefore`: `{raw, display}`.
    UpdateVersionBefore,
    /// `FirmwareUpdate/VersionTarget`: `{raw, display}`.
    UpdateVersionTarget,
    /// `FirmwareUpdate/VersionAfter`: `{raw, display}`.
    UpdateVersionAfter,
    /// `FirmwareUpdate/Modules/Count`: modules behind the BMS the latest update reports
    /// on (null for batteries that update as one).
    UpdateModuleCount,
    /// `FirmwareUpdate/Modules/<n>/State`: module `n`'s state (`pending`, `updating`,
    /// `done`, `failed`, `skipped`).
    UpdateModuleState(u16),
    /// `FirmwareUpdate/Modules/<n>/Version`: the firmware module `n` runs, `{raw, display}`.
    UpdateModuleVersion(u16),
}

const FIXED: [(BatteryPath, &str); 25] = [
    (BatteryPath::ProductName, "ProductName"),
    (BatteryPath::Manufacturer, "Manufacturer"),
    (BatteryPath::Serial, "Serial"),
    (BatteryPath::Connection, "Mgmt/Connection"),
    (BatteryPath::Connected, "Connected"),
    (BatteryPath::FirmwareVersion, "FirmwareVersion"),
    (BatteryPath::FirmwareVersionRaw, "FirmwareVersionRaw"),
    (BatteryPath::Soc, "Soc"),
    (BatteryPath::Voltage, "Dc/0/Voltage"),
    (BatteryPath::Current, "Dc/0/Current"),
    (BatteryPath::Temperature, "Dc/0/Temperature"),
    (BatteryPath::UpdateEligible, "FirmwareUpdate/Eligible"),
    (
        BatteryPath::UpdateEligibilityReason,
        "FirmwareUpdate/EligibilityReason",
    ),
    (BatteryPath::UpdateVendor, "FirmwareUpdate/Vendor"),
    (BatteryPath::UpdateJob, "FirmwareUpdate/Job"),
    (BatteryPath::UpdateState, "FirmwareUpdate/State"),
    (BatteryPath::UpdatePercent, "FirmwareUpdate/Percent"),
    (BatteryPath::UpdateErrorCode, "FirmwareUpdate/ErrorCode"),
    (BatteryPath::UpdateError, "FirmwareUpdate/Error"),
    (BatteryPath::UpdateFileName, "FirmwareUpdate/FileName"),
    (BatteryPath::UpdateStartedAt, "FirmwareUpdate/StartedAt"),
    (
        BatteryPath::UpdateVersionBefore,
        "FirmwareUpdate/VersionBefore",
    ),
    (
        BatteryPath::UpdateVersionTarget,
        "FirmwareUpdate/VersionTarget",
    ),
    (
        BatteryPath::UpdateVersionAfter,
        "FirmwareUpdate/VersionAfter",
    ),
    (
        BatteryPath::UpdateModuleCount,
        "FirmwareUpdate/Modules/Count",
    ),
];

/// The prefix of per-module values.
const MODULES: &str = "FirmwareUpdate/Modules/";

/// A module number of a path: decimal, no leading zero, 1 to [`MAX_MODULE_INDEX`].
fn module_index(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 3 || text.starts_with('0') {
        return None;
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>()
        .ok()
        .filter(|n| (1..=MAX_MODULE_INDEX).contains(n))
}

impl BatteryPath {
    /// The path text, e.g. `Dc/0/Voltage`.
    pub fn as_path(&self) -> String {
        match self {
            BatteryPath::Alarm(name) => format!("Alarms/{name}"),
            BatteryPath::UpdateModuleState(n) => format!("{MODULES}{n}/State"),
            BatteryPath::UpdateModuleVersion(n) => format!("{MODULES}{n}/Version"),
            fixed => FIXED
                .iter()
                .find(|(p, _)| p == fixed)
                .map(|(_, s)| (*s).to_owned())
                .unwrap_or_default(),
        }
    }

    /// The full device path of this value of battery `instance`. Alarm names that are not
    /// a single path segment of letters, digits and `_`, and module numbers outside 1 to
    /// [`MAX_MODULE_INDEX`], give `None`.
    pub fn device_path(&self, instance: u32) -> Option<DevicePath> {
        if let BatteryPath::Alarm(name) = self
            && (name.contains('/') || name.len() > MAX_ALARM_NAME)
        {
            return None;
        }
        if let BatteryPath::UpdateModuleState(n) | BatteryPath::UpdateModuleVersion(n) = self
            && !(1..=MAX_MODULE_INDEX).contains(n)
        {
            return None;
        }
        DevicePath::new(BATTERY_SERVICE, instance, &self.as_path()).ok()
    }

    /// The battery value at `path`, if `path` is one.
    pub fn parse(path: &DevicePath) -> Option<(u32, BatteryPath)> {
        if path.service() != BATTERY_SERVICE {
            return None;
        }
        let text = path.path();
        if let Some((p, _)) = FIXED.iter().find(|(_, s)| *s == text) {
            return Some((path.instance(), p.clone()));
        }
        if let Some(rest) = text.strip_prefix(MODULES) {
            let (n, field) = rest.split_once('/')?;
            let n = module_index(n)?;
            return match field {
                "State" => Some((path.instance(), BatteryPath::UpdateModuleState(n))),
                "Version" => Some((path.instance(), BatteryPath::UpdateModuleVersion(n))),
                _ => None,
            };
        }
        let name = text.strip_prefix("Alarms/")?;
        if name.is_empty() || name.len() > MAX_ALARM_NAME || name.contains('/') {
            return None;
        }
        Some((path.instance(), BatteryPath::Alarm(name.to_owned())))
    }
}

/// A value of the GX itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemPath {
    /// `system/0/Serial`: the portal id.
    PortalSerial,
    /// `system/0/Batteries`: the device instances of every battery, a JSON array.
    Batteries,
    /// `settings/0/Settings/Network/VrmPortal`: 0 off, 1 read-only, 2 full.
    VrmPortal,
    /// `platform/0/Firmware/Installed/Version`: the GX's firmware version.
    GxFirmware,
}

impl SystemPath {
    /// Every system value.
    pub const ALL: [SystemPath; 4] = [
        SystemPath::PortalSerial,
        SystemPath::Batteries,
        SystemPath::VrmPortal,
        SystemPath::GxFirmware,
    ];

    fn parts(self) -> (&'static str, &'static str) {
        match self {
            SystemPath::PortalSerial => ("system", "Serial"),
            SystemPath::Batteries => ("system", "Batteries"),
            SystemPath::VrmPortal => ("settings", "Settings/Network/VrmPortal"),
            SystemPath::GxFirmware => ("platform", "Firmware/Installed/Version"),
        }
    }

    /// The device path (instance 0).
    pub fn device_path(self) -> DevicePath {
        let (service, path) = self.parts();
        // Constant, valid paths.
        DevicePath::new(service, 0, path).unwrap_or_else(|_| unreachable_path())
    }

    /// The system value at `path`, if `path` is one.
    pub fn parse(path: &DevicePath) -> Option<SystemPath> {
        SystemPath::ALL.into_iter().find(|s| {
            let (service, p) = s.parts();
            path.service() == service && path.instance() == 0 && path.path() == p
        })
    }
}

#[cold]
fn unreachable_path() -> DevicePath {
    // The constant paths above pass the checks (a unit test proves it); this keeps the
    // function total without a panic.
    DevicePath::new("system", 0, "Invalid").unwrap_or_else(|_| unreachable_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixed_path_is_valid_and_parses_back() {
        for (p, text) in FIXED.iter() {
            let dp = p.device_path(512).unwrap();
            assert_eq!(dp.to_string(), format!("battery/512/{text}"));
            assert_eq!(BatteryPath::parse(&dp), Some((512, p.clone())));
        }
        let alarm = BatteryPath::Alarm("HighTemperature".into());
        let dp = alarm.device_path(3).unwrap();
        assert_eq!(dp.path(), "Alarms/HighTemperature");
        assert_eq!(BatteryPath::parse(&dp), Some((3, alarm)));
        assert!(BatteryPath::Alarm("a/b".into()).device_path(3).is_none());
        let other = DevicePath::new("battery", 1, "Nope").unwrap();
        assert_eq!(BatteryPath::parse(&other), None);
        let solar = DevicePath::new("solarcharger", 1, "Soc").unwrap();
        assert_eq!(BatteryPath::parse(&solar), None);
    }

    #[test]
    fn module_paths_carry_their_number_and_refuse_anything_else() {
        for p in [
            BatteryPath::UpdateModuleState(3),
            BatteryPath::UpdateModuleVersion(255),
            BatteryPath::UpdateModuleCount,
        ] {
            let dp = p.device_path(512).unwrap();
            assert_eq!(BatteryPath::parse(&dp), Some((512, p.clone())));
        }
        assert_eq!(
            BatteryPath::UpdateModuleState(3)
                .device_path(1)
                .unwrap()
                .path(),
            "FirmwareUpdate/Modules/3/State"
        );
        assert!(BatteryPath::UpdateModuleState(0).device_path(1).is_none());
        assert!(
            BatteryPath::UpdateModuleVersion(256)
                .device_path(1)
                .is_none()
        );
        for bad in [
            "FirmwareUpdate/Modules/0/State",
            "FirmwareUpdate/Modules/03/State",
            "FirmwareUpdate/Modules/256/State",
            "FirmwareUpdate/Modules/1a/State",
            "FirmwareUpdate/Modules/3/Voltage",
            "FirmwareUpdate/Modules/3",
            "FirmwareUpdate/Modules/3/State/x",
        ] {
            let dp = DevicePath::new("battery", 1, bad).unwrap();
            assert_eq!(BatteryPath::parse(&dp), None, "{bad}");
        }
    }

    #[test]
    fn system_paths() {
        for s in SystemPath::ALL {
            assert_eq!(SystemPath::parse(&s.device_path()), Some(s));
        }
        assert_eq!(
            SystemPath::VrmPortal.device_path().to_string(),
            "settings/0/Settings/Network/VrmPortal"
        );
    }
}
