//! Everything the gates look at, gathered for one evaluation.

use super::site::SiteSnapshot;
use super::verdict::Moment;
use crate::job::JobId;
use crate::plugin::DecodedVersion;
use crate::plugin::allowlist::FirmwareRange;
use crate::telemetry::BatteryState;
use crate::vrm::{Acknowledgements, VersionPolicy};
use bmsfw_can::ControllerState;
use bmsfw_plugin_api::Timestamp;

/// Whether the battery may be silent on BMS-Can right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// No: every required frame must be fresh.
    NotExpected,
    /// The battery restarts into its new firmware: its silence is expected from `since`
    /// until `until` (the plugin's declared limit), or until it communicates again.
    Restarting {
        /// When the restart began.
        since: Timestamp,
        /// The end of the declared window.
        until: Timestamp,
    },
}

/// The versions the version gates compare, each decoded by the battery's own plugin.
#[derive(Debug, Clone, Copy)]
pub struct VersionInputs<'a> {
    /// What the installer allows.
    pub policy: VersionPolicy,
    /// The firmware the battery reports (0x35F), when known.
    pub installed: Option<&'a DecodedVersion>,
    /// The firmware in the package, known once stage 1 ended.
    pub target: Option<&'a DecodedVersion>,
    /// The allowlist's approved firmware range of the battery's plugin.
    pub approved: Option<&'a FirmwareRange>,
}

/// The inputs of one evaluation of every gate.
#[derive(Debug, Clone, Copy)]
pub struct GateInputs<'a> {
    /// When the evaluation happens.
    pub moment: Moment,
    /// The engine's time (the telemetry's freshness is measured against it).
    pub now: Timestamp,
    /// The site's state: VRM portal access, the GX firmware and the grid, each known or
    /// unknown.
    pub site: &'a SiteSnapshot,
    /// The bus's bit rate as its interface reports it.
    pub bitrate: Option<u32>,
    /// The GX's CAN controller on that bus.
    pub controller: ControllerState,
    /// The battery's state from BMS-Can, when any frame was received.
    pub battery: Option<&'a BatteryState>,
    /// Whether the battery's silence is expected now.
    pub silence: Silence,
    /// Another job running on the same bus.
    pub other_update: Option<JobId>,
    /// What the installer confirmed.
    pub acknowledgements: &'a Acknowledgements,
    /// The versions involved.
    pub versions: VersionInputs<'a>,
}
