//! What happens to a job: the inputs of its state machine.

use crate::diagnostics::BatterySnapshot;
use crate::job::identity::VersionInfo;
use crate::job::modules::ModuleProgress;
use crate::job::percent::Percent;
use crate::unix_time::UnixMillis;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a job failed: a code of the catalogue ([`crate::errors`]) and the complete message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobFailure {
    /// The stable numeric code.
    pub code: u32,
    /// The complete message (the plugin's own words for plugin codes).
    pub message: String,
    /// When it failed.
    pub at: UnixMillis,
    /// The battery's state at the time of failure, when telemetry had one.
    pub battery_state: Option<BatterySnapshot>,
}

/// An input of the job state machine, with its data.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// More of the package reached the GX.
    UploadProgress(Percent),
    /// Stage 1 ended with a staged, verified, accepted package and stage 2 began; carries the
    /// package's firmware version as its plugin decoded it.
    TransferStarted {
        /// The version the package installs.
        target: VersionInfo,
    },
    /// More of the image reached the BMS.
    TransferProgress(Percent),
    /// The BMS applies the update.
    InstallStarted,
    /// The battery restarts.
    RestartStarted,
    /// The engine checks the battery's firmware.
    VerifyStarted,
    /// The modules behind the BMS changed: the plugin's whole list, module by module.
    ModulesChanged(Vec<ModuleProgress>),
    /// The battery runs the new firmware; carries the version it reports.
    Completed {
        /// The version the battery reports after the update.
        version_after: VersionInfo,
    },
    /// The job failed.
    Failed(JobFailure),
}

/// The kind of a [`JobEvent`], without its data: the column of the transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobEventKind {
    /// [`JobEvent::UploadProgress`].
    UploadProgress,
    /// [`JobEvent::TransferStarted`].
    TransferStarted,
    /// [`JobEvent::TransferProgress`].
    TransferProgress,
    /// [`JobEvent::InstallStarted`].
    InstallStarted,
    /// [`JobEvent::RestartStarted`].
    RestartStarted,
    /// [`JobEvent::VerifyStarted`].
    VerifyStarted,
    /// [`JobEvent::ModulesChanged`].
    ModulesChanged,
    /// [`JobEvent::Completed`].
    Completed,
    /// [`JobEvent::Failed`].
    Failed,
}

impl JobEventKind {
    /// Every kind.
    pub const ALL: [JobEventKind; 9] = [
        JobEventKind::UploadProgress,
        JobEventKind::TransferStarted,
        JobEventKind::TransferProgress,
        JobEventKind::InstallStarted,
        JobEventKind::RestartStarted,
        JobEventKind::VerifyStarted,
        JobEventKind::ModulesChanged,
        JobEventKind::Completed,
        JobEventKind::Failed,
    ];
}

impl fmt::Display for JobEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl JobEvent {
    /// This event's kind.
    pub fn kind(&self) -> JobEventKind {
        match self {
            JobEvent::UploadProgress(_) => JobEventKind::UploadProgress,
            JobEvent::TransferStarted { .. } => JobEventKind::TransferStarted,
            JobEvent::TransferProgress(_) => JobEventKind::TransferProgress,
            JobEvent::InstallStarted => JobEventKind::InstallStarted,
            JobEvent::RestartStarted => JobEventKind::RestartStarted,
            JobEvent::VerifyStarted => JobEventKind::VerifyStarted,
            JobEvent::ModulesChanged(_) => JobEventKind::ModulesChanged,
            JobEvent::Completed { .. } => JobEventKind::Completed,
            JobEvent::Failed(_) => JobEventKind::Failed,
        }
    }
}
