//! The site's power situation, which the backup-power gate reads.
//!
//! # How the engine learns about a backup-power event
//!
//! The engine does not read the grid itself: the GX daemon feeds a [`SiteStatus`] from
//! the system state it already publishes. On a GX device that is
//! `com.victronenergy.system` `/Ac/ActiveIn/Source` (1 grid, 2 generator, 3 shore:
//! [`GridStatus::Connected`]; 240, the inverter running from the batteries:
//! [`GridStatus::Lost`]) and, for sites without an AC input,
//! [`GridStatus::NotMonitored`]. The simulator and the demo set it directly (a "grid
//! lost" fault), and tests change it while an update runs. Every change is seen by the
//! next gate evaluation, at the latest on the engine's gate timer.

use serde::{Deserialize, Serialize};
use std::fmt;
use tokio::sync::watch;

/// Whether the site runs from the grid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GridStatus {
    /// An AC source (grid, generator, shore) is connected.
    #[default]
    Connected,
    /// The AC input is lost: the site runs on its batteries (a backup-power event).
    Lost,
    /// The site has no monitored AC input (off-grid): there is no grid to lose, and the
    /// installer's maintenance-window acknowledgement covers the timing.
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

/// The live grid status, shared by the daemon (which sets it from the system state) and
/// the engine's gates. Cloning gives another handle on the same value.
#[derive(Debug, Clone)]
pub struct SiteStatus {
    grid: watch::Sender<GridStatus>,
}

impl SiteStatus {
    /// A status with `grid` at start-up.
    pub fn new(grid: GridStatus) -> SiteStatus {
        SiteStatus {
            grid: watch::Sender::new(grid),
        }
    }

    /// The grid status now.
    pub fn grid(&self) -> GridStatus {
        *self.grid.borrow()
    }

    /// Sets the grid status; the next gate evaluation sees it.
    pub fn set_grid(&self, grid: GridStatus) {
        self.grid.send_replace(grid);
    }

    /// A receiver that wakes on every change.
    pub fn subscribe(&self) -> watch::Receiver<GridStatus> {
        self.grid.subscribe()
    }
}

impl Default for SiteStatus {
    fn default() -> SiteStatus {
        SiteStatus::new(GridStatus::Connected)
    }
}
