//! The states of an update job, as the installer sees them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where an update job stands. The order is the order the installer sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Uploading to GX device: the firmware file travels from VRM to the GX (percent).
    Uploading,
    /// Transferring to battery: the GX sends the firmware to the BMS over BMS-Can (percent).
    Transferring,
    /// Installing: the BMS applies the update.
    Installing,
    /// Restarting: the battery restarts with the new firmware.
    Restarting,
    /// Verifying: the engine confirms the battery runs the new firmware.
    Verifying,
    /// Completed: the battery runs the new firmware.
    Completed,
    /// Failed, with a code.
    Failed,
}

impl JobState {
    /// Every state, in the installer's order.
    pub const ALL: [JobState; 7] = [
        JobState::Uploading,
        JobState::Transferring,
        JobState::Installing,
        JobState::Restarting,
        JobState::Verifying,
        JobState::Completed,
        JobState::Failed,
    ];

    /// The text the portal shows for this state.
    pub const fn label(self) -> &'static str {
        match self {
            JobState::Uploading => "Uploading to GX device",
            JobState::Transferring => "Transferring to battery",
            JobState::Installing => "Installing",
            JobState::Restarting => "Restarting",
            JobState::Verifying => "Verifying",
            JobState::Completed => "Completed",
            JobState::Failed => "Failed",
        }
    }

    /// Whether the job has ended (Completed or Failed).
    pub const fn is_terminal(self) -> bool {
        matches!(self, JobState::Completed | JobState::Failed)
    }

    /// Whether the installer sees a percentage in this state.
    pub const fn shows_percent(self) -> bool {
        matches!(self, JobState::Uploading | JobState::Transferring)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}
