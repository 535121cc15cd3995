//! The site's state that three gates read: VRM portal access (720), the GX firmware (721)
//! and the grid (728).
//!
//! # Where the values come from
//!
//! The engine does not read the site itself: the GX daemon feeds the shared handles,
//! [`crate::vrm::VrmAccess`] and [`SiteStatus`], from its site source:
//!
//! - `venus` (on a GX device): the live D-Bus values of Venus OS, read from its local MQTT
//!   broker by [`crate::venus`]. `settings` `/Settings/Network/VrmPortal`, `system`
//!   `/Ac/ActiveIn/Source` with the inverter/charger's `/Ac/ActiveIn/Connected` and
//!   `/State`, and `platform` `/Firmware/Installed/Version` (see `docs/venus.md` for the
//!   paths, their encodings and their sources). A value that was never received, that
//!   Venus reports invalid, that is not one of the documented encodings, or that was not
//!   refreshed within the source's staleness bound is a [`SiteValue::Unknown`], and the
//!   gate refuses naming why; it never passes.
//! - `config` (elsewhere): `gx.toml` and the command line give the values once; the
//!   grid is [`GridStatus::NotMonitored`] (nothing watches it) unless a test or the
//!   simulator sets it.
//!
//! Every change is seen by the next gate evaluation, at the latest on the engine's gate
//! timer (a quarter of a second), so a grid loss during a transfer stops it.

use crate::dotted_version::DottedVersion;
use crate::vrm::{VrmAccess, VrmPortalMode};
use serde::{Deserialize, Serialize};
use std::fmt;
use tokio::sync::watch;

/// A value of the site as the daemon knows it: known, or unknown with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteValue<T> {
    /// The value, fresh.
    Known(T),
    /// Not known now: never received, invalid, not understood or stale; the text says
    /// which, for the gate's refusal.
    Unknown(String),
}

impl<T> SiteValue<T> {
    /// The value when it is known.
    pub fn known(&self) -> Option<&T> {
        match self {
            SiteValue::Known(v) => Some(v),
            SiteValue::Unknown(_) => None,
        }
    }

    /// An unknown value, with why.
    pub fn unknown(why: impl Into<String>) -> SiteValue<T> {
        SiteValue::Unknown(why.into())
    }
}

impl<T: fmt::Display> fmt::Display for SiteValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SiteValue::Known(v) => v.fmt(f),
            SiteValue::Unknown(why) => write!(f, "unknown ({why})"),
        }
    }
}

/// Whether the site runs from the grid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GridStatus {
    /// An AC source (grid, generator, shore) is connected.
    #[default]
    Connected,
    /// The AC input is lost: the inverter runs the site from its batteries (a
    /// backup-power event).
    Lost,
    /// The site has no monitored AC input (off-grid, or nothing watches it): there is no
    /// grid to lose, and the installer's maintenance-window acknowledgement covers the
    /// timing.
    NotMonitored,
}

impl fmt::Display for GridStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GridStatus::Connected => "grid connected",
            GridStatus::Lost => "grid lost, running on batteries",
            GridStatus::NotMonitored => "no AC input monitored",
        })
    }
}

/// The GX device's firmware version as Venus OS writes it: `v3.60`, or `v3.70~12` for a
/// release candidate (a pre-release of v3.70).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GxFirmware {
    version: DottedVersion,
    /// The candidate number after `~`, for a pre-release.
    candidate: Option<u32>,
}

impl GxFirmware {
    /// A released version.
    pub fn release(version: DottedVersion) -> GxFirmware {
        GxFirmware {
            version,
            candidate: None,
        }
    }

    /// Parses `v3.60`, `3.60` or `v3.70~12` (surrounding blanks ignored).
    pub fn parse(text: &str) -> Result<GxFirmware, String> {
        let text = text.trim();
        let (base, candidate) = match text.split_once('~') {
            Some((base, n)) => {
                let n = n
                    .parse::<u32>()
                    .map_err(|_| format!("{text:?} is not a Venus OS version"))?;
                (base, Some(n))
            }
            None => (text, None),
        };
        let version = base
            .parse::<DottedVersion>()
            .map_err(|_| format!("{text:?} is not a Venus OS version"))?;
        Ok(GxFirmware { version, candidate })
    }

    /// The version's numbers (the candidate's release for a pre-release).
    pub fn version(&self) -> &DottedVersion {
        &self.version
    }

    /// Whether this firmware is `min` or later. A pre-release of a version counts as
    /// older than that version: `v3.60~5` does not meet a minimum of 3.60.
    pub fn meets(&self, min: &DottedVersion) -> bool {
        match self.candidate {
            None => self.version.parts() >= min.parts(),
            Some(_) => self.version.parts() > min.parts(),
        }
    }
}

impl fmt::Display for GxFirmware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.version)?;
        if let Some(n) = self.candidate {
            write!(f, "~{n}")?;
        }
        Ok(())
    }
}

/// The live grid status and GX firmware, shared by the daemon's site source (which sets
/// them) and the engine's gates. Cloning gives another handle on the same values.
#[derive(Debug, Clone)]
pub struct SiteStatus {
    grid: watch::Sender<SiteValue<GridStatus>>,
    /// `None`: the engine's configured firmware ([`crate::engine::EngineConfig`]).
    gx_firmware: watch::Sender<Option<SiteValue<GxFirmware>>>,
}

