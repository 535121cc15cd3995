//! The safety gates: one per condition of the manual, each with a stable code.

use crate::errors::codes;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One safety gate. Each refuses (or stops) an update with its own code of the catalogue
/// ([`crate::errors`], 720-733).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// `/Settings/Network/VrmPortal` is Full.
    VrmAccess,
    /// The GX firmware is at or above the configured minimum.
    GxFirmware,
    /// The battery's bus runs at 500 kbit/s.
    BusBitrate,
    /// The state of charge is at or above the configured minimum (never below 50 %).
    StateOfCharge,
    /// Every required BMS-Can frame is fresh (suspended while the battery restarts, up to
    /// the plugin's declared limit).
    Communicating,
    /// The GX's CAN controller is neither error-passive nor bus-off.
    BusErrorState,
    /// The battery reports no active alarm (0x35A) and no protection flag (0x359).
    NoActiveAlarm,
    /// The battery temperature (0x356) is inside the configured normal range.
    Temperature,
    /// The site is not running on its batteries after a grid loss.
    NoBackupPowerEvent,
    /// No other update runs on the same bus.
    BusFree,
    /// The installer confirmed every precaution of the manual.
    Acknowledgements,
    /// The package is newer than the installed firmware, or the installer chose to
    /// reinstall or downgrade.
    VersionChoice,
    /// The package's version is inside the allowlist's approved firmware range.
    TargetApproved,
    /// The installed firmware is inside the allowlist's approved firmware range.
    InstalledApproved,
}

impl Gate {
    /// Every gate, in the order they are evaluated and reported.
    pub const ALL: [Gate; 14] = [
        Gate::VrmAccess,
        Gate::GxFirmware,
        Gate::BusBitrate,
        Gate::StateOfCharge,
        Gate::Communicating,
        Gate::BusErrorState,
        Gate::NoActiveAlarm,
        Gate::Temperature,
        Gate::NoBackupPowerEvent,
        Gate::BusFree,
        Gate::Acknowledgements,
        Gate::VersionChoice,
        Gate::TargetApproved,
        Gate::InstalledApproved,
    ];

    /// The catalogue code a refusal by this gate carries.
    pub const fn code(self) -> u32 {
        match self {
            Gate::VrmAccess => codes::GATE_VRM_ACCESS,
            Gate::GxFirmware => codes::GATE_GX_FIRMWARE,
            Gate::BusBitrate => codes::GATE_BUS_BITRATE,
            Gate::StateOfCharge => codes::GATE_STATE_OF_CHARGE,
            Gate::Communicating => codes::GATE_NOT_COMMUNICATING,
            Gate::BusErrorState => codes::GATE_BUS_ERROR_STATE,
            Gate::NoActiveAlarm => codes::GATE_ACTIVE_ALARM,
            Gate::Temperature => codes::GATE_TEMPERATURE,
            Gate::NoBackupPowerEvent => codes::GATE_BACKUP_POWER,
            Gate::BusFree => codes::GATE_BUS_BUSY,
            Gate::Acknowledgements => codes::GATE_ACKNOWLEDGEMENT_MISSING,
            Gate::VersionChoice => codes::GATE_VERSION_NOT_NEWER,
            Gate::TargetApproved => codes::GATE_TARGET_NOT_APPROVED,
            Gate::InstalledApproved => codes::GATE_INSTALLED_NOT_APPROVED,
        }
    }

    /// The gate's name in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Gate::VrmAccess => "VRM access mode",
            Gate::GxFirmware => "GX firmware",
            Gate::BusBitrate => "bus bit rate",
            Gate::StateOfCharge => "state of charge",
            Gate::Communicating => "battery communicating",
            Gate::BusErrorState => "CAN controller state",
            Gate::NoActiveAlarm => "no active alarm",
            Gate::Temperature => "battery temperature",
            Gate::NoBackupPowerEvent => "no backup-power event",
            Gate::BusFree => "no other update on the bus",
            Gate::Acknowledgements => "installer acknowledgements",
            Gate::VersionChoice => "target version newer",
            Gate::TargetApproved => "target version approved",
            Gate::InstalledApproved => "installed version approved",
        }
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_gate_has_its_own_catalogued_code_in_the_gate_range() {
        let codes: HashSet<u32> = Gate::ALL.iter().map(|g| g.code()).collect();
        assert_eq!(codes.len(), Gate::ALL.len());
        for gate in Gate::ALL {
            let code = gate.code();
            assert!((720..=739).contains(&code), "{gate} has {code}");
            let info = crate::errors::lookup(code).expect("catalogued");
            assert!(info.name.starts_with("GATE_"), "{}", info.name);
        }
    }
}