impl SiteStatus {
    /// A status with `grid` at start-up, the GX firmware from the engine's settings.
    pub fn new(grid: GridStatus) -> SiteStatus {
        SiteStatus::with_grid(SiteValue::Known(grid))
    }

    /// A status whose grid and GX firmware are unknown until a live source sets them
    /// (the `venus` source starts so).
    pub fn unknown(why: &str) -> SiteStatus {
        let status = SiteStatus::with_grid(SiteValue::unknown(why));
        status.set_gx_firmware(SiteValue::unknown(why));
        status
    }

    fn with_grid(grid: SiteValue<GridStatus>) -> SiteStatus {
        SiteStatus {
            grid: watch::Sender::new(grid),
            gx_firmware: watch::Sender::new(None),
        }
    }

    /// The grid status now.
    pub fn grid(&self) -> SiteValue<GridStatus> {
        self.grid.borrow().clone()
    }

    /// Sets the grid status; the next gate evaluation sees it.
    pub fn set_grid(&self, grid: GridStatus) {
        self.set_grid_value(SiteValue::Known(grid));
    }

    /// Sets the grid status, known or not; only a change wakes the subscribers.
    pub fn set_grid_value(&self, grid: SiteValue<GridStatus>) {
        self.grid.send_if_modified(|v| {
            let changed = *v != grid;
            *v = grid;
            changed
        });
    }

    /// A receiver that wakes on every change of the grid status.
    pub fn subscribe(&self) -> watch::Receiver<SiteValue<GridStatus>> {
        self.grid.subscribe()
    }

    /// The live GX firmware, or `None` when the engine's configured version counts.
    pub fn gx_firmware(&self) -> Option<SiteValue<GxFirmware>> {
        self.gx_firmware.borrow().clone()
    }

    /// Sets the live GX firmware (from then on the configured version no longer counts).
    pub fn set_gx_firmware(&self, firmware: SiteValue<GxFirmware>) {
        let firmware = Some(firmware);
        self.gx_firmware.send_if_modified(|v| {
            let changed = *v != firmware;
            *v = firmware;
            changed
        });
    }
}

impl Default for SiteStatus {
    fn default() -> SiteStatus {
        SiteStatus::new(GridStatus::Connected)
    }
}

/// The three site values of one gate evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteSnapshot {
    /// `/Settings/Network/VrmPortal`.
    pub vrm: SiteValue<VrmPortalMode>,
    /// The GX device's firmware.
    pub gx_firmware: SiteValue<GxFirmware>,
    /// The grid.
    pub grid: SiteValue<GridStatus>,
}

impl SiteSnapshot {
    /// The values now: `configured` is the GX firmware when no live source set one.
    pub fn read(vrm: &VrmAccess, site: &SiteStatus, configured: &DottedVersion) -> SiteSnapshot {
        SiteSnapshot {
            vrm: vrm.reading(),
            gx_firmware: site
                .gx_firmware()
                .unwrap_or_else(|| SiteValue::Known(GxFirmware::release(configured.clone()))),
            grid: site.grid(),
        }
    }

    /// Everything known and good: VRM access Full, GX firmware `firmware`, `grid`.
    pub fn known(vrm: VrmPortalMode, firmware: DottedVersion, grid: GridStatus) -> SiteSnapshot {
        SiteSnapshot {
            vrm: SiteValue::Known(vrm),
            gx_firmware: SiteValue::Known(GxFirmware::release(firmware)),
            grid: SiteValue::Known(grid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn venus_versions_parse_and_a_candidate_is_older_than_its_release() {
        let min: DottedVersion = "3.60".parse().unwrap();
        let v = |s: &str| GxFirmware::parse(s).unwrap();
        assert!(v("v3.60").meets(&min));
        assert!(v("3.70").meets(&min));
        assert!(v(" v3.70~12\n").meets(&min));
        assert!(!v("v3.60~5").meets(&min));
        assert!(!v("v3.50").meets(&min));
        assert_eq!(v("v3.70~12").to_string(), "v3.70~12");
        assert_eq!(v("3.60").to_string(), "v3.60");
        for bad in ["", "v", "banana", "v3.60~", "v3.60~x", "3..6"] {
            assert!(GxFirmware::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_values_say_why_and_only_changes_wake() {
        let site = SiteStatus::unknown("no value from Venus OS yet");
        assert_eq!(
            site.grid().to_string(),
            "unknown (no value from Venus OS yet)"
        );
        assert!(site.gx_firmware().unwrap().known().is_none());
        let mut rx = site.subscribe();
        site.set_grid(GridStatus::Connected);
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        site.set_grid(GridStatus::Connected);
        assert!(!rx.has_changed().unwrap());
        let configured: DottedVersion = "3.70".parse().unwrap();
        let snapshot = SiteSnapshot::read(
            &VrmAccess::new(VrmPortalMode::Full),
            &SiteStatus::default(),
            &configured,
        );
        assert_eq!(
            snapshot,
            SiteSnapshot::known(VrmPortalMode::Full, configured, GridStatus::Connected)
        );
    }
}
